/** The GPU gate's pure parts: reading nvidia-smi, finding it, deciding (no GPU on this machine). */
import { chmodSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { findNvidiaSmi, gpuShortfall, parseNvidiaSmi } from '../../src/activities/host-info.js';

const csv = '0, NVIDIA GeForce RTX 4090, 24564, 3072\n1, NVIDIA GeForce RTX 3060, 12288, 12000\n';

describe('GPU gate (fake nvidia-smi output: no GPU on this machine)', () => {
  it('reads nvidia-smi\'s csv (MiB) into GB', () => {
    expect(parseNvidiaSmi(csv)).toEqual([
      { index: 0, model: 'NVIDIA GeForce RTX 4090', totalGb: 24564 / 1024, freeGb: 3 },
      { index: 1, model: 'NVIDIA GeForce RTX 3060', totalGb: 12, freeGb: 12000 / 1024 },
    ]);
    expect(() => parseNvidiaSmi('No devices were found')).toThrow('cannot read nvidia-smi line');
  });

  it('refuses when the plan\'s GPU has less free memory than the need, and names it', () => {
    const gpus = parseNvidiaSmi(csv);
    expect(gpuShortfall({ count: 1, minVramGb: 16, indexes: [0] }, gpus).refusal).toBe('GPU 0 (NVIDIA GeForce RTX 4090) has 3.0 GB free of 24.0 GB');
    expect(gpuShortfall({ count: 1, minVramGb: 8, indexes: [1] }, gpus)).toEqual({ granted: [gpus[1]] });
    expect(gpuShortfall({ count: 1, minVramGb: 8, indexes: [2] }, gpus).refusal).toBe('GPU 2 does not exist');
    // without the plan's indexes: any `count` GPUs with room
    expect(gpuShortfall({ count: 1, minVramGb: 8 }, gpus).granted.map((g) => g.index)).toEqual([1]);
    expect(gpuShortfall({ count: 2, minVramGb: 8 }, gpus).refusal).toContain('only 1 of its GPUs have that much free');
  });

  it('finds nvidia-smi: MIGRATE_NVIDIA_SMI first, else an executable on PATH, else none', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'smi-'));
    expect(findNvidiaSmi({ PATH: dir })).toBeUndefined();
    writeFileSync(path.join(dir, 'nvidia-smi'), '#!/bin/sh\n', { mode: 0o644 });
    expect(findNvidiaSmi({ PATH: dir })).toBeUndefined(); // not executable
    chmodSync(path.join(dir, 'nvidia-smi'), 0o755);
    expect(findNvidiaSmi({ PATH: `/nonexistent:${dir}` })).toBe(path.join(dir, 'nvidia-smi'));
    expect(findNvidiaSmi({ PATH: dir, MIGRATE_NVIDIA_SMI: '/opt/nv/bin/nvidia-smi' })).toBe('/opt/nv/bin/nvidia-smi');
  });
});
