/**
 * Activities that describe the host a worker runs on: the first proof of routing (which worker ran
 * a step) and the GPU gate a GPU-bound step passes before it touches anything.
 */
import os from 'node:os';
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
  gpus: { model: string; vramGb: number }[];
  /** Whether a real NVIDIA device request will be made (the host declares the runtime). */
  deviceRequest: boolean;
}

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

    /** Refuses (non-retryable) unless this host declares the GPUs the unit needs. */
    async reserveGpu(unit: string, need: { count: number; minVramGb: number }): Promise<GpuGrant> {
      const fitting = ctx.spec.gpus.filter((g) => g.vram_gb >= need.minVramGb);
      if (fitting.length < need.count) {
        throw ApplicationFailure.nonRetryable(
          `${unit} needs ${need.count} GPU(s) with ≥ ${need.minVramGb} GB, but host ${ctx.host} declares ${ctx.spec.gpus.map((g) => `${g.model} ${g.vram_gb} GB`).join(', ') || 'none'}`,
          'GpuUnavailable',
        );
      }
      log.info('gpu reserved', { unit, host: ctx.host });
      return {
        host: ctx.host,
        identity: ctx.identity,
        unit,
        gpus: fitting.slice(0, need.count).map((g) => ({ model: g.model, vramGb: g.vram_gb })),
        deviceRequest: ctx.spec.gpu_runtime === 'nvidia',
      };
    },
  };
}
