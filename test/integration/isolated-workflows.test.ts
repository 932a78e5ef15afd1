/**
 * The real workflows on isolated hosts (issue 11 items 2 and 5): mainpc and pc2 are each a network
 * namespace with its own dockerd and its own `migrate worker` process, reaching this run's Temporal
 * server over the bridge. A stub stack is deployed (a service on mainpc, a dependent on pc2 that
 * reaches it by name across hosts), then an agent on pc2 is migrated v1 → v2 and rolled back, and
 * a PostgreSQL in mainpc's engine (its image loaded there) is backed up by docker exec and verified.
 *
 * Asserts on the world: which engine holds which container and image (the stub image is built by
 * each host's worker on its own engine, under a tag the root engine never has), a real request from
 * the pc2 container to the mainpc service by name, the batch's containers after the rollback, and
 * the identity of the worker that ran pc2's activities (the process inside pc2's namespace).
 * Needs root, `ip` and `nsenter` (CI has them); skips with the reason otherwise.
 */
import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { isolatedHostsUnsupported, netnsId, netnsOfPid, removeStaleIsolatedHosts, defaultStateDir } from '../../src/dev/isolated-hosts.js';
import { startIsolatedEnvironment, type IsolatedEnvironment } from '../../src/dev/isolated-environment.js';
import { BUSYBOX_CANDIDATES, STUB_CONTEXT } from '../../src/dev/stub-image.js';
import { loadInventoryFiles } from '../../src/inventory/load.js';
import { buildPlan, type Plan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { containerName, hostQueue, LABELS } from '../../src/plan/queues.js';
import { runTool } from '../../src/activities/exec.js';
import { backupNow, decideBatch, decideRelease, followBatch, followDeploy, startBatch, startDeploy } from '../../src/ops/index.js';
import { loadImageInto } from '../../src/dev/image-transfer.js';
import { ensureHostImage, postgresImageSpec, TEST_POSTGRES_IMAGE } from '../helpers/host-image.js';
import { startNatsServer, type NatsServer } from '../../src/dev/nats-server.js';
import { freePort } from '../../src/dev/temporal-server.js';
import { snapshotHealth } from '../../src/health/aggregator.js';
import { planeTarget } from '../../src/ops/health.js';
import { eventually } from '../helpers/eventually.js';

const prefix = 'isowf';
const subnet = '10.231.8.0/24';
const stateDir = defaultStateDir(prefix);
const project = `isowf${process.pid}`;
/** A tag no other test builds: the root engine must never get it. */
const image = `agent-migrate/stub-agent:isowf${process.pid}`;
const unsupported = await isolatedHostsUnsupported();
const root = new Dockerode();

/** Batch workflow ids are the batch's name: unique to this run, as the server is shared. */
const batch = `isowf${process.pid}-batch-1`;
const pgVar = `MIGRATE_TEST_ISOWF_PG_PASSWORD_${process.pid}`;
const pgSecret = `pg-${process.pid}-${Math.random().toString(36).slice(2)}`;
const probe = { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '1s' };
const inventoryDoc = (backupDir: string, natsPort: number) => ({
  version: 1,
  project,
  hosts: { mainpc: {}, pc2: {} },
  // A NATS on this machine's loopback: the environment forwards it onto the bridge for the hosts.
  health: { nats: [`nats://127.0.0.1:${natsPort}`], subjects: `${project}.health`, heartbeat: '250ms', lost_after: '1s' },
  services: {
    // Started by the test itself in mainpc's engine (a real PostgreSQL); never deployed here.
    db: { image: TEST_POSTGRES_IMAGE, placement: { host: 'mainpc' } },
    api: { image: 'agentsys/api:1', ports: ['8080:8080'], healthcheck: probe, placement: { host: 'mainpc' } },
    web: { image: 'agentsys/web:1', ports: ['8081:8080'], depends_on: ['api'], healthcheck: probe, placement: { host: 'pc2' } },
  },
  agents: {
    Scout: { image: 'agentsys/scout:2', ports: ['7100:8080'], healthcheck: probe, placement: { host: 'pc2' } },
  },
  batches: [{ name: batch, agents: ['Scout'], concurrency: 1, max_failures: 1, approval: false }],
  backups: {
    directory: backupDir,
    postgres: [{ name: 'pg', host: 'mainpc', via: 'docker-exec', unit: 'db', database: 'appdb', user: 'postgres', password: { from_env: pgVar } }],
  },
});

/** The plan with the test's stub tag, built by each unit's own worker from the stub folder (db left out: the test runs it). */
const stubbed = (plan: Plan, version: string) => {
  const { db: _db, ...units } = stubPlan(plan, { image, version, build: { context: STUB_CONTEXT, hostFiles: { busybox: BUSYBOX_CANDIDATES } } }).units;
  return { ...plan, units };
};

async function hasImage(docker: Dockerode, tag: string): Promise<boolean> {
  return docker.getImage(tag).inspect().then(() => true, () => false);
}

async function projectContainers(docker: Dockerode): Promise<{ name: string; image: string; state: string; id: string }[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
  return list.map((c) => ({ name: c.Names[0]!.slice(1), image: c.Image, state: c.State, id: c.Id })).sort((a, b) => a.name.localeCompare(b.name));
}

/** The identities of the workers that started the activities scheduled on `queue` in a workflow's history. */
async function activityWorkers(client: Client, workflowId: string, queue: string): Promise<Set<string>> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  const scheduledOnQueue = new Set<string>();
  const identities = new Set<string>();
  for (const e of history.events ?? []) {
    if (e.activityTaskScheduledEventAttributes?.taskQueue?.name === queue) scheduledOnQueue.add(String(e.eventId));
    const started = e.activityTaskStartedEventAttributes;
    if (started && scheduledOnQueue.has(String(started.scheduledEventId))) identities.add(started.identity ?? '');
  }
  return identities;
}

describe.skipIf(unsupported)(`workflows on isolated hosts${unsupported ? ` (skipped: ${unsupported})` : ''}`, () => {
  let dir: string | undefined;
  let env: IsolatedEnvironment | undefined;
  let connection: Connection | undefined;
  let client: Client;
  let plan: Plan;
  let engines: { mainpc: Dockerode; pc2: Dockerode };
  let nats: NatsServer | undefined;
  let natsPort: number;
  const timings: Record<string, number> = {};

  beforeAll(async () => {
    await removeStaleIsolatedHosts(stateDir);
    dir = await mkdtemp(path.join(os.tmpdir(), 'isowf-'));
    const inventoryFile = path.join(dir, 'inventory.yaml');
    natsPort = await freePort();
    nats = await startNatsServer({ address: '127.0.0.1', port: natsPort, storeDir: path.join(dir, 'nats') });
    await writeFile(inventoryFile, stringify(inventoryDoc(path.join(dir, 'backups'), natsPort)));
    process.env[pgVar] = pgSecret; // the workers inherit it: the secret never enters the inventory or Temporal
    process.env.MIGRATE_WORKFLOW_BUNDLE = inject('workflowBundle'); // built once by global-setup
    const started = Date.now();
    env = await startIsolatedEnvironment({
      inventory: (await loadInventoryFiles([inventoryFile])).inventory, inventoryFiles: [inventoryFile], dataDir: path.join(dir, 'data'),
      prefix, subnet, stateDir, temporal: { address: inject('temporalAddress') },
    });
    timings.environmentMs = Date.now() - started;
    // The plan as the workers see it: the override puts each host at its bridge address.
    plan = buildPlan((await loadInventoryFiles(env.inventoryFiles)).inventory);
    engines = { mainpc: env.iso.docker('mainpc'), pc2: env.iso.docker('pc2') };
    connection = await Connection.connect({ address: inject('temporalAddress') });
    client = new Client({ connection });
  }, 180_000);

  afterAll(async () => {
    await connection?.close();
    await env?.stop(); // workers, then the hosts: their engines' data roots (containers, images) go with them
    await removeStaleIsolatedHosts(stateDir);
    await nats?.stop();
    await root.getImage(image).remove({ force: true }).catch(() => undefined); // only there if the test failed
    if (dir) await rm(dir, { recursive: true, force: true });
    console.info(`isolated workflows: ${JSON.stringify(timings)}`);
  }, 120_000);

  it('deploys: each host\'s worker builds the stub on its own engine, each unit runs only on its host, pc2 reaches mainpc by name', async () => {
    expect(env!.stubLoaded).toBe(false);
    for (const docker of [root, engines.mainpc, engines.pc2]) expect(await hasImage(docker, image)).toBe(false);
    expect(plan.units.web!.extraHosts).toEqual([`api:${env!.iso.host('mainpc').address}`]);

    const release = `isowf-${process.pid}`;
    const started = Date.now();
    const handle = await startDeploy(client, stubbed(plan, '1'), { release, skipBackup: 'no databases in this test' });
    const { progress, error } = await followDeploy(handle);
    timings.deployMs = Date.now() - started;
    expect(error).toBeUndefined();
    expect(progress.phase).toBe('pending-confirmation');
    expect((await decideRelease(client, release, 'confirm', {}, project)).status).toBe('confirmed');

    // The image: on both hosts' engines, never on the root engine (the client's).
    expect(await hasImage(engines.mainpc, image)).toBe(true);
    expect(await hasImage(engines.pc2, image)).toBe(true);
    expect(await hasImage(root, image)).toBe(false);

    // Each unit in its own host's engine only.
    const api = containerName(project, 'mainpc', 'api');
    const web = containerName(project, 'pc2', 'web');
    expect((await projectContainers(engines.mainpc)).map((c) => [c.name, c.state])).toEqual([[api, 'running']]);
    expect((await projectContainers(engines.pc2)).map((c) => [c.name, c.state])).toEqual([[web, 'running']]);
    expect(await projectContainers(root)).toEqual([]);

    // A real cross-host request: the container on pc2 asks `api` (mainpc's address, published port).
    const res = await runTool(engines.pc2, web, ['sh', '-c', 'printf "GET /health HTTP/1.0\\r\\nHost: api\\r\\n\\r\\n" | nc -w 3 api 8080']);
    expect(res.stdout).toMatch(/^HTTP\/1\.0 200/);
    expect(res.stdout).toContain('"status":"ok"');

    // pc2's activities were run by the worker process inside pc2's namespace.
    const pc2Worker = env!.workers.find((w) => w.host === 'pc2')!;
    expect(await netnsOfPid(pc2Worker.pid)).toBe(await netnsId(env!.iso.host('pc2').netns));
    const identities = await activityWorkers(client, handle.workflowId, hostQueue('pc2'));
    expect(identities.size).toBe(1);
    expect([...identities][0]).toMatch(new RegExp(`^pc2@.*:${pc2Worker.pid}$`));
  }, 240_000);

  it('every host\'s worker publishes to the health plane on this machine\'s loopback NATS, forwarded onto the bridge', async () => {
    const seen = (await loadInventoryFiles(env!.inventoryFiles)).inventory;
    expect(seen.health!.nats).toEqual([`nats://${env!.iso.bridgeAddress}:${natsPort}`]);
    // This process reaches the same server on loopback (the forward is for the bridge's hosts).
    const target = planeTarget(seen);
    target.settings = { ...target.settings, nats: [`nats://127.0.0.1:${natsPort}`] };
    const view = await eventually('both hosts up, their services healthy, in the health view', async () => {
      const v = await snapshotHealth(target);
      const ok = v.hosts.every((h) => h.state === 'up') && ['api', 'web'].every((u) => v.units.some((x) => x.unit === u && x.state === 'healthy'));
      return ok ? v : undefined;
    });
    expect(view.hosts.map((h) => [h.host, h.state, h.heartbeat?.worker.pid])).toEqual([
      ['mainpc', 'up', env!.workers.find((w) => w.host === 'mainpc')!.pid], ['pc2', 'up', env!.workers.find((w) => w.host === 'pc2')!.pid],
    ]);
    expect(view.units.filter((u) => u.unit === 'api' || u.unit === 'web').map((u) => [u.host, u.unit, u.state])).toEqual([['mainpc', 'api', 'healthy'], ['pc2', 'web', 'healthy']]);
  });

  it('migrates an agent on pc2 (v1 → v2) in pc2\'s engine only, and rolls it back exactly', async () => {
    const scout = containerName(project, 'pc2', 'Scout');
    const v1run = await startBatch(client, stubbed(plan, '1'), batch, { force: true, samples: 5, autoConfirm: true, skipBackup: 'no databases in this test' });
    expect((await followBatch(v1run)).outcome).toBe('migrated');
    await v1run.result(); // confirmed: its workflow closes, and the next run may take the same id
    const before = (await projectContainers(engines.pc2)).find((c) => c.name === scout)!;
    expect(before.state).toBe('running');

    const started = Date.now();
    const handle = await startBatch(client, stubbed(plan, '2'), batch, { force: true, samples: 5, skipBackup: 'no databases in this test' });
    const v2 = await followBatch(handle);
    timings.batchMs = Date.now() - started;
    expect(v2.outcome).toBe('migrated');
    const during = await projectContainers(engines.pc2);
    const serving = during.find((c) => c.name === scout)!;
    expect(serving.id).not.toBe(before.id);
    expect(during.map((c) => c.name)).toContain(`${scout}.prev`); // v1 held, stopped, for the rollback
    const env2 = (await engines.pc2.getContainer(serving.id).inspect()).Config.Env;
    expect(env2).toContain('AGENT_VERSION=2');
    expect((await projectContainers(engines.mainpc)).map((c) => c.name)).not.toContain(scout);
    expect((await projectContainers(root))).toEqual([]);

    const pc2Worker = env!.workers.find((w) => w.host === 'pc2')!;
    const identities = await activityWorkers(client, handle.workflowId, hostQueue('pc2'));
    expect([...identities]).toEqual([expect.stringMatching(new RegExp(`^pc2@.*:${pc2Worker.pid}$`))]);

    const decision = await decideBatch(client, project, batch, 'rollback');
    expect(decision).toMatchObject({ status: 'rolled-back', exact: true, differences: [] });
    const after = await projectContainers(engines.pc2);
    const back = after.find((c) => c.name === scout)!;
    expect(back.id).toBe(before.id); // exactly the v1 container again
    expect(back.state).toBe('running');
    expect(after.map((c) => c.name)).not.toContain(`${scout}.prev`);
  }, 240_000);

  it('backs up a PostgreSQL in mainpc\'s engine through docker exec, run by mainpc\'s worker, and verifies it', async () => {
    const started = Date.now();
    await ensureHostImage(root, postgresImageSpec());
    await loadImageInto(root, engines.mainpc, TEST_POSTGRES_IMAGE);
    timings.loadPostgresMs = Date.now() - started;
    const name = containerName(project, 'mainpc', 'db');
    const db = await engines.mainpc.createContainer({ name, Image: TEST_POSTGRES_IMAGE, Env: [`POSTGRES_PASSWORD=${pgSecret}`], Labels: { [LABELS.project]: project } });
    await db.start();
    const psql = (sql: string, database = 'postgres') => runTool(engines.mainpc, name, ['psql', '-h', '/var/run/postgresql', '-U', 'postgres', '-d', database, '-tAc', sql], { env: { PGPASSWORD: pgSecret } });
    const deadline = Date.now() + 60_000;
    while ((await psql('SELECT 1').catch(() => ({ stdout: '' }))).stdout.trim() !== '1') {
      if (Date.now() > deadline) throw new Error('PostgreSQL in mainpc\'s engine did not answer within 60 s');
      await new Promise((r) => setTimeout(r, 300));
    }
    await psql('CREATE DATABASE appdb');
    await psql('CREATE TABLE notes (id int PRIMARY KEY, body text); INSERT INTO notes SELECT g, md5(g::text) FROM generate_series(1, 500) g', 'appdb');

    const backupStarted = Date.now();
    const result = await backupNow(client, plan.backups!, `isowf-${process.pid}`);
    timings.backupMs = Date.now() - backupStarted;
    expect(result.status).toBe('verified');
    // The dump is in the store the inventory names, under mainpc and the backup's id.
    expect((await readdir(path.join(dir!, 'backups', 'mainpc', result.id))).sort()).toEqual(['manifest.json', 'pg.dump']);
    // It was taken by the worker inside mainpc's namespace.
    const mainpcWorker = env!.workers.find((w) => w.host === 'mainpc')!;
    const identities = await activityWorkers(client, `backup-isowf-${process.pid}`, hostQueue('mainpc'));
    expect([...identities]).toEqual([expect.stringMatching(new RegExp(`^mainpc@.*:${mainpcWorker.pid}$`))]);
    expect(await projectContainers(engines.pc2).then((cs) => cs.map((c) => c.name))).not.toContain(name);
    expect(await projectContainers(root)).toEqual([]);
  }, 240_000);
});
