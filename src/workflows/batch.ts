/**
 * The batch migrations of seed 001: `migrateBatch` runs one `migrateAgent` child per agent, a bounded
 * number in flight, behind gates; `rollbackBatch` and `confirmBatch` finish what a completed batch
 * left open (the retired `.prev` containers are held until one of them runs).
 *
 * Kept `.prev` containers: a migrated agent's old container stays stopped as `<name>.prev` after the
 * batch completes, so `migrate rollback batch-N` can restore the exact old container (same id)
 * at any time until `confirmBatch` discards them. The next migration of the same agent replaces an
 * older `.prev` anyway (retireContainer), so nothing piles up.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  defineQuery,
  defineSignal,
  defineUpdate,
  executeChild,
  getExternalWorkflowHandle,
  startChild,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import type { HostActivities } from '../activities/index.js';
import type { LatencySample } from '../activities/health.js';
import type { UnitSpec } from '../plan/plan.js';
import type { BackupPlan } from '../plan/backups.js';
import { containerName, hostQueue } from '../plan/queues.js';
import { SA } from '../common/search-attributes.js';
import { rootMessage } from '../common/failure.js';
import { backupFirst, restoreAfterRollback, type BackupGuard, type BackupOutcome, type DataRestore } from './safeguard.js';

// ---------------------------------------------------------------------------------------------
// Names and shapes shared with the client

export const batchWorkflowId = (batch: string) => `migrate-${batch}`;
export const allBatchesWorkflowId = (project: string) => `migrate-all-${project}`;
export const agentWorkflowId = (batch: string, agent: string) => `migrate-${batch}-${agent}`;
export const rollbackWorkflowId = (batch: string) => `rollback-${batch}`;
export const confirmWorkflowId = (batch: string) => `confirm-${batch}`;

/**
 * Validation's latency rule: the new version's p95 may be at most `latencyTolerance` × the baseline
 * p95, but never less than baseline + LATENCY_FLOOR_MS. Loopback probes answer in ~1 ms, where a
 * scheduler hiccup alone doubles p95; the floor keeps such noise from rolling back a good version
 * while a real regression (hundreds of ms) still fails.
 */
export const LATENCY_FLOOR_MS = 100;

export function latencyLimitMs(baselineP95: number, tolerance: number): number {
  return Math.max(baselineP95 * tolerance, baselineP95 + LATENCY_FLOOR_MS);
}

export type AgentPhase =
  | 'pending' | 'baseline' | 'deploying' | 'validating' | 'migrated' | 'unchanged'
  | 'rolling-back' | 'rolled-back' | 'confirmed' | 'failed';

export interface LatencyView { successRate: number; p50Ms: number; p95Ms: number }

export interface AgentProgress {
  agent: string;
  host: string;
  phase: AgentPhase;
  baseline?: LatencyView;
  now?: LatencyView;
  /** Container ids: the one that ran before (kept as .prev), and the new one. */
  previousId?: string;
  newId?: string;
  /** No container ran before: rollback removes the new one. */
  firstInstall?: boolean;
  /** Why it failed or was rolled back. */
  reason?: string;
}

export interface BatchInput {
  project: string;
  batch: string;
  /** The batch's agents, in the inventory's order, as the plan specifies their new version. */
  units: UnitSpec[];
  /** Units the agents depend on (must be healthy before anything changes). */
  dependencies: UnitSpec[];
  /** The batch before this one in the plan (its run must have completed, and not been rolled back). */
  previousBatch?: string;
  concurrency: number;
  maxFailures: number;
  latencyTolerance: number;
  approval: boolean;
  /** Skip the previous-batch gate (an operator's explicit decision). */
  force?: boolean;
  /** Probes per latency sample (baseline and validation). */
  samples?: number;
  /** Back up the databases after the gates (refuse if it does not verify), or skip it for a reason. */
  backup?: BackupGuard;
}

export type BatchPhase = 'gates' | 'awaiting-approval' | 'backing-up' | 'migrating' | 'paused' | 'rolling-back' | 'migrated' | 'rolled-back';

export interface BatchResult {
  batch: string;
  outcome: 'migrated' | 'rolled-back';
  reason?: string;
  failures: number;
  agents: AgentProgress[];
  /** The backup the batch started with (or why there is none): `migrate rollback batch-N --restore-data` restores it. */
  backup?: BackupOutcome;
}

export interface BatchProgress extends BatchResult {
  phase: BatchPhase;
  paused: boolean;
  aborting: boolean;
  awaitingApproval: boolean;
}

export const batchProgressQuery = defineQuery<BatchProgress>('progress');
export const pauseUpdate = defineUpdate<BatchPhase>('pause');
export const resumeUpdate = defineUpdate<BatchPhase>('resume');
export const approveUpdate = defineUpdate<BatchPhase>('approve');
export const abortUpdate = defineUpdate<BatchPhase, [string]>('abort');
/** A child reports each phase change to its batch (for the batch's progress query). */
export const agentProgressSignal = defineSignal<[AgentProgress]>('agentProgress');
/** The batch tells its running children to stop and roll back. */
export const abortAgentSignal = defineSignal<[string]>('abortAgent');

// ---------------------------------------------------------------------------------------------
// Activities, per host

function onHost(host: string) {
  const queue = hostQueue(host);
  // Short Docker calls. A host whose worker is gone must not stall the batch forever.
  const docker = proxyActivities<HostActivities>({
    taskQueue: queue, startToCloseTimeout: '1 minute', scheduleToCloseTimeout: '10 minutes',
    retry: { initialInterval: '200 milliseconds', nonRetryableErrorTypes: ['ContainerConflict', 'ContainerMissing', 'StartFailed', 'SecretMissing'] },
  });
  // Probes heartbeat: a dead worker is noticed within seconds and the probe retried on its successor.
  const probes = proxyActivities<HostActivities>({
    taskQueue: queue, startToCloseTimeout: '10 minutes', heartbeatTimeout: '5 seconds', scheduleToCloseTimeout: '15 minutes',
    retry: { initialInterval: '200 milliseconds', nonRetryableErrorTypes: ['Unhealthy', 'UnitCrashed'] },
  });
  // Images may be built: slow, but not heartbeating.
  const images = proxyActivities<HostActivities>({
    taskQueue: queue, startToCloseTimeout: '30 minutes', retry: { maximumAttempts: 3, nonRetryableErrorTypes: ['ImageMissing', 'ImageBuildFailed'] },
  });
  // Undo steps are retried until the host answers again: a rollback is never given up.
  const undo = proxyActivities<HostActivities>({ taskQueue: queue, startToCloseTimeout: '1 minute', retry: { initialInterval: '500 milliseconds', maximumInterval: '10 seconds' } });
  // Gates ask once, briefly: an unreachable host refuses the batch before anything changes.
  const gate = proxyActivities<HostActivities>({ taskQueue: queue, scheduleToCloseTimeout: '10 seconds', retry: { maximumAttempts: 2 } });
  return { docker, probes, images, undo, gate };
}

const view = (s: LatencySample): LatencyView => ({ successRate: s.successRate, p50Ms: Math.round(s.p50Ms * 100) / 100, p95Ms: Math.round(s.p95Ms * 100) / 100 });

// ---------------------------------------------------------------------------------------------
// One agent: seed 001's "migration procedure per agent"

export interface AgentInput {
  project: string;
  batch: string;
  unit: UnitSpec;
  latencyTolerance: number;
  samples?: number;
}

export async function migrateAgent(input: AgentInput): Promise<AgentProgress> {
  const { project, batch, unit } = input;
  const samples = input.samples ?? 20;
  const { docker, probes, images } = onHost(unit.host);
  const name = containerName(project, unit.host, unit.name);
  const progress: AgentProgress = { agent: unit.name, host: unit.host, phase: 'pending' };
  let abortReason: string | undefined;
  setHandler(abortAgentSignal, (reason) => { abortReason = reason; });
  setHandler(defineQuery<AgentProgress>('progress'), () => progress);
  const parent = workflowInfo().parent;
  const report = async (phase: AgentPhase, extra: Partial<AgentProgress> = {}) => {
    Object.assign(progress, extra, { phase });
    setCurrentDetails(`**${unit.name}** on ${unit.host}: ${phase}${progress.reason ? ` — ${progress.reason}` : ''}`);
    if (parent) await getExternalWorkflowHandle(parent.workflowId, parent.runId).signal(agentProgressSignal, { ...progress });
  };
  const checkAbort = () => { if (abortReason !== undefined) throw ApplicationFailure.nonRetryable(`aborted: ${abortReason}`, 'Aborted'); };

  // 1. Pre-migration health check and performance baseline (of the container running now).
  await report('baseline');
  const current = await docker.inspectContainer(name);
  if (current && current.specHash === unit.specHash && current.running) {
    await report('unchanged', { previousId: current.id, newId: current.id });
    return progress;
  }
  if (current) {
    const baseline = await probes.sampleLatency(unit, samples);
    await report('baseline', { baseline: view(baseline), previousId: current.id });
    if (baseline.successRate < 1) {
      // Nothing has changed yet: refuse to migrate an agent that is already failing.
      await report('failed', { reason: `not healthy before migration (${Math.round(baseline.successRate * 100)}% of probes passed: ${baseline.errors.join('; ')}); left as it was` });
      return progress;
    }
  } else {
    progress.firstInstall = true;
  }

  try {
    checkAbort();
    // 2. Deploy the new version; the old container is kept, stopped, as `.prev` for instant rollback.
    await report('deploying');
    await images.ensureImage(unit);
    checkAbort();
    await docker.retireContainer(unit.name);
    const created = await docker.ensureContainer(unit, batch);
    progress.newId = created.id;

    // 3. Validate: healthy, and p95 latency within tolerance of the baseline.
    await report('validating');
    await probes.waitHealthy(unit);
    checkAbort();
    const after = await probes.sampleLatency(unit, samples);
    progress.now = view(after);
    if (after.successRate < 1) throw ApplicationFailure.nonRetryable(`validation: ${Math.round(after.successRate * 100)}% of probes passed (${after.errors.join('; ')})`, 'ValidationFailed');
    if (progress.baseline) {
      const limit = latencyLimitMs(progress.baseline.p95Ms, input.latencyTolerance);
      if (after.p95Ms > limit) {
        throw ApplicationFailure.nonRetryable(`validation: p95 ${after.p95Ms.toFixed(1)} ms exceeds ${limit.toFixed(1)} ms (baseline p95 ${progress.baseline.p95Ms} ms × ${input.latencyTolerance}, floor +${LATENCY_FLOOR_MS} ms)`, 'ValidationFailed');
      }
    }
    checkAbort();

    // 4. Confirm: migrated. The `.prev` container is held until the batch is confirmed.
    await report('migrated');
    return progress;
  } catch (err) {
    // Rollback: this agent alone, back to its exact previous container (or none, on a first install).
    const reason = rootMessage(err);
    await CancellationScope.nonCancellable(async () => {
      await report('rolling-back', { reason });
      await rollbackAgent(project, progress);
      await report('rolled-back');
    });
    return progress;
  }
}

/** Put one agent back as it was before its migration. Idempotent. */
async function rollbackAgent(project: string, agent: AgentProgress): Promise<void> {
  const { undo } = onHost(agent.host);
  if (agent.firstInstall) await undo.removeContainer(containerName(project, agent.host, agent.agent));
  else await undo.restorePrevious(agent.agent);
}

// ---------------------------------------------------------------------------------------------
// One batch

export async function migrateBatch(input: BatchInput): Promise<BatchResult> {
  const { batch } = input;
  const hosts = [...new Set(input.units.map((u) => u.host))];
  const agents = new Map<string, AgentProgress>(input.units.map((u) => [u.name, { agent: u.name, host: u.host, phase: 'pending' as AgentPhase }]));
  let phase: BatchPhase = 'gates';
  let paused = false;
  let approved = !input.approval;
  let abortReason: string | undefined;
  let failures = 0;
  let outcome: BatchResult['outcome'] | undefined;
  let reason: string | undefined;
  let backup: BackupOutcome | undefined;

  const result = (): BatchResult => ({ batch, outcome: outcome ?? 'migrated', reason, failures, agents: [...agents.values()].map((a) => ({ ...a })), backup });
  const setPhase = (p: BatchPhase) => {
    phase = p;
    upsertSearchAttributes([{ key: SA.phase, value: p }]);
    refreshDetails();
  };
  const refreshDetails = () => {
    const counts = new Map<string, number>();
    for (const a of agents.values()) counts.set(a.phase, (counts.get(a.phase) ?? 0) + 1);
    setCurrentDetails(`**${batch}** on ${hosts.join(', ')}: ${phase}${paused ? ' (paused)' : ''}\n\n${[...counts].map(([p, n]) => `${p}: ${n}`).join(' · ')}${reason ? `\n\n${reason}` : ''}`);
  };
  const finished = () => phase === 'migrated' || phase === 'rolled-back';

  setHandler(batchProgressQuery, () => ({ ...result(), phase, paused, aborting: abortReason !== undefined, awaitingApproval: phase === 'awaiting-approval' }));
  setHandler(agentProgressSignal, (p) => { agents.set(p.agent, p); refreshDetails(); });
  setHandler(pauseUpdate, () => { paused = true; refreshDetails(); return phase; }, {
    validator: () => { if (finished() || phase === 'rolling-back') throw new Error(`${batch} is ${phase}: nothing left to pause`); if (paused) throw new Error(`${batch} is already paused`); },
  });
  setHandler(resumeUpdate, () => { paused = false; refreshDetails(); return phase; }, {
    validator: () => { if (!paused) throw new Error(`${batch} is not paused`); },
  });
  setHandler(approveUpdate, () => { approved = true; return phase; }, {
    validator: () => { if (phase !== 'awaiting-approval') throw new Error(`${batch} is not waiting for approval (it is ${phase}${input.approval ? '' : '; its inventory does not ask for one'})`); },
  });
  setHandler(abortUpdate, (why: string) => { abortReason = why || 'aborted by operator'; return phase; }, {
    validator: (_why: string) => { if (finished() || phase === 'rolling-back') throw new Error(`${batch} is ${phase}: too late to abort (roll it back with \`migrate rollback ${batch}\`)`); },
  });

  upsertSearchAttributes([{ key: SA.kind, value: 'batch' }, { key: SA.batch, value: batch }, { key: SA.hosts, value: hosts }]);
  setPhase('gates');

  // --- Gates: before anything changes ---------------------------------------------------------
  await checkGates(input, hosts);

  if (!approved) {
    setPhase('awaiting-approval');
    await condition(() => approved || abortReason !== undefined);
  }

  // --- A verified backup, as close to the change as possible (after any wait for approval) -------
  if (abortReason === undefined) {
    if (input.backup && 'take' in input.backup) setPhase('backing-up');
    backup = await backupFirst(input.backup, batch);
  }

  // --- The agents, a bounded number in flight ---------------------------------------------------
  setPhase('migrating');
  const stopLaunching = () => abortReason !== undefined || failures > input.maxFailures;
  const running = new Map<string, Promise<void>>();
  for (const unit of input.units) {
    await condition(() => stopLaunching() || (!paused && running.size < input.concurrency));
    if (stopLaunching()) break;
    const childId = agentWorkflowId(batch, unit.name);
    const run = executeChild(migrateAgent, {
      workflowId: childId,
      args: [{ project: input.project, batch, unit, latencyTolerance: input.latencyTolerance, samples: input.samples }],
      staticSummary: `${unit.name} on ${unit.host} (${batch})`,
    }).then((p) => {
      agents.set(unit.name, p);
      if (p.phase === 'rolled-back' || p.phase === 'failed') failures++;
    }, (err: unknown) => {
      failures++;
      agents.set(unit.name, { ...agents.get(unit.name)!, phase: 'failed', reason: rootMessage(err) });
    }).finally(() => running.delete(unit.name));
    running.set(unit.name, run);
  }
  // An abort reaches the agents still in flight: each rolls itself back.
  let told = false;
  while (running.size > 0) {
    await condition(() => running.size === 0 || (abortReason !== undefined && !told));
    if (abortReason !== undefined && !told) {
      told = true;
      await Promise.all([...running.keys()].map((a) => getExternalWorkflowHandle(agentWorkflowId(batch, a)).signal(abortAgentSignal, abortReason!).catch(() => undefined)));
    }
  }

  // --- Whole-batch rollback: too many failures, or an abort -------------------------------------
  if (abortReason !== undefined || failures > input.maxFailures) {
    reason = abortReason !== undefined ? `aborted: ${abortReason}` : `${failures} agent(s) failed, more than the batch allows (${input.maxFailures}): every agent rolled back`;
    setPhase('rolling-back');
    await CancellationScope.nonCancellable(() => rollbackAgents(input.project, [...agents.values()], (p) => { agents.set(p.agent, p); refreshDetails(); }));
    outcome = 'rolled-back';
    setPhase('rolled-back');
    return result();
  }
  outcome = 'migrated';
  if (failures > 0) reason = `${failures} agent(s) rolled back alone (the batch allows ${input.maxFailures})`;
  setPhase('migrated');
  return result();
}

/** Roll back every agent that changed, in reverse batch order. Agents that did not change are left alone. */
async function rollbackAgents(project: string, list: AgentProgress[], onChange: (p: AgentProgress) => void): Promise<AgentProgress[]> {
  const out: AgentProgress[] = [];
  for (const agent of [...list].reverse()) {
    if (agent.phase === 'migrated' || agent.phase === 'rolling-back') {
      onChange({ ...agent, phase: 'rolling-back' });
      await rollbackAgent(project, agent);
      const done: AgentProgress = { ...agent, phase: 'rolled-back', reason: agent.reason ?? 'batch rolled back' };
      onChange(done);
      out.unshift(done);
    } else {
      out.unshift(agent);
    }
  }
  return out;
}

async function checkGates(input: BatchInput, hosts: string[]): Promise<void> {
  const refuse = (message: string) => ApplicationFailure.nonRetryable(`${input.batch} refused before any change: ${message}`, 'GateRefused');
  const first = onHost(hosts[0]!).gate;

  // 1. The previous batch completed (and was not rolled back since), unless forced.
  if (input.previousBatch && !input.force) {
    const prev = await first.runRecord(batchWorkflowId(input.previousBatch));
    if (prev.status !== 'COMPLETED' || prev.outcome !== 'migrated') {
      throw refuse(`${input.previousBatch} has not completed (${prev.status === 'NOT_FOUND' ? 'never started' : prev.status.toLowerCase()}${prev.outcome ? `, ${prev.outcome}` : ''}): run \`migrate start ${input.previousBatch}\` first, or pass --force`);
    }
    const rb = await first.runRecord(rollbackWorkflowId(input.previousBatch));
    if (rb.status !== 'NOT_FOUND' && (rb.startedAt ?? 0) > (prev.closedAt ?? 0)) {
      throw refuse(`${input.previousBatch} was rolled back after it completed: migrate it again first, or pass --force`);
    }
  }
  // 2. Every host's worker answers.
  const unreachable: string[] = [];
  await Promise.all(hosts.map(async (h) => {
    try { await onHost(h).gate.describeHost(); } catch { unreachable.push(h); }
  }));
  if (unreachable.length) throw refuse(`no worker answers for host(s) ${unreachable.sort().join(', ')}: start \`migrate worker --host NAME\` there`);
  // 3. The agents' dependencies are healthy.
  const sick: string[] = [];
  await Promise.all(input.dependencies.map(async (d) => {
    const r = await onHost(d.host).gate.probeUnit(d).catch((err: Error) => ({ ok: false, detail: rootMessage(err) }));
    if (!r.ok) sick.push(`${d.name} on ${d.host} (${r.detail ?? 'failing'})`);
  }));
  if (sick.length) throw refuse(`dependencies not healthy: ${sick.sort().join(', ')}`);
}

// ---------------------------------------------------------------------------------------------
// After a batch: roll back a completed one, or confirm it (drop the kept `.prev` containers)

export interface AfterBatchInput {
  project: string;
  batch: string;
  /** The completed batch's agents, from its result. */
  agents: AgentProgress[];
  /** Rollback only: then restore this backup (the one the batch started with) on these targets. */
  restoreData?: { backupId: string; backups: BackupPlan; components?: string[] };
}

export interface AfterBatchResult {
  agents: AgentProgress[];
  restore?: DataRestore;
}

export async function rollbackBatch(input: AfterBatchInput): Promise<AfterBatchResult> {
  upsertSearchAttributes([{ key: SA.kind, value: 'batch-rollback' }, { key: SA.batch, value: input.batch }, { key: SA.hosts, value: [...new Set(input.agents.map((a) => a.host))] }]);
  setCurrentDetails(`rolling back **${input.batch}**`);
  return CancellationScope.nonCancellable(async () => {
    const agents = await rollbackAgents(input.project, input.agents, (p) => setCurrentDetails(`rolling back **${input.batch}**: ${p.agent} ${p.phase}`));
    if (!input.restoreData) return { agents };
    // The agents are back first; then the data they wrote since the backup is replaced by it.
    setCurrentDetails(`rolling back **${input.batch}**: restoring backup ${input.restoreData.backupId}`);
    const { backupId, backups, components } = input.restoreData;
    const restore = await restoreAfterRollback({ take: backups }, { status: 'verified', id: backupId }, input.batch, components);
    setCurrentDetails(`rolled back **${input.batch}**; data ${restore.ok ? 'restored' : 'NOT fully restored'} from backup ${backupId}`);
    return { agents, restore };
  });
}

export async function confirmBatch(input: AfterBatchInput): Promise<AfterBatchResult> {
  upsertSearchAttributes([{ key: SA.kind, value: 'batch-confirm' }, { key: SA.batch, value: input.batch }]);
  const out: AgentProgress[] = [];
  // Every agent of the batch: an "unchanged" one may still hold the .prev of an earlier, unconfirmed run.
  for (const agent of input.agents) {
    await onHost(agent.host).undo.discardPrevious(agent.agent);
    out.push(agent.phase === 'migrated' || agent.phase === 'unchanged' ? { ...agent, phase: 'confirmed' } : agent);
  }
  return { agents: out };
}

// ---------------------------------------------------------------------------------------------
// All batches, in order: `migrate start all`

export interface AllBatchesInput {
  project: string;
  /** The plan's batches, in order; each is a `migrateBatch` child, started once the one before migrated. */
  batches: BatchInput[];
}

export interface AllBatchesProgress {
  /** The batch running now (or the last one started). */
  current?: string;
  /** Each started batch's run id, so a client follows exactly that run. */
  runs: Record<string, string>;
  results: BatchResult[];
  /** The batch that did not migrate (rolled back, refused or failed): later ones were not started. */
  stoppedAt?: string;
  error?: string;
}

export const allBatchesProgressQuery = defineQuery<AllBatchesProgress>('progress');

/** Run the batches one after the other, durably: the sequence survives the client and any worker. */
export async function migrateAllBatches(input: AllBatchesInput): Promise<AllBatchesProgress> {
  const progress: AllBatchesProgress = { runs: {}, results: [] };
  setHandler(allBatchesProgressQuery, () => progress);
  upsertSearchAttributes([{ key: SA.kind, value: 'batches' }, { key: SA.hosts, value: [...new Set(input.batches.flatMap((b) => b.units.map((u) => u.host)))].sort() }]);
  const show = () => setCurrentDetails(
    `**all batches of ${input.project}**: ${progress.results.map((r) => `${r.batch} ${r.outcome}`).join(' · ') || 'starting'}` +
      `${progress.current && !progress.results.some((r) => r.batch === progress.current) ? ` · ${progress.current} running` : ''}` +
      `${progress.stoppedAt ? `\n\nstopped at ${progress.stoppedAt}: ${progress.error ?? 'rolled back'}; later batches were not started` : ''}`,
  );
  for (const batch of input.batches) {
    progress.current = batch.batch;
    upsertSearchAttributes([{ key: SA.batch, value: batch.batch }, { key: SA.phase, value: 'migrating' }]);
    show();
    try {
      const child = await startChild(migrateBatch, {
        workflowId: batchWorkflowId(batch.batch),
        args: [batch],
        staticSummary: `${batch.batch}: ${batch.units.length} agent(s) (part of all batches)`,
      });
      progress.runs[batch.batch] = child.firstExecutionRunId;
      const result = await child.result();
      progress.results.push(result);
      if (result.outcome !== 'migrated') {
        progress.stoppedAt = batch.batch;
        progress.error = result.reason;
        break;
      }
    } catch (err) {
      progress.stoppedAt = batch.batch;
      progress.error = rootMessage(err);
      break;
    } finally {
      show();
    }
  }
  upsertSearchAttributes([{ key: SA.phase, value: progress.stoppedAt ? 'stopped' : 'migrated' }]);
  return progress;
}
