/**
 * Health probes on one host: HTTP, TCP, a command inside the container, the container's own Docker
 * health status, or plain "running". Probes decide readiness themselves — they poll quickly
 * (no 30-second healthcheck-interval floor) — and heartbeat while they wait.
 */
import net from 'node:net';
import { Context, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type { Probe, UnitSpec } from '../plan/plan.js';
import { beat, type HostContext } from './context.js';
import { runTool } from './exec.js';
import { hostPorts } from './docker.js';
import { hostPort } from '../plan/format.js';
import { candidateTarget, type ProbeTarget } from '../plan/judge.js';
import { CANDIDATE_SUFFIX, containerName, LABELS } from '../plan/queues.js';

/** A unit's candidate, as the workflow names it: the host ports its container ports got (`8080/tcp` → 32771). */
export interface CandidatePorts { ports: Record<string, number> }

export interface ProbeResult {
  ok: boolean;
  latencyMs: number;
  detail?: string;
}

export interface HealthyResult {
  unit: string;
  attempts: number;
  /** From the start of waiting until the first passing probe. */
  elapsedMs: number;
  /** Wall-clock time the unit was first seen healthy (ms since epoch); for a one-shot job, when it exited 0. */
  healthyAt: number;
  /** A one-shot job's exit code. */
  exitCode?: number;
  /** Asked for (`then.samples`): the probes taken once it was healthy, in the same call (issue #14). */
  sample?: LatencySample;
  /** The same beside a candidate: the running version and the candidate, in turn. */
  besideSample?: BesideSample;
}

/** What a health wait does next, in the same call, once the unit is healthy: one round trip less. */
export interface ThenSample {
  samples: number;
}

export interface ExitResult {
  unit: string;
  exitCode: number;
  /** Wall-clock time the container exited (ms since epoch, Docker's FinishedAt). */
  finishedAt: number;
  /** From the start of waiting until the exit was seen. */
  elapsedMs: number;
}

export interface LatencySample {
  unit: string;
  samples: number;
  successRate: number;
  p50Ms: number;
  p95Ms: number;
  errors: string[];
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Resolves after `ms`; rejects when `signal` aborts, or has aborted already (during a probe, before this sleep began). */
const sleep = (ms: number, signal?: AbortSignal) =>
  new Promise<void>((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason as Error);
    const onAbort = () => { clearTimeout(t); reject(signal!.reason as Error); };
    const t = setTimeout(() => { signal?.removeEventListener('abort', onAbort); resolve(); }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });

/** Both versions of a unit, probed in turn: each passing probe's latency, and the failed ones. */
export interface BesideSample {
  old: { latenciesMs: number[]; errors: number };
  new: { latenciesMs: number[]; errors: number };
  errorsSeen: string[];
}

/** How long a container its engine may have stopped going down is given to come back (containerState's `mayComeBack`). */
const COMES_BACK_MS = 5_000;

export function createHealthActivities(ctx: HostContext) {
  const { docker, project, host } = ctx;

  async function http(p: Extract<Probe, { kind: 'http' }>, timeoutMs: number): Promise<ProbeResult> {
    const started = performance.now();
    try {
      const res = await fetch(`http://${hostPort(p.address, p.port)}${p.path}`, { signal: AbortSignal.timeout(timeoutMs) });
      await res.arrayBuffer();
      const latencyMs = performance.now() - started;
      return res.ok ? { ok: true, latencyMs } : { ok: false, latencyMs, detail: `HTTP ${res.status}` };
    } catch (err) {
      return { ok: false, latencyMs: performance.now() - started, detail: (err as Error).cause ? String((err as Error & { cause: Error }).cause.message ?? (err as Error).cause) : (err as Error).message };
    }
  }

  function tcp(p: Extract<Probe, { kind: 'tcp' }>, timeoutMs: number): Promise<ProbeResult> {
    const started = performance.now();
    return new Promise((resolve) => {
      const socket = net.connect({ host: p.address, port: p.port });
      const done = (r: ProbeResult) => { socket.destroy(); resolve(r); };
      socket.setTimeout(timeoutMs, () => done({ ok: false, latencyMs: performance.now() - started, detail: 'timeout' }));
      socket.once('connect', () => done({ ok: true, latencyMs: performance.now() - started }));
      socket.once('error', (err) => done({ ok: false, latencyMs: performance.now() - started, detail: err.message }));
    });
  }

  async function exec(name: string, command: string[], timeoutMs: number): Promise<ProbeResult> {
    const started = performance.now();
    try {
      const { code } = await runTool(docker, name, command, { signal: AbortSignal.timeout(timeoutMs) });
      return { ok: code === 0, latencyMs: performance.now() - started, detail: code === 0 ? undefined : `exit code ${code}` };
    } catch (err) {
      return { ok: false, latencyMs: performance.now() - started, detail: (err as Error).message };
    }
  }

  /**
   * The container's state: crashed (gone, exited, restarted), not running yet, or running.
   * `mayComeBack`: it exited, was never restarted, and its restart policy brings it back when its
   * engine starts again: its engine may have stopped it going down (a crash would have restarted it).
   */
  async function containerState(name: string): Promise<{ crashed?: string; notRunning?: string; health?: string; mayComeBack?: boolean }> {
    let state;
    try {
      state = await docker.getContainer(name).inspect();
    } catch (err) {
      if ((err as { statusCode?: number }).statusCode === 404) return { crashed: `container ${name} does not exist` };
      return { notRunning: `its engine does not answer (${(err as Error).message})` };
    }
    if (state.State.Status === 'exited' || state.State.Status === 'dead' || state.RestartCount > 0) {
      const mayComeBack = state.State.Status === 'exited' && state.RestartCount === 0 && ['unless-stopped', 'always'].includes(state.HostConfig.RestartPolicy?.Name ?? '');
      return { crashed: `container ${name} ${state.RestartCount > 0 ? `restarted ${state.RestartCount} time(s)` : `exited with code ${state.State.ExitCode}`}`, mayComeBack };
    }
    if (!state.State.Running) return { notRunning: `container is ${state.State.Status}` };
    return { health: state.State.Health?.Status };
  }

  /**
   * Where this unit's candidate answers, worked out here from the unit's own probe (a worker trusts
   * no probe from a workflow: only the candidate's port numbers travel).
   */
  function candidate(unit: UnitSpec, c: CandidatePorts): ProbeTarget {
    const ports = Object.fromEntries(Object.entries(c.ports).filter(([k, v]) => /^\d+\/(tcp|udp)$/.test(k) && Number.isInteger(v) && v > 0 && v < 65536));
    const target = candidateTarget(unit, { name: `${containerName(project, host, unit.name)}${CANDIDATE_SUFFIX}`, ports });
    if (!target) throw ApplicationFailure.nonRetryable(`${unit.name} on ${host}: its candidate publishes no port for its probe`, 'InvalidSpec');
    return target;
  }

  /**
   * A routed unit's container answers at ports the engine picked, behind the traffic proxy on the
   * published one: the judge probes it there, as it probes the candidate, so that neither version
   * pays the proxy's hop (undefined: the unit publishes its port itself, or is not routed).
   * `suffix`: the routed candidate's (`.next`) instead.
   */
  async function routedTarget(unit: UnitSpec, suffix = ''): Promise<ProbeTarget | undefined> {
    if (unit.probe.kind !== 'http' && unit.probe.kind !== 'tcp') return undefined;
    const name = `${containerName(project, host, unit.name)}${suffix}`;
    const info = await docker.getContainer(name).inspect().catch(() => undefined);
    if (!info?.State.Running || info.Config.Labels?.[LABELS.routed] !== 'true') return undefined;
    return candidateTarget(unit, { name, ports: hostPorts(info) });
  }

  /** A probe over the network (http, tcp, a group's ports): it needs no look at the container. */
  const overNetwork = (unit: UnitSpec) => unit.members !== undefined || unit.probe.kind === 'http' || unit.probe.kind === 'tcp';

  /** The unit's network probe; a candidate (`target`) is probed on its own port, by the unit's main probe. */
  async function networkProbe(unit: UnitSpec, target?: ProbeTarget): Promise<ProbeResult> {
    if (unit.members && !target) {
      // A group: healthy when every agent answers on its own port; as slow as its slowest agent.
      const results = await Promise.all(unit.members.map(async (m) => ({ m, r: m.probe.kind === 'http' ? await http(m.probe, unit.timing.timeoutMs) : await tcp(m.probe, unit.timing.timeoutMs) })));
      const failing = results.filter(({ r }) => !r.ok);
      return {
        ok: failing.length === 0,
        latencyMs: Math.max(...results.map(({ r }) => r.latencyMs)),
        detail: failing.length ? failing.map(({ m, r }) => `${m.name} (${hostPort(m.probe.address, m.probe.port)}): ${r.detail ?? 'failing'}`).join('; ') : undefined,
      };
    }
    const p = target?.probe ?? unit.probe;
    return p.kind === 'http' ? http(p, unit.timing.timeoutMs) : tcp(p as Extract<Probe, { kind: 'tcp' }>, unit.timing.timeoutMs);
  }

  async function probeOnce(unit: UnitSpec, target?: ProbeTarget): Promise<ProbeResult & { crashed?: string; mayComeBack?: boolean }> {
    const name = target?.name ?? containerName(project, host, unit.name);
    const state = await containerState(name);
    if (state.crashed) return { ok: false, latencyMs: 0, crashed: state.crashed, mayComeBack: state.mayComeBack };
    if (state.notRunning) return { ok: false, latencyMs: 0, detail: state.notRunning };
    if (overNetwork(unit)) return networkProbe(unit, target);
    const p = target?.probe ?? unit.probe;
    switch (p.kind) {
      case 'exec': return exec(name, p.command, unit.timing.timeoutMs);
      case 'docker': return { ok: state.health === 'healthy', latencyMs: 0, detail: `docker health ${state.health ?? 'none'}` };
      default: return { ok: true, latencyMs: 0 }; // running
    }
  }

  async function probeNow(unit: UnitSpec): Promise<ProbeResult> {
    const { crashed, ...r } = await probeOnce(unit);
    return crashed ? { ok: false, latencyMs: 0, detail: crashed } : r;
  }

  /**
   * The running version and its candidate, probed in turn (`count` probes each, the order
   * alternating every round so neither always goes first): both are measured under the same
   * load, for the batch's judge.
   */
  async function sampleBeside(unit: UnitSpec, beside: CandidatePorts, count = 40): Promise<BesideSample> {
    // A routed candidate's ports change when it joins the unit's network alias: read where it answers now.
    const target = (await routedTarget(unit, CANDIDATE_SUFFIX)) ?? candidate(unit, beside);
    const oldTarget = await routedTarget(unit);
    const out: BesideSample = { old: { latenciesMs: [], errors: 0 }, new: { latenciesMs: [], errors: 0 }, errorsSeen: [] };
    const probe = async (which: 'old' | 'new') => {
      const r = await probeOnce(unit, which === 'new' ? target : oldTarget);
      if (r.ok) out[which].latenciesMs.push(Math.round(r.latencyMs * 1000) / 1000);
      else {
        out[which].errors++;
        out.errorsSeen.push(`${which}: ${r.crashed ?? r.detail ?? 'failed'}`);
      }
    };
    for (let i = 0; i < count; i++) {
      if (i % 2 === 0) { await probe('old'); await probe('new'); } else { await probe('new'); await probe('old'); }
      beat({ sampled: i }); // every round: two probes on a loaded machine can take seconds
    }
    out.errorsSeen = [...new Set(out.errorsSeen)].slice(0, 5);
    return out;
  }

  /** `count` probes in a row: success rate and latency percentiles (baselines and validation). */
  async function sampleLatency(unit: UnitSpec, count = 20): Promise<LatencySample> {
    const latencies: number[] = [];
    const errors: string[] = [];
    for (let i = 0; i < count; i++) {
      const r = await probeOnce(unit);
      if (r.ok) latencies.push(r.latencyMs);
      else errors.push(r.crashed ?? r.detail ?? 'failed');
      if (i % 5 === 0) beat({ sampled: i });
    }
    latencies.sort((a, b) => a - b);
    return {
      unit: unit.name,
      samples: count,
      successRate: latencies.length / count,
      p50Ms: percentile(latencies, 50),
      p95Ms: percentile(latencies, 95),
      errors: [...new Set(errors)].slice(0, 5),
    };
  }

  return {
    /** One probe, now. */
    probeUnit: probeNow,

    /**
     * One probe of each unit, all at once, in their order: a confirm's re-check of a host's units in
     * one call (issue #14). A probe that throws is a failing probe; it does not fail the others.
     */
    async probeUnits(units: UnitSpec[]): Promise<ProbeResult[]> {
      return Promise.all(units.map((u) => probeNow(u).catch((err: unknown): ProbeResult => ({ ok: false, latencyMs: 0, detail: err instanceof Error ? err.message : String(err) }))));
    },

    /**
     * Wait until the unit passes its probe. Fails (non-retryable) when the container crashes, or
     * when it is still failing after start_period + retries × interval. With `then`, once healthy
     * it takes that many probes in the same call (issue #14: an agent's validation, and the judge's
     * first look beside a candidate): the sample comes back with the result.
     */
    async waitHealthy(unit: UnitSpec, beside?: CandidatePorts, then?: ThenSample): Promise<HealthyResult> {
      const target = beside && candidate(unit, beside);
      const signal = Context.current().cancellationSignal;
      const started = Date.now();
      const { intervalMs, retries, startPeriodMs } = unit.timing;
      const budgetMs = startPeriodMs + retries * intervalMs + unit.timing.timeoutMs;
      // Poll faster than the declared interval. A probe over the network is tried every 20 ms (a
      // refused connection costs next to nothing) and the container is looked at every 250 ms (has
      // it crashed?) and once more when the probe passes; other probes read the container each time,
      // every 100 ms.
      const network = overNetwork(unit);
      const pollMs = network ? 20 : Math.max(50, Math.min(intervalMs, 100));
      const name = target?.name ?? containerName(project, host, unit.name);
      let inspectedAt = 0;
      let attempts = 0;
      let last: ProbeResult & { crashed?: string; mayComeBack?: boolean } = { ok: false, latencyMs: 0 };
      /** When the container was first seen exited in a way its engine going down explains (see containerState). */
      let exitedAt: number | undefined;
      for (;;) {
        attempts++;
        if (!network) {
          last = await probeOnce(unit, target);
        } else {
          const looked = Date.now() - inspectedAt >= 250;
          const state = looked ? await containerState(name) : {};
          if (looked) inspectedAt = Date.now();
          last = state.crashed ? { ok: false, latencyMs: 0, crashed: state.crashed, mayComeBack: state.mayComeBack }
            : state.notRunning ? { ok: false, latencyMs: 0, detail: state.notRunning }
            : await networkProbe(unit, target);
          if (last.ok && !looked) {
            // It answers: healthy only if it is the container that was started (not crashed and restarted).
            const now = await containerState(name);
            if (now.crashed || now.notRunning) last = { ok: false, latencyMs: 0, crashed: now.crashed, mayComeBack: now.mayComeBack, detail: now.notRunning };
          }
        }
        if (last.ok) {
          const healthyAt = Date.now();
          log.info('unit healthy', { unit: unit.name, host, attempts, elapsedMs: healthyAt - started });
          const healthy: HealthyResult = { unit: unit.name, attempts, elapsedMs: healthyAt - started, healthyAt };
          if (!then) return healthy;
          return beside ? { ...healthy, besideSample: await sampleBeside(unit, beside, then.samples) } : { ...healthy, sample: await sampleLatency(unit, then.samples) };
        }
        if (!last.crashed) exitedAt = undefined;
        else if (last.mayComeBack && Date.now() - (exitedAt ??= Date.now()) < COMES_BACK_MS) {
          // Its engine restarting stops it and starts it again within seconds (a crash shows as a
          // restart at once): it is given that long to come back before it counts as crashed.
          inspectedAt = 0;
          last = { ok: false, latencyMs: 0, detail: `${last.crashed}; waiting for its engine to start it again` };
        } else {
          throw ApplicationFailure.nonRetryable(`${unit.name} on ${host} crashed while starting: ${last.crashed}`, 'UnitCrashed');
        }
        if (Date.now() - started > budgetMs) {
          throw ApplicationFailure.nonRetryable(
            `${unit.name} on ${host} is not healthy after ${Math.round((Date.now() - started) / 1000)} s (${unit.probe.kind} probe: ${last.detail ?? 'failing'})`,
            'Unhealthy',
          );
        }
        beat({ attempts, last: last.detail });
        await sleep(pollMs, signal);
      }
    },

    /**
     * A one-shot job (UnitSpec.job): wait until its container has exited and return the exit code
     * (the caller decides what a non-zero code means). Never probed; heartbeats while it runs.
     */
    async waitExit(unit: UnitSpec): Promise<ExitResult> {
      const signal = Context.current().cancellationSignal;
      const name = containerName(project, host, unit.name);
      const started = Date.now();
      for (;;) {
        let state;
        try {
          state = await docker.getContainer(name).inspect();
        } catch {
          throw ApplicationFailure.nonRetryable(`${unit.name} on ${host}: container ${name} does not exist`, 'ContainerMissing');
        }
        if (state.State.Status === 'exited' || state.State.Status === 'dead') {
          const finishedAt = Date.parse(state.State.FinishedAt);
          log.info('job exited', { unit: unit.name, host, exitCode: state.State.ExitCode });
          return { unit: unit.name, exitCode: state.State.ExitCode, finishedAt, elapsedMs: Date.now() - started };
        }
        beat({ status: state.State.Status });
        await sleep(100, signal);
      }
    },

    sampleBeside,
    sampleLatency,
  };
}

export type HealthActivities = ReturnType<typeof createHealthActivities>;
