/**
 * `migrate status RELEASE | batch-N | all`: where a change stands. A release: each service's phase
 * in its deploy. A batch: a progress bar and one row per agent (phase, baseline vs now p95, result).
 * `all`: every batch of the inventory, in order. Live while the change's workflow exists; from the
 * project ledger once retention has deleted it.
 */
import type { Command } from 'commander';
import type { Client } from '@temporalio/client';
import { z } from 'zod';
import { batchWorkflowId } from '../../workflows/batch.js';
import { deployWorkflowId, type deployStack } from '../../workflows/deploy.js';
import { BATCH_SETTLED, batchStatus, DEPLOY_SETTLED, releaseStatus } from '../../ops/index.js';
import { action, commonOptions, inventoryOption, loadPlan, parseOptions, printJson, resolveTarget, temporalOptions, withClient } from '../common.js';
import { followBatchLive, followDeployLines, formatBatch, formatProgress, formatRecord } from '../format.js';

const statusOptions = commonOptions.extend({ watch: z.boolean().default(false) });
type StatusOptions = z.infer<typeof statusOptions>;

const pendingHint = (name: string) => `pending confirmation: \`migrate confirm ${name}\` keeps it, \`migrate rollback ${name}\` undoes it`;

async function showRelease(client: Client, project: string, release: string, opts: StatusOptions): Promise<number> {
  const s = await releaseStatus(client, release, project);
  if (opts.watch && s.status === 'RUNNING' && s.progress && !DEPLOY_SETTLED.has(s.progress.phase)) {
    const say = opts.json ? undefined : (line: string) => process.stdout.write(`${line}\n`);
    const { progress, error } = await followDeployLines(client.workflow.getHandle<typeof deployStack>(deployWorkflowId(release)), say);
    s.progress = progress;
    if (error && !opts.json) process.stderr.write(`error: ${error}\n`);
  }
  if (opts.json) printJson(s);
  else if (s.progress) {
    process.stdout.write(`${formatProgress(s.progress)}\n(workflow ${s.workflowId}: ${s.status})\n`);
    if (s.progress.phase === 'pending-confirmation') process.stdout.write(`${pendingHint(release)}\n`);
  } else if (s.record) process.stdout.write(`${formatRecord(s.record)}\n`);
  return (s.progress?.phase ?? s.record?.status) === 'failed' ? 1 : 0;
}

async function showBatch(client: Client, project: string, batch: string, opts: StatusOptions): Promise<number> {
  let s = await batchStatus(client, project, batch);
  let exit = 0;
  if (opts.watch && s.status === 'RUNNING' && s.progress && !BATCH_SETTLED.has(s.progress.phase)) {
    const r = await followBatchLive(client.workflow.getHandle(batchWorkflowId(batch)), !opts.json);
    if (r.outcome !== 'migrated' || r.status === 'rolled-back') exit = 1;
    s = await batchStatus(client, project, batch);
  }
  if (opts.json) printJson(s);
  else if (s.progress) {
    process.stdout.write(`${formatBatch(s.progress)}\n(workflow ${batchWorkflowId(batch)}: ${s.status})\n`);
    if (s.progress.phase === 'pending-confirmation') process.stdout.write(`${pendingHint(batch)}\n`);
  } else if (s.record) process.stdout.write(`${formatRecord(s.record)}\n`);
  return exit;
}

/** `status all`: every batch of the inventory, in order; one never started says so. */
async function showAllBatches(client: Client, project: string, batches: string[], json: boolean): Promise<number> {
  const out: Record<string, unknown> = {};
  for (const b of batches) {
    try {
      const s = await batchStatus(client, project, b);
      out[b] = s;
      if (!json) process.stdout.write(`${s.progress ? formatBatch(s.progress) : s.record ? formatRecord(s.record) : `${b}: ${s.status}`}\n\n`);
    } catch (err) {
      out[b] = { error: (err as Error).message };
      if (!json) process.stdout.write(`${b}: ${(err as Error).message}\n\n`);
    }
  }
  if (json) printJson(out);
  return 0;
}

export function registerStatus(program: Command): void {
  temporalOptions(inventoryOption(program
    .command('status')
    .description('where a change stands: a release\'s deploy (each service\'s phase), a batch (each agent\'s phase, baseline vs now), or all batches')
    .argument('<target>', 'a release, a batch of the inventory (batch-1 … batch-4), or "all" (every batch, in order)'), 'inventory file (repeatable): names the project and its batches')
    .option('--watch', 'follow it until it settles (pending confirmation, confirmed or rolled back)'))
    .action(action(async (target: string, raw: unknown) => {
      const opts = parseOptions(statusOptions, raw);
      const { plan } = await loadPlan(opts.inventory);
      const t = resolveTarget(plan, target, true);
      return withClient(opts, (client) => {
        switch (t.kind) {
          case 'all': return showAllBatches(client, plan.project, plan.batches.map((b) => b.name), opts.json);
          case 'batch': return showBatch(client, plan.project, t.batch, opts);
          case 'release': return showRelease(client, plan.project, t.release, opts);
        }
      });
    }));
}
