/**
 * The batch's judge (issue #13): is the new version of an agent worse than the old one?
 *
 * Old and new are sampled under the same conditions — probes interleaved while both run — and
 * compared with sound tests instead of a fixed ratio:
 *
 * - latency: a one-sided Mann-Whitney U test of "new is slower than old by more than the minimum
 *   effect" (the new latencies are shifted down by the effect, then tested as stochastically
 *   greater). Exact distribution for small samples, normal approximation with tie correction else.
 * - errors: the new version's error count against `maxErrorRate` (one-sided binomial test; with a
 *   rate of 0, any failed probe is a regression) — counted only when the new version failed more
 *   probes than the old one in the same window (a timeout both suffered is the machine, not the version).
 *
 * Pure: no I/O, deterministic (safe in workflow code).
 */

import type { Probe, UnitSpec } from './plan.js';

export interface JudgeSettings {
  /** Smallest latency increase (ms) that counts as a regression: smaller ones pass, however significant. */
  minEffectMs: number;
  /** Highest error rate of the new version that is still acceptable (0: any failed probe fails it). */
  maxErrorRate: number;
  /** Probes of each version. */
  samples: number;
  /** Significance level of each one-sided test (split evenly over the looks). */
  alpha: number;
  /**
   * Looks of the sequential judge: an inconclusive first look (neither a regression nor clearly
   * none) takes as many probes again, then twice as many, … up to this many looks; each look tests
   * at alpha / looks, so the whole stays at alpha. Absent: one look.
   */
  looks?: number;
  /**
   * The inventory's older `latency_tolerance` (a multiple of the baseline): kept as a relative
   * minimum effect — the effect used is max(minEffectMs, (latencyTolerance − 1) × old median).
   */
  latencyTolerance?: number;
}

export const DEFAULT_JUDGE: JudgeSettings = { minEffectMs: 20, maxErrorRate: 0, samples: 40, alpha: 0.01, looks: 4 };

/** What one version answered: each passing probe's latency, and the number of failed probes. */
export interface VersionSample { latenciesMs: number[]; errors: number }

export type Verdict = 'pass' | 'latency-regression' | 'error-regression';

export interface JudgeEvidence {
  verdict: Verdict;
  /** One line a person reads: the decision and the numbers behind it. */
  summary: string;
  test: 'mann-whitney-u';
  /** Probes of each version, and how many failed. */
  samples: { old: number; new: number };
  errors: { old: number; new: number };
  p50Ms: { old: number; new: number };
  p95Ms: { old: number; new: number };
  /** The minimum effect (ms) the latency test was run against, and the settings. */
  effectMs: number;
  alpha: number;
  maxErrorRate: number;
  /** Mann-Whitney U of (new − effect) over old, its z score (normal approximation) and one-sided p-value. */
  u: number;
  z: number;
  pValue: number;
  exact: boolean;
  /** One-sided p-value of the new version's error count under maxErrorRate. */
  errorPValue: number;
  /** The sequential judge: this look of how many (each at alpha / looks). */
  look?: number;
  looks?: number;
}

// ---------------------------------------------------------------------------------------------
// Statistics

/** Standard normal CDF. */
export function normalCdf(z: number): number {
  // Φ(z) = ½ erfc(−z/√2); erfc by the Numerical Recipes Chebyshev fit (relative error < 1.2e-7).
  const x = -z / Math.SQRT2;
  const t = 1 / (1 + 0.5 * Math.abs(x));
  const y = t * Math.exp(-x * x - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806
    + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  const erfc = x >= 0 ? y : 2 - y;
  return 0.5 * erfc;
}

export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

/** Exact P(U ≥ u) under H0 for samples of sizes m and n without ties (counts of arrangements). */
function exactUpperTail(m: number, n: number, u: number): number {
  // f[i][j][k]: arrangements of i x's and j y's with U = k (U counts pairs x > y).
  const max = m * n;
  let prev: number[][] = Array.from({ length: n + 1 }, () => [1, ...new Array<number>(max).fill(0)]);
  for (let i = 1; i <= m; i++) {
    const cur: number[][] = [[1, ...new Array<number>(max).fill(0)]];
    for (let j = 1; j <= n; j++) {
      const row = new Array<number>(max + 1).fill(0);
      // The largest value is an x (it beats all j y's) or a y.
      for (let k = 0; k <= max; k++) row[k] = (k >= j ? prev[j]![k - j]! : 0) + cur[j - 1]![k]!;
      cur.push(row);
    }
    prev = cur;
  }
  const counts = prev[n]!;
  const total = counts.reduce((a, b) => a + b, 0);
  let tail = 0;
  for (let k = Math.ceil(u); k <= max; k++) tail += counts[k]!;
  return tail / total;
}

export interface MannWhitney { u: number; z: number; pValue: number; exact: boolean }

/**
 * One-sided Mann-Whitney U test of H1 "x is stochastically greater than y". U counts the pairs
 * (x > y), ties as ½. Exact p-value for small samples without ties, else the normal approximation
 * with tie and continuity corrections.
 */
export function mannWhitneyGreater(x: number[], y: number[]): MannWhitney {
  const m = x.length;
  const n = y.length;
  if (m === 0 || n === 0) return { u: Number.NaN, z: Number.NaN, pValue: 1, exact: false };
  const all = [...x.map((v) => ({ v, g: 0 })), ...y.map((v) => ({ v, g: 1 }))].sort((a, b) => a.v - b.v);
  // Mid-ranks, and the tie groups' sizes.
  let rankSumX = 0;
  let tieTerm = 0;
  let ties = false;
  for (let i = 0; i < all.length;) {
    let j = i;
    while (j + 1 < all.length && all[j + 1]!.v === all[i]!.v) j++;
    const t = j - i + 1;
    if (t > 1) { ties = true; tieTerm += t ** 3 - t; }
    const rank = (i + j + 2) / 2;
    for (let k = i; k <= j; k++) if (all[k]!.g === 0) rankSumX += rank;
    i = j + 1;
  }
  const u = rankSumX - (m * (m + 1)) / 2;
  const N = m + n;
  const mean = (m * n) / 2;
  const variance = ((m * n) / 12) * ((N + 1) - tieTerm / (N * (N - 1)));
  const z = variance > 0 ? (u - mean - 0.5) / Math.sqrt(variance) : 0;
  if (!ties && m * n <= 900) return { u, z, pValue: exactUpperTail(m, n, u), exact: true };
  return { u, z, pValue: variance > 0 ? 1 - normalCdf(z) : 1, exact: false };
}

/** P(X ≥ k) for X ~ Binomial(n, p). */
export function binomialUpperTail(k: number, n: number, p: number): number {
  if (k <= 0) return 1;
  if (p <= 0) return 0;
  if (p >= 1) return 1;
  let term = Math.pow(1 - p, n); // P(X = 0)
  let below = 0;
  for (let i = 0; i < k; i++) {
    below += term;
    term = (term * (n - i) * p) / ((i + 1) * (1 - p));
  }
  return Math.max(0, 1 - below);
}

// ---------------------------------------------------------------------------------------------
// The decision

const round = (v: number, digits = 2) => (Number.isFinite(v) ? Math.round(v * 10 ** digits) / 10 ** digits : v);
const fmtP = (p: number) => (p < 0.0001 ? p.toExponential(1) : String(round(p, 4)));

/** The minimum effect the latency test runs against: the absolute one, or the older relative tolerance. */
export function effectMs(settings: JudgeSettings, oldMedianMs: number): number {
  const relative = settings.latencyTolerance !== undefined && Number.isFinite(oldMedianMs) ? (settings.latencyTolerance - 1) * oldMedianMs : 0;
  return Math.max(settings.minEffectMs, relative);
}

/** Judge the new version against the old one, both sampled under the same conditions. */
export function judge(old: VersionSample, next: VersionSample, settings: JudgeSettings): JudgeEvidence {
  const oldTotal = old.latenciesMs.length + old.errors;
  const newTotal = next.latenciesMs.length + next.errors;
  const oldMedian = percentile(old.latenciesMs, 50);
  const effect = effectMs(settings, oldMedian);
  const mw = mannWhitneyGreater(next.latenciesMs.map((v) => v - effect), old.latenciesMs);
  const errorPValue = settings.maxErrorRate > 0 ? binomialUpperTail(next.errors, newTotal, settings.maxErrorRate) : (next.errors > 0 ? 0 : 1);
  const base = {
    test: 'mann-whitney-u' as const,
    samples: { old: oldTotal, new: newTotal },
    errors: { old: old.errors, new: next.errors },
    p50Ms: { old: round(oldMedian), new: round(percentile(next.latenciesMs, 50)) },
    p95Ms: { old: round(percentile(old.latenciesMs, 95)), new: round(percentile(next.latenciesMs, 95)) },
    effectMs: round(effect),
    alpha: settings.alpha,
    maxErrorRate: settings.maxErrorRate,
    u: round(mw.u, 1),
    z: round(mw.z, 3),
    pValue: mw.pValue,
    exact: mw.exact,
    errorPValue,
  };
  const errorRegression = next.errors > old.errors && (settings.maxErrorRate === 0 || errorPValue < settings.alpha);
  if (errorRegression) {
    return {
      ...base,
      verdict: 'error-regression',
      summary: `error rate: ${next.errors}/${newTotal} probes of the new version failed (old: ${old.errors}/${oldTotal}), above the allowed ${settings.maxErrorRate * 100}%${settings.maxErrorRate > 0 ? ` (binomial p=${fmtP(errorPValue)} < α=${settings.alpha})` : ''}`,
    };
  }
  if (mw.pValue < settings.alpha) {
    return {
      ...base,
      verdict: 'latency-regression',
      summary: `latency: new is slower than old by more than ${round(effect)} ms (Mann-Whitney U=${base.u} of ${next.latenciesMs.length}×${old.latenciesMs.length}, p=${fmtP(mw.pValue)} < α=${settings.alpha}; p50 ${base.p50Ms.old} → ${base.p50Ms.new} ms, p95 ${base.p95Ms.old} → ${base.p95Ms.new} ms)`,
    };
  }
  return {
    ...base,
    verdict: 'pass',
    summary: `pass: not slower than old by ${round(effect)} ms (U=${base.u}, p=${fmtP(mw.pValue)} ≥ α=${settings.alpha}; p50 ${base.p50Ms.old} → ${base.p50Ms.new} ms), ${next.errors}/${newTotal} errors`,
  };
}

// ---------------------------------------------------------------------------------------------
// Sequential looks

/** Above this p-value the first look is taken as no regression: the new version looks no slower by the effect. */
export const INCONCLUSIVE_BELOW = 0.5;

/** Probes of each version to add before look `look` (2, 3, …): the samples so far again, so each look doubles them. */
export function moreSamples(settings: JudgeSettings, look: number): number {
  return settings.samples * 2 ** (look - 2);
}

/**
 * Look `look` (1-based) of the sequential judge at everything sampled so far: its evidence, and
 * whether to sample again (a pass whose latency test is inconclusive, while looks remain). Each look
 * tests at alpha / looks (Bonferroni), so rejecting at any look keeps the error rate at alpha.
 */
export function judgeLook(old: VersionSample, next: VersionSample, settings: JudgeSettings, look: number, totalLooks?: number): { evidence: JudgeEvidence; again: boolean } {
  const looks = Math.max(1, settings.looks ?? 1);
  // A routed agent is judged again at each traffic step: those looks share alpha too.
  const total = Math.max(looks, totalLooks ?? looks);
  const judged = judge(old, next, { ...settings, alpha: settings.alpha / total });
  const evidence = { ...judged, look, looks: total, summary: total > 1 ? `${judged.summary} [look ${look} of at most ${total}]` : judged.summary };
  return { evidence, again: evidence.verdict === 'pass' && look < looks && evidence.pValue < INCONCLUSIVE_BELOW };
}

/** Two samples of the same versions, one after the other, as one. */
export function mergeSamples<T extends { old: VersionSample; new: VersionSample; errorsSeen: string[] }>(a: T, b: T): T {
  const join = (x: VersionSample, y: VersionSample): VersionSample => ({ latenciesMs: [...x.latenciesMs, ...y.latenciesMs], errors: x.errors + y.errors });
  return { ...a, old: join(a.old, b.old), new: join(a.new, b.new), errorsSeen: [...new Set([...a.errorsSeen, ...b.errorsSeen])].slice(0, 5) };
}

// ---------------------------------------------------------------------------------------------
// Where the candidate answers

/** Another container of a unit to probe (its candidate): by name, and where its probe answers. */
export interface ProbeTarget {
  name: string;
  probe: Probe;
}

/**
 * Where the unit's candidate answers its probe: the same probe, on the host port its container
 * port got (`ports`: `8080/tcp` → 32771); exec, docker and running probes are the same probe inside
 * the candidate. Undefined when the probed port has no candidate port. Pure.
 */
export function candidateTarget(unit: UnitSpec, candidate: { name: string; ports: Record<string, number> }): ProbeTarget | undefined {
  const p = unit.probe;
  if (p.kind !== 'http' && p.kind !== 'tcp') return { name: candidate.name, probe: p };
  const mapping = unit.ports.find((m) => m.published === p.port && m.protocol === 'tcp');
  const port = mapping && candidate.ports[`${mapping.target}/tcp`];
  if (!port) return undefined;
  const address = ({ '0.0.0.0': '127.0.0.1', '::': '::1' } as Record<string, string>)[mapping.hostIp] ?? mapping.hostIp;
  return { name: candidate.name, probe: { ...p, address, port } };
}

