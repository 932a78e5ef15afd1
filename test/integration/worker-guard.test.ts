/**
 * Workers trust nothing: the Docker activities re-check the unit they are handed, on the real
 * engine. A bind of the Docker socket (or /etc) the inventory does not allow, or an extra field,
 * is refused as a non-retryable InvalidSpec and no container is created; the same bind allowed is
 * created. The activity runs in Temporal's activity test environment (real Context).
 */
import { afterAll, describe, expect, it } from 'vitest';
import Dockerode from 'dockerode';
import { MockActivityEnvironment } from '@temporalio/testing';
import { ApplicationFailure } from '@temporalio/common';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan, type UnitSpec } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { LABELS } from '../../src/plan/queues.js';
import { createDockerActivities } from '../../src/activities/docker.js';
import type { HostContext } from '../../src/activities/context.js';
import { STUB_IMAGE } from '../helpers/stub-image.js';

const project = `guard${process.pid}`;
const docker = new Dockerode();
const inventory = parseInventory({
  version: 1,
  project,
  hosts: { edge: { address: '127.0.0.203' } },
  services: {
    Allowed: { image: 'placeholder', volumes: ['/var/run/docker.sock:/var/run/docker.sock:ro'], allow: ['docker-socket'] },
    Plain: { image: 'placeholder', volumes: ['scratch:/scratch'] },
  },
});
const plan = stubPlan(buildPlan(inventory), { image: STUB_IMAGE });
const ctx: HostContext = { host: 'edge', spec: inventory.hosts.edge!, project, docker, identity: 'test', dataDir: '/tmp' };
const acts = createDockerActivities(ctx);
const stamp = { release: 'r1', change: 'guard-test' };
const run = <A extends unknown[], R>(fn: (...a: A) => Promise<R>, ...args: A): Promise<R> => new MockActivityEnvironment().run(fn, ...args) as Promise<R>;

async function projectContainers(unit?: string) {
  return docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`, ...(unit ? [`${LABELS.unit}=${unit}`] : [])] } });
}

async function refusal(unit: unknown): Promise<ApplicationFailure> {
  const err = await run(acts.ensureContainer, unit as UnitSpec, stamp).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ApplicationFailure);
  return err as ApplicationFailure;
}

afterAll(async () => {
  for (const c of await projectContainers()) await docker.getContainer(c.Id).remove({ force: true });
  await docker.getNetwork(`${project}-edge`).remove().catch(() => undefined);
  await docker.getVolume(`${project}-edge-scratch`).remove().catch(() => undefined);
});

describe('a host worker re-checks every unit before touching Docker (real engine)', () => {
  it('a Docker socket bind the inventory does not allow (a forged workflow input) is refused, and nothing is created', async () => {
    const forged = { ...plan.units.Plain!, volumes: [{ type: 'bind', source: '/var/run/docker.sock', target: '/var/run/docker.sock', readOnly: false }] };
    const err = await refusal(forged);
    expect(err.type).toBe('InvalidSpec');
    expect(err.nonRetryable).toBe(true);
    expect(err.message).toContain('binds /var/run/docker.sock');
    expect(err.message).toContain('allow: [docker-socket]');
    expect(await projectContainers('Plain')).toEqual([]);
    // Nor did it get as far as the unit's network.
    expect((await docker.listNetworks({ filters: { name: [`${project}-edge`] } })).filter((n) => n.Name === `${project}-edge`)).toEqual([]);
  });

  it('/etc written as /srv/../etc, and a privileged flag smuggled in, are refused too', async () => {
    const etc = { ...plan.units.Plain!, volumes: [{ type: 'bind', source: '/srv/../etc', target: '/host-etc', readOnly: true }] };
    expect((await refusal(etc)).message).toContain('binds /srv/../etc');
    const privileged = { ...plan.units.Plain!, privileged: true };
    const err = await refusal(privileged);
    expect(err.type).toBe('InvalidSpec');
    expect(err.message).toContain('unknown field(s) privileged');
    expect(await projectContainers()).toEqual([]);
  });

  it('ensureImage refuses the same way (before any build)', async () => {
    const forged = { ...plan.units.Plain!, volumes: [{ type: 'bind', source: '/', target: '/host', readOnly: true }] };
    const err = await run(acts.ensureImage, forged as UnitSpec).then(() => undefined, (e: unknown) => e) as ApplicationFailure;
    expect(err.type).toBe('InvalidSpec');
  });

  it('the same bind, allowed by the inventory, is created and runs with it', async () => {
    const ref = await run(acts.ensureContainer, plan.units.Allowed!, stamp);
    const info = await docker.getContainer(ref.id).inspect();
    expect(info.HostConfig.Binds).toEqual(['/var/run/docker.sock:/var/run/docker.sock:ro']);
    expect(info.HostConfig.Privileged).toBe(false);
    expect(await projectContainers('Allowed')).toHaveLength(1);
  });
});
