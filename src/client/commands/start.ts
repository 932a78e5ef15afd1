/**
 * `migrate start batch-N|all`: migrate the batch's agents to the version the inventory now names.
 * One `migrateBatch` workflow per batch (id `migrate-<batch>`); a second start of a running batch is
 * refused. `all` starts one `migrateAllBatches` workflow (id `migrate-all-<project>`) that runs the
 * batches as its children, in order, each once the one before migrated: the sequence is durable.
 */
import type { Command } from 'commander';
import { Client, WorkflowExecutionAlreadyStartedError, type WorkflowHandle } from '@temporalio/client';
import { z } from 'zod';
import type { Plan, UnitSpec } from '../../plan/plan.js';
import { ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import { stubbedPlan } from '../../dev/stub-image.js';
import { SA } from '../../common/search-attributes.js';
import { allBatchesWorkflowId, batchWorkflowId, type AllBatchesProgress, type BatchInput, type BatchResult } from '../../workflows/batch.js';
import { action, backupGuard, collect, commonOptions, CommandFailed, connectClient, loadPlan, parseOptions, printJson, skipBackupOption, UsageError } from '../common.js';
import { formatBatch, watchBatch } from './batch-status.js';
import { describeBackupStep } from '../safeguard-format.js';

export interface BatchStartOptions {
  force?: boolean;
  /** Probes per latency sample (default 20). */
  samples?: number;
  /** Migrate without the verified backup first; the reason is recorded. */
  skipBackup?: string;
}

/** The workflow input for one batch of the plan. Pure. */
export function batchInput(plan: Plan, batchName: string, options: BatchStartOptions = {}): BatchInput {
  const batch = plan.batches.find((b) => b.name === batchName);
  if (!batch) {
    throw new UsageError('invalid batch', [{ path: 'batch', message: `no batch "${batchName}" in the inventory`, fix: `use one of: ${plan.batches.map((b) => b.name).join(', ') || '(none declared)'}, or all` }]);
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
    approval: batch.approval,
    force: options.force ?? false,
    samples: options.samples,
    backup: backupGuard(plan, options.skipBackup),
  };
}

/** Start one batch; refuses (CommandFailed) when that batch is already running. */
export async function startBatch(client: Client, plan: Plan, batchName: string, options: BatchStartOptions = {}): Promise<WorkflowHandle> {
  const input = batchInput(plan, batchName, options);
  const hosts = [...new Set(input.units.map((u) => u.host))];
  const workflowId = batchWorkflowId(input.batch);
  try {
    return await client.workflow.start('migrateBatch', {
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
      throw new CommandFailed(`${input.batch} is already running (workflow ${workflowId}): watch it with \`migrate status ${input.batch}\`, or stop it with \`migrate abort ${input.batch}\``);
    }
    throw err;
  }
}

/** Start every batch of the plan, in order, as one durable `migrateAllBatches` workflow. */
export async function startAllBatches(client: Client, plan: Plan, options: BatchStartOptions = {}): Promise<WorkflowHandle> {
  const batches = plan.batches.map((b) => batchInput(plan, b.name, options));
  if (batches.length === 0) throw new UsageError('invalid batch', [{ path: 'batch', message: 'the inventory declares no batches', fix: 'add batches: to the inventory' }]);
  const workflowId = allBatchesWorkflowId(plan.project);
  try {
    return await client.workflow.start('migrateAllBatches', {
      taskQueue: ORCHESTRATOR_QUEUE,
      workflowId,
      args: [{ project: plan.project, batches }],
      typedSearchAttributes: [{ key: SA.kind, value: 'batches' }],
      staticSummary: `all ${batches.length} batches of ${plan.project}, in order: ${batches.map((b) => b.batch).join(' → ')}`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) throw new CommandFailed(`the batches of ${plan.project} are already being migrated (workflow ${workflowId}): watch it in the Web UI or with \`migrate status batch-N\``);
    throw err;
  }
}

/** Follow `start all`: each batch's own run, as the parent starts it; returns the parent's final progress. */
export async function followAllBatches(client: Client, parent: WorkflowHandle, names: string[], onBatch: (name: string, handle: WorkflowHandle) => Promise<unknown>): Promise<AllBatchesProgress> {
  let closed = false;
  const final = parent.result().then((r) => r as AllBatchesProgress).finally(() => { closed = true; });
  for (const name of names) {
    let runId: string | undefined;
    while (!runId && !closed) {
      runId = (await parent.query<AllBatchesProgress>('progress').catch(() => undefined))?.runs[name];
      if (!runId) await Promise.race([final.catch(() => undefined), new Promise((r) => setTimeout(r, 250))]);
    }
    runId ??= (await final).runs[name];
    if (!runId) break; // stopped before this batch
    await onBatch(name, client.workflow.getHandle(batchWorkflowId(name), runId)).catch(() => undefined);
  }
  return final;
}

/** The plan as the CLI runs it: with --stub, every unit is the local stub image. */
export async function planForRun(files: string[], stub: boolean, version?: string): Promise<Plan> {
  const { plan } = await loadPlan(files);
  if (!stub) return plan;
  return stubbedPlan(plan, { version });
}

const startOptions = commonOptions.extend({
  stub: z.boolean().default(false),
  stubVersion: z.string().regex(/^[A-Za-z0-9._-]+$/).optional(),
  force: z.boolean().default(false),
  wait: z.boolean().default(false),
  skipBackup: skipBackupOption,
});

export function registerStart(program: Command): void {
  program
    .command('start')
    .description('migrate a batch of agents (or all batches in order) to the version the inventory names')
    .argument('<batch>', 'a batch name from the inventory (batch-1 … batch-4), or "all"')
    .option('-i, --inventory <file>', 'inventory file (repeatable)', collect)
    .option('--stub', 'run every unit as the local stub image (no registry needed)')
    .option('--stub-version <v>', 'with --stub: the stub version to deploy (a new version changes the spec)')
    .option('--force', 'skip the gate that wants the previous batch completed')
    .option('--wait', 'wait for the batch to finish, showing its progress')
    .option('--skip-backup <reason>', 'migrate without taking a verified backup first (the reason is recorded in the workflow)')
    .option('--json', 'machine-readable output')
    .option('--address <host:port>', 'Temporal frontend address')
    .option('--namespace <ns>', 'Temporal namespace')
    .action(action(async (target: string, raw: unknown) => {
      const opts = parseOptions(startOptions, raw);
      const plan = await planForRun(opts.inventory, opts.stub, opts.stubVersion);
      const names = target === 'all' ? plan.batches.map((b) => b.name) : [target];
      for (const n of names) batchInput(plan, n); // bad names are bad input, before anything starts
      const { client, close } = await connectClient(opts);
      try {
        if (target === 'all') {
          const parent = await startAllBatches(client, plan, { force: opts.force, skipBackup: opts.skipBackup });
          if (!opts.json) process.stdout.write(`started all batches (${names.join(' → ')}) as workflow ${parent.workflowId}\n${describeBackupStep(plan, opts.skipBackup)}\n`);
          if (!opts.wait) {
            if (opts.json) printJson({ ok: true, workflowId: parent.workflowId });
            return 0;
          }
          const all = await followAllBatches(client, parent, names, async (name, handle) => {
            if (opts.json) return;
            process.stdout.write(`${name}:\n`);
            process.stdout.write(`${formatBatch(await watchBatch(handle))}\n`);
          });
          if (opts.json) {
            printJson({ ok: !all.stoppedAt, ...all });
            return all.stoppedAt ? 1 : 0;
          }
          if (all.stoppedAt) throw new CommandFailed(`${all.stoppedAt} did not migrate (${all.error ?? 'rolled back'}); later batches were not started`);
          return 0;
        }
        const handle = await startBatch(client, plan, target, { force: opts.force, skipBackup: opts.skipBackup });
        if (!opts.json) process.stdout.write(`started ${target} (workflow ${handle.workflowId})\n${describeBackupStep(plan, opts.skipBackup)}\n`);
        if (!opts.wait) {
          if (opts.json) printJson({ ok: true, batch: target, workflowId: handle.workflowId });
          return 0;
        }
        const result = opts.json ? await handle.result() as BatchResult : await watchBatch(handle);
        if (opts.json) {
          printJson({ ok: result.outcome === 'migrated', result });
          return result.outcome === 'migrated' ? 0 : 1;
        }
        process.stdout.write(`${formatBatch(result)}\n`);
        if (result.outcome !== 'migrated') throw new CommandFailed(`${target} was rolled back: ${result.reason ?? 'see the table above'}`);
        return 0;
      } finally {
        await close();
      }
    }));
}
