/**
 * Host loss (issue 12): `failoverHost` moves the units of a lost host to surviving hosts, following
 * the inventory's policy (src/plan/failover.ts decided where); `failbackHost` moves them back.
 *
 * failoverHost, per unit, as the runbook reads:
 *   1. fence      — write the fence record: the lost host's copy stays stopped if it comes back
 *                   (its worker reads the record before it serves again), and ask its engine to stop it
 *                   now (that host does not answer: best effort, never waited on long)
 *   2. approve    — a stateful unit (a database) waits for an operator's `approveFailover` update
 *   3. fetch      — a stateful unit with a `failover.backup`: the new host's worker copies the lost
 *                   host's latest verified backup of it (or the one approved) into its own store,
 *                   checksums checked (the lost host's store must be reachable: shared or replicated
 *                   `backups.directory` on real machines; one machine's files on isolated hosts)
 *   4. start      — the same unit swap as a deploy (image, GPU gate, container, health wait) on the new host
 *   5. restore    — that backup restored into the unit's new container (the backup target re-pointed
 *                   at the new host), checked against the backup's table counts and checksums
 * A unit that cannot start there is put back as it was (its new container removed, its fence cleared).
 *
 * Visible in the Web UI: MigrateKind=failover, MigrateHosts=[lost, targets…], MigratePhase.
 */
import {
  ApplicationFailure,
  condition,
  defineQuery,
  defineUpdate,
  patched,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { HostActivities } from '../activities/index.js';
import type { ComponentEntry } from '../activities/backup-store.js';
import type { PlaneRef } from '../activities/fence.js';
import type { FailoverMove } from '../plan/failover.js';
import { hostQueue } from '../plan/queues.js';
import { SA } from '../common/search-attributes.js';
import { rootMessage } from '../common/failure.js';
import { onHost } from './profiles.js';
import { swapUnit, undoUnits, type UndoStep } from './unit-swap.js';
import { backupIdOf, check, freezeWrites, take, thawWrites } from './backup.js';
import type { BackupComponent } from '../plan/backups.js';

export interface FailoverInput {
  project: string;
  lostHost: string;
  plane: PlaneRef;
  moves: FailoverMove[];
  /** Units that stay down (no policy, no host takes them), and why: shown, not acted on. */
  stays: { unit: string; reason: string }[];
  /** Why the host is judged lost (the health plane's reason). */
  reason?: string;
}

export type MoveStatus = 'fencing' | 'awaiting-approval' | 'fetching-backup' | 'starting' | 'restoring' | 'moved' | 'failed';

export interface FailoverProgress {
  lostHost: string;
  phase: 'running' | 'done';
  units: { unit: string; to: string; stateful: boolean; status: MoveStatus; error?: string; backupId?: string }[];
  stays: { unit: string; reason: string }[];
}

export interface FailoverApproval {
  unit: string;
  /** Restore this backup rather than the latest verified one. */
  backupId?: string;
}

export const failoverProgressQuery = defineQuery<FailoverProgress>('failoverProgress');
/** An operator lets a stateful unit move (and names the backup, or takes the latest verified one). */
export const approveFailoverUpdate = defineUpdate<{ unit: string; to: string }, [FailoverApproval]>('approveFailover');

/** A lost host's engine: asked once, never waited on for long. */
const onLostHost = (host: string) => proxyActivities<HostActivities>({ taskQueue: hostQueue(host), scheduleToCloseTimeout: '5 seconds', retry: { maximumAttempts: 1 } });

/** Fences are written from a surviving host's worker (it has the plane's connection). */
const fenceOn = (host: string) => proxyActivities<HostActivities>({
  taskQueue: hostQueue(host), startToCloseTimeout: '30 seconds', scheduleToCloseTimeout: '10 minutes',
  retry: { initialInterval: '200 milliseconds', maximumInterval: '5 seconds' },
});

export async function failoverHost(input: FailoverInput): Promise<FailoverProgress> {
  const { workflowId } = workflowInfo();
  const progress: FailoverProgress = {
    lostHost: input.lostHost,
    phase: 'running',
    units: input.moves.map((m) => ({ unit: m.unit, to: m.to, stateful: m.stateful, status: 'fencing' as MoveStatus })),
    stays: input.stays,
  };
  const row = (unit: string) => progress.units.find((u) => u.unit === unit)!;
  const approvals = new Map<string, FailoverApproval>();
  setHandler(failoverProgressQuery, () => progress);
  setHandler(approveFailoverUpdate, (a) => {
    approvals.set(a.unit, a);
    return { unit: a.unit, to: row(a.unit).to };
  }, {
    validator: (a) => {
      const r = progress.units.find((u) => u.unit === a.unit);
      if (!r) throw new Error(`"${a.unit}" is not moved by this failover: it moves ${progress.units.map((u) => u.unit).join(', ') || 'nothing'}`);
      if (!r.stateful) throw new Error(`"${a.unit}" is stateless: it moves without approval`);
      if (r.status !== 'awaiting-approval' && r.status !== 'fencing') throw new Error(`"${a.unit}" is ${r.status}, not waiting for approval`);
    },
  });
  const targets = [...new Set(input.moves.map((m) => m.to))];
  upsertSearchAttributes([{ key: SA.kind, value: 'failover' }, { key: SA.hosts, value: [input.lostHost, ...targets] }, { key: SA.phase, value: 'running' }]);
  const show = () => setCurrentDetails(
    `**${input.lostHost} lost**${input.reason ? ` (${input.reason})` : ''}\n\n${progress.units.map((u) => `- ${u.unit} → ${u.to}: ${u.status}${u.error ? ` (${u.error})` : ''}`).join('\n')}${
      progress.stays.length ? `\n\nstay down:\n${progress.stays.map((s) => `- ${s.unit}: ${s.reason}`).join('\n')}` : ''}`,
  );
  show();

  await Promise.all(input.moves.map(async (move) => {
    const r = row(move.unit);
    const set = (status: MoveStatus, patch: Partial<FailoverProgress['units'][number]> = {}) => { Object.assign(r, { status, ...patch }); show(); };
    // 1. Fence first: from here on, the lost host's copy never serves again unless failed back.
    await fenceOn(move.to).writeFence(input.plane, { unit: move.unit, from: move.from, to: move.to, workflowId, at: Date.now(), spec: move.spec, home: move.home });
    void onLostHost(move.from).stopContainer(`${input.project}_${move.from}_${move.unit}`, 0).catch(() => undefined);
    // 2. A stateful unit moves only when an operator says so.
    if (move.stateful) {
      set('awaiting-approval');
      await condition(() => approvals.has(move.unit));
    }
    const undo: UndoStep[] = [];
    try {
      // 3. A stateful unit's backup, brought from the lost host's store into the new host's.
      const restore = move.stateful ? move.restore : undefined;
      let adopted: { backupId: string; entry: ComponentEntry } | undefined;
      if (restore) {
        set('fetching-backup');
        adopted = await onHost(move.to).backup.adoptFailoverBackup(restore.directory, move.from, restore.component.name, approvals.get(move.unit)?.backupId);
        set('fetching-backup', { backupId: adopted.backupId });
      }
      // 4. Start it on the new host, behind the same health gate as a deploy.
      set('starting');
      await swapUnit(move.spec, { project: input.project, stamp: { release: `failover-${input.lostHost}`, change: workflowId }, undo });
      // 5. The backup restored into the new container, checked against what the backup recorded.
      if (restore && adopted) {
        set('restoring');
        // A failback's freeze left in a volume this copy reuses is lifted (patched: older failovers restore as they did).
        const req = { directory: restore.directory, backupId: adopted.backupId, component: restore.component, entry: adopted.entry, ...(patched('failover-lift-freeze') ? { liftFreeze: true } : {}) };
        const acts = onHost(move.to).backup;
        const kind = restore.component.kind;
        const checked = await (kind === 'postgres' ? acts.restorePostgres(req) : kind === 'redis' ? acts.restoreRedis(req) : acts.restoreInflux(req));
        if (!checked.ok) throw ApplicationFailure.nonRetryable(`restore of ${adopted.backupId} into ${move.unit} on ${move.to}: ${checked.detail}`, 'RestoreFailed');
      }
      set('moved');
      await fenceOn(move.to).countFailover(move.from, move.to, move.unit, 'moved');
    } catch (err) {
      set('failed', { error: rootMessage(err) });
      await undoUnits(undo, [[move.unit]]);
      await fenceOn(move.to).clearFence(input.plane, move.from, move.unit);
      await fenceOn(move.to).countFailover(move.from, move.to, move.unit, 'failed');
    }
  }));
  progress.phase = 'done';
  const failed = progress.units.filter((u) => u.status === 'failed');
  upsertSearchAttributes([{ key: SA.phase, value: failed.length ? 'partly-failed' : 'moved' }]);
  show();
  return progress;
}

export interface FailbackInput {
  project: string;
  /** The host the units come back to. */
  host: string;
  plane: PlaneRef;
  /** Each unit as failoverHost moved it (its spec on the host it runs on now, and at home). */
  moves: FailoverMove[];
  /** How long the returning worker may take to see a cleared fence (its fence refresh). */
  fenceRefreshMs: number;
  /** How long one Redis write pause lasts (renewed every third of it while held); default FREEZE_HOLD_MS. */
  freezeHoldMs?: number;
}

export interface FailbackResult {
  host: string;
  units: {
    unit: string; from: string; status: 'back' | 'failed'; error?: string;
    /** A stateful unit: whether its writes were frozen for the move (and, if not, why). */
    writes?: string;
  }[];
}

/** A Redis write pause lasts this long unless renewed (renewed every third of it while a failback holds it). */
export const FREEZE_HOLD_MS = 30_000;

/**
 * Freeze writes on `c` and hold the freeze until release(). A PostgreSQL freeze holds by itself; a
 * Redis pause runs out after holdMs, so it is renewed every third of that, and `check()`
 * (before the moved copy stops) renews it once more and says whether the pauses ever left a gap:
 * each pause lasts at least from its call's scheduling plus holdMs, and the next one must
 * have answered before that (a workflow worker away for longer, or a renewal that failed, is a gap:
 * writes may have landed after the backup).
 */
async function holdFreeze(c: BackupComponent, holdMs: number): Promise<{ release(): void; check(): Promise<string | undefined> }> {
  let held = true;
  let gap: string | undefined;
  let coveredUntil = 0;
  const pause = async () => {
    const at = Date.now();
    try {
      await freezeWrites(c, holdMs);
    } catch (err) {
      gap ??= `renewing it failed: ${rootMessage(err)}`;
      return;
    }
    if (Date.now() > coveredUntil) gap ??= `it ran out at ${new Date(coveredUntil).toISOString()} before it was renewed`;
    coveredUntil = at + holdMs;
  };
  const first = Date.now();
  await freezeWrites(c, holdMs); // fails the failback (undone) if writes cannot be frozen
  coveredUntil = first + holdMs;
  if (c.kind === 'redis') {
    void (async () => {
      while (held && !gap) {
        if (await condition(() => !held, Math.round(holdMs / 3))) return;
        await pause();
      }
    })();
  }
  return {
    release: () => { held = false; },
    check: async () => {
      if (c.kind === 'redis') await pause();
      return gap;
    },
  };
}

/**
 * Move failed-over units back to `host`, exactly: for each, stop the copy where it runs now (a
 * singleton never runs twice, so there is a short gap), clear the fence, start the home copy (the
 * same container, kept stopped by the fence) and wait until it is healthy, then remove the other copy.
 * A stateful unit brings its data back: before anything stops, a backup of the moved copy is taken on
 * the host it runs on (its backup target re-pointed there, as failover did) and verified, then adopted
 * into the home host's store; once the home copy is healthy, that backup is restored into it and
 * checked against the backup's table counts and checksums; only then is the moved copy removed.
 * Whatever fails, the moved copy keeps serving (started again if it was stopped) and its fence stays:
 * the only up-to-date copy of the data is never given up.
 *
 * The write freeze (patched 'failback-freeze'): before that backup, writes to the moved copy are
 * frozen (PostgreSQL read-only with its sessions ended, Redis's writes paused and the pause renewed),
 * so no write lands between the backup and the stop; a client sees its write refused (or, Redis,
 * never answered), never silently dropped. InfluxDB 1.x has no freeze: it moves as before, its
 * writers to be stopped by hand. The freeze's undo (lift it) is logged before it, and runs once the
 * moved copy is started again when the failback fails.
 */
export async function failbackHost(input: FailbackInput): Promise<FailbackResult> {
  const { workflowId, runId } = workflowInfo();
  upsertSearchAttributes([{ key: SA.kind, value: 'failback' }, { key: SA.hosts, value: [input.host, ...new Set(input.moves.map((m) => m.to))] }, { key: SA.phase, value: 'running' }]);
  const result: FailbackResult = { host: input.host, units: [] };
  const freezes = patched('failback-freeze');
  for (const move of input.moves) {
    const away = onHost(move.to);
    const awayName = `${input.project}_${move.to}_${move.unit}`;
    /** Undo steps beyond putting the moved copy back: logged before the step they undo, run after it is started again. */
    const undo: UndoStep[] = [];
    let freeze: Awaited<ReturnType<typeof holdFreeze>> | undefined;
    let writes: string | undefined;
    try {
      // A stateful unit: its writes made while away, backed up there, verified, brought to the home store.
      let carried: { backupId: string; entry: ComponentEntry } | undefined;
      if (move.stateful) {
        if (!move.restore || !move.back) {
          throw ApplicationFailure.nonRetryable(`${move.unit} holds data and no backup target carries it back (${move.backup ? `backup "${move.backup}" does not plan on ${move.to} and ${move.from}` : 'its failover policy names no `backup`'}): it keeps running on ${move.to}`, 'NoBackupTarget');
        }
        const { component, directory } = move.restore;
        if (freezes) {
          // No write lands between the backup and the stop: frozen first (its undo logged before).
          if (component.kind === 'influxdb') {
            writes = 'not frozen: InfluxDB 1.x has no write freeze (stop its writers for the move)';
          } else {
            undo.push({ unit: move.unit, what: `lift the write freeze on ${awayName}`, run: () => thawWrites(component) });
            freeze = await holdFreeze(component, input.freezeHoldMs ?? FREEZE_HOLD_MS);
            writes = 'frozen';
          }
        }
        const id = backupIdOf(`failback-${input.host}-${move.unit}-${runId}`);
        const entry = await take(directory, id, component);
        await away.backup.recordBackup(directory, id, new Date().toISOString(), [entry]);
        const verified = await check(directory, id, component, entry);
        const summary = await away.backup.markBackup(directory, id, [verified]);
        if (summary.status !== 'verified') throw ApplicationFailure.nonRetryable(`the backup ${id} of ${move.unit} on ${move.to} did not verify: ${verified.detail}`, 'BackupNotVerified');
        carried = await onHost(move.from).backup.adoptFailoverBackup(move.back.directory, move.to, component.name, id);
      }
      // The freeze held from before the backup until now (and, renewed, through the stop).
      const gap = await freeze?.check();
      if (gap) throw ApplicationFailure.nonRetryable(`the write freeze on ${awayName} lapsed (${gap}): writes may have landed after the backup`, 'FreezeLapsed');
      await away.docker.stopContainer(awayName, 10);
      freeze?.release();
      await fenceOn(move.to).clearFence(input.plane, move.from, move.unit);
      await sleep(input.fenceRefreshMs); // the home worker's last read of the fence is older than the clear
      await swapUnit(move.home, { project: input.project, stamp: { release: `failback-${input.host}`, change: workflowId }, undo: [] });
      if (carried && move.back) {
        const req = { directory: move.back.directory, backupId: carried.backupId, component: move.back.component, entry: carried.entry };
        const acts = onHost(move.from).backup;
        const kind = move.back.component.kind;
        const checked = await (kind === 'postgres' ? acts.restorePostgres(req) : kind === 'redis' ? acts.restoreRedis(req) : acts.restoreInflux(req));
        if (!checked.ok) throw ApplicationFailure.nonRetryable(`restore of ${carried.backupId} into ${move.unit} on ${move.from}: ${checked.detail}`, 'RestoreFailed');
      }
      await away.docker.removeContainer(awayName);
      await fenceOn(move.to).countFailover(move.to, move.from, move.unit, 'failed-back');
      result.units.push({ unit: move.unit, from: move.to, status: 'back', ...(writes ? { writes } : {}) });
    } catch (err) {
      // The home copy did not come up (or its data did not come back): the unit keeps running where it was moved.
      freeze?.release();
      await onHost(move.from).undo.stopContainer(`${input.project}_${move.from}_${move.unit}`, 0).catch(() => undefined);
      await fenceOn(move.to).writeFence(input.plane, { unit: move.unit, from: move.from, to: move.to, workflowId, at: Date.now(), spec: move.spec, home: move.home });
      await away.undo.ensureContainer(move.spec, { release: `failback-${input.host}`, change: workflowId }).catch(() => undefined);
      // Then the freeze lifted: the moved copy serves as before (a failure here is said, not hidden).
      const undone: string[] = [];
      for (const step of [...undo].reverse()) {
        await step.run().catch((e: unknown) => { undone.push(`${step.what} failed: ${rootMessage(e)}`); });
      }
      const error = [rootMessage(err), ...undone].join('; ');
      result.units.push({ unit: move.unit, from: move.to, status: 'failed', error, ...(writes ? { writes: writes !== 'frozen' ? writes : undone.length ? 'still frozen' : 'frozen, then lifted' } : {}) });
    }
  }
  const failed = result.units.some((u) => u.status === 'failed');
  upsertSearchAttributes([{ key: SA.phase, value: failed ? 'partly-failed' : 'back' }]);
  if (failed && result.units.every((u) => u.status === 'failed')) {
    throw ApplicationFailure.nonRetryable(`failback to ${input.host} failed: ${result.units.map((u) => `${u.unit}: ${u.error}`).join('; ')}`, 'FailbackFailed');
  }
  return result;
}
