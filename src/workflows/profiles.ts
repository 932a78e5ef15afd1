/**
 * How workflows call activities: one profile per kind of call, declared once and used by every
 * workflow. Each host's activities run on that host's queue (`host-<name>`); the ledger's on the
 * orchestrator queue.
 *
 * - `docker`:  short Docker calls; a host whose worker is gone stalls them, bounded by schedule-to-close.
 * - `image`:   building or finding an image; may take long.
 * - `health`:  probes and waits; they heartbeat, so a dead worker is noticed within seconds.
 * - `start`:   a container made and started, then waited for (`startHealthy`): as `health`, but a
 *              cancel waits for the call to end, so that no container is still being made when a
 *              rollback starts.
 * - `undo`:    put-back, discard, stop-again: retried until the host answers (a rollback is never
 *              given up); permanent errors still fail at once.
 * - `gate`:    asked once, briefly: an unreachable host refuses the change before anything moves.
 * - `backup`:  dumps and restores: long, they heartbeat, and a host that is gone fails them after 3 hours.
 *
 * Every profile but `gate` (10 s in all) has a heartbeatTimeout of a few seconds: the workers beat
 * for every activity each second (src/workers/heartbeat.ts), so a worker killed mid-call loses its
 * attempt within those seconds and the retry runs on the next worker of that queue — not after the
 * call's whole start-to-close limit. Timeouts are not part of replay: changing them is safe for
 * running workflows.
 *
 * Pure: safe in workflow code.
 */
import { ActivityCancellationType, proxyActivities, proxyLocalActivities, type ActivityInterfaceFor, type ActivityOptions, type LocalActivityOptions } from '@temporalio/workflow';
import type { HostActivities } from '../activities/index.js';
import type { LedgerActivities } from '../activities/ledger.js';
import { hostQueue, ORCHESTRATOR_QUEUE } from '../plan/queues.js';

/** Error types no retry can fix: the activity throws them as non-retryable, and they are listed here too. */
export const ERRORS = {
  imageMissing: 'ImageMissing',
  imageBuildFailed: 'ImageBuildFailed',
  containerConflict: 'ContainerConflict',
  containerMissing: 'ContainerMissing',
  previousMissing: 'PreviousMissing',
  unconfirmedPrevious: 'UnconfirmedPrevious',
  secretMissing: 'SecretMissing',
  startFailed: 'StartFailed',
  unitCrashed: 'UnitCrashed',
  unhealthy: 'Unhealthy',
  jobFailed: 'JobFailed',
  invalidSpec: 'InvalidSpec',
  gpuUnavailable: 'GpuUnavailable',
} as const;

/** The backup activities' permanent errors. */
export const BACKUP_ERRORS = ['BackupNotFound', 'BackupCorrupt', 'InvalidBackupId', 'InvalidTarget', 'SecretMissing', 'RestoreFailed'];

const PERMANENT = Object.values(ERRORS);
/** A call whose worker beats no more for this long is given up and retried elsewhere. */
const HEARTBEAT = '6 seconds';
const quick = { initialInterval: '200 milliseconds', maximumInterval: '5 seconds', nonRetryableErrorTypes: PERMANENT };

export const PROFILES = {
  docker: { startToCloseTimeout: '1 minute', heartbeatTimeout: HEARTBEAT, scheduleToCloseTimeout: '10 minutes', retry: quick },
  image: { startToCloseTimeout: '30 minutes', heartbeatTimeout: HEARTBEAT, scheduleToCloseTimeout: '40 minutes', retry: { ...quick, maximumAttempts: 3 } },
  health: { startToCloseTimeout: '15 minutes', heartbeatTimeout: '5 seconds', scheduleToCloseTimeout: '20 minutes', retry: quick },
  start: { startToCloseTimeout: '15 minutes', heartbeatTimeout: '5 seconds', scheduleToCloseTimeout: '20 minutes', retry: quick, cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED },
  undo: { startToCloseTimeout: '1 minute', heartbeatTimeout: HEARTBEAT, retry: { initialInterval: '500 milliseconds', maximumInterval: '10 seconds', nonRetryableErrorTypes: [ERRORS.previousMissing, ERRORS.containerConflict] } },
  gate: { scheduleToCloseTimeout: '10 seconds', retry: { maximumAttempts: 2, nonRetryableErrorTypes: PERMANENT } },
  backup: { startToCloseTimeout: '2 hours', heartbeatTimeout: '10 seconds', scheduleToCloseTimeout: '3 hours', retry: { maximumAttempts: 3, initialInterval: '2 seconds', nonRetryableErrorTypes: BACKUP_ERRORS } },
} satisfies Record<string, ActivityOptions>;

export type Profile = keyof typeof PROFILES;

/** A host's activities under each profile: `onHost('pc2').undo.putBack(…)`. */
export type HostCalls = ActivityInterfaceFor<HostActivities>;

/**
 * The same profiles as local activities (issue #14), for a workflow that runs on the host's own
 * worker: no heartbeat timeout (a local activity lives inside its workflow task, which times out
 * instead when its worker dies; the retry runs on the next worker of the queue, after a replay).
 */
export const LOCAL_PROFILES = Object.fromEntries(
  Object.entries(PROFILES).map(([p, { heartbeatTimeout: _beat, ...options }]: [string, ActivityOptions]) => [p, options]),
) as Record<Profile, LocalActivityOptions>;

/**
 * The calls that only look (and make sure of an image): the ones a workflow on the host's own
 * worker runs as local activities. A local activity's result is recorded when its workflow task
 * completes; if that task is lost (a worker dies or falls behind), the calls after the last
 * recorded one run again. A look run again is harmless; a change run again from an outdated view
 * is not: every call that changes a container stays on the queue, recorded as it completes.
 */
export const LOOKS: ReadonlySet<string> = new Set<keyof HostActivities>([
  'unitContainers', 'unitsState', 'ensureImage', 'ensureImages', 'waitHealthy', 'waitExit', 'sampleLatency', 'sampleBeside', 'probeUnit', 'probeUnits', 'describeHost', 'reserveGpu',
]);

/**
 * A host's activities under each profile: on its queue, or — `local`, for a workflow that runs on
 * the host's own worker (an agent's migration: issue #14) — its looks as local activities there,
 * with no round trip to the server. Whether a run is local is part of its input (replay-safe: a
 * replaying worker polls another queue).
 */
export function onHost(host: string, local = false): Record<Profile, HostCalls> {
  const taskQueue = hostQueue(host);
  return Object.fromEntries((Object.keys(PROFILES) as Profile[]).map((p) => {
    const queued = proxyActivities<HostActivities>({ taskQueue, ...PROFILES[p] });
    if (!local) return [p, queued];
    const here = proxyLocalActivities<HostActivities>(LOCAL_PROFILES[p]);
    return [p, new Proxy(queued, { get: (_, name: string) => (LOOKS.has(name) ? here : queued)[name as keyof HostCalls] })];
  })) as Record<Profile, HostCalls>;
}

/**
 * A host's activities as local activities, every call, for a workflow on the host's own worker:
 * only for a change a step run again cannot make wrong (the judge's candidate: see migrateAgent).
 */
export function localOnHost(): Record<Profile, HostCalls> {
  return Object.fromEntries((Object.keys(PROFILES) as Profile[]).map((p) => [p, proxyLocalActivities<HostActivities>(LOCAL_PROFILES[p])])) as Record<Profile, HostCalls>;
}

/** The ledger's activities (they talk to Temporal only), on the orchestrator queue; writes never give up. */
export const ledgerActivities = proxyActivities<LedgerActivities>({
  taskQueue: ORCHESTRATOR_QUEUE,
  startToCloseTimeout: '30 seconds',
  heartbeatTimeout: HEARTBEAT,
  retry: { initialInterval: '500 milliseconds', maximumInterval: '10 seconds' },
});
