/**
 * Deploy benchmark: the seed 000 stack (the services of inventory/agentsys.yaml, from seed 000,
 * placed on this machine's two loopback "hosts"), every image the stub, the same health checks —
 * ours (deployStack on a Temporal dev server, in-process host workers) against
 * `docker-compose up -d` with `depends_on: condition: service_healthy` (Debian's compose v1.29 has
 * no `--wait`: the clock stops when every container reports healthy). Same machine, one run.
 *
 * And the critical-path floor, in the same run: no orchestrator, each service created and started
 * (`docker run`'s two engine calls, create and start, on the same container spec as ours) the instant
 * every dependency answers, each probed every 20 ms. Ours is printed as a multiple of that floor and
 * of docker-compose (issue 14 item 4: ≤ 1.3× the floor, ≤ 0.5× compose).
 *
 * Then the same deploy on isolated hosts (when this machine can make them: root, `ip`, `nsenter`):
 * mainpc and pc2 each a network namespace with its own dockerd and its own `migrate worker` process,
 * the stub image loaded into both engines first (the deploy is timed, not the image's transfer).
 *
 *   npx tsx bench/deploy/run.ts            # BENCH_ROUNDS=1 for a single round (default 3)
 *
 * Each round also prints the machine's CPU time during the floor and during ours (with ours' split:
 * this process's workers, the Temporal server). BENCH_OURS_ONLY=1 runs ours alone; DEPLOY_TRACE=1
 * prints its history's timeline (ms, event type, activity) and when each service became healthy.
 * BENCH_CONCURRENCY sets the deploy's concurrency (default 16).
 *
 * Writes bench/deploy/docker-compose.generated.yml (the compose side, generated from the same plan).
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import Dockerode from 'dockerode';
import { stringify } from 'yaml';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { loadInventoryFiles } from '../../src/inventory/load.js';
import { buildPlan, type Plan, type UnitSpec } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { LABELS, networkName } from '../../src/plan/queues.js';
import { containerCreateOptions } from '../../src/activities/docker.js';
import net from 'node:net';
import { ensureStubImage, STUB_IMAGE } from '../../src/dev/stub-image.js';
import { startDevServer } from '../../src/dev/temporal-server.js';
import { quietRuntime } from '../../src/dev/environment.js';
import { createHostWorker, createOrchestratorWorker, hostContext } from '../../src/workers/workers.js';
import { startDeploy } from '../../src/ops/index.js';
import { isolatedHostsUnsupported } from '../../src/dev/isolated-hosts.js';
import { startIsolatedEnvironment } from '../../src/dev/isolated-environment.js';
import type { Inventory } from '../../src/inventory/schema.js';
import { machineCpuSeconds, prebundleWorkflows, processCpuSeconds } from '../common.js';

const run = promisify(execFile);
const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, '../..');
const docker = new Dockerode();
const ms = (n: number) => `${Math.max(1, Math.round(n))}ms`;
/** The machine's CPU time (every process) used by the last floor run and the last run of ours, in seconds. */
const cpuUsed = { floor: NaN, ours: NaN, oursSplit: '' };

/** The shipped inventory, moved to bench-only loopback addresses and its own project name. */
async function benchPlan(project: string, octet: number): Promise<{ plan: Plan; inventory: Inventory }> {
  const { inventory } = await loadInventoryFiles([path.join(root, 'inventory/agentsys.yaml'), path.join(root, 'inventory/local.yaml')]);
  inventory.hosts.mainpc!.address = `127.0.0.${octet}`;
  inventory.hosts.pc2!.address = `127.0.0.${octet + 1}`;
  return benchOnly(inventory, project);
}

/** Services only, no backups, under the bench's own project name. */
function benchOnly(inventory: Inventory, project: string): { plan: Plan; inventory: Inventory } {
  inventory.project = project;
  inventory.agents = {};
  inventory.batches = [];
  delete inventory.backups; // compose takes no backup either: both sides start containers only
  const plan = stubPlan(buildPlan(inventory), { image: STUB_IMAGE });
  return { plan, inventory };
}

const services = (plan: Plan) => Object.values(plan.units).filter((u) => u.kind === 'service');

/** The same units as a compose file: same image, env, ports, and a health check doing what our probe does. */
function composeFile(plan: Plan): string {
  const svc = (u: UnitSpec) => {
    const probe = u.probe;
    const port = probe.kind === 'http' || probe.kind === 'tcp' ? u.ports.find((p) => p.published === probe.port) : undefined;
    // The stub answers HTTP on every port, and busybox's nc has no -z: a TCP check is a wget too.
    const test = port ? ['CMD', 'wget', '-q', '-O-', `http://127.0.0.1:${port.target}${probe.kind === 'http' ? probe.path : '/'}`] : undefined;
    return {
      image: u.image,
      container_name: `${plan.project}-${u.host}-${u.name}`,
      environment: u.environment,
      ports: u.ports.map((p) => `${p.hostIp}:${p.published}:${p.target}/${p.protocol}`),
      labels: { [LABELS.project]: plan.project },
      ...(test ? { healthcheck: { test, interval: ms(u.timing.intervalMs), timeout: ms(u.timing.timeoutMs), retries: u.timing.retries, start_period: ms(u.timing.startPeriodMs) } } : {}),
      ...(Object.keys(u.dependsOn).length
        ? { depends_on: Object.fromEntries(Object.entries(u.dependsOn).map(([d, c]) => [d, { condition: plan.units[d]!.probe.kind === 'running' && c === 'service_healthy' ? 'service_started' : c }])) }
        : {}),
    };
  };
  return stringify({ services: Object.fromEntries(services(plan).map((u) => [u.name, svc(u)])) });
}

async function removeProject(project: string) {
  for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } })) await docker.getContainer(c.Id).remove({ force: true });
  for (const n of await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } })) await docker.getNetwork(n.Id).remove().catch(() => undefined);
}

async function benchOurs(): Promise<number> {
  const { plan, inventory } = await benchPlan(`benchours${process.pid}`, 61);
  quietRuntime();
  const server = await startDevServer({ ui: false });
  const connection = await NativeConnection.connect({ address: server.address });
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  const workers = [await createOrchestratorWorker({ connection }), ...(await Promise.all(Object.keys(inventory.hosts).map((h) => createHostWorker({ connection, context: hostContext(inventory, h) }))))];
  const running = Promise.all(workers.map((w) => w.run()));
  try {
    const options = { autoConfirm: true, concurrency: Number(process.env.BENCH_CONCURRENCY ?? 16) };
    // Warm-up of the workflow bundle and the workers' pollers: a no-op deploy of another project.
    await (await startDeploy(client, { ...plan, project: `benchwarm${process.pid}`, units: {} }, { ...options, release: `warmup-${process.pid}` })).result();
    const cpu = await machineCpuSeconds();
    const own = process.cpuUsage();
    const serverCpu = await processCpuSeconds(server.process?.pid);
    const started = performance.now();
    // With autoConfirm the deploy confirms itself once every service is healthy, and closes.
    const handle = await startDeploy(client, plan, { ...options, release: `bench-${process.pid}` });
    const result = await handle.result();
    const elapsed = performance.now() - started;
    cpuUsed.ours = (await machineCpuSeconds()) - cpu;
    if (!Object.values(result.units).every((u) => u.phase === 'healthy')) throw new Error(`ours: not every service healthy: ${JSON.stringify(result.units)}`);
    const used = process.cpuUsage(own);
    cpuUsed.oursSplit = `this process (workers, bench) ${((used.user + used.system) / 1e6).toFixed(1)} s, Temporal server ${((await processCpuSeconds(server.process?.pid)) - serverCpu).toFixed(1)} s`;
    if (process.env.DEPLOY_TRACE) {
      const h = await client.workflow.getHandle(handle.workflowId).fetchHistory();
      const t0 = Number(h.events![0]!.eventTime!.seconds) * 1000 + h.events![0]!.eventTime!.nanos! / 1e6;
      const names = new Map<string, string>();
      for (const e of h.events!) {
        const t = Number(e.eventTime!.seconds) * 1000 + e.eventTime!.nanos! / 1e6 - t0;
        const s = e.activityTaskScheduledEventAttributes;
        if (s) names.set(String(e.eventId), `${s.activityType?.name}`);
        const ref = e.activityTaskStartedEventAttributes?.scheduledEventId ?? e.activityTaskCompletedEventAttributes?.scheduledEventId;
        const what = s ? s.activityType?.name : ref ? names.get(String(ref)) : e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowType?.name ?? '';
        process.stdout.write(`${t.toFixed(0).padStart(6)} ${String(e.eventType).padStart(3)} ${what}\n`);
      }
      const units = Object.entries(result.units).map(([n, u]) => `${n} healthy +${(u.healthyAt! - t0).toFixed(0)}`);
      process.stdout.write(units.join('\n') + '\n');
    }
    return elapsed;
  } finally {
    workers.forEach((w) => w.shutdown());
    await running;
    await client.connection.close();
    await connection.close();
    await server.stop();
    await removeProject(plan.project);
  }
}

async function benchCompose(): Promise<number> {
  const { plan } = await benchPlan(`benchcompose${process.pid}`, 63);
  const file = path.join(here, 'docker-compose.generated.yml');
  await writeFile(file, `# Generated by bench/deploy/run.ts from inventory/agentsys.yaml + local.yaml (stub images).\n${composeFile(plan)}`);
  const args = ['-p', plan.project, '-f', file];
  const names = services(plan).map((u) => `${plan.project}-${u.host}-${u.name}`);
  try {
    const started = performance.now();
    await run('docker-compose', [...args, 'up', '-d'], { maxBuffer: 1 << 24 });
    // compose v1 has no --wait: done when every container with a health check is healthy.
    for (;;) {
      const states = await Promise.all(names.map((n) => docker.getContainer(n).inspect().then((c) => c.State.Health?.Status ?? (c.State.Running ? 'healthy' : c.State.Status))));
      if (states.every((s) => s === 'healthy')) break;
      if (performance.now() - started > 300_000) throw new Error(`compose: not healthy after 5 min: ${states.join(',')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
    return performance.now() - started;
  } finally {
    await run('docker-compose', [...args, 'down', '-t', '1']).catch(() => undefined);
    await removeProject(plan.project);
  }
}

/** Whether a unit's (stub) probe passes now: what our health activity asks, asked directly. */
async function probeOnce(u: UnitSpec): Promise<boolean> {
  const p = u.probe;
  if (p.kind === 'http') {
    try {
      const res = await fetch(`http://${p.address}:${p.port}${p.path}`, { signal: AbortSignal.timeout(1000) });
      await res.arrayBuffer();
      return res.ok;
    } catch {
      return false;
    }
  }
  if (p.kind === 'tcp') {
    return new Promise((resolve) => {
      const socket = net.connect({ host: p.address, port: p.port });
      const done = (ok: boolean) => { socket.destroy(); resolve(ok); };
      socket.setTimeout(1000, () => done(false));
      socket.once('connect', () => done(true));
      socket.once('error', () => done(false));
    });
  }
  return true; // 'running': started is ready (the stub plan has no exec or docker probes)
}

/**
 * The critical-path floor: no orchestrator, no Temporal, no worker. Each service's container is
 * created and started the instant all its dependencies answer (or have started, for
 * service_started), then probed every 20 ms. The networks are created first, inside the clock.
 */
async function benchFloor(): Promise<number> {
  const { plan } = await benchPlan(`benchfloor${process.pid}`, 65);
  const units = new Map(services(plan).map((u) => [u.name, u]));
  const stamp = { release: 'floor', change: 'floor' };
  const started = new Map<string, Promise<void>>();
  const healthy = new Map<string, Promise<void>>();
  const startUnit = (name: string): Promise<void> => {
    if (!started.has(name)) {
      const u = units.get(name)!;
      started.set(name, (async () => {
        await Promise.all(Object.entries(u.dependsOn).map(([d, c]) => (c === 'service_started' ? startUnit(d) : healthyUnit(d))));
        const c = await docker.createContainer(containerCreateOptions(plan.project, u, stamp, u.environment as Record<string, string>));
        await c.start();
      })());
    }
    return started.get(name)!;
  };
  const healthyUnit = (name: string): Promise<void> => {
    if (!healthy.has(name)) {
      healthy.set(name, (async () => {
        await startUnit(name);
        while (!(await probeOnce(units.get(name)!))) await new Promise((r) => setTimeout(r, 20));
      })());
    }
    return healthy.get(name)!;
  };
  try {
    const cpu = await machineCpuSeconds();
    const t = performance.now();
    await Promise.all(plan.hosts.map((h) => docker.createNetwork({ Name: networkName(plan.project, h.name), Driver: 'bridge', Labels: { [LABELS.project]: plan.project, [LABELS.host]: h.name } })));
    await Promise.all([...units.keys()].map(healthyUnit));
    const elapsed = performance.now() - t;
    cpuUsed.floor = (await machineCpuSeconds()) - cpu;
    return elapsed;
  } finally {
    await removeProject(plan.project);
  }
}

/** The same deploy on isolated hosts: two namespaces, two engines, two `migrate worker` processes. */
async function benchIsolated(): Promise<number> {
  const project = `benchiso${process.pid}`;
  const dir = await mkdtemp(path.join(os.tmpdir(), 'benchiso-'));
  const server = await startDevServer({ ui: false });
  const client = new Client({ connection: await Connection.connect({ address: server.address }) });
  let stop: (() => Promise<void>) | undefined;
  try {
    // The workers read the project from their inventory: an override names the bench's.
    const override = path.join(dir, 'bench.yaml');
    await writeFile(override, stringify({ project, batches: [] }));
    const files = [path.join(root, 'inventory/agentsys.yaml'), path.join(root, 'inventory/local.yaml'), override];
    const { inventory: base } = await loadInventoryFiles(files);
    await prebundleWorkflows(dir);
    const env = await startIsolatedEnvironment({
      inventory: base, inventoryFiles: files, dataDir: path.join(dir, 'data'), prefix: 'benchiso', subnet: '10.231.9.0/24',
      temporal: { address: server.address }, preloadStub: true,
    });
    stop = env.stop;
    if (!env.stubLoaded) throw new Error('isolated: the stub image could not be loaded into the hosts\' engines');
    const { plan } = benchOnly((await loadInventoryFiles(env.inventoryFiles)).inventory, project);
    const options = { autoConfirm: true, concurrency: Number(process.env.BENCH_CONCURRENCY ?? 16) };
    await (await startDeploy(client, { ...plan, project: `benchisowarm${process.pid}`, units: {} }, { ...options, release: `isowarm-${process.pid}` })).result();
    const started = performance.now();
    const result = await (await startDeploy(client, plan, { ...options, release: `benchiso-${process.pid}` })).result();
    const elapsed = performance.now() - started;
    if (!Object.values(result.units).every((u) => u.phase === 'healthy')) throw new Error(`isolated: not every service healthy: ${JSON.stringify(result.units)}`);
    return elapsed;
  } finally {
    await stop?.(); // the hosts' engines go, with every container in them
    await client.connection.close();
    await server.stop();
    await rm(dir, { recursive: true, force: true });
  }
}

await ensureStubImage(docker);
const { plan } = await benchPlan('x', 61);
process.stdout.write(`seed 000 stack: ${services(plan).length} services in ${plan.serviceWaves.length} dependency waves, stub image ${STUB_IMAGE}\n`);
// Rounds of compose, floor and ours side by side: on a shared, loaded machine the load drifts within
// minutes, so each ratio compares runs made next to each other, and the figures are their medians.
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const medianOf = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rounds: { compose: number; floor: number; ours: number }[] = [];
for (let r = 1; r <= ROUNDS; r++) {
  // BENCH_OURS_ONLY=1: ours only (DEPLOY_TRACE=1 prints its history's timeline).
  const compose = process.env.BENCH_OURS_ONLY ? NaN : await benchCompose();
  const floor = process.env.BENCH_OURS_ONLY ? NaN : await benchFloor();
  const ours = await benchOurs();
  rounds.push({ compose, floor, ours });
  process.stdout.write(`round ${r}: docker-compose up -d (depends_on: service_healthy) ${(compose / 1000).toFixed(2)} s · critical-path floor (create+start the instant every dependency answers, 20 ms probes, no orchestrator) ${(floor / 1000).toFixed(2)} s · migrate deployStack (Temporal, health-gated graph) ${(ours / 1000).toFixed(2)} s · machine CPU used: floor ${cpuUsed.floor.toFixed(1)} s, ours ${cpuUsed.ours.toFixed(1)} s (${cpuUsed.oursSplit})\n`);
}
const ours = medianOf(rounds.map((r) => r.ours));
const compose = medianOf(rounds.map((r) => r.compose));
process.stdout.write(`medians of ${ROUNDS} round(s): compose ${(compose / 1000).toFixed(2)} s, floor ${(medianOf(rounds.map((r) => r.floor)) / 1000).toFixed(2)} s, ours ${(ours / 1000).toFixed(2)} s\n`);
process.stdout.write(`figure deploy_ours_over_floor = ${medianOf(rounds.map((r) => r.ours / r.floor)).toFixed(2)} × (goal ≤ 1.30 ×)\n`);
process.stdout.write(`figure deploy_ours_over_compose = ${medianOf(rounds.map((r) => r.ours / r.compose)).toFixed(2)} × (goal ≤ 0.50 ×)\n`);
// No orchestrator beats the floor: where the floor itself is above half of compose, so is any deploy.
process.stdout.write(`floor / docker-compose: ${medianOf(rounds.map((r) => r.floor / r.compose)).toFixed(2)}× (the least ours / docker-compose could be on this machine now)\n`);
const unsupported = await isolatedHostsUnsupported();
if (unsupported) {
  process.stdout.write(`isolated hosts: not run (${unsupported})\n`);
} else {
  const isolated = await benchIsolated();
  process.stdout.write(`migrate deployStack on isolated hosts (2 namespaces, 2 engines, 2 worker processes) until all healthy: ${(isolated / 1000).toFixed(2)} s\n`);
  process.stdout.write(`figure deploy_one_engine = ${(ours / 1000).toFixed(2)} s (goal ≤ 0.70× docker-compose = ${(0.7 * compose / 1000).toFixed(2)} s)\n`);
  process.stdout.write(`figure deploy_isolated = ${(isolated / 1000).toFixed(2)} s (goal ≤ 1.5× the one-engine run = ${(1.5 * ours / 1000).toFixed(2)} s)\n`);
}
