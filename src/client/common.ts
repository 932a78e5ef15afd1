/**
 * What every command shares: option schemas (zod), the options every Temporal command takes,
 * loading the inventory into a plan, telling a release from a batch, connecting to Temporal, and the
 * one error handler (exit 0 ok, 1 failure, 2 bad input). The work itself is in src/ops.
 */
import path from 'node:path';
import type { Command } from 'commander';
import { Connection, Client } from '@temporalio/client';
import { z } from 'zod';
import { InventoryError, loadInventoryFiles, zodProblems, formatProblem } from '../inventory/load.js';
import type { Inventory } from '../inventory/schema.js';
import { buildPlan, type Plan } from '../plan/plan.js';
import { stubbedPlan } from '../dev/stub-image.js';
import { BadInput, OperationFailed } from '../ops/errors.js';
import type { DataConverter } from '@temporalio/common';
import { codecDataConverter } from '../codec/data-converter.js';
import { CodecKeyError } from '../codec/keys.js';
import { ConnectionConfigError, connectionOptions, sdkConnectOptions, type ConnectionFlags, type TemporalConnection } from '../common/connection.js';
import { parseBind } from '../metrics/server.js';

export const DEFAULT_INVENTORY = ['inventory/agentsys.yaml'];
/** What `migrate dev` and `migrate demo` run: the shipped inventory with one machine playing every host. */
export const DEV_INVENTORY = ['inventory/agentsys.yaml', 'inventory/local.yaml'];

export const commonOptions = z.object({
  inventory: z.array(z.string().min(1)).default(DEFAULT_INVENTORY),
  json: z.boolean().default(false),
  // Connection settings: absent flags fall back to the `temporal` CLI's variables in src/common/connection.ts.
  address: z.string().regex(/^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):\d+$/, { message: 'must be HOST:PORT, e.g. 127.0.0.1:7233' })
    .refine((a) => { const port = Number(a.slice(a.lastIndexOf(':') + 1)); return port >= 1 && port <= 65535; }, { message: 'must be HOST:PORT with a port from 1 to 65535, e.g. 127.0.0.1:7233' })
    .optional(),
  namespace: z.string().min(1).optional(),
  tls: z.boolean().optional(),
  tlsCa: z.string().min(1).optional(),
  tlsCert: z.string().min(1).optional(),
  tlsKey: z.string().min(1).optional(),
  tlsServerName: z.string().min(1).optional(),
  apiKey: z.string().min(1).optional(),
});
export type CommonOptions = z.infer<typeof commonOptions>;

/** The options of the commands that run a dev server on this machine (`dev`, `demo`). */
/** `--metrics HOST:PORT`: where a worker process serves its Prometheus metrics. */
export const metricsBind = z.string().refine((b) => !('problem' in parseBind(b)), { message: 'must be HOST:PORT, e.g. 127.0.0.1:9464 or [::1]:9464' });

export const devOptions = z.object({
  inventory: z.array(z.string()).default(DEV_INVENTORY),
  dataDir: z.string().default('.data'),
  port: z.coerce.number().int().min(1).max(65535).default(7233),
  uiPort: z.coerce.number().int().min(1).max(65535).default(8233),
  metrics: metricsBind.optional(),
});

/** The dev server's two ports cannot be the same one. */
export function checkDevPorts(opts: { port: number; uiPort: number }): void {
  if (opts.port === opts.uiPort) {
    throw new BadInput('invalid options', [{ path: '--ui-port', message: `is the same port as --port (${opts.port})`, fix: 'give the Web UI another port, e.g. --ui-port 8233' }]);
  }
}

export const RELEASE_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$/;
export const releaseName = z.string().regex(RELEASE_RE, { message: 'must be letters, digits, "_", "." or "-" (at most 63), e.g. 2024-06-01 or v42' });

/** `-i, --inventory FILE` (repeatable). */
export function inventoryOption(cmd: Command, what = 'inventory file (repeat to layer overrides, like compose -f)'): Command {
  return cmd.option('-i, --inventory <file>', what, collect);
}

/** The connection flags (address, namespace, TLS, mTLS, API key); each falls back to the `temporal` CLI's variable. */
export function connectionFlags(cmd: Command): Command {
  return cmd
    .option('--address <host:port>', 'Temporal frontend address (default $TEMPORAL_ADDRESS or 127.0.0.1:7233)')
    .option('--namespace <ns>', 'Temporal namespace (default $TEMPORAL_NAMESPACE or default)')
    .option('--tls', 'connect with TLS (on by itself when a TLS file or an API key is given; $TEMPORAL_TLS)')
    .option('--tls-ca <file>', 'CA certificate (PEM) the server\'s certificate is checked against ($TEMPORAL_TLS_SERVER_CA_CERT_PATH)')
    .option('--tls-cert <file>', 'client certificate (PEM) for mTLS ($TEMPORAL_TLS_CLIENT_CERT_PATH)')
    .option('--tls-key <file>', 'client private key (PEM) for mTLS ($TEMPORAL_TLS_CLIENT_KEY_PATH)')
    .option('--tls-server-name <name>', 'name expected in the server\'s certificate, if not the address\'s host ($TEMPORAL_TLS_SERVER_NAME)')
    .option('--api-key <key>', 'API key sent with every request ($TEMPORAL_API_KEY; prefer the variable: flags show in ps)');
}

/** The connection flags and `--json`: every command that talks to Temporal. */
export function temporalOptions(cmd: Command): Command {
  return connectionFlags(cmd).option('--json', 'machine-readable output');
}

/** The connection settings of parsed options: bad input (exit 2) when a file is unreadable or a pair incomplete. */
export function temporalConnection(opts: ConnectionFlags): TemporalConnection {
  try {
    return connectionOptions(opts);
  } catch (err) {
    if (err instanceof ConnectionConfigError) throw new BadInput('invalid connection settings', err.problems);
    throw err;
  }
}

/** Parse a command's options with its schema; a bad option is bad input naming the flag. */
export function parseOptions<S extends z.ZodType>(schema: S, raw: unknown): z.infer<S> {
  const result = schema.safeParse(raw);
  if (!result.success) {
    // zod's problems point at the inventory format; for a flag, the command's --help says what it takes.
    const problems = zodProblems(result.error).map((p) => ({
      ...p,
      path: `--${p.path.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`).replace(/\[\d+\]$/, '')}`,
      fix: p.fix?.replace('the inventory format in the README', 'the command\'s --help'),
    }));
    throw new BadInput('invalid options', problems);
  }
  return result.data;
}

/** Parse a command's argument with its schema; a bad one is bad input naming the argument. */
export function parseArgument<S extends z.ZodType>(schema: S, value: unknown, name: string): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw new BadInput(`invalid ${name}`, zodProblems(result.error).map((p) => ({ ...p, path: name })));
  return result.data;
}

export async function loadPlan(files: string[]): Promise<{ inventory: Inventory; plan: Plan }> {
  const { inventory } = await loadInventoryFiles(files);
  const baseDir = path.dirname(path.resolve(files[0]!));
  return { inventory, plan: buildPlan(inventory, { baseDir }) };
}

/** The plan as a command runs it: with --stub, every unit is the stub image (each host's worker builds it on its own engine if missing). */
export async function planForRun(plan: Plan, stub: boolean, version?: string): Promise<Plan> {
  return stub ? stubbedPlan(plan, { version }) : plan;
}

/** What `status`, `rollback` and `confirm` act on. */
export type Target = { kind: 'all' } | { kind: 'batch'; batch: string } | { kind: 'release'; release: string };

/**
 * Tell a target by its form: `all`, a batch of the inventory, else a release. A `batch-N` the
 * inventory does not declare is bad input (a typo, or another inventory), not a release.
 */
export function resolveTarget(plan: Plan, target: string, allowAll: boolean): Target {
  const batches = plan.batches.map((b) => b.name);
  const choices = `a release, one of the inventory's batches (${batches.join(', ') || 'none declared'})${allowAll ? ', or all' : ''}`;
  if (target === 'all') {
    if (allowAll) return { kind: 'all' };
    throw new BadInput('invalid target', [{ path: 'target', message: 'this takes one release or one batch, not all', fix: `give ${choices}` }]);
  }
  if (batches.includes(target)) return { kind: 'batch', batch: target };
  if (/^batch-\d+$/.test(target)) {
    throw new BadInput('invalid target', [{ path: 'target', message: `no batch "${target}" in the inventory (${plan.project})`, fix: `give ${choices}; or pass the inventory it ran with: -i FILE` }]);
  }
  if (!RELEASE_RE.test(target)) {
    throw new BadInput('invalid target', [{ path: 'target', message: `"${target}" is neither a batch of the inventory nor a release name (letters, digits, "_", "." or "-", at most 63)`, fix: `give ${choices}` }]);
  }
  return { kind: 'release', release: target };
}

export async function connectClient(opts: ConnectionFlags): Promise<{ client: Client; close(): Promise<void> }> {
  const target = temporalConnection(opts);
  // Checked before connecting: bad keys are bad input, and nothing may reach the server first.
  const dataConverter = clientDataConverter();
  let connection: Connection;
  try {
    connection = await Connection.connect({ ...sdkConnectOptions(target), connectTimeout: 5000 });
  } catch (err) {
    throw new OperationFailed(`cannot reach the Temporal server at ${target.describe} (${(err as Error).message}): start one with \`migrate dev\`, or pass --address HOST:PORT (and --tls-ca/--tls-cert/--tls-key or --api-key if it needs them)`);
  }
  // Payloads encrypted when MIGRATE_CODEC_KEYS(_FILE) is set: the workers must have the same keys.
  return { client: new Client({ connection, namespace: target.namespace, dataConverter }), close: () => connection.close() };
}

/** The codec keys' data converter (undefined: off); a bad key setting is bad input. */
export function clientDataConverter(): DataConverter | undefined {
  try {
    return codecDataConverter();
  } catch (err) {
    if (err instanceof CodecKeyError) throw new BadInput('invalid codec keys', [{ path: 'MIGRATE_CODEC_KEYS', message: err.message, fix: 'give id:base64key,… (32-byte keys: openssl rand -base64 32), or unset it to turn encryption off' }]);
    throw err;
  }
}

/** Connect, run, close: commands never call process.exit. */
export async function withClient<T>(opts: ConnectionFlags, fn: (client: Client) => Promise<T>): Promise<T> {
  const { client, close } = await connectClient(opts);
  try {
    return await fn(client);
  } finally {
    await close();
  }
}

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/** The one error handler: prints what is wrong and how to fix it, returns the exit code (2 bad input, 1 failure). */
export function reportError(err: unknown, json: boolean): number {
  if (err instanceof InventoryError || err instanceof BadInput) {
    const problems = err.problems;
    const message = err instanceof InventoryError ? 'invalid inventory' : err.message;
    if (json) printJson({ ok: false, error: message, problems });
    else {
      process.stderr.write(`error: ${err instanceof InventoryError ? `the inventory is invalid (${problems.length} problem${problems.length === 1 ? '' : 's'}); nothing was started` : message}\n`);
      for (const p of problems) process.stderr.write(`${formatProblem(p)}\n`);
    }
    return 2;
  }
  const message = err instanceof Error ? err.message : String(err);
  if (json) printJson({ ok: false, error: message });
  else process.stderr.write(`error: ${message}\n`);
  if (!(err instanceof OperationFailed) && process.env.MIGRATE_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
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

/** A backup's id, as the backup store accepts it. */
export const backupId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$/, { message: 'must be a backup id: letters, digits, "_", "." and "-" (see migrate backup list)' });

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
