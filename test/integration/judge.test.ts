/**
 * The batch's judge (issue #13) on a real Temporal dev server and the real Docker engine, stub agents:
 * each agent's new version starts beside its old one, both are probed in turn, and the new one is
 * judged against the old (src/plan/judge.ts). Assertions are on the containers and on the evidence
 * each agent's result carries.
 */
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import Dockerode from 'dockerode';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { containerName, LABELS } from '../../src/plan/queues.js';
import { STUB_IMAGE } from '../../src/dev/stub-image.js';
import { followBatch, startBatch } from '../../src/ops/index.js';
import { formatBatch } from '../../src/client/format.js';
import { startWorld, type TestWorld } from '../helpers/temporal.js';
import { inspectStub, removeProjects } from '../helpers/containers.js';

const docker = new Dockerode();
const worlds: TestWorld[] = [];
const projects: string[] = [];
afterEach(async () => { while (worlds.length) await worlds.pop()!.close(); });
afterAll(() => removeProjects(projects));

describe('the judge: new beside old, probed in turn, compared by a sound test', () => {
  it('at concurrency 8, identical versions all pass; an agent 150 ms slower is rolled back alone, with the evidence, on its original container', async () => {
    const project = `pdjudge${process.pid}`;
    projects.push(project);
    const agents = Array.from({ length: 8 }, (_, i) => `Agent${i + 1}`);
    const inventory = parseInventory({
      version: 1,
      project,
      hosts: { pc2: { address: '127.0.11.1' } },
      agents: Object.fromEntries(agents.map((a, i) => [a, {
        placement: { host: 'pc2' },
        image: `agentsys/${a.toLowerCase()}:2.0`,
        ports: [`${41100 + i}:8080`],
        healthcheck: { http: '/health', interval: '200ms', timeout: '2s', retries: 5, start_period: '2s' },
      }])),
      // The defaults: min_effect_ms 20, max_error_rate 0, alpha 0.01; no generous latency_tolerance.
      batches: [{ name: 'pd-judge-1', agents, concurrency: 8, max_failures: 1, analysis: { samples: 20 } }],
    });
    const plan = buildPlan(inventory);
    expect(plan.batches[0]!.analysis).toEqual({ minEffectMs: 20, maxErrorRate: 0, samples: 20, alpha: 0.01, looks: 4 });
    const world = await startWorld(inventory);
    worlds.push(world);
    const v1 = await (await startBatch(world.client, stubPlan(plan, { image: STUB_IMAGE, version: '1' }), 'pd-judge-1', { autoConfirm: true, skipBackup: 'no databases in this test' })).result();
    expect(v1.status).toBe('confirmed');
    const before = Object.fromEntries(await Promise.all(agents.map(async (a) => [a, (await inspectStub(containerName(project, 'pc2', a)))!.id] as const)));

    const v2 = stubPlan(plan, { image: STUB_IMAGE, version: '2', env: { Agent8: { AGENT_LATENCY_MS: '150' } } });
    const r = await followBatch(await startBatch(world.client, v2, 'pd-judge-1', { skipBackup: 'no databases in this test' }));
    expect(r.outcome).toBe('migrated');
    const byAgent = Object.fromEntries(r.agents.map((a) => [a.agent, a]));
    for (const a of agents.slice(0, 7)) {
      expect(byAgent[a], a).toMatchObject({ phase: 'migrated', judge: { verdict: 'pass', test: 'mann-whitney-u', effectMs: 20, looks: 4 } });
      // The sequential judge: 20 probes of each at the first look, doubled at each further one.
      const { samples, look } = byAgent[a]!.judge!;
      expect(samples, a).toEqual({ old: 20 * 2 ** (look! - 1), new: 20 * 2 ** (look! - 1) });
      expect((await inspectStub(containerName(project, 'pc2', a)))!.version).toBe('2');
    }
    // The regression: rolled back alone, never stopped (the new version only ran beside it), with its evidence.
    const slow = byAgent.Agent8!;
    // 150 ms slower is plain at the first look, tested at alpha / looks.
    expect(slow).toMatchObject({ phase: 'rolled-back', judge: { verdict: 'latency-regression', samples: { old: 20, new: 20 }, alpha: 0.0025, look: 1, looks: 4 } });
    expect(slow.judge!.pValue).toBeLessThan(0.0025);
    expect(slow.judge!.p50Ms.new - slow.judge!.p50Ms.old).toBeGreaterThan(100);
    expect(slow.reason).toContain('judge: latency');
    expect(await inspectStub(containerName(project, 'pc2', 'Agent8'))).toMatchObject({ id: before.Agent8, running: true, version: '1' });
    // No candidate is left behind.
    expect(await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`, LABELS.candidate] } })).toEqual([]);
    // `migrate status` shows the decision and its evidence.
    const shown = formatBatch(r);
    expect(shown).toContain('Agent8: latency-regression — mann-whitney-u U=');
    expect(shown).toMatch(/Agent1: pass — mann-whitney-u U=[\d.]+ .* p=[\d.e-]+ vs α=0\.0025 \(look \d of 4\), min effect 20 ms/);
  });
});
