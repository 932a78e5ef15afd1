/**
 * Worker wiring. A host's worker polls `host-<name>` with that host's activities (Docker at the
 * host's own endpoint); the orchestrator worker runs the workflows and the ledger's activities. `migrate worker --host NAME`
 * starts both in one process by default, so every host can also carry workflow tasks.
 */
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, NativeConnection, Worker, type ActivityInterceptorsFactory, type WorkerOptions as SdkWorkerOptions, type WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { createHostActivities } from '../activities/index.js';
import { createLedgerActivities } from '../activities/ledger.js';
import type { HostContext } from '../activities/context.js';
import { dockerClient } from '../activities/docker-client.js';
import type { Inventory } from '../inventory/schema.js';
import { hostQueue, ORCHESTRATOR_QUEUE } from '../plan/queues.js';
import type { DataConverter } from '@temporalio/common';
import { codecDataConverter } from '../codec/data-converter.js';
import { heartbeatInterceptors } from './heartbeat.js';

/**
 * What makes a killed worker's work resume within seconds on another (issue 15, item 7): every
 * activity beats each second and each beat reaches the server at once (the profiles' heartbeat
 * timeouts are a few seconds); a workflow task stuck on a dead worker's sticky queue moves to the
 * shared queue after 3 s, not 10.
 */
const RESUMABLE = {
  interceptors: { activity: [heartbeatInterceptors] },
  maxHeartbeatThrottleInterval: '1 second',
  defaultHeartbeatThrottleInterval: '1 second',
} satisfies Partial<SdkWorkerOptions>;

const here = path.dirname(fileURLToPath(import.meta.url));
export const WORKFLOWS_PATH = path.resolve(here, '../workflows/index.ts');

let bundle: Promise<WorkflowBundleWithSourceMap | { codePath: string }> | undefined;
const converterBundles = new Map<string, Promise<WorkflowBundleWithSourceMap>>();

/**
 * Bundle the workflow code once per process (or reuse MIGRATE_WORKFLOW_BUNDLE, a prebuilt file).
 * A custom failure converter must be inside the bundle (a worker given a bundle ignores the
 * converter path), so one bundle is made per converter and no prebuilt one is used then.
 */
export function workflowBundle(failureConverterPath?: string): Promise<WorkflowBundleWithSourceMap | { codePath: string }> {
  if (failureConverterPath) {
    let b = converterBundles.get(failureConverterPath);
    if (!b) {
      b = bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, failureConverterPath, logger: quietBundlerLogger });
      converterBundles.set(failureConverterPath, b);
    }
    return b;
  }
  const prebuilt = process.env.MIGRATE_WORKFLOW_BUNDLE;
  if (prebuilt) return Promise.resolve({ codePath: prebuilt });
  bundle ??= bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: quietBundlerLogger });
  return bundle;
}

const quietBundlerLogger = {
  log() {}, trace() {}, debug() {}, info() {},
  warn(message: string, meta?: Record<string, unknown>) { console.warn(message, meta ?? ''); },
  error(message: string, meta?: Record<string, unknown>) { console.error(message, meta ?? ''); },
};

export function dataDirFor(host: string): string {
  return path.resolve(process.env.MIGRATE_DATA_DIR ?? '.data', 'hosts', host);
}

export function hostContext(inventory: Inventory, host: string, identity?: string): HostContext {
  const spec = inventory.hosts[host];
  if (!spec) throw new Error(`unknown host "${host}": the inventory declares ${Object.keys(inventory.hosts).join(', ')}`);
  return {
    host,
    spec,
    project: inventory.project,
    docker: dockerClient(spec.docker),
    identity: identity ?? `${host}@${os.hostname()}:${process.pid}`,
    dataDir: dataDirFor(host),
  };
}

export interface WorkerOptions {
  connection: NativeConnection;
  namespace?: string;
  /** Payload encryption and encoded failures; default: from MIGRATE_CODEC_KEYS(_FILE), off when unset. `null`: off. */
  dataConverter?: DataConverter | null;
}

const converterOf = (opts: WorkerOptions) => (opts.dataConverter === null ? undefined : opts.dataConverter ?? codecDataConverter());

/**
 * A host's worker: its activities, and the workflows that run on the host itself (an agent's
 * migration, issue #14: its looks are local activities here, with no server round trip).
 */
export async function createHostWorker(opts: WorkerOptions & { context: HostContext; activityInterceptors?: ActivityInterceptorsFactory[] }): Promise<Worker> {
  const dataConverter = converterOf(opts);
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace ?? 'default',
    taskQueue: hostQueue(opts.context.host),
    identity: opts.context.identity,
    activities: createHostActivities(opts.context),
    workflowBundle: await workflowBundle(dataConverter?.failureConverterPath),
    dataConverter,
    ...RESUMABLE,
    interceptors: { activity: [...RESUMABLE.interceptors.activity, ...(opts.activityInterceptors ?? [])] },
    stickyQueueScheduleToStartTimeout: '3 seconds',
    // A host runs a few long Docker and database calls at once, not hundreds.
    maxConcurrentActivityTaskExecutions: 16,
  });
}

export async function createOrchestratorWorker(opts: WorkerOptions & { identity?: string }): Promise<Worker> {
  const dataConverter = converterOf(opts);
  const code = await workflowBundle(dataConverter?.failureConverterPath);
  return Worker.create({
    dataConverter,
    connection: opts.connection,
    namespace: opts.namespace ?? 'default',
    taskQueue: ORCHESTRATOR_QUEUE,
    identity: opts.identity ?? `orchestrator@${os.hostname()}:${process.pid}`,
    workflowBundle: code,
    // The ledger's activities talk to Temporal only: they run wherever workflows run.
    activities: createLedgerActivities(),
    ...RESUMABLE,
    stickyQueueScheduleToStartTimeout: '3 seconds',
  });
}

/** Run workers until `signal` aborts, then shut them down gracefully. */
export async function runWorkers(workers: Worker[], signal?: AbortSignal): Promise<void> {
  const onAbort = () => workers.forEach((w) => { if (w.getState() === 'RUNNING') w.shutdown(); });
  signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await Promise.all(workers.map((w) => w.run()));
  } finally {
    signal?.removeEventListener('abort', onAbort);
  }
}
