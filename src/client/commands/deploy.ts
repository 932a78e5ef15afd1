/**
 * `migrate deploy`: start the `deployStack` workflow (id `deploy-<release>`) for the plan's
 * services and, with --wait, show each service's phase live (polling the `progress` query) until
 * the release is healthy and pending confirmation, confirmed, or failed and rolled back.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { Plan } from '../../plan/plan.js';
import { ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import { stubbedPlan } from '../../dev/stub-image.js';
import { SA } from '../../common/search-attributes.js';
import { deployLockId, deployWorkflowId, type DeployInput, type DeployProgress, type deployStack } from '../../workflows/deploy.js';
import { action, backupGuard, collect, CommandFailed, commonOptions, connectClient, loadPlan, parseOptions, printJson, skipBackupOption } from '../common.js';
import { describeBackupStep, formatBackupOutcome, formatDataRestore } from '../safeguard-format.js';
import { rootMessage } from '../../common/failure.js';

export const RELEASE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const releaseName = z.string().regex(RELEASE_RE, { message: 'must be letters, digits, "_", "." or "-" (at most 63), e.g. 2024-06-01 or v42' });

const deployOptions = commonOptions.extend({
  release: releaseName.optional(),
  stub: z.boolean().default(false),
  wait: z.boolean().default(false),
  confirm: z.boolean().default(false),
  concurrency: z.coerce.number().int().min(1).max(64).default(8),
  skipBackup: skipBackupOption,
});

const SETTLED = new Set(['pending-confirmation', 'confirmed', 'rolled-back', 'failed']);

export function defaultRelease(at = new Date()): string {
  return `r${at.toISOString().replace(/[-:T]/g, '').slice(0, 14)}`;
}


/** Refuse before starting anything when another deploy of the project holds the lock. */
export async function checkNoDeployRunning(client: Client, project: string): Promise<void> {
  try {
    const lock = await client.workflow.getHandle(deployLockId(project)).describe();
    if (lock.status.name === 'RUNNING') {
      const holder = lock.parentExecution?.workflowId ?? 'another deploy';
      throw new CommandFailed(`${holder} is still running or waiting for confirmation for project ${project}: wait for it, or run \`migrate status ${holder.replace(/^deploy-/, '')}\`, then confirm or roll it back`);
    }
  } catch (err) {
    if (err instanceof CommandFailed) throw err;
    // not found: no deploy ever ran for this project
  }
}

export interface StartDeployOptions {
  release: string;
  concurrency?: number;
  autoConfirm?: boolean;
  /** Deploy without the verified backup first; the reason is recorded. */
  skipBackup?: string;
}

export async function startDeploy(client: Client, plan: Plan, opts: StartDeployOptions): Promise<WorkflowHandle<typeof deployStack>> {
  await checkNoDeployRunning(client, plan.project);
  const units = Object.values(plan.units).filter((u) => u.kind === 'service');
  const input: DeployInput = {
    release: opts.release, project: plan.project, units, concurrency: opts.concurrency, autoConfirm: opts.autoConfirm,
    backup: backupGuard(plan, opts.skipBackup),
  };
  try {
    return await client.workflow.start<typeof deployStack>('deployStack', {
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
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new CommandFailed(`release ${opts.release} is already being deployed (workflow ${deployWorkflowId(opts.release)}): pick another --release`);
    throw err;
  }
}

export function formatUnitLine(name: string, u: DeployProgress['units'][string]): string {
  const phase = u.phase === 'rolled-back' ? 'rolled back' : u.phase;
  return `  ${name.padEnd(24)} ${u.host.padEnd(8)} ${phase.padEnd(12)}${u.action ? ` ${u.action}` : ''}${u.error ? `  ${u.error}` : ''}`;
}

export function formatProgress(p: DeployProgress): string {
  const lines = [`release ${p.release} of ${p.project}: ${p.phase}`];
  const backup = formatBackupOutcome(p.backup);
  if (backup) lines.push(`  ${backup}`);
  for (const [name, u] of Object.entries(p.units)) lines.push(formatUnitLine(name, u));
  if (p.restore) lines.push(formatDataRestore(p.restore));
  if (p.error) lines.push(`error: ${p.error}`);
  return lines.join('\n');
}

/**
 * Poll `progress` until the deploy settles; `say` gets one line per phase change. Returns the
 * last progress, and the failure message when the deploy failed.
 */
export async function followDeploy(handle: WorkflowHandle<typeof deployStack>, say?: (line: string) => void, pollMs = 250): Promise<{ progress: DeployProgress; error?: string }> {
  const seen = new Map<string, string>();
  for (;;) {
    let progress: DeployProgress | undefined;
    try {
      progress = await handle.query<DeployProgress>('progress');
    } catch (err) {
      // Closed before its first query (e.g. refused by the lock): the result says why.
      const error = await handle.result().then(() => undefined, (e: unknown) => rootMessage(e));
      if (error) return { progress: { release: '', project: '', phase: 'failed', startedAt: 0, updatedAt: 0, units: {}, error }, error };
      throw err;
    }
    for (const [name, u] of Object.entries(progress.units)) {
      if (seen.get(name) !== u.phase) {
        seen.set(name, u.phase);
        say?.(formatUnitLine(name, u));
      }
    }
    if (SETTLED.has(progress.phase)) {
      if (progress.phase !== 'failed') return { progress };
      const error = await handle.result().then(() => progress!.error, (e: unknown) => rootMessage(e));
      return { progress: await handle.query<DeployProgress>('progress').catch(() => progress!), error };
    }
    await new Promise((r) => setTimeout(r, pollMs));
  }
}

export function registerDeploy(program: Command): void {
  program
    .command('deploy')
    .description('deploy the stack: each service starts once its dependencies are healthy; any failure rolls every host back')
    .option('-i, --inventory <file>', 'inventory file (repeat to layer overrides, like compose -f)', collect)
    .option('--release <name>', 'release name (workflow id deploy-<name>; default r<UTC timestamp>)')
    .option('--stub', 'run every unit as the local stub image (this machine has none of the real images)')
    .option('--wait', 'show live progress until the release is healthy or rolled back')
    .option('--confirm', 'confirm as soon as everything is healthy (drops the kept previous containers)')
    .option('--concurrency <n>', 'services started at once', '8')
    .option('--skip-backup <reason>', 'deploy without taking a verified backup first (the reason is recorded in the workflow)')
    .option('--address <host:port>', 'Temporal frontend')
    .option('--namespace <ns>', 'Temporal namespace')
    .option('--json', 'machine-readable output')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(deployOptions, raw);
      let { plan } = await loadPlan(opts.inventory);
      if (opts.stub) plan = await stubbedPlan(plan);
      const release = opts.release ?? defaultRelease();
      const { client, close } = await connectClient(opts);
      try {
        const handle = await startDeploy(client, plan, { release, concurrency: opts.concurrency, autoConfirm: opts.confirm, skipBackup: opts.skipBackup });
        const say = opts.json ? undefined : (line: string) => process.stdout.write(`${line}\n`);
        say?.(`deploying release ${release} of ${plan.project} (workflow ${handle.workflowId})`);
        say?.(describeBackupStep(plan, opts.skipBackup));
        if (!opts.wait) {
          if (opts.json) printJson({ ok: true, release, workflowId: handle.workflowId });
          else say?.(`follow it with \`migrate status ${release}\``);
          return 0;
        }
        const { progress, error } = await followDeploy(handle, say);
        if (opts.json) printJson({ ok: !error, release, workflowId: handle.workflowId, progress });
        else if (!error) say?.(progress.phase === 'pending-confirmation' ? `release ${release} is healthy, pending confirmation: \`migrate confirm ${release}\` keeps it, \`migrate rollback ${release}\` undoes it` : `release ${release}: ${progress.phase}`);
        if (error) {
          if (!opts.json) process.stderr.write(`error: ${error}\n`);
          return 1;
        }
        return 0;
      } finally {
        await close();
      }
    }));
}
