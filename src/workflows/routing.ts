/**
 * The first proof of routing: one activity on each host's queue, reporting which worker ran it;
 * and a GPU-bound step that runs only where the plan placed it.
 */
import type { HostReport, GpuGrant } from '../activities/host-info.js';
import { onHost } from './profiles.js';

export async function probeHosts(hosts: string[]): Promise<HostReport[]> {
  return Promise.all(hosts.map((h) => onHost(h).docker.describeHost()));
}

export interface GpuStepInput {
  unit: string;
  host: string;
  gpu: { count: number; minVramGb: number };
}

export async function gpuStep(input: GpuStepInput): Promise<GpuGrant> {
  return onHost(input.host).docker.reserveGpu(input.unit, input.gpu);
}
