/** What the hardening accepts, and how: names that are prototype keys, compose's count: all, IPv6 hosts. */
import { describe, expect, it } from 'vitest';
import { loadInventoryFiles, parseInventory, parseYaml } from '../../src/inventory/load.js';
import { isIpAddress } from '../../src/inventory/schema.js';
import { buildPlan } from '../../src/plan/plan.js';
import { formatPlan } from '../../src/plan/format.js';
import { findCycle, topologicalWaves, type Graph } from '../../src/plan/graph.js';

const plan = (yaml: string) => buildPlan(parseInventory(parseYaml(yaml, 'test.yaml')));

describe('the shipped inventory', () => {
  it('still plans, alone and with the local override', async () => {
    for (const files of [['inventory/agentsys.yaml'], ['inventory/agentsys.yaml', 'inventory/local.yaml']]) {
      const { inventory } = await loadInventoryFiles(files);
      expect(Object.keys(buildPlan(inventory).units).length).toBeGreaterThan(20);
    }
  });
});

describe('names that are Object.prototype keys', () => {
  it('plan like any other name', () => {
    const p = plan(`version: 1
project: p
hosts: { constructor: {}, tostring: {} }
services:
  toString: { image: x, ports: ["8080:8080"], placement: { host: constructor } }
  constructor: { image: x, depends_on: [toString], placement: { host: tostring } }
  valueOf: { image: x }
`);
    const unit = (name: string) => p.units[name]!;
    expect(unit('toString').host).toBe('constructor');
    expect(unit('constructor').host).toBe('tostring');
    expect(p.serviceWaves).toEqual([['toString', 'valueOf'], ['constructor']]);
  });
});

describe("compose's count: all", () => {
  it('is every GPU of the host the unit lands on', () => {
    const p = plan(`version: 1
project: p
hosts:
  small: { gpus: [{ model: a, vram_gb: 8 }] }
  big: { gpus: [{ model: b, vram_gb: 24 }, { model: b, vram_gb: 24 }] }
services:
  t: { image: x, placement: { host: big }, deploy: { resources: { reservations: { devices: [{ driver: nvidia, count: all, capabilities: [gpu] }] } } } }
`);
    expect(p.units.t!.gpu).toEqual({ count: 2, minVramGb: 1 });
  });
});

describe('IPv6', () => {
  it('accepts IPv6 host addresses and brackets them in probe text', () => {
    const p = plan(`version: 1
project: p
hosts: { h: { address: "::1" } }
services: { web: { image: x, ports: ["8080:80"], healthcheck: { http: /health } } }
`);
    expect(p.units.web!.probe).toMatchObject({ kind: 'http', address: '::1', port: 8080 });
    expect(formatPlan(p)).toContain('http [::1]:8080/health');
    expect(formatPlan(p)).not.toContain('http ::1:');
  });

  it('tells addresses from names', () => {
    expect(['127.0.0.1', '10.0.0.5', '::1', '::', 'fe80::1', '2001:db8::1'].every(isIpAddress)).toBe(true);
    expect(['localhost', '300.1.1.1', '1.2.3', '[::1]', '::g', '10.0.0.1:80', '', 'fe80::1%eth0'].some(isIpAddress)).toBe(false);
  });
});

describe('graph', () => {
  it('finds a cycle in a 100,000-long chain without recursion, and waves it when open', () => {
    const n = 100_000;
    const g: Graph = new Map(Array.from({ length: n }, (_, i) => [`s${i}`, i === 0 ? [] : [`s${i - 1}`]]));
    expect(findCycle(g)).toBeUndefined();
    expect(topologicalWaves(g)).toHaveLength(n);
    g.set('s0', [`s${n - 1}`]);
    expect(findCycle(g)).toHaveLength(n + 1);
  });

  it('finds the same cycles as before on small graphs', () => {
    const g: Graph = new Map([['a', ['b']], ['b', ['c']], ['c', ['a']], ['d', []]]);
    expect(findCycle(g)).toEqual(['a', 'b', 'c', 'a']);
    expect(findCycle(new Map([['a', ['a']]]))).toEqual(['a', 'a']);
    expect(topologicalWaves(new Map([['a', []], ['b', ['a']], ['c', ['a']], ['d', ['b', 'c']]]))).toEqual([['a'], ['b', 'c'], ['d']]);
  });
});

describe('list-form environment', () => {
  it('keeps a variable named like a prototype key as a variable', () => {
    const p = plan('version: 1\nproject: p\nhosts: { h: {} }\nservices: { a: { image: x, environment: ["__proto__=x", "constructor=y"] } }\n');
    expect(Object.entries(p.units.a!.environment)).toEqual([['__proto__', 'x'], ['constructor', 'y']]);
  });
});
