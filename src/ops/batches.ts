/**
 * Batch migrations: start one (`migrateBatch`, id `migrate-<batch>`) or all in order
 * (`migrateAllBatches`), follow them until they settle, read a batch's status (live, or from the
 * ledger once its execution is gone), pause / resume / approve / abort it, confirm or roll it back.
 */
import { WorkflowExecutionAlreadyStartedError, WorkflowNotFoundError, WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { Plan, UnitSpec } from '../plan/plan.js';
import { ORCHESTRATOR_QUEUE } from '../plan/queues.js';
import { SA } from '../common/search-attributes.js';
import { rootMessage } from '../common/failure.js';
import {
  abortUpdate, allBatchesProgressQuery, allBatchesWorkflowId, approveUpdate, batchProgressQuery, batchWorkflowId, migrateAllBatches, migrateBatch,
  pauseUpdate, resumeUpdate, type AllBatchesProgress, type BatchInput, type BatchPhase, type BatchProgress, type BatchResult,
} from '../workflows/batch.js';
import { decide, isOpen, ledgerRecord, type ChangeRecord, type Decision, type DecisionResult, type RollbackOptions } from './changes.js';
import { backupGuard } from './deploys.js';
import { BadInput, OperationFailed } from './errors.js';

export type { AllBatchesProgress, BatchProgress, BatchResult, AgentProgress } from '../workflows/batch.js';
export type BatchHandle = WorkflowHandle<typeof migrateBatch>;

/** Phases a follower stops at: the batch migrated (pending confirmation) or was decided. */
export const BATCH_SETTLED = new Set<BatchPhase>(['pending-confirmation', 'confirmed', 'rolled-back']);

export interface BatchStartOptions {
  force?: boolean;
  /** Probes per latency sample (default 20 for the baseline; the judge's default is the inventory's analysis.samples). */
  samples?: number;
  /** Migrate without the verified backup first; the reason is recorded. */
  skipBackup?: string;
  /** Confirm as soon as the batch migrated. */
  autoConfirm?: boolean;
}

/** The workflow input for one batch of the plan. Pure; an unknown batch is bad input. */
export function batchInput(plan: Plan, batchName: string, options: BatchStartOptions = {}): BatchInput {
  const batch = plan.batches.find((b) => b.name === batchName);
  if (!batch) {
    throw new BadInput('invalid batch', [{ path: 'batch', message: `no batch "${batchName}" in the inventory`, fix: `use one of: ${plan.batches.map((b) => b.name).join(', ') || '(none declared)'}, or all` }]);
  }
  const units = batch.agents.map((a) => plan.units[a]!);
  const inBatch = new Set(batch.agents);
  const deps = new Map<string, UnitSpec>();
  for (const u of units) for (const d of Object.keys(u.dependsOn)) if (!inBatch.has(d)) deps.set(d, plan.units[d]!);
  return {
    project: plan.project,
    batch: batch.name,
    units,
    dependencies: [...deps.values()],
    previousBatch: batch.index > 0 ? plan.batches[batch.index - 1]!.name : undefined,
    concurrency: batch.concurrency,
    maxFailures: batch.maxFailures,
    latencyTolerance: batch.latencyTolerance,
    // `samples` (the CLI's --samples, a test's few) sets the judge's probes too.
    analysis: { ...batch.analysis, samples: options.samples ?? batch.analysis.samples },
    approval: batch.approval,
    ...(batch.traffic ? { traffic: batch.traffic } : {}),
    force: options.force ?? false,
    samples: options.samples,
    backup: backupGuard(plan, options.skipBackup),
    autoConfirm: options.autoConfirm,
  };
}

/** Start one batch; refuses when that batch is already running (or open, pending confirmation). */
export async function startBatch(client: Client, plan: Plan, batchName: string, options: BatchStartOptions = {}): Promise<BatchHandle> {
  const input = batchInput(plan, batchName, options);
  const hosts = [...new Set(input.units.map((u) => u.host))];
  const workflowId = batchWorkflowId(input.batch);
  try {
    return await client.workflow.start(migrateBatch, {
      taskQueue: ORCHESTRATOR_QUEUE,
      workflowId,
      args: [input],
      typedSearchAttributes: [
        { key: SA.kind, value: 'batch' },
        { key: SA.batch, value: input.batch },
        { key: SA.hosts, value: hosts },
        { key: SA.phase, value: 'starting' },
      ],
      staticSummary: `${input.batch}: ${input.units.length} agent(s) on ${hosts.join(', ')}`,
      staticDetails: input.units.map((u) => `- ${u.name} → ${u.image} (spec ${u.specHash})`).join('\n'),
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) {
      throw new OperationFailed(`${input.batch} is still open (workflow ${workflowId}): watch it with \`migrate status ${input.batch}\`; confirm or roll it back (or abort it while it migrates) before starting it again`);
    }
    throw err;
  }
}

/** Start every batch of the plan, in order, as one durable `migrateAllBatches` workflow. */
export async function startAllBatches(client: Client, plan: Plan, options: BatchStartOptions = {}): Promise<WorkflowHandle<typeof migrateAllBatches>> {
  const batches = plan.batches.map((b) => batchInput(plan, b.name, options));
  if (batches.length === 0) throw new BadInput('invalid batch', [{ path: 'batch', message: 'the inventory declares no batches', fix: 'add batches: to the inventory' }]);
  const workflowId = allBatchesWorkflowId(plan.project);
  try {
    return await client.workflow.start(migrateAllBatches, {
      taskQueue: ORCHESTRATOR_QUEUE,
      workflowId,
      args: [{ project: plan.project, batches }],
      typedSearchAttributes: [{ key: SA.kind, value: 'batches' }],
      staticSummary: `all ${batches.length} batches of ${plan.project}, in order: ${batches.map((b) => b.batch).join(' → ')}`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new OperationFailed(`the batches of ${plan.project} are already being migrated (workflow ${workflowId}): watch it in the Web UI or with \`migrate status batch-N\``);
    throw err;
  }
}

/** Follow one batch until it settles (pending confirmation, or rolled back); `onProgress` sees each read. Queries that fail are retried. */
export async function followBatch(handle: WorkflowHandle, onProgress?: (p: BatchProgress) => void, pollMs = 300): Promise<BatchResult> {
  for (;;) {
    const p = await handle.query(batchProgressQuery).catch(() => undefined);
    if (p) onProgress?.(p);
    // A decided batch (rolled back, confirmed) is returned once its workflow has closed, so the batch can be started again at once.
    if (p && BATCH_SETTLED.has(p.phase)) return p.phase === 'pending-confirmation' ? p : ((await handle.result().catch(() => p)) as BatchResult);
    // Not settled, or not readable: a closed batch (refused at its gates, failed) ends the wait with its result.
    if ((await isOpen(handle).catch(() => true)) === false) {
      try {
        return (await handle.result()) as BatchResult;
      } catch (err) {
        throw new OperationFailed(rootMessage(err));
      }
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

/** Follow `start all`: each batch's own run, as the parent starts it; returns the parent's final progress. */
export async function followAllBatches(client: Client, parent: WorkflowHandle, names: string[], onBatch: (name: string, handle: WorkflowHandle) => Promise<unknown>): Promise<AllBatchesProgress> {
  let closed = false;
  const final = parent.result().then((r) => r as AllBatchesProgress).finally(() => { closed = true; });
  for (const name of names) {
    let runId: string | undefined;
    while (!runId && !closed) {
      runId = (await parent.query(allBatchesProgressQuery).catch(() => undefined))?.runs[name];
      if (!runId) await Promise.race([final.catch(() => undefined), new Promise((r) => setTimeout(r, 250))]);
    }
    runId ??= (await final).runs[name];
    if (!runId) break; // stopped before this batch
    await onBatch(name, client.workflow.getHandle(batchWorkflowId(name), runId)).catch(() => undefined);
  }
  return final;
}

export interface BatchStatus {
  batch: string;
  /** The workflow's status (RUNNING, COMPLETED, …), or `GONE` when only the ledger remembers it. */
  status: string;
  progress?: BatchProgress;
  record?: ChangeRecord;
}

/** Where a batch stands: the live query while it is open, its result once closed, the ledger once its execution is gone. */
export async function batchStatus(client: Client, project: string, batch: string): Promise<BatchStatus> {
  const handle = client.workflow.getHandle(batchWorkflowId(batch));
  const record = await ledgerRecord(client, project, 'batch', batch);
  let status: string;
  try {
    status = (await handle.describe()).status.name;
  } catch (err) {
    if (!(err instanceof WorkflowNotFoundError)) throw err;
    if (record) return { batch, status: 'GONE', record };
    throw new OperationFailed(`${batch} has never been started: \`migrate start ${batch}\``);
  }
  if (status === 'RUNNING') return { batch, status, progress: await handle.query(batchProgressQuery), record };
  try {
    const r = (await handle.result()) as BatchResult;
    return { batch, status, record, progress: { ...r, phase: r.status === 'confirmed' ? 'confirmed' : 'rolled-back', paused: false, aborting: false, awaitingApproval: false } };
  } catch (err) {
    if (record) return { batch, status, record };
    throw new OperationFailed(`${batch}'s last run ${status.toLowerCase()}: ${rootMessage(err)}`);
  }
}

/** Confirm (drop the kept containers, after a health re-check) or roll back a batch pending confirmation. */
export function decideBatch(client: Client, project: string, batch: string, decision: Decision, options: RollbackOptions = {}): Promise<DecisionResult> {
  return decide(client, client.workflow.getHandle(batchWorkflowId(batch)), batch, decision, options, () => ledgerRecord(client, project, 'batch', batch));
}

export const BATCH_CONTROLS = {
  pause: 'start no further agents (those in flight finish)',
  resume: 'continue a paused batch',
  approve: 'let a batch that waits for approval proceed to cutover (or, with `traffic: { approve: true }`, its agents to their next traffic step)',
  abort: 'stop the batch while it migrates and roll back every agent it changed',
} as const;
export type BatchControl = keyof typeof BATCH_CONTROLS;

/** An operator control on a migrating batch; returns the batch's phase. The workflow's validators refuse what makes no sense now. */
export async function controlBatch(client: Client, batch: string, control: BatchControl, reason?: string): Promise<BatchPhase> {
  const handle = client.workflow.getHandle(batchWorkflowId(batch));
  try {
    switch (control) {
      case 'pause': return await handle.executeUpdate(pauseUpdate);
      case 'resume': return await handle.executeUpdate(resumeUpdate);
      case 'approve': return await handle.executeUpdate(approveUpdate);
      case 'abort': return await handle.executeUpdate(abortUpdate, { args: [reason ?? 'aborted by operator'] });
    }
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new OperationFailed(`${batch} is not running`);
    if (err instanceof WorkflowUpdateFailedError) throw new OperationFailed(`${control} refused: ${rootMessage(err)}`);
    throw new OperationFailed(`${control} ${batch}: ${rootMessage(err)}`);
  }
}
