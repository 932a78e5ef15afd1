/**
 * `depends_on` conditions in `deployStack`, on the real Temporal dev server and Docker engine:
 * `service_started` does not wait for the dependency's health, `service_completed_successfully`
 * waits for a one-shot job's exit 0, and a job that exits 1 fails the deploy, which rolls back
 * exactly. The job image is the stub image with an entrypoint that sleeps JOB_SECONDS and exits
 * JOB_EXIT (built here, FROM the stub). Assertions are on the containers and the workflow's record.
 */
import { mkdtemp, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Dockerode from 'dockerode';
import { WorkflowFailedError, type WorkflowHandle } from '@temporalio/client';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan, hashSpec, type Plan, type UnitSpec } from '../../src/plan/plan.js';
import { stubPlan, type StubOptions } from '../../src/plan/stub.js';
import { LABELS, ORCHESTRATOR_QUEUE } from '../../src/plan/queues.js';
import { buildImage } from '../../src/activities/docker.js';
import { deployStack, type DeployInput, type DeployProgress } from '../../src/workflows/deploy.js';
import { withWorld, type TestWorld } from '../helpers/temporal.js';
import { STUB_IMAGE } from '../helpers/stub-image.js';

const docker = new Dockerode();
const JOB_IMAGE = 'agent-migrate/stub-job:1';
const projects: string[] = [];
const hc = { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '5s' };

function inventory(project: string, octet: number, services: Record<string, unknown>) {
  projects.push(project);
  return parseInventory({ version: 1, project, hosts: { mainpc: { address: `127.0.0.${octet}` } }, services });
}

/** Stub every unit; the named one-shot units run the job image instead (exit code from JOB_EXIT). */
function stubbed(plan: Plan, options: Omit<StubOptions, 'image'> = {}, jobs: Record<string, { seconds: number; exit: number }> = {}): Plan {
  const stub = stubPlan(plan, { image: STUB_IMAGE, ...options });
  for (const [name, job] of Object.entries(jobs)) {
    const { specHash: _old, ...unit } = stub.units[name]!;
    const spec: Omit<UnitSpec, 'specHash'> = { ...unit, image: JOB_IMAGE, environment: { JOB_SECONDS: String(job.seconds), JOB_EXIT: String(job.exit) } };
    stub.units[name] = { ...spec, specHash: hashSpec(spec) };
  }
  return stub;
}

function input(plan: Plan, release: string, extra: Partial<DeployInput> = {}): DeployInput {
  return { release, project: plan.project, units: Object.values(plan.units).filter((u) => u.kind === 'service'), ...extra };
}

async function startDeploy(world: TestWorld, args: DeployInput): Promise<WorkflowHandle<typeof deployStack>> {
  return world.client.workflow.start(deployStack, { taskQueue: ORCHESTRATOR_QUEUE, workflowId: `deploy-${args.release}`, args: [args] });
}

async function containers(project: string) {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
  return list.map((c) => ({ name: c.Names[0]!.slice(1), id: c.Id, specHash: c.Labels[LABELS.specHash], state: c.State })).sort((a, b) => a.name.localeCompare(b.name));
}

/** Docker's RFC 3339 nanosecond time, in ms. */
const ms = (iso: string) => Date.parse(iso.replace(/(\.\d{3})\d*Z$/, '$1Z'));

async function inspect(project: string, unit: string) {
  return docker.getContainer(`${project}_mainpc_${unit}`).inspect();
}

beforeAll(async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'stub-job-'));
  await writeFile(path.join(dir, 'Dockerfile'), `FROM ${STUB_IMAGE}\nENTRYPOINT ["/bin/sh", "-c", "sleep \\"\${JOB_SECONDS:-1}\\"; exit \\"\${JOB_EXIT:-0}\\""]\n`);
  await buildImage(docker, dir, JOB_IMAGE);
}, 60_000);

afterAll(async () => {
  for (const p of projects) {
    for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${p}`] } })) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
    for (const n of await docker.listNetworks({ filters: { label: [`${LABELS.project}=${p}`] } })) await docker.getNetwork(n.Id).remove().catch(() => undefined);
  }
});

describe('depends_on conditions (real Temporal, real Docker, stub images)', () => {
  it('service_started: the dependent starts as soon as the dependency container is started, before it is healthy', async () => {
    const inv = inventory(`dcond${process.pid}a`, 150, {
      db: { image: 'db:15', ports: ['5432:5432'], healthcheck: hc },
      api: { image: 'api:1', ports: ['8001:8001'], healthcheck: hc, depends_on: { db: { condition: 'service_started' } } },
      web: { image: 'web:1', ports: ['8051:8051'], healthcheck: hc, depends_on: { db: { condition: 'service_healthy' } } },
    });
    // db listens only after 4 s.
    const plan = stubbed(buildPlan(inv), { env: { db: { AGENT_START_DELAY: '4' } } });
    await withWorld(inv, async (world) => {
      const progress = await (await startDeploy(world, input(plan, `started-${process.pid}`, { autoConfirm: true }))).result();
      expect(progress.phase).toBe('confirmed');
      const dbHealthy = progress.units.db!.healthyAt!;
      const apiStarted = ms((await inspect(plan.project, 'api')).State.StartedAt);
      const webStarted = ms((await inspect(plan.project, 'web')).State.StartedAt);
      const dbStarted = ms((await inspect(plan.project, 'db')).State.StartedAt);
      console.log(`service_started: db started ${dbStarted}, api started ${apiStarted - dbStarted} ms later, db healthy ${dbHealthy - dbStarted} ms later, web (service_healthy) started ${webStarted - dbHealthy} ms after that`);
      expect(apiStarted).toBeGreaterThanOrEqual(dbStarted);
      expect(apiStarted).toBeLessThan(dbHealthy - 1000); // well before db's health wait passed
      expect(webStarted).toBeGreaterThanOrEqual(dbHealthy); // service_healthy still waits
      expect(Object.values(progress.units).map((u) => u.phase)).toEqual(['healthy', 'healthy', 'healthy']);
    });
  });

  it('service_completed_successfully: a one-shot migration job exits 0, is not restarted, and its dependent starts only after', async () => {
    const inv = inventory(`dcond${process.pid}b`, 152, {
      db: { image: 'db:15', ports: ['5432:5432'], healthcheck: hc },
      migrate: { image: 'app:1', command: ['./migrate'], depends_on: { db: { condition: 'service_healthy' } } },
      api: { image: 'api:1', ports: ['8001:8001'], healthcheck: hc, depends_on: { db: { condition: 'service_healthy' }, migrate: { condition: 'service_completed_successfully' } } },
    });
    const built = buildPlan(inv);
    expect(built.units.migrate!.job).toBe(true);
    expect(built.units.api!.job).toBeUndefined();
    const plan = stubbed(built, {}, { migrate: { seconds: 2, exit: 0 } });
    await withWorld(inv, async (world) => {
      const progress = await (await startDeploy(world, input(plan, `job-${process.pid}`, { autoConfirm: true }))).result();
      expect(progress.phase).toBe('confirmed'); // the confirm did not probe the exited job
      expect(progress.units.migrate).toMatchObject({ phase: 'completed', exitCode: 0, action: 'new' });
      const job = await inspect(plan.project, 'migrate');
      expect(job.State.Status).toBe('exited');
      expect(job.State.ExitCode).toBe(0);
      expect(job.RestartCount).toBe(0);
      expect(job.HostConfig.RestartPolicy?.Name).toBe('no');
      const jobStarted = ms(job.State.StartedAt);
      const jobFinished = ms(job.State.FinishedAt);
      const apiStarted = ms((await inspect(plan.project, 'api')).State.StartedAt);
      console.log(`job: ran ${jobFinished - jobStarted} ms, api started ${apiStarted - jobFinished} ms after its exit`);
      expect(jobFinished - jobStarted).toBeGreaterThanOrEqual(1900);
      expect(apiStarted).toBeGreaterThanOrEqual(jobFinished);
      expect(progress.units.api!.phase).toBe('healthy');
      // Still exited a few seconds later: not restarted by Docker.
      await new Promise((r) => setTimeout(r, 1500));
      const again = await inspect(plan.project, 'migrate');
      expect([again.State.Status, again.RestartCount, again.State.StartedAt]).toEqual(['exited', 0, job.State.StartedAt]);
    });
  });

  it('a one-shot job that exits 1 fails the deploy, its dependent never starts, and the rollback is exact', async () => {
    const project = `dcond${process.pid}c`;
    const base = {
      db: { image: 'db:15', ports: ['5432:5432'], healthcheck: hc },
      api: { image: 'api:1', ports: ['8001:8001'], healthcheck: hc, depends_on: { db: { condition: 'service_healthy' } } },
    };
    const inv1 = inventory(project, 154, base);
    const plan1 = stubbed(buildPlan(inv1));
    const inv2 = inventory(project, 154, {
      ...base,
      migrate: { image: 'app:2', command: ['./migrate'], depends_on: { db: { condition: 'service_healthy' } } },
      api: { ...base.api, depends_on: { db: { condition: 'service_healthy' }, migrate: { condition: 'service_completed_successfully' } } },
    });
    const plan2 = stubbed(buildPlan(inv2), { version: '2' }, { migrate: { seconds: 1, exit: 1 } });
    await withWorld(inv1, async (world) => {
      await (await startDeploy(world, input(plan1, `jobok-${process.pid}`, { autoConfirm: true }))).result();
      const before = await containers(project);
      expect(before.map((c) => [c.name, c.state])).toEqual([[`${project}_mainpc_api`, 'running'], [`${project}_mainpc_db`, 'running']]);

      const handle = await startDeploy(world, input(plan2, `jobbad-${process.pid}`));
      const err = await handle.result().catch((e: unknown) => e);
      expect(err).toBeInstanceOf(WorkflowFailedError);
      expect(String((err as WorkflowFailedError).cause?.message)).toMatch(/migrate: migrate on mainpc is a one-shot job and exited with code 1.*rolled back: every host runs exactly what it ran before/s);
      const progress = await handle.query<DeployProgress>('progress');
      expect(progress.exact).toBe(true);
      expect(progress.units.migrate!.phase).toBe('failed');
      expect(progress.units.api!.phase).toBe('skipped'); // api v2 never started
      expect(progress.units.api!.containerId).toBeUndefined();
      // The world: exactly the containers of before (same ids, running), no job container left.
      expect(await containers(project)).toEqual(before);
    });
  });
});
