/**
 * The data safeguard of a deploy and of a batch migration: before anything changes, take a backup
 * and prove it restorable (the `backupDatabases` child workflow); refuse to go on when it does not
 * verify. An operator may skip it, but only by giving a reason, which the workflow's input and
 * result record. `migrate rollback … --restore-data` later restores exactly that backup
 * (`restoreAfterRollback`, the `restoreBackup` child workflow).
 *
 * Deterministic: child workflows only.
 */
import { ApplicationFailure, executeChild, workflowInfo } from '@temporalio/workflow';
import type { BackupPlan } from '../plan/backups.js';
import { rootMessage } from '../common/failure.js';
import { backupDatabases, restoreBackup, type RestoreResult } from './backup.js';

/** What the client asks for: take a backup of these targets, or skip it for a stated reason. */
export type BackupGuard = { take: BackupPlan } | { skip: string };

/** What happened, as the deploy's progress and the batch's result show it. */
export interface BackupOutcome {
  status: 'verified' | 'skipped' | 'none';
  /** The backup's id (`migrate backup list`, `migrate restore ID`), when one was taken. */
  id?: string;
  workflowId?: string;
  /** Why it was skipped, or why there is none. */
  reason?: string;
}

/** What `--restore-data` did after the containers were rolled back. */
export interface DataRestore {
  backupId: string;
  ok: boolean;
  result?: RestoreResult;
  error?: string;
}

const compactTime = (d: Date) => d.toISOString().replace(/[-:]/g, '').replace(/\.\d+Z$/, 'Z');

/**
 * Take the verified backup a change starts with. `what` names the change in messages ("deploy r42").
 * Throws `BackupFailed` (non-retryable) when the backup does not verify: nothing has changed yet.
 */
export async function backupFirst(guard: BackupGuard | undefined, what: string): Promise<BackupOutcome> {
  if (!guard) return { status: 'none', reason: 'the inventory declares no backups' };
  if ('skip' in guard) return { status: 'skipped', reason: guard.skip };
  const info = workflowInfo();
  // A batch's workflow id is reused by a later run: the start time keeps each run's backup apart.
  const workflowId = `${info.workflowId}-backup-${compactTime(info.startTime)}`;
  let result;
  try {
    result = await executeChild(backupDatabases, {
      workflowId,
      args: [{ backups: guard.take }],
      staticSummary: `verified backup before ${what}`,
    });
  } catch (err) {
    throw ApplicationFailure.nonRetryable(
      `${what} refused before any change: the backup it starts with failed (${rootMessage(err)}); fix it (\`migrate backup now\` shows the same), or pass --skip-backup "REASON"`,
      'BackupFailed',
    );
  }
  if (result.status !== 'verified') {
    const why = result.hosts.flatMap((h) => h.problems.map((p) => `${p} (on ${h.host})`)).join('; ');
    throw ApplicationFailure.nonRetryable(
      `${what} refused before any change: backup ${result.id} did not verify (${why}); fix it, or pass --skip-backup "REASON"`,
      'BackupFailed',
    );
  }
  return { status: 'verified', id: result.id, workflowId };
}

/** Why a change has no backup to restore (skipped, none declared, not verified), or undefined when it has one. */
export function missingBackup(outcome: BackupOutcome | undefined, what: string): string | undefined {
  if (outcome?.status === 'verified' && outcome.id) return undefined;
  const why = outcome?.status === 'skipped' ? `its backup was skipped (${outcome.reason})` : outcome?.status === 'none' ? 'the inventory declared no backups' : 'it took no verified backup';
  return `${what} has no backup to restore: ${why}. Roll back without --restore-data, or restore another backup with \`migrate restore ID\``;
}

/** The names in `components` that are not components of `plan`. */
export function unknownComponents(plan: BackupPlan, components: string[] | undefined): string[] {
  const known = new Set(plan.components.map((c) => c.name));
  return (components ?? []).filter((c) => !known.has(c));
}

/** Why `--restore-data` cannot be honoured, or undefined when it can. */
export function restoreRefusal(outcome: BackupOutcome | undefined, guard: BackupGuard | undefined, what: string, components?: string[]): string | undefined {
  const missing = missingBackup(outcome, what);
  if (missing) return missing;
  if (!guard || !('take' in guard)) return missingBackup(undefined, what);
  const unknown = unknownComponents(guard.take, components);
  if (unknown.length) return `backup ${outcome!.id} has no component ${unknown.map((u) => `"${u}"`).join(', ')}: name some of ${guard.take.components.map((c) => c.name).join(', ')}, or give --restore-data no value to restore all`;
  return undefined;
}

/** Restore the backup a change started with (all components, or those named); never throws (the containers are already back). */
export async function restoreAfterRollback(guard: BackupGuard | undefined, outcome: BackupOutcome | undefined, what: string, components?: string[]): Promise<DataRestore> {
  const refusal = restoreRefusal(outcome, guard, what, components);
  if (refusal) return { backupId: outcome?.id ?? '', ok: false, error: refusal };
  const backupId = outcome!.id!;
  const info = workflowInfo();
  try {
    const result = await executeChild(restoreBackup, {
      workflowId: `${info.workflowId}-restore-${compactTime(new Date())}`,
      args: [{ id: backupId, backups: (guard as { take: BackupPlan }).take, components }],
      staticSummary: `restore backup ${backupId} after rolling back ${what}`,
    });
    return { backupId, ok: result.ok, result };
  } catch (err) {
    return { backupId, ok: false, error: rootMessage(err) };
  }
}
