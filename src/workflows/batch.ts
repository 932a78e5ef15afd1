/**
 * The batch migrations of seed 001: `migrateBatch` runs one `migrateAgent` child per agent, a bounded
 * number in flight, behind gates; then, like a deploy, it stays open, pending confirmation, until
 * an operator confirms it (the kept `.prev` containers are dropped, after a health re-check) or
 * rolls it back (every agent back on its exact previous container, checked) — updates on the
 * batch's own workflow (change.ts). Its record is kept in the project ledger, which the next
 * batch's gate reads.
 *
 * `migrateAgent` is seed 001's "migration procedure per agent": baseline → deploy (the shared
 * unit swap) → validate → keep, or put back this agent alone. It runs on its host's own worker,
 * its looks local activities there (issue #14; src/workflows/profiles.ts).
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
  ParentClosePolicy,
  patched,
  startChild,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  workflowInfo,
  allHandlersFinished,
} from '@temporalio/workflow';
import type { ChangeStamp } from '../activities/docker.js';
import type { BesideSample, CandidatePorts, LatencySample } from '../activities/health.js';
import type { TrafficSteps, UnitSpec } from '../plan/plan.js';
import { judgedBeside, routable, routedPorts } from '../plan/traffic.js';
import { candidateTarget, DEFAULT_JUDGE, judge, judgeLook, mergeSamples, moreSamples, type JudgeEvidence, type JudgeSettings, type VersionSample } from '../plan/judge.js';
import { SA } from '../common/search-attributes.js';
import { rootMessage } from '../common/failure.js';
import { backupFirst, restoreAfterRollback, restoreRefusal, type BackupGuard, type BackupOutcome, type DataRestore } from './safeguard.js';
import { awaitDecision, LedgerEntry, type DecisionResult, type RollbackOptions } from './change.js';
import { differences, keptRefusals, readUnits, stateOf, swapUnit, undoChange, undoUnits, type UndoStep, type UnitsState } from './unit-swap.js';
import { changeKey, type ChangeStatus, type UnitChange } from './ledger.js';
import { ledgerActivities, localOnHost, onHost } from './profiles.js';
import { hostQueue } from '../plan/queues.js';

// ---------------------------------------------------------------------------------------------
// Names and shapes shared with the client

export const batchWorkflowId = (batch: string) => `migrate-${batch}`;
export const allBatchesWorkflowId = (project: string) => `migrate-all-${project}`;
export const agentWorkflowId = (batch: string, agent: string) => `migrate-${batch}-${agent}`;

/**
 * Validation's latency rule: the new version's p95 may be at most `latencyTolerance` × the baseline
 * p95, but never less than baseline + LATENCY_FLOOR_MS. Loopback probes answer in ~1 ms, where a
 * scheduler hiccup alone doubles p95; the floor keeps such noise from rolling back a good version
 * while a real regression (hundreds of ms) still fails.
 */
export const LATENCY_FLOOR_MS = 100;

/** An agent's workflow task timeout on its host's worker (issue #14): bounds both how late its progress shows and how long a dead worker holds it. */
const AGENT_TASK_TIMEOUT = '5 seconds';

export function latencyLimitMs(baselineP95: number, tolerance: number): number {
  return Math.max(baselineP95 * tolerance, baselineP95 + LATENCY_FLOOR_MS);
}

export type AgentPhase =
  | 'pending' | 'baseline' | 'judging' | 'deploying' | 'validating' | 'migrated' | 'unchanged'
  | 'rolling-back' | 'rolled-back' | 'confirmed' | 'failed'
  /** A routed agent (issue #13): this share (%) of its traffic is on its new version; then promoted. */
  | `traffic-${number}` | 'promoting';

/** Phases an agent ends a batch run in (it changed nothing more after them). */
export const SETTLED_AGENT_PHASES: readonly AgentPhase[] = ['migrated', 'unchanged', 'rolled-back', 'confirmed', 'failed'];

export interface LatencyView { successRate: number; p50Ms: number; p95Ms: number }

export interface AgentProgress {
  agent: string;
  host: string;
  phase: AgentPhase;
  /** What the swap did: replaced, new (first install), restarted or reused. */
  action?: UnitChange['action'];
  baseline?: LatencyView;
  now?: LatencyView;
  /** Container ids: the one that ran before (kept as .prev), and the new one. */
  previousId?: string;
  newId?: string;
  /** No container ran before: rollback removes the new one. */
  firstInstall?: boolean;
  /** Why it failed or was rolled back. */
  reason?: string;
  /** The judge's decision on the new version, and its evidence (sample counts, statistic, threshold, p-value). */
  judge?: JudgeEvidence;
  /** Behind the host's traffic proxy: its traffic moves in steps (issue #13). */
  routed?: boolean;
  /** The share (%) of its traffic on the new version now. */
  traffic?: number;
  /** Waits for the batch's `approve` before its next traffic step. */
  awaitingApproval?: boolean;
  /** Its old container held the published port itself: the proxy took the port over (rollback gives it back). */
  handover?: boolean;
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
  /** The judge's settings (absent in runs started before it: then the defaults, with `latencyTolerance`). */
  analysis?: JudgeSettings;
  approval: boolean;
  /** Skip the previous-batch gate (an operator's explicit decision). */
  force?: boolean;
  /** Probes per latency sample (baseline and validation). */
  samples?: number;
  /** Back up the databases after the gates (refuse if it does not verify), or skip it for a reason. */
  backup?: BackupGuard;
  /** Confirm as soon as the batch migrated (drops the `.prev` containers at once). */
  autoConfirm?: boolean;
  /** Traffic in steps through each host's traffic proxy (issue #13); absent: the swap of before. */
  traffic?: TrafficSteps;
}

export type BatchPhase = 'gates' | 'awaiting-approval' | 'backing-up' | 'migrating' | 'paused' | 'rolling-back' | 'pending-confirmation' | 'confirmed' | 'rolled-back';

export interface BatchResult {
  batch: string;
  /** The run's outcome: migrated (pending confirmation, then confirmed) or rolled back. */
  outcome: 'migrated' | 'rolled-back';
  status: ChangeStatus;
  /** After a rollback: whether every agent runs exactly what it ran before, and what differs. */
  exact?: boolean;
  differences?: string[];
  restore?: DataRestore;
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
/** A batch tells the workflow that started it (`migrateAllBatches`) that it migrated (pending confirmation) or rolled back. */
export const batchSettledSignal = defineSignal<[BatchResult]>('batchSettled');
/** A child reports each phase change to its batch (for the batch's progress query). */
export const agentProgressSignal = defineSignal<[AgentProgress]>('agentProgress');
/** The batch tells its running children to stop and roll back. */
export const abortAgentSignal = defineSignal<[string]>('abortAgent');
/** The batch tells its running children that it was paused (true) or resumed (false): a routed agent holds its traffic step. */
export const batchPausedSignal = defineSignal<[boolean]>('batchPaused');
/** The batch's `approve` lets a routed agent waiting for it take its next traffic step. */
export const approveStepSignal = defineSignal('approveStep');

// ---------------------------------------------------------------------------------------------
// One agent: seed 001's "migration procedure per agent"

export interface AgentInput {
  project: string;
  batch: string;
  unit: UnitSpec;
  latencyTolerance: number;
  analysis?: JudgeSettings;
  samples?: number;
  /** The batch run's stamp on every container it creates. */
  stamp: ChangeStamp;
  /** The batch's traffic steps (issue #13): a routable agent's traffic moves to its new version through the host's proxy. */
  traffic?: TrafficSteps;
  /** It runs on its host's own worker, its looks local activities there (issue #14); absent in runs started earlier. */
  onItsHost?: boolean;
}

const view = (s: LatencySample): LatencyView => ({ successRate: s.successRate, p50Ms: Math.round(s.p50Ms * 100) / 100, p95Ms: Math.round(s.p95Ms * 100) / 100 });

/** The judge's latest look, and everything it was sampled from (a routed agent's steps add to it). */
interface Judged {
  evidence: JudgeEvidence;
  sample: { old: VersionSample; new: VersionSample; errorsSeen: string[] };
  look: number;
}

export async function migrateAgent(input: AgentInput): Promise<AgentProgress> {
  const { unit } = input;
  const samples = input.samples ?? 20;
  // Issue #13: the new version is judged beside the old one before the swap (runs started earlier keep their judge).
  const besideJudge = patched('judge-beside');
  const settings: JudgeSettings = input.analysis ?? { ...DEFAULT_JUDGE, samples, latencyTolerance: input.latencyTolerance };
  const here = () => onHost(unit.host, input.onItsHost);
  const { docker, health } = here();
  /**
   * Sample both versions and judge. Issue #13: sequentially — an inconclusive look takes more probes,
   * each look at alpha / looks (src/plan/judge.ts); runs started earlier keep their one look.
   */
  const sampleAndJudge = async (beside: CandidatePorts, totalLooks?: number, first?: BesideSample): Promise<Judged> => {
    let sample = first ?? await health.sampleBeside(unit, beside, settings.samples);
    if (!patched('judge-sequential')) return { evidence: judge(sample.old, sample.new, settings), sample, look: 1 };
    for (let look = 1; ; look++) {
      const { evidence, again } = judgeLook(sample.old, sample.new, settings, look, totalLooks);
      if (!again) return { evidence, sample, look };
      await report('judging', { judge: evidence });
      checkAbort();
      sample = mergeSamples(sample, await health.sampleBeside(unit, beside, moreSamples(settings, look + 1)));
    }
  };
  const refuse = ({ evidence, sample: { errorsSeen } }: Judged) => ApplicationFailure.nonRetryable(`judge: ${evidence.summary}${errorsSeen.length ? ` [${errorsSeen.join('; ')}]` : ''}`, 'ValidationFailed');
  const progress: AgentProgress = { agent: unit.name, host: unit.host, phase: 'pending' };
  let abortReason: string | undefined;
  setHandler(abortAgentSignal, (reason) => { abortReason = reason; });
  setHandler(defineQuery<AgentProgress>('progress'), () => progress);
  const parent = workflowInfo().parent;
  // Issue #14: progress reaches the batch without holding the agent up. A report that tells the batch
  // nothing new is not sent (it starts each agent as 'baseline'); reports made while one is on its way
  // go as one, the latest, in order; only 'rolling-back' waits for its delivery (the batch must know
  // what is being put back). A settled phase goes with the result, and a report still on its way
  // then is not waited for (the batch ignores reports after an agent's result). Runs started earlier
  // send every report and wait for each, or wait for every report's delivery before they settle.
  const coalesced = patched('agent-progress-coalesced');
  const unwaited = coalesced && patched('agent-settles-unwaited');
  // Issue #14: on its host, a report that the next one follows within the same workflow task (the
  // baseline's numbers, a passing verdict: 'deploying' comes next) or that only local steps follow
  // ('validating': the result comes next) is kept for the next report and the result, not sent:
  // each report sent is a signal, and a workflow task in the agent and in the batch.
  const fewerReports = input.onItsHost === true && unwaited && patched('agent-fewer-reports');
  // Issue #14: a health wait that is followed by a sample takes it in the same call (the judge's
  // first look beside the candidate; the validation): one step less, each a round trip or a local
  // activity's hand-over between the worker and the workflow. Runs started earlier wait, then sample.
  const healthyThenSample = patched('healthy-then-sample');
  let told = JSON.stringify({ ...progress, phase: 'baseline' });
  let settled = false;
  let telling: Promise<void> | undefined;
  const unsent = () => parent !== undefined && !settled && JSON.stringify(progress) !== told;
  const sendLatest = async () => {
    while (unsent()) {
      const snapshot = { ...progress };
      told = JSON.stringify(snapshot);
      await getExternalWorkflowHandle(parent!.workflowId, parent!.runId).signal(agentProgressSignal, snapshot);
    }
  };
  /**
   * Resolves once the batch knows the latest progress (or, settled, once the signal on its way arrived).
   * Never throws: a signal the batch did not take (it is gone, or the scope that sent it was
   * cancelled) is not sent again, and the next report goes from the caller's scope (a rollback's
   * 'rolling-back' from its non-cancellable one).
   */
  const tellBatch = async () => {
    while (telling || unsent()) {
      telling ??= sendLatest().finally(() => { telling = undefined; });
      await telling.catch(() => undefined);
    }
  };
  const report = async (phase: AgentPhase, extra: Partial<AgentProgress> = {}, kept = false) => {
    Object.assign(progress, extra, { phase });
    setCurrentDetails(`**${unit.name}** on ${unit.host}: ${phase}${progress.reason ? ` — ${progress.reason}` : ''}${progress.judge && !progress.reason ? `\n\njudge: ${progress.judge.summary}` : ''}`);
    if (kept && fewerReports) return;
    if (!coalesced) {
      if (parent) await getExternalWorkflowHandle(parent.workflowId, parent.runId).signal(agentProgressSignal, { ...progress });
      return;
    }
    if (SETTLED_AGENT_PHASES.includes(phase)) settled = true;
    // A settled phase goes with the result: the batch takes no report after it (issue #14), so a
    // report still on its way is not waited for. Runs started earlier wait for its delivery.
    if (settled && unwaited) return;
    if (settled || phase === 'rolling-back') await tellBatch();
    else void tellBatch();
  };
  const checkAbort = () => { if (abortReason !== undefined) throw ApplicationFailure.nonRetryable(`aborted: ${abortReason}`, 'Aborted'); };
  // Issue #13: traffic in steps through the host's proxy (runs started earlier, and batches without `traffic:`, swap as before).
  const steps = input.traffic && routable(unit) && patched('traffic-steps') ? input.traffic : undefined;
  let batchPaused = false;
  let approvedStep = false;
  if (steps) {
    setHandler(batchPausedSignal, (p) => { batchPaused = p; });
    setHandler(approveStepSignal, () => { if (progress.awaitingApproval) approvedStep = true; });
  }

  // 1. Pre-migration health check and performance baseline (of the container running now).
  await report('baseline');
  // Issue #14: the three first looks go at once, one step, not three: the unit's containers, the
  // new image (every path but a reuse needs it; a reused unit runs it already, so the look finds it)
  // and the baseline sample (needed when the unit runs another spec; otherwise it costs a few
  // refused connections, a new unit, or probes of a unit left as it is, a reuse, and is dropped).
  // A host that cannot have the image refuses the agent here, before anything changes. A routed
  // agent (issue #13) and runs started earlier look in turn.
  const looksAtOnce = !steps && patched('agent-looks-at-once');
  const [unitState, noImage, sampledEarly] = await Promise.all([
    docker.unitContainers(unit.name),
    looksAtOnce ? here().image.ensureImage(unit).then(() => undefined, (err: unknown) => err) : undefined,
    looksAtOnce ? health.sampleLatency(unit, samples) : undefined,
  ]);
  if (noImage) {
    await report('failed', { reason: `${rootMessage(noImage)}; left as it was` });
    return progress;
  }
  const { current } = unitState;
  let imageReady = looksAtOnce; // made sure of (here, or by the judge): the swap need not ask again
  if (current && current.specHash !== unit.specHash) {
    const baseline = sampledEarly ?? await health.sampleLatency(unit, samples);
    await report('baseline', { baseline: view(baseline), previousId: current.id }, true);
    if (baseline.successRate < 1) {
      // Nothing has changed yet: refuse to migrate an agent that is already failing.
      await report('failed', { reason: `not healthy before migration (${Math.round(baseline.successRate * 100)}% of probes passed: ${baseline.errors.join('; ')}); left as it was` });
      return progress;
    }
  }

  const undo: UndoStep[] = [];
  /** The judged candidate's removal, under way beside the swap: resolves to its error, if any. */
  let candidateRemoval: Promise<unknown> | undefined;

  /**
   * A routed agent (issue #13): its new version starts beside the old one (a candidate on
   * engine-picked ports), is judged there, then takes the traffic step by step through the host's
   * proxy; at 100 % the old one, drained, is stopped and kept as `.prev` and the candidate becomes
   * the unit's container. A failure or an abort at any step moves all traffic back at once; the old
   * container was never stopped. Each undo step is logged before the step it undoes.
   */
  const migrateRouted = async (traffic: TrafficSteps): Promise<AgentProgress> => {
    const { docker: d, image } = here();
    const calls = here().undo;
    const ports = routedPorts(unit);
    progress.routed = true;
    // The same version: make sure the proxy sends its traffic to it (its engine-picked ports change when it starts again).
    if (current && current.specHash === unit.specHash) {
      if (!current.running) await d.startContainer(current.id);
      await d.routeContainers(unit.name, { blue: { id: current.id, weight: 100 } }, ports);
      await report('unchanged', { action: 'reused', newId: current.id, routed: true });
      return progress;
    }
    // The old container takes traffic only while it runs (one stopped is started again by nothing but a rollback).
    const old = current?.running && current.routed ? current : undefined;
    // One that holds the published port itself (made before the unit was routed) is handed over:
    // stopped, then the proxy binds the port (the one gap, once per unit; see README).
    const handover = current && !current.routed ? current : undefined;
    checkAbort();
    // Issue #13 (seed 002's analysis per step): both versions are probed again at each step short of 100 %, another look of the judge.
    const stepLooks = old && current?.running && patched('judge-per-step') ? traffic.steps.filter((s) => s < 100).length : 0;
    const totalLooks = stepLooks > 0 ? (settings.looks ?? 1) + stepLooks : undefined;
    let judged: Judged | undefined;
    await report(current?.running ? 'judging' : 'deploying');
    await image.ensureImage(unit);
    undo.push({
      unit: unit.name,
      what: old ? `move ${unit.name}'s traffic back to ${old.name}, remove its candidate` : `stop routing ${unit.name}, remove its candidate`,
      run: async () => {
        if (old) await calls.routeContainers(unit.name, { blue: { id: old.id, weight: 100 } }, ports);
        else await calls.unrouteUnit(unit.name);
        await calls.removeCandidate(unit.name);
      },
    });
    const candidate = await d.startCandidate(unit, input.stamp, { routed: true });
    await health.waitHealthy(unit, { ports: candidate.ports });
    checkAbort();
    if (current?.running) {
      judged = await sampleAndJudge({ ports: candidate.ports }, totalLooks);
      await report('judging', { judge: judged.evidence });
      if (judged.evidence.verdict !== 'pass') throw refuse(judged);
    }
    // Judged: it joins the project network under the unit's name, beside the old one (its ports change: routed after).
    await d.aliasCandidate(unit.name);
    checkAbort();
    if (old) {
      await d.routeContainers(unit.name, { blue: { id: old.id, weight: 100 }, green: { id: candidate.id, weight: 0 } }, ports);
      for (const [i, step] of traffic.steps.entries()) {
        if (i > 0 && (batchPaused || traffic.approve)) {
          // Between steps: the batch's pause holds it; with `approve`, each next step waits for the batch's approve.
          await report(progress.phase, { awaitingApproval: traffic.approve || undefined });
          await condition(() => abortReason !== undefined || (!batchPaused && (!traffic.approve || approvedStep)));
          approvedStep = false;
          progress.awaitingApproval = undefined;
        }
        checkAbort();
        await d.setTraffic(unit.name, 'green', step);
        await report(`traffic-${step}`, { traffic: step });
        if (traffic.holdMs > 0) await condition(() => abortReason !== undefined, traffic.holdMs);
        checkAbort();
        if (judged && totalLooks && step < 100) {
          // Old and new again, while this share of the traffic is on the new one; a regression moves it all back.
          const more = await health.sampleBeside(unit, { ports: candidate.ports }, settings.samples);
          const sample = mergeSamples(judged.sample, more);
          const look = judged.look + 1;
          judged = { evidence: judgeLook(sample.old, sample.new, settings, look, totalLooks).evidence, sample, look };
          await report(`traffic-${step}`, { judge: judged.evidence });
          if (judged.evidence.verdict !== 'pass') throw refuse(judged);
          checkAbort();
        }
      }
      if (progress.traffic !== 100) {
        await d.setTraffic(unit.name, 'green', 100);
        await report('traffic-100', { traffic: 100 });
      }
      // The old container takes no new connection: those it still serves end before it stops.
      await d.drainSlot(unit.name, 'blue');
    }
    // Promote: the candidate alone in the blue slot, the old container kept as `.prev`, the candidate renamed to the unit's.
    await report('promoting', { action: current ? 'replaced' : 'new', previousId: current?.id, newId: candidate.id, firstInstall: !current || undefined, handover: handover ? true : undefined });
    const change: UnitChange = { unit: unit.name, host: unit.host, action: current ? 'replaced' : 'new', previousId: current?.id, newId: candidate.id, routed: true, ...(handover ? { handover: true } : {}) };
    undo.push({ unit: unit.name, what: current ? `put ${current.name} back${handover ? ' on its port' : ' behind the proxy'}` : `remove ${unit.name}'s new container`, run: () => undoChange(change, input.onItsHost) });
    if (handover) await d.retireContainer(unit.name, handover.id);
    await d.routeContainers(unit.name, { blue: { id: candidate.id, weight: 100 } }, ports);
    await d.promoteCandidate(unit, current?.id);
    await report('validating');
    await health.waitHealthy(unit);
    progress.now = view(await health.sampleLatency(unit, samples));
    if (progress.now.successRate < 1) throw ApplicationFailure.nonRetryable(`validation: ${Math.round(progress.now.successRate * 100)}% of probes passed`, 'ValidationFailed');
    await report('migrated');
    return progress;
  };

  try {
    // (The same version in a container that publishes the port itself is left to the swap: reused, or started again.)
    if (steps && !(current && current.specHash === unit.specHash && !current.routed)) return await migrateRouted(steps);
    // 2. The judge: the new version, started beside the old one, is probed in turn with it (same
    //    load, same moment) and compared (src/plan/judge.ts). A regression stops here: only the
    //    candidate is removed, the old container never stopped.
    let judged = false;
    const removalBeside = patched('candidate-removal-beside-swap');
    if (besideJudge && current?.running && current.specHash !== unit.specHash && judgedBeside(unit)) {
      checkAbort();
      await report('judging');
      if (!imageReady) await here().image.ensureImage(unit);
      imageReady = true;
      undo.push({ unit: unit.name, what: `remove ${unit.name}'s candidate`, run: () => here().undo.removeCandidate(unit.name) });
      // Issue #14: on its host, the candidate starts as a local activity, with no round trip. It is
      // not the unit's container (its own label and name, which the rollback's comparison never
      // reads; undone by name) and its start is idempotent (a running one of the same spec is
      // reused), so a start run again after a lost task changes nothing. Its removal stays on the
      // queue: it runs beside the swap, which a local one would hold up.
      const startHere = input.onItsHost === true && patched('agent-candidate-local');
      const candidate = await (startHere ? localOnHost().docker : docker).startCandidate(unit, input.stamp);
      if (candidateTarget(unit, candidate)) {
        const beside = { ports: candidate.ports };
        const healthy = await health.waitHealthy(unit, beside, healthyThenSample ? { samples: settings.samples } : undefined);
        checkAbort();
        const verdict = await sampleAndJudge(beside, undefined, healthy.besideSample);
        if (verdict.evidence.verdict === 'pass' && removalBeside) {
          // Issue #14: the judged candidate is removed while the swap goes on (it holds no published
          // port); its removal is awaited before the agent settles, and a failed one fails the agent.
          candidateRemoval = docker.removeCandidate(unit.name).then(() => undefined, (err: unknown) => err);
        } else {
          await docker.removeCandidate(unit.name);
        }
        await report('judging', { judge: verdict.evidence }, verdict.evidence.verdict === 'pass');
        if (verdict.evidence.verdict !== 'pass') throw refuse(verdict);
        judged = true;
      } else {
        await docker.removeCandidate(unit.name);
      }
    }

    // 3. Deploy the new version (the old container is kept, stopped, as `.prev`), 4. validate.
    checkAbort();
    const change = await swapUnit(unit, {
      project: input.project,
      stamp: input.stamp,
      // Issue #14: the containers read above and the judge's image, not asked of the host again (runs started earlier ask).
      known: patched('agent-reads-once') ? { state: unitState, imageReady } : undefined,
      local: input.onItsHost,
      replaceInOneCall: input.onItsHost && patched('agent-replace-one-call'),
      undo,
      checkpoint: checkAbort,
      onChange: (c) => {
        Object.assign(progress, { action: c.action, previousId: c.previousId ?? progress.previousId, newId: c.newId, firstInstall: c.action === 'new' || undefined });
        if (c.action !== 'reused' && (progress.phase === 'baseline' || progress.phase === 'judging')) void report('deploying');
        if (c.newId && c.action !== 'reused') void report('validating', {}, true);
      },
      sampleWhenHealthy: healthyThenSample ? samples : undefined,
      validate: async (_, healthy) => {
        const after = healthy.sample ?? await health.sampleLatency(unit, samples);
        progress.now = view(after);
        if (after.successRate < 1) throw ApplicationFailure.nonRetryable(`validation: ${Math.round(after.successRate * 100)}% of probes passed (${after.errors.join('; ')})`, 'ValidationFailed');
        // Judged beside the old version: its latency was decided there, under the same load.
        if (progress.baseline && !judged) {
          const limit = latencyLimitMs(progress.baseline.p95Ms, input.latencyTolerance);
          if (after.p95Ms > limit) {
            throw ApplicationFailure.nonRetryable(`validation: p95 ${after.p95Ms.toFixed(1)} ms exceeds ${limit.toFixed(1)} ms (baseline p95 ${progress.baseline.p95Ms} ms × ${input.latencyTolerance}, floor +${LATENCY_FLOOR_MS} ms)`, 'ValidationFailed');
          }
        }
      },
    });
    const removalFailed = await candidateRemoval;
    if (removalFailed) throw removalFailed;
    // 5. Keep: migrated; the `.prev` container is held until the batch is confirmed.
    await report(change.action === 'reused' ? 'unchanged' : 'migrated');
    return progress;
  } catch (err) {
    // A candidate removal still under way ends first (the undo removes it again if it failed).
    await candidateRemoval;
    const reason = rootMessage(err);
    if (undo.length === 0) {
      // Failed before anything changed (refused, no image…): the running container was not touched.
      await report('failed', { reason: `${reason}; left as it was` });
      return progress;
    }
    // Rollback: this agent alone, back to its exact previous container (or none, on a first install).
    await CancellationScope.nonCancellable(async () => {
      await report('rolling-back', { reason });
      await undoUnits(undo, [[unit.name]]);
      // Check: it runs exactly its previous container again (or nothing, after a first install).
      const after = (await here().undo.unitContainers(unit.name)).current;
      const exact = !progress.previousId ? after === undefined
        : after?.id === progress.previousId && after.running === (progress.action !== 'restarted'); // a restarted one was stopped before
      await report('rolled-back', exact ? {} : { reason: `${reason} — rolled back, but it runs ${after ? `${after.id.slice(0, 12)} (${after.running ? 'running' : 'stopped'})` : 'nothing'}, not ${progress.previousId?.slice(0, 12) ?? 'nothing'} as before` });
    });
    return progress;
  }
}

// ---------------------------------------------------------------------------------------------
// One batch

export async function migrateBatch(input: BatchInput): Promise<BatchResult> {
  const { batch, project } = input;
  const hosts = [...new Set(input.units.map((u) => u.host))];
  const agents = new Map<string, AgentProgress>(input.units.map((u) => [u.name, { agent: u.name, host: u.host, phase: 'pending' as AgentPhase }]));
  const ledger = new LedgerEntry(project, 'batch', batch);
  let phase: BatchPhase = 'gates';
  let paused = false;
  let approved = !input.approval;
  let abortReason: string | undefined;
  let failures = 0;
  let outcome: BatchResult['outcome'] | undefined;
  let reason: string | undefined;
  /** Why an automatic confirm gave up, while the batch waits for an operator. */
  let notConfirmed: string | undefined;
  const reasons = () => [reason, notConfirmed].filter(Boolean).join('; ') || undefined;
  let backup: BackupOutcome | undefined;
  let decision: DecisionResult | undefined;

  /** What the run did to each agent (the ledger keeps it); with `kept`, only the agents that still hold a `.prev` of this run. */
  const changesOf = (kept = false): UnitChange[] => [...agents.values()]
    .filter((a) => a.action && (!kept || a.phase === 'migrated'))
    .map((a) => ({ unit: a.agent, host: a.host, action: a.action, previousId: a.previousId, newId: a.newId, ...(a.routed ? { routed: true } : {}), ...(a.handover ? { handover: true } : {}) }));
  const result = (): BatchResult => ({
    batch,
    outcome: outcome ?? 'migrated',
    status: ledger.record.status,
    reason: reasons(),
    failures,
    agents: [...agents.values()].map((a) => ({ ...a })),
    backup,
    exact: decision?.exact,
    differences: decision?.differences,
    restore: decision?.restore,
  });
  const setPhase = (p: BatchPhase) => {
    phase = p;
    upsertSearchAttributes([{ key: SA.phase, value: p }]);
    refreshDetails();
  };
  const refreshDetails = () => {
    const counts = new Map<string, number>();
    for (const a of agents.values()) counts.set(a.phase, (counts.get(a.phase) ?? 0) + 1);
    setCurrentDetails(`**${batch}** on ${hosts.join(', ')}: ${phase}${paused ? ' (paused)' : ''}\n\n${[...counts].map(([p, n]) => `${p}: ${n}`).join(' · ')}${reasons() ? `\n\n${reasons()}` : ''}`);
  };
  const migrating = () => ['gates', 'awaiting-approval', 'backing-up', 'migrating', 'paused'].includes(phase);
  const write = (status?: ChangeStatus) => ledger.write({ ...(status ? { status } : {}), outcome, reason, backup, units: changesOf() });

  // Issue #13: a batch with traffic steps tells its routed agents of a pause, a resume and an approve (between their steps).
  const stepped = (input.traffic !== undefined || input.units.some((u) => u.traffic)) && patched('traffic-steps');
  const running = new Map<string, Promise<void>>();
  const tellAgents = async (agentsToTell: string[], send: (a: string) => Promise<void>) => {
    await Promise.all(agentsToTell.map((a) => send(a).catch(() => undefined)));
  };
  const waitingForApproval = () => [...agents.values()].filter((a) => a.awaitingApproval && running.has(a.agent)).map((a) => a.agent);
  setHandler(batchProgressQuery, () => ({ ...result(), phase, paused, aborting: abortReason !== undefined, awaitingApproval: phase === 'awaiting-approval' || (stepped && waitingForApproval().length > 0) }));
  // An agent's report that arrives after its result is old news (issue #14: its last report is not waited for): ignored.
  setHandler(agentProgressSignal, (p) => { if (!running.has(p.agent)) return; agents.set(p.agent, p); refreshDetails(); });
  setHandler(pauseUpdate, async () => {
    paused = true;
    refreshDetails();
    if (stepped) await tellAgents([...running.keys()], (a) => getExternalWorkflowHandle(agentWorkflowId(batch, a)).signal(batchPausedSignal, true));
    return phase;
  }, {
    validator: () => { if (!migrating()) throw new Error(`${batch} is ${phase}: nothing left to pause`); if (paused) throw new Error(`${batch} is already paused`); },
  });
  setHandler(resumeUpdate, async () => {
    paused = false;
    refreshDetails();
    if (stepped) await tellAgents([...running.keys()], (a) => getExternalWorkflowHandle(agentWorkflowId(batch, a)).signal(batchPausedSignal, false));
    return phase;
  }, {
    validator: () => { if (!paused) throw new Error(`${batch} is not paused`); },
  });
  setHandler(approveUpdate, async () => {
    if (phase === 'awaiting-approval') approved = true;
    else await tellAgents(waitingForApproval(), (a) => getExternalWorkflowHandle(agentWorkflowId(batch, a)).signal(approveStepSignal));
    return phase;
  }, {
    validator: () => {
      if (stepped && phase !== 'awaiting-approval' && waitingForApproval().length > 0) return;
      if (phase !== 'awaiting-approval' || approved) throw new Error(`${batch} is not waiting for approval (it is ${approved && input.approval ? 'approved' : phase}${input.approval || input.traffic?.approve || input.units.some((u) => u.traffic?.approve) ? '' : '; its inventory does not ask for one'})`);
    },
  });
  setHandler(abortUpdate, (why: string) => { abortReason = why || 'aborted by operator'; return phase; }, {
    validator: (_why: string) => { if (!migrating()) throw new Error(`${batch} is ${phase}: too late to abort (roll it back with \`migrate rollback ${batch}\`)`); },
  });

  upsertSearchAttributes([{ key: SA.kind, value: 'batch' }, { key: SA.batch, value: batch }, { key: SA.hosts, value: hosts }]);
  setPhase('gates');
  await write();

  // --- Gates: before anything changes ---------------------------------------------------------
  let before: UnitsState;
  try {
    before = await checkGates(input, hosts, ledger.change);
  } catch (err) {
    await ledger.write({ status: 'failed', reason: rootMessage(err) });
    throw err;
  }

  if (!approved) {
    setPhase('awaiting-approval');
    await condition(() => approved || abortReason !== undefined);
  }

  // --- A verified backup, as close to the change as possible (after any wait for approval) -------
  if (abortReason === undefined) {
    if (input.backup && 'take' in input.backup) setPhase('backing-up');
    try {
      backup = await backupFirst(input.backup, batch);
    } catch (err) {
      await ledger.write({ status: 'failed', reason: rootMessage(err) });
      throw err;
    }
    await write();
  }

  // --- The agents, a bounded number in flight ---------------------------------------------------
  setPhase('migrating');
  const stamp: ChangeStamp = { release: batch, change: ledger.change };
  const stopLaunching = () => abortReason !== undefined || failures > input.maxFailures;
  const onItsHost = patched('agent-on-its-host');
  for (const unit of input.units) {
    await condition(() => stopLaunching() || (!paused && running.size < input.concurrency));
    if (stopLaunching()) break;
    // Its first step (the agent does not signal it: issue #14).
    agents.set(unit.name, { ...agents.get(unit.name)!, phase: 'baseline' });
    const run = executeChild(migrateAgent, {
      workflowId: agentWorkflowId(batch, unit.name),
      // Issue #14: the agent's migration runs on its host's own worker, its looks local activities there
      // (no server round trip for them). Runs started earlier ran their agents on the orchestrator's queue.
      // While its local activities run, the worker reports the task alive every 0.8 × this (4 s), sending
      // the progress reports made so far with it; a worker that died is noticed after this (then replayed).
      ...(onItsHost ? { taskQueue: hostQueue(unit.host), workflowTaskTimeout: AGENT_TASK_TIMEOUT } : {}),
      args: [{ project, batch, unit, latencyTolerance: input.latencyTolerance, analysis: input.analysis, samples: input.samples, stamp, ...(stepped && (unit.traffic ?? input.traffic) ? { traffic: unit.traffic ?? input.traffic } : {}), ...(onItsHost ? { onItsHost } : {}) }],
      staticSummary: `${unit.name} on ${unit.host} (${batch})`,
    }).then((p) => {
      agents.set(unit.name, p);
      if (p.phase === 'rolled-back' || p.phase === 'failed') failures++;
    }, (err: unknown) => {
      failures++;
      agents.set(unit.name, { ...agents.get(unit.name)!, phase: 'failed', reason: rootMessage(err) });
    }).finally(() => { running.delete(unit.name); refreshDetails(); });
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

  // Put every changed agent back, newest first; then compare with what ran before.
  const rollBack = async (): Promise<DecisionResult> => {
    setPhase('rolling-back');
    const list = [...agents.values()].filter((a) => a.phase === 'migrated' || a.phase === 'rolling-back');
    for (const agent of list.reverse()) {
      agents.set(agent.agent, { ...agent, phase: 'rolling-back' });
      refreshDetails();
      await CancellationScope.nonCancellable(() => undoChange({ unit: agent.agent, host: agent.host, action: agent.action, previousId: agent.previousId, newId: agent.newId, ...(agent.routed ? { routed: true } : {}), ...(agent.handover ? { handover: true } : {}) }));
      agents.set(agent.agent, { ...agent, phase: 'rolled-back', reason: agent.reason ?? 'batch rolled back' });
    }
    const diff = differences(before, stateOf(await CancellationScope.nonCancellable(() => readUnits(input.units, 'undo'))));
    outcome = 'rolled-back';
    return { status: 'rolled-back', exact: diff.length === 0, differences: diff };
  };
  const settle = async () => {
    const parent = workflowInfo().parent;
    if (parent) await getExternalWorkflowHandle(parent.workflowId, parent.runId).signal(batchSettledSignal, result()).catch(() => undefined);
  };

  // --- Whole-batch rollback: too many failures, or an abort -------------------------------------
  if (abortReason !== undefined || failures > input.maxFailures) {
    reason = abortReason !== undefined ? `aborted: ${abortReason}` : `${failures} agent(s) failed, more than the batch allows (${input.maxFailures}): every agent rolled back`;
    decision = await rollBack();
    setPhase('rolled-back');
    await write('rolled-back');
    await settle();
    return result();
  }

  // --- Migrated: open, pending confirmation -------------------------------------------------------
  outcome = 'migrated';
  if (failures > 0) reason = `${failures} agent(s) rolled back alone (the batch allows ${input.maxFailures})`;
  decision = await awaitDecision({
    what: batch,
    confirmNow: input.autoConfirm,
    refuseRollback: (o) => (o?.restoreData ? restoreRefusal(backup, input.backup, batch, o.components) : undefined),
    units: () => input.units.filter((u) => agents.get(u.name)?.phase === 'migrated'),
    changes: () => changesOf(true),
    rollback: async (o?: RollbackOptions) => {
      const r = await rollBack();
      // The agents are back first; then the data they wrote since the backup is replaced by it.
      if (o?.restoreData) r.restore = await restoreAfterRollback(input.backup, backup, batch, o.components);
      return r;
    },
    onPending: async () => {
      setPhase('pending-confirmation');
      await write('pending-confirmation');
      await settle();
    },
    onDecided: async (r) => {
      notConfirmed = undefined;
      if (r.status === 'confirmed') for (const a of agents.values()) if (a.phase === 'migrated' || a.phase === 'unchanged') agents.set(a.agent, { ...a, phase: 'confirmed' });
      setPhase(r.status === 'confirmed' ? 'confirmed' : 'rolled-back');
      await write(r.status);
    },
    onNotConfirmed: (why) => {
      notConfirmed = why;
      refreshDetails();
    },
  });
  await CancellationScope.nonCancellable(() => condition(allHandlersFinished));
  return result();
}

/** Refuse before any change (GateRefused); returns what every agent runs now. */
async function checkGates(input: BatchInput, hosts: string[], change: string): Promise<UnitsState> {
  const refuse = (message: string) => ApplicationFailure.nonRetryable(`${input.batch} refused before any change: ${message}`, 'GateRefused');

  // 1. The previous batch migrated (and was not rolled back since), unless forced: the ledger says.
  if (input.previousBatch && !input.force) {
    const prev = await ledgerActivities.readChange(input.project, changeKey({ kind: 'batch', name: input.previousBatch }));
    if (!prev) throw refuse(`${input.previousBatch} has not completed (never started): run \`migrate start ${input.previousBatch}\` first, or pass --force`);
    if (prev.status === 'rolled-back') throw refuse(`${input.previousBatch} was rolled back: migrate it again first, or pass --force`);
    if (prev.status !== 'pending-confirmation' && prev.status !== 'confirmed') {
      throw refuse(`${input.previousBatch} has not completed (${prev.status}): wait for it (\`migrate status ${input.previousBatch}\`), or pass --force`);
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
  // 4. No agent keeps a container from another change that is not confirmed.
  const state = await readUnits(input.units);
  const kept = keptRefusals(state, change);
  if (kept.length) throw refuse(kept.join('; '));
  return stateOf(state);
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

/**
 * Run the batches one after the other, durably: the sequence survives the client and any worker.
 * Each batch is started once the one before has migrated (it then stays open, pending confirmation,
 * on its own: the children outlive this workflow).
 */
export async function migrateAllBatches(input: AllBatchesInput): Promise<AllBatchesProgress> {
  const progress: AllBatchesProgress = { runs: {}, results: [] };
  const settled = new Map<string, BatchResult>();
  setHandler(allBatchesProgressQuery, () => progress);
  setHandler(batchSettledSignal, (r) => { settled.set(r.batch, r); });
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
        parentClosePolicy: ParentClosePolicy.ABANDON,
        staticSummary: `${batch.batch}: ${batch.units.length} agent(s) (part of all batches)`,
      });
      progress.runs[batch.batch] = child.firstExecutionRunId;
      let closed: unknown;
      const done = child.result().then((r) => { settled.set(r.batch, r); }, (err: unknown) => { closed = err; });
      await condition(() => settled.has(batch.batch) || closed !== undefined);
      if (closed !== undefined) throw closed;
      void done;
      const result = settled.get(batch.batch)!;
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
