/**
 * Health-gated deploy of the stack, in dependency order, with exact rollback (issue #3).
 *
 * The runbook, as `deployStack` runs it:
 *   1. lock      — one deploy per project at a time (a child workflow `deploy-lock-<project>`
 *                  lives exactly as long as this deploy: the server refuses a second one).
 *   2. backup    — take a backup of the inventory's databases and prove it restorable (the
 *                  `backupDatabases` child); one that does not verify refuses the deploy. Skipped
 *                  only with an operator's reason, recorded in the input and the progress.
 *   3. baseline  — snapshot every host's containers of the project.
 *   4. deploy    — each service starts as soon as all of its dependencies are healthy, on its own
 *                  host's worker, at most `concurrency` at once:
 *                  ensureImage → retire the old container (undo: restorePrevious) →
 *                  ensureContainer (undo: removeContainer) → waitHealthy.
 *                  A container with the same spec hash, running, is reused (phase `unchanged`).
 *   5. on failure: undo in reverse dependency order, in a non-cancellable scope, then snapshot
 *                  again: every host is as it was at step 3. Data is not touched.
 *   6. on success: "pending confirmation", holding the `.prev` containers, until the `confirm`
 *                  update (drops them) or the `rollback` update (the same undo as step 5; with
 *                  `restoreData`, then the step 2 backup is restored).
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
  defineUpdate,
  isCancellation,
  proxyActivities,
  setHandler,
  setCurrentDetails,
  startChild,
  upsertSearchAttributes,
  workflowInfo,
  allHandlersFinished,
  log,
} from '@temporalio/workflow';
import type { HostActivities } from '../activities/index.js';
import type { HostSnapshot } from '../activities/docker.js';
import type { UnitSpec } from '../plan/plan.js';
import { containerName, hostQueue } from '../plan/queues.js';
import { topologicalWaves } from '../plan/graph.js';
import { SA } from '../common/search-attributes.js';
import { rootMessage } from '../common/failure.js';
import { backupFirst, restoreAfterRollback, restoreRefusal, type BackupGuard, type BackupOutcome, type DataRestore } from './safeguard.js';

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

export type UnitPhase = 'waiting' | 'starting' | 'healthy' | 'unchanged' | 'failed' | 'skipped' | 'rolled-back';
export type DeployPhase = 'backing-up' | 'deploying' | 'rolling-back' | 'pending-confirmation' | 'confirming' | 'confirmed' | 'rolled-back' | 'failed';

export interface UnitProgress {
  host: string;
  phase: UnitPhase;
  /** Workflow time (ms since epoch) of the last phase change. */
  since: number;
  /** What the deploy did to the container: new, replaced, reused or restarted. */
  action?: 'new' | 'replaced' | 'reused' | 'restarted';
  containerId?: string;
  /** Wall-clock time its host's probe first passed (ms since epoch). */
  healthyAt?: number;
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
  /** Hosts' containers before the deploy, and after a rollback (equal when the rollback was exact). */
  before?: HostSnapshot[];
  after?: HostSnapshot[];
  /** After a rollback: whether `after` equals `before`. */
  exact?: boolean;
  /** The backup the deploy started with (or why there is none). */
  backup?: BackupOutcome;
  /** After `rollback` with `restoreData`: the data restore. */
  restore?: DataRestore;
}

export interface DecisionResult {
  phase: DeployPhase;
  exact?: boolean;
  restore?: DataRestore;
}

export interface RollbackOptions {
  /** After the containers are back, restore the backup the deploy started with. */
  restoreData?: boolean;
  /** Restore only these backup components (default: all). */
  components?: string[];
}

export const progressQuery = defineQuery<DeployProgress>('progress');
/** Keep this release: drop the `.prev` containers. */
export const confirmUpdate = defineUpdate<DecisionResult>('confirm');
/** Back to the release before: restore every replaced container, remove every added one; optionally the data too. */
export const rollbackUpdate = defineUpdate<DecisionResult, [RollbackOptions?]>('rollback');
/** The lock child is told to let go (it also ends when its parent closes). */
export const releaseLockSignal = defineSignal('release');

export function deployWorkflowId(release: string): string {
  return `deploy-${release}`;
}
export function deployLockId(project: string): string {
  return `deploy-lock-${project}`;
}

// ------------------------------------------------------------------------------------------------
// Activities, per host

const NON_RETRYABLE = ['ImageMissing', 'ImageBuildFailed', 'ContainerConflict', 'ContainerMissing', 'SecretMissing', 'StartFailed', 'UnitCrashed', 'Unhealthy', 'InvalidSpec'];

function onHost(host: string) {
  const retry = { initialInterval: '500 milliseconds', maximumInterval: '5 seconds', nonRetryableErrorTypes: NON_RETRYABLE };
  // Docker calls: seconds each. A host whose worker is gone stalls them: scheduleToClose bounds that.
  const docker = proxyActivities<HostActivities>({ taskQueue: hostQueue(host), startToCloseTimeout: '2 minutes', scheduleToCloseTimeout: '10 minutes', retry });
  // Building an image may take long.
  const image = proxyActivities<HostActivities>({ taskQueue: hostQueue(host), startToCloseTimeout: '30 minutes', scheduleToCloseTimeout: '40 minutes', retry });
  // Health waits heartbeat: a dead worker is noticed within the heartbeat timeout and the wait resumes elsewhere.
  const health = proxyActivities<HostActivities>({ taskQueue: hostQueue(host), startToCloseTimeout: '15 minutes', heartbeatTimeout: '5 seconds', scheduleToCloseTimeout: '20 minutes', retry });
  // Undo steps (and confirm's clean-up) never give up: a host whose worker is away is waited for,
  // visibly (a pending activity in the Web UI), as the batch rollback does. Permanent errors still fail at once.
  const undo = proxyActivities<HostActivities>({ taskQueue: hostQueue(host), startToCloseTimeout: '2 minutes', retry: { initialInterval: '500 milliseconds', maximumInterval: '10 seconds' } });
  return { docker, image, health, undo };
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

interface Undo {
  unit: string;
  what: string;
  run: () => Promise<unknown>;
}

function sameSnapshots(a: HostSnapshot[], b: HostSnapshot[]): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

export async function deployStack(input: DeployInput): Promise<DeployProgress> {
  const { release, project } = input;
  const units = new Map(input.units.map((u) => [u.name, u]));
  const names = [...units.keys()].sort();
  const hosts = [...new Set(input.units.map((u) => u.host))].sort();
  const deps = new Map(names.map((n) => [n, Object.keys(units.get(n)!.dependsOn).filter((d) => units.has(d)).sort()]));
  const limit = Math.max(1, input.concurrency ?? 8);

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
      `**${progress.phase}** — release ${release} of ${project}: ${count('healthy')} healthy, ${count('unchanged')} unchanged, ` +
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

  // 1. Lock: one deploy per project. The server refuses a second child with this id while one runs.
  let lock: ChildWorkflowHandle<typeof deployLock>;
  try {
    lock = await startChild(deployLock, { workflowId: deployLockId(project), args: [workflowInfo().workflowId] });
  } catch (err) {
    progress.error = `another deploy of project ${project} is running or waiting for confirmation (it holds ${deployLockId(project)}): wait for it, or confirm or roll it back first`;
    setPhase('failed');
    throw ApplicationFailure.nonRetryable(progress.error, 'DeployLocked', String(err));
  }
  // Let go of the lock and wait until it is free (the parent-close policy would also end it).
  const releaseLock = () => CancellationScope.nonCancellable(async () => {
    await lock.signal(releaseLockSignal);
    await lock.result();
  });

  // 2. A verified backup first: nothing changes until the data is safe.
  if (input.backup && 'take' in input.backup) setPhase('backing-up');
  try {
    progress.backup = await backupFirst(input.backup, `deploy ${release}`);
  } catch (err) {
    progress.error = rootMessage(err);
    setPhase('failed');
    await releaseLock();
    throw err;
  }
  setPhase('deploying');

  // 3. Baseline.
  const snapshot = async () => Promise.all(hosts.map((h) => onHost(h).docker.snapshotHost()));
  progress.before = await snapshot();

  // 4. Deploy, a dependency graph: each service waits for its own dependencies only.
  const undo: Undo[] = [];
  const replaced: UnitSpec[] = [];
  let failure: { unit: string; message: string } | undefined;
  let inFlight = 0;
  const healthScopes = new Set<CancellationScope>();
  const done = new Map<string, Promise<void>>();

  const deployUnit = async (unit: UnitSpec): Promise<void> => {
    const { docker, image, health, undo: undoOn } = onHost(unit.host);
    const name = containerName(project, unit.host, unit.name);
    await condition(() => failure !== undefined || inFlight < limit);
    if (failure) {
      setUnit(unit.name, { phase: 'skipped' });
      return;
    }
    inFlight++;
    setUnit(unit.name, { phase: 'starting' });
    try {
      await image.ensureImage(unit);
      const current = await docker.inspectContainer(name);
      let action: UnitProgress['action'] = 'new';
      if (current && current.specHash === unit.specHash && current.running) {
        action = 'reused';
      } else if (current && current.specHash === unit.specHash) {
        action = 'restarted';
        undo.push({ unit: unit.name, what: `stop ${name} again`, run: () => undoOn.stopContainer(name) });
      } else if (current) {
        action = 'replaced';
        // Compensation first: if the retire half-happens, restoring is still the right undo.
        undo.push({ unit: unit.name, what: `restore the previous ${name}`, run: () => undoOn.restorePrevious(unit.name) });
        replaced.push(unit);
        await docker.retireContainer(unit.name);
      } else {
        undo.push({ unit: unit.name, what: `remove ${name}`, run: () => undoOn.removeContainer(name) });
      }
      const ref = action === 'reused' ? { id: current!.id } : await docker.ensureContainer(unit, release);
      setUnit(unit.name, { action, containerId: ref.id });
      // A health wait is read-only: when another service fails, it is cancelled so the rollback starts now.
      const scope = new CancellationScope();
      healthScopes.add(scope);
      if (failure) scope.cancel();
      const healthy = await scope.run(() => health.waitHealthy(unit)).finally(() => healthScopes.delete(scope));
      setUnit(unit.name, { phase: action === 'reused' ? 'unchanged' : 'healthy', healthyAt: healthy.healthyAt });
    } catch (err) {
      const message = isCancellation(err) ? 'stopped: another service failed' : rootMessage(err);
      setUnit(unit.name, { phase: 'failed', error: message });
      if (!failure && !isCancellation(err)) {
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
        const results = await Promise.allSettled(deps.get(name)!.map(start));
        if (results.some((r) => r.status === 'rejected') || failure) {
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

  // 5. Roll back: reverse dependency order, nothing can cancel it.
  const rollBack = async () => {
    setPhase('rolling-back');
    await CancellationScope.nonCancellable(async () => {
      const byUnit = new Map<string, Undo[]>();
      for (const u of undo) byUnit.set(u.unit, [...(byUnit.get(u.unit) ?? []), u]);
      const waves = topologicalWaves(deps).reverse(); // dependents before their dependencies
      for (const wave of waves) {
        await Promise.all(wave.filter((n) => byUnit.has(n)).map(async (n) => {
          for (const step of [...byUnit.get(n)!].reverse()) {
            log.info('compensating', { unit: n, step: step.what });
            await step.run();
          }
          // A failed service keeps its phase (and error); the others say they were undone.
          if (progress.units[n]!.phase !== 'failed') setUnit(n, { phase: 'rolled-back' });
        }));
      }
      // Reused services were never touched: they stay as they were (phase unchanged).
      progress.after = await Promise.all(hosts.map((h) => onHost(h).undo.snapshotHost()));
      progress.exact = sameSnapshots(progress.before!, progress.after);
    });
  };

  if (failure) {
    progress.error = `${failure.unit}: ${failure.message}`;
    await rollBack();
    setPhase('failed');
    progress.error += progress.exact ? ' — rolled back: every host runs exactly what it ran before' : ' — rolled back, but some host differs from before (see progress.before/after)';
    if (progress.backup?.id) progress.error += `; data untouched (backup ${progress.backup.id} was taken before: \`migrate restore ${progress.backup.id}\` if needed)`;
    await releaseLock();
    throw ApplicationFailure.nonRetryable(`deploy ${release} failed: ${progress.error}`, cancelled ? 'DeployCancelled' : 'DeployFailed');
  }

  // 6. Pending confirmation: the `.prev` containers stay until the release is confirmed.
  let decision: 'confirm' | 'rollback' | undefined = input.autoConfirm ? 'confirm' : undefined;
  let restoreData: RollbackOptions | undefined;
  const pending = (): void => {
    if (progress.phase !== 'pending-confirmation') throw new Error(`release ${release} is ${progress.phase}, not pending confirmation`);
  };
  const finished = () => ['confirmed', 'rolled-back'].includes(progress.phase);
  setHandler(confirmUpdate, async () => { decision ??= 'confirm'; await condition(finished); return { phase: progress.phase }; }, { validator: pending });
  setHandler(rollbackUpdate, async (options?: RollbackOptions) => {
    if (decision === undefined) {
      decision = 'rollback';
      restoreData = options?.restoreData ? options : undefined;
    }
    await condition(finished);
    return { phase: progress.phase, exact: progress.exact, restore: progress.restore };
  }, {
    validator: (options?: RollbackOptions) => {
      pending();
      const refusal = options?.restoreData ? restoreRefusal(progress.backup, input.backup, `release ${release}`, options.components) : undefined;
      if (refusal) throw new Error(refusal);
    },
  });
  setPhase('pending-confirmation');

  try {
    if (input.confirmAfterMs !== undefined) {
      if (!(await condition(() => decision !== undefined, input.confirmAfterMs))) decision = 'confirm';
    } else {
      await condition(() => decision !== undefined);
    }
  } catch (err) {
    if (!isCancellation(err)) throw err;
    decision = 'rollback'; // cancelling a pending release rolls it back
  }

  if (decision === 'confirm') {
    setPhase('confirming');
    await CancellationScope.nonCancellable(() => Promise.all(replaced.map((u) => onHost(u.host).undo.discardPrevious(u.name))));
    setPhase('confirmed');
  } else {
    await rollBack();
    // The containers are back first: the database itself may be one of them.
    if (restoreData) progress.restore = await CancellationScope.nonCancellable(() => restoreAfterRollback(input.backup, progress.backup, `release ${release}`, restoreData?.components));
    setPhase('rolled-back');
  }
  await releaseLock();
  await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
  return progress;
}
