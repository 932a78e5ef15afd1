/**
 * The per-host traffic proxy (issue #13): HAProxy from Debian's package in an image built here FROM
 * scratch, owning a published port, its traffic moved between two stub containers (old: version 1,
 * new: version 2) through its runtime API while a client sends requests throughout. Asserts on the
 * answers the client got (which version, how many failed) and on the containers.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import Dockerode from 'dockerode';
import { MockActivityEnvironment } from '@temporalio/testing';
import { createTrafficActivities } from '../../src/activities/traffic.js';
import type { HostContext } from '../../src/activities/context.js';
import { LABELS } from '../../src/plan/queues.js';
import type { UnitRoute } from '../../src/plan/traffic.js';
import { STUB_IMAGE } from '../helpers/stub-image.js';
import { removeProjects } from '../helpers/containers.js';
import { hammer } from '../helpers/hammer.js';

const docker = new Dockerode();
const project = `pdtraffic${process.pid}`;
const address = '127.0.11.20';
let dataDir = '';
afterAll(async () => {
  await removeProjects([project]);
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
});

const run = <A extends unknown[], R>(fn: (...a: A) => Promise<R>, ...args: A): Promise<R> => new MockActivityEnvironment().run(fn, ...args) as Promise<R>;

/** A stub agent of `version` on a port the engine picks on loopback, as a unit's container behind the proxy runs. */
async function stub(name: string, version: string): Promise<{ id: string; ports: Record<string, number> }> {
  const c = await docker.createContainer({
    name: `${project}_${name}`,
    Image: STUB_IMAGE,
    Env: [`AGENT_VERSION=${version}`],
    Labels: { [LABELS.project]: project },
    ExposedPorts: { '8080/tcp': {} },
    HostConfig: { PortBindings: { '8080/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] } },
  });
  await c.start();
  const info = await c.inspect();
  const port = Number(info.NetworkSettings.Ports['8080/tcp']![0]!.HostPort);
  // Listening (the stub starts nc at once; wait for its first answer).
  for (let i = 0; i < 100; i++) {
    if (await fetch(`http://127.0.0.1:${port}/`).then((r) => r.ok, () => false)) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  return { id: info.Id, ports: { '8080/tcp': port } };
}

const client = (port: number) => hammer(address, port);

describe('the traffic proxy (HAProxy, runtime API)', () => {
  it('moves traffic 25 → 50 → 75 → 100 % to the new container with no failed request, and back at once; a second unit is added by a seamless reload', async () => {
    dataDir = await mkdtemp(path.join(os.tmpdir(), 'pd-traffic-'));
    const ctx: HostContext = { host: 'pc2', spec: { address } as HostContext['spec'], project, docker, identity: 'test', dataDir };
    const traffic = createTrafficActivities(ctx);
    const old = await stub('web', '1');
    const next = await stub('web.next', '2');
    const port = 41500;
    const route: UnitRoute = { unit: 'web', ports: [{ hostIp: address, published: port, target: 8080 }], blue: { ports: old.ports, weight: 100 } };
    expect(await run(traffic.routeUnit, route)).toEqual({ reloaded: true });

    const c = client(port);
    await c.more(10);
    expect(new Set(c.seen)).toEqual(new Set(['1']));
    // The new container joins in the green slot with no traffic, then takes it step by step.
    expect(await run(traffic.routeUnit, { ...route, green: { ports: next.ports, weight: 0 } })).toEqual({ reloaded: false });
    const shares: Record<number, number> = {};
    for (const step of [25, 50, 75, 100]) {
      expect(await run(traffic.setTraffic, 'web', 'green', step)).toEqual({ blue: 100 - step, green: step });
      await c.more(1);
      const from = c.seen.length;
      await c.more(40);
      const window = c.seen.slice(from);
      shares[step] = window.filter((v) => v === '2').length / window.length;
    }
    expect(shares[25]).toBeGreaterThan(0.05);
    expect(shares[25]).toBeLessThan(0.5);
    expect(shares[50]).toBeGreaterThan(0.3);
    expect(shares[50]).toBeLessThan(0.7);
    expect(shares[100]).toBe(1);

    // A second unit routed meanwhile: its frontend comes by a reload, the first unit's clients see nothing of it.
    const other = await stub('api', '7');
    expect(await run(traffic.routeUnit, { unit: 'api', ports: [{ hostIp: address, published: port + 1, target: 8080 }], blue: { ports: other.ports, weight: 100 } })).toEqual({ reloaded: true });
    expect(await fetch(`http://${address}:${port + 1}/`).then((r) => r.json())).toMatchObject({ version: '7' });

    // Rollback: all of it back to the old container at once (the very same one: its id never changed).
    await run(traffic.setTraffic, 'web', 'green', 0);
    await c.more(1); // the one request in flight when traffic moved ends where it started
    const from = c.seen.length;
    await c.more(30);
    expect(new Set(c.seen.slice(from))).toEqual(new Set(['1']));
    await c.stop();
    expect(c.failures).toEqual([]);
    expect((await docker.getContainer(old.id).inspect()).State.Running).toBe(true);
    expect(await run(traffic.trafficRoute, 'web')).toMatchObject({ blue: { weight: 100 }, green: { weight: 0 } });
  });
});
