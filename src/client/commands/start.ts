/**
 * `migrate start batch-N | all`: migrate a batch's agents (or every batch, in order) to the version
 * the inventory names. A batch stays open, pending confirmation, once it migrated: `migrate confirm
 * batch-N` keeps it, `migrate rollback batch-N` undoes it (`--confirm` keeps it at once).
 */
import type { Command } from 'commander';
import { z } from 'zod';
import type { Client } from '@temporalio/client';
import { BadInput, batchInput, batchStatus, decideBatch, followAllBatches, OperationFailed, startAllBatches, startBatch, type BatchResult, type BatchStartOptions } from '../../ops/index.js';
import { action, commonOptions, inventoryOption, loadPlan, parseOptions, planForRun, printJson, skipBackupOption, temporalOptions, withClient } from '../common.js';
import { describeBackupStep, followBatchLive, formatBatch } from '../format.js';
import { batchWorkflowId } from '../../workflows/batch.js';

const startOptions = commonOptions.extend({
  stub: z.boolean().default(false),
  stubVersion: z.string().regex(/^[A-Za-z0-9._-]+$/).optional(),
  force: z.boolean().default(false),
  wait: z.boolean().default(false),
  confirm: z.boolean().default(false),
  skipBackup: skipBackupOption,
});

const rolledBack = (r: BatchResult) => r.outcome !== 'migrated' || r.status === 'rolled-back';
const decideHint = (batch: string) => `\`migrate confirm ${batch}\` keeps it, \`migrate rollback ${batch}\` undoes it`;

/**
 * With --confirm the batch confirms itself once migrated; a follower that saw it pending waits for
 * that decision (the confirm update returns it), or reports its refusal (a unit no longer healthy).
 */
async function whenConfirmed(client: Client, project: string, r: BatchResult): Promise<BatchResult> {
  if (r.status !== 'pending-confirmation') return r;
  const now = async () => {
    const s = await batchStatus(client, project, r.batch);
    return { status: s.progress?.status ?? s.record?.status, progress: s.progress };
  };
  await decideBatch(client, project, r.batch, 'confirm').catch(async (err: unknown) => {
    if ((await now()).status !== 'confirmed') throw err; // decided by itself meanwhile: fine
  });
  const decided = (await now()).progress ?? { ...r, status: 'confirmed' };
  // A confirmed batch's workflow closes a moment after it answered: wait for that, so a `start`
  // right after this one returns does not meet the batch still open ("already started").
  await client.workflow.getHandle(batchWorkflowId(r.batch)).result().catch(() => undefined);
  return decided;
}

export function registerStart(program: Command): void {
  temporalOptions(inventoryOption(program
    .command('start')
    .description('migrate a batch of agents (or all batches in order) to the version the inventory names; each stays open until confirmed or rolled back')
    .argument('<batch>', 'a batch name from the inventory (batch-1 … batch-4), or "all"'))
    .option('--stub', 'run every unit as the local stub image (no registry needed)')
    .option('--stub-version <v>', 'with --stub: the stub version to deploy (a new version changes the spec)')
    .option('--force', 'skip the gate that wants the previous batch migrated')
    .option('--wait', 'show the batch\'s progress until it is pending confirmation (or rolled back)')
    .option('--confirm', 'confirm as soon as the batch migrated (drops the kept previous containers: no rollback after)')
    .option('--skip-backup <reason>', 'migrate without taking a verified backup first (the reason is recorded in the workflow)'))
    .action(action(async (target: string, raw: unknown) => {
      const opts = parseOptions(startOptions, raw);
      if (opts.stubVersion !== undefined && !opts.stub) {
        throw new BadInput('invalid options', [{ path: '--stub-version', message: 'only means something with --stub', fix: 'add --stub, or drop --stub-version (the inventory names the version)' }]);
      }
      const declared = (await loadPlan(opts.inventory)).plan;
      const names = target === 'all' ? declared.batches.map((b) => b.name) : [target];
      if (names.length === 0) throw new BadInput('invalid batch', [{ path: 'batch', message: 'the inventory declares no batches', fix: 'add batches: to the inventory' }]);
      for (const n of names) batchInput(declared, n); // an unknown batch is bad input, before anything starts
      const plan = await planForRun(declared, opts.stub, opts.stubVersion);
      const options: BatchStartOptions = { force: opts.force, skipBackup: opts.skipBackup, autoConfirm: opts.confirm };
      const say = (line: string) => { if (!opts.json) process.stdout.write(`${line}\n`); };

      return withClient(opts, async (client) => {
        if (target === 'all') {
          const parent = await startAllBatches(client, plan, options);
          say(`started all batches (${names.join(' → ')}) as workflow ${parent.workflowId}\n${describeBackupStep(plan, opts.skipBackup)}`);
          if (!opts.wait) {
            if (opts.json) printJson({ ok: true, workflowId: parent.workflowId });
            return 0;
          }
          const all = await followAllBatches(client, parent, names, async (name, handle) => {
            let r = await followBatchLive(handle, !opts.json);
            if (opts.confirm) r = await whenConfirmed(client, plan.project, r);
            say(`${name}:\n${formatBatch(r)}`);
          });
          if (opts.json) {
            printJson({ ok: !all.stoppedAt, ...all });
            return all.stoppedAt ? 1 : 0;
          }
          if (all.stoppedAt) throw new OperationFailed(`${all.stoppedAt} did not migrate (${all.error ?? 'rolled back'}); later batches were not started`);
          say(opts.confirm ? 'every batch migrated and was confirmed' : `every batch migrated and is pending confirmation: for each, ${decideHint('batch-N')}`);
          return 0;
        }

        const handle = await startBatch(client, plan, target, options);
        say(`started ${target} (workflow ${handle.workflowId})\n${describeBackupStep(plan, opts.skipBackup)}`);
        if (!opts.wait) {
          if (opts.json) printJson({ ok: true, batch: target, workflowId: handle.workflowId });
          return 0;
        }
        let result: BatchResult = await followBatchLive(handle, !opts.json);
        if (opts.confirm) result = await whenConfirmed(client, plan.project, result);
        if (opts.json) {
          printJson({ ok: !rolledBack(result), result });
          return rolledBack(result) ? 1 : 0;
        }
        say(formatBatch(result));
        if (rolledBack(result)) throw new OperationFailed(`${target} was rolled back: ${result.reason ?? 'see the table above'}`);
        say(result.status === 'confirmed' ? `${target} migrated and was confirmed` : `${target} migrated and is pending confirmation: ${decideHint(target)}`);
        return 0;
      });
    }));
}
