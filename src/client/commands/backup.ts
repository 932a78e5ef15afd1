/**
 * `migrate backup now|list|verify|schedule`: take, list and verify backups, and keep them coming on
 * a Temporal Schedule. The workflows run on the workers; this only starts them and prints results.
 */
import type { Command } from 'commander';
import { ScheduleNotFoundError, ScheduleOverlapPolicy, type Client } from '@temporalio/client';
import { z } from 'zod';
import { ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import type { BackupPlan } from '../../plan/backups.js';
import { parseDuration } from '../../inventory/schema.js';
import type { BackupResult } from '../../workflows/backup.js';
import { action, collect, commonOptions, connectClient, loadPlan, parseOptions, printJson, UsageError } from '../common.js';

async function backupPlan(inventory: string[]): Promise<{ project: string; backups: BackupPlan }> {
  const { plan } = await loadPlan(inventory);
  if (!plan.backups || plan.backups.components.length === 0) {
    throw new UsageError('nothing to back up', [{ path: 'backups', message: 'the inventory declares no backups', fix: 'add a `backups:` section (postgres, redis, influxdb) to the inventory' }]);
  }
  return { project: plan.project, backups: plan.backups };
}

function formatResult(r: { id: string; status: string; hosts: BackupResult['hosts'] }): string {
  const lines = [`backup ${r.id}: ${r.status}`];
  for (const h of r.hosts) {
    for (const c of h.components) lines.push(`  ${h.host.padEnd(10)} ${c.name.padEnd(16)} ${c.kind.padEnd(9)} ${(c.bytes / 1e6).toFixed(2)} MB${c.tables !== undefined ? `, ${c.tables} tables` : ''}`);
    for (const p of h.problems) lines.push(`  ✗ ${h.host}: ${p}`);
  }
  return lines.join('\n');
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
    workflowType: 'backupDatabases',
    taskQueue: ORCHESTRATOR_QUEUE,
    // Each run's id gets the scheduled time appended: backup-scheduled-2025-01-01T03:00:00Z.
    workflowId: 'backup-scheduled',
    args: [opts.input],
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

const scheduleOptions = commonOptions.extend({
  cron: z.string().min(1).optional(),
  every: z.string().refine((v) => parseDuration(v) !== undefined, { message: 'must be a duration like "30s", "15m" or "6h"' }).optional(),
  catchupWindow: z.string().refine((v) => parseDuration(v) !== undefined, { message: 'must be a duration like "10m" or "2h": how late a missed run may still start' }).optional(),
  pause: z.boolean().default(false),
  resume: z.boolean().default(false),
  trigger: z.boolean().default(false),
  delete: z.boolean().default(false),
}).refine((o) => [o.cron !== undefined || o.every !== undefined, o.pause, o.resume, o.trigger, o.delete].filter(Boolean).length === 1 && !(o.cron && o.every), {
  message: 'give exactly one of --cron "EXPR" / --every DURATION, --pause, --resume, --trigger or --delete',
  path: ['cron'],
});

export function registerBackup(program: Command): void {
  const backup = program.command('backup').description('take, list, verify and schedule backups of the databases (PostgreSQL, Redis, InfluxDB)');
  const common = (cmd: Command) => cmd
    .option('-i, --inventory <file>', 'inventory file (repeatable)', collect)
    .option('--address <host:port>', 'Temporal frontend address')
    .option('--namespace <ns>', 'Temporal namespace')
    .option('--json', 'machine-readable output');

  common(backup.command('now').description('back up every database now, verify the backup, apply retention'))
    .option('--reason <word>', 'names the backup: backup-<reason> (default: backup-<timestamp>)')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(commonOptions.extend({ reason: z.string().regex(/^[A-Za-z0-9_.-]{1,80}$/, { message: 'letters, digits, "_", "." and "-"' }).optional() }), raw);
      const { backups } = await backupPlan(opts.inventory);
      const { client, close } = await connectClient(opts);
      try {
        const workflowId = `backup-${opts.reason ?? new Date().toISOString().replace(/[:.]/g, '-')}`;
        const result: BackupResult = await client.workflow.execute('backupDatabases', { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args: [{ backups }] });
        if (opts.json) printJson(result);
        else process.stdout.write(`${formatResult(result)}\n`);
        return result.status === 'verified' ? 0 : 1;
      } finally {
        await close();
      }
    }));

  common(backup.command('list').description('list backup runs (from Temporal\'s visibility: MigrateKind=backup)'))
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(commonOptions, raw);
      const { client, close } = await connectClient(opts);
      try {
        const rows: { workflowId: string; type: string; status: string; startTime: string }[] = [];
        for await (const wf of client.workflow.list({ query: `MigrateKind = 'backup'` })) {
          rows.push({ workflowId: wf.workflowId, type: wf.type, status: wf.status.name, startTime: wf.startTime.toISOString() });
        }
        if (opts.json) printJson(rows);
        else process.stdout.write(rows.length ? `${rows.map((r) => `${r.startTime}  ${r.status.padEnd(10)} ${r.type.padEnd(16)} ${r.workflowId}`).join('\n')}\n` : 'no backups yet\n');
      } finally {
        await close();
      }
    }));

  common(backup.command('verify').argument('<id>', 'backup id').description('prove a backup restorable again (scratch restore, compare); marks it verified or failed'))
    .action(action(async (id: string, raw: unknown) => {
      const opts = parseOptions(commonOptions, raw);
      const { backups } = await backupPlan(opts.inventory);
      const { client, close } = await connectClient(opts);
      try {
        const result = await client.workflow.execute('verifyBackup', { taskQueue: ORCHESTRATOR_QUEUE, workflowId: `verify-${id}`, args: [{ id, backups }] });
        if (opts.json) printJson(result);
        else process.stdout.write(`${formatResult(result)}\n`);
        return result.status === 'verified' ? 0 : 1;
      } finally {
        await close();
      }
    }));

  common(backup.command('schedule').description('create or update the backup schedule (overlap: skip), or pause/resume/trigger/delete it'))
    .option('--cron <expr>', 'cron expression, e.g. "0 3 * * *"')
    .option('--every <duration>', 'interval instead of cron, e.g. 6h')
    .option('--catchup-window <duration>', 'a run missed while the server was down still starts if this late (default 10m)')
    .option('--pause', 'pause the schedule')
    .option('--resume', 'resume the schedule')
    .option('--trigger', 'start one backup now, through the schedule')
    .option('--delete', 'delete the schedule (backups are kept)')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(scheduleOptions, raw);
      const { project, backups } = await backupPlan(opts.inventory);
      const scheduleId = `backup-${project}`;
      const { client, close } = await connectClient(opts);
      try {
        const handle = client.schedule.getHandle(scheduleId);
        let outcome: string;
        if (opts.pause) { await handle.pause('paused with migrate backup schedule --pause'); outcome = 'paused'; }
        else if (opts.resume) { await handle.unpause('resumed with migrate backup schedule --resume'); outcome = 'resumed'; }
        else if (opts.trigger) { await handle.trigger(ScheduleOverlapPolicy.SKIP); outcome = 'triggered'; }
        else if (opts.delete) { await handle.delete(); outcome = 'deleted'; }
        else outcome = await upsertBackupSchedule(client, { scheduleId, cron: opts.cron, every: opts.every, catchupWindow: opts.catchupWindow, input: { backups } });
        if (opts.json) printJson({ ok: true, scheduleId, outcome });
        else process.stdout.write(`schedule ${scheduleId}: ${outcome}\n`);
      } catch (err) {
        if (err instanceof ScheduleNotFoundError) throw new UsageError('no such schedule', [{ path: '--schedule', message: `no schedule ${scheduleId}`, fix: 'create it first: migrate backup schedule --cron "0 3 * * *"' }]);
        throw err;
      } finally {
        await close();
      }
    }));
}
