/**
 * One batch at scale: 60 stub agents installed (version 1), then migrated (version 2) in one batch,
 * on a real Temporal dev server and the real Docker engine. Asserts every agent runs version 2 and
 * the batch workflow's history stays under the bound of issue 14 (10,240 events); and, from each
 * agent's history, that it asked its host for the unit's containers and the image once (the swap
 * reuses what the baseline and the judge read), that its looks and its candidate's start ran as
 * local activities on its host's worker (issue #14: no server round trip for them) and the changes
 * to its containers on the host's queue, and that its progress signals carry no
 * settled phase (the result does, and the batch's view of every agent is the result's).
 */
import { afterAll, describe, expect, it } from 'vitest';
import Dockerode from 'dockerode';
import { temporal } from '@temporalio/proto';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { containerName, LABELS } from '../../src/plan/queues.js';
import { STUB_IMAGE } from '../../src/dev/stub-image.js';
import { decideBatch, followBatch, startBatch } from '../../src/ops/index.js';
import { agentWorkflowId, SETTLED_AGENT_PHASES, type AgentProgress } from '../../src/workflows/batch.js';
import { historyCalls } from '../../src/common/history-calls.js';
import { startWorld, type TestWorld } from '../helpers/temporal.js';

const AGENTS = 60;
const HISTORY_EVENT_BOUND = 10_240;
const docker = new Dockerode();
const project = `scale${process.pid}`;
const batch = `scale60-${process.pid}`;
let world: TestWorld | undefined;

afterAll(async () => {
  await world?.close();
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
  await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  const nets = await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } });
  await Promise.all(nets.map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)));
}, 300_000);

describe('a batch at scale (real Temporal dev server, real Docker engine, stub agents)', () => {
  it(`migrates ${AGENTS} agents in one batch, its history under ${HISTORY_EVENT_BOUND} events`, async () => {
    const agents = Array.from({ length: AGENTS }, (_, i) => `Agent${String(i + 1).padStart(2, '0')}`);
    const inventory = parseInventory({
      version: 1,
      project,
      hosts: { pc2: { address: '127.0.0.231' } },
      agents: Object.fromEntries(agents.map((a, i) => [a, {
        placement: { host: 'pc2' }, image: `agentsys/${a.toLowerCase()}:2.0`, ports: [`${7100 + i}:8080`],
        // a generous probe timeout: confirm re-probes all 60 at once on a loaded 2-core machine
        healthcheck: { http: '/health', interval: '200ms', timeout: '5s', retries: 5, start_period: '2s' },
      }])),
      // the latency judge is not under test here: 60 agents on 2 shared cores make p95 noisy
      batches: [{ name: batch, agents, concurrency: 10, max_failures: 0, latency_tolerance: 100 }],
    });
    const plan = buildPlan(inventory);
    world = await startWorld(inventory);
    const at = (v: string) => stubPlan(plan, { image: STUB_IMAGE, version: v });

    let t = performance.now();
    const v1 = await (await startBatch(world.client, at('1'), batch, { samples: 3, autoConfirm: true })).result();
    expect(v1).toMatchObject({ outcome: 'migrated', status: 'confirmed' });
    expect(v1.agents.filter((a) => a.phase === 'confirmed' && a.firstInstall)).toHaveLength(AGENTS);
    const installS = (performance.now() - t) / 1000;

    t = performance.now();
    const handle = await startBatch(world.client, at('2'), batch, { samples: 3 });
    const v2 = await followBatch(handle, undefined, 500);
    const migrateS = (performance.now() - t) / 1000;
    if (v2.outcome !== 'migrated') console.log(v2.agents.filter((a) => a.reason).map((a) => `${a.agent}: ${a.reason}`).join('\n'));
    expect(v2.outcome).toBe('migrated');
    expect(v2.agents.map((a) => a.phase)).toEqual(agents.map(() => 'migrated'));
    // the world: every agent runs version 2
    const running = await docker.listContainers({ filters: { label: [`${LABELS.project}=${project}`], status: ['running'] } });
    const versions = new Map<string, string | undefined>();
    await Promise.all(running.map(async (c) => {
      const env = (await docker.getContainer(c.Id).inspect()).Config.Env;
      versions.set(c.Names[0]!.slice(1), env.find((e) => e.startsWith('AGENT_VERSION='))?.split('=')[1]);
    }));
    for (const a of agents) expect(versions.get(containerName(project, 'pc2', a))).toBe('2');
    // the batch's view of each agent is its result (no late report overwrote it): the new container's id
    const ids = new Map(running.map((c) => [c.Names[0]!.slice(1), c.Id]));
    expect(v2.agents.map((p) => p.newId)).toEqual(agents.map((a) => ids.get(containerName(project, 'pc2', a))));

    // Each agent's history: one look at its containers and its image, local; no signal that the result carries.
    for (const a of agents) {
      const events = (await world.client.workflow.getHandle(agentWorkflowId(batch, a)).fetchHistory()).events ?? [];
      const calls = historyCalls(events);
      expect({ a, unitContainers: calls.filter((c) => c.name === 'unitContainers').length, ensureImage: calls.filter((c) => c.name === 'ensureImage').length })
        .toEqual({ a, unitContainers: 1, ensureImage: 1 });
      // Its looks and its candidate's start ran on its host's own worker, as local activities; only the
      // changes to the unit's containers and the candidate's removal (beside the swap) went through the queue.
      expect({ a, queued: calls.filter((c) => !c.local).map((c) => c.name) }).toEqual({ a, queued: ['removeCandidate', 'replaceContainer'] });
      expect({ a, local: calls.filter((c) => c.local).map((c) => c.name).sort() }).toEqual({ a, local: ['ensureImage', 'sampleLatency', 'startCandidate', 'unitContainers', 'waitHealthy', 'waitHealthy'] });
      // The first three looks went at once (one step), and each health wait brought its sample back.
      expect({ a, first: calls.slice(0, 3).map((c) => c.name).sort() }).toEqual({ a, first: ['ensureImage', 'sampleLatency', 'unitContainers'] });
      const sent = events.flatMap((e) => e.signalExternalWorkflowExecutionInitiatedEventAttributes ?? []);
      const phases = sent.map((s) => (JSON.parse(Buffer.from(s.input!.payloads![0]!.data!).toString()) as AgentProgress).phase);
      expect(phases.filter((p) => SETTLED_AGENT_PHASES.includes(p))).toEqual([]);
      // Only the reports a queued step follows are sent (the baseline's numbers ride with 'judging', the
      // verdict with 'deploying', 'validating' with the result): two signals, not five.
      expect({ a, phases }).toEqual({ a, phases: ['judging', 'deploying'] });
    }

    expect(await decideBatch(world.client, project, batch, 'confirm')).toEqual({ status: 'confirmed' });
    await handle.result();
    const history = await handle.fetchHistory();
    const events = history.events?.length ?? 0;
    const bytes = temporal.api.history.v1.History.encode(history).finish().length;
    console.log(`60-agent batch: install ${installS.toFixed(1)} s, migrate ${migrateS.toFixed(1)} s (concurrency 10); batch history ${events} events, ${bytes} bytes (bound ${HISTORY_EVENT_BOUND} events)`);
    expect(events).toBeGreaterThan(AGENTS); // every agent left a trace in it
    expect(events).toBeLessThan(HISTORY_EVENT_BOUND);
  }, 600_000);
});
