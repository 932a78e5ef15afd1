/**
 * The first proof of routing: one activity on each host's queue, reporting which worker ran it;
 * and a GPU-bound step that runs only where the plan placed it.
 */
import { proxyActivities } from '@temporalio/workflow';
import type { HostActivities } from '../activities/index.js';
import type { HostReport, GpuGrant } from '../activities/host-info.js';
import { hostQueue } from '../plan/queues.js';

function onHost(host: string) {
  return proxyActivities<HostActivities>({
    taskQueue: hostQueue(host),
    startToCloseTimeout: '30 seconds',
    // A host whose worker is gone must not stall the workflow forever.
    scheduleToCloseTimeout: '2 minutes',
    retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['GpuUnavailable'] },
  });
}

export async function probeHosts(hosts: string[]): Promise<HostReport[]> {
  return Promise.all(hosts.map((h) => onHost(h).describeHost()));
}

export interface GpuStepInput {
  unit: string;
  host: string;
  gpu: { count: number; minVramGb: number };
}

export async function gpuStep(input: GpuStepInput): Promise<GpuGrant> {
  return onHost(input.host).reserveGpu(input.unit, input.gpu);
}
