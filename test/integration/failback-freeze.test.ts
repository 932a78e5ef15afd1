/**
 * A stateful failback's write freeze (issue 12), on one engine with in-process host workers, a real
 * NATS server (the fence records), a real PostgreSQL 15 and Redis 7 and the real workflows: both are
 * deployed on mainpc, backed up, failed over to pc2 (failoverHost, approved), written to there, then
 * failed back to mainpc:
 *
 *   - a failback that fails partway (mainpc's copies cannot start: their ports are taken on mainpc's
 *     address, after the freeze, the backup and the moved copies' stop): the copies on pc2 serve
 *     again with every row and key, unfrozen (a new session writes, Redis answers a write at once),
 *     their fences back, mainpc's copies stopped: one copy of each runs;
 *   - a failback while clients keep writing to pc2's copies over tcp: every write a client saw
 *     acknowledged is at home afterwards (zero loss), the others were refused with an error (the
 *     read-only freeze among them; Redis's paused writes end unanswered when the copy stops), and
 *     nothing is there that a client never sent.
 *
 * Asserts on the world: rows, containers, fence records, the workflow's history (no password in it).
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Dockerode from 'dockerode';
import pg from 'pg';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { temporal } from '@temporalio/proto';
import { parseInventory } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/schema.js';
import { buildPlan, type Plan } from '../../src/plan/plan.js';
import { LABELS } from '../../src/plan/queues.js';
import { runTool } from '../../src/activities/exec.js';
import { onPath } from '../../src/dev/linux.js';
import { startNatsServer, type NatsServer } from '../../src/dev/nats-server.js';
import { connectPlane, fencesOf } from '../../src/health/plane.js';
import { approveFailover, backupNow, decideRelease, failback, failbackWorkflowId, failoverProgress, followDeploy, startDeploy, startFailover } from '../../src/ops/index.js';
import { ensureHostImage, postgresImageSpec, redisImageSpec, TEST_POSTGRES_IMAGE, TEST_REDIS_IMAGE } from '../helpers/host-image.js';
import { historyText, startWorld, type TestWorld } from '../helpers/temporal.js';
import { eventually } from '../helpers/eventually.js';

const docker = new Dockerode();
const pid = process.pid;
const project = `hlfz${pid}`;
const HOME = '127.0.21.1';
const AWAY = '127.0.21.2';
const DB_PORT = 28501;
const CACHE_PORT = 28502;
const NATS_PORT = 28422;
const pgVar = `MIGRATE_TEST_HLFZ_PG_PASSWORD_${pid}`;
const pgSecret = `pg-${pid}-${Math.random().toString(36).slice(2)}`;
process.env[pgVar] = pgSecret;
const unsupported = (await onPath('nats-server')) ? undefined : '`nats-server` is missing: install Debian\'s nats-server (scripts/setup.sh does)';

const inventoryDoc = (backupDir: string) => ({
  version: 1,
  project,
  hosts: { mainpc: { address: HOME, gpu_runtime: 'none' }, pc2: { address: AWAY, gpu_runtime: 'none' } },
  health: { nats: [`nats://${HOME}:${NATS_PORT}`], subjects: `${project}.health`, heartbeat: '250ms', lost_after: '1s', peer_port: 28499 },
  services: {
    db: {
      image: TEST_POSTGRES_IMAGE,
      ports: [`${DB_PORT}:5432`],
      // Its data in a named volume (one per host): what a copy leaves behind when it is removed.
      volumes: ['pgdata:/var/lib/postgresql'],
      environment: { POSTGRES_PASSWORD: { from_env: pgVar }, PGPASSWORD: { from_env: pgVar } },
      healthcheck: { exec: ['psql', '-h', '/var/run/postgresql', '-U', 'postgres', '-tAc', 'SELECT 1'], interval: '500ms', timeout: '3s', retries: 3, start_period: '60s' },
      placement: { host: 'mainpc' },
      failover: { to: ['pc2'], stateful: true, backup: 'pg' },
    },
    cache: {
      image: TEST_REDIS_IMAGE,
      ports: [`${CACHE_PORT}:6379`],
      healthcheck: { exec: ['redis-cli', 'ping'], interval: '500ms', timeout: '3s', retries: 3, start_period: '30s' },
      placement: { host: 'mainpc' },
      failover: { to: ['pc2'], stateful: true, backup: 'cache' },
    },
  },
  backups: {
    directory: backupDir,
    postgres: [{ name: 'pg', host: 'mainpc', via: 'docker-exec', unit: 'db', database: 'postgres', user: 'postgres', password: { from_env: pgVar } }],
    redis: [{ name: 'cache', host: 'mainpc', via: 'docker-exec', unit: 'cache', data_dir: '/data' }],
  },
});

const container = (host: string, unit = 'db') => `${project}_${host}_${unit}`;

/** psql inside a host's `db` container, on its socket, as a client would (no override of the freeze). */
async function psql(host: string, sql: string): Promise<string> {
  const r = await runTool(docker, container(host), ['psql', '-h', '/var/run/postgresql', '-U', 'postgres', '-d', 'postgres', '-tAc', sql], { env: { PGPASSWORD: pgSecret } });
  if (r.code !== 0) throw new Error(`psql on ${host}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}
const ROWS_SQL = "SELECT count(*) || ':' || md5(string_agg(id || '=' || body, ',' ORDER BY id)) FROM notes";
async function withRedis<T>(address: string, fn: (r: Redis) => Promise<T>): Promise<T> {
  const r = redisOn(address);
  try {
    await r.connect();
    return await fn(r);
  } finally {
    r.disconnect();
  }
}
const ids = async (host: string) => new Set((await psql(host, 'SELECT id FROM notes')).split('\n').filter(Boolean).map(Number));

/** Which hosts run a copy of each unit right now: `unit@host`. */
async function copies(): Promise<string[]> {
  const list = await docker.listContainers({ filters: { label: [`${LABELS.project}=${project}`] } });
  return list.map((c) => c.Names[0]!.slice(1).split('_')).map(([, host, unit]) => `${unit}@${host}`).sort();
}

/** A Redis client on a host's published port that never queues or resends: a write is answered, or fails. */
function redisOn(address: string): Redis {
  const r = new Redis({ host: address, port: CACHE_PORT, lazyConnect: true, maxRetriesPerRequest: 0, enableOfflineQueue: false, autoResendUnfulfilledCommands: false, retryStrategy: () => null, connectTimeout: 3_000 });
  r.on('error', () => undefined);
  return r;
}
async function redisKeys(address: string): Promise<Set<string>> {
  const r = redisOn(address);
  try {
    await r.connect();
    return new Set(await r.keys('*'));
  } finally {
    r.disconnect();
  }
}

/** A client writing to pc2's Redis, one SET per id, reconnecting after any error, until stopped. */
function startRedisWriter(firstId: number) {
  const acked: number[] = [];
  const refused: { id: number; error: string }[] = [];
  let stopping = false;
  const run = (async () => {
    let r: Redis | undefined;
    for (let id = firstId; !stopping; id++) {
      try {
        if (!r) {
          r = redisOn(AWAY);
          await r.connect();
        }
        await r.set(`w:${id}`, `written during the failback ${id}`);
        acked.push(id);
      } catch (err) {
        refused.push({ id, error: (err as Error).message });
        r?.disconnect();
        r = undefined;
        await new Promise((res) => setTimeout(res, 30));
      }
    }
    r?.disconnect();
  })();
  return { acked, refused, stop: async () => { stopping = true; await run; } };
}

/**
 * MIGRATE_RECORD_HISTORIES=DIR: the failback's history written as DIR/<file>.json, as
 * test/histories holds them (the failbacks of the release before this freeze were recorded so).
 */
async function recordHistory(world: TestWorld, file: string, workflowId = failbackWorkflowId(project, 'mainpc')): Promise<void> {
  const dir = process.env.MIGRATE_RECORD_HISTORIES;
  if (!dir || dir === '1') return;
  const history = await world.client.workflow.getHandle(workflowId).fetchHistory();
  await mkdir(dir, { recursive: true });
  await writeFile(path.join(dir, `${file}.json`), `${JSON.stringify({ workflowId, history: Buffer.from(temporal.api.history.v1.History.encode(history).finish()).toString('base64') })}\n`);
}

/** A client writing to pc2's copy over tcp, one INSERT per id, reconnecting after any error, until stopped. */
function startWriter(firstId: number) {
  const acked: number[] = [];
  const refused: { id: number; error: string }[] = [];
  let stopping = false;
  const run = (async () => {
    let client: pg.Client | undefined;
    for (let id = firstId; !stopping; id++) {
      try {
        if (!client) {
          client = new pg.Client({ host: AWAY, port: DB_PORT, user: 'postgres', password: pgSecret, database: 'postgres', connectionTimeoutMillis: 3_000 });
          client.on('error', () => undefined);
          await client.connect();
        }
        await client.query('INSERT INTO notes VALUES ($1, $2)', [id, `written during the failback ${id}`]);
        acked.push(id);
      } catch (err) {
        refused.push({ id, error: (err as Error).message });
        await client?.end().catch(() => undefined);
        client = undefined;
        await new Promise((r) => setTimeout(r, 30));
      }
    }
    await client?.end().catch(() => undefined);
  })();
  return { acked, refused, stop: async () => { stopping = true; await run; } };
}

describe.skipIf(unsupported)(`failback with a write freeze${unsupported ? ` (skipped: ${unsupported})` : ''}`, () => {
  let dir: string;
  let nats: NatsServer | undefined;
  let world: TestWorld | undefined;
  let inventory: Inventory;
  let plan: Plan;
  /** How long each setup step took: printed at the end (a slow run says where). */
  const timings: Record<string, number> = {};
  let mark = Date.now();
  const took = (step: string) => { timings[step] = Date.now() - mark; mark = Date.now(); };

  const fences = async () => {
    const plane = await connectPlane(inventory.health!, project, { name: 'hlfz-test', failFast: true });
    try {
      return (await fencesOf(plane, 'mainpc')).map((f) => `${f.from}.${f.unit}→${f.to}`);
    } finally {
      await plane.close();
    }
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'hlfz-'));
    nats = await startNatsServer({ address: HOME, port: NATS_PORT, storeDir: path.join(dir, 'nats') });
    inventory = parseInventory(inventoryDoc(path.join(dir, 'backups')));
    plan = buildPlan(inventory);
    await ensureHostImage(docker, postgresImageSpec());
    await ensureHostImage(docker, redisImageSpec());
    world = await startWorld(inventory);
    const { client } = world;
    took('setupMs');

    // Deployed on mainpc, rows written, a verified backup taken.
    const release = `hlfz-${pid}`;
    const { error } = await followDeploy(await startDeploy(client, plan, { release, skipBackup: 'the test takes its own' }));
    expect(error).toBeUndefined();
    expect((await decideRelease(client, release, 'confirm', {}, project)).status).toBe('confirmed');
    took('deployMs');
    await psql('mainpc', "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 200) g");
    await withRedis(HOME, (r) => r.mset(Object.fromEntries(Array.from({ length: 100 }, (_, i) => [`k:${i}`, `v${i}`]))));
    expect((await backupNow(client, plan.backups!, `hlfz-${pid}`)).status).toBe('verified');
    took('backupMs');

    // mainpc judged lost: failoverHost fences its copies, and, approved, starts the database and Redis on pc2 with the backup.
    await startFailover(client, inventory, { host: 'mainpc', state: 'lost', reason: 'the test says so' }, ['pc2']);
    await eventually('both awaiting approval', async () => ((await failoverProgress(client, project, 'mainpc')).units.every((u) => u.status === 'awaiting-approval') ? true : undefined), 60_000);
    await approveFailover(client, project, 'mainpc', 'db');
    await approveFailover(client, project, 'mainpc', 'cache');
    await eventually('both moved to pc2', async () => {
      const units = (await failoverProgress(client, project, 'mainpc')).units;
      const failed = units.find((u) => u.status === 'failed');
      if (failed) throw new Error(`failover failed: ${failed.unit}: ${failed.error}`);
      return units.every((u) => u.status === 'moved') ? true : undefined;
    }, 120_000);
    await eventually('one copy of each, on pc2', async () => ((await copies()).join() === 'cache@pc2,db@pc2' ? true : undefined), 30_000);
    took('failoverMs');
    // Written on pc2 while failed over: only pc2's copies hold them.
    await psql('pc2', "INSERT INTO notes SELECT g, 'on pc2 ' || g FROM generate_series(1001, 1050) g");
    await withRedis(AWAY, (r) => r.set('on:pc2', 'yes'));
  }, 300_000);

  afterAll(async () => {
    console.info(`failback freeze: ${JSON.stringify(timings)}`);
    await world?.close();
    const left = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
    await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined)));
    const { Volumes } = await docker.listVolumes();
    await Promise.all((Volumes ?? []).filter((v) => v.Name.startsWith(`${project}-`)).map((v) => docker.getVolume(v.Name).remove().catch(() => undefined)));
    // Its networks too: the engine has ~30 address pools, and a suite that leaks them runs out ("could not find an available, non-overlapping IPv4 address pool").
    for (const n of await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } })) await docker.getNetwork(n.Id).remove().catch(() => undefined);
    await nats?.stop();
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('a failback failing partway (the home copies cannot start) leaves pc2\'s copies serving, every row and key there, unfrozen; one copy of each runs', async () => {
    const before = await psql('pc2', ROWS_SQL);
    expect(before).toMatch(/^250:/);
    const keysBefore = await redisKeys(AWAY);
    expect(keysBefore.size).toBe(101);
    // mainpc's copies cannot start: something else holds their ports on mainpc's address.
    const squatters = await Promise.all([DB_PORT, CACHE_PORT].map((port) => new Promise<net.Server>((resolve, reject) => {
      const server = net.createServer((sock) => sock.destroy());
      server.once('error', reject).listen(port, HOME, () => resolve(server));
    })));
    try {
      const err = await failback(world!.client, inventory, 'mainpc').then(() => undefined, (e: Error & { cause?: Error }) => e);
      expect(err?.cause?.message ?? err?.message).toMatch(/failback to mainpc failed: .*could not start/);
    } finally {
      await Promise.all(squatters.map((server) => new Promise((r) => server.close(r))));
    }
    await recordHistory(world!, 'failback-failed');
    const history = await historyText(world!.client, failbackWorkflowId(project, 'mainpc'));
    // Each got past the freeze, the backup and the stop before it failed; each freeze was lifted.
    for (const step of ['freezePostgres', 'dumpPostgres', 'thawPostgres', 'freezeRedis', 'snapshotRedis', 'thawRedis', 'adoptFailoverBackup', 'stopContainer']) expect(history).toContain(`"name":"${step}"`);
    expect(history).not.toContain(pgSecret);

    expect(await copies()).toEqual(['cache@pc2', 'db@pc2']);
    expect((await fences()).sort()).toEqual(['mainpc.cache→pc2', 'mainpc.db→pc2']);
    const serving = await eventually('pc2 answers', () => psql('pc2', ROWS_SQL), 60_000);
    expect(serving).toBe(before);
    expect(await redisKeys(AWAY)).toEqual(keysBefore);
    // Unfrozen: a new session is read-write, and writes; Redis answers a write at once (no pause holds it).
    expect(await psql('pc2', 'SHOW default_transaction_read_only')).toBe('off');
    await psql('pc2', "INSERT INTO notes VALUES (1100, 'after the failed failback')");
    expect(await psql('pc2', ROWS_SQL)).toMatch(/^251:/);
    const quick = new Redis({ host: AWAY, port: CACHE_PORT, lazyConnect: true, commandTimeout: 3_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
    quick.on('error', () => undefined);
    try {
      await quick.connect();
      expect(await quick.set('after:failed-failback', '1')).toBe('OK');
    } finally {
      quick.disconnect();
    }
  }, 180_000);

  it('a failback while clients write to pc2\'s copies: every acknowledged write is at home, the others were refused with an error', async () => {
    const before = await ids('pc2');
    const keysBefore = await redisKeys(AWAY);
    const writer = startWriter(100_000);
    const redisWriter = startRedisWriter(100_000);
    await eventually('the writers write', async () => (writer.acked.length >= 5 && redisWriter.acked.length >= 5 ? true : undefined), 30_000);
    let result;
    try {
      // Redis pauses of 10 s renewed every 3 s: the renewals run within this failback.
      result = await failback(world!.client, inventory, 'mainpc', {}, { freezeHoldMs: 10_000 });
    } finally {
      await writer.stop();
      await redisWriter.stop();
    }
    await recordHistory(world!, 'failback-back');
    // Zero loss: every write acknowledged by pc2's copy is at home.
    const home = await ids('mainpc');
    expect([...before, ...writer.acked].filter((id) => !home.has(id))).toEqual([]);
    const homeKeys = await redisKeys(HOME);
    expect([...keysBefore, ...redisWriter.acked.map((id) => `w:${id}`)].filter((k) => !homeKeys.has(k))).toEqual([]);
    expect(result.units.sort((a, b) => a.unit.localeCompare(b.unit))).toEqual([
      { unit: 'cache', from: 'pc2', status: 'back', writes: 'frozen' },
      { unit: 'db', from: 'pc2', status: 'back', writes: 'frozen' },
    ]);
    expect(await copies()).toEqual(['cache@mainpc', 'db@mainpc']);
    expect(await fences()).toEqual([]);
    // Every row and key at home was there before, or sent by the client (acknowledged, or refused in doubt).
    const sent = new Set([...before, ...writer.acked, ...writer.refused.map((r) => r.id)]);
    expect([...home].filter((id) => !sent.has(id))).toEqual([]);
    const sentKeys = new Set([...keysBefore, ...[...redisWriter.acked, ...redisWriter.refused.map((r) => r.id)].map((id) => `w:${id}`)]);
    expect([...homeKeys].filter((k) => !sentKeys.has(k))).toEqual([]);
    // The window was exercised: writes were refused, loudly (PostgreSQL's read-only refusal among them).
    expect(writer.refused.some((r) => /read-only transaction/.test(r.error))).toBe(true);
    expect(redisWriter.refused.length).toBeGreaterThan(0);
    const kinds = (w: { refused: { error: string }[] }) => [...new Set(w.refused.map((r) => r.error.replace(/\d+/g, 'N')))].slice(0, 4).join(' | ');
    console.info(`failback under writes: PostgreSQL ${writer.acked.length} acknowledged (all at home), ${writer.refused.length} refused (${kinds(writer)}); Redis ${redisWriter.acked.length} acknowledged (all at home), ${redisWriter.refused.length} refused (${kinds(redisWriter)})`);
    // The Redis pause was renewed while held (the first freeze, at least one renewal, the one before the stop).
    const history = await historyText(world!.client, failbackWorkflowId(project, 'mainpc'));
    const pauses = history.match(/"activityType":\{"name":"freezeRedis"\}/g)?.length ?? 0;
    console.info(`redis pauses in the failback: ${pauses}`);
    expect(pauses).toBeGreaterThanOrEqual(2);
    // Home serves read-write (the freeze was on pc2's copies only, and they are gone).
    expect(await psql('mainpc', 'SHOW default_transaction_read_only')).toBe('off');
  }, 180_000);

  it('failed over to pc2 again: the new copy reuses the volume the failed-back one left, frozen; the restore lifts that freeze', async () => {
    const home = await psql('mainpc', ROWS_SQL);
    const { client } = world!;
    await startFailover(client, inventory, { host: 'mainpc', state: 'lost', reason: 'the test says so, again' }, ['pc2']);
    await eventually('both awaiting approval', async () => ((await failoverProgress(client, project, 'mainpc')).units.every((u) => u.status === 'awaiting-approval') ? true : undefined), 60_000);
    await approveFailover(client, project, 'mainpc', 'db');
    await approveFailover(client, project, 'mainpc', 'cache');
    const db = await eventually('db moved to pc2', async () => {
      const u = (await failoverProgress(client, project, 'mainpc')).units.find((r) => r.unit === 'db')!;
      if (u.status === 'failed') throw new Error(`failover failed: ${u.error}`);
      return u.status === 'moved' ? u : undefined;
    }, 120_000);
    // The latest verified backup of mainpc's store: the one the failback carried home.
    expect(db.backupId).toMatch(/^failback-mainpc-db-.*\.from-pc2\.from-mainpc$/);
    expect(await psql('pc2', ROWS_SQL)).toBe(home);
    if (process.env.MIGRATE_RECORD_HISTORIES) {
      await client.workflow.getHandle(`failover-${project}-mainpc`).result();
      await recordHistory(world!, 'failover-moved', `failover-${project}-mainpc`);
    }
    const history = await historyText(client, `failover-${project}-mainpc`);
    expect(history).toContain('a write freeze left in its data');
    expect(await psql('pc2', 'SHOW default_transaction_read_only')).toBe('off');
    await psql('pc2', "INSERT INTO notes VALUES (1200, 'on pc2 again')");
  }, 180_000);
});
