/**
 * How the data safeguard reads on a terminal: the backup a deploy or batch starts with, and what
 * `--restore-data` did.
 */
import type { Plan } from '../plan/plan.js';
import type { BackupOutcome, DataRestore } from '../workflows/safeguard.js';

/** One line on what happens to the data first. */
export function describeBackupStep(plan: Plan, skipReason: string | undefined): string {
  if (skipReason !== undefined) return `  backup skipped by the operator: "${skipReason}" (recorded in the workflow)`;
  if (!plan.backups?.components.length) return '  no backup first: the inventory declares no backups';
  return `  first a verified backup of ${plan.backups.components.map((c) => `${c.name} (${c.kind} on ${c.host})`).join(', ')}`;
}

/** The backup line of a deploy's or batch's progress. */
export function formatBackupOutcome(b: BackupOutcome | undefined): string | undefined {
  if (!b) return undefined;
  if (b.status === 'verified') return `backup: ${b.id} (verified before any change; \`migrate restore ${b.id}\`)`;
  if (b.status === 'skipped') return `backup: skipped by the operator: "${b.reason}"`;
  return `backup: none (${b.reason})`;
}

/** What `--restore-data` did, one line per component. */
export function formatDataRestore(r: DataRestore): string {
  if (r.error) return `data restore from backup ${r.backupId || '(none)'}: FAILED: ${r.error}`;
  return [`data restored from backup ${r.backupId}: ${r.ok ? 'ok' : 'INCOMPLETE'}`, ...(r.result?.components ?? []).map((c) => `  ${c.name.padEnd(24)} ${c.ok ? 'ok' : 'NOT restored'}  ${c.detail}`)].join('\n');
}
