/**
 * One shape for every change (a deploy, a batch): it records itself in the project ledger, and once
 * its units are swapped it stays open, pending confirmation, until an operator decides:
 *   `confirm`  — re-check that every changed unit is healthy, then drop the kept `.prev` containers;
 *                refused (the change stays open) while a unit is not healthy;
 *   `rollback` — put every unit back, check that each host runs exactly what it ran before, and
 *                with `restoreData`, restore the backup the change started with.
 * Both are updates on the change's own workflow. Cancelling a pending change rolls it back.
 *
 * Deterministic: activity calls only.
 */
import { ApplicationFailure, CancellationScope, condition, defineUpdate, isCancellation, patched, setHandler, workflowInfo } from '@temporalio/workflow';
import type { UnitSpec } from '../plan/plan.js';
import { rootMessage } from '../common/failure.js';
import type { ChangeRecord, ChangeStatus, UnitChange } from './ledger.js';
import { ledgerActivities, onHost } from './profiles.js';
import type { DataRestore } from './safeguard.js';

export interface RollbackOptions {
  /** After the containers are back, restore the backup the change started with. */
  restoreData?: boolean;
  /** Restore only these backup components (default: all). */
  components?: string[];
}

export interface DecisionResult {
  status: ChangeStatus;
  /** After a rollback: whether every unit runs exactly what it ran before. */
  exact?: boolean;
  /** After a rollback: each unit that differs from before, in words. */
  differences?: string[];
  restore?: DataRestore;
}

/** Keep the change: drop the containers kept for rollback (after a health re-check). */
export const confirmUpdate = defineUpdate<DecisionResult>('confirm');
/** Undo the change exactly; optionally restore its backup too. */
export const rollbackUpdate = defineUpdate<DecisionResult, [RollbackOptions]>('rollback');

/** The change's ledger record, kept current and written on every status change. */
export class LedgerEntry {
  readonly record: ChangeRecord;

  constructor(private readonly project: string, kind: ChangeRecord['kind'], name: string) {
    const info = workflowInfo();
    this.record = { kind, name, workflowId: info.workflowId, runId: info.runId, status: 'running', units: [], startedAt: Date.now(), updatedAt: Date.now() };
  }

  /** The stamp on every container this change creates. */
  get change(): string {
    return `${this.record.workflowId}@${this.record.runId}`;
  }

  async write(patch: Partial<ChangeRecord> = {}): Promise<void> {
    Object.assign(this.record, patch, { updatedAt: Date.now() });
    if (['confirmed', 'rolled-back', 'failed'].includes(this.record.status)) this.record.closedAt ??= Date.now();
    await CancellationScope.nonCancellable(() => ledgerActivities.recordChange(this.project, { ...this.record, units: this.record.units.map((u) => ({ ...u })) }));
  }
}

/** A unit whose probe fails now. */
interface Sick {
  unit: string;
  host: string;
  detail: string;
}

/** Units whose probes fail now (empty: all healthy). */
async function sickUnits(units: UnitSpec[]): Promise<Sick[]> {
  const sick: Sick[] = [];
  if (patched('confirm-probes-by-host')) {
    // One call per host probes all of its units at once (issue #14: a call per unit was a round trip each).
    await Promise.all([...new Set(units.map((u) => u.host))].sort().map(async (host) => {
      const mine = units.filter((u) => u.host === host);
      const results = await onHost(host).gate.probeUnits(mine).catch((err: unknown) => mine.map(() => ({ ok: false, detail: rootMessage(err) })));
      results.forEach((r, i) => { if (!r.ok) sick.push({ unit: mine[i]!.name, host, detail: r.detail ?? 'failing' }); });
    }));
  } else {
    await Promise.all(units.map(async (u) => {
      const r = await onHost(u.host).gate.probeUnit(u).catch((err: unknown) => ({ ok: false, detail: rootMessage(err) }));
      if (!r.ok) sick.push({ unit: u.name, host: u.host, detail: r.detail ?? 'failing' });
    }));
  }
  return sick;
}

/** Sick units, in words. */
const inWords = (sick: Sick[]): string[] => sick.map((s) => `${s.unit} on ${s.host} (${s.detail})`).sort();

/**
 * Start again, by id, the containers this change made for these units (a running one is left
 * alone). An engine restart brings back its `unless-stopped` containers, but not one it was
 * starting as it went down, and it may bring back a kept `.prev` it stopped going down (issue
 * #15): an automatic confirm puts each unit back as the change left it. A routed unit is left to
 * an operator (its proxy would need routing again).
 */
async function startAgain(sick: Sick[], changes: UnitChange[]): Promise<void> {
  const made = sick.flatMap((s) => changes.filter((c) => c.unit === s.unit && c.host === s.host && c.newId && !c.routed && c.action !== 'reused'));
  await Promise.all(made.map((c) => onHost(c.host).gate.startUnitAgain(c.unit, c.newId!).catch(() => undefined)));
}

/** Drop the kept containers of the replaced units (only while each is still the kept one). */
export async function discardKept(changes: UnitChange[]): Promise<void> {
  await CancellationScope.nonCancellable(() => Promise.all(
    changes.filter((c) => c.action === 'replaced' && c.previousId).map((c) => onHost(c.host).undo.discardPrevious(c.unit, c.previousId!)),
  ));
}

export interface PendingOptions {
  /** "release r42", "batch-1": for messages. */
  what: string;
  confirmNow?: boolean;
  /** Confirm by itself after this long pending (ms). */
  confirmAfterMs?: number;
  /** Why `rollback` with these options cannot be done (validator), or undefined. */
  refuseRollback?: (options?: RollbackOptions) => string | undefined;
  /** The units to re-check, and drop the kept containers of. */
  units: () => UnitSpec[];
  changes: () => UnitChange[];
  rollback: (options?: RollbackOptions) => Promise<DecisionResult>;
  /** Called once the updates are accepted, before waiting: show and record "pending confirmation" here (not earlier, or an operator could ask before the change can answer). */
  onPending?: () => Promise<void>;
  /** Told when the change is decided. */
  onDecided?: (result: DecisionResult) => Promise<void>;
  /** Told why an automatic confirm gave up (the change stays open for an operator). */
  onNotConfirmed?: (why: string) => void;
}

/** An automatic confirm re-checks the units this many times, this far apart, before the change stays open for an operator. */
const AUTO_CONFIRM_ATTEMPTS = 20;
const AUTO_CONFIRM_INTERVAL_MS = 3_000;

/**
 * Hold the change open until it is confirmed or rolled back (updates), and return the decision.
 * A confirm whose health re-check fails is refused and the change stays open.
 */
export async function awaitDecision(options: PendingOptions): Promise<DecisionResult> {
  let decided: DecisionResult | undefined;
  let busy = false;
  const pending = () => {
    if (decided) throw new Error(`${options.what} is already ${decided.status}`);
  };
  const serialized = async (fn: () => Promise<DecisionResult>): Promise<DecisionResult> => {
    // A confirm and a rollback delivered together both saw `busy` false: each now waits its turn.
    while (busy) await condition(() => !busy);
    if (decided) return decided;
    busy = true;
    try {
      const result = await CancellationScope.nonCancellable(fn);
      decided = result;
      await options.onDecided?.(result);
      return result;
    } finally {
      busy = false;
    }
  };
  let lastSick: Sick[] = [];
  const confirm = () => serialized(async () => {
    lastSick = await sickUnits(options.units());
    const sick = inWords(lastSick);
    if (sick.length) {
      throw ApplicationFailure.nonRetryable(`${options.what} not confirmed: ${sick.join(', ')} ${sick.length === 1 ? 'is' : 'are'} not healthy now, and confirming would drop the way back. Roll it back (migrate rollback), or fix the unit and confirm again`, 'UnitsUnhealthy');
    }
    await discardKept(options.changes());
    return { status: 'confirmed' };
  });
  const rollback = (o: RollbackOptions) => serialized(() => options.rollback(o));

  setHandler(confirmUpdate, confirm, { validator: pending });
  setHandler(rollbackUpdate, rollback, {
    validator: (o: RollbackOptions) => {
      pending();
      const refusal = options.refuseRollback?.(o);
      if (refusal) throw new Error(refusal);
    },
  });

  await options.onPending?.();
  try {
    if (options.confirmNow) {
      if (patched('auto-confirm-rechecks')) {
        // A unit may be briefly down right after the swap (its host's engine restarting brings its
        // containers back a few seconds later): re-check for a while before leaving it to an operator.
        // A container of the change the engine did not bring back is started again (by its id) before
        // the next look.
        const revives = patched('auto-confirm-starts-again');
        for (let attempt = 1; decided === undefined; attempt++) {
          const refused = await confirm().then(() => undefined, (err: unknown) => rootMessage(err));
          if (refused === undefined) break;
          if (attempt >= AUTO_CONFIRM_ATTEMPTS) {
            if (revives && decided === undefined) options.onNotConfirmed?.(`not confirmed automatically after ${attempt} checks ${AUTO_CONFIRM_INTERVAL_MS / 1000} s apart: ${refused}`);
            break;
          }
          if (revives && lastSick.length) await startAgain(lastSick, options.changes());
          if (await condition(() => decided !== undefined, AUTO_CONFIRM_INTERVAL_MS)) break;
        }
      } else {
        await confirm().catch(() => undefined); // unhealthy: stays open
      }
    }
    else if (options.confirmAfterMs !== undefined) {
      if (!(await condition(() => decided !== undefined, options.confirmAfterMs))) await confirm().catch(() => undefined);
    }
    await condition(() => decided !== undefined && !busy);
  } catch (err) {
    if (!isCancellation(err)) throw err;
    await rollback({}); // cancelling a pending change rolls it back
  }
  return decided!;
}
