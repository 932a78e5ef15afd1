/**
 * Health-gated deploy of the stack, in dependency order, with exact rollback.
 *
 * The runbook, as `deployStack` runs it:
 *   1. lock      — one deploy per project at a time (a child workflow `deploy-lock-<project>`
 *                  lives exactly as long as this deploy: the server refuses a second one).
 *   2. refuse    — a unit that still keeps a container from another unconfirmed change is not
 *                  touched: the deploy is refused before anything moves, with the fix.
 *   3. backup    — take a backup of the inventory's databases and prove it restorable (the
 *                  `backupDatabases` child); one that does not verify refuses the deploy. Skipped
 *                  only with an operator's reason, recorded in the input and the progress.
 *                  Meanwhile the images of the units that change are made sure of (one call per
 *                  host); an image a host cannot have refuses the deploy too, before anything stops.
 *   4. baseline  — what every unit runs now (container ids), for the exactness check.
 *   5. deploy    — each service is swapped (unit-swap.ts) as soon as its dependencies allow, on its
 *                  own host's worker, at most `concurrency` at once. A running container of the
 *                  same spec is reused (phase `unchanged`). `depends_on` conditions, as compose:
 *                  `service_healthy` waits for the dependency's health wait, `service_started` only
 *                  for its container to be started, `service_completed_successfully` for a one-shot
 *                  job (UnitSpec.job: never probed) to exit 0 — its non-zero exit fails the deploy.
 *   6. on failure: undo in reverse dependency order, never cancelled, then compare every unit with
 *                  step 4. Data is not touched.
 *   7. on success: pending confirmation (change.ts) — `confirm` re-checks health and drops the
 *                  `.prev` containers; `rollback` is step 6, then, with `restoreData`, the backup.
 * Every status change is written to the project ledger.
 *
 * Deterministic: no I/O here; activity types only.
 */
import {
  ApplicationFailure,
  CancellationScope,
  type ChildWorkflowHandle,
  condition,
  defineQuery,
  defineSignal,
  isCancellation,
  patched,
  setHandler,
  setCurrentDetails,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  allHandlersFinished,
} from '@temporalio/workflow';
import type { UnitSpec } from '../plan/plan.js';
import { topologicalWaves } from '../plan/graph.js';
import { SA } from '../common/search-attributes.js';
import { rootMessage } from '../common/failure.js';
import { backupFirst, restoreAfterRollback, restoreRefusal, type BackupGuard, type BackupOutcome, type DataRestore } from './safeguard.js';
import { awaitDecision, LedgerEntry, type DecisionResult, type RollbackOptions } from './change.js';
import { differences, keptRefusals, readUnits, runsSpec, stateOf, swapUnit, undoUnits, type UndoStep, type UnitsState } from './unit-swap.js';
import { onHost } from './profiles.js';
import type { UnitContainers } from '../activities/docker.js';
import type { UnitChange } from './ledger.js';

export type { DecisionResult, RollbackOptions } from './change.js';

// ------------------------------------------------------------------------------------------------
// Contract

export interface DeployInput {
  release: string;
  project: string;
  /** The units to deploy (the plan's services). Dependencies outside this set are ignored. */
  units: UnitSpec[];
  /** Services started at once, across hosts (default 8). */
  concurrency?: number;
  /** Confirm as soon as everything is healthy (drops the `.prev` containers at once). */
  autoConfirm?: boolean;
  /** Confirm by itself after this long pending (ms); default: wait for an operator. */
  confirmAfterMs?: number;
  /** Back up the databases first (and refuse if that backup does not verify), or skip it for a reason. */
  backup?: BackupGuard;
}

export type UnitPhase = 'waiting' | 'starting' | 'healthy' | 'completed' | 'unchanged' | 'failed' | 'skipped' | 'rolled-back';
export type DeployPhase = 'backing-up' | 'deploying' | 'rolling-back' | 'pending-confirmation' | 'confirming' | 'confirmed' | 'rolled-back' | 'failed';

export interface UnitProgress {
  host: string;
  phase: UnitPhase;
  /** Workflow time (ms since epoch) of the last phase change. */
  since: number;
  /** What the deploy did to the container: new, replaced, reused or restarted. */
  action?: 'new' | 'replaced' | 'reused' | 'restarted';
  containerId?: string;
  /** Wall-clock time its host's probe first passed (ms since epoch); a one-shot job: when it exited 0. */
  healthyAt?: number;
  /** A one-shot job: its exit code. */
  exitCode?: number;
  error?: string;
}

export interface DeployProgress {
  release: string;
  project: string;
  phase: DeployPhase;
  startedAt: number;
  updatedAt: number;
  units: Record<string, UnitProgress>;
  error?: string;
  /** After a rollback: whether every unit runs exactly what it ran before the deploy. */
  exact?: boolean;
  /** After a rollback: each unit that differs from before, in words. */
  differences?: string[];
  /** The backup the deploy started with (or why there is none). */
  backup?: BackupOutcome;
  /** After `rollback` with `restoreData`: the data restore. */
  restore?: DataRestore;
  /** Why an automatic confirm (`--confirm`) gave up: the release waits for an operator. */
  notConfirmed?: string;
}

export const progressQuery = defineQuery<DeployProgress>('progress');
/** The lock child is told to let go (it also ends when its parent closes). */
export const releaseLockSignal = defineSignal('release');

export function deployWorkflowId(release: string): string {
  return `deploy-${release}`;
}
export function deployLockId(project: string): string {
  return `deploy-lock-${project}`;
}

// ------------------------------------------------------------------------------------------------
// The lock

/** Held by a deploy for its whole life (parent-close policy TERMINATE ends it with its parent). */
export async function deployLock(holder: string): Promise<string> {
  let released = false;
  setHandler(releaseLockSignal, () => { released = true; });
  await condition(() => released);
  return holder;
}

// ------------------------------------------------------------------------------------------------
// The deploy

/** Make sure of the units' images, one call per host: each unit whose image cannot be had (key `host/unit`), in words. */
function imageProblems(units: UnitSpec[]): Promise<{ key: string; problem: string }[]> {
  return Promise.all([...new Set(units.map((u) => u.host))].sort().map((h) => {
    const mine = units.filter((u) => u.host === h);
    return onHost(h).image.ensureImages(mine).then(
      (results) => results.flatMap((r) => (r.problem ? [{ key: `${h}/${r.unit}`, problem: r.problem }] : [])),
      (err: unknown) => mine.map((u) => ({ key: `${h}/${u.name}`, problem: `${u.name} on ${h}: ${rootMessage(err)}` })),
    );
  })).then((found) => found.flat());
}

export async function deployStack(input: DeployInput): Promise<DeployProgress> {
  const { release, project } = input;
  const units = new Map(input.units.map((u) => [u.name, u]));
  const names = [...units.keys()].sort();
  const hosts = [...new Set(input.units.map((u) => u.host))].sort();
  const deps = new Map(names.map((n) => [n, Object.keys(units.get(n)!.dependsOn).filter((d) => units.has(d)).sort()]));
  const limit = Math.max(1, input.concurrency ?? 8);
  const ledger = new LedgerEntry(project, 'deploy', release);

  const now = () => Date.now(); // workflow time: deterministic
  const progress: DeployProgress = {
    release,
    project,
    phase: 'deploying',
    startedAt: now(),
    updatedAt: now(),
    units: Object.fromEntries(names.map((n) => [n, { host: units.get(n)!.host, phase: 'waiting' as UnitPhase, since: now() }])),
  };
  const setUnit = (name: string, patch: Partial<UnitProgress>) => {
    progress.units[name] = { ...progress.units[name]!, ...patch, since: patch.phase ? now() : progress.units[name]!.since };
    progress.updatedAt = now();
    showDetails();
  };
  const setPhase = (phase: DeployPhase) => {
    progress.phase = phase;
    progress.updatedAt = now();
    upsertSearchAttributes([{ key: SA.phase, value: phase }]);
    showDetails();
  };
  function showDetails() {
    const count = (p: UnitPhase) => Object.values(progress.units).filter((u) => u.phase === p).length;
    setCurrentDetails(
      `**${progress.phase}** — release ${release} of ${project}: ${count('healthy')} healthy, ${count('completed') ? `${count('completed')} jobs completed, ` : ''}${count('unchanged')} unchanged, ` +
        `${count('starting')} starting, ${count('waiting')} waiting, ${count('failed')} failed, ${count('rolled-back')} rolled back` +
        (progress.error ? `\n\nerror: ${progress.error}` : ''),
    );
  }

  setHandler(progressQuery, () => progress);
  upsertSearchAttributes([
    { key: SA.kind, value: 'deploy' },
    { key: SA.release, value: release },
    { key: SA.hosts, value: hosts },
    { key: SA.phase, value: 'deploying' },
  ]);
  showDetails();
  // Issue #14: the ledger record, the lock and one read of every unit go out at once; the images are
  // made sure of while the backup runs; each swap then starts from what was read (no unit asks its
  // host again, and a missing image refuses the deploy before anything stops).
  const readsOnce = patched('deploy-reads-once');
  if (!readsOnce) await ledger.write();

  const fail = async (message: string, type: string, details?: unknown): Promise<never> => {
    progress.error = message;
    setPhase('failed');
    await ledger.write({ status: 'failed', reason: message, backup: progress.backup });
    throw ApplicationFailure.nonRetryable(message, type, details);
  };

  // 1. Lock: one deploy per project. The server refuses a second child with this id while one runs.
  const takeLock = () => startChild(deployLock, { workflowId: deployLockId(project), args: [workflowInfo().workflowId] });
  const lockedOut = (err: unknown) => fail(`another deploy of project ${project} is running or waiting for confirmation (it holds ${deployLockId(project)}): wait for it, or confirm or roll it back first`, 'DeployLocked', String(err));
  let lock: ChildWorkflowHandle<typeof deployLock>;
  let state: Record<string, UnitContainers>;
  const backingUp = input.backup !== undefined && 'take' in input.backup;
  // With no backup to wait for, the images that are only looked up (no build, or one only when the
  // host lacks the image) are made sure of beside the lock and the read too (issue #14: a step less
  // before the first container). A unit found running its spec already just had its image looked at.
  const imagesAtOnce = readsOnce && !backingUp && patched('deploy-images-at-once');
  const lookedUp = imagesAtOnce ? input.units.filter((u) => !u.build || u.build.ifMissing) : [];
  const early = imageProblems(lookedUp);
  if (readsOnce) {
    // No backup to take: its outcome (none, or skipped for a reason) is known at once, and recorded first.
    if (!backingUp) progress.backup = await backupFirst(input.backup, `deploy ${release}`);
    // Read beside the lock: once the lock is taken, the deploy that held it has finished its changes.
    const [, locked, read] = await Promise.allSettled([ledger.write({ backup: progress.backup }), takeLock(), readUnits(input.units), early]);
    if (locked.status === 'rejected') return lockedOut(locked.reason);
    lock = locked.value;
    if (read.status === 'rejected') throw read.reason;
    state = read.value;
  } else {
    try {
      lock = await takeLock();
    } catch (err) {
      return lockedOut(err);
    }
  }
  // Let go of the lock and wait until it is free (the parent-close policy would also end it).
  const releaseLock = () => CancellationScope.nonCancellable(async () => {
    await lock.signal(releaseLockSignal);
    await lock.result();
  });

  // 2. Refuse to touch a unit that keeps another change's unconfirmed container.
  if (!readsOnce) state = await readUnits(input.units);
  const kept = keptRefusals(state!, ledger.change);
  if (kept.length) {
    await releaseLock();
    await fail(`deploy ${release} refused before any change: ${kept.join('; ')}`, 'UnconfirmedPrevious');
  }

  // 3. A verified backup first: nothing changes until the data is safe. The images of the units that
  //    change are made sure of meanwhile.
  const known = (u: UnitSpec): UnitContainers => state[`${u.host}/${u.name}`] ?? { others: [] };
  const toChange = readsOnce ? input.units.filter((u) => !runsSpec(known(u), u)) : [];
  const changing = new Set(toChange.map((u) => `${u.host}/${u.name}`));
  const images = Promise.all([early, imageProblems(toChange.filter((u) => !lookedUp.includes(u)))])
    .then((found) => found.flat().filter((p) => changing.has(p.key)).map((p) => p.problem));
  if (backingUp) setPhase('backing-up');
  if (!readsOnce || backingUp) {
    try {
      progress.backup = await backupFirst(input.backup, `deploy ${release}`);
    } catch (err) {
      await releaseLock();
      await fail(rootMessage(err), 'BackupFailed');
    }
  }
  if (readsOnce) {
    const missing = await images;
    if (missing.length) {
      await releaseLock();
      await fail(`deploy ${release} refused before any change: ${missing.join('; ')}`, 'ImageUnavailable');
    }
    // A backup takes minutes: what the units run is read again after it.
    if (backingUp) state = await readUnits(input.units);
  }
  setPhase('deploying');
  if (!readsOnce || backingUp) await ledger.write({ backup: progress.backup });

  // 4. Baseline: what every unit runs now.
  const before: UnitsState = stateOf(state!);

  // 5. Deploy, a dependency graph: each service waits for its own dependencies only.
  const undo: UndoStep[] = [];
  const changes = new Map<string, UnitChange>();
  let failure: { unit: string; message: string } | undefined;
  let inFlight = 0;
  const healthScopes = new Set<CancellationScope>();
  const done = new Map<string, Promise<void>>();
  // Settled when a unit's container is started (or found running), for `service_started` dependents.
  const started = new Map(names.map((n) => {
    let settle!: { resolve: () => void; reject: (e: unknown) => void };
    const p = new Promise<void>((resolve, reject) => { settle = { resolve, reject }; });
    p.catch(() => undefined); // awaited only by service_started dependents, if any
    return [n, { p, ...settle }] as const;
  }));
  const stopped = () => { if (failure) throw ApplicationFailure.nonRetryable('stopped: another service failed', 'Stopped'); };
  // Issue #14: a service is made, started and waited for in one call on its host, unless a
  // dependent waits only for it to be started (service_started).
  const startsHealthy = patched('deploy-start-healthy');
  const startedFor = new Set(names.flatMap((n) => Object.entries(units.get(n)!.dependsOn).flatMap(([d, c]) => (c === 'service_started' ? [d] : []))));

  const deployUnit = async (unit: UnitSpec): Promise<void> => {
    // Issue #15: every unit the condition frees in one activation used to start (concurrency 1 ran
    // several at once); each now takes its slot in turn and the others wait again.
    if (patched('deploy-limit-held')) {
      while (failure === undefined && inFlight >= limit) await condition(() => failure !== undefined || inFlight < limit);
    } else {
      await condition(() => failure !== undefined || inFlight < limit);
    }
    if (failure) {
      started.get(unit.name)!.reject(new Error('not started'));
      setUnit(unit.name, { phase: 'skipped' });
      return;
    }
    inFlight++;
    setUnit(unit.name, { phase: 'starting' });
    try {
      const change = await swapUnit(unit, {
        project,
        known: readsOnce ? { state: known(unit), imageReady: toChange.includes(unit) } : undefined,
        stamp: { release, change: ledger.change },
        undo,
        checkpoint: stopped,
        startHealthy: startsHealthy && !startedFor.has(unit.name),
        onChange: (c) => {
          changes.set(unit.name, c);
          setUnit(unit.name, { action: c.action, containerId: c.newId });
          if (c.newId) started.get(unit.name)!.resolve();
        },
        // A health wait is read-only: when another service fails, it is cancelled so the rollback starts now.
        healthScope: async (wait) => {
          const scope = new CancellationScope();
          healthScopes.add(scope);
          if (failure) scope.cancel();
          try {
            const healthy = await scope.run(wait);
            setUnit(unit.name, { healthyAt: healthy.healthyAt, ...(unit.job ? { exitCode: healthy.exitCode } : {}) });
            return healthy;
          } finally {
            healthScopes.delete(scope);
          }
        },
      });
      setUnit(unit.name, { phase: change.action === 'reused' ? 'unchanged' : unit.job ? 'completed' : 'healthy' });
    } catch (err) {
      started.get(unit.name)!.reject(err);
      const byOther = isCancellation(err) || failure !== undefined;
      const message = byOther ? 'stopped: another service failed' : rootMessage(err);
      setUnit(unit.name, { phase: 'failed', error: message });
      if (!byOther) {
        failure = { unit: unit.name, message };
        for (const s of healthScopes) s.cancel();
      }
      throw err;
    } finally {
      inFlight--;
    }
  };

  const start = (name: string): Promise<void> => {
    let p = done.get(name);
    if (!p) {
      p = (async () => {
        // service_started: the dependency's container is started; otherwise it is done (healthy, or a job exited 0).
        const conditions = units.get(name)!.dependsOn;
        const results = await Promise.allSettled(deps.get(name)!.map((d) => {
          const finished = start(d);
          return conditions[d] === 'service_started' ? started.get(d)!.p : finished;
        }));
        if (results.some((r) => r.status === 'rejected') || failure) {
          started.get(name)!.reject(new Error('not started'));
          setUnit(name, { phase: 'skipped' });
          throw ApplicationFailure.nonRetryable(`${name} not started: a dependency failed`, 'DependencyFailed');
        }
        return deployUnit(units.get(name)!);
      })();
      done.set(name, p);
    }
    return p;
  };

  let cancelled = false;
  await Promise.allSettled(names.map(start));
  if (!failure && Object.values(progress.units).some((u) => u.phase === 'failed' || u.phase === 'skipped')) {
    cancelled = true; // the deploy itself was cancelled
    failure = { unit: '(workflow)', message: 'the deploy was cancelled' };
  }

  // 6. Roll back: reverse dependency order, nothing can cancel it; then compare with the baseline.
  const rollBack = async () => {
    setPhase('rolling-back');
    await undoUnits(undo, topologicalWaves(deps).reverse(), (n) => {
      // A failed service keeps its phase (and error); the others say they were undone.
      if (progress.units[n]!.phase !== 'failed') setUnit(n, { phase: 'rolled-back' });
    });
    // Reused services were never touched: they stay as they were (phase unchanged).
    progress.differences = differences(before, stateOf(await CancellationScope.nonCancellable(() => readUnits(input.units, 'undo'))));
    progress.exact = progress.differences.length === 0;
  };

  ledger.record.units = [...changes.values()];
  if (failure) {
    progress.error = `${failure.unit}: ${failure.message}`;
    await rollBack();
    progress.error += progress.exact ? ' — rolled back: every host runs exactly what it ran before' : ` — rolled back, but some units differ from before: ${progress.differences!.join('; ')}`;
    if (progress.backup?.id) progress.error += `; data untouched (backup ${progress.backup.id} was taken before: \`migrate restore ${progress.backup.id}\` if needed)`;
    await releaseLock();
    await fail(`deploy ${release} failed: ${progress.error}`, cancelled ? 'DeployCancelled' : 'DeployFailed');
  }

  // 7. Pending confirmation: the `.prev` containers stay until the release is decided.
  await awaitDecision({
    what: `release ${release}`,
    confirmNow: input.autoConfirm,
    confirmAfterMs: input.confirmAfterMs,
    refuseRollback: (o) => (o?.restoreData ? restoreRefusal(progress.backup, input.backup, `release ${release}`, o.components) : undefined),
    // A one-shot job has exited: there is nothing to re-check.
    units: () => input.units.filter((u) => changes.get(u.name)?.action !== 'reused' && !u.job),
    changes: () => [...changes.values()],
    rollback: async (o?: RollbackOptions): Promise<DecisionResult> => {
      await rollBack();
      // The containers are back first: the database itself may be one of them.
      if (o?.restoreData) progress.restore = await restoreAfterRollback(input.backup, progress.backup, `release ${release}`, o.components);
      return { status: 'rolled-back', exact: progress.exact, differences: progress.differences, restore: progress.restore };
    },
    onPending: async () => {
      setPhase('pending-confirmation');
      await ledger.write({ status: 'pending-confirmation' });
    },
    onDecided: async (result) => {
      progress.notConfirmed = undefined;
      setPhase(result.status === 'confirmed' ? 'confirmed' : 'rolled-back');
      await ledger.write({ status: result.status });
    },
    onNotConfirmed: (why) => {
      progress.notConfirmed = why;
      progress.updatedAt = now();
    },
  });
  await releaseLock();
  await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
  return progress;
}
