/**
 * `migrate rollback batch-N` (temporary name; to be merged into `migrate rollback`): put a
 * completed batch's agents back on their exact previous containers (the `.prev` ones it kept), in
 * reverse order. `migrate confirm batch-N` is the other way out: drop the kept containers.
 * Both read the agents from the batch's own result, so an agent that did not change is left alone.
 */
import type { Command } from 'commander';
import type { Client } from '@temporalio/client';
import { ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import { SA } from '../../common/search-attributes.js';
import { batchWorkflowId, confirmWorkflowId, rollbackWorkflowId, type AgentProgress, type BatchResult } from '../../workflows/batch.js';
import { action, collect, commonOptions, CommandFailed, connectClient, loadPlan, parseOptions, printJson } from '../common.js';
import { failureText } from './batch-status.js';

async function completedBatch(client: Client, batch: string): Promise<BatchResult> {
  const handle = client.workflow.getHandle(batchWorkflowId(batch));
  const status = await handle.describe().then((d) => d.status.name, () => 'NOT_FOUND');
  if (status === 'RUNNING') throw new CommandFailed(`${batch} is still running: stop it with \`migrate abort ${batch}\` (which rolls it back)`);
  if (status !== 'COMPLETED') throw new CommandFailed(`${batch} has no completed run (${status.toLowerCase().replace('_', ' ')}): nothing to roll back or confirm`);
  return (await handle.result()) as BatchResult;
}

async function afterBatch(client: Client, project: string, batch: string, kind: 'rollback' | 'confirm'): Promise<AgentProgress[]> {
  const result = await completedBatch(client, batch);
  if (result.outcome !== 'migrated') throw new CommandFailed(`${batch}'s last run was already rolled back`);
  const workflowId = kind === 'rollback' ? rollbackWorkflowId(batch) : confirmWorkflowId(batch);
  try {
    return await client.workflow.execute(kind === 'rollback' ? 'rollbackBatch' : 'confirmBatch', {
      taskQueue: ORCHESTRATOR_QUEUE,
      workflowId,
      args: [{ project, batch, agents: result.agents }],
      typedSearchAttributes: [{ key: SA.kind, value: `batch-${kind}` }, { key: SA.batch, value: batch }],
      staticSummary: `${kind} ${batch}`,
    });
  } catch (err) {
    throw new CommandFailed(`${kind} of ${batch} failed: ${failureText(err)}`);
  }
}

/** Restore every agent the batch migrated to its exact previous container, in reverse order. */
export function rollbackCompletedBatch(client: Client, project: string, batch: string): Promise<AgentProgress[]> {
  return afterBatch(client, project, batch, 'rollback');
}

/** Confirm a completed batch: discard the `.prev` containers it kept (no rollback after this). */
export function confirmCompletedBatch(client: Client, project: string, batch: string): Promise<AgentProgress[]> {
  return afterBatch(client, project, batch, 'confirm');
}

const options = commonOptions.pick({ json: true, address: true, namespace: true, inventory: true });

export function registerBatchRollback(program: Command): void {
  for (const kind of ['rollback', 'confirm'] as const) {
    program
      .command(`batch-${kind}`, { hidden: true })
      .description(kind === 'rollback'
        ? '(temporary; becomes `migrate rollback batch-N`) restore a completed batch\'s agents to their previous containers'
        : 'confirm a completed batch: discard the previous containers it kept for rollback')
      .argument('<batch>', 'batch name, e.g. batch-1')
      .option('-i, --inventory <file>', 'inventory file (repeatable; names the project)', collect)
      .option('--json', 'machine-readable output')
      .option('--address <host:port>', 'Temporal frontend address')
      .option('--namespace <ns>', 'Temporal namespace')
      .action(action(async (batch: string, raw: unknown) => {
        const opts = parseOptions(options, raw);
        const { plan } = await loadPlan(opts.inventory);
        const { client, close } = await connectClient(opts);
        try {
          const agents = kind === 'rollback' ? await rollbackCompletedBatch(client, plan.project, batch) : await confirmCompletedBatch(client, plan.project, batch);
          if (opts.json) printJson({ ok: true, batch, agents });
          else for (const a of agents) process.stdout.write(`  ${a.agent.padEnd(32)} ${a.phase}\n`);
          return 0;
        } finally {
          await close();
        }
      }));
  }
}
