/** Cross-host service discovery in the plan: which dependencies cross hosts, and how they resolve. */
import { describe, expect, it } from 'vitest';
import { InventoryError, parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { crossHostLinks, describeCrossHostLinks, extraHostsOption } from '../../src/plan/cross-host.js';
import { containerCreateOptions } from '../../src/activities/docker.js';

function inventory(services: Record<string, unknown>, addresses = { mainpc: '10.231.0.2', pc2: '10.231.0.3' }) {
  return parseInventory({
    version: 1,
    project: 'xh',
    hosts: { mainpc: { address: addresses.mainpc }, pc2: { address: addresses.pc2 } },
    services,
  });
}

const stack = {
  influxdb: { image: 'influxdb:2.7', ports: ['8086:8086'], placement: { host: 'mainpc' } },
  redis: { image: 'redis:7', ports: ['6379:6379'], placement: { host: 'mainpc' } },
  grafana: { image: 'grafana:10', ports: ['3000:3000'], depends_on: ['influxdb', 'redis', 'loki'], placement: { host: 'pc2' } },
  loki: { image: 'loki:2', ports: ['3100:3100'], placement: { host: 'pc2' } },
};

describe('crossHostLinks', () => {
  it('resolves a dependency on another host to that host\'s address, and leaves same-host ones to the project network', () => {
    const plan = buildPlan(inventory(stack));
    const result = crossHostLinks(plan);
    expect(result.extraHosts).toEqual({ grafana: [{ name: 'influxdb', address: '10.231.0.2' }, { name: 'redis', address: '10.231.0.2' }] });
    expect(result.links.map((l) => `${l.unit}@${l.host}→${l.dependency}@${l.dependencyHost}`)).toEqual(['grafana@pc2→influxdb@mainpc', 'grafana@pc2→redis@mainpc']);
    expect(result.problems).toEqual([]);
    expect(result.warnings).toEqual([]);
  });

  it('fills UnitSpec.extraHosts in buildPlan, and containerCreateOptions hands them to Docker', () => {
    const plan = buildPlan(inventory(stack));
    expect(plan.units.grafana!.extraHosts).toEqual(['influxdb:10.231.0.2', 'redis:10.231.0.2']);
    expect(plan.units.loki!.extraHosts).toBeUndefined();
    expect(containerCreateOptions('xh', plan.units.grafana!, { release: 'r1', change: 'test-r1' }, {}).HostConfig?.ExtraHosts).toEqual(['influxdb:10.231.0.2', 'redis:10.231.0.2']);
    expect(containerCreateOptions('xh', plan.units.loki!, { release: 'r1', change: 'test-r1' }, {}).HostConfig?.ExtraHosts).toBeUndefined();
  });

  it('replaces the dependent container when its dependency moves to another host (the spec hash changes)', () => {
    const before = buildPlan(inventory(stack));
    const moved = buildPlan(inventory({ ...stack, influxdb: { ...stack.influxdb, placement: { host: 'pc2' } } }));
    expect(moved.units.grafana!.extraHosts).toEqual(['redis:10.231.0.2']);
    expect(moved.units.grafana!.specHash).not.toBe(before.units.grafana!.specHash);
    // Units with no cross-host dependency keep the hash they always had.
    expect(moved.units.loki!.specHash).toBe(before.units.loki!.specHash);
  });

  it('refuses a cross-host dependency whose target publishes no port, with the fix', () => {
    const services = { ...stack, influxdb: { image: 'influxdb:2.7', placement: { host: 'mainpc' } } };
    let error: unknown;
    try {
      buildPlan(inventory(services));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(InventoryError);
    const problems = (error as InventoryError).problems;
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatchObject({ path: 'services.grafana.depends_on.influxdb' });
    expect(problems[0]!.message).toMatch(/influxdb" runs on mainpc, grafana on pc2, and influxdb publishes no port/);
    expect(problems[0]!.fix).toMatch(/services\.influxdb\.ports/);
  });

  it('counts a port bound to loopback as not reachable from another host', () => {
    const services = { ...stack, redis: { ...stack.redis, ports: ['127.0.0.1:6379:6379'] } };
    expect(() => buildPlan(inventory(services))).toThrow(/redis publishes no TCP port another host can reach/);
  });

  it('warns when the published port differs from the container port (the name alone keeps the container port)', () => {
    const plan = buildPlan(inventory({ ...stack, influxdb: { ...stack.influxdb, ports: ['18086:8086'] } }));
    expect(plan.units.grafana!.extraHosts).toContain('influxdb:10.231.0.2');
    expect(plan.warnings.map((w) => w.path)).toContain('services.grafana.depends_on.influxdb');
  });

  it('gives no entry in the one-engine mode (loopback host addresses), where 127.x in a container is the container', () => {
    const plan = buildPlan(inventory(stack, { mainpc: '127.0.0.11', pc2: '127.0.0.12' }));
    const result = crossHostLinks(plan);
    expect(result.links).toHaveLength(2);
    expect(result.extraHosts).toEqual({});
    expect(result.problems).toEqual([]);
    expect(plan.units.grafana!.extraHosts).toBeUndefined();
  });

  it('describes each cross-host dependency in one line for the plan', () => {
    expect(describeCrossHostLinks(crossHostLinks(buildPlan(inventory(stack))).links)).toEqual([
      'grafana (pc2) → influxdb (mainpc): as influxdb → 10.231.0.2 (port 8086)',
      'grafana (pc2) → redis (mainpc): as redis → 10.231.0.2 (port 6379)',
    ]);
    expect(describeCrossHostLinks(crossHostLinks(buildPlan(inventory(stack, { mainpc: '127.0.0.11', pc2: '127.0.0.12' }))).links)[0])
      .toBe('grafana (pc2) → influxdb (mainpc): not by name: its host address is loopback (one-engine mode)');
  });

  it('writes entries in Docker\'s name:address form', () => {
    expect(extraHostsOption([{ name: 'postgres', address: '10.231.0.2' }])).toEqual(['postgres:10.231.0.2']);
  });
});

describe('crossHostLinks with names that are Object.prototype keys', () => {
  it('resolves "toString" on another host like any other name', () => {
    const plan = buildPlan(parseInventory({
      version: 1,
      project: 'xh',
      hosts: { constructor: { address: '10.231.0.2' }, tostring: { address: '10.231.0.3' } },
      services: {
        toString: { image: 'x', ports: ['8080:8080'], placement: { host: 'constructor' } },
        constructor: { image: 'x', depends_on: ['toString'], placement: { host: 'tostring' } },
      },
    }));
    const unit = (name: string) => plan.units[name]!;
    expect(unit('constructor').extraHosts).toEqual(['toString:10.231.0.2']);
    expect(Object.keys(crossHostLinks(plan).extraHosts)).toEqual(['constructor']);
  });
});
