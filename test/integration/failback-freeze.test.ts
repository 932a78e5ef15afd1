/**
 * A stateful failback's write freeze (issue 12), on one engine with in-process host workers, a real
 * NATS server (the fence records), a real PostgreSQL 15 and the real workflows: the database is
 * deployed on mainpc, backed up, failed over to pc2 (failoverHost, approved), written to there, then
 * failed back to mainpc:
 *
 *   - a failback that fails partway (mainpc's copy cannot start: its port is taken on mainpc's
 *     address, after the freeze, the backup and the moved copy's stop): the copy on pc2 serves
 *     again with every row, unfrozen (a new session writes), its fence back, mainpc's copy stopped:
 *     one copy runs;
 *   - a failback while a client keeps writing to pc2's copy over tcp: every write the client saw
 *     acknowledged is at home afterwards (zero loss), the ones refused were refused with an error
 *     (the read-only freeze among them), and no row is there that the client never sent.
 *
 * Asserts on the world: rows, containers, fence records, the workflow's history (no password in it).
 */
import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Dockerode from 'dockerode';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/schema.js';
import { buildPlan, type Plan } from '../../src/plan/plan.js';
import { LABELS } from '../../src/plan/queues.js';
import { runTool } from '../../src/activities/exec.js';
import { onPath } from '../../src/dev/linux.js';
import { startNatsServer, type NatsServer } from '../../src/dev/nats-server.js';
import { connectPlane, fencesOf } from '../../src/health/plane.js';
import { approveFailover, backupNow, decideRelease, failback, failbackWorkflowId, failoverProgress, followDeploy, startDeploy, startFailover } from '../../src/ops/index.js';
import { ensureHostImage, postgresImageSpec, TEST_POSTGRES_IMAGE } from '../helpers/host-image.js';
import { historyText, startWorld, type TestWorld } from '../helpers/temporal.js';
import { eventually } from '../helpers/eventually.js';

const docker = new Dockerode();
const pid = process.pid;
const project = `hlfz${pid}`;
const HOME = '127.0.21.1';
const AWAY = '127.0.21.2';
const DB_PORT = 28501;
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
      environment: { POSTGRES_PASSWORD: { from_env: pgVar }, PGPASSWORD: { from_env: pgVar } },
      healthcheck: { exec: ['psql', '-h', '/var/run/postgresql', '-U', 'postgres', '-tAc', 'SELECT 1'], interval: '500ms', timeout: '3s', retries: 3, start_period: '60s' },
      placement: { host: 'mainpc' },
      failover: { to: ['pc2'], stateful: true, backup: 'pg' },
    },
  },
  backups: {
    directory: backupDir,
    postgres: [{ name: 'pg', host: 'mainpc', via: 'docker-exec', unit: 'db', database: 'postgres', user: 'postgres', password: { from_env: pgVar } }],
  },
});

const container = (host: string) => `${project}_${host}_db`;

/** psql inside a host's `db` container, on its socket, as a client would (no override of the freeze). */
async function psql(host: string, sql: string): Promise<string> {
  const r = await runTool(docker, container(host), ['psql', '-h', '/var/run/postgresql', '-U', 'postgres', '-d', 'postgres', '-tAc', sql], { env: { PGPASSWORD: pgSecret } });
  if (r.code !== 0) throw new Error(`psql on ${host}: ${r.stderr.trim()}`);
  return r.stdout.trim();
}
const ROWS_SQL = "SELECT count(*) || ':' || md5(string_agg(id || '=' || body, ',' ORDER BY id)) FROM notes";
const ids = async (host: string) => new Set((await psql(host, 'SELECT id FROM notes')).split('\n').filter(Boolean).map(Number));

/** Which hosts run a copy of the database right now. */
async function copies(): Promise<string[]> {
  const list = await docker.listContainers({ filters: { label: [`${LABELS.project}=${project}`] } });
  return list.map((c) => c.Names[0]!.slice(1)).filter((n) => n.endsWith('_db')).map((n) => n.split('_')[1]!).sort();
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
    world = await startWorld(inventory);
    const { client } = world;

    // Deployed on mainpc, rows written, a verified backup taken.
    const release = `hlfz-${pid}`;
    const { error } = await followDeploy(await startDeploy(client, plan, { release, skipBackup: 'the test takes its own' }));
    expect(error).toBeUndefined();
    expect((await decideRelease(client, release, 'confirm', {}, project)).status).toBe('confirmed');
    await psql('mainpc', "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 200) g");
    expect((await backupNow(client, plan.backups!, `hlfz-${pid}`)).status).toBe('verified');

    // mainpc judged lost: failoverHost fences its copy, and, approved, starts the database on pc2 with the backup.
    await startFailover(client, inventory, { host: 'mainpc', state: 'lost', reason: 'the test says so' }, ['pc2']);
    await eventually('db awaiting approval', async () => ((await failoverProgress(client, project, 'mainpc')).units[0]?.status === 'awaiting-approval' ? true : undefined), 60_000);
    await approveFailover(client, project, 'mainpc', 'db');
    await eventually('db moved to pc2', async () => {
      const u = (await failoverProgress(client, project, 'mainpc')).units[0]!;
      if (u.status === 'failed') throw new Error(`failover failed: ${u.error}`);
      return u.status === 'moved' ? u : undefined;
    }, 120_000);
    await eventually('one copy, on pc2', async () => ((await copies()).join() === 'pc2' ? true : undefined), 30_000);
    // Written on pc2 while failed over: only pc2's copy holds them.
    await psql('pc2', "INSERT INTO notes SELECT g, 'on pc2 ' || g FROM generate_series(1001, 1050) g");
  }, 300_000);

  afterAll(async () => {
    await world?.close();
    const left = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
    await Promise.all(left.map((c) => docker.getContainer(c.Id).remove({ force: true, v: true }).catch(() => undefined)));
    await nats?.stop();
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('a failback failing partway (the home copy cannot start) leaves pc2\'s copy serving, every row there, unfrozen; one copy runs', async () => {
    const before = await psql('pc2', ROWS_SQL);
    expect(before).toMatch(/^250:/);
    // mainpc's copy cannot start: something else holds its port on mainpc's address.
    const squatter = net.createServer((s) => s.destroy());
    await new Promise<void>((resolve, reject) => squatter.once('error', reject).listen(DB_PORT, HOME, resolve));
    try {
      const err = await failback(world!.client, inventory, 'mainpc').then(() => undefined, (e: Error & { cause?: Error }) => e);
      expect(err?.cause?.message ?? err?.message).toMatch(/failback to mainpc failed: db: .*could not start/);
    } finally {
      await new Promise((r) => squatter.close(r));
    }
    const history = await historyText(world!.client, failbackWorkflowId(project, 'mainpc'));
    // It got past the freeze, the backup and the stop before it failed; the freeze was lifted.
    for (const step of ['freezePostgres', 'dumpPostgres', 'verifyPostgres', 'adoptFailoverBackup', 'stopContainer', 'thawPostgres']) expect(history).toContain(`"name":"${step}"`);
    expect(history).toMatch(/could not start/);
    expect(history).not.toContain(pgSecret);

    expect(await copies()).toEqual(['pc2']);
    expect(await fences()).toEqual(['mainpc.db→pc2']);
    const serving = await eventually('pc2 answers', () => psql('pc2', ROWS_SQL), 60_000);
    expect(serving).toBe(before);
    // Unfrozen: a new session is read-write, and writes.
    expect(await psql('pc2', 'SHOW default_transaction_read_only')).toBe('off');
    await psql('pc2', "INSERT INTO notes VALUES (1100, 'after the failed failback')");
    expect(await psql('pc2', ROWS_SQL)).toMatch(/^251:/);
  }, 180_000);

  it('a failback while a client writes to pc2\'s copy: every acknowledged write is at home, the others were refused with an error', async () => {
    const before = await ids('pc2');
    const writer = startWriter(100_000);
    await eventually('the writer writes', async () => (writer.acked.length >= 5 ? true : undefined), 30_000);
    let result;
    try {
      result = await failback(world!.client, inventory, 'mainpc');
    } finally {
      await writer.stop();
    }
    const home = await ids('mainpc');
    const lost = [...before, ...writer.acked].filter((id) => !home.has(id));
    expect(lost).toEqual([]);
    expect(result.units).toEqual([{ unit: 'db', from: 'pc2', status: 'back', writes: 'frozen' }]);
    expect(await copies()).toEqual(['mainpc']);
    expect(await fences()).toEqual([]);
    // Every row at home was written before, or sent by the client (acknowledged, or refused in doubt).
    const sent = new Set([...before, ...writer.acked, ...writer.refused.map((r) => r.id)]);
    expect([...home].filter((id) => !sent.has(id))).toEqual([]);
    // The window was exercised: writes were refused, loudly, the freeze's read-only refusal among them.
    expect(writer.refused.length).toBeGreaterThan(0);
    expect(writer.refused.some((r) => /read-only transaction/.test(r.error))).toBe(true);
    expect(writer.acked.length).toBeGreaterThan(0);
    console.info(`failback under writes: ${writer.acked.length} acknowledged (all at home), ${writer.refused.length} refused (${[...new Set(writer.refused.map((r) => r.error.replace(/\d+/g, 'N')))].slice(0, 4).join(' | ')})`);
    // Home serves read-write (the freeze was on pc2's copy only, and that copy is gone).
    expect(await psql('mainpc', 'SHOW default_transaction_read_only')).toBe('off');
  }, 180_000);
});
