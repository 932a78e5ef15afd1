/**
 * Activities that describe the host a worker runs on: the first proof of routing (which worker ran
 * a step) and the GPU gate a GPU-bound step passes before it touches anything.
 *
 * The GPU gate reads `nvidia-smi --query-gpu=index,name,memory.total,memory.free` where the host
 * has it (`MIGRATE_NVIDIA_SMI`, a path, else `nvidia-smi` on the worker's PATH), the inventory's
 * declared GPUs otherwise, and refuses (non-retryable `GpuUnavailable`) when the unit's GPU(s) have
 * less free memory than its `min_vram_gb`.
 */
import os from 'node:os';
import { accessSync, constants } from 'node:fs';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { log } from '@temporalio/activity';
import type { HostContext } from './context.js';

export interface HostReport {
  host: string;
  identity: string;
  pid: number;
  hostname: string;
  docker: { serverVersion: string; engineName: string; containersRunning: number };
  gpus: { model: string; vramGb: number }[];
}

export interface GpuGrant {
  host: string;
  identity: string;
  unit: string;
  gpus: { model: string; vramGb: number; index?: number; freeGb?: number }[];
  /** Whether a real NVIDIA device request will be made (the host declares the runtime). */
  deviceRequest: boolean;
  /** Where the gate read the GPUs: nvidia-smi on the host, or the inventory's declaration. */
  source?: 'nvidia-smi' | 'declared';
}

/** What the gate checks: the unit's need, and the GPUs of its host the plan chose (positions). */
export interface GpuNeedOnHost {
  count: number;
  minVramGb: number;
  indexes?: number[];
}

/** One GPU as the gate sees it (GB; free is the declared size where nvidia-smi is absent). */
export interface GpuReading {
  index: number;
  model: string;
  totalGb: number;
  freeGb: number;
}

export const NVIDIA_SMI_QUERY = ['--query-gpu=index,name,memory.total,memory.free', '--format=csv,noheader,nounits'];

/** `nvidia-smi --query-gpu=index,name,memory.total,memory.free --format=csv,noheader,nounits` (MiB) → readings. */
export function parseNvidiaSmi(csv: string): GpuReading[] {
  return csv.split('\n').map((l) => l.trim()).filter(Boolean).map((line) => {
    const cells = line.split(',').map((c) => c.trim());
    const [index, total, free] = [Number(cells[0]), Number(cells.at(-2)), Number(cells.at(-1))];
    if (cells.length < 4 || ![index, total, free].every(Number.isFinite)) throw new Error(`cannot read nvidia-smi line "${line}"`);
    return { index, model: cells.slice(1, -2).join(','), totalGb: total / 1024, freeGb: free / 1024 };
  });
}

/** The nvidia-smi to run: MIGRATE_NVIDIA_SMI, else the first executable `nvidia-smi` on PATH, else none. */
export function findNvidiaSmi(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env.MIGRATE_NVIDIA_SMI) return env.MIGRATE_NVIDIA_SMI;
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    const candidate = path.join(dir, 'nvidia-smi');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

const gb = (n: number) => `${n.toFixed(1)} GB`;

/** Why the unit's GPU(s) cannot take it now, or undefined (with the GPUs granted). Pure. */
export function gpuShortfall(need: GpuNeedOnHost, gpus: GpuReading[]): { refusal?: string; granted: GpuReading[] } {
  const enough = (g: GpuReading) => g.freeGb >= need.minVramGb;
  if (need.indexes) {
    const wanted = need.indexes.map((i) => ({ i, g: gpus.find((x) => x.index === i) }));
    const short = wanted.filter(({ g }) => !g || !enough(g));
    if (short.length === 0) return { granted: wanted.map(({ g }) => g!) };
    return { refusal: `GPU ${short.map(({ i, g }) => (g ? `${i} (${g.model}) has ${gb(g.freeGb)} free of ${gb(g.totalGb)}` : `${i} does not exist`)).join(', GPU ')}`, granted: [] };
  }
  const fitting = gpus.filter(enough);
  if (fitting.length >= need.count) return { granted: fitting.slice(0, need.count) };
  return { refusal: `only ${fitting.length} of its GPUs have that much free (${gpus.map((g) => `GPU ${g.index} ${g.model}: ${gb(g.freeGb)} free of ${gb(g.totalGb)}`).join(', ') || 'no GPU'})`, granted: [] };
}

const run = promisify(execFile);

export function createHostInfoActivities(ctx: HostContext) {
  return {
    async describeHost(): Promise<HostReport> {
      const info = (await ctx.docker.info()) as { ServerVersion: string; Name: string; ContainersRunning: number };
      return {
        host: ctx.host,
        identity: ctx.identity,
        pid: process.pid,
        hostname: os.hostname(),
        docker: { serverVersion: info.ServerVersion, engineName: info.Name, containersRunning: info.ContainersRunning },
        gpus: ctx.spec.gpus.map((g) => ({ model: g.model, vramGb: g.vram_gb })),
      };
    },

    /**
     * The GPU gate, asked before anything of the unit stops: refuses (non-retryable GpuUnavailable)
     * unless the unit's GPU(s) on this host have `minVramGb` free — as nvidia-smi reports where the
     * host has it, as declared otherwise. Note: memory the unit's own running container holds counts
     * as used (it is freed only once that container is retired).
     */
    async reserveGpu(unit: string, need: GpuNeedOnHost): Promise<GpuGrant> {
      const smi = findNvidiaSmi();
      let gpus: GpuReading[];
      if (smi) {
        log.info('gpu gate: nvidia-smi', { unit, host: ctx.host, smi });
        const { stdout } = await run(smi, NVIDIA_SMI_QUERY, { timeout: 10_000 }).catch((err: Error) => {
          throw new Error(`${smi} failed on host ${ctx.host}: ${err.message}`);
        });
        gpus = parseNvidiaSmi(stdout);
      } else {
        gpus = ctx.spec.gpus.map((g, index) => ({ index, model: g.model, totalGb: g.vram_gb, freeGb: g.vram_gb }));
      }
      const { refusal, granted } = gpuShortfall(need, gpus);
      if (refusal) {
        const want = need.indexes ? `GPU ${need.indexes.join(', ')}` : `${need.count} GPU(s)`;
        throw ApplicationFailure.nonRetryable(
          `${unit} needs ${want} with ≥ ${need.minVramGb} GB free on host ${ctx.host}, but ${smi ? 'nvidia-smi reports' : 'the host declares'}: ${refusal}`,
          'GpuUnavailable',
        );
      }
      log.info('gpu reserved', { unit, host: ctx.host, gpus: granted.map((g) => g.index) });
      return {
        host: ctx.host,
        identity: ctx.identity,
        unit,
        gpus: granted.map((g) => ({ model: g.model, vramGb: g.totalGb, index: g.index, freeGb: g.freeGb })),
        deviceRequest: ctx.spec.gpu_runtime === 'nvidia',
        source: smi ? 'nvidia-smi' : 'declared',
      };
    },
  };
}
