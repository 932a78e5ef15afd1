/**
 * bench/health (issue 12): the health plane on isolated hosts (two namespaces, two engines, two
 * `migrate worker` processes publishing to a NATS server on the bridge; the aggregator here).
 *
 *   sync latency     a stub unit on pc2 is told to be unhealthy, then healthy again (`/agent/set mode`,
 *                    docker exec in pc2's engine), ≥ 200 changes; each measured from the moment the
 *                    exec returned (the change is made) to the aggregate view showing it.
 *   detection        pc2's link cut ≥ 10 times; each measured from the cut to the view judging pc2 lost.
 *
 * Prints `figure` lines with the goals: sync p99 ≤ 0.5 s, detection ≤ 2 s (max over the cuts).
 * Run: `npx tsx bench/health/run.ts` (root, `ip`, `nsenter`, `nats-server`). Env: HEALTH_CHANGES, HEALTH_CUTS.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import { startDevServer } from '../../src/dev/temporal-server.js';
import { allocateAddresses, isolatedHostsUnsupported } from '../../src/dev/isolated-hosts.js';
import { startIsolatedEnvironment } from '../../src/dev/isolated-environment.js';
import { cutLink, restoreLink } from '../../src/dev/faults.js';
import { startNatsServer } from '../../src/dev/nats-server.js';
import { freePort } from '../../src/dev/temporal-server.js';
import { stubbedPlan } from '../../src/dev/stub-image.js';
import { runTool } from '../../src/activities/exec.js';
import { loadInventoryFiles } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { containerName } from '../../src/plan/queues.js';
import { startDeploy } from '../../src/ops/index.js';
import { startAggregator } from '../../src/health/aggregator.js';
import { prebundleWorkflows } from '../common.js';

const CHANGES = Number(process.env.HEALTH_CHANGES ?? 200);
const CUTS = Number(process.env.HEALTH_CUTS ?? 10);
/** How long each cut lasts after pc2 is judged lost (0: restored at once). */
const HOLD_MS = Number(process.env.HEALTH_HOLD_MS ?? 0);
const subnet = '10.231.21.0/24';
const project = `hlbench${process.pid}`;

const percentile = (xs: number[], p: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};

const why = await isolatedHostsUnsupported();
if (why) {
  process.stdout.write(`bench/health: not run (${why})\n`);
  process.exit(0);
}

const dir = await mkdtemp(path.join(os.tmpdir(), 'hlbench-'));
const server = await startDevServer({ ui: false });
const connection = await Connection.connect({ address: server.address });
const client = new Client({ connection });
const bridge = allocateAddresses(subnet, 2).bridge;
const natsPort = await freePort();
let stop: (() => Promise<void>) | undefined;
try {
  const probe = { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '1s' };
  const file = path.join(dir, 'inventory.yaml');
  await writeFile(file, stringify({
    version: 1, project, hosts: { mainpc: {}, pc2: {} },
    health: { nats: [`nats://${bridge}:${natsPort}`], subjects: `${project}.health`, heartbeat: '250ms', lost_after: '1s' },
    services: {
      anchor: { image: 'agentsys/api:1', ports: ['8080:8080'], healthcheck: probe, placement: { host: 'mainpc' } },
      flip: { image: 'agentsys/flip:1', ports: ['7100:8080'], healthcheck: probe, placement: { host: 'pc2' } },
    },
  }));
  await prebundleWorkflows(dir);
  const env = await startIsolatedEnvironment({
    inventory: (await loadInventoryFiles([file])).inventory, inventoryFiles: [file], dataDir: path.join(dir, 'data'),
    prefix: 'hlbench', subnet, temporal: { address: server.address },
  });
  stop = env.stop;
  const nats = await startNatsServer({ address: bridge, port: natsPort, storeDir: path.join(dir, 'nats') });
  const prevStop = stop;
  stop = async () => { await prevStop(); await nats.stop(); };
  const inventory = (await loadInventoryFiles(env.inventoryFiles)).inventory;
  const plan = stubbedPlan(buildPlan(inventory));
  const deployed = await (await startDeploy(client, plan, { release: `hlbench-${process.pid}`, autoConfirm: true, skipBackup: 'bench: no databases' })).result();
  if (!Object.values(deployed.units).every((u) => u.phase === 'healthy')) throw new Error(`not every unit healthy: ${JSON.stringify(deployed.units)}`);

  const aggregator = await startAggregator({
    project, settings: inventory.health!,
    hosts: Object.fromEntries(plan.hosts.map((h) => [h.name, h.address])),
    tickMs: 20,
  });
  const flipState = () => aggregator.current()?.units.find((u) => u.unit === 'flip' && u.host === 'pc2')?.state;
  await aggregator.until(() => flipState() === 'healthy', 60_000);

  // 1. Sync latency: each change, from the exec that makes it to the view showing it.
  const pc2 = env.iso.docker('pc2');
  const flip = containerName(project, 'pc2', 'flip');
  const sync: number[] = [];
  for (let i = 0; i < CHANGES; i++) {
    const mode = i % 2 === 0 ? 'unhealthy' : 'healthy';
    await runTool(pc2, flip, ['/agent/set', 'mode', mode]);
    const made = performance.now();
    await aggregator.until(() => flipState() === mode, 10_000);
    sync.push(performance.now() - made);
  }
  process.stdout.write(`sync: ${sync.length} changes, p50 ${percentile(sync, 50).toFixed(0)} ms, p99 ${percentile(sync, 99).toFixed(0)} ms, max ${Math.max(...sync).toFixed(0)} ms\n`);

  // 2. Detection: each cut, from the cut to the view judging pc2 lost.
  const detection: number[] = [];
  const rejoin: number[] = [];
  const host = env.iso.host('pc2');
  const pc2State = () => aggregator.current()?.hosts.find((h) => h.host === 'pc2')?.state;
  for (let i = 0; i < CUTS; i++) {
    await aggregator.until(() => pc2State() === 'up', 60_000);
    await new Promise((r) => setTimeout(r, 1_000)); // settled: fresh heartbeats on both sides
    const cut = performance.now();
    await cutLink(host);
    const v = await aggregator.until(() => pc2State() !== 'up', 30_000);
    detection.push(performance.now() - cut);
    if (pc2State() !== 'lost') throw new Error(`cut ${i + 1}: pc2 judged ${pc2State()}, not lost: ${JSON.stringify(v.hosts)}`);
    if (HOLD_MS) await new Promise((r) => setTimeout(r, HOLD_MS));
    await restoreLink(host);
    const restored = performance.now();
    await aggregator.until(() => pc2State() === 'up', 60_000);
    rejoin.push(performance.now() - restored);
  }
  await aggregator.until(() => pc2State() === 'up', 60_000);
  process.stdout.write(`detection: ${detection.length} link cuts, ${detection.map((d) => (d / 1000).toFixed(2)).join(' ')} s; back up after the link returned: ${rejoin.map((d) => (d / 1000).toFixed(2)).join(' ')} s\n`);
  await aggregator.stop();

  process.stdout.write(`figure health_sync_p50 = ${(percentile(sync, 50) / 1000).toFixed(3)} s (goal ≤ 0.5 s at p99)\n`);
  process.stdout.write(`figure health_sync_p99 = ${(percentile(sync, 99) / 1000).toFixed(3)} s (goal ≤ 0.5 s)\n`);
  process.stdout.write(`figure host_loss_detection_max = ${(Math.max(...detection) / 1000).toFixed(2)} s (goal ≤ 2 s)\n`);
  process.stdout.write(`figure host_loss_detection_p50 = ${(percentile(detection, 50) / 1000).toFixed(2)} s (goal ≤ 2 s)\n`);
} finally {
  await stop?.();
  await connection.close();
  await server.stop();
  if (!process.env.HL_KEEP) await rm(dir, { recursive: true, force: true });
  else process.stdout.write(`kept ${dir}\n`);
}
