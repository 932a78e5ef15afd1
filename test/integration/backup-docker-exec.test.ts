/**
 * The `via: docker-exec` backup paths against real servers in containers: PostgreSQL 15 and Redis 7
 * images built FROM scratch out of this machine's packages (test/helpers/host-image.ts), started
 * under the container names the plan expects, driven through the real workflows on a real Temporal
 * dev server with in-process host workers.
 *
 * pg_dump, pg_restore (the dump fed on stdin of a hijacked docker exec stream) and psql run inside
 * the PostgreSQL container, on its local socket, with a password; Redis is snapshotted with
 * redis-cli BGSAVE inside its container, dump.rdb copied out (getArchive) and put back (putArchive).
 * The test reads and changes the data over ports published on 127.0.0.1 only: another path than
 * the one under test.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Dockerode from 'dockerode';
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { containerName, LABELS, ORCHESTRATOR_QUEUE } from '../../src/plan/queues.js';
import type { BackupPlan } from '../../src/plan/backups.js';
import type { Manifest } from '../../src/activities/backup-store.js';
import type { BackupResult, RestoreResult } from '../../src/workflows/backup.js';
import { historyText, startWorld, type TestWorld } from '../helpers/temporal.js';
import { ensureHostImage, postgresImageSpec, redisImageSpec, TEST_POSTGRES_IMAGE, TEST_REDIS_IMAGE } from '../helpers/host-image.js';

const docker = new Dockerode();
const pid = process.pid;
const project = `bkexec${pid}`;
const database = 'appdb';
const pgVar = `MIGRATE_TEST_EXEC_PG_PASSWORD_${pid}`;
const redisVar = `MIGRATE_TEST_EXEC_REDIS_PASSWORD_${pid}`;
const pgSecret = `pg-${pid}-${Math.random().toString(36).slice(2)}`;
const redisSecret = `rd-${pid}-${Math.random().toString(36).slice(2)}`;
const pgContainer = containerName(project, 'mainpc', 'db');
const redisContainer = containerName(project, 'pc2', 'cache');
const journalContainer = containerName(project, 'pc2', 'journal');

let dir: string;
let pgPort: number;

/** The backups of `db` and `cache`; with `journal`, only the Redis that keeps an append-only file. */
function inventory(only?: 'journal') {
  return parseInventory({
    version: 1,
    project,
    hosts: { mainpc: {}, pc2: {} },
    services: {
      db: { image: TEST_POSTGRES_IMAGE, placement: { host: 'mainpc' } },
      cache: { image: TEST_REDIS_IMAGE, placement: { host: 'pc2' } },
      journal: { image: TEST_REDIS_IMAGE, command: ['--appendonly', 'yes'], placement: { host: 'pc2' } },
    },
    backups: {
      directory: dir,
      postgres: only ? [] : [{ name: 'pg', host: 'mainpc', via: 'docker-exec', unit: 'db', database, user: 'postgres', password: { from_env: pgVar } }],
      redis: only
        ? [{ name: 'journal', host: 'pc2', via: 'docker-exec', unit: 'journal', password: { from_env: redisVar } }]
        : [{ name: 'cache', host: 'pc2', via: 'docker-exec', unit: 'cache', password: { from_env: redisVar }, data_dir: '/data' }],
    },
  });
}

/** Where the container's `port` is published now: a restarted container gets a new free port. */
async function publishedPort(name: string, port: number): Promise<number> {
  const info = await docker.getContainer(name).inspect();
  const bound = info.NetworkSettings.Ports[`${port}/tcp`]?.[0]?.HostPort;
  if (!bound) throw new Error(`${name} publishes no ${port}/tcp (${info.State.Status})`);
  return Number(bound);
}

/** Start a container under `name`, one port published on a free port of 127.0.0.1; returns that port. */
async function startContainer(name: string, image: string, port: number, opts: { env?: string[]; cmd?: string[] } = {}): Promise<number> {
  await docker.getContainer(name).remove({ force: true }).catch(() => undefined);
  const container = await docker.createContainer({
    name,
    Image: image,
    Env: opts.env,
    Cmd: opts.cmd,
    Labels: { [LABELS.project]: project },
    ExposedPorts: { [`${port}/tcp`]: {} },
    HostConfig: { PortBindings: { [`${port}/tcp`]: [{ HostIp: '127.0.0.1', HostPort: '' }] } },
  });
  await container.start();
  return publishedPort(name, port);
}

async function until<T>(what: string, attempt: () => Promise<T>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await attempt();
    } catch (err) {
      if (Date.now() > deadline) throw new Error(`${what}: ${(err as Error).message}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

async function sql<T = Record<string, unknown>>(db: string, text: string): Promise<T[]> {
  const c = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password: pgSecret, database: db });
  await c.connect();
  try {
    const res = await c.query(text);
    return (Array.isArray(res) ? res.at(-1)!.rows : res.rows) as T[];
  } finally {
    await c.end();
  }
}

const TABLES = ['items', 'events', 'audit."Order Lines"', 'bulk'];

/** Independent of the activities' checksums: every row's text, in key order. */
async function contents(): Promise<Record<string, { rows: number; md5: string }>> {
  const out: Record<string, { rows: number; md5: string }> = {};
  for (const t of TABLES) {
    const [r] = await sql<{ rows: string; md5: string }>(database, `SELECT count(*) AS rows, md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) AS md5 FROM ${t} t`);
    out[t] = { rows: Number(r!.rows), md5: r!.md5 };
  }
  return out;
}

async function redis(db = 0, container = redisContainer): Promise<Redis> {
  const client = new Redis({ host: '127.0.0.1', port: await publishedPort(container, 6379), password: redisSecret, db, lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => undefined); // connect() rejects with it
  await client.connect();
  return client;
}

/** Every key of databases 0 and 1 with its type and value, read type by type. */
async function redisWorld(): Promise<Record<string, unknown>> {
  const out: Record<string, unknown> = {};
  for (const db of [0, 1]) {
    const r = await redis(db);
    try {
      for (const key of (await r.keys('*')).sort()) {
        const type = await r.type(key);
        const value = type === 'string' ? await r.get(key)
          : type === 'hash' ? await r.hgetall(key)
          : type === 'list' ? await r.lrange(key, 0, -1)
          : type === 'set' ? (await r.smembers(key)).sort()
          : type === 'zset' ? await r.zrange(key, 0, -1, 'WITHSCORES')
          : `(${type})`;
        out[`${db}/${key}`] = { type, value, expires: (await r.ttl(key)) > 0 };
      }
    } finally {
      r.disconnect();
    }
  }
  return out;
}

describe('backups via docker exec (PostgreSQL 15 and Redis 7 in containers, real Temporal)', () => {
  let world: TestWorld;
  let plan: BackupPlan;
  const workflowIds: string[] = [];
  const run = async <T>(workflow: string, workflowId: string, args: unknown[]): Promise<T> => {
    workflowIds.push(workflowId);
    return world.client.workflow.execute(workflow, { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args });
  };

  beforeAll(async () => {
    process.env[pgVar] = pgSecret;
    process.env[redisVar] = redisSecret;
    dir = await mkdtemp(path.join(os.tmpdir(), `migrate-backup-exec-${pid}-`));
    await ensureHostImage(docker, postgresImageSpec());
    await ensureHostImage(docker, redisImageSpec());
    pgPort = await startContainer(pgContainer, TEST_POSTGRES_IMAGE, 5432, { env: [`POSTGRES_PASSWORD=${pgSecret}`] });
    await startContainer(redisContainer, TEST_REDIS_IMAGE, 6379, { cmd: ['--requirepass', redisSecret] });

    await until('PostgreSQL in its container', () => sql('postgres', 'SELECT 1'));
    await sql('postgres', `CREATE DATABASE ${database}`);
    await sql(database, `
      CREATE TABLE items (id int PRIMARY KEY, name text, payload jsonb, at timestamptz);
      INSERT INTO items SELECT g, md5(random()::text), jsonb_build_object('n', random(), 'tags', ARRAY[md5(random()::text)]), now() - random() * interval '30 days' FROM generate_series(1, 3000) g;
      CREATE TABLE events (id bigserial PRIMARY KEY, item int REFERENCES items, kind text, body bytea);
      INSERT INTO events (item, kind, body) SELECT 1 + (random() * 2999)::int, (ARRAY['a','b','c'])[1 + (random() * 2)::int], decode(md5(random()::text), 'hex') FROM generate_series(1, 700);
      CREATE SCHEMA audit;
      CREATE TABLE audit."Order Lines" (id int PRIMARY KEY, note text);
      INSERT INTO audit."Order Lines" SELECT g, E'tab\\there, newline\\nthere ' || md5(random()::text) FROM generate_series(1, 250) g;
      CREATE TABLE bulk (id int PRIMARY KEY, a text, b text);
      INSERT INTO bulk SELECT g, md5(random()::text) || md5(random()::text), md5(random()::text) FROM generate_series(1, 100000) g;
      CREATE TABLE ticks (id bigserial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp());
      CREATE VIEW recent AS SELECT * FROM items WHERE at > now() - interval '1 day';
      CREATE INDEX items_name ON items (name);`);

    await until('Redis in its container', async () => (await redis()).disconnect());
    const r0 = await redis(0);
    const r1 = await redis(1);
    const rand = () => Math.random().toString(36).slice(2);
    for (let i = 0; i < 200; i++) await r0.set(`str:${i}`, rand());
    await r0.hset('hash:user', { name: rand(), email: `${rand()}@example.org`, visits: '17' });
    await r0.rpush('list:jobs', ...Array.from({ length: 50 }, rand));
    await r0.sadd('set:tags', ...Array.from({ length: 30 }, rand));
    await r0.zadd('zset:scores', 1.5, 'a', 2.25, 'b', -3, 'c');
    await r0.set('ttl:session', rand(), 'EX', 3600);
    await r0.set('bin:blob', Buffer.from(Array.from({ length: 256 }, (_, i) => i)));
    await r1.set('db1:marker', 'in-database-1');
    r0.disconnect();
    r1.disconnect();

    plan = buildPlan(inventory()).backups!;
    world = await startWorld(inventory());
  });

  afterAll(async () => {
    await world?.close();
    for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } })) {
      await docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined);
    }
    if (dir) await rm(dir, { recursive: true, force: true });
    delete process.env[pgVar];
    delete process.env[redisVar];
    // The images stay, like the stub image: the next run finds them.
  });

  it('the plan sends each component to its unit\'s container', () => {
    expect(plan.components.map((c) => [c.name, c.host, c.via, c.container])).toEqual([
      ['pg', 'mainpc', 'docker-exec', pgContainer],
      ['cache', 'pc2', 'docker-exec', redisContainer],
    ]);
  });

  let backupId: string;
  let pgBefore: Awaited<ReturnType<typeof contents>>;
  let redisBefore: Record<string, unknown>;
  it('takes both inside their containers while the database is written to, and verifies them: the dump restored into a scratch database in the container', async () => {
    pgBefore = await contents();
    redisBefore = await redisWorld();
    // A writer that never stops during the backup (the system's agents do not pause for it).
    const writer = new pg.Client({ host: '127.0.0.1', port: pgPort, user: 'postgres', password: pgSecret, database });
    await writer.connect();
    let writing = true;
    const ticking = (async () => {
      while (writing) {
        await writer.query('INSERT INTO ticks DEFAULT VALUES');
        await new Promise((r) => setTimeout(r, 5));
      }
    })();
    const ticksBefore = Number((await sql<{ n: string }>(database, 'SELECT count(*) AS n FROM ticks'))[0]!.n);
    let result: BackupResult;
    try {
      result = await run<BackupResult>('backupDatabases', `backup-exec-${pid}`, [{ backups: plan }]);
    } finally {
      writing = false;
      await ticking;
      await writer.end();
    }
    const ticksAfter = Number((await sql<{ n: string }>(database, 'SELECT count(*) AS n FROM ticks'))[0]!.n);
    backupId = result.id;
    expect(result.hosts.map((h) => [h.host, h.status, h.problems])).toEqual([['mainpc', 'verified', []], ['pc2', 'verified', []]]);
    expect(result.status).toBe('verified');

    const manifest = JSON.parse(await readFile(path.join(dir, 'mainpc', backupId, 'manifest.json'), 'utf8')) as Manifest;
    expect(manifest.status).toBe('verified');
    const tables = manifest.components[0]!.tables!;
    expect(tables).toMatchObject({ 'public.items': { rows: 3000 }, 'public.events': { rows: 700 }, 'audit."Order Lines"': { rows: 250 }, 'public.bulk': { rows: 100_000 } });
    expect(Object.keys(tables).sort()).toEqual(['audit."Order Lines"', 'public.bulk', 'public.events', 'public.items', 'public.ticks']);
    expect(tables['public.ticks']!.rows).toBeGreaterThanOrEqual(ticksBefore);
    expect(tables['public.ticks']!.rows).toBeLessThan(ticksAfter); // taken while the writer ran
    expect(manifest.verification!.components[0]!.detail).toMatch(/^restored into a scratch database: 5 tables, \d+ rows, counts and checksums match$/);
    const dump = await readFile(path.join(dir, 'mainpc', backupId, 'pg.dump'));
    expect(dump.subarray(0, 5).toString()).toBe('PGDMP');
    expect(manifest.components[0]!.bytes).toBe(dump.length);
    expect(manifest.components[0]!.sha256).toBe(createHash('sha256').update(dump).digest('hex'));

    expect((await readdir(path.join(dir, 'pc2', backupId))).sort()).toEqual(['cache.rdb', 'manifest.json']);
    const rdb = await readFile(path.join(dir, 'pc2', backupId, 'cache.rdb'));
    expect(rdb.subarray(0, 5).toString()).toBe('REDIS');
    for (const key of ['str:199', 'hash:user', 'zset:scores', 'db1:marker']) expect(rdb.includes(Buffer.from(key))).toBe(true);

    // No scratch database is left in the container's server.
    expect(await sql('postgres', `SELECT datname FROM pg_database WHERE datname LIKE 'migrate_verify_%'`)).toEqual([]);
  });

  it('restores both after the data changed: identical rows, and the Redis keys and values as they were', async () => {
    await sql(database, `DELETE FROM events WHERE id % 3 = 0; UPDATE items SET name = 'changed' WHERE id < 100; INSERT INTO items VALUES (9000, 'new', '{}', now());
      DROP TABLE audit."Order Lines"; CREATE TABLE audit."Order Lines" (id int PRIMARY KEY); DROP VIEW recent;`);
    const r = await redis();
    await r.flushall();
    await r.set('str:0', 'overwritten');
    await r.set('after:backup', 'must-disappear');
    r.disconnect();
    expect(await contents()).not.toEqual(pgBefore);
    expect(await redisWorld()).not.toEqual(redisBefore);

    const result = await run<RestoreResult>('restoreBackup', `restore-exec-${pid}`, [{ id: backupId, backups: plan }]);
    expect(result.components.map((c) => [c.name, c.ok])).toEqual([['pg', true], ['cache', true]]);
    expect(result.ok).toBe(true);
    expect(result.components[0]!.detail).toMatch(/counts and checksums match/);

    expect(await contents()).toEqual(pgBefore);
    expect(await sql(database, `SELECT count(*)::int AS n FROM recent`)).toHaveLength(1); // the view is back
    // The workflow returned: Redis answers at once, with the data of the backup.
    expect(await redisWorld()).toEqual(redisBefore);
  });

  let againId: string;
  it('after the restore both servers still take a backup (Redis can write its restored data folder)', async () => {
    const result = await run<BackupResult>('backupDatabases', `backup-exec-again-${pid}`, [{ backups: plan }]);
    againId = result.id;
    expect(result.hosts.map((h) => [h.host, h.status, h.problems])).toEqual([['mainpc', 'verified', []], ['pc2', 'verified', []]]);
    const r = await redis();
    const info = await r.info('persistence');
    r.disconnect();
    expect(info).toMatch(/rdb_last_bgsave_status:ok/);
  });

  it('a truncated or corrupted dump is caught by verifyBackup, even when the manifest was rewritten to match it', async () => {
    const folder = path.join(dir, 'mainpc', backupId);
    const manifestPath = path.join(folder, 'manifest.json');
    const original = await readFile(path.join(folder, 'pg.dump'));
    const originalManifest = await readFile(manifestPath, 'utf8');
    /** Replace the file and make the manifest agree, so only pg_restore inside the container can tell. */
    const plant = async (file: string, data: Buffer, manifestFile = manifestPath) => {
      await writeFile(file, data);
      const m = JSON.parse(await readFile(manifestFile, 'utf8')) as Manifest;
      const entry = m.components.find((c) => c.file === path.basename(file))!;
      entry.bytes = data.length;
      entry.sha256 = createHash('sha256').update(data).digest('hex');
      await writeFile(manifestFile, JSON.stringify(m));
    };
    const status = async () => (JSON.parse(await readFile(manifestPath, 'utf8')) as Manifest).status;

    await plant(path.join(folder, 'pg.dump'), original.subarray(0, Math.floor(original.length * 0.6)));
    let result = await run<{ status: string; hosts: { host: string; problems: string[] }[] }>('verifyBackup', `verify-exec-truncated-${pid}`, [{ id: backupId, backups: plan }]);
    expect(result.status).toBe('failed');
    expect(result.hosts[0]!.problems).toHaveLength(1);
    expect(result.hosts[0]!.problems[0]).toMatch(/^pg: (pg_restore --list cannot read pg\.dump|restoring pg\.dump into a scratch database failed): .*pg_restore: error: /);
    expect(await status()).toBe('failed');

    // Bytes flipped in the table data (the dump's last third: data blocks, compressed).
    const flipped = Buffer.from(original);
    for (let i = Math.floor(flipped.length * 0.7); i < Math.floor(flipped.length * 0.7) + 64; i++) flipped[i] = flipped[i]! ^ 0x5a;
    await writeFile(manifestPath, originalManifest);
    await plant(path.join(folder, 'pg.dump'), flipped);
    result = await run('verifyBackup', `verify-exec-corrupted-${pid}`, [{ id: backupId, backups: plan }]);
    expect(result.status).toBe('failed');
    expect(result.hosts[0]!.problems[0]).toMatch(/^pg: (pg_restore --list cannot read pg\.dump|restoring pg\.dump into a scratch database failed|the restored copy differs from the backup)/);

    // A truncated RDB, manifest rewritten too: redis-check-rdb rejects it.
    const rdbFolder = path.join(dir, 'pc2', backupId);
    const rdb = await readFile(path.join(rdbFolder, 'cache.rdb'));
    await plant(path.join(rdbFolder, 'cache.rdb'), rdb.subarray(0, Math.floor(rdb.length / 2)), path.join(rdbFolder, 'manifest.json'));
    result = await run('verifyBackup', `verify-exec-rdb-${pid}`, [{ id: backupId, backups: plan }]);
    expect(result.hosts.find((h) => h.host === 'pc2')!.problems[0]).toMatch(/^cache: redis-check-rdb rejects cache\.rdb/);

    // Nothing is left behind in the container, and the original database is untouched.
    expect(await sql('postgres', `SELECT datname FROM pg_database WHERE datname LIKE 'migrate_verify_%'`)).toEqual([]);
    expect(await contents()).toEqual(pgBefore);

    // A failed backup is not restored.
    await expect(run('restoreBackup', `restore-exec-failed-${pid}`, [{ id: backupId, backups: plan, components: ['pg'] }])).rejects.toThrow();
  });

  it('a restored dump.rdb that Redis cannot load is reported, and what Redis had is put back; the good backup then brings it back', async () => {
    const held = await redisWorld();
    const forced = await run<RestoreResult>('restoreBackup', `restore-exec-bad-rdb-${pid}`, [{ id: backupId, backups: plan, components: ['cache'], force: true }]);
    expect(forced.ok).toBe(false);
    expect(forced.components[0]!.detail).toMatch(new RegExp(`^Redis in ${redisContainer} did not come back after dump.rdb was replaced: .*exited with code 1; its log says: Short read or OOM loading DB.*; the dump.rdb it had before was put back and Redis runs with it again`, 's'));
    expect((await docker.getContainer(redisContainer).inspect()).State.Running).toBe(true);
    expect(await redisWorld()).toEqual(held); // nothing lost by the failed restore
    expect((await readdir(path.join(dir, 'pc2', backupId))).filter((f) => f.includes('before-restore'))).toEqual([]);

    const good = await run<RestoreResult>('restoreBackup', `restore-exec-good-rdb-${pid}`, [{ id: againId, backups: plan, components: ['cache'] }]);
    expect(good.ok).toBe(true);
    expect(good.components[0]!.detail).toMatch(/\b\d+ keys loaded\b/);
    expect(await redisWorld()).toEqual(redisBefore);
  });

  it('a BGSAVE that Redis refuses fails the snapshot instead of copying the last, stale dump.rdb', async () => {
    const r = await redis();
    try {
      await r.call('ACL', 'SETUSER', 'default', '-bgsave');
      await r.set('after:refused', 'not in any dump');
      const result = await run<BackupResult>('backupDatabases', `backup-exec-refused-${pid}`, [{ backups: plan }]);
      expect(result.status).toBe('failed');
      expect(result.hosts.find((h) => h.host === 'pc2')!.problems).toEqual([expect.stringMatching(/^cache: not taken: .*BGSAVE.*NOPERM/)]);
      expect(await readdir(path.join(dir, 'pc2', result.id))).toEqual(['manifest.json']);
    } finally {
      await r.call('ACL', 'SETUSER', 'default', '+bgsave');
      await r.del('after:refused');
      r.disconnect();
    }
  });

  it('a Redis that keeps an append-only file ignores a restored dump.rdb: reported, not "restored"', async () => {
    await startContainer(journalContainer, TEST_REDIS_IMAGE, 6379, { cmd: ['--requirepass', redisSecret, '--appendonly', 'yes'] });
    await until('the append-only Redis', async () => (await redis(0, journalContainer)).disconnect());
    const r = await redis(0, journalContainer);
    await r.set('journal:kept', 'in the backup');
    r.disconnect();
    const journalPlan = buildPlan(inventory('journal')).backups!;
    const backup = await run<BackupResult>('backupDatabases', `backup-exec-journal-${pid}`, [{ backups: journalPlan }]);
    expect(backup.status).toBe('verified');
    const r2 = await redis(0, journalContainer);
    await r2.set('journal:after', 'written after the backup');
    r2.disconnect();

    const restored = await run<RestoreResult>('restoreBackup', `restore-exec-journal-${pid}`, [{ id: backup.id, backups: journalPlan }]);
    expect(restored.ok).toBe(false);
    expect(restored.components[0]!.detail).toMatch(/appendonly on, so it loaded its AOF and ignored dump\.rdb.*it runs on with the data its AOF holds, unchanged/);
    const r3 = await redis(0, journalContainer);
    expect(await r3.get('journal:after')).toBe('written after the backup'); // what the AOF held, not the backup
    r3.disconnect();
  });

  it('never writes either password into a workflow history, a manifest or a result', async () => {
    expect(workflowIds.length).toBeGreaterThanOrEqual(12);
    for (const id of workflowIds) {
      const json = await historyText(world.client, id);
      expect(json).toContain(redisVar); // the reference is there (every plan here backs up a Redis)…
      expect(json).not.toContain(pgSecret);
      expect(json).not.toContain(redisSecret);
    }
    const manifests = (await readdir(dir, { recursive: true })).filter((f) => f.endsWith('manifest.json'));
    expect(manifests.length).toBeGreaterThanOrEqual(4);
    for (const file of manifests) {
      const manifest = await readFile(path.join(dir, file), 'utf8');
      expect(manifest).not.toContain(pgSecret);
      expect(manifest).not.toContain(redisSecret);
    }
  });
});
