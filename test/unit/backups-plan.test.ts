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
      expect.objectContaining({ name: 'pg', kind: 'postgres', host: 'mainpc', container: 'p-mainpc-db', database: 'app', user: 'postgres', password: { from_env: 'PGPW' } }),
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
      'postgres:docker-exec:agentsys-mainpc-postgres', 'redis:docker-exec:agentsys-mainpc-redis', 'influxdb:docker-exec:agentsys-mainpc-influxdb',
    ]);
    const local = buildPlan((await loadInventoryFiles(['inventory/agentsys.yaml', 'inventory/local.yaml'])).inventory).backups!;
    expect(local.components.map((c) => `${c.kind}:${c.via}:${c.address}:${c.port}`)).toEqual(['postgres:tcp:127.0.0.1:5432', 'redis:tcp:127.0.0.1:6379']);
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
