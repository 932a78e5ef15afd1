/**
 * Backups: take one now, verify one, restore one, list them, and keep them coming on a Temporal
 * Schedule (`backup-<project>`). The workflows run on the workers; this starts them.
 */
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import type { BackupPlan } from '../plan/backups.js';
import { ORCHESTRATOR_QUEUE } from '../plan/queues.js';
import { backupDatabases, restoreBackup, verifyBackup, type BackupResult, type RestoreInput, type RestoreResult } from '../workflows/backup.js';
import { BadInput } from './errors.js';

export type { BackupResult, RestoreResult } from '../workflows/backup.js';

export const scheduleId = (project: string) => `backup-${project}`;

/** Back up every component now, verify it, apply retention. */
export function backupNow(client: Client, backups: BackupPlan, reason?: string): Promise<BackupResult> {
  const workflowId = `backup-${reason ?? new Date().toISOString().replace(/[:.]/g, '-')}`;
  return client.workflow.execute(backupDatabases, { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args: [{ backups }] });
}

/** Prove a backup restorable again (scratch restore, compare); marks it verified or failed. */
export function verifyBackupNow(client: Client, backups: BackupPlan, id: string): ReturnType<typeof verifyBackup> {
  return client.workflow.execute(verifyBackup, { taskQueue: ORCHESTRATOR_QUEUE, workflowId: `verify-${id}`, args: [{ id, backups }] });
}

/** Restore a verified backup (PostgreSQL optionally into another database). */
export function restoreBackupNow(client: Client, input: RestoreInput): Promise<RestoreResult> {
  return client.workflow.execute(restoreBackup, { taskQueue: ORCHESTRATOR_QUEUE, workflowId: `restore-${input.id}`, args: [input] });
}

export interface BackupRun { workflowId: string; type: string; status: string; startTime: string }

/** Backup runs, from Temporal's visibility (MigrateKind=backup). */
export async function listBackups(client: Client): Promise<BackupRun[]> {
  const rows: BackupRun[] = [];
  for await (const wf of client.workflow.list({ query: `MigrateKind = 'backup'` })) {
    rows.push({ workflowId: wf.workflowId, type: wf.type, status: wf.status.name, startTime: wf.startTime.toISOString() });
  }
  return rows;
}

export interface ScheduleOptions {
  scheduleId: string;
  cron?: string;
  every?: string;
  input: { backups: BackupPlan };
  catchupWindow?: string;
}

/** Create the backup schedule, or update it in place (spec and action) if it exists. */
export async function upsertBackupSchedule(client: Client, opts: ScheduleOptions): Promise<'created' | 'updated'> {
  const spec = opts.cron ? { cronExpressions: [opts.cron] } : { intervals: [{ every: opts.every! }] };
  const action = {
    type: 'startWorkflow' as const,
    workflowType: backupDatabases,
    taskQueue: ORCHESTRATOR_QUEUE,
    // Each run's id gets the scheduled time appended: backup-scheduled-2025-01-01T03:00:00Z.
    workflowId: 'backup-scheduled',
    args: [opts.input] as [{ backups: BackupPlan }],
  };
  const policies = { overlap: ScheduleOverlapPolicy.SKIP, catchupWindow: opts.catchupWindow ?? '10 minutes' };
  const handle = client.schedule.getHandle(opts.scheduleId);
  try {
    await handle.describe();
  } catch (err) {
    if (!(err instanceof ScheduleNotFoundError)) throw err;
    await client.schedule.create({ scheduleId: opts.scheduleId, spec, action, policies });
    return 'created';
  }
  await handle.update((prev) => ({ ...prev, spec, action, policies: { ...prev.policies, ...policies } }));
  return 'updated';
}

export type ScheduleControl = 'pause' | 'resume' | 'trigger' | 'delete';

/** Pause, resume, trigger or delete the schedule. */
export async function controlSchedule(client: Client, id: string, control: ScheduleControl): Promise<void> {
  const handle = client.schedule.getHandle(id);
  try {
    switch (control) {
      case 'pause': await handle.pause('paused with migrate backup schedule --pause'); break;
      case 'resume': await handle.unpause('resumed with migrate backup schedule --resume'); break;
      case 'trigger': await handle.trigger(ScheduleOverlapPolicy.SKIP); break;
      case 'delete': await handle.delete(); break;
    }
  } catch (err) {
    if (err instanceof ScheduleNotFoundError) throw new BadInput('no such schedule', [{ path: '--schedule', message: `no schedule ${id}`, fix: 'create it first: migrate backup schedule --cron "0 3 * * *"' }]);
    throw err;
  }
}
