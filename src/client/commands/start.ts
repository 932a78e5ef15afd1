/**
 * `migrate start batch-N|all`: migrate the batch's agents to the version the inventory now names.
 * One `migrateBatch` workflow per batch (id `migrate-<batch>`); a second start of a running batch is
 * refused. `all` runs the plan's batches in order, each waiting for the one before.
 */
import type { Command } from 'commander';
import { Client, WorkflowExecutionAlreadyStartedError, type WorkflowHandle } from '@temporalio/client';
import { z } from 'zod';
import type { Plan, UnitSpec } from '../../plan/plan.js';
import { ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import { stubbedPlan } from '../../dev/stub-image.js';
import { SA } from '../../common/search-attributes.js';
import { batchWorkflowId, type BatchInput, type BatchResult } from '../../workflows/batch.js';
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
        const results: BatchResult[] = [];
        for (const name of names) {
          const handle = await startBatch(client, plan, name, { force: opts.force, skipBackup: opts.skipBackup });
          if (!opts.json) process.stdout.write(`started ${name} (workflow ${handle.workflowId})\n${describeBackupStep(plan, opts.skipBackup)}\n`);
          if (!opts.wait && target !== 'all') {
            if (opts.json) printJson({ ok: true, batch: name, workflowId: handle.workflowId });
            return 0;
          }
          const result = opts.json ? await handle.result() as BatchResult : await watchBatch(handle);
          results.push(result);
          if (!opts.json) process.stdout.write(`${formatBatch(result)}\n`);
          if (result.outcome !== 'migrated') {
            if (opts.json) printJson({ ok: false, results });
            throw new CommandFailed(`${name} was rolled back: ${result.reason ?? 'see the table above'}${names.length > 1 ? '; later batches were not started' : ''}`);
          }
        }
        if (opts.json) printJson({ ok: true, results });
        return 0;
      } finally {
        await close();
      }
    }));
}
