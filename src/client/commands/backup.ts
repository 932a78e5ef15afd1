/**
 * `migrate backup now|list|verify|schedule`: take, list and verify backups, and keep them coming on
 * a Temporal Schedule. The workflows run on the workers; src/ops starts them, this prints.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import type { BackupPlan } from '../../plan/backups.js';
import { parseDuration } from '../../inventory/schema.js';
import { BadInput, backupNow, controlSchedule, listBackups, scheduleId, upsertBackupSchedule, verifyBackupNow, type BackupResult } from '../../ops/index.js';
import { action, backupId, commonOptions, inventoryOption, loadPlan, parseArgument, parseOptions, printJson, temporalOptions, withClient } from '../common.js';

async function backupPlan(inventory: string[]): Promise<{ project: string; backups: BackupPlan }> {
  const { plan } = await loadPlan(inventory);
  if (!plan.backups || plan.backups.components.length === 0) {
    throw new BadInput('nothing to back up', [{ path: 'backups', message: 'the inventory declares no backups', fix: 'add a `backups:` section (postgres, redis, influxdb) to the inventory' }]);
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

/** A duration flag: a number and a unit (ms, s, m, h; combined like 1h30m), at least `minMs`; handed on in milliseconds. */
const duration = (what: string, minMs: number, least: string) => z.string()
  .refine((v) => parseDuration(v) !== undefined, { message: `must be a duration like ${what}` })
  .refine((v) => (parseDuration(v) ?? 0) >= minMs, { message: `must be at least ${least}, e.g. ${what}` })
  .transform((v) => `${parseDuration(v)!}ms`);

/**
 * What Temporal accepts as a schedule's cron string: an optional `CRON_TZ=`/`TZ=` zone, then 5 to 7
 * fields (minute hour day-of-month month day-of-week [year]; or second first with 7), or a shorthand
 * (@daily, @hourly, @every 6h…), then an optional `# comment`.
 */
const CRON_FIELD = /^[0-9A-Za-z*?,/#-]+$/;
export function cronProblem(expr: string): string | undefined {
  const s = expr.replace(/#\s.*$/, '').trim().replace(/^(CRON_TZ|TZ)=\S+\s+/, '');
  if (/^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$/.test(s)) return undefined;
  if (/^@every\s+\d+[smhd](\/\d+[smhd])?$/.test(s)) return undefined;
  if (s.startsWith('@')) return 'unknown shorthand: use @yearly, @monthly, @weekly, @daily, @hourly or @every 6h';
  const fields = s.split(/\s+/).filter(Boolean);
  if (fields.length < 5 || fields.length > 7) return `has ${fields.length} field(s): give 5 (minute hour day-of-month month day-of-week), e.g. "0 3 * * *"`;
  const bad = fields.find((f) => !CRON_FIELD.test(f));
  return bad ? `field "${bad}" is not a cron field (digits, names, *, ?, ",", "-", "/")` : undefined;
}

const scheduleOptions = commonOptions.extend({
  cron: z.string().superRefine((v, ctx) => {
    const problem = cronProblem(v);
    if (problem) ctx.addIssue({ code: 'custom', message: problem });
  }).optional(),
  every: duration('"30s", "15m" or "6h"', 1000, '1s (Temporal\'s smallest interval)').optional(),
  catchupWindow: duration('"10m" or "2h": how late a missed run may still start', 10_000, '10s (Temporal\'s smallest catch-up window)').optional(),
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
  const sub = (name: string, description: string) => temporalOptions(inventoryOption(backup.command(name).description(description)));

  sub('now', 'back up every database now, verify the backup, apply retention')
    .option('--reason <word>', 'names the backup: backup-<reason> (default: backup-<timestamp>)')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(commonOptions.extend({ reason: z.string().regex(/^[A-Za-z0-9_.-]{1,80}$/, { message: 'letters, digits, "_", "." and "-"' }).optional() }), raw);
      const { backups } = await backupPlan(opts.inventory);
      const result = await withClient(opts, (client) => backupNow(client, backups, opts.reason));
      if (opts.json) printJson(result);
      else process.stdout.write(`${formatResult(result)}\n`);
      return result.status === 'verified' ? 0 : 1;
    }));

  sub('list', 'list backup runs (from Temporal\'s visibility: MigrateKind=backup)')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(commonOptions, raw);
      await loadPlan(opts.inventory); // -i names the project: a missing or invalid file is bad input here too
      const rows = await withClient(opts, listBackups);
      if (opts.json) printJson(rows);
      else process.stdout.write(rows.length ? `${rows.map((r) => `${r.startTime}  ${r.status.padEnd(10)} ${r.type.padEnd(16)} ${r.workflowId}`).join('\n')}\n` : 'no backups yet\n');
    }));

  sub('verify', 'prove a backup restorable again (scratch restore, compare); marks it verified or failed')
    .argument('<id>', 'backup id')
    .action(action(async (id: string, raw: unknown) => {
      const opts = { ...parseOptions(commonOptions, raw), id: parseArgument(backupId, id, '<id>') };
      const { backups } = await backupPlan(opts.inventory);
      const result = await withClient(opts, (client) => verifyBackupNow(client, backups, opts.id));
      if (opts.json) printJson(result);
      else process.stdout.write(`${formatResult(result)}\n`);
      return result.status === 'verified' ? 0 : 1;
    }));

  sub('schedule', 'create or update the backup schedule (overlap: skip), or pause/resume/trigger/delete it')
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
      const id = scheduleId(project);
      const control = opts.pause ? 'pause' : opts.resume ? 'resume' : opts.trigger ? 'trigger' : opts.delete ? 'delete' : undefined;
      const outcome = await withClient(opts, async (client) => {
        if (!control) return upsertBackupSchedule(client, { scheduleId: id, cron: opts.cron, every: opts.every, catchupWindow: opts.catchupWindow, input: { backups } });
        await controlSchedule(client, id, control);
        return ({ pause: 'paused', resume: 'resumed', trigger: 'triggered', delete: 'deleted' } as const)[control];
      });
      if (opts.json) printJson({ ok: true, scheduleId: id, outcome });
      else process.stdout.write(`schedule ${id}: ${outcome}\n`);
    }));
}
