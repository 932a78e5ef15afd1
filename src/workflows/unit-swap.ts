/**
 * The one unit-swap procedure of every change, deploy or batch:
 *
 *   refuse   — a unit that still keeps a container from another unconfirmed change is not touched;
 *   ensure the image; a GPU unit passes the GPU gate (its GPUs' free memory, on the host);
 *   retire   — the running container is stopped and kept as `.prev` (its undo, put-back, is logged
 *              first: if the retire half-happens, putting back is still right);
 *   ensure   — the new container, created and started (with `replaceInOneCall`, the retire and this
 *              are one call on the host; with `startHealthy`, this and the wait below are);
 *   wait healthy (a one-shot job: wait for its exit 0), then validate (the caller's check: a batch's latency judge);
 *   keep `.prev` until the change is confirmed — or put back.
 *
 * A failure before the retire restores nothing: the running container is never touched. Every
 * undo step finds the containers by label and id wherever an earlier attempt left them
 * (`putBack`), so it can be retried after any crash. After a rollback, `differences` compares each
 * unit with what ran before the change.
 *
 * Deterministic: activity calls only.
 */
import { ApplicationFailure, CancellationScope, log } from '@temporalio/workflow';
import type { ChangeStamp, UnitContainers } from '../activities/docker.js';
import type { HealthyResult } from '../activities/health.js';
import type { UnitSpec } from '../plan/plan.js';
import type { UnitChange } from './ledger.js';
import { ERRORS, onHost } from './profiles.js';

/** A step that puts a unit back, logged before the forward step it undoes. */
export interface UndoStep {
  unit: string;
  what: string;
  run: () => Promise<unknown>;
}

export interface SwapOptions {
  project: string;
  stamp: ChangeStamp;
  /** Undo steps are appended here as the swap goes. */
  undo: UndoStep[];
  /** Called between steps: throw to stop (an abort, another unit's failure). */
  checkpoint?: () => void;
  /** Run the health wait in a scope the caller can cancel. */
  healthScope?: (wait: () => Promise<HealthyResult>) => Promise<HealthyResult>;
  /**
   * After the health wait: throw to fail the swap (it is then put back by the caller's undo). It
   * gets the wait's result: with `sampleWhenHealthy`, its sample.
   */
  validate?: (change: UnitChange, healthy: HealthyResult) => Promise<void>;
  /** The health wait also takes this many probes once healthy, in the same call (issue #14): one round trip less. */
  sampleWhenHealthy?: number;
  /** Told the container ids as soon as they are known. */
  onChange?: (change: UnitChange) => void;
  /**
   * What the caller read of the unit's containers just before (`unitContainers`), and whether it
   * made sure of the image: not asked of the host again (issue #14). The retire and the create check
   * the containers again on the host, so a state that changed meanwhile is refused there, not acted on.
   */
  known?: { state: UnitContainers; imageReady?: boolean };
  /** The caller runs on the unit's host's worker: its calls are local activities there (issue #14). */
  local?: boolean;
  /** A replaced unit's retire and creation are one call (`replaceContainer`, issue #14): one round trip less. */
  replaceInOneCall?: boolean;
  /**
   * The container is made and started, then waited for, in one call (`startHealthy`, issue #14):
   * one round trip less. `onChange` then learns its id once it is healthy (not for a caller that
   * needs to know when it is started), and a one-shot job is still waited for on its own.
   */
  startHealthy?: boolean;
}

/** Why a unit cannot be changed now (it keeps another change's unconfirmed container), or undefined. */
export function keptByAnotherChange(unit: string, state: UnitContainers, change: string): string | undefined {
  const kept = state.previous;
  if (!kept || kept.change === change) return undefined;
  return `${unit} still keeps ${kept.name} (${kept.id.slice(0, 12)}, made by ${kept.change ?? 'an earlier change'}) for a change not yet confirmed: confirm or roll back that change first (migrate confirm|rollback; if its workflow is gone, \`docker rm ${kept.name}\` drops the way back by hand)`;
}

/** Whether the unit already runs a container of its spec: a swap reuses it untouched. Pure. */
export function runsSpec(state: UnitContainers, unit: Pick<UnitSpec, 'specHash'>): boolean {
  return state.current?.specHash === unit.specHash && state.current.running;
}

/**
 * Swap one unit to `unit`'s spec. Returns what it did; throws (after logging its undo steps) when a
 * step fails. Reuses a running container of the same spec untouched.
 */
export async function swapUnit(unit: UnitSpec, options: SwapOptions): Promise<UnitChange> {
  const local = options.local ?? false;
  const { docker, image, health, gate } = onHost(unit.host, local);
  const check = options.checkpoint ?? (() => undefined);
  const change: UnitChange = { unit: unit.name, host: unit.host };
  const tell = (patch: Partial<UnitChange>) => { Object.assign(change, patch); options.onChange?.({ ...change }); };

  const state = options.known?.state ?? await docker.unitContainers(unit.name);
  const refusal = keptByAnotherChange(unit.name, state, options.stamp.change);
  if (refusal) throw ApplicationFailure.nonRetryable(refusal, ERRORS.unconfirmedPrevious);
  const current = state.current;
  if (current && runsSpec(state, unit)) {
    tell({ action: 'reused', newId: current.id });
    return change;
  }
  if (!options.known?.imageReady) await image.ensureImage(unit);
  // The GPU gate on the host: too little free GPU memory fails this unit here, before anything stops.
  if (unit.gpu) await gate.reserveGpu(unit.name, { ...unit.gpu, indexes: unit.gpuIndexes });
  check();

  // Each undo step is logged before the forward step it undoes.
  if (current && current.specHash === unit.specHash) {
    tell({ action: 'restarted', previousId: current.id });
    options.undo.push({ unit: unit.name, what: `stop ${current.name} again`, run: () => undoChange({ ...change }, local) });
  } else if (current) {
    tell({ action: 'replaced', previousId: current.id });
    options.undo.push({ unit: unit.name, what: `put ${current.name} back`, run: () => undoChange({ ...change }, local) });
    if (!options.replaceInOneCall) await docker.retireContainer(unit.name, current.id);
  } else {
    tell({ action: 'new' });
    options.undo.push({ unit: unit.name, what: `remove ${unit.name}'s new container`, run: () => undoChange({ ...change }, local) });
  }
  check();
  const then = options.sampleWhenHealthy ? { samples: options.sampleWhenHealthy } : undefined;
  const inScope = (wait: () => Promise<HealthyResult>) => (options.healthScope ? options.healthScope(wait) : wait());
  let healthy: HealthyResult;
  if (options.startHealthy && !unit.job && !(change.action === 'replaced' && options.replaceInOneCall)) {
    healthy = await inScope(async () => {
      const started = await onHost(unit.host, local).start.startHealthy(unit, options.stamp, then);
      tell({ newId: started.container.id });
      return started;
    });
  } else {
    const created = change.action === 'replaced' && options.replaceInOneCall
      ? await docker.replaceContainer(unit, options.stamp, current!.id)
      : await docker.ensureContainer(unit, options.stamp);
    tell({ newId: created.id });
    // A one-shot job is not probed: its exit 0 is its success (and a non-zero exit its failure).
    healthy = await inScope(unit.job ? () => waitJob(unit, local) : () => health.waitHealthy(unit, undefined, then));
  }
  check();
  await options.validate?.({ ...change }, healthy);
  return change;
}

/** Wait for a one-shot job's exit; anything but 0 fails the swap. */
async function waitJob(unit: UnitSpec, local: boolean): Promise<HealthyResult> {
  const exited = await onHost(unit.host, local).health.waitExit(unit);
  if (exited.exitCode !== 0) {
    throw ApplicationFailure.nonRetryable(`${unit.name} on ${unit.host} is a one-shot job and exited with code ${exited.exitCode} (see \`docker logs\` of its container)`, ERRORS.jobFailed);
  }
  return { unit: unit.name, attempts: 1, elapsedMs: exited.elapsedMs, healthyAt: exited.finishedAt, exitCode: 0 };
}

/**
 * Undo what a swap did to one unit, from wherever it got to: a replaced unit gets its previous
 * container back, a new one is removed, a restarted one is stopped again, a reused one is left.
 * Idempotent; retried until the host answers. `local`: the caller runs on the host's worker (issue #14).
 */
export async function undoChange(change: UnitChange, local = false): Promise<void> {
  const { undo } = onHost(change.host, local);
  if (change.routed) return undoRouted(change, local);
  switch (change.action) {
    case 'replaced': await undo.putBack(change.unit, change.previousId); break;
    case 'new': await undo.putBack(change.unit); break;
    case 'restarted': await undo.stopContainer(change.previousId!); break;
    default: break;
  }
}

/**
 * Undo a routed unit's change (issue #13): its previous container is started again (it was stopped
 * as `.prev`; its engine-picked ports are read again) and takes all the traffic before the new one
 * is removed; after a first install the proxy lets the published ports go, and after a handover
 * (the previous container published the port itself) it lets them go before that one is put back.
 * Idempotent.
 */
async function undoRouted(change: UnitChange, local: boolean): Promise<void> {
  const { undo } = onHost(change.host, local);
  if (change.handover) {
    // Its previous container published the port itself: the proxy lets the port go, then it is put back on it.
    await undo.unrouteUnit(change.unit);
    await undo.putBack(change.unit, change.previousId);
  } else if (change.previousId) {
    await undo.startContainer(change.previousId);
    await undo.routeContainers(change.unit, { blue: { id: change.previousId, weight: 100 } });
    await undo.putBack(change.unit, change.previousId);
  } else {
    await undo.unrouteUnit(change.unit);
    await undo.putBack(change.unit);
  }
  await undo.removeCandidate(change.unit);
}

/** Run the undo steps of each unit, newest first; units wave by wave (each wave in parallel). Never cancelled. */
export async function undoUnits(steps: UndoStep[], waves: string[][], onUnit?: (unit: string) => void): Promise<void> {
  await CancellationScope.nonCancellable(async () => {
    const byUnit = new Map<string, UndoStep[]>();
    for (const s of steps) byUnit.set(s.unit, [...(byUnit.get(s.unit) ?? []), s]);
    for (const wave of waves) {
      await Promise.all(wave.filter((u) => byUnit.has(u)).map(async (u) => {
        for (const step of [...byUnit.get(u)!].reverse()) {
          log.info('undo', { unit: u, step: step.what });
          await step.run();
        }
        onUnit?.(u);
      }));
    }
  });
}

/** What each unit runs: its current container's id and whether it runs, and the kept one. */
export interface UnitState {
  current?: { id: string; running: boolean };
  previous?: string;
}
export type UnitsState = Record<string, UnitState>;

/** The units' containers, host by host (one engine call per host), keyed `host/unit`. */
export async function readUnits(units: Pick<UnitSpec, 'name' | 'host'>[], profile: 'docker' | 'undo' = 'docker'): Promise<Record<string, UnitContainers>> {
  const hosts = [...new Set(units.map((u) => u.host))].sort();
  const out: Record<string, UnitContainers> = {};
  await Promise.all(hosts.map(async (h) => {
    const states = await onHost(h)[profile].unitsState(units.filter((u) => u.host === h).map((u) => u.name));
    for (const [unit, s] of Object.entries(states)) out[`${h}/${unit}`] = s;
  }));
  return out;
}

/** What each unit runs, for comparing before and after. Pure. */
export function stateOf(raw: Record<string, UnitContainers>): UnitsState {
  return Object.fromEntries(Object.entries(raw).map(([key, s]) => [key, { current: s.current && { id: s.current.id, running: s.current.running }, previous: s.previous?.id }]));
}

/** Every unit that keeps another change's unconfirmed container, in words. Pure. */
export function keptRefusals(raw: Record<string, UnitContainers>, change: string): string[] {
  return Object.entries(raw).flatMap(([key, s]) => keptByAnotherChange(key, s, change) ?? []).sort();
}

/** Each unit whose containers differ between two states, in words; empty when they are the same. Pure. */
export function differences(before: UnitsState, after: UnitsState): string[] {
  const out: string[] = [];
  const show = (s?: UnitState) => (s?.current ? `${s.current.id.slice(0, 12)} (${s.current.running ? 'running' : 'stopped'})` : 'nothing');
  for (const key of [...new Set([...Object.keys(before), ...Object.keys(after)])].sort()) {
    const a = before[key];
    const b = after[key];
    if (a?.current?.id !== b?.current?.id || a?.current?.running !== b?.current?.running) out.push(`${key}: ran ${show(a)} before, runs ${show(b)} now`);
    else if (a?.previous !== b?.previous) out.push(`${key}: kept ${a?.previous?.slice(0, 12) ?? 'nothing'} before, keeps ${b?.previous?.slice(0, 12) ?? 'nothing'} now`);
  }
  return out;
}
