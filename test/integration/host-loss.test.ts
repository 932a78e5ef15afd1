/**
 * Host loss on isolated hosts (issue 12): mainpc and pc2 each a network namespace with its own
 * dockerd and `migrate worker`, a real NATS server (JetStream) on the bridge, this run's Temporal
 * server. The workers publish the health plane; the test runs the aggregator (with failover armed,
 * as `migrate health --watch --failover --stub` does) and drives the faults:
 *
 *   - pc2 cut off from NATS only (a firewall rule in its namespace): reported *partitioned*, nothing moved;
 *   - pc2's link cut: reported *lost*; failoverHost starts pc2's stateless agents on mainpc, healthy;
 *     the stateful unit (a real PostgreSQL 15, built FROM scratch out of this machine's packages)
 *     waits for approval, then starts on mainpc with its latest verified backup (taken on pc2 before
 *     the cut, read from pc2's store: the hosts share this machine's files) restored: its rows are
 *     there; the link back: pc2's copies stay stopped (fenced), exactly one copy of each runs;
 *     `migrate failback pc2` moves them back, exactly, the rows written on mainpc meanwhile with the database;
 *   - pc2's worker killed, its host and engine alive: reported *worker lost*, nothing moved.
 *
 * Asserts on the world: each engine's containers, the failover workflow's progress, the health view
 * read by the `migrate health` binary. Needs root, `ip`, `nsenter`, `iptables` and `nats-server`;
 * skips with the reason otherwise.
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { allocateAddresses, defaultStateDir, isolatedHostsUnsupported, removeStaleIsolatedHosts } from '../../src/dev/isolated-hosts.js';
import { MIGRATE_BIN, startIsolatedEnvironment, type IsolatedEnvironment } from '../../src/dev/isolated-environment.js';
import { cutLink, killWorker, restoreLink } from '../../src/dev/faults.js';
import { onPath } from '../../src/dev/linux.js';
import { startNatsServer, type NatsServer } from '../../src/dev/nats-server.js';
import { freePort } from '../../src/dev/temporal-server.js';
import { BUSYBOX_CANDIDATES, STUB_CONTEXT } from '../../src/dev/stub-image.js';
import { loadInventoryFiles } from '../../src/inventory/load.js';
import type { Inventory } from '../../src/inventory/schema.js';
import { buildPlan, type Plan, type UnitSpec } from '../../src/plan/plan.js';
import { stubPlan, stubUnit } from '../../src/plan/stub.js';
import { LABELS } from '../../src/plan/queues.js';
import { runTool } from '../../src/activities/exec.js';
import { loadImageInto } from '../../src/dev/image-transfer.js';
import { ensureHostImage, postgresImageSpec, TEST_POSTGRES_IMAGE } from '../helpers/host-image.js';
import { backupNow, decideRelease, failback, failoverProgress, failoverWorkflowId, followDeploy, approveFailover, startDeploy, watchHealth } from '../../src/ops/index.js';
import type { Aggregator } from '../../src/health/aggregator.js';
import type { Aggregate } from '../../src/health/judge.js';
import { eventually } from '../helpers/eventually.js';

const exec = promisify(execFile);
const prefix = 'hl';
const subnet = '10.231.20.0/24';
const stateDir = defaultStateDir(prefix);
const project = `hl${process.pid}`;
const image = `agent-migrate/stub-agent:hl${process.pid}`;
const unsupported = (await isolatedHostsUnsupported()) ?? ((await onPath('nats-server')) ? undefined : '`nats-server` is missing: install Debian\'s nats-server (scripts/setup.sh does)');
const bridge = allocateAddresses(subnet, 2).bridge;
const probe = { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '1s' };
const MOVED = ['Echo', 'Scout', 'db'];
const pgVar = `MIGRATE_TEST_HL_PG_PASSWORD_${process.pid}`;
const pgSecret = `pg-${process.pid}-${Math.random().toString(36).slice(2)}`;
/** Read by the workers (they inherit this process's environment): the database's password, never in a workflow's input. */
process.env[pgVar] = pgSecret;
const root = new Dockerode();

const stubOptions = { image, version: '1', build: { context: STUB_CONTEXT, hostFiles: { busybox: BUSYBOX_CANDIDATES } } };
/** The stand-in image for every unit but the database, which runs the real PostgreSQL. */
const stubbed = (spec: UnitSpec) => (spec.name === 'db' ? spec : stubUnit(spec, stubOptions));

const inventoryDoc = (natsUrl: string, backupDir: string) => ({
  version: 1,
  project,
  hosts: { mainpc: {}, pc2: {} },
  health: { nats: [natsUrl], subjects: `${project}.health`, heartbeat: '250ms', lost_after: '1s' },
  // Scout and Echo stand for pc2's stateless agents; declared as services, the deploy starts them
  // (agents start only through a batch, which adds a minute here and nothing to what is tested).
  services: {
    api: { image: 'agentsys/api:1', ports: ['8080:8080'], healthcheck: probe, placement: { host: 'mainpc' }, criticality: 'critical' },
    // A database: it moves only when an operator approves, and comes up with its latest verified backup.
    db: {
      image: TEST_POSTGRES_IMAGE,
      environment: { POSTGRES_PASSWORD: { from_env: pgVar }, PGPASSWORD: { from_env: pgVar } },
      healthcheck: { exec: ['psql', '-h', '/var/run/postgresql', '-U', 'postgres', '-tAc', 'SELECT 1'], interval: '500ms', timeout: '3s', retries: 3, start_period: '60s' },
      placement: { host: 'pc2' },
      failover: { to: ['mainpc'], stateful: true, backup: 'pg' },
    },
    Scout: { image: 'agentsys/scout:2', ports: ['7100:8080'], healthcheck: probe, placement: { host: 'pc2' }, failover: { to: ['mainpc'] } },
    Echo: { image: 'agentsys/echo:2', ports: ['7101:8080'], healthcheck: probe, placement: { host: 'pc2' }, failover: { to: ['mainpc'] } },
  },
  backups: {
    directory: backupDir,
    postgres: [{ name: 'pg', host: 'pc2', via: 'docker-exec', unit: 'db', database: 'postgres', user: 'postgres', password: { from_env: pgVar } }],
  },
});

/** psql inside a host's `db` container, on its socket. */
async function psql(docker: Dockerode, host: string, sql: string): Promise<string> {
  const r = await runTool(docker, `${project}_${host}_db`, ['psql', '-h', '/var/run/postgresql', '-U', 'postgres', '-d', 'postgres', '-tAc', sql], { env: { PGPASSWORD: pgSecret } });
  if (r.code !== 0) throw new Error(`psql on ${host}: ${r.stderr}`);
  return r.stdout.trim();
}
const ROWS_SQL = "SELECT count(*) || ':' || md5(string_agg(id || '=' || body, ',' ORDER BY id)) FROM notes";

async function running(docker: Dockerode): Promise<string[]> {
  const list = await docker.listContainers({ filters: { label: [`${LABELS.project}=${project}`] } });
  return list.map((c) => c.Names[0]!.slice(1)).sort();
}

/** Which hosts run a copy of `unit` right now. */
async function copies(engines: Record<string, Dockerode>, unit: string): Promise<string[]> {
  const out: string[] = [];
  for (const [host, docker] of Object.entries(engines)) {
    if ((await running(docker)).includes(`${project}_${host}_${unit}`)) out.push(host);
  }
  return out;
}

const hostState = (v: Aggregate, host: string) => v.hosts.find((h) => h.host === host)?.state;

describe.skipIf(unsupported)(`host loss on isolated hosts${unsupported ? ` (skipped: ${unsupported})` : ''}`, () => {
  let dir: string | undefined;
  let env: IsolatedEnvironment | undefined;
  let nats: NatsServer | undefined;
  let connection: Connection | undefined;
  let client: Client;
  let inventory: Inventory;
  let plan: Plan;
  let aggregator: Aggregator | undefined;
  let engines: Record<'mainpc' | 'pc2', Dockerode>;
  const failovers: string[] = [];
  const timings: Record<string, number> = {};
  let dropRule: string[] | undefined;

  beforeAll(async () => {
    await removeStaleIsolatedHosts(stateDir);
    dir = await mkdtemp(path.join(os.tmpdir(), 'hl-'));
    const natsPort = await freePort();
    const inventoryFile = path.join(dir, 'inventory.yaml');
    await writeFile(inventoryFile, stringify(inventoryDoc(`nats://${bridge}:${natsPort}`, path.join(dir, 'backups'))));
    process.env.MIGRATE_WORKFLOW_BUNDLE = inject('workflowBundle');
    const started = Date.now();
    env = await startIsolatedEnvironment({
      inventory: (await loadInventoryFiles([inventoryFile])).inventory, inventoryFiles: [inventoryFile], dataDir: path.join(dir, 'data'),
      prefix, subnet, stateDir, temporal: { address: inject('temporalAddress') },
    });
    // The health plane's NATS on the bridge (it exists now): the workers, waiting for it, connect.
    nats = await startNatsServer({ address: bridge, port: natsPort, storeDir: path.join(dir, 'nats') });
    timings.environmentMs = Date.now() - started;
    inventory = (await loadInventoryFiles(env.inventoryFiles)).inventory;
    plan = buildPlan(inventory);
    engines = { mainpc: env.iso.docker('mainpc'), pc2: env.iso.docker('pc2') };
    // No registry: the PostgreSQL image is built here and loaded into both hosts' engines.
    const imageStarted = Date.now();
    await ensureHostImage(root, postgresImageSpec());
    await Promise.all([loadImageInto(root, engines.mainpc, TEST_POSTGRES_IMAGE), loadImageInto(root, engines.pc2, TEST_POSTGRES_IMAGE)]);
    timings.postgresImageMs = Date.now() - imageStarted;
    connection = await Connection.connect({ address: inject('temporalAddress') });
    client = new Client({ connection });
    aggregator = await watchHealth(inventory, {
      failover: { client, mapSpec: stubbed },
      onFailover: (host) => failovers.push(host),
    });
  }, 180_000);

  afterAll(async () => {
    await aggregator?.stop();
    if (dropRule && env) await exec('nsenter', [`--net=/var/run/netns/${env.iso.host('pc2').netns}`, '--', 'iptables', '-D', ...dropRule]).catch(() => undefined);
    await connection?.close();
    await env?.stop();
    await nats?.stop();
    await removeStaleIsolatedHosts(stateDir);
    if (dir && !process.env.HL_KEEP) await rm(dir, { recursive: true, force: true });
    console.info(`host loss: ${JSON.stringify(timings)} (${dir})`);
  }, 120_000);

  it('deploys; `migrate health` shows every unit on every host, healthy, with the age of each reading', async () => {
    await aggregator!.until((v) => v.hosts.every((h) => h.state === 'up'), 60_000);
    const release = `hl-${process.pid}`;
    const stubbedPlan = { ...stubPlan(plan, stubOptions) };
    stubbedPlan.units = { ...stubbedPlan.units, db: plan.units.db! };
    const { error } = await followDeploy(await startDeploy(client, stubbedPlan, { release, skipBackup: 'no databases in this test' }));
    expect(error).toBeUndefined();
    expect((await decideRelease(client, release, 'confirm', {}, project)).status).toBe('confirmed');

    await aggregator!.until((v) => !v.down && v.units.filter((u) => u.state === 'healthy').length === 4, 30_000);
    const { stdout } = await exec(process.execPath, [MIGRATE_BIN, 'health', '--json', ...env!.inventoryFiles.flatMap((f) => ['-i', f])]).catch((err: Error & { stdout?: string; stderr?: string }) => {
      throw new Error(`migrate health failed: ${err.message}\n${err.stdout ?? ''}\n${err.stderr ?? ''}`);
    });
    const view = JSON.parse(stdout) as Aggregate;
    expect(view.hosts.map((h) => [h.host, h.state])).toEqual([['mainpc', 'up'], ['pc2', 'up']]);
    expect(view.units.map((u) => [u.host, u.unit, u.state])).toEqual([['mainpc', 'api', 'healthy'], ['pc2', 'db', 'healthy'], ['pc2', 'Echo', 'healthy'], ['pc2', 'Scout', 'healthy']]);
    for (const u of view.units) expect(u.ageMs).toBeLessThan(5_000);
  }, 240_000);

  it('pc2 cut off from NATS only: reported partitioned (not lost), and nothing moves', async () => {
    const pc2 = env!.iso.host('pc2');
    const port = nats!.url.split(':').pop()!;
    dropRule = ['OUTPUT', '-p', 'tcp', '-d', bridge, '--dport', port, '-j', 'DROP'];
    await exec('nsenter', [`--net=/var/run/netns/${pc2.netns}`, '--', 'iptables', '-I', ...dropRule]);
    const v = await aggregator!.until((view) => hostState(view, 'pc2') !== 'up', 30_000);
    expect(hostState(v, 'pc2')).toBe('partitioned');
    expect(v.hosts.find((h) => h.host === 'pc2')!.reason).toMatch(/cut off from the health plane|still reach/);
    await exec('nsenter', [`--net=/var/run/netns/${pc2.netns}`, '--', 'iptables', '-D', ...dropRule]);
    dropRule = undefined;
    await aggregator!.until((view) => hostState(view, 'pc2') === 'up', 30_000);
    expect(failovers).toEqual([]);
    expect(await running(engines.mainpc)).toEqual([`${project}_mainpc_api`]);
    expect(await running(engines.pc2)).toEqual(MOVED.map((u) => `${project}_pc2_${u}`).sort());
  }, 120_000);

  it('pc2\'s link cut: lost; its stateless agents run healthy on mainpc, the stateful one waits for approval; back, exactly one copy of each', async () => {
    // The database's rows, and a verified backup of them taken on pc2 before the cut.
    await psql(engines.pc2, 'pc2', "CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 300) g");
    const rows = await psql(engines.pc2, 'pc2', ROWS_SQL);
    expect(rows).toMatch(/^300:/);
    const backupStarted = Date.now();
    const backup = await backupNow(client, plan.backups!, `hl-${process.pid}`);
    timings.backupMs = Date.now() - backupStarted;
    expect(backup.status).toBe('verified');
    // Written after the backup: not in it, so not on mainpc after the failover.
    await psql(engines.pc2, 'pc2', "INSERT INTO notes VALUES (1000, 'after the backup')");

    const cutAt = Date.now();
    await cutLink(env!.iso.host('pc2'));
    const lost = await aggregator!.until((v) => hostState(v, 'pc2') !== 'up', 30_000);
    timings.detectionMs = Date.now() - cutAt;
    expect(hostState(lost, 'pc2')).toBe('lost');

    // failoverHost: Scout and Echo moved and healthy on mainpc; kv waits for an operator.
    const progress = await eventually('Scout and Echo moved, kv awaiting approval', async () => {
      const p = await failoverProgress(client, project, 'pc2');
      const by = Object.fromEntries(p.units.map((u) => [u.unit, u.status]));
      return by.Scout === 'moved' && by.Echo === 'moved' && by.db === 'awaiting-approval' ? p : undefined;
    }, 120_000);
    timings.failoverMs = Date.now() - cutAt;
    expect(progress.units.map((u) => [u.unit, u.to])).toEqual([['db', 'mainpc'], ['Echo', 'mainpc'], ['Scout', 'mainpc']]);
    expect(await running(engines.mainpc)).toEqual([`${project}_mainpc_Echo`, `${project}_mainpc_Scout`, `${project}_mainpc_api`]);
    const desc = await client.workflow.getHandle(failoverWorkflowId(project, 'pc2')).describe();
    expect(desc.searchAttributes).toMatchObject({ MigrateKind: ['failover'], MigrateHosts: ['pc2', 'mainpc'] });
    // The aggregate sees the moved agents healthy on mainpc (that worker probes them there).
    await aggregator!.until((v) => ['Echo', 'Scout'].every((u) => v.units.some((r) => r.unit === u && r.host === 'mainpc' && r.state === 'healthy')), 30_000);

    expect(await approveFailover(client, project, 'pc2', 'db')).toEqual({ unit: 'db', to: 'mainpc' });
    const approvedAt = Date.now();
    const db = await eventually('db moved', async () => {
      const u = (await failoverProgress(client, project, 'pc2')).units.find((r) => r.unit === 'db')!;
      if (u.status === 'failed') throw Object.assign(new Error(`db failed: ${u.error}`), { fatal: true });
      return u.status === 'moved' ? u : undefined;
    }, 120_000);
    timings.statefulMoveMs = Date.now() - approvedAt;
    // The latest verified backup, adopted from pc2's store into mainpc's, restored: the backup's rows exactly.
    expect(db.backupId).toBe(`${backup.id}.from-pc2`);
    expect(await psql(engines.mainpc, 'mainpc', ROWS_SQL)).toBe(rows);
    expect(await psql(engines.mainpc, 'mainpc', 'SELECT count(*) FROM notes WHERE id = 1000')).toBe('0');

    // The link back: pc2's worker reads its fences and keeps its copies stopped.
    await restoreLink(env!.iso.host('pc2'));
    const back = await aggregator!.until((v) => hostState(v, 'pc2') === 'up' && MOVED.every((u) => v.units.some((r) => r.unit === u && r.host === 'pc2' && r.state === 'fenced')), 60_000);
    expect(back.down).toBe(false);
    for (const unit of MOVED) expect(await copies(engines, unit)).toEqual(['mainpc']);
    expect(await copies(engines, 'api')).toEqual(['mainpc']);
  }, 300_000);

  it('`failback pc2` moves them back exactly: the same containers on pc2, the rows written on mainpc with them, none left on mainpc', async () => {
    const before = Object.fromEntries(await Promise.all(MOVED.map(async (u) => [u, (await engines.pc2.getContainer(`${project}_pc2_${u}`).inspect()).Id] as const)));
    // Written while failed over: only mainpc's copy holds them; the failback carries them home.
    await psql(engines.mainpc, 'mainpc', "INSERT INTO notes SELECT g, 'on mainpc ' || g FROM generate_series(2001, 2050) g");
    const away = await psql(engines.mainpc, 'mainpc', ROWS_SQL);
    expect(away).toMatch(/^350:/);
    const failbackStarted = Date.now();
    const result = await failback(client, inventory, 'pc2');
    timings.failbackMs = Date.now() - failbackStarted;
    expect(result.units.map((u) => [u.unit, u.status, u.error]).sort()).toEqual(MOVED.map((u) => [u, 'back', undefined]));
    expect(await psql(engines.pc2, 'pc2', ROWS_SQL)).toBe(away);
    const all = await engines.mainpc.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
    expect(all.map((c) => c.Names[0]!.slice(1)).filter((n) => n.includes('_db'))).toEqual([]);
    expect(await running(engines.mainpc)).toEqual([`${project}_mainpc_api`]);
    expect(await running(engines.pc2)).toEqual(MOVED.map((u) => `${project}_pc2_${u}`).sort());
    for (const u of MOVED) expect((await engines.pc2.getContainer(`${project}_pc2_${u}`).inspect()).Id).toBe(before[u]);
    await aggregator!.until((v) => MOVED.every((u) => v.units.some((r) => r.unit === u && r.host === 'pc2' && r.state === 'healthy')), 30_000);
  }, 180_000);

  it('pc2\'s worker killed, its host and engine alive: worker lost, not host lost; nothing moves', async () => {
    const failoversBefore = failovers.length;
    await killWorker(env!.workers.find((w) => w.host === 'pc2')!.pid);
    const v = await aggregator!.until((view) => hostState(view, 'pc2') !== 'up', 30_000);
    expect(hostState(v, 'pc2')).toBe('worker-lost');
    expect(v.hosts.find((h) => h.host === 'pc2')!.reason).toContain('connection refused');
    // Judged again for a while: it stays worker-lost, and no failover starts.
    await new Promise((r) => setTimeout(r, 3_000));
    expect(hostState(aggregator!.current()!, 'pc2')).toBe('worker-lost');
    expect(failovers.length).toBe(failoversBefore);
    expect(await running(engines.mainpc)).toEqual([`${project}_mainpc_api`]);
    expect(await running(engines.pc2)).toEqual(MOVED.map((u) => `${project}_pc2_${u}`).sort());
  }, 120_000);
});
