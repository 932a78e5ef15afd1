/**
 * Backups proven restorable (seed 000 §6.1, made safe):
 *   take every component on the worker of the host that holds its data, in parallel →
 *   record a manifest on each host → verify (restore into a scratch copy, compare) →
 *   mark verified or failed → apply retention.
 * The inputs hold the plan's backup targets, whose secrets are references: the workers read them.
 */
import { ApplicationFailure, proxyActivities, upsertSearchAttributes, workflowInfo } from '@temporalio/workflow';
import type { HostActivities } from '../activities/index.js';
import { hostQueue } from '../plan/queues.js';
import type { BackupSummary, ComponentEntry, ComponentVerification } from '../activities/backup-store.js';
import type { BackupComponent, BackupPlan } from '../plan/backups.js';
import { SA } from '../common/search-attributes.js';
import { rootMessage } from '../common/failure.js';
import { onHost } from './profiles.js';

/** Dumps and restores, on the host that holds the component. */
const on = (host: string) => onHost(host).backup;

function hostsOf(components: BackupComponent[]): string[] {
  return [...new Set(components.map((c) => c.host))];
}

function phase(value: string): void {
  upsertSearchAttributes([{ key: SA.kind, value: 'backup' }, { key: SA.phase, value }]);
}

/** A backup's id is its workflow id (a schedule's runs get a timestamp appended), made file-safe. */
export function backupIdOf(workflowId: string): string {
  return workflowId.replace(/[^A-Za-z0-9_.-]/g, '-');
}

export interface BackupInput {
  backups: BackupPlan;
}

export interface BackupResult {
  id: string;
  createdAt: string;
  status: 'verified' | 'failed';
  hosts: BackupSummary[];
  retention: Record<string, { kept: string[]; removed: string[] }>;
}

export function take(dir: string | undefined, id: string, c: BackupComponent): Promise<ComponentEntry> {
  const req = { directory: dir, backupId: id, component: c };
  const acts = on(c.host);
  if (c.kind === 'postgres') return acts.dumpPostgres(req);
  if (c.kind === 'redis') return acts.snapshotRedis(req);
  return acts.backupInflux(req);
}

export function check(dir: string | undefined, id: string, c: BackupComponent, entry: ComponentEntry): Promise<ComponentVerification> {
  const req = { directory: dir, backupId: id, component: c, entry };
  const acts = on(c.host);
  if (c.kind === 'postgres') return acts.verifyPostgres(req);
  if (c.kind === 'redis') return acts.verifyRedis(req);
  return acts.verifyInflux(req);
}

/**
 * Freeze writes on a database (failback, before its last backup): PostgreSQL read-only, its sessions
 * ended; Redis's writes paused for `holdMs` (call again to renew). InfluxDB 1.x has no such switch:
 * false, nothing done.
 */
export async function freezeWrites(c: BackupComponent, holdMs: number): Promise<boolean> {
  const acts = onHost(c.host).docker;
  if (c.kind === 'postgres') await acts.freezePostgres(c);
  else if (c.kind === 'redis') await acts.freezeRedis(c, holdMs);
  else return false;
  return true;
}

/** Thaws are retried while the database comes back up (a copy just started again), for 10 minutes. */
const thawing = (host: string) => proxyActivities<HostActivities>({
  taskQueue: hostQueue(host), startToCloseTimeout: '1 minute', heartbeatTimeout: '10 seconds', scheduleToCloseTimeout: '10 minutes',
  retry: { initialInterval: '500 milliseconds', maximumInterval: '5 seconds', nonRetryableErrorTypes: ['SecretMissing'] },
});

/** Lift a freeze (idempotent). */
export async function thawWrites(c: BackupComponent): Promise<void> {
  if (c.kind === 'postgres') await thawing(c.host).thawPostgres(c);
  else if (c.kind === 'redis') await thawing(c.host).thawRedis(c);
}

async function verifyOnHosts(plan: BackupPlan, id: string, extra: Record<string, ComponentVerification[]> = {}): Promise<BackupSummary[]> {
  return Promise.all(hostsOf(plan.components).map(async (host) => {
    const manifest = await on(host).readBackupManifest(plan.directory, id);
    const results = await Promise.all(manifest.components.map((entry) => {
      const component = plan.components.find((c) => c.name === entry.name && c.host === host);
      if (!component) return { name: entry.name, ok: false, detail: `component "${entry.name}" is no longer in the inventory's backups: cannot verify it`, ms: 0 };
      return check(plan.directory, id, component, entry);
    }));
    return on(host).markBackup(plan.directory, id, [...results, ...(extra[host] ?? [])]);
  }));
}

export async function backupDatabases(input: BackupInput): Promise<BackupResult> {
  const plan = input.backups;
  if (plan.components.length === 0) throw ApplicationFailure.nonRetryable('the inventory declares no backups: add a `backups:` section', 'NothingToBackUp');
  const info = workflowInfo();
  const id = backupIdOf(info.workflowId);
  const createdAt = info.startTime.toISOString();
  const hosts = hostsOf(plan.components);

  // 1. Take every component, each on its own host, in parallel.
  phase('taking');
  const taken = await Promise.allSettled(plan.components.map((c) => take(plan.directory, id, c)));
  const failedTakes: Record<string, ComponentVerification[]> = {};
  taken.forEach((t, i) => {
    if (t.status === 'rejected') {
      const c = plan.components[i]!;
      (failedTakes[c.host] ??= []).push({ name: c.name, ok: false, detail: `not taken: ${rootMessage(t.reason)}`, ms: 0 });
    }
  });

  // 2. Record what each host holds.
  const entries = taken.flatMap((t) => (t.status === 'fulfilled' ? [t.value] : []));
  await Promise.all(hosts.map((h) => on(h).recordBackup(plan.directory, id, createdAt, entries.filter((e) => e.host === h))));

  // 3. Prove it restorable; mark it verified or failed.
  phase('verifying');
  const summaries = await verifyOnHosts(plan, id, failedTakes);

  // 4. Retention: never touches the newest verified backup.
  phase('retention');
  const retention: BackupResult['retention'] = {};
  for (const h of hosts) retention[h] = await on(h).applyBackupRetention(plan.directory, plan.retention);

  const status = summaries.every((s) => s.status === 'verified') ? 'verified' : 'failed';
  phase(status);
  return { id, createdAt, status, hosts: summaries, retention };
}

export interface VerifyInput {
  id: string;
  backups: BackupPlan;
}

export async function verifyBackup(input: VerifyInput): Promise<{ id: string; status: 'verified' | 'failed'; hosts: BackupSummary[] }> {
  phase('verifying');
  const summaries = await verifyOnHosts(input.backups, input.id);
  const status = summaries.every((s) => s.status === 'verified') ? 'verified' : 'failed';
  phase(status);
  return { id: input.id, status, hosts: summaries };
}

export interface RestoreInput {
  id: string;
  backups: BackupPlan;
  /** Restore only these components (default: all). */
  components?: string[];
  /** PostgreSQL: restore into this database instead of the original one. */
  targetDatabase?: string;
  /** Restore even if the backup was never verified, or failed verification. */
  force?: boolean;
}

export interface RestoreResult {
  id: string;
  ok: boolean;
  components: ComponentVerification[];
}

export async function restoreBackup(input: RestoreInput): Promise<RestoreResult> {
  const plan = input.backups;
  const wanted = plan.components.filter((c) => !input.components || input.components.includes(c.name));
  if (wanted.length === 0) throw ApplicationFailure.nonRetryable(`no component named ${input.components?.join(', ')} in the inventory's backups`, 'InvalidTarget');

  // 1. Read the manifests; refuse a backup that was not proven restorable.
  phase('checking');
  const manifests = new Map(await Promise.all(hostsOf(wanted).map(async (h) => [h, await on(h).readBackupManifest(plan.directory, input.id)] as const)));
  for (const [h, m] of manifests) {
    if (m.status !== 'verified' && !input.force) {
      throw ApplicationFailure.nonRetryable(`backup ${input.id} on ${h} is ${m.status}, not verified: verify it (\`migrate backup verify ${input.id}\`) or pass --force`, 'BackupNotVerified');
    }
  }

  // 2. Restore each component on its host, and compare with what the backup recorded.
  phase('restoring');
  // Each component on its own: one that fails does not hide what happened to the others.
  const settled = await Promise.allSettled(wanted.map((c) => {
    const entry = manifests.get(c.host)!.components.find((e) => e.name === c.name);
    if (!entry) return { name: c.name, ok: false, detail: `backup ${input.id} holds no "${c.name}"`, ms: 0 };
    const req = { directory: plan.directory, backupId: input.id, component: c, entry };
    const acts = on(c.host);
    if (c.kind === 'postgres') return acts.restorePostgres({ ...req, targetDatabase: input.targetDatabase });
    if (c.kind === 'redis') return acts.restoreRedis(req);
    return acts.restoreInflux(req);
  }));
  const results: ComponentVerification[] = settled.map((r, i) => (r.status === 'fulfilled'
    ? r.value
    : { name: wanted[i]!.name, ok: false, detail: `not restored: ${rootMessage(r.reason)}`, ms: 0 }));
  const ok = results.every((r) => r.ok);
  phase(ok ? 'restored' : 'restore-incomplete');
  return { id: input.id, ok, components: results };
}
