/** InfluxDB 1.x: reading `influx -format json` output, and comparing point counts. Pure. */
import { describe, expect, it } from 'vitest';
import { compareCounts, parseInfluxOutput, quoteIdent, seriesCounts } from '../../src/activities/influx.js';
import type { InfluxSeriesCount } from '../../src/activities/backup-store.js';

describe('InfluxDB 1.x counts', () => {
  it('reads count(*) over every measurement: one result per measurement, union columns with nulls', () => {
    // As influx 1.6 prints `SELECT count(*) FROM "a"."autogen"./.*/` (measured on this machine).
    const stdout = '{"results":[{"series":[{"name":"cpu","columns":["time","count_pct","count_s","count_value"],"values":[[0,null,300,300]]}]},'
      + '{"series":[{"name":"disk","columns":["time","count_pct","count_s","count_value"],"values":[[0,1,null,null]]}]}]}\n';
    expect(seriesCounts('autogen', parseInfluxOutput(stdout)!)).toEqual([
      { rp: 'autogen', measurement: 'cpu', fields: { s: 300, value: 300 } },
      { rp: 'autogen', measurement: 'disk', fields: { pct: 1 } },
    ]);
    expect(seriesCounts('autogen', parseInfluxOutput('{"results":[{}]}')!)).toEqual([]);
  });

  it('finds the JSON line among other output, and reports none', () => {
    expect(parseInfluxOutput('ERR: database not found: nope\n{"results":[{"error":"database not found: nope"}]}\n')?.results?.[0]?.error).toBe('database not found: nope');
    expect(parseInfluxOutput('Failed to connect to http://127.0.0.1:8086\n')).toBeUndefined();
  });

  it('compares counts: equal, a field off, a measurement missing or extra', () => {
    const backup: InfluxSeriesCount[] = [{ rp: 'autogen', measurement: 'cpu', fields: { usage: 10, busy: 10 } }, { rp: 'short', measurement: 'ev', fields: { kind: 3 } }];
    expect(compareCounts(backup, structuredClone(backup))).toBeUndefined();
    expect(compareCounts(backup, [{ rp: 'autogen', measurement: 'cpu', fields: { usage: 10, busy: 9 } }, backup[1]!])).toBe('autogen/cpu field busy has 9 values, the backup recorded 10');
    expect(compareCounts(backup, [backup[0]!, { rp: 'autogen', measurement: 'new', fields: { x: 1 } }])).toBe('short/ev is missing; autogen/new was not in the backup');
    expect(compareCounts([], [])).toBeUndefined();
  });

  it('quotes identifiers', () => {
    expect(quoteIdent('metrics')).toBe('"metrics"');
    expect(quoteIdent('we"ird\\db')).toBe('"we\\"ird\\\\db"');
  });
});
