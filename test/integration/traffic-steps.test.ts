/**
 * Traffic in steps (issue #13, items 1 and 2) on a real Temporal dev server, the real Docker engine
 * and the host's HAProxy traffic proxy: a batch with `traffic:` routes its agents through the proxy,
 * which owns their published ports. A client sends requests to an agent's published port throughout
 * its migration; assertions are on the answers it got (versions, failures), on the containers (ids,
 * names, versions) and on each agent's result.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Dockerode from 'dockerode';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan, type Plan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { containerName, LABELS } from '../../src/plan/queues.js';
import { STUB_IMAGE } from '../../src/dev/stub-image.js';
import { controlBatch, decideBatch, followBatch, startBatch } from '../../src/ops/index.js';
import type { AgentProgress, BatchProgress } from '../../src/workflows/batch.js';
import { formatBatch } from '../../src/client/format.js';
import { startWorld, type TestWorld } from '../helpers/temporal.js';
import { inspectStub, removeProjects } from '../helpers/containers.js';
import { eventually } from '../helpers/eventually.js';
import { hammer } from '../helpers/hammer.js';
import type { Inventory } from '../../src/inventory/schema.js';
import { hostContext } from '../../src/workers/workers.js';
import { keepTrafficRoutes } from '../../src/workers/traffic-keeper.js';

const docker = new Dockerode();
const project = `txsteps${process.pid}`;
const address = '127.0.20.1';
const ports = { Web: 27001, Slow: 27002, Api: 27003, Legacy: 27004, Own: 27005 };
let world: TestWorld;
let plan: Plan;
let inventory: Inventory;

const healthcheck = { http: '/health', interval: '200ms', timeout: '2s', retries: 5, start_period: '2s' };
const agent = (port: number) => ({ placement: { host: 'pc2' }, image: 'agentsys/stub:2.0', ports: [`${port}:8080`], healthcheck });

beforeAll(async () => {
  inventory = parseInventory({
    version: 1,
    project,
    hosts: { pc2: { address } },
    agents: {
      Web: agent(ports.Web), Slow: agent(ports.Slow), Api: agent(ports.Api), Legacy: agent(ports.Legacy),
      // Its own steps: its batch has none.
      Own: { ...agent(ports.Own), traffic: { steps: [25, 100], hold: '3s' } },
    },
    batches: [
      { name: 'tx-cut', agents: ['Web', 'Slow'], concurrency: 2, max_failures: 1, analysis: { samples: 20 }, traffic: { steps: [25, 50, 75, 100], hold: '300ms' } },
      { name: 'tx-step', agents: ['Api'], analysis: { samples: 10 }, traffic: { steps: [25, 50, 75, 100], approve: true } },
      { name: 'tx-hand', agents: ['Legacy'], analysis: { samples: 10 }, traffic: [50, 100] },
      { name: 'tx-own', agents: ['Own'], analysis: { samples: 10 } },
    ],
  });
  plan = buildPlan(inventory);
  expect(plan.batches.map((b) => b.traffic)).toEqual([
    { steps: [25, 50, 75, 100], holdMs: 300, approve: false }, { steps: [25, 50, 75, 100], holdMs: 0, approve: true }, { steps: [50, 100], holdMs: 0, approve: false }, undefined,
  ]);
  world = await startWorld(inventory);
});
afterAll(async () => {
  await world?.close();
  await removeProjects([project]);
});

const client = (port: number) => hammer(address, port);

/** Candidates left behind (`….next`; a promoted one keeps its candidate label, but has the unit's name). */
const candidates = async () => (await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`, LABELS.candidate] } })).filter((c) => c.Names[0]!.endsWith('.next'));
const name = (unit: string) => containerName(project, 'pc2', unit);

describe('traffic in steps through the host\'s proxy', () => {
  it('moves an agent from v1 to v2 in steps with no failed request; a 150 ms slower agent is judged beside and rolled back alone, never stopped', async () => {
    // v1: a first install behind the proxy (the container on an engine-picked port, the proxy on the published one).
    const h1 = await startBatch(world.client, stubPlan(plan, { image: STUB_IMAGE, version: '1' }), 'tx-cut', { autoConfirm: true, skipBackup: 'no databases in this test' });
    if (process.env.TX_DEBUG) await followBatch(h1, (p) => console.log(JSON.stringify(p.agents.map((a) => [a.agent, a.phase, a.reason]))));
    const v1 = await h1.result();
    expect(v1.status).toBe('confirmed');
    expect(v1.agents.map((a) => [a.agent, a.phase, a.routed])).toEqual([['Web', 'confirmed', true], ['Slow', 'confirmed', true]]);
    const before = { Web: (await inspectStub(name('Web')))!, Slow: (await inspectStub(name('Slow')))! };
    expect(before.Web).toMatchObject({ running: true, version: '1' });
    const info = await docker.getContainer(before.Web.id).inspect();
    expect(info.Config.Labels[LABELS.routed]).toBe('true');
    expect(info.HostConfig.RestartPolicy?.Name).toBe('unless-stopped');
    expect(info.NetworkSettings.Ports['8080/tcp']![0]!.HostPort).not.toBe(String(ports.Web)); // the proxy owns the published port

    const web = client(ports.Web);
    const slow = client(ports.Slow);
    await web.more(5);
    const phases = new Set<string>();
    const v2 = stubPlan(plan, { image: STUB_IMAGE, version: '2', env: { Slow: { AGENT_LATENCY_MS: '150' } } });
    const r = await followBatch(await startBatch(world.client, v2, 'tx-cut', { skipBackup: 'no databases in this test' }), (p: BatchProgress) => {
      for (const a of p.agents) if (a.agent === 'Web') phases.add(a.phase);
    });
    await web.more(20);
    expect(r.outcome).toBe('migrated');
    const byAgent = Object.fromEntries(r.agents.map((a) => [a.agent, a])) as Record<string, AgentProgress>;
    expect(byAgent.Web!).toMatchObject({ phase: 'migrated', action: 'replaced', routed: true, previousId: before.Web.id, traffic: 100, judge: { verdict: 'pass' } });
    // Each step was the agent's phase on the way, and at each step short of 100 % the judge looked again.
    for (const step of ['traffic-25', 'traffic-50', 'traffic-75', 'traffic-100']) expect(phases).toContain(step);
    const { look, looks, samples } = byAgent.Web!.judge!;
    expect(looks).toBe(4 + 3);
    expect(look).toBeGreaterThanOrEqual(4);
    expect(samples.old).toBe(samples.new);
    expect(samples.old).toBeGreaterThanOrEqual(20 + 3 * 20);
    // The client saw version 1, then both, then only 2 — and not one failed request.
    expect(web.seen[0]).toBe('1');
    expect(web.seen.slice(-20)).toEqual(new Array(20).fill('2'));
    expect(web.failures).toEqual([]);
    // v2 is the unit's container under its name; v1 is kept, stopped, as `.prev` with its own id.
    const after = (await inspectStub(name('Web')))!;
    expect(after).toMatchObject({ running: true, version: '2', id: byAgent.Web!.newId });
    expect(await inspectStub(`${name('Web')}.prev`)).toEqual({ id: before.Web.id, running: false, version: '1' });
    const promoted = await docker.getContainer(after.id).inspect();
    expect(promoted.HostConfig.RestartPolicy?.Name).toBe('unless-stopped');
    expect(promoted.NetworkSettings.Networks[`${project}-pc2`]!.Aliases).toContain('Web');

    // The slower version: judged beside (evidence kept), rolled back alone; the old one never stopped, all traffic on it.
    expect(byAgent.Slow).toMatchObject({ phase: 'rolled-back', routed: true, judge: { verdict: 'latency-regression', samples: { old: 20, new: 20 } } });
    expect(byAgent.Slow!.judge!.pValue).toBeLessThan(0.01);
    expect(byAgent.Slow!.reason).toContain('judge: latency');
    expect(await inspectStub(name('Slow'))).toEqual({ ...before.Slow, running: true, version: '1' });
    await slow.more(5);
    await slow.stop();
    expect(new Set(slow.seen)).toEqual(new Set(['1']));
    expect(slow.failures).toEqual([]);
    expect(await candidates()).toEqual([]);

    // Confirmed: the kept v1 goes; v2 still answers on the published port, no request failed throughout.
    await decideBatch(world.client, project, 'tx-cut', 'confirm');
    expect(await inspectStub(`${name('Web')}.prev`)).toBeUndefined();
    await web.more(10);
    await web.stop();
    expect(web.failures).toEqual([]);
    expect(web.seen.at(-1)).toBe('2');
  });

  it('when the engine starts a routed container again (new engine-picked ports), the proxy follows it', async () => {
    const keeper = keepTrafficRoutes(hostContext(inventory, 'pc2'), () => undefined);
    try {
      await keeper.ready;
      const id = (await inspectStub(name('Web')))!.id;
      const portOf = async () => (await docker.getContainer(id).inspect()).NetworkSettings.Ports['8080/tcp']![0]!.HostPort;
      const before = await portOf();
      // As a reboot or a crash under the restart policy does: stopped, started again by the engine.
      await docker.getContainer(id).restart({ t: 0 });
      expect(await portOf()).not.toBe(before); // the precondition: the engine picked another port
      const web = client(ports.Web);
      await eventually('Web answers on its published port again', async () => {
        await web.more(1);
        return web.seen.length > 0 ? true : undefined;
      });
      const from = web.seen.length;
      const failed = web.failures.length;
      await web.more(20);
      await web.stop();
      expect(web.seen.length - from).toBeGreaterThanOrEqual(20);
      expect(new Set(web.seen.slice(from))).toEqual(new Set(['2']));
      expect(web.failures.length).toBe(failed); // once followed, not one more failure
    } finally {
      keeper.stop();
    }
  });

  it('a rollback at the 50 % step sends all traffic back to the old container (its original id) at once and leaves nothing of the candidate', async () => {
    const v1 = await (await startBatch(world.client, stubPlan(plan, { image: STUB_IMAGE, version: '1' }), 'tx-step', { autoConfirm: true, force: true, skipBackup: 'no databases in this test' })).result();
    expect(v1.status).toBe('confirmed');
    const before = (await inspectStub(name('Api')))!;
    const api = client(ports.Api);
    await api.more(5);

    const handle = await startBatch(world.client, stubPlan(plan, { image: STUB_IMAGE, version: '2' }), 'tx-step', { force: true, skipBackup: 'no databases in this test' });
    const waitingAt = (step: number) => eventually(`Api waiting for approval at ${step} %`, async () => {
      const p = await handle.query<BatchProgress>('progress');
      const a = p.agents.find((x) => x.agent === 'Api');
      return a?.phase === `traffic-${step}` && a.awaitingApproval && p.awaitingApproval ? a : undefined;
    });
    await waitingAt(25);
    await controlBatch(world.client, 'tx-step', 'approve');
    await waitingAt(50);
    // `migrate status tx-step` shows the step as the agent's phase, and what it waits for.
    expect(formatBatch(await handle.query<BatchProgress>('progress'))).toMatch(/Api .*traffic-50 .*50% of its traffic on the new version; waits for `migrate approve`/);
    // At 50 %: both versions answer on the published port.
    const from = api.seen.length;
    await api.more(40);
    expect(new Set(api.seen.slice(from))).toEqual(new Set(['1', '2']));

    await controlBatch(world.client, 'tx-step', 'abort', 'rollback at 50 %');
    const r = await followBatch(handle);
    expect(r.outcome).toBe('rolled-back');
    expect(r.exact).toBe(true);
    expect(r.agents.find((a) => a.agent === 'Api')).toMatchObject({ phase: 'rolled-back', routed: true, traffic: 50 });
    // All traffic on the old container, the very same one (never stopped); nothing of the candidate left.
    expect(await inspectStub(name('Api'))).toEqual({ ...before, running: true, version: '1' });
    expect(await candidates()).toEqual([]);
    expect(await inspectStub(`${name('Api')}.next`)).toBeUndefined();
    await api.more(1);
    const back = api.seen.length;
    await api.more(30);
    expect(new Set(api.seen.slice(back))).toEqual(new Set(['1']));

    // Migrated all the way (no approvals this time), then the batch rolled back before confirmation:
    // the kept v1 is started again (on new engine-picked ports), takes all the traffic, and v2 goes.
    const again = stubPlan(plan, { image: STUB_IMAGE, version: '2' });
    again.batches = again.batches.map((b) => (b.name === 'tx-step' ? { ...b, traffic: { ...b.traffic!, approve: false } } : b));
    const m = await followBatch(await startBatch(world.client, again, 'tx-step', { force: true, skipBackup: 'no databases in this test' }));
    expect(m.agents[0]).toMatchObject({ phase: 'migrated', routed: true, previousId: before.id });
    expect(await inspectStub(`${name('Api')}.prev`)).toEqual({ ...before, running: false, version: '1' });
    const undone = await decideBatch(world.client, project, 'tx-step', 'rollback');
    expect(undone).toMatchObject({ status: 'rolled-back', exact: true });
    expect(await inspectStub(name('Api'))).toEqual({ ...before, running: true, version: '1' });
    expect(await candidates()).toEqual([]);
    await api.more(1);
    const last = api.seen.length;
    await api.more(20);
    await api.stop();
    expect(new Set(api.seen.slice(last))).toEqual(new Set(['1']));
    expect(api.failures).toEqual([]);
  });

  it('an agent installed before it was routed is handed over to the proxy once (its old container stopped, the proxy binds the port), and a rollback gives the port back to it', async () => {
    const legacy = stubPlan(plan, { image: STUB_IMAGE, version: '1' });
    legacy.batches = legacy.batches.map(({ traffic: _t, ...b }) => b);
    expect((await (await startBatch(world.client, legacy, 'tx-hand', { autoConfirm: true, force: true, skipBackup: 'no databases in this test' })).result()).status).toBe('confirmed');
    const before = (await inspectStub(name('Legacy')))!;
    const published = async (id: string) => (await docker.getContainer(id).inspect()).HostConfig.PortBindings['8080/tcp']?.[0]?.HostPort;
    expect(await published(before.id)).toBe(String(ports.Legacy)); // it holds the published port itself

    const r = await followBatch(await startBatch(world.client, stubPlan(plan, { image: STUB_IMAGE, version: '2' }), 'tx-hand', { force: true, skipBackup: 'no databases in this test' }));
    expect(r.agents[0]).toMatchObject({ phase: 'migrated', routed: true, handover: true, previousId: before.id, judge: { verdict: 'pass' } });
    const now = (await inspectStub(name('Legacy')))!;
    expect(now).toMatchObject({ running: true, version: '2' });
    expect(await published(now.id)).toBe(''); // an engine-picked port: the proxy owns the published one
    expect(await fetch(`http://${address}:${ports.Legacy}/health`).then((x) => x.json())).toMatchObject({ version: '2' });

    const undone = await decideBatch(world.client, project, 'tx-hand', 'rollback');
    expect(undone).toMatchObject({ status: 'rolled-back', exact: true });
    expect(await inspectStub(name('Legacy'))).toEqual({ ...before, running: true, version: '1' });
    expect(await published(before.id)).toBe(String(ports.Legacy));
    expect(await eventually('v1 answers on its published port again', async () => {
      const body = await fetch(`http://${address}:${ports.Legacy}/health`).then((x) => x.json() as Promise<{ version: string }>, () => undefined);
      return body?.version === '1' ? body : undefined;
    })).toMatchObject({ version: '1' });
    expect(await candidates()).toEqual([]);
  });

  it('an agent\'s own steps route it when its batch has none; a paused batch holds it between steps, both versions answering, until resumed', async () => {
    expect((await (await startBatch(world.client, stubPlan(plan, { image: STUB_IMAGE, version: '1' }), 'tx-own', { autoConfirm: true, force: true, skipBackup: 'no databases in this test' })).result()).status).toBe('confirmed');
    const before = (await inspectStub(name('Own')))!;
    const own = client(ports.Own);
    const handle = await startBatch(world.client, stubPlan(plan, { image: STUB_IMAGE, version: '2' }), 'tx-own', { force: true, skipBackup: 'no databases in this test' });
    const agentNow = async () => (await handle.query<BatchProgress>('progress')).agents.find((x) => x.agent === 'Own');
    await eventually('Own at its 25 % step', async () => {
      const a = await agentNow();
      if (process.env.TX_DEBUG) console.log(JSON.stringify(a));
      return a?.phase === 'traffic-25' ? true : undefined;
    });
    await controlBatch(world.client, 'tx-own', 'pause');
    // Past its 3 s hold, it still holds at 25 %: both versions answer on the published port.
    await new Promise((r) => setTimeout(r, 4_500));
    expect(await agentNow()).toMatchObject({ phase: 'traffic-25', traffic: 25, routed: true });
    const from = own.seen.length;
    await own.more(40);
    expect(new Set(own.seen.slice(from))).toEqual(new Set(['1', '2']));
    await controlBatch(world.client, 'tx-own', 'resume');
    const r = await followBatch(handle);
    expect(r.agents[0]).toMatchObject({ phase: 'migrated', routed: true, traffic: 100, previousId: before.id });
    await own.more(1);
    const last = own.seen.length;
    await own.more(20);
    await own.stop();
    expect(new Set(own.seen.slice(last))).toEqual(new Set(['2']));
    expect(own.failures).toEqual([]);
    expect(await decideBatch(world.client, project, 'tx-own', 'confirm')).toMatchObject({ status: 'confirmed' });
  });
});
