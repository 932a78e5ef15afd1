/**
 * `migrate rollback batch-N` (temporary name; to be merged into `migrate rollback`): put a
 * completed batch's agents back on their exact previous containers (the `.prev` ones it kept), in
 * reverse order. `migrate confirm batch-N` is the other way out: drop the kept containers.
 * Both read the agents from the batch's own result, so an agent that did not change is left alone.
 */
import type { Command } from 'commander';
import type { Client } from '@temporalio/client';
import type { BackupPlan } from '../../plan/backups.js';
import { ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import { SA } from '../../common/search-attributes.js';
import { batchWorkflowId, confirmWorkflowId, rollbackWorkflowId, type AfterBatchInput, type AfterBatchResult, type BatchResult } from '../../workflows/batch.js';
import { action, collect, commonOptions, CommandFailed, connectClient, loadPlan, parseOptions, printJson, restoreDataOption, UsageError } from '../common.js';
import { rootMessage } from '../../common/failure.js';
import { formatDataRestore } from '../safeguard-format.js';
import { missingBackup, unknownComponents } from '../../workflows/safeguard.js';

async function completedBatch(client: Client, batch: string): Promise<BatchResult> {
  const handle = client.workflow.getHandle(batchWorkflowId(batch));
  const status = await handle.describe().then((d) => d.status.name, () => 'NOT_FOUND');
  if (status === 'RUNNING') throw new CommandFailed(`${batch} is still running: stop it with \`migrate abort ${batch}\` (which rolls it back)`);
  if (status !== 'COMPLETED') throw new CommandFailed(`${batch} has no completed run (${status.toLowerCase().replace('_', ' ')}): nothing to roll back or confirm`);
  return (await handle.result()) as BatchResult;
}

export interface RollbackBatchOptions {
  /** After the agents are back, restore the backup the batch started with onto these targets (the inventory's `backups:`). */
  restoreData?: BackupPlan;
  /** Only these components of it (default: all). */
  components?: string[];
}

async function afterBatch(client: Client, project: string, batch: string, kind: 'rollback' | 'confirm', options: RollbackBatchOptions = {}): Promise<AfterBatchResult> {
  const result = await completedBatch(client, batch);
  if (result.outcome !== 'migrated') throw new CommandFailed(`${batch}'s last run was already rolled back`);
  const input: AfterBatchInput = { project, batch, agents: result.agents };
  if (kind === 'rollback' && options.restoreData) {
    const missing = missingBackup(result.backup, batch);
    if (missing) throw new CommandFailed(missing);
    const unknown = unknownComponents(options.restoreData, options.components);
    if (unknown.length) throw new UsageError('invalid --restore-data', [{ path: '--restore-data', message: `no backup component ${unknown.map((u) => `"${u}"`).join(', ')}`, fix: `name some of ${options.restoreData.components.map((c) => c.name).join(', ')}, or give no value to restore all` }]);
    input.restoreData = { backupId: result.backup!.id!, backups: options.restoreData, components: options.components };
  }
  const workflowId = kind === 'rollback' ? rollbackWorkflowId(batch) : confirmWorkflowId(batch);
  try {
    return await client.workflow.execute(kind === 'rollback' ? 'rollbackBatch' : 'confirmBatch', {
      taskQueue: ORCHESTRATOR_QUEUE,
      workflowId,
      args: [input],
      typedSearchAttributes: [{ key: SA.kind, value: `batch-${kind}` }, { key: SA.batch, value: batch }],
      staticSummary: `${kind} ${batch}`,
    });
  } catch (err) {
    throw new CommandFailed(`${kind} of ${batch} failed: ${rootMessage(err)}`);
  }
}

/** Restore every agent the batch migrated to its exact previous container, in reverse order; optionally the data too. */
export function rollbackCompletedBatch(client: Client, project: string, batch: string, options: RollbackBatchOptions = {}): Promise<AfterBatchResult> {
  return afterBatch(client, project, batch, 'rollback', options);
}

/** Confirm a completed batch: discard the `.prev` containers it kept (no rollback after this). */
export function confirmCompletedBatch(client: Client, project: string, batch: string): Promise<AfterBatchResult> {
  return afterBatch(client, project, batch, 'confirm');
}

const options = commonOptions.pick({ json: true, address: true, namespace: true, inventory: true }).extend({ restoreData: restoreDataOption });

export function registerBatchRollback(program: Command): void {
  for (const kind of ['rollback', 'confirm'] as const) {
    const command = program
      .command(`batch-${kind}`, { hidden: true })
      .description(kind === 'rollback'
        ? '(temporary; becomes `migrate rollback batch-N`) restore a completed batch\'s agents to their previous containers'
        : 'confirm a completed batch: discard the previous containers it kept for rollback')
      .argument('<batch>', 'batch name, e.g. batch-1')
      .option('-i, --inventory <file>', 'inventory file (repeatable; names the project)', collect)
      .option('--json', 'machine-readable output')
      .option('--address <host:port>', 'Temporal frontend address')
      .option('--namespace <ns>', 'Temporal namespace');
    if (kind === 'rollback') command.option('--restore-data [components]', 'then restore the backup the batch started with: every component, or those named (comma-separated)');
    command
      .action(action(async (batch: string, raw: unknown) => {
        const opts = parseOptions(options, raw);
        const { plan } = await loadPlan(opts.inventory);
        if (opts.restoreData && !plan.backups?.components.length) throw new CommandFailed('--restore-data needs the inventory\'s `backups:` section (it says where the backup lives): pass the inventory the batch ran with');
        const { client, close } = await connectClient(opts);
        try {
          const result = kind === 'rollback'
            ? await rollbackCompletedBatch(client, plan.project, batch, { restoreData: opts.restoreData ? plan.backups : undefined, components: opts.restoreData?.components })
            : await confirmCompletedBatch(client, plan.project, batch);
          const ok = !result.restore || result.restore.ok;
          if (opts.json) printJson({ ok, batch, ...result });
          else {
            for (const a of result.agents) process.stdout.write(`  ${a.agent.padEnd(32)} ${a.phase}\n`);
            if (result.restore) process.stdout.write(`${formatDataRestore(result.restore)}\n`);
          }
          return ok ? 0 : 1;
        } finally {
          await close();
        }
      }));
  }
}
