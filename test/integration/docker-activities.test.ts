/**
 * The Docker and health activities against the real engine, run through Temporal's activity test
 * environment (real Context: heartbeats, cancellation). The stub image is told to be healthy,
 * unhealthy, slow to start, or to crash, and the probes must tell which.
 */
import { afterAll, describe, expect, it } from 'vitest';
import Dockerode from 'dockerode';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure, CancelledFailure } from '@temporalio/common';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { containerName, LABELS } from '../../src/plan/queues.js';
import { createDockerActivities } from '../../src/activities/docker.js';
import { createHealthActivities } from '../../src/activities/health.js';
import type { HostContext } from '../../src/activities/context.js';
import { STUB_IMAGE } from '../helpers/stub-image.js';

const project = `dockeract${process.pid}`;
const docker = new Dockerode();
const inventory = parseInventory({
  version: 1,
  project,
  hosts: { edge: { address: '127.0.0.61' } },
  agents: Object.fromEntries(
    ['Healthy', 'Sick', 'Slow', 'Crashy'].map((name, i) => [name, {
      image: 'placeholder', ports: [`${17100 + i}:8080`],
      healthcheck: { http: '/health', interval: '100ms', retries: 5, start_period: name === 'Slow' ? '4s' : '0s' },
    }]),
  ),
});
const plan = stubPlan(buildPlan(inventory), {
  image: STUB_IMAGE,
  env: { Sick: { AGENT_MODE: 'unhealthy' }, Slow: { AGENT_START_DELAY: '2' }, Crashy: { AGENT_MODE: 'crash', AGENT_CRASH_AFTER: '0' } },
});
const ctx: HostContext = { host: 'edge', spec: inventory.hosts.edge!, project, docker, identity: 'test', dataDir: '/tmp' };
const dockerActs = createDockerActivities(ctx);
const health = createHealthActivities(ctx);
const run = <A extends unknown[], R>(fn: (...a: A) => Promise<R>, ...args: A): Promise<R> => new MockActivityEnvironment().run(fn, ...args) as Promise<R>;

async function projectContainers() {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
}

afterAll(async () => {
  for (const c of await projectContainers()) await docker.getContainer(c.Id).remove({ force: true });
  await docker.getNetwork(`${project}-edge`).remove().catch(() => undefined);
});

describe('docker activities (real engine)', () => {
  it('ensureContainer is idempotent: a second call reuses, never duplicates', async () => {
    const unit = plan.units.Healthy!;
    const first = await run(dockerActs.ensureContainer, unit, { release: 'r1', change: 'c1' });
    const second = await run(dockerActs.ensureContainer, unit, { release: 'r1', change: 'c1' });
    expect(first.reused).toBe(false);
    expect(second).toMatchObject({ id: first.id, reused: true });
    const mine = (await projectContainers()).filter((c) => c.Labels[LABELS.unit] === 'Healthy');
    expect(mine).toHaveLength(1);
    expect(mine[0]!.Labels).toMatchObject({ [LABELS.release]: 'r1', [LABELS.change]: 'c1', [LABELS.specHash]: unit.specHash, [LABELS.host]: 'edge' });
  });

  it('a stopped container is started again; stopping twice is success', async () => {
    const name = containerName(project, 'edge', 'Healthy');
    await run(dockerActs.stopContainer, name, 1);
    expect(await run(dockerActs.stopContainer, name, 1)).toEqual({ existed: true });
    const again = await run(dockerActs.ensureContainer, plan.units.Healthy!, { release: 'r1', change: 'c1' });
    expect(again.reused).toBe(true);
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);
    expect(await run(dockerActs.removeContainer, 'no-such-container-anywhere')).toEqual({ existed: false });
  });

  it('refuses to replace a container silently; retire keeps it, put-back brings back the very same one', async () => {
    const unit = plan.units.Healthy!;
    const v2 = stubPlan(buildPlan(inventory), { image: STUB_IMAGE, version: '2' }).units.Healthy!;
    const name = containerName(project, 'edge', 'Healthy');
    const before = await docker.getContainer(name).inspect();
    await expect(run(dockerActs.ensureContainer, v2, { release: 'r2', change: 'c2' })).rejects.toMatchObject({ type: 'ContainerConflict' });

    await run(dockerActs.retireContainer, 'Healthy', before.Id);
    expect(await run(dockerActs.retireContainer, 'Healthy', before.Id)).toMatchObject({ name: `${name}.prev`, role: 'previous' }); // idempotent
    const created = await run(dockerActs.ensureContainer, v2, { release: 'r2', change: 'c2' });
    expect(created.id).not.toBe(before.Id);
    await run(health.waitHealthy, v2);

    // A second change before this one is decided is refused: the kept container stays.
    await expect(run(dockerActs.retireContainer, 'Healthy', created.id)).rejects.toMatchObject({ type: 'UnconfirmedPrevious' });
    expect((await docker.getContainer(`${name}.prev`).inspect()).Id).toBe(before.Id);

    expect(await run(dockerActs.putBack, 'Healthy', before.Id)).toEqual({ restored: before.Id, removed: [created.id] });
    const after = await docker.getContainer(name).inspect();
    expect(after.Id).toBe(before.Id);
    expect(after.State.Running).toBe(true);
    expect((await projectContainers()).filter((c) => c.Labels[LABELS.unit] === 'Healthy')).toHaveLength(1);
    await run(health.waitHealthy, unit);
    // Again: nothing left to do, and the running container is left alone.
    expect(await run(dockerActs.putBack, 'Healthy', before.Id)).toEqual({ restored: before.Id, removed: [] });
    expect((await docker.getContainer(name).inspect()).State.StartedAt).toBe(after.State.StartedAt);
  });

  it('replaceContainer (retire + create in one call) is idempotent: retried after it half-happened, or whole, it ends the same; put-back undoes it', async () => {
    const v2 = stubPlan(buildPlan(inventory), { image: STUB_IMAGE, version: '2' }).units.Healthy!;
    const name = containerName(project, 'edge', 'Healthy');
    const old = (await docker.getContainer(name).inspect()).Id;
    // A first attempt that died after the retire, before the create.
    await run(dockerActs.retireContainer, 'Healthy', old);
    const created = await run(dockerActs.replaceContainer, v2, { release: 'r5', change: 'c5' }, old);
    expect(created).toMatchObject({ name, reused: false });
    // Retried once more after it all happened: the same container, nothing created twice.
    expect(await run(dockerActs.replaceContainer, v2, { release: 'r5', change: 'c5' }, old)).toMatchObject({ id: created.id, reused: true });
    const units = (await projectContainers()).filter((c) => c.Labels[LABELS.unit] === 'Healthy');
    expect(units.map((c) => [c.Names[0], c.State]).sort()).toEqual([[`/${name}`, 'running'], [`/${name}.prev`, 'exited']]);
    expect((await docker.getContainer(`${name}.prev`).inspect()).Id).toBe(old);
    expect(await run(dockerActs.putBack, 'Healthy', old)).toEqual({ restored: old, removed: [created.id] });
    expect((await docker.getContainer(name).inspect())).toMatchObject({ Id: old, State: { Running: true } });
  });

  it('put-back retried after its first attempt stopped midway still starts the old container', async () => {
    const v2 = stubPlan(buildPlan(inventory), { image: STUB_IMAGE, version: '2' }).units.Healthy!;
    const name = containerName(project, 'edge', 'Healthy');
    const old = (await docker.getContainer(name).inspect()).Id;
    await run(dockerActs.retireContainer, 'Healthy', old);
    const created = await run(dockerActs.ensureContainer, v2, { release: 'r3', change: 'c3' });

    // Midway 1: the new container was removed, then the attempt died before the rename.
    await docker.getContainer(created.id).remove({ force: true });
    expect(await run(dockerActs.putBack, 'Healthy', old)).toEqual({ restored: old, removed: [] });
    expect((await docker.getContainer(name).inspect())).toMatchObject({ Id: old, State: { Running: true } });

    // Midway 2: renamed back, but the attempt died before the start.
    await run(dockerActs.retireContainer, 'Healthy', old);
    const again = await run(dockerActs.ensureContainer, v2, { release: 'r4', change: 'c4' });
    await docker.getContainer(again.id).remove({ force: true });
    await docker.getContainer(old).rename({ name });
    expect((await docker.getContainer(old).inspect()).State.Running).toBe(false);
    expect(await run(dockerActs.putBack, 'Healthy', old)).toEqual({ restored: old, removed: [] });
    expect((await docker.getContainer(name).inspect())).toMatchObject({ Id: old, State: { Running: true } });
  });

  it('a container of another owner under a unit\'s name is a conflict, never adopted', async () => {
    const name = containerName(project, 'edge', 'Sick');
    await docker.createContainer({ name, Image: STUB_IMAGE, Labels: { [LABELS.project]: `${project}-other` } });
    try {
      await expect(run(dockerActs.ensureContainer, plan.units.Sick!, { release: 'r1', change: 'c1' })).rejects.toMatchObject({ type: 'ContainerConflict' });
      expect((await docker.getContainer(name).inspect()).Config.Labels[LABELS.project]).toBe(`${project}-other`);
    } finally {
      await docker.getContainer(name).remove({ force: true });
    }
  });
});
describe('the stub image and the probes', () => {
  it('healthy: passes at once', async () => {
    const r = await run(health.waitHealthy, plan.units.Healthy!);
    expect(r.elapsedMs).toBeLessThan(5000);
  });

  it('a wait that samples once healthy brings the sample back in the same call; beside a candidate, both versions in turn', async () => {
    const unit = plan.units.Healthy!;
    const r = await run(health.waitHealthy, unit, undefined, { samples: 4 });
    expect(r.sample).toMatchObject({ unit: 'Healthy', samples: 4, successRate: 1, errors: [] });
    expect(r.besideSample).toBeUndefined();
    const candidate = await run(dockerActs.startCandidate, unit, { release: 'r1', change: 'c1' });
    try {
      const beside = await run(health.waitHealthy, unit, { ports: candidate.ports }, { samples: 3 });
      expect(beside.sample).toBeUndefined();
      const sample = beside.besideSample!;
      expect({ old: sample.old.latenciesMs.length, new: sample.new.latenciesMs.length, errors: [sample.old.errors, sample.new.errors, ...sample.errorsSeen] }).toEqual({ old: 3, new: 3, errors: [0, 0] });
    } finally {
      await run(dockerActs.removeCandidate, 'Healthy');
    }
  });

  it('a wait that would sample fails as a plain wait does when the unit never gets healthy: nothing sampled', async () => {
    await run(dockerActs.ensureContainer, plan.units.Sick!, { release: 'r1', change: 'c1' });
    await expect(run(health.waitHealthy, plan.units.Sick!, undefined, { samples: 3 })).rejects.toMatchObject({ type: 'Unhealthy', nonRetryable: true });
  });

  it('unhealthy: listens but fails its HTTP probe, and the wait gives up with the reason', async () => {
    await run(dockerActs.ensureContainer, plan.units.Sick!, { release: 'r1', change: 'c1' });
    const err = await run(health.waitHealthy, plan.units.Sick!).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ApplicationFailure);
    expect(err).toMatchObject({ type: 'Unhealthy', nonRetryable: true });
    expect((err as Error).message).toMatch(/HTTP 503/);
  });

  it('slow to start: healthy only after its start delay, within its start period', async () => {
    const started = Date.now();
    await run(dockerActs.ensureContainer, plan.units.Slow!, { release: 'r1', change: 'c1' });
    const r = await run(health.waitHealthy, plan.units.Slow!);
    expect(Date.now() - started).toBeGreaterThanOrEqual(1900);
    expect(r.attempts).toBeGreaterThan(1);
  });

  it('a wait whose cancel came before it (while its container was made, in the same call) ends as cancelled, not healthy later', async () => {
    await run(dockerActs.ensureContainer, plan.units.Slow!, { release: 'r1', change: 'c1' });
    await docker.getContainer(containerName(project, 'edge', 'Slow')).restart({ t: 0 }); // 2 s from answering again
    const env = new MockActivityEnvironment();
    env.cancel();
    await expect(env.run(health.waitHealthy, plan.units.Slow!)).rejects.toBeInstanceOf(CancelledFailure);
  });

  it('crash: detected as a crash, not waited out', async () => {
    await run(dockerActs.ensureContainer, plan.units.Crashy!, { release: 'r1', change: 'c1' });
    const err = await run(health.waitHealthy, plan.units.Crashy!).catch((e: unknown) => e);
    expect(err).toMatchObject({ type: 'UnitCrashed' });
  });

  it('a healthy agent turned unhealthy at run time is seen as such', async () => {
    const name = containerName(project, 'edge', 'Healthy');
    const exec = await docker.getContainer(name).exec({ Cmd: ['/agent/set', 'mode', 'unhealthy'] });
    await exec.start({ Detach: true });
    await new Promise((r) => setTimeout(r, 200));
    expect(await run(health.probeUnit, plan.units.Healthy!)).toMatchObject({ ok: false, detail: 'HTTP 503' });
    const sample = await run(health.sampleLatency, plan.units.Healthy!, 5);
    expect(sample.successRate).toBe(0);
  });

  it('exec: a command inside the container decides, by its exit code', async () => {
    const healthy = plan.units.Healthy!;
    const passing = { ...healthy, probe: { kind: 'exec' as const, command: ['sh', '-c', 'exit 0'] } };
    const failing = { ...healthy, probe: { kind: 'exec' as const, command: ['sh', '-c', 'exit 3'] } };
    const hanging = { ...healthy, probe: { kind: 'exec' as const, command: ['sleep', '5'] }, timing: { ...healthy.timing, timeoutMs: 300 } };
    expect(await run(health.probeUnit, passing)).toMatchObject({ ok: true });
    expect(await run(health.probeUnit, failing)).toMatchObject({ ok: false, detail: 'exit code 3' });
    const timedOut = await run(health.probeUnit, hanging);
    expect(timedOut.ok).toBe(false);
    expect(timedOut.latencyMs).toBeLessThan(3000);
  });
});
