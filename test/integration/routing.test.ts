/**
 * Each host's activity runs on that host's own worker; a GPU-bound step runs only on the worker of
 * the host whose declared GPU meets the need. (No GPU here: the GPUs are the inventory's.)
 * Asserted on the workflow histories: which worker identity started each activity task.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Client } from '@temporalio/client';
import { WorkflowFailedError } from '@temporalio/client';
import { Worker } from '@temporalio/worker';
import { inject } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { ORCHESTRATOR_QUEUE } from '../../src/plan/queues.js';
import { startWorld, type TestWorld } from '../helpers/temporal.js';

const inventory = parseInventory({
  version: 1,
  project: `routing${process.pid}`,
  hosts: {
    mainpc: { gpus: [{ model: 'RTX 4090', vram_gb: 24 }], address: '127.0.0.31' },
    pc2: { gpus: [{ model: 'RTX 3060', vram_gb: 12 }], address: '127.0.0.32' },
  },
  services: {
    'rl-training-server': { image: 'x', gpu: { count: 1, min_vram_gb: 16 } },
    vision: { image: 'x', gpu: { count: 1, min_vram_gb: 6 } },
  },
});
const plan = buildPlan(inventory);

async function activityIdentities(client: Client, workflowId: string): Promise<string[]> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return (history.events ?? []).filter((e) => e.activityTaskStartedEventAttributes).map((e) => e.activityTaskStartedEventAttributes!.identity!);
}

describe('routing to host workers (real Temporal dev server, real Docker engine)', () => {
  let world: TestWorld;
  beforeAll(async () => {
    world = await startWorld(inventory, { hosts: [] });
    await world.startHost('mainpc', 'worker-of-mainpc');
    await world.startHost('pc2', 'worker-of-pc2');
  });
  afterAll(async () => world?.close());

  it('runs one activity on each host, each on its own worker', async () => {
    const workflowId = `probe-hosts-${process.pid}`;
    const reports = await world.client.workflow.execute('probeHosts', { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args: [['mainpc', 'pc2']] });
    expect(reports.map((r: { host: string; identity: string }) => [r.host, r.identity])).toEqual([
      ['mainpc', 'worker-of-mainpc'],
      ['pc2', 'worker-of-pc2'],
    ]);
    // Each report came from a real Docker engine.
    expect(reports[0].docker.serverVersion).toMatch(/\d+\.\d+/);
    expect((await activityIdentities(world.client, workflowId)).sort()).toEqual(['worker-of-mainpc', 'worker-of-pc2']);
  });

  it('executes a GPU-bound step only on the worker of the GPU host the plan chose', async () => {
    const heavy = plan.units['rl-training-server']!;
    const light = plan.units.vision!;
    expect(heavy.host).toBe('mainpc'); // only the 24 GB GPU meets 16 GB
    expect(light.host).toBe('pc2'); // best fit: the 12 GB GPU is enough, the 4090 stays free

    for (const unit of [heavy, light]) {
      const workflowId = `gpu-step-${unit.name}-${process.pid}`;
      const grant = await world.client.workflow.execute('gpuStep', {
        taskQueue: ORCHESTRATOR_QUEUE,
        workflowId,
        args: [{ unit: unit.name, host: unit.host, gpu: unit.gpu! }],
      });
      expect(grant.host).toBe(unit.host);
      expect(await activityIdentities(world.client, workflowId)).toEqual([`worker-of-${unit.host}`]);
    }
  });

  it('refuses a GPU step sent to a host whose GPU is too small, without retrying', async () => {
    const workflowId = `gpu-step-wrong-host-${process.pid}`;
    const run = world.client.workflow.execute('gpuStep', {
      taskQueue: ORCHESTRATOR_QUEUE,
      workflowId,
      args: [{ unit: 'rl-training-server', host: 'pc2', gpu: { count: 1, minVramGb: 16 } }],
    });
    await expect(run).rejects.toBeInstanceOf(WorkflowFailedError);
    const identities = await activityIdentities(world.client, workflowId);
    expect(identities).toEqual(['worker-of-pc2']); // one attempt, on pc2's worker, refused
  });

  it('replays its own recorded histories deterministically', async () => {
    const workflowId = `probe-hosts-replay-${process.pid}`;
    await world.client.workflow.execute('probeHosts', { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args: [['pc2', 'mainpc']] });
    const history = await world.client.workflow.getHandle(workflowId).fetchHistory();
    await Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundle') } }, history, workflowId);
  });
});
