/**
 * GPU memory that adds up (no GPU on this machine: the declared GPUs are packed, nothing is probed).
 * Per GPU, the summed min_vram_gb of the units placed on it fits its memory; best fit, biggest first.
 */
import { describe, expect, it } from 'vitest';
import { InventoryError, loadInventoryFiles, parseInventory } from '../../src/inventory/load.js';
import { buildPlan, type Plan } from '../../src/plan/plan.js';
import { packGpus } from '../../src/plan/gpu.js';

type Gpu = { model: string; vram_gb: number };
const gpu = (vram_gb: number, model = `GPU${vram_gb}`): Gpu => ({ model, vram_gb });

function plan(hosts: Record<string, Gpu[]>, services: Record<string, { gpu: { count?: number | 'all'; min_vram_gb: number }; placement?: { host: string } }>): Plan {
  return buildPlan(parseInventory({
    version: 1,
    project: 'gpus',
    hosts: Object.fromEntries(Object.entries(hosts).map(([h, gpus], i) => [h, { address: `127.0.0.${240 + i}`, gpus }])),
    services: Object.fromEntries(Object.entries(services).map(([n, s]) => [n, { image: `${n}:1`, ...s }])),
  }));
}

function problems(fn: () => unknown) {
  try {
    fn();
  } catch (err) {
    if (err instanceof InventoryError) return err.problems;
    throw err;
  }
  return [];
}

/** host → GPU index → units, from a plan. */
function layout(p: Plan): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const u of Object.values(p.units).filter((x) => x.gpu).sort((a, b) => a.name.localeCompare(b.name))) {
    for (const i of u.gpuIndexes!) (out[`${u.host}/${i}`] ??= []).push(u.name);
  }
  return out;
}

describe('GPU placement: memory adds up per GPU (declared GPUs; no GPU on this machine)', () => {
  it('refuses 16 + 16 + 20 GB on one 24 GB GPU, naming the GPU, what is placed on it and what is free', () => {
    const p = problems(() => plan({ mainpc: [gpu(24, 'RTX 4090')] }, {
      a: { gpu: { min_vram_gb: 16 } }, b: { gpu: { min_vram_gb: 16 } }, c: { gpu: { min_vram_gb: 20 } },
    }));
    // biggest first: c (20) takes the GPU; a and b (16 each) find 4 GB free
    expect(p.map((x) => x.path)).toEqual(['services.a.gpu', 'services.b.gpu']);
    expect(p[0]!.message).toBe('needs 1 GPU(s) of one host with 16 GB free each, but the units placed first (biggest needs first) leave no room: mainpc GPU 0 (RTX 4090, 24 GB): c 20 GB, 4 GB free');
    expect(p[0]!.fix).toContain('move one of them to another host');
  });

  it('spreads 16 + 16 + 20 GB over hosts with room: one unit per 24 GB GPU', () => {
    const p = plan({ mainpc: [gpu(24)], pc2: [gpu(24)], pc3: [gpu(24)] }, {
      a: { gpu: { min_vram_gb: 16 } }, b: { gpu: { min_vram_gb: 16 } }, c: { gpu: { min_vram_gb: 20 } },
    });
    expect(layout(p)).toEqual({ 'mainpc/0': ['c'], 'pc2/0': ['a'], 'pc3/0': ['b'] });
  });

  it('a need no GPU can meet, even empty, lists every GPU', () => {
    const p = problems(() => plan({ mainpc: [gpu(24, 'RTX 4090')], pc2: [gpu(12, 'RTX 3060')] }, { big: { gpu: { min_vram_gb: 32 } } }));
    expect(p).toEqual([expect.objectContaining({ path: 'services.big.gpu', message: expect.stringContaining('mainpc: RTX 4090 24 GB, pc2: RTX 3060 12 GB') })]);
  });

  it('fits a need only a better packing makes room for: biggest needs first, best fit', () => {
    // In declaration order, best fit alone would put a (8) on the 12 GB GPU, b (8) on the 16 GB one,
    // and leave c (12) nowhere. Biggest first: c on the 12 GB GPU, a and b share the 16 GB one.
    const hosts = { mainpc: [gpu(16)], pc2: [gpu(12)] };
    const services = { a: { gpu: { min_vram_gb: 8 } }, b: { gpu: { min_vram_gb: 8 } }, c: { gpu: { min_vram_gb: 12 } } };
    expect(layout(plan(hosts, services))).toEqual({ 'mainpc/0': ['a', 'b'], 'pc2/0': ['c'] });
    // the same needs declared in another order plan the same
    expect(layout(plan(hosts, { c: services.c, b: services.b, a: services.a }))).toEqual({ 'mainpc/0': ['a', 'b'], 'pc2/0': ['c'] });
  });

  it('best fit keeps the big GPU for the big need', () => {
    const p = plan({ mainpc: [gpu(24, 'RTX 4090'), gpu(12, 'RTX 3060')] }, { small: { gpu: { min_vram_gb: 6 } }, big: { gpu: { min_vram_gb: 20 } }, mid: { gpu: { min_vram_gb: 6 } } });
    expect(layout(p)).toEqual({ 'mainpc/0': ['big'], 'mainpc/1': ['mid', 'small'] });
  });

  it('count > 1 takes that many GPUs of one host; count: all takes every one', () => {
    const p = plan({ one: [gpu(48)], two: [gpu(24), gpu(24), gpu(12)] }, { pair: { gpu: { count: 2, min_vram_gb: 10 } }, single: { gpu: { min_vram_gb: 12 } } });
    expect(p.units.pair!).toMatchObject({ host: 'two', gpu: { count: 2, minVramGb: 10 } });
    expect(p.units.pair!.gpuIndexes).toHaveLength(2);
    expect(layout(p)['two/2']).toEqual(['single']);
    const all = plan({ h: [gpu(24), gpu(24)] }, { x: { gpu: { count: 'all', min_vram_gb: 8 } }, y: { gpu: { min_vram_gb: 16 } } });
    expect(all.units.x!.gpuIndexes).toEqual([0, 1]);
    expect(layout(all)).toEqual({ 'h/0': ['x', 'y'], 'h/1': ['x'] });
    const p2 = problems(() => plan({ h: [gpu(24), gpu(24)] }, { x: { gpu: { count: 2, min_vram_gb: 16 } }, y: { gpu: { min_vram_gb: 10 } } }));
    expect(p2[0]!.message).toContain('h GPU 0 (GPU24, 24 GB): x 16 GB, 8 GB free; h GPU 1 (GPU24, 24 GB): x 16 GB, 8 GB free');
  });

  it('respects a pinned host', () => {
    const p = problems(() => plan({ mainpc: [gpu(24)], pc2: [gpu(12)] }, { a: { gpu: { min_vram_gb: 8 }, placement: { host: 'pc2' } }, b: { gpu: { min_vram_gb: 8 }, placement: { host: 'pc2' } } }));
    expect(p).toEqual([expect.objectContaining({ path: 'services.b.gpu', message: expect.stringContaining('pc2 GPU 0 (GPU12, 12 GB): a 8 GB, 4 GB free') })]);
  });

  it('is deterministic and pure', () => {
    const hosts = [{ name: 'a', gpus: [{ model: 'x', vramGb: 24 }] }, { name: 'b', gpus: [{ model: 'x', vramGb: 24 }] }];
    const needs = [{ unit: 'u', path: 'services.u', count: 1, minVramGb: 8, hosts: ['a', 'b'] }, { unit: 'v', path: 'services.v', count: 1, minVramGb: 8, hosts: ['a', 'b'] }];
    const once = packGpus(hosts, needs);
    expect([...once.assigned]).toEqual([...packGpus(hosts, needs).assigned]);
    // best fit: GPUs of the same size, v goes where u left 16 GB, not to the empty one
    expect([...once.assigned]).toEqual([['u', { host: 'a', indexes: [0] }], ['v', { host: 'a', indexes: [0] }]]);
  });

  it('the shipped inventory still plans, with and without the local override', async () => {
    for (const files of [['inventory/agentsys.yaml'], ['inventory/agentsys.yaml', 'inventory/local.yaml']]) {
      const p = buildPlan((await loadInventoryFiles(files)).inventory);
      expect(p.units['rl-training-server']).toMatchObject({ host: 'mainpc', gpuIndexes: [0] });
      expect(p.units['pc2-ai-reasoning']).toMatchObject({ host: 'pc2', gpuIndexes: [0] }); // holds VisionProcessingAgent
    }
  });
});
