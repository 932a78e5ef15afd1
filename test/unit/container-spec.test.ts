/**
 * The container spec a unit becomes. No GPU here: these check the Docker create options the host
 * would receive (an NVIDIA device request only where the host declares the runtime), not a GPU.
 */
import { describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { containerCreateOptions } from '../../src/activities/docker.js';
import { LABELS } from '../../src/plan/queues.js';

function plan(runtime: 'nvidia' | 'none') {
  return buildPlan(parseInventory({
    version: 1,
    project: 'spec',
    hosts: { mainpc: { address: '127.0.0.9', gpus: [{ model: 'RTX 4090', vram_gb: 24 }], gpu_runtime: runtime } },
    services: {
      trainer: { image: 'trainer:1', gpu: { count: 1, min_vram_gb: 16 }, ports: ['8010:8010'] },
      api: { image: 'api:1', ports: ['8001:80'] },
    },
  }));
}

describe('containerCreateOptions (stubbed GPU: no GPU on this machine)', () => {
  it('asks Docker for the NVIDIA GPUs a unit needs when its host has the NVIDIA runtime', () => {
    const unit = plan('nvidia').units.trainer!;
    const opts = containerCreateOptions('spec', unit, { release: 'r1', change: 'c1' }, {});
    // the plan's GPU, by index: the one whose memory it was counted against
    expect(opts.HostConfig?.DeviceRequests).toEqual([{ Driver: 'nvidia', DeviceIDs: ['0'], Capabilities: [['gpu']] }]);
    // a unit spec without indexes (made before the plan chose them) still asks for a count
    const byCount = containerCreateOptions('spec', { ...unit, gpuIndexes: undefined }, { release: 'r1', change: 'c1' }, {});
    expect(byCount.HostConfig?.DeviceRequests).toEqual([{ Driver: 'nvidia', Count: 1, Capabilities: [['gpu']] }]);
    expect(opts.name).toBe('spec_mainpc_trainer');
    expect(opts.Labels).toMatchObject({ [LABELS.release]: 'r1', [LABELS.specHash]: unit.specHash, [LABELS.unit]: 'trainer' });
    expect(opts.HostConfig?.PortBindings).toEqual({ '8010/tcp': [{ HostIp: '127.0.0.9', HostPort: '8010' }] });
  });

  it('makes no device request without the runtime, nor for a unit that needs no GPU', () => {
    expect(containerCreateOptions('spec', plan('none').units.trainer!, { release: 'r1', change: 'c1' }, {}).HostConfig?.DeviceRequests).toBeUndefined();
    expect(containerCreateOptions('spec', plan('nvidia').units.api!, { release: 'r1', change: 'c1' }, {}).HostConfig?.DeviceRequests).toBeUndefined();
  });

  it('changes the spec hash (so the container is replaced) when the GPU request changes', () => {
    expect(plan('nvidia').units.trainer!.specHash).not.toBe(plan('none').units.trainer!.specHash);
    expect(plan('nvidia').units.api!.specHash).toBe(plan('none').units.api!.specHash);
  });
});
