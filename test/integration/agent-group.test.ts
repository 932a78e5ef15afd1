/**
 * An agent group (seed 003) in a batch, on a real Temporal dev server and the real Docker engine: one
 * container holding three stub agents, each answering on its own port. It migrates as one unit (one
 * container replaced, every agent's port probed) and rolls back as one unit (its exact previous
 * container, every port answering the old version again).
 */
import { afterAll, describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { containerName, previousName } from '../../src/plan/queues.js';
import { STUB_IMAGE } from '../../src/dev/stub-image.js';
import { decideBatch, followBatch, startBatch } from '../../src/ops/index.js';
import { startWorld, type TestWorld } from '../helpers/temporal.js';
import { inspectStub, removeProjects } from '../helpers/containers.js';

const project = `scgroup${process.pid}`;
const address = '127.0.13.5';
const batch = `scgroup-${process.pid}`;
const ports = { Memory: 43101, Cache: 43102, Context: 43103 };
let world: TestWorld | undefined;

afterAll(async () => {
  await world?.close();
  await removeProjects([project]);
}, 120_000);

/** What each agent of the group answers on its own port: its version, or why it did not. */
async function versions(): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [agent, port] of Object.entries(ports)) {
    try {
      const res = await fetch(`http://${address}:${port}/health`, { signal: AbortSignal.timeout(3000) });
      out[agent] = ((await res.json()) as { version: string }).version;
    } catch (err) {
      out[agent] = `down (${(err as Error).message})`;
    }
  }
  return out;
}

describe('an agent group (real Temporal dev server, real Docker engine, stub agents)', () => {
  it('migrates and rolls back as one unit: one container, every agent\'s port probed', async () => {
    const timing = { interval: '200ms', timeout: '1s', retries: 3, start_period: '1s' };
    const inventory = parseInventory({
      version: 1,
      project,
      hosts: { pc2: { address } },
      agents: {
        'pc2-memory': { placement: { host: 'pc2' }, image: 'agentsys/pc2-memory:2.0', healthcheck: { http: '/health', ...timing }, group: { agents: ports } },
        Solo: { placement: { host: 'pc2' }, image: 'agentsys/solo:2.0', ports: ['43110:8080'], healthcheck: { http: '/health', ...timing } },
      },
      // the latency judge is not under test here (issue #13)
      batches: [{ name: batch, agents: ['Memory', 'Cache', 'Context', 'Solo'], concurrency: 2, max_failures: 1, latency_tolerance: 100 }],
    });
    const plan = buildPlan(inventory);
    expect(plan.batches[0]!.agents).toEqual(['pc2-memory', 'Solo']);
    world = await startWorld(inventory);
    const at = (v: string, env?: Record<string, Record<string, string>>) => stubPlan(plan, { image: STUB_IMAGE, version: v, env });
    const group = containerName(project, 'pc2', 'pc2-memory');

    // Version 1, installed and confirmed: one container answers on the three ports.
    const v1 = await (await startBatch(world.client, at('1'), batch, { samples: 3, force: true, autoConfirm: true })).result();
    expect(v1).toMatchObject({ outcome: 'migrated', status: 'confirmed' });
    const v1Id = (await inspectStub(group))!.id;
    expect(await versions()).toEqual({ Memory: '1', Cache: '1', Context: '1' });

    // Version 2, whose Context agent never answers: the group fails as a whole and is rolled back
    // alone to its exact previous container; Solo migrates.
    const v2 = await followBatch(await startBatch(world.client, at('2', { 'pc2-memory': { AGENT_PORTS: `${ports.Memory} ${ports.Cache}` } }), batch, { samples: 3 }));
    expect(v2.outcome).toBe('migrated');
    const g2 = v2.agents.find((a) => a.agent === 'pc2-memory')!;
    expect(g2.phase).toBe('rolled-back');
    expect(g2.reason).toContain(`Context (${address}:${ports.Context})`);
    expect(await inspectStub(group)).toEqual({ id: v1Id, running: true, version: '1' });
    expect(await inspectStub(previousName(group))).toBeUndefined();
    expect(await versions()).toEqual({ Memory: '1', Cache: '1', Context: '1' });
    expect(await inspectStub(containerName(project, 'pc2', 'Solo'))).toMatchObject({ running: true, version: '2' });
    expect(await decideBatch(world.client, project, batch, 'confirm')).toEqual({ status: 'confirmed' });

    // Version 3, healthy: one new container for the three agents, the old one kept as .prev ...
    const v3handle = await startBatch(world.client, at('3'), batch, { samples: 3 });
    const v3 = await followBatch(v3handle);
    expect(v3.agents.map((a) => [a.agent, a.phase])).toEqual([['pc2-memory', 'migrated'], ['Solo', 'migrated']]);
    expect(await inspectStub(group)).toMatchObject({ running: true, version: '3' });
    expect(await inspectStub(previousName(group))).toEqual({ id: v1Id, running: false, version: '1' });
    expect(await versions()).toEqual({ Memory: '3', Cache: '3', Context: '3' });

    // ... and `migrate rollback` puts the whole group back on that container.
    expect(await decideBatch(world.client, project, batch, 'rollback')).toMatchObject({ status: 'rolled-back', exact: true });
    await v3handle.result();
    expect(await inspectStub(group)).toEqual({ id: v1Id, running: true, version: '1' });
    expect(await versions()).toEqual({ Memory: '1', Cache: '1', Context: '1' });
  }, 180_000);
});
