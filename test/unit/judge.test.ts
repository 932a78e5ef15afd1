/** The batch's judge (issue #13): its statistics against reference values (SciPy), and its decisions. */
import { describe, expect, it } from 'vitest';
import { binomialUpperTail, DEFAULT_JUDGE, effectMs, judge, judgeLook, mannWhitneyGreater, mergeSamples, moreSamples, normalCdf, type JudgeSettings } from '../../src/plan/judge.js';

/** A deterministic pseudo-random stream (mulberry32), so the decisions below are reproducible. */
function rng(seed: number) {
  let a = seed;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
/** Loopback-like latencies: a few ms, with a heavy tail of scheduler hiccups. */
const latencies = (r: () => number, n: number, shift = 0) =>
  Array.from({ length: n }, () => 2 + r() * 3 + (r() < 0.1 ? r() * 80 : 0) + shift);

describe('statistics', () => {
  it('normalCdf matches the standard normal', () => {
    expect(normalCdf(0)).toBeCloseTo(0.5, 6);
    expect(normalCdf(1.959964)).toBeCloseTo(0.975, 5);
    expect(normalCdf(-2.326348)).toBeCloseTo(0.01, 5);
  });

  it('Mann-Whitney U: exact p-values as SciPy computes them', () => {
    expect(mannWhitneyGreater([5, 6, 7, 8], [1, 2, 3, 4.5])).toMatchObject({ u: 16, exact: true });
    expect(mannWhitneyGreater([5, 6, 7, 8], [1, 2, 3, 4.5]).pValue).toBeCloseTo(0.0142857, 6);
    expect(mannWhitneyGreater([3, 6, 7, 1.5, 9], [1, 2, 3.5, 4.5, 8]).pValue).toBeCloseTo(0.2738095, 6);
  });

  it('Mann-Whitney U: the normal approximation with ties as SciPy computes it', () => {
    const x = Array.from({ length: 5 }, () => [1, 2, 2, 3, 4, 5, 5, 6]).flat();
    const y = Array.from({ length: 5 }, () => [1, 1, 2, 3, 3, 4, 4, 5]).flat();
    const r = mannWhitneyGreater(x, y);
    expect(r).toMatchObject({ u: 975, exact: false });
    expect(r.pValue).toBeCloseTo(0.0438568, 4);
  });

  it('binomial upper tail', () => {
    expect(binomialUpperTail(0, 10, 0.1)).toBe(1);
    expect(binomialUpperTail(1, 10, 0.1)).toBeCloseTo(1 - 0.9 ** 10, 10);
    expect(binomialUpperTail(3, 40, 0.01)).toBeCloseTo(0.00752, 4); // SciPy: binom.sf(2, 40, 0.01)
  });
});

describe('judge', () => {
  it('identical versions pass, even with a heavy tail (1000 reproducible trials: no false rollback)', () => {
    const r = rng(1);
    let rejected = 0;
    for (let i = 0; i < 1000; i++) {
      const e = judge({ latenciesMs: latencies(r, 40), errors: 0 }, { latenciesMs: latencies(r, 40), errors: 0 }, DEFAULT_JUDGE);
      if (e.verdict !== 'pass') rejected++;
    }
    expect(rejected).toBe(0);
  });

  it('without a minimum effect, identical versions are rejected about α of the time (the test is calibrated)', () => {
    const r = rng(2);
    let rejected = 0;
    for (let i = 0; i < 2000; i++) {
      if (judge({ latenciesMs: latencies(r, 40), errors: 0 }, { latenciesMs: latencies(r, 40), errors: 0 }, { ...DEFAULT_JUDGE, minEffectMs: 0, alpha: 0.05 }).verdict !== 'pass') rejected++;
    }
    expect(rejected / 2000).toBeGreaterThan(0.02);
    expect(rejected / 2000).toBeLessThan(0.08);
  });

  it('+50 ms is caught every time, with the evidence', () => {
    const r = rng(3);
    for (let i = 0; i < 200; i++) {
      const e = judge({ latenciesMs: latencies(r, 40), errors: 0 }, { latenciesMs: latencies(r, 40, 50), errors: 0 }, DEFAULT_JUDGE);
      expect(e.verdict).toBe('latency-regression');
    }
    const e = judge({ latenciesMs: latencies(r, 40), errors: 0 }, { latenciesMs: latencies(r, 40, 50), errors: 0 }, DEFAULT_JUDGE);
    expect(e).toMatchObject({ test: 'mann-whitney-u', samples: { old: 40, new: 40 }, effectMs: 20, alpha: 0.01 });
    expect(e.pValue).toBeLessThan(0.01);
    expect(e.summary).toContain('slower than old by more than 20 ms');
  });

  it('a regression smaller than the minimum effect passes; a larger one with few samples (5) is still caught', () => {
    const r = rng(4);
    expect(judge({ latenciesMs: latencies(r, 40), errors: 0 }, { latenciesMs: latencies(r, 40, 10), errors: 0 }, DEFAULT_JUDGE).verdict).toBe('pass');
    expect(judge({ latenciesMs: [2, 3, 2.5, 4, 3.2], errors: 0 }, { latenciesMs: [302, 303, 302.5, 304, 303.2], errors: 0 }, DEFAULT_JUDGE).verdict).toBe('latency-regression');
  });

  it('errors: any failed probe fails at max_error_rate 0; a rate above max_error_rate fails, a rate within it passes', () => {
    const r = rng(5);
    expect(judge({ latenciesMs: latencies(r, 40), errors: 0 }, { latenciesMs: latencies(r, 39), errors: 1 }, DEFAULT_JUDGE).verdict).toBe('error-regression');
    const loose = { ...DEFAULT_JUDGE, maxErrorRate: 0.01, samples: 100 };
    expect(judge({ latenciesMs: latencies(r, 100), errors: 0 }, { latenciesMs: latencies(r, 99), errors: 1 }, loose).verdict).toBe('pass');
    const e = judge({ latenciesMs: latencies(r, 100), errors: 0 }, { latenciesMs: latencies(r, 92), errors: 8 }, loose);
    expect(e.verdict).toBe('error-regression');
    expect(e.errorPValue).toBeLessThan(0.01);
  });

  it('errors both versions suffered in the same window (the machine, not the version) do not fail the new one', () => {
    const r = rng(6);
    expect(judge({ latenciesMs: latencies(r, 39), errors: 1 }, { latenciesMs: latencies(r, 39), errors: 1 }, DEFAULT_JUDGE).verdict).toBe('pass');
    expect(judge({ latenciesMs: latencies(r, 39), errors: 1 }, { latenciesMs: latencies(r, 38), errors: 2 }, DEFAULT_JUDGE).verdict).toBe('error-regression');
  });

  it('latency_tolerance maps to a relative minimum effect: max(min_effect_ms, (tolerance − 1) × old median)', () => {
    expect(effectMs({ ...DEFAULT_JUDGE, latencyTolerance: 1.5 }, 10)).toBe(20);
    expect(effectMs({ ...DEFAULT_JUDGE, latencyTolerance: 3 }, 40)).toBe(80);
    expect(effectMs(DEFAULT_JUDGE, 40)).toBe(20);
  });
});

describe('the sequential judge', () => {
  /** Latencies like the stub's at concurrency 20 on this 2-core machine: 60–180 ms, with a tail of hiccups up to 400 ms more. */
  const loaded = (r: () => number, n: number, shift = 0) =>
    Array.from({ length: n }, () => 60 + r() * 120 + (r() < 0.3 ? r() * 400 : 0) + shift);
  /** Runs the looks as the batch workflow does, sampling each version with `draw`. */
  function run(r: () => number, settings: JudgeSettings, shift: number) {
    const draw = (n: number) => ({ old: { latenciesMs: loaded(r, n), errors: 0 }, new: { latenciesMs: loaded(r, n, shift), errors: 0 }, errorsSeen: [] as string[] });
    let sample = draw(settings.samples);
    for (let look = 1; ; look++) {
      const { evidence, again } = judgeLook(sample.old, sample.new, settings, look);
      if (!again) return evidence;
      sample = mergeSamples(sample, draw(moreSamples(settings, look + 1)));
    }
  }

  it('each look doubles the probes: 40, then 40, 80 and 160 more', () => {
    expect([2, 3, 4].map((look) => moreSamples(DEFAULT_JUDGE, look))).toEqual([40, 80, 160]);
  });

  it('catches +50 ms in noise where one look of 40 probes misses it, and still passes identical versions', () => {
    const r = rng(13);
    const trials = 200;
    let oneLook = 0;
    let sequential = 0;
    let falseRollbacks = 0;
    for (let i = 0; i < trials; i++) {
      if (judge({ latenciesMs: loaded(r, 40), errors: 0 }, { latenciesMs: loaded(r, 40, 50), errors: 0 }, DEFAULT_JUDGE).verdict !== 'pass') oneLook++;
      const e = run(r, DEFAULT_JUDGE, 50);
      if (e.verdict === 'latency-regression') sequential++;
      if (run(r, DEFAULT_JUDGE, 0).verdict !== 'pass') falseRollbacks++;
    }
    expect(oneLook / trials).toBeLessThan(0.5);
    expect(sequential / trials).toBeGreaterThanOrEqual(0.97);
    expect(falseRollbacks).toBe(0);
  });

  it('stays calibrated: without a minimum effect, identical versions are rejected at most about α of the time over all looks', () => {
    const r = rng(5);
    let rejected = 0;
    const trials = 1000;
    for (let i = 0; i < trials; i++) if (run(r, { ...DEFAULT_JUDGE, minEffectMs: 0, alpha: 0.05, samples: 20 }, 0).verdict !== 'pass') rejected++;
    expect(rejected / trials).toBeLessThanOrEqual(0.05 + 0.02);
  });

  it('a clear regression is rejected at the first look, tested at alpha / looks', () => {
    const e = run(rng(3), DEFAULT_JUDGE, 150);
    expect(e).toMatchObject({ verdict: 'latency-regression', look: 1, looks: 4, alpha: 0.0025, samples: { old: 40, new: 40 } });
    expect(e.summary).toContain('[look 1 of at most 4]');
  });
});

describe('a routed agent\'s looks at its traffic steps', () => {
  it('share alpha with the first looks: alpha / (looks + steps judged), and add no look of their own to the first phase', () => {
    const old = { latenciesMs: Array.from({ length: 40 }, (_, i) => 100 + (i % 10)), errors: 0 };
    const { evidence, again } = judgeLook(old, old, DEFAULT_JUDGE, 5, 7);
    expect(evidence).toMatchObject({ verdict: 'pass', look: 5, looks: 7, alpha: 0.01 / 7 });
    expect(evidence.summary).toContain('[look 5 of at most 7]');
    expect(again).toBe(false); // past the first phase's 4 looks: the steps take the next ones
    expect(judgeLook(old, { ...old, errors: 1 }, DEFAULT_JUDGE, 6, 7).evidence.verdict).toBe('error-regression');
  });
});
