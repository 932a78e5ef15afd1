/** The `backups:` section → plan.backups, its cross-checks, and the retention rule. Pure. */
import { describe, expect, it } from 'vitest';
import { InventoryError, parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { selectRetention, type BackupRecord } from '../../src/plan/backups.js';

const base = {
  version: 1,
  project: 'p',
  hosts: { mainpc: {}, pc2: {} },
  services: { db: { image: 'postgres:15', placement: { host: 'mainpc' } } },
};

function problemsOf(backups: unknown): { path: string; message: string; fix?: string }[] {
  try {
    buildPlan(parseInventory({ ...base, backups }));
    return [];
  } catch (err) {
    if (err instanceof InventoryError) return err.problems;
    throw err;
  }
}

describe('backups in the plan', () => {
  it('resolves targets: docker-exec gets the unit\'s container, secrets stay references', () => {
    const plan = buildPlan(parseInventory({
      ...base,
      backups: {
        postgres: [{ name: 'pg', host: 'mainpc', via: 'docker-exec', unit: 'db', database: 'app', password: { from_env: 'PGPW' } }],
        redis: [{ name: 'cache', host: 'pc2', port: 6380 }],
      },
    }));
    expect(plan.backups?.retention).toEqual({ keepLast: 7, keepDaily: 7, keepWeekly: 4 });
    expect(plan.backups?.components).toEqual([
      expect.objectContaining({ name: 'pg', kind: 'postgres', host: 'mainpc', container: 'p_mainpc_db', database: 'app', user: 'postgres', password: { from_env: 'PGPW' } }),
      expect.objectContaining({ name: 'cache', kind: 'redis', host: 'pc2', via: 'tcp', port: 6380 }),
    ]);
  });

  it('has no backups when the section is absent', () => {
    expect(buildPlan(parseInventory(base)).backups).toBeUndefined();
  });

  it('reports an unknown host with the path and a fix', () => {
    expect(problemsOf({ redis: [{ name: 'r', host: 'mainpcc' }] })).toEqual([
      { path: 'backups.redis[0].host', message: 'unknown host "mainpcc" (did you mean "mainpc"?)', fix: 'use one of the declared hosts: mainpc, pc2' },
    ]);
  });

  it('reports docker-exec without a unit, an unknown unit, a unit on another host, and duplicate names', () => {
    const problems = problemsOf({
      postgres: [
        { name: 'a', host: 'mainpc', via: 'docker-exec', database: 'x' },
        { name: 'b', host: 'mainpc', via: 'docker-exec', unit: 'dbb', database: 'x' },
        { name: 'c', host: 'pc2', via: 'docker-exec', unit: 'db', database: 'x' },
      ],
      redis: [{ name: 'a', host: 'mainpc' }],
    });
    expect(problems.map((p) => p.path)).toEqual(['backups.postgres[0].unit', 'backups.postgres[1].unit', 'backups.postgres[2].host', 'backups.redis[0].name']);
    expect(problems[1]!.message).toContain('did you mean "db"');
    expect(problems[2]!.fix).toBe('write host: mainpc');
  });

  it('rejects a literal password (strict schema: a secret is a reference)', () => {
    expect(() => parseInventory({ ...base, backups: { postgres: [{ name: 'pg', host: 'mainpc', database: 'x', password: 'hunter2' }] } })).toThrow(InventoryError);
  });

  it('ships the seeds\' backups and the local override', async () => {
    const { loadInventoryFiles } = await import('../../src/inventory/load.js');
    const seeds = buildPlan((await loadInventoryFiles(['inventory/agentsys.yaml'])).inventory).backups!;
    expect(seeds.components.map((c) => `${c.kind}:${c.via}:${c.container}`)).toEqual([
      'postgres:docker-exec:agentsys_mainpc_postgres', 'redis:docker-exec:agentsys_mainpc_redis', 'influxdb:docker-exec:agentsys_mainpc_influxdb',
    ]);
    const local = buildPlan((await loadInventoryFiles(['inventory/agentsys.yaml', 'inventory/local.yaml'])).inventory).backups!;
    expect(local.components.map((c) => `${c.kind}:${c.via}:${c.address}:${c.port}`)).toEqual(['postgres:tcp:127.0.0.1:5432', 'redis:tcp:127.0.0.1:6379']);
  });
});

describe('InfluxDB backups: version 1 or 2', () => {
  const withInflux = (services = base.services) => ({ ...base, services: { ...services, influx: { image: 'influxdb:1.8', placement: { host: 'mainpc' } } } });
  const influxOf = (target: Record<string, unknown>) =>
    buildPlan(parseInventory({ ...withInflux(), backups: { influxdb: [{ name: 'tsdb', host: 'mainpc', unit: 'influx', ...target }] } })).backups!.components[0];
  const influxProblems = (target: Record<string, unknown>) => {
    try {
      buildPlan(parseInventory({ ...withInflux(), backups: { influxdb: [{ name: 'tsdb', host: 'mainpc', unit: 'influx', ...target }] } }));
      return [];
    } catch (err) {
      if (err instanceof InventoryError) return err.problems;
      throw err;
    }
  };

  it('defaults to version 2 (the seed\'s influxdb:2.7): the token is the secret, no 1.x fields', () => {
    expect(influxOf({ token: { from_env: 'TOK' } })).toEqual({
      name: 'tsdb', kind: 'influxdb', host: 'mainpc', via: 'docker-exec', container: 'p_mainpc_influx', address: '127.0.0.1', version: 2, password: { from_env: 'TOK' },
    });
  });

  it('version 1: all databases by default, HTTP 8086 and RPC 8088 inside the container, user and password', () => {
    expect(influxOf({ version: 1 })).toEqual({
      name: 'tsdb', kind: 'influxdb', host: 'mainpc', via: 'docker-exec', container: 'p_mainpc_influx', address: '127.0.0.1', version: 1, port: 8086, rpcPort: 8088,
      databases: undefined, user: undefined, password: undefined,
    });
    expect(influxOf({ version: 1, databases: ['metrics', 'events_v2'], port: 9086, rpc_port: 9088, user: 'admin', password: { from_file: '/run/secrets/influx' } })).toMatchObject({
      version: 1, databases: ['metrics', 'events_v2'], port: 9086, rpcPort: 9088, user: 'admin', password: { from_file: '/run/secrets/influx' },
    });
  });

  it('reports fields of the other version, with the path and a fix', () => {
    expect(influxProblems({ token: { from_env: 'TOK' }, databases: ['m'], password: { from_env: 'PW' } })).toEqual([
      expect.objectContaining({ path: 'backups.influxdb[0].databases', fix: 'remove `databases`, or write `version: 1`' }),
      expect.objectContaining({ path: 'backups.influxdb[0].password', fix: 'write `token: { from_env: … }` for 2.x, or `version: 1`' }),
    ]);
    expect(influxProblems({ version: 1, token: { from_env: 'TOK' } })).toEqual([
      expect.objectContaining({ path: 'backups.influxdb[0].token', message: 'InfluxDB 1.x has no tokens' }),
    ]);
    expect(influxProblems({ version: 1, password: { from_env: 'PW' } })).toEqual([
      expect.objectContaining({ path: 'backups.influxdb[0].user', message: 'a password without a user' }),
    ]);
  });

  it('rejects an unknown version, an empty or malformed database list, and via: tcp', () => {
    for (const bad of [{ version: 3 }, { version: '1' }, { version: 1, databases: [] }, { version: 1, databases: ['a b'] }, { version: 1, databases: ['x;DROP'] }, { version: 1, via: 'tcp' }]) {
      expect(() => parseInventory({ ...withInflux(), backups: { influxdb: [{ name: 'tsdb', host: 'mainpc', unit: 'influx', ...bad }] } }), JSON.stringify(bad)).toThrow(InventoryError);
    }
  });
});

describe('retention', () => {
  const at = (day: number, hour = 12) => new Date(Date.UTC(2025, 0, day, hour)).toISOString();
  const b = (id: string, createdAt: string, status: BackupRecord['status'] = 'verified'): BackupRecord => ({ id, createdAt, status });

  it('keeps the last N verified plus one per day and one per week', () => {
    // Jan 2025: the 6th is a Monday. Two backups a day from the 1st to the 14th.
    const all = Array.from({ length: 14 }, (_, i) => [b(`d${i + 1}-am`, at(i + 1, 6)), b(`d${i + 1}-pm`, at(i + 1, 18))]).flat();
    const { keep, remove } = selectRetention(all, { keepLast: 3, keepDaily: 3, keepWeekly: 3 });
    expect(keep).toEqual([
      'd14-pm', 'd14-am', 'd13-pm', // last 3
      'd12-pm', // daily: 14th, 13th (already kept), 12th
      'd5-pm', // weekly: week of the 13th (d14-pm), of the 6th (d12-pm), of Dec 30 (d5-pm, Sunday)
    ]);
    expect(remove).toHaveLength(all.length - keep.length);
    expect(new Set([...keep, ...remove]).size).toBe(all.length);
  });

  it('never deletes the newest verified backup, keeps backups in progress and a failure newer than it', () => {
    const all = [b('old', at(1)), b('newest-ok', at(2)), b('old-failed', at(1, 13), 'failed'), b('new-failed', at(3), 'failed'), b('running', at(4), 'taken')];
    const { keep, remove } = selectRetention(all, { keepLast: 1, keepDaily: 0, keepWeekly: 0 });
    expect(keep).toEqual(['running', 'new-failed', 'newest-ok']);
    expect(remove).toEqual(['old-failed', 'old']);
    // Even keep_last 0 (the schema forbids it) keeps the newest verified one.
    expect(selectRetention(all, { keepLast: 0, keepDaily: 0, keepWeekly: 0 }).keep).toContain('newest-ok');
  });

  it('keeps everything that is not verified when nothing is', () => {
    const all = [b('f1', at(1), 'failed'), b('t1', at(2), 'taken')];
    expect(selectRetention(all, { keepLast: 1, keepDaily: 1, keepWeekly: 1 })).toEqual({ keep: ['t1', 'f1'], remove: [] });
  });
});
