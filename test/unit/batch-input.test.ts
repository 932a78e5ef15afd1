/** The batch workflow's input from the plan, and the validation latency rule. Pure: no server. */
import { describe, expect, it } from 'vitest';
import { loadInventoryFiles } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { batchInput } from '../../src/ops/index.js';
import { latencyLimitMs } from '../../src/workflows/batch.js';

describe('batchInput', async () => {
  const { inventory } = await loadInventoryFiles(['inventory/agentsys.yaml', 'inventory/local.yaml']);
  const plan = buildPlan(inventory);

  it('takes the batch\'s agents in order, the previous batch, and the dependencies outside the batch', () => {
    const b2 = batchInput(plan, 'batch-2');
    expect(b2.units.map((u) => u.name)).toEqual(plan.batches[1]!.agents);
    expect(b2.previousBatch).toBe('batch-1');
    expect(batchInput(plan, 'batch-1').previousBatch).toBeUndefined();
    const inBatch = new Set(b2.units.map((u) => u.name));
    expect(b2.dependencies.length).toBeGreaterThan(0);
    for (const d of b2.dependencies) expect(inBatch.has(d.name)).toBe(false);
  });

  it('refuses an unknown batch as bad input, naming the ones there are', () => {
    expect(() => batchInput(plan, 'batch-9')).toThrow(/invalid batch/);
  });
});

describe('latencyLimitMs', () => {
  it('is tolerance × baseline p95, with an absolute floor for fast baselines', () => {
    expect(latencyLimitMs(1000, 1.5)).toBe(1500);
    expect(latencyLimitMs(2, 1.5)).toBe(102);
  });
});
