/** The tool's metrics registry: the text exposition format, and what each activity event counts. */
import { beforeEach, describe, expect, it } from 'vitest';
import { counter, metricsText, resetMetrics } from '../../src/metrics/registry.js';
import { observeBackup, observeChange, setHostLost } from '../../src/metrics/migrate.js';
import { parseBind } from '../../src/metrics/server.js';
import type { ChangeRecord } from '../../src/workflows/ledger.js';

const record = (patch: Partial<ChangeRecord>): ChangeRecord => ({
  kind: 'batch', name: 'b1', workflowId: 'migrate-batch-b1', runId: 'r1', status: 'running', units: [], startedAt: 1_000, updatedAt: 1_000, ...patch,
});
const line = (name: string) => metricsText().split('\n').filter((l) => l.startsWith(name));

describe('metrics registry', () => {
  beforeEach(() => resetMetrics());

  it('writes HELP/TYPE and escapes label values', () => {
    counter('t_escape_total', 'a "help"\nline').inc({ v: 'a"b\\c\nd' });
    const text = metricsText();
    expect(text).toContain('# HELP t_escape_total a "help"\\nline\n# TYPE t_escape_total counter\n');
    expect(text).toContain('t_escape_total{v="a\\"b\\\\c\\nd"} 1\n');
  });

  it('counts a closed change once per run, its duration, rollbacks (also a failure that undid units), agents by phase', () => {
    const agents = [{ unit: 'a1', host: 'h', action: 'replaced' as const }, { unit: 'a2', host: 'h', action: 'replaced' as const }];
    observeChange('p', record({ units: agents }));
    expect(line('migrate_agents{')).toEqual(['migrate_agents{project="p",phase="running"} 2']);
    observeChange('p', record({ status: 'rolled-back', units: agents, closedAt: 4_500 }));
    observeChange('p', record({ status: 'rolled-back', units: agents, closedAt: 4_500 })); // a retried activity
    expect(line('migrate_changes_total{')).toEqual(['migrate_changes_total{kind="batch",project="p",status="rolled-back"} 1']);
    expect(line('migrate_change_duration_seconds_sum')).toEqual(['migrate_change_duration_seconds_sum{kind="batch",project="p",status="rolled-back"} 3.5']);
    expect(line('migrate_agents{')).toEqual(['migrate_agents{project="p",phase="rolled-back"} 2']);
    observeChange('p', record({ kind: 'deploy', name: 'r1', runId: 'd1', status: 'failed', units: [{ unit: 's', host: 'h', action: 'new' }] }));
    observeChange('p', record({ kind: 'deploy', name: 'r2', runId: 'd2', status: 'failed', units: [] })); // refused before any change
    expect(line('migrate_rollbacks_total{')).toEqual(['migrate_rollbacks_total{kind="batch",project="p"} 1', 'migrate_rollbacks_total{kind="deploy",project="p"} 1']);
  });

  it('backups: size and duration when taken, the newest verified creation time (never moved back), host lost', () => {
    const c = [{ name: 'db', bytes: 2048, dumpMs: 1500 }];
    observeBackup({ host: 'h', createdAt: '2026-01-02T00:00:00Z', status: 'taken', components: c });
    observeBackup({ host: 'h', createdAt: '2026-01-02T00:00:00Z', status: 'verified', components: c });
    observeBackup({ host: 'h', createdAt: '2026-01-01T00:00:00Z', status: 'verified', components: c }, { count: false });
    setHostLost('h', true);
    expect(line('migrate_backup_bytes{')).toEqual(['migrate_backup_bytes{host="h",component="db"} 2048']);
    expect(line('migrate_backup_duration_seconds{')).toEqual(['migrate_backup_duration_seconds{host="h",component="db"} 1.5']);
    expect(line('migrate_backup_newest_verified_timestamp_seconds{')).toEqual([`migrate_backup_newest_verified_timestamp_seconds{host="h",component="db"} ${Date.parse('2026-01-02T00:00:00Z') / 1000}`]);
    expect(line('migrate_backups_total{')).toEqual(['migrate_backups_total{host="h",status="taken"} 1', 'migrate_backups_total{host="h",status="verified"} 1']);
    expect(line('migrate_host_lost{')).toEqual(['migrate_host_lost{host="h"} 1']);
  });

  it('--metrics takes HOST:PORT, IPv6 bracketed', () => {
    expect(parseBind('127.0.0.1:9464')).toEqual({ host: '127.0.0.1', port: 9464 });
    expect(parseBind('[::1]:9464')).toEqual({ host: '::1', port: 9464 });
    for (const bad of ['9464', '127.0.0.1', '127.0.0.1:0', 'host:70000', '::1:9464']) expect(parseBind(bad)).toHaveProperty('problem');
  });
});
