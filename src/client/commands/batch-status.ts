/**
 * `migrate status batch-N` (temporary name; to be merged into `migrate status`): a progress
 * bar and one row per agent — phase, baseline vs now (p95), result — from the running batch's query,
 * or from the result of its last run once it has finished.
 */
import type { Command } from 'commander';
import Table from 'cli-table3';
import { Client, WorkflowFailedError, WorkflowNotFoundError, type WorkflowHandle } from '@temporalio/client';
import { z } from 'zod';
import { batchProgressQuery, batchWorkflowId, type AgentProgress, type BatchProgress, type BatchResult } from '../../workflows/batch.js';
import { action, collect, commonOptions, CommandFailed, connectClient, loadPlan, parseOptions, printJson } from '../common.js';
import { formatBackupOutcome } from '../safeguard-format.js';
import { rootMessage } from '../../common/failure.js';

const DONE = new Set(['migrated', 'unchanged', 'rolled-back', 'confirmed', 'failed']);

/** Where a batch stands: the live query while it runs, its result once it completed. */
export async function batchProgress(client: Client, batch: string): Promise<BatchProgress & { status: string }> {
  const handle = client.workflow.getHandle(batchWorkflowId(batch));
  let status: string;
  try {
    status = (await handle.describe()).status.name;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CommandFailed(`${batch} has never been started: \`migrate start ${batch}\``);
    throw err;
  }
  if (status === 'RUNNING') return { ...(await handle.query(batchProgressQuery)), status };
  try {
    const r = (await handle.result()) as BatchResult;
    return { ...r, phase: r.outcome, paused: false, aborting: false, awaitingApproval: false, status };
  } catch (err) {
    throw new CommandFailed(`${batch}'s last run ${status.toLowerCase()}: ${rootMessage(err)}`);
  }
}

const ms = (v?: number) => (v === undefined || Number.isNaN(v) ? '–' : `${v.toFixed(1)} ms`);

function bar(agents: AgentProgress[], width = 28): string {
  const done = agents.filter((a) => DONE.has(a.phase)).length;
  const filled = agents.length ? Math.round((done / agents.length) * width) : width;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${agents.length}`;
}

export function formatBatch(p: BatchResult & { phase?: string; paused?: boolean }): string {
  const table = new Table({ head: ['agent', 'host', 'phase', 'baseline p95', 'now p95', 'result'], style: { head: [], border: [] } });
  for (const a of p.agents) {
    const result = a.phase === 'migrated' ? (a.firstInstall ? 'installed' : 'migrated (old kept as .prev)')
      : a.phase === 'unchanged' ? 'already at this version' : a.reason ?? '';
    table.push([a.agent, a.host, a.phase, ms(a.baseline?.p95Ms), ms(a.now?.p95Ms), result]);
  }
  const backup = formatBackupOutcome(p.backup);
  const head = `${p.batch}: ${p.phase ?? p.outcome}${p.paused ? ' (paused)' : ''}  ${bar(p.agents)}${backup ? `\n${backup}` : ''}${p.reason ? `\n${p.reason}` : ''}`;
  return `${head}\n${table.toString()}`;
}

/** Redraw the batch's progress until it finishes; returns its result (throws CommandFailed if it failed). */
export async function watchBatch(handle: WorkflowHandle, out: NodeJS.WriteStream = process.stdout): Promise<BatchResult> {
  const done = handle.result().then((r) => r as BatchResult, (err: unknown) => {
    if (err instanceof WorkflowFailedError) throw new CommandFailed(rootMessage(err));
    throw err;
  });
  let finished = false;
  void done.finally(() => { finished = true; }).catch(() => undefined);
  let lines = 0;
  while (!finished) {
    try {
      const p = await handle.query(batchProgressQuery);
      const text = formatBatch(p);
      if (out.isTTY && lines) out.write(`\x1b[${lines}A\x1b[J`);
      if (out.isTTY) { out.write(`${text}\n`); lines = text.split('\n').length; }
    } catch { /* between runs or finished */ }
    await Promise.race([done.catch(() => undefined), new Promise((r) => setTimeout(r, 500))]);
  }
  if (out.isTTY && lines) out.write(`\x1b[${lines}A\x1b[J`);
  return done;
}

const statusOptions = commonOptions.pick({ json: true, address: true, namespace: true, inventory: true }).extend({ watch: z.boolean().default(false) });

/** `migrate status all`: every batch of the plan, in order; one never started says so. */
async function allBatches(client: Client, inventory: string[], json: boolean): Promise<number> {
  const { plan } = await loadPlan(inventory);
  const out: Record<string, unknown> = {};
  for (const b of plan.batches) {
    try {
      const p = await batchProgress(client, b.name);
      out[b.name] = p;
      if (!json) process.stdout.write(`${formatBatch(p)}\n\n`);
    } catch (err) {
      out[b.name] = { error: (err as Error).message };
      if (!json) process.stdout.write(`${b.name}: ${(err as Error).message}\n\n`);
    }
  }
  if (json) printJson(out);
  return 0;
}

export function registerBatchStatus(program: Command): void {
  program
    .command('batch-status', { hidden: true })
    .description('(temporary; becomes `migrate status batch-N`) progress of a batch: phase, baseline vs now, result per agent')
    .argument('<batch>', 'batch name, e.g. batch-1, or all')
    .option('-i, --inventory <file>', 'inventory file (repeatable; names the batches for `all`)', collect)
    .option('--watch', 'redraw until the batch finishes')
    .option('--json', 'machine-readable output')
    .option('--address <host:port>', 'Temporal frontend address')
    .option('--namespace <ns>', 'Temporal namespace')
    .action(action(async (batch: string, raw: unknown) => {
      const opts = parseOptions(statusOptions, raw);
      const { client, close } = await connectClient(opts);
      try {
        if (batch === 'all') return await allBatches(client, opts.inventory, opts.json);
        const p = await batchProgress(client, batch);
        if (opts.watch && p.status === 'RUNNING' && !opts.json) {
          const r = await watchBatch(client.workflow.getHandle(batchWorkflowId(batch)));
          process.stdout.write(`${formatBatch(r)}\n`);
          return r.outcome === 'migrated' ? 0 : 1;
        }
        if (opts.json) printJson(p);
        else process.stdout.write(`${formatBatch(p)}\n`);
        return 0;
      } finally {
        await close();
      }
    }));
}
