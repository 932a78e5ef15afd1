/**
 * Deploys: start one (`deployStack`, id `deploy-<release>`), follow it until it settles, read its
 * status (live, or from the ledger once its execution is gone), confirm or roll it back.
 */
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { Plan } from '../plan/plan.js';
import { ORCHESTRATOR_QUEUE } from '../plan/queues.js';
import { SA } from '../common/search-attributes.js';
import { rootMessage } from '../common/failure.js';
import { deployLockId, deployStack, deployWorkflowId, progressQuery, type DeployInput, type DeployProgress } from '../workflows/deploy.js';
import type { BackupGuard } from '../workflows/safeguard.js';
import { decide, isOpen, ledgerRecord, type Decision, type DecisionResult, type RollbackOptions, type ChangeRecord } from './changes.js';
import { OperationFailed } from './errors.js';

export type { DeployProgress } from '../workflows/deploy.js';
export type DeployHandle = WorkflowHandle<typeof deployStack>;

/** Phases a follower stops at. */
export const DEPLOY_SETTLED = new Set(['pending-confirmation', 'confirmed', 'rolled-back', 'failed']);

export function defaultRelease(at = new Date()): string {
  return `r${at.toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
}

/** What a deploy or a batch does about the data first: a verified backup of the plan's targets, or the operator's skip. */
export function backupGuard(plan: Plan, skipReason: string | undefined): BackupGuard | undefined {
  if (skipReason !== undefined) return { skip: skipReason };
  return plan.backups && plan.backups.components.length > 0 ? { take: plan.backups } : undefined;
}

/** Phases after which a deploy only finishes up (restores, records) and lets its lock go. */
const DECIDED = new Set(['confirmed', 'rolled-back', 'failed']);

/**
 * Refuse before starting anything when another deploy of the project holds the lock. A deploy that
 * is already decided (confirmed, rolled back) lets go of it a moment later: that is waited for
 * (up to 30 s), so `rollback R` then `deploy` at once is not refused.
 */
export async function checkNoDeployRunning(client: Client, project: string): Promise<void> {
  const lock = client.workflow.getHandle(deployLockId(project));
  if (!(await isOpen(lock))) return;
  const holder = (await lock.describe()).parentExecution?.workflowId ?? 'another deploy';
  const decided = holder !== 'another deploy'
    && DECIDED.has((await client.workflow.getHandle(holder).query(progressQuery).catch(() => undefined))?.phase ?? '');
  for (const deadline = Date.now() + 30_000; decided && Date.now() < deadline;) {
    await new Promise((r) => setTimeout(r, 250));
    if (!(await isOpen(lock))) return;
  }
  throw new OperationFailed(`${holder} is still running or waiting for confirmation for project ${project}: wait for it, or run \`migrate status ${holder.replace(/^deploy-/, '')}\`, then confirm or roll it back`);
}

export interface StartDeployOptions {
  release: string;
  concurrency?: number;
  autoConfirm?: boolean;
  /** Deploy without the verified backup first; the reason is recorded. */
  skipBackup?: string;
}

export async function startDeploy(client: Client, plan: Plan, opts: StartDeployOptions): Promise<DeployHandle> {
  await checkNoDeployRunning(client, plan.project);
  const units = Object.values(plan.units).filter((u) => u.kind === 'service');
  const input: DeployInput = {
    release: opts.release, project: plan.project, units, concurrency: opts.concurrency, autoConfirm: opts.autoConfirm,
    backup: backupGuard(plan, opts.skipBackup),
  };
  try {
    return await client.workflow.start(deployStack, {
      taskQueue: ORCHESTRATOR_QUEUE,
      workflowId: deployWorkflowId(opts.release),
      args: [input],
      staticSummary: `deploy ${units.length} services of ${plan.project}, release ${opts.release}`,
      typedSearchAttributes: [
        { key: SA.kind, value: 'deploy' },
        { key: SA.release, value: opts.release },
        { key: SA.hosts, value: [...new Set(units.map((u) => u.host))].sort() },
      ],
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new OperationFailed(`release ${opts.release} is already being deployed (workflow ${deployWorkflowId(opts.release)}): pick another --release`);
    throw err;
  }
}

const closedProgress = (error: string): DeployProgress => ({ release: '', project: '', phase: 'failed', startedAt: 0, updatedAt: 0, units: {}, error });

/**
 * Follow a deploy until it settles (healthy and pending confirmation, confirmed, or failed and
 * rolled back); `onProgress` sees every progress read. A query that fails or times out is retried:
 * the follower asks the server whether the deploy is still open, and ends when it is not.
 */
export async function followDeploy(handle: DeployHandle, onProgress?: (p: DeployProgress) => void, pollMs = 250): Promise<{ progress: DeployProgress; error?: string }> {
  let closedWith: { error?: string } | undefined;
  const progress = await (async () => {
    for (;;) {
      const p = await handle.query(progressQuery).catch(() => undefined);
      if (p) {
        onProgress?.(p);
        if (DEPLOY_SETTLED.has(p.phase)) return p;
      } else if ((await isOpen(handle).catch(() => true)) === false) {
        // Closed before (or without) a readable progress: its result says why.
        closedWith = { error: await handle.result().then(() => undefined, (e: unknown) => rootMessage(e)) };
        return (await handle.query(progressQuery).catch(() => undefined)) ?? closedProgress(closedWith.error ?? 'closed');
      }
      await new Promise((r) => setTimeout(r, pollMs));
    }
  })();
  if (closedWith) return { progress, error: closedWith.error };
  if (progress.phase !== 'failed') return { progress };
  const error = await handle.result().then(() => progress.error, (e: unknown) => rootMessage(e));
  return { progress: (await handle.query(progressQuery).catch(() => undefined)) ?? progress, error };
}

export interface ReleaseStatus {
  release: string;
  workflowId: string;
  /** The workflow's status (RUNNING, COMPLETED, …), or `GONE` when only the ledger remembers it. */
  status: string;
  progress?: DeployProgress;
  record?: ChangeRecord;
}

/** A release's deploy: live progress while its workflow exists, else the ledger's record. */
export async function releaseStatus(client: Client, release: string, project?: string): Promise<ReleaseStatus> {
  const handle = client.workflow.getHandle(deployWorkflowId(release));
  const open = await isOpen(handle);
  const record = project ? await ledgerRecord(client, project, 'deploy', release) : undefined;
  if (open === undefined) {
    if (record) return { release, workflowId: handle.workflowId, status: 'GONE', record };
    throw new OperationFailed(`no deploy of release ${release} (no workflow ${deployWorkflowId(release)}${project ? `, nothing in ${project}'s ledger` : ''}): \`migrate deploy --release ${release}\` starts one`);
  }
  const description = await handle.describe();
  return { release, workflowId: handle.workflowId, status: description.status.name, progress: await handle.query(progressQuery), record };
}

/** Confirm (drop the kept containers, after a health re-check) or roll back a release pending confirmation. */
export function decideRelease(client: Client, release: string, decision: Decision, options: RollbackOptions = {}, project?: string): Promise<DecisionResult> {
  return decide(client, client.workflow.getHandle(deployWorkflowId(release)), `release ${release}`, decision, options,
    async () => (project ? ledgerRecord(client, project, 'deploy', release) : undefined));
}
