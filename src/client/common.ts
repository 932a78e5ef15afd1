/**
 * What every command shares: option schemas (zod), loading the inventory into a plan, connecting
 * to Temporal, and the one error handler (exit 0 ok, 1 failure, 2 bad input).
 */
import path from 'node:path';
import { Connection, Client } from '@temporalio/client';
import { z } from 'zod';
import { InventoryError, loadInventoryFiles, zodProblems, formatProblem, type Problem } from '../inventory/load.js';
import type { Inventory } from '../inventory/schema.js';
import { buildPlan, type Plan } from '../plan/plan.js';
import type { BackupGuard } from '../workflows/safeguard.js';

export const DEFAULT_INVENTORY = ['inventory/agentsys.yaml'];

/** Bad input: exit code 2, nothing started. */
export class UsageError extends Error {
  constructor(message: string, public readonly problems: Problem[] = []) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failure the operator should see plainly (no stack): exit code 1. */
export class CommandFailed extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CommandFailed';
  }
}

export const commonOptions = z.object({
  inventory: z.array(z.string().min(1)).default(DEFAULT_INVENTORY),
  json: z.boolean().default(false),
  address: z.string().regex(/^[^\s:]+:\d+$/, { message: 'must be HOST:PORT, e.g. 127.0.0.1:7233' }).default(process.env.TEMPORAL_ADDRESS ?? '127.0.0.1:7233'),
  namespace: z.string().min(1).default(process.env.TEMPORAL_NAMESPACE ?? 'default'),
});
export type CommonOptions = z.infer<typeof commonOptions>;

/** Parse a command's options with its schema; a bad option is a UsageError naming the flag. */
export function parseOptions<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  const result = schema.safeParse(raw);
  if (!result.success) {
    const problems = zodProblems(result.error).map((p) => ({ ...p, path: `--${p.path.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`).replace(/\[\d+\]$/, '')}` }));
    throw new UsageError('invalid options', problems);
  }
  return result.data;
}

export async function loadPlan(files: string[]): Promise<{ inventory: Inventory; plan: Plan }> {
  const { inventory } = await loadInventoryFiles(files);
  const baseDir = path.dirname(path.resolve(files[0]!));
  return { inventory, plan: buildPlan(inventory, { baseDir }) };
}

export async function connectClient(opts: Pick<CommonOptions, 'address' | 'namespace'>): Promise<{ client: Client; close(): Promise<void> }> {
  let connection: Connection;
  try {
    connection = await Connection.connect({ address: opts.address, connectTimeout: 5000 });
  } catch (err) {
    throw new CommandFailed(`cannot reach the Temporal server at ${opts.address} (${(err as Error).message}): start one with \`migrate dev\`, or pass --address HOST:PORT`);
  }
  return { client: new Client({ connection, namespace: opts.namespace }), close: () => connection.close() };
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** The one error handler: prints what is wrong and how to fix it, returns the exit code. */
export function reportError(err: unknown, json: boolean): number {
  if (err instanceof InventoryError || err instanceof UsageError) {
    const problems = err instanceof InventoryError ? err.problems : err.problems;
    if (json) printJson({ ok: false, error: err instanceof InventoryError ? 'invalid inventory' : err.message, problems });
    else {
      process.stderr.write(`error: ${err instanceof InventoryError ? `the inventory is invalid (${problems.length} problem${problems.length === 1 ? '' : 's'}); nothing was started` : err.message}\n`);
      for (const p of problems) process.stderr.write(`${formatProblem(p)}\n`);
    }
    return 2;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (json) printJson({ ok: false, error: message });
  else process.stderr.write(`error: ${message}\n`);
  if (!(err instanceof CommandFailed) && process.env.MIGRATE_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
  return 1;
}

/** Wrap a command's action: parse, run, map errors to exit codes, never call process.exit. */
export function action<A extends unknown[]>(fn: (...args: A) => Promise<number | void>) {
  return async (...args: A): Promise<void> => {
    const opts = args.find((a) => a && typeof a === 'object' && !Array.isArray(a) && !('parent' in (a as object))) as { json?: boolean } | undefined;
    try {
      process.exitCode = (await fn(...args)) ?? 0;
    } catch (err) {
      process.exitCode = reportError(err, Boolean(opts?.json));
    }
  };
}

export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** `--skip-backup REASON`: the reason is required, and recorded in the workflow's input and result. */
export const skipBackupOption = z.string().trim()
  .min(3, { message: 'say why the backup is skipped (it is recorded in the workflow), e.g. --skip-backup "nothing writes to the databases yet"' })
  .max(500)
  .optional();

/** `--restore-data [NAMES]`: every backup component (no value), or the comma-separated ones named. */
export const restoreDataOption = z
  .union([z.boolean(), z.string().regex(/^[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*$/, { message: 'must be backup component names separated by commas, e.g. postgres,redis (or no value: all of them)' })])
  .optional()
  .transform((v) => (v === undefined || v === false ? undefined : { components: v === true ? undefined : v.split(',') }));

/** What a deploy or a batch does about the data first: a verified backup of the plan's targets, or the operator's skip. */
export function backupGuard(plan: Plan, skipReason: string | undefined): BackupGuard | undefined {
  if (skipReason !== undefined) return { skip: skipReason };
  return plan.backups && plan.backups.components.length > 0 ? { take: plan.backups } : undefined;
}
