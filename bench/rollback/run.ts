/**
 * bench/rollback: how long a 7-agent batch takes to roll back (target ≤ 5 s; seed 001 asks for 30 s),
 * and what the orchestration adds per agent over the bare container start-to-healthy time.
 *
 *   npx tsx bench/rollback/run.ts
 *
 * Its own Temporal dev server, in-process workers, the stub image on 127.0.0.61, project
 * `bench<pid>` (removed afterwards). Migration runs one agent at a time so per-agent times are clean.
 */
import Dockerode from 'dockerode';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { ensureStubImage, STUB_IMAGE } from '../../src/dev/stub-image.js';
import { startDevServer } from '../../src/dev/temporal-server.js';
import { quietRuntime } from '../../src/dev/environment.js';
import { createHostWorker, createOrchestratorWorker, hostContext } from '../../src/workers/workers.js';
import { agentWorkflowId } from '../../src/workflows/batch.js';
import { batchStatus, decideBatch, followBatch, startBatch } from '../../src/ops/index.js';
import { removeProject } from '../common.js';

const AGENTS = 7;
const project = `bench${process.pid}`;
const docker = new Dockerode();
const agents = Array.from({ length: AGENTS }, (_, i) => `Agent${i + 1}`);
const inventory = parseInventory({
  version: 1,
  project,
  hosts: { pc2: { address: '127.0.0.61' } },
  agents: Object.fromEntries(agents.map((a, i) => [a, {
    placement: { host: 'pc2' }, image: `agentsys/${a.toLowerCase()}:2.0`, ports: [`${7200 + i}:8080`],
    healthcheck: { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '2s' },
  }])),
  batches: [{ name: `bench-batch-${process.pid}`, agents, concurrency: 1, max_failures: 1 }],
});
const plan = buildPlan(inventory);
const batch = plan.batches[0]!.name;
const at = (v: string) => stubPlan(plan, { image: STUB_IMAGE, version: v });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

quietRuntime();
await ensureStubImage(docker);
const server = await startDevServer({ ui: false });
const native = await NativeConnection.connect({ address: server.address });
const client = new Client({ connection: await Connection.connect({ address: server.address }) });
const workers = [await createOrchestratorWorker({ connection: native }), await createHostWorker({ connection: native, context: hostContext(inventory, 'pc2') })];
const running = Promise.all(workers.map((w) => w.run()));
try {
  // A batch stays open once migrated (pending confirmation): the clock stops there.
  const migrate = async (v: string) => {
    const t = performance.now();
    const handle = await startBatch(client, at(v), batch, { samples: 10 });
    const r = await followBatch(handle, undefined, 50);
    if (r.status !== 'pending-confirmation') throw new Error(`batch ${r.status}: ${JSON.stringify(r.agents.map((a) => a.reason))}`);
    return { ms: performance.now() - t, handle };
  };
  const v1 = await migrate('1');
  const install = v1.ms;
  await decideBatch(client, project, batch, 'confirm');
  await v1.handle.result(); // decided: it closes, and version 2's run takes the same workflow id
  const migration = (await migrate('2')).ms;

  // Per agent, from the child's history: whole migration vs ensureContainer scheduled → waitHealthy done.
  const overheads: number[] = [];
  const bare: number[] = [];
  const totals: number[] = [];
  for (const a of agents) {
    const events = (await client.workflow.getHandle(agentWorkflowId(batch, a)).fetchHistory()).events ?? [];
    const time = (e: (typeof events)[number]) => Number(e.eventTime!.seconds) * 1000 + e.eventTime!.nanos! / 1e6;
    const scheduled = new Map<number, string>();
    let ensureAt = 0; let healthyAt = 0;
    for (const e of events) {
      const s = e.activityTaskScheduledEventAttributes;
      if (s) { scheduled.set(Number(e.eventId), s.activityType!.name!); if (s.activityType!.name === 'ensureContainer') ensureAt = time(e); }
      const c = e.activityTaskCompletedEventAttributes;
      if (c && scheduled.get(Number(c.scheduledEventId)) === 'waitHealthy') healthyAt = time(e);
    }
    const total = time(events[events.length - 1]!) - time(events[0]!);
    totals.push(total); bare.push(healthyAt - ensureAt); overheads.push(total - (healthyAt - ensureAt));
  }

  const t = performance.now();
  const rolled = await decideBatch(client, project, batch, 'rollback');
  const rollback = performance.now() - t;
  if (rolled.exact !== true) throw new Error(`rollback not exact: ${(rolled.differences ?? []).join('; ')}`);
  const restored = ((await batchStatus(client, project, batch)).progress?.agents ?? []).filter((a) => a.phase === 'rolled-back').length;

  const out = {
    agents: AGENTS,
    installBatchMs: Math.round(install),
    migrateBatchMs: Math.round(migration),
    perAgent: { medianTotalMs: Math.round(median(totals)), medianStartToHealthyMs: Math.round(median(bare)), medianOverheadMs: Math.round(median(overheads)), maxOverheadMs: Math.round(Math.max(...overheads)) },
    rollbackBatchMs: Math.round(rollback),
    restored,
    exact: rolled.exact,
    targetMs: 5000,
    seedLimitMs: 30000,
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
  process.stdout.write(`rollback of ${restored} agents: ${(rollback / 1000).toFixed(2)} s (target ≤ 5 s, seed ≤ 30 s): ${rollback <= 5000 ? 'OK' : 'OVER TARGET'}\n`);
  process.stdout.write('per-agent overhead = child workflow duration − (ensureContainer scheduled → waitHealthy completed); it includes the 2 latency samples (baseline, validation) of 10 probes each\n');
} finally {
  for (const w of workers) w.shutdown();
  await running;
  await native.close();
  await client.connection.close();
  await server.stop();
  await removeProject(docker, project);
}
