/**
 * Backups proven restorable, against the real PostgreSQL (127.0.0.1:5432) and Redis (127.0.0.1:6379)
 * of this machine, through a real Temporal dev server and in-process host workers:
 * random data → backupDatabases → change the data → restoreBackup → identical rows; a corrupted or
 * truncated dump fails verification; retention; no credential in any workflow history.
 */
import { mkdtemp, readFile, readdir, rm, truncate, writeFile, mkdir } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { ORCHESTRATOR_QUEUE } from '../../src/plan/queues.js';
import type { BackupPlan } from '../../src/plan/backups.js';
import type { Manifest } from '../../src/activities/backup-store.js';
import type { BackupResult, RestoreResult } from '../../src/workflows/backup.js';
import { historyText, startWorld, type TestWorld } from '../helpers/temporal.js';
import { upsertBackupSchedule } from '../../src/ops/index.js';

const pid = process.pid;
const database = `migrate_bk_${pid}`;
const role = `migrate_bk_role_${pid}`;
const secretVar = `MIGRATE_TEST_PG_PASSWORD_${pid}`;
const secret = `s3cr3t-${pid}-${Math.random().toString(36).slice(2)}`;
const keyPrefix = `migrate-backup-test:${pid}:`;

const admin = () => new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: 'postgres' });
const onDb = () => new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database });

async function sql<T = Record<string, unknown>>(client: () => pg.Client, text: string): Promise<T[]> {
  const c = client();
  await c.connect();
  try {
    return (await c.query(text)).rows as T[];
  } finally {
    await c.end();
  }
}

/** Independent of the activity's checksum: every row's text, in key order. */
async function contents(): Promise<Record<string, { rows: number; md5: string }>> {
  const out: Record<string, { rows: number; md5: string }> = {};
  for (const t of ['items', 'events']) {
    const [r] = await sql<{ rows: string; md5: string }>(onDb, `SELECT count(*) AS rows, md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) AS md5 FROM ${t} t`);
    out[t] = { rows: Number(r!.rows), md5: r!.md5 };
  }
  return out;
}

let dir: string;
function inventoryFor(directory: string, retention = { keep_last: 7, keep_daily: 7, keep_weekly: 4 }, withRedis = true) {
  return parseInventory({
    version: 1,
    project: `backup${pid}`,
    hosts: { mainpc: {}, pc2: {} },
    backups: {
      directory,
      retention,
      postgres: [{ name: 'pg', host: 'mainpc', via: 'tcp', address: '127.0.0.1', port: 5432, database, user: role, password: { from_env: secretVar } }],
      redis: withRedis ? [{ name: 'cache', host: 'pc2', via: 'tcp', address: '127.0.0.1', port: 6379 }] : [],
    },
  });
}


describe('backupDatabases / verifyBackup / restoreBackup (real PostgreSQL, Redis, Temporal)', () => {
  let world: TestWorld;
  let plan: BackupPlan;
  const workflowIds: string[] = [];

  beforeAll(async () => {
    process.env[secretVar] = secret;
    dir = await mkdtemp(path.join(os.tmpdir(), `migrate-backup-${pid}-`));
    await sql(admin, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await sql(admin, `DROP ROLE IF EXISTS ${role}`);
    await sql(admin, `CREATE ROLE ${role} LOGIN CREATEDB PASSWORD '${secret}'`);
    await sql(admin, `CREATE DATABASE ${database} OWNER ${role}`);
    await sql(onDb, `SET ROLE ${role};
      CREATE TABLE items (id int PRIMARY KEY, name text, payload jsonb, at timestamptz);
      INSERT INTO items SELECT g, md5(random()::text), jsonb_build_object('n', random(), 'tags', ARRAY[md5(random()::text)]), now() - random() * interval '30 days' FROM generate_series(1, 2000) g;
      CREATE TABLE events (id bigserial PRIMARY KEY, item int REFERENCES items, kind text, body bytea);
      INSERT INTO events (item, kind, body) SELECT 1 + (random() * 1999)::int, (ARRAY['a','b','c'])[1 + (random() * 2)::int], decode(md5(random()::text), 'hex') FROM generate_series(1, 500);`);
    const redis = new Redis({ host: '127.0.0.1', port: 6379 });
    await redis.set(`${keyPrefix}marker`, 'kept-in-the-rdb');
    redis.disconnect();
    plan = buildPlan(inventoryFor(dir)).backups!;
    world = await startWorld(inventoryFor(dir));
  });

  afterAll(async () => {
    await world?.close();
    const redis = new Redis({ host: '127.0.0.1', port: 6379 });
    const keys = await redis.keys(`${keyPrefix}*`);
    if (keys.length) await redis.del(...keys);
    redis.disconnect();
    await sql(admin, `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
    for (const d of await sql<{ datname: string }>(admin, `SELECT datname FROM pg_database WHERE datname LIKE 'migrate_verify_%'`)) {
      await sql(admin, `DROP DATABASE IF EXISTS ${d.datname} WITH (FORCE)`).catch(() => undefined);
    }
    await sql(admin, `DROP ROLE IF EXISTS ${role}`).catch(() => undefined);
    await rm(dir, { recursive: true, force: true });
    delete process.env[secretVar];
  });

  let backupId: string;
  it('takes PostgreSQL and Redis on their hosts\' workers, verifies by restoring into a scratch database', async () => {
    const workflowId = `backup-test-${pid}`;
    workflowIds.push(workflowId);
    const result: BackupResult = await world.client.workflow.execute('backupDatabases', { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args: [{ backups: plan }] });
    backupId = result.id;
    expect(result.status).toBe('verified');
    expect(result.hosts.map((h) => [h.host, h.status, h.components.map((c) => c.name)])).toEqual([['mainpc', 'verified', ['pg']], ['pc2', 'verified', ['cache']]]);

    // The world: files and manifests on disk, the table statistics recorded from the dump's snapshot.
    const manifest = JSON.parse(await readFile(path.join(dir, 'mainpc', backupId, 'manifest.json'), 'utf8')) as Manifest;
    expect(manifest.status).toBe('verified');
    expect(manifest.components[0]!.tables).toMatchObject({ 'public.items': { rows: 2000 }, 'public.events': { rows: 500 } });
    expect((await readdir(path.join(dir, 'mainpc', backupId))).sort()).toEqual(['manifest.json', 'pg.dump']);
    expect((await readdir(path.join(dir, 'pc2', backupId))).sort()).toEqual(['cache.rdb', 'manifest.json']);
    const rdb = await readFile(path.join(dir, 'pc2', backupId, 'cache.rdb'));
    expect(rdb.subarray(0, 5).toString()).toBe('REDIS');
    expect(rdb.includes(Buffer.from(`${keyPrefix}marker`))).toBe(true); // BGSAVE snapshots the whole instance, our key included
    // Each component was taken by its own host's worker.
    const history = await world.client.workflow.getHandle(workflowId).fetchHistory();
    const scheduled = (history.events ?? []).flatMap((e) => (e.activityTaskScheduledEventAttributes ? [[e.activityTaskScheduledEventAttributes.activityType!.name, e.activityTaskScheduledEventAttributes.taskQueue!.name]] : []));
    expect(scheduled).toEqual(expect.arrayContaining([['dumpPostgres', 'host-mainpc'], ['snapshotRedis', 'host-pc2'], ['verifyPostgres', 'host-mainpc'], ['verifyRedis', 'host-pc2']]));
    // No scratch database is left behind.
    expect(await sql(admin, `SELECT 1 FROM pg_database WHERE datname LIKE 'migrate_verify_%'`)).toEqual([]);
  });

  it('restores PostgreSQL after the data changed: identical row counts and contents', async () => {
    const before = await contents();
    await sql(onDb, `SET ROLE ${role}; DELETE FROM events WHERE id % 3 = 0; UPDATE items SET name = 'changed' WHERE id < 100; INSERT INTO items VALUES (5000, 'new', '{}', now()); DROP TABLE events;`);
    await sql(onDb, `SET ROLE ${role}; CREATE TABLE events (id int)`);
    const workflowId = `restore-test-${pid}`;
    workflowIds.push(workflowId);
    const result: RestoreResult = await world.client.workflow.execute('restoreBackup', { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args: [{ id: backupId, backups: plan, components: ['pg'] }] });
    expect(result.ok).toBe(true);
    expect(result.components[0]!.detail).toMatch(/counts and checksums match/);
    expect(await contents()).toEqual(before);
  });

  it('catches a truncated and a corrupted dump, and marks the backup failed', async () => {
    const file = path.join(dir, 'mainpc', backupId, 'pg.dump');
    const original = await readFile(file);
    const verify = async (name: string) => {
      const workflowId = `verify-${name}-${pid}`;
      workflowIds.push(workflowId);
      return world.client.workflow.execute('verifyBackup', { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args: [{ id: backupId, backups: plan }] });
    };
    const status = async () => (JSON.parse(await readFile(path.join(dir, 'mainpc', backupId, 'manifest.json'), 'utf8')) as Manifest).status;

    await truncate(file, Math.floor(original.length / 2));
    let result = await verify('truncated');
    expect(result.status).toBe('failed');
    expect(result.hosts[0].problems[0]).toMatch(/^pg: pg\.dump has \d+ bytes but the manifest recorded \d+: the file was truncated/);
    expect(await status()).toBe('failed');

    const flipped = Buffer.from(original);
    const at = Math.floor(flipped.length / 2);
    flipped[at] = flipped[at]! ^ 0xff;
    await writeFile(file, flipped);
    result = await verify('corrupted');
    expect(result.hosts[0].problems[0]).toMatch(/pg\.dump has sha256 .* but the manifest recorded .*: the file was corrupted/);

    // A truncated dump whose manifest was rewritten to match it (the sha256 cannot help): the restore check catches it.
    const manifestPath = path.join(dir, 'mainpc', backupId, 'manifest.json');
    const manifest = JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest;
    const cut = original.subarray(0, original.length - 2000);
    await writeFile(file, cut);
    const { createHash } = await import('node:crypto');
    manifest.components[0]!.bytes = cut.length;
    manifest.components[0]!.sha256 = createHash('sha256').update(cut).digest('hex');
    await writeFile(manifestPath, JSON.stringify(manifest));
    result = await verify('rewritten');
    expect(result.status).toBe('failed');
    expect(result.hosts[0].problems[0]).toMatch(/^pg: (pg_restore --list cannot read pg\.dump|restoring pg\.dump into a scratch database failed|the restored copy differs)/);
    expect(await status()).toBe('failed');

    // A failed backup is not restored.
    await expect(world.client.workflow.execute('restoreBackup', { taskQueue: ORCHESTRATOR_QUEUE, workflowId: `restore-failed-${pid}`, args: [{ id: backupId, backups: plan, components: ['pg'] }] }))
      .rejects.toThrow();
    workflowIds.push(`restore-failed-${pid}`);
  });

  it('applies retention after a backup: the last N verified, never the newest verified', async () => {
    const rdir = path.join(dir, 'retention');
    const hostDir = path.join(rdir, 'mainpc');
    const seeded = [
      { id: 'old-1', createdAt: '2024-01-01T00:00:00.000Z', status: 'verified' },
      { id: 'old-2', createdAt: '2024-01-02T00:00:00.000Z', status: 'verified' },
      { id: 'old-failed', createdAt: '2024-01-03T00:00:00.000Z', status: 'failed' },
    ];
    for (const s of seeded) {
      await mkdir(path.join(hostDir, s.id), { recursive: true });
      await writeFile(path.join(hostDir, s.id, 'pg.dump'), 'x');
      await writeFile(path.join(hostDir, s.id, 'manifest.json'), JSON.stringify({ ...s, host: 'mainpc', components: [] }));
    }
    const rplan = buildPlan(inventoryFor(rdir, { keep_last: 2, keep_daily: 0, keep_weekly: 0 }, false)).backups!;
    const workflowId = `backup-retention-${pid}`;
    workflowIds.push(workflowId);
    const result: BackupResult = await world.client.workflow.execute('backupDatabases', { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args: [{ backups: rplan }] });
    expect(result.status).toBe('verified');
    expect(result.retention.mainpc).toEqual({ kept: [result.id, 'old-2'], removed: ['old-failed', 'old-1'] });
    expect((await readdir(hostDir)).sort()).toEqual([result.id, 'old-2'].sort()); // files and manifest gone together
  });

  it('a schedule every 2 s (overlap skip) fires and yields a verified backup; re-running updates it in place', async () => {
    const scheduleId = `backup-sched-${pid}`;
    const splan = buildPlan(inventoryFor(path.join(dir, 'scheduled'), undefined, false)).backups!;
    expect(await upsertBackupSchedule(world.client, { scheduleId, every: '1 hour', input: { backups: splan } })).toBe('created');
    expect(await upsertBackupSchedule(world.client, { scheduleId, every: '2s', input: { backups: splan }, catchupWindow: '1 minute' })).toBe('updated');
    const handle = world.client.schedule.getHandle(scheduleId);
    try {
      const described = await handle.describe();
      expect(described.policies.overlap).toBe('SKIP');
      expect(described.spec.intervals?.[0]?.every).toBe(2000);
      expect(described.policies.catchupWindow).toBe(60_000);
      let result: BackupResult | undefined;
      for (let i = 0; i < 60 && !result; i++) {
        await new Promise((r) => setTimeout(r, 1000));
        for (const action of (await handle.describe()).info.recentActions) {
          const run = world.client.workflow.getHandle(action.action.workflow.workflowId);
          if ((await run.describe()).status.name === 'COMPLETED') {
            result = await run.result();
            workflowIds.push(action.action.workflow.workflowId);
            break;
          }
        }
      }
      expect(result?.status).toBe('verified');
      expect(result!.id).toMatch(/^backup-scheduled-\d{4}-\d\d-\d\dT/);
      const manifest = JSON.parse(await readFile(path.join(dir, 'scheduled', 'mainpc', result!.id, 'manifest.json'), 'utf8')) as Manifest;
      expect(manifest.status).toBe('verified');
    } finally {
      await handle.delete();
    }
  });

  it('never writes the credential into a workflow history, a manifest or a result', async () => {
    expect(workflowIds.length).toBeGreaterThanOrEqual(5);
    for (const id of workflowIds) {
      const json = await historyText(world.client, id);
      expect(json).toContain(secretVar); // the reference is there…
      expect(json).not.toContain(secret); // …the value never
    }
    for (const file of ['manifest.json']) expect(await readFile(path.join(dir, 'mainpc', backupId, file), 'utf8')).not.toContain(secret);
  });
});
