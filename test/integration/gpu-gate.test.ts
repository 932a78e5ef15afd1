/**
 * The GPU gate on the target host, with a fake nvidia-smi on the worker's PATH (no GPU on this
 * machine): a GPU agent whose GPU reports too little free memory is refused before anything stops.
 * Real Temporal dev server, real Docker engine, stub agents (version 1 installed, version 2 refused).
 */
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import Dockerode from 'dockerode';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { containerName, LABELS, previousName } from '../../src/plan/queues.js';
import { STUB_IMAGE } from '../../src/dev/stub-image.js';
import { followBatch, startBatch } from '../../src/ops/index.js';
import { startWorld, type TestWorld } from '../helpers/temporal.js';

const docker = new Dockerode();
const project = `gpugate${process.pid}`;
const batch = 'gpu-batch-1';
let world: TestWorld | undefined;

// The fake nvidia-smi prints what gpus.csv holds and logs how it was called.
const bin = mkdtempSync(path.join(tmpdir(), 'fake-nvidia-smi-'));
const smi = path.join(bin, 'nvidia-smi');
writeFileSync(smi, `#!/bin/sh\necho "$@" >> "${bin}/calls"\ncat "${bin}/gpus.csv"\n`);
chmodSync(smi, 0o755);
const savedPath = process.env.PATH;
const freeMiB = (mib: number) => writeFileSync(path.join(bin, 'gpus.csv'), `0, NVIDIA GeForce RTX 4090, 24564, ${mib}\n`);

async function inspect(name: string) {
  try {
    const c = await docker.getContainer(name).inspect();
    return { id: c.Id, running: c.State.Running, version: c.Config.Env.find((e) => e.startsWith('AGENT_VERSION='))?.split('=')[1] };
  } catch {
    return undefined;
  }
}

afterAll(async () => {
  process.env.PATH = savedPath;
  await world?.close();
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
  await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  const nets = await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } });
  await Promise.all(nets.map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)));
});

describe('GPU gate on the target host', () => {
  it('fake nvidia-smi (no GPU on this machine): too little free GPU memory refuses the GPU agent before anything stops', async () => {
    // The host activities run in this process: the fake goes first on its PATH.
    process.env.PATH = `${bin}${path.delimiter}${savedPath}`;
    delete process.env.MIGRATE_NVIDIA_SMI;
    const healthcheck = { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '1s' };
    const inventory = parseInventory({
      version: 1,
      project,
      hosts: { mainpc: { address: '127.0.0.230', gpus: [{ model: 'RTX 4090', vram_gb: 24 }] } },
      agents: {
        Trainer: { placement: { host: 'mainpc' }, image: 'agentsys/trainer:2.0', ports: ['7100:8080'], healthcheck, gpu: { count: 1, min_vram_gb: 16 } },
        Helper: { placement: { host: 'mainpc' }, image: 'agentsys/helper:2.0', ports: ['7101:8080'], healthcheck },
      },
      batches: [{ name: batch, agents: ['Trainer', 'Helper'], concurrency: 2, max_failures: 1 }],
    });
    const plan = buildPlan(inventory);
    expect(plan.units.Trainer).toMatchObject({ host: 'mainpc', gpuIndexes: [0] });
    world = await startWorld(inventory);

    // Version 1, first install: 20 GB free, the gate lets it through.
    freeMiB(20 * 1024);
    const v1 = await (await startBatch(world.client, stubPlan(plan, { image: STUB_IMAGE, version: '1' }), batch, { samples: 3, force: true, autoConfirm: true })).result();
    expect(v1).toMatchObject({ outcome: 'migrated', status: 'confirmed' });
    expect(readFileSync(path.join(bin, 'calls'), 'utf8').trim()).toBe('--query-gpu=index,name,memory.total,memory.free --format=csv,noheader,nounits');
    const trainer = containerName(project, 'mainpc', 'Trainer');
    const before = (await inspect(trainer))!;
    expect(before).toMatchObject({ running: true, version: '1' });

    // Version 2: the GPU now has 4 GB free (something else took it): Trainer is refused, untouched.
    freeMiB(4 * 1024);
    const r = await followBatch(await startBatch(world.client, stubPlan(plan, { image: STUB_IMAGE, version: '2' }), batch, { samples: 3 }));
    const t = r.agents.find((a) => a.agent === 'Trainer')!;
    expect(t.phase).toBe('failed');
    expect(t.reason).toContain('Trainer needs GPU 0 with ≥ 16 GB free on host mainpc, but nvidia-smi reports: GPU 0 (NVIDIA GeForce RTX 4090) has 4.0 GB free of 24.0 GB');
    expect(t.reason).toContain('left as it was');
    // nothing stopped: the same v1 container runs, nothing was kept as .prev
    expect(await inspect(trainer)).toEqual(before);
    expect(await inspect(previousName(trainer))).toBeUndefined();
    // the agent without a GPU need migrated
    expect(r.agents.find((a) => a.agent === 'Helper')!.phase).toBe('migrated');
    expect(await inspect(containerName(project, 'mainpc', 'Helper'))).toMatchObject({ running: true, version: '2' });
    expect(readFileSync(path.join(bin, 'calls'), 'utf8').trim().split('\n')).toHaveLength(2);
  });
});
