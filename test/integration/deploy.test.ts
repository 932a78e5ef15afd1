/**
 * `deployStack` on a real Temporal dev server and the real Docker engine, with small stubbed
 * inventories (the stub image stands in for every service). Each test has its own project (and so
 * its own containers, labels and network) and its own loopback addresses; all assertions are on
 * the containers themselves and on the workflow's own record.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { afterAll, describe, expect, inject, it } from 'vitest';
import Dockerode from 'dockerode';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan, type Plan } from '../../src/plan/plan.js';
import { stubPlan, type StubOptions } from '../../src/plan/stub.js';
import { LABELS, ORCHESTRATOR_QUEUE } from '../../src/plan/queues.js';
import { deployStack, type DeployInput, type DeployProgress } from '../../src/workflows/deploy.js';
import { confirmUpdate, rollbackUpdate } from '../../src/workflows/change.js';
import { startWorld, withWorld, type TestWorld } from '../helpers/temporal.js';
import { createOrchestratorWorker } from '../../src/workers/workers.js';
import { STUB_IMAGE } from '../helpers/stub-image.js';
import { recordingHistories, writeHistory } from '../helpers/histories.js';
import { eventually, within } from '../helpers/eventually.js';

const docker = new Dockerode();
const projects: string[] = [];
const hc = { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '2s' };

/** db and cache on mainpc; api after both; web (on pc2) after api. */
function inventory(project: string, octet: number, extra: Record<string, unknown> = {}) {
  projects.push(project);
  return parseInventory({
    version: 1,
    project,
    hosts: { mainpc: { address: `127.0.0.${octet}` }, pc2: { address: `127.0.0.${octet + 1}` } },
    services: {
      db: { image: 'db:15', placement: { host: 'mainpc' }, ports: ['5432:5432'], healthcheck: hc },
      cache: { image: 'cache:7', placement: { host: 'mainpc' }, ports: ['6379:6379'], healthcheck: { tcp: 6379, interval: '200ms', timeout: '1s', retries: 3, start_period: '2s' } },
      api: { image: 'api:1', placement: { host: 'mainpc' }, ports: ['8001:8001'], healthcheck: hc, depends_on: { db: { condition: 'service_healthy' }, cache: { condition: 'service_healthy' } } },
      web: { image: 'web:1', placement: { host: 'pc2' }, ports: ['8051:8051'], healthcheck: hc, depends_on: ['api'] },
      ...extra,
    },
  });
}

function stubbed(plan: Plan, options: Omit<StubOptions, 'image'> = {}): Plan {
  return stubPlan(plan, { image: STUB_IMAGE, ...options });
}

function input(plan: Plan, release: string, extra: Partial<DeployInput> = {}): DeployInput {
  return { release, project: plan.project, units: Object.values(plan.units).filter((u) => u.kind === 'service'), ...extra };
}

async function startDeploy(world: TestWorld, args: DeployInput): Promise<WorkflowHandle<typeof deployStack>> {
  return world.client.workflow.start(deployStack, { taskQueue: ORCHESTRATOR_QUEUE, workflowId: `deploy-${args.release}`, args: [args] });
}

async function waitPhase(handle: WorkflowHandle<typeof deployStack>, done: (p: DeployProgress) => boolean, timeoutMs = 60_000): Promise<DeployProgress> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const p = await handle.query<DeployProgress>('progress');
    if (done(p)) return p;
    if (p.phase === 'failed' || Date.now() > until) throw new Error(`deploy is ${p.phase}: ${JSON.stringify(p, null, 1)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const pendingConfirmation = (p: DeployProgress) => p.phase === 'pending-confirmation';

/** Every container of the project, as the engine sees it (current and `.prev`). */
async function containers(project: string) {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
  return list
    .map((c) => ({ name: c.Names[0]!.slice(1), id: c.Id, image: c.Image, specHash: c.Labels[LABELS.specHash], running: c.State === 'running' }))
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** The project's running container whose name ends so, once there is one. */
function runningContainer(project: string, suffix: string) {
  return eventually(`a running ${suffix} container of ${project}`, async () => (await containers(project)).find((c) => c.name.endsWith(suffix) && c.running));
}

function startedAt(iso: string): number {
  // Docker gives nanoseconds; keep milliseconds (truncating never moves a start earlier than it was… by more than 1 ms).
  return Date.parse(iso.replace(/(\.\d{3})\d*Z$/, '$1Z'));
}

async function cleanup(project: string) {
  for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } })) {
    await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  }
  for (const n of await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } })) {
    await docker.getNetwork(n.Id).remove().catch(() => undefined);
  }
}

afterAll(async () => {
  for (const p of projects) await cleanup(p);
});

describe('deployStack (real Temporal, real Docker, stub images)', () => {
  it('starts each service only after its dependencies are healthy; refuses a second deploy meanwhile; confirm drops nothing it needs', async () => {
    const inv = inventory(`dep${process.pid}a`, 41);
    const plan = stubbed(buildPlan(inv), { env: { db: { AGENT_START_DELAY: '1' } } });
    await withWorld(inv, async (world) => {
      const release = `order-${process.pid}`;
      const handle = await startDeploy(world, input(plan, release));
      const progress = await waitPhase(handle, pendingConfirmation);

      const live = await containers(plan.project);
      expect(live.map((c) => c.name)).toEqual([`${plan.project}_mainpc_api`, `${plan.project}_mainpc_cache`, `${plan.project}_mainpc_db`, `${plan.project}_pc2_web`]);
      for (const [name, unit] of Object.entries(plan.units)) {
        const info = await docker.getContainer(`${plan.project}_${unit.host}_${name}`).inspect();
        expect(progress.units[name]!.phase).toBe('healthy');
        for (const dep of Object.keys(unit.dependsOn)) {
          // The dependent's container started after the dependency was seen healthy.
          expect(startedAt(info.State.StartedAt)).toBeGreaterThanOrEqual(progress.units[dep]!.healthyAt!);
        }
      }
      // Independent services ran in parallel: cache did not wait for the slow db.
      expect(progress.units.cache!.healthyAt!).toBeLessThan(progress.units.db!.healthyAt!);

      // A second deploy of the same project while this one waits for confirmation is refused.
      const second = await startDeploy(world, input(plan, `second-${process.pid}`));
      const refused = await second.result().catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(WorkflowFailedError);
      expect(String((refused as WorkflowFailedError).cause?.message)).toMatch(/another deploy of project .* is running or waiting for confirmation/);

      expect(await handle.executeUpdate(confirmUpdate)).toMatchObject({ status: 'confirmed' });
      const result = await handle.result();
      expect(result.phase).toBe('confirmed');
      expect((await containers(plan.project)).every((c) => c.running && !c.name.endsWith('.prev'))).toBe(true);
    });
  });

  it('a service that never becomes healthy fails the deploy and rolls every host back to exactly what ran before', async () => {
    const inv1 = inventory(`dep${process.pid}b`, 43);
    const plan1 = stubbed(buildPlan(inv1));
    // Release 2 breaks api (it answers 503 forever) and adds a new service.
    const inv2 = inventory(`dep${process.pid}b`, 43, { worker: { image: 'worker:1', placement: { host: 'pc2' }, depends_on: ['db'] } });
    const plan2 = stubbed(buildPlan(inv2), { version: '2', env: { api: { AGENT_MODE: 'unhealthy' } } });
    await withWorld(inv1, async (world) => {
      await startDeploy(world, input(plan1, `good-${process.pid}`, { autoConfirm: true })).then((h) => h.result());
      const before = await containers(plan1.project);
      expect(before).toHaveLength(4);

      const handle = await startDeploy(world, input(plan2, `bad-${process.pid}`));
      const err = await handle.result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect(String((err as WorkflowFailedError).cause?.message)).toMatch(/api.*not healthy.*rolled back: every host runs exactly what it ran before/s);

      // The world: same containers (same ids: the previous ones were brought back), same images and hashes, all running.
      expect(await containers(plan1.project)).toEqual(before);
      const progress = await handle.query<DeployProgress>('progress');
      expect(progress.exact).toBe(true);
      expect(progress.differences).toEqual([]);
      expect(progress.units.api!.phase).toBe('failed');
      expect(progress.units.web!.phase).toBe('skipped'); // never started: its dependency failed
    });
  });

  it('survives its host worker being stopped mid-deploy: completes with no duplicate and no orphan container', async () => {
    const inv = inventory(`dep${process.pid}c`, 45);
    const plan = stubbed(buildPlan(inv), { env: { db: { AGENT_START_DELAY: '3' } } });
    await withWorld(inv, async (world) => {
      const handle = await startDeploy(world, input(plan, `restart-${process.pid}`));
      // db's container runs and its health wait is under way: kill mainpc's worker now.
      await waitPhase(handle, (p) => p.units.db!.phase === 'starting');
      const made = await runningContainer(plan.project, '_db');
      await world.stopHost('mainpc');
      await new Promise((r) => setTimeout(r, 1000));
      await world.startHost('mainpc');
      const progress = await waitPhase(handle, pendingConfirmation);
      expect(Object.values(progress.units).map((u) => u.phase)).toEqual(['healthy', 'healthy', 'healthy', 'healthy']);

      const live = await containers(plan.project);
      expect(live.map((c) => c.name)).toEqual([`${plan.project}_mainpc_api`, `${plan.project}_mainpc_cache`, `${plan.project}_mainpc_db`, `${plan.project}_pc2_web`]);
      expect(live.every((c) => c.running)).toBe(true);
      expect(live.find((c) => c.name.endsWith('_db'))!.id).toBe(made.id); // the same container, not a second one
      expect(progress.units.db!.containerId).toBe(made.id);
      await handle.executeUpdate(confirmUpdate);
    });
  });

  it('survives its host worker PROCESS being killed (SIGKILL) mid-deploy: a new process finishes it, nothing created twice', async () => {
    const project = `dep${process.pid}e`;
    projects.push(project);
    const raw = {
      version: 1,
      project,
      hosts: { mainpc: { address: '127.0.0.49' }, pc2: { address: '127.0.0.50' } },
      services: {
        db: { image: 'db:15', placement: { host: 'mainpc' }, ports: ['5432:5432'], healthcheck: hc },
        web: { image: 'web:1', placement: { host: 'pc2' }, ports: ['8051:8051'], healthcheck: hc, depends_on: ['db'] },
      },
    };
    const inv = parseInventory(raw);
    const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'migrate-kill-')), 'inventory.yaml');
    await writeFile(file, stringify(raw));
    const plan = stubbed(buildPlan(inv), { env: { db: { AGENT_START_DELAY: '4' } } });
    // mainpc's worker is a real `migrate worker` process; pc2's and the workflows run in this process.
    const world = await startWorld(inv, { hosts: ['pc2'] });
    const spawnWorker = () => spawn('./bin/migrate.mjs', ['worker', '--host', 'mainpc', '--no-workflows', '-i', file, '--address', inject('temporalAddress')], { stdio: ['ignore', 'ignore', 'pipe'] });
    let first: ChildProcess | undefined;
    let second: ChildProcess | undefined;
    try {
      first = spawnWorker();
      const handle = await startDeploy(world, input(plan, `kill-${process.pid}`));
      // db's container runs and its health wait runs in the worker process (the call that made the
      // container waits for it: issue #14): kill it, no goodbye.
      await waitPhase(handle, (p) => p.units.db!.phase === 'starting');
      const made = await runningContainer(project, '_db');
      first.kill('SIGKILL');
      await new Promise((r) => first!.once('exit', r));
      second = spawnWorker();
      const progress = await waitPhase(handle, pendingConfirmation, 90_000);
      expect(Object.values(progress.units).map((u) => u.phase)).toEqual(['healthy', 'healthy']);
      const live = await containers(project);
      expect(live.map((c) => c.name)).toEqual([`${project}_mainpc_db`, `${project}_pc2_web`]);
      expect(live.every((c) => c.running)).toBe(true);
      expect(live.find((c) => c.name.endsWith('_db'))!.id).toBe(made.id); // the same container, not a second one
      expect(progress.units.db!.containerId).toBe(made.id);
      // The call that made db's container and waits for it ran twice: once on the killed process, once on its successor.
      const history = await world.client.workflow.getHandle(handle.workflowId).fetchHistory();
      const waits = (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes && (history.events ?? []).find((s) => String(s.eventId) === String(e.activityTaskStartedEventAttributes!.scheduledEventId))?.activityTaskScheduledEventAttributes?.activityType?.name === 'startHealthy');
      expect(waits.some((e) => (e.activityTaskStartedEventAttributes!.attempt ?? 1) >= 2)).toBe(true);
      await handle.executeUpdate(confirmUpdate);
    } finally {
      first?.kill('SIGKILL');
      second?.kill('SIGTERM');
      await world.close();
    }
  });

  it('a release that changes one service replaces only that one; rollback brings the previous release back exactly', async () => {
    const inv = inventory(`dep${process.pid}d`, 47);
    const plan1 = stubbed(buildPlan(inv));
    const plan2 = stubbed(buildPlan(inv), { env: { web: { AGENT_VERSION: '2' } } });
    await withWorld(inv, async (world) => {
      await startDeploy(world, input(plan1, `v1-${process.pid}`, { autoConfirm: true })).then((h) => h.result());
      const before = await containers(plan1.project);

      const handle = await startDeploy(world, input(plan2, `v2-${process.pid}`));
      const progress = await waitPhase(handle, pendingConfirmation);
      expect(Object.fromEntries(Object.entries(progress.units).map(([n, u]) => [n, u.phase]))).toEqual({ api: 'unchanged', cache: 'unchanged', db: 'unchanged', web: 'healthy' });
      const after = await containers(plan1.project);
      const id = (list: typeof after, suffix: string) => list.find((c) => c.name.endsWith(suffix))?.id;
      for (const unit of ['_db', '_cache', '_api']) expect(id(after, unit)).toBe(id(before, unit)); // not restarted
      expect(id(after, '_web')).not.toBe(id(before, '_web'));
      expect(id(after, '_web.prev')).toBe(id(before, '_web')); // kept for rollback

      expect(await handle.executeUpdate(rollbackUpdate, { args: [{}] })).toEqual({ status: 'rolled-back', exact: true, differences: [] });
      expect(await containers(plan1.project)).toEqual(before);
    });
  });

  it('an image its host does not have refuses the deploy before anything stops: the running release is untouched', async () => {
    const inv = inventory(`dep${process.pid}i`, 165);
    const plan1 = stubbed(buildPlan(inv));
    // Release 2 changes db (first in the graph) and gives web (last) an image no engine has.
    const plan2 = stubbed(buildPlan(inv), { env: { db: { AGENT_VERSION: '2' }, web: { AGENT_VERSION: '2' } } });
    plan2.units.web = { ...plan2.units.web!, image: 'agent-migrate/no-such-image:0' };
    await withWorld(inv, async (world) => {
      await startDeploy(world, input(plan1, `i1-${process.pid}`, { autoConfirm: true })).then((h) => h.result());
      const before = await containers(plan1.project);

      const handle = await startDeploy(world, input(plan2, `i2-${process.pid}`));
      const err = await handle.result().then(() => undefined, (e: unknown) => e as WorkflowFailedError);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect(err!.cause?.message).toMatch(/deploy i2-\d+ refused before any change: web: image agent-migrate\/no-such-image:0 is not on host pc2 .*load or pull it on that host, or add build: to the unit/);
      // db, though first and ready, was never retired: every container is the one that ran before.
      expect(await containers(plan1.project)).toEqual(before);
      const progress = await handle.query<DeployProgress>('progress');
      expect(Object.values(progress.units).map((u) => u.phase)).toEqual(['waiting', 'waiting', 'waiting', 'waiting']);
      // The lock is let go: the next deploy runs.
      const fixed = await startDeploy(world, input(stubbed(buildPlan(inv), { env: { web: { AGENT_VERSION: '2' } } }), `i3-${process.pid}`, { autoConfirm: true }));
      expect((await fixed.result()).phase).toBe('confirmed');
    });
  });

  it('an automatic confirm starts again a container of the release found stopped (an engine restart may not bring one back), then confirms', async () => {
    const inv = inventory(`dep${process.pid}k`, 167);
    // web starts last and slowly: db is stopped while web is still on its way.
    const plan = stubbed(buildPlan(inv), { env: { web: { AGENT_START_DELAY: '2' } } });
    await withWorld(inv, async (world) => {
      const handle = await startDeploy(world, input(plan, `again-${process.pid}`, { autoConfirm: true }));
      const healthy = await waitPhase(handle, (p) => p.units.db!.phase === 'healthy');
      expect(healthy.units.web!.phase).not.toBe('healthy');
      // Stopped as an engine going down leaves a container it does not restart (a manual stop: no restart policy brings it back).
      const db = `${plan.project}_mainpc_db`;
      await docker.getContainer(db).stop({ t: 1 });
      const result = await within(handle.result(), 40_000, async () => `the deploy is still ${(await handle.query<DeployProgress>('progress')).phase} after 40 s`);
      expect(result.phase).toBe('confirmed');
      // The very container the release made runs again (started, not made anew), and nothing is kept.
      const info = await docker.getContainer(db).inspect();
      expect({ id: info.Id, running: info.State.Running }).toEqual({ id: healthy.units.db!.containerId, running: true });
      expect((await containers(plan.project)).map((c) => `${c.name} ${c.running}`)).toEqual(['api', 'cache', 'db', 'web'].map((s) => `${plan.project}_${s === 'web' ? 'pc2' : 'mainpc'}_${s} true`));
      if (recordingHistories) await writeHistory('deploy-starts-again', handle.workflowId);
    });
  }, 90_000);

  it('a crash stops a service still being started and waited for: the rollback waits for that call to end, and leaves nothing behind', async () => {
    // slow answers only after a minute (its start period allows two); db crashes after a second.
    const inv = inventory(`dep${process.pid}l`, 169, { slow: { image: 'slow:1', placement: { host: 'pc2' }, ports: ['8002:8002'], healthcheck: { ...hc, start_period: '120s' } } });
    const plan = stubbed(buildPlan(inv), { env: { slow: { AGENT_START_DELAY: '60' }, db: { AGENT_MODE: 'crash', AGENT_CRASH_AFTER: '1' } } });
    await withWorld(inv, async (world) => {
      const handle = await startDeploy(world, input(plan, `stop-${process.pid}`));
      const err = await handle.result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect(String((err as WorkflowFailedError).cause?.message)).toMatch(/db on mainpc crashed while starting.*rolled back: every host runs exactly what it ran before/s);
      expect(await containers(plan.project)).toEqual([]);
      const progress = await handle.query<DeployProgress>('progress');
      expect(progress.units.slow).toMatchObject({ phase: 'failed', error: 'stopped: another service failed' });
      // slow's call (it made the container, then waited for it) was cancelled, not waited out, and
      // had ended before the first undo went out: no container is being made while the rollback runs.
      const events = (await world.client.workflow.getHandle(handle.workflowId).fetchHistory()).events ?? [];
      const typeOf = (scheduledId: unknown) => events.find((e) => String(e.eventId) === String(scheduledId))?.activityTaskScheduledEventAttributes?.activityType?.name;
      const cancelled = events.findIndex((e) => e.activityTaskCanceledEventAttributes && typeOf(e.activityTaskCanceledEventAttributes.scheduledEventId) === 'startHealthy');
      const firstUndo = events.findIndex((e) => e.activityTaskScheduledEventAttributes?.activityType?.name === 'putBack');
      expect(cancelled).toBeGreaterThan(0);
      expect(firstUndo).toBeGreaterThan(cancelled);
      if (recordingHistories) await writeHistory('deploy-images-at-once', handle.workflowId);
    });
  });

  it('--concurrency 1 starts one service at a time, even when several are ready together', async () => {
    const inv = inventory(`dep${process.pid}g`, 161);
    // db and cache have no dependencies: both are ready at once (before the fix both started together).
    const plan = stubbed(buildPlan(inv), { env: { db: { AGENT_START_DELAY: '1' } } });
    await withWorld(inv, async (world) => {
      const handle = await startDeploy(world, input(plan, `one-${process.pid}`, { concurrency: 1 }));
      const progress = await waitPhase(handle, pendingConfirmation);
      const spans = await Promise.all(Object.entries(plan.units).map(async ([name, unit]) => {
        const info = await docker.getContainer(`${plan.project}_${unit.host}_${name}`).inspect();
        return { name, from: startedAt(info.State.StartedAt), to: progress.units[name]!.healthyAt! };
      }));
      spans.sort((a, b) => a.from - b.from);
      // Each container started only once the one before it was healthy: no two were in flight together.
      for (let i = 1; i < spans.length; i++) expect(spans[i]!.from, `${spans[i]!.name} started while ${spans[i - 1]!.name} was starting`).toBeGreaterThanOrEqual(spans[i - 1]!.to);
      await handle.executeUpdate(confirmUpdate);
    });
  });

  it('a confirm and a rollback sent at the same moment: one decides, the other gets its decision, the world matches it', async () => {
    const inv = inventory(`dep${process.pid}h`, 163);
    const plan1 = stubbed(buildPlan(inv));
    const plan2 = stubbed(buildPlan(inv), { env: { web: { AGENT_VERSION: '2' }, api: { AGENT_VERSION: '2' } } });
    await withWorld(inv, async (world) => {
      await startDeploy(world, input(plan1, `race1-${process.pid}`, { autoConfirm: true })).then((h) => h.result());
      const before = await containers(plan1.project);
      const handle = await startDeploy(world, input(plan2, `race2-${process.pid}`));
      await waitPhase(handle, pendingConfirmation);
      const during = await containers(plan1.project);

      // Both in one workflow task (before the fix both ran: .prev dropped while being put back):
      // sent while no orchestrator worker polls, so the next task carries the two of them.
      await world.stopHost('__orchestrator');
      const both = Promise.allSettled([handle.executeUpdate(confirmUpdate), handle.executeUpdate(rollbackUpdate, { args: [{}] })]);
      await new Promise((r) => setTimeout(r, 1000));
      const orchestrator = await createOrchestratorWorker({ connection: world.connection });
      world.workers.set('__orchestrator', orchestrator);
      world.runs.set('__orchestrator', orchestrator.run());
      const [confirmed, rolled] = await both;
      const decided = [confirmed, rolled].filter((r) => r.status === 'fulfilled').map((r) => (r as PromiseFulfilledResult<{ status: string }>).value.status);
      expect(decided.length).toBeGreaterThanOrEqual(1);
      expect(new Set(decided).size).toBe(1); // whoever answered, answered the same decision
      const result = await handle.result();
      expect(result.phase).toBe(decided[0]);
      const after = await containers(plan1.project);
      if (decided[0] === 'rolled-back') expect(after).toEqual(before);
      else expect(after).toEqual(during.filter((c) => !c.name.endsWith('.prev')));
    });
  });
});
