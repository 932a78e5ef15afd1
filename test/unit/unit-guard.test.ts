/** src/common/unit-guard.ts: what a worker refuses, and the plan's matching problems and warnings. */
import { describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { InventoryError } from '../../src/inventory/problems.js';
import { bindAccess, unitSpecProblems } from '../../src/common/unit-guard.js';

const inventory = (unit: Record<string, unknown>, docker?: Record<string, unknown>) => parseInventory({
  version: 1,
  project: 'guard',
  hosts: { edge: { address: '127.0.0.202', ...(docker ? { docker } : {}) } },
  services: { web: { image: 'busybox:latest', ...unit } },
});
const planOf = (unit: Record<string, unknown>, docker?: Record<string, unknown>) => buildPlan(inventory(unit, docker), { baseDir: '/srv/inv' });
const problemsOf = (unit: Record<string, unknown>, docker?: Record<string, unknown>) => {
  try {
    planOf(unit, docker);
    return [];
  } catch (err) {
    return (err as InventoryError).problems;
  }
};

describe('bindAccess', () => {
  it.each([
    ['/', 'host-root'], ['/..', 'host-root'], ['//', 'host-root'],
    ['/var/run/docker.sock', 'docker-socket'], ['/run/docker.sock', 'docker-socket'], ['/var/run', 'docker-socket'], ['/var', 'docker-socket'], ['/run', 'docker-socket'],
    ['/proc', 'host-proc'], ['/proc/1/root', 'host-proc'], ['/sys/fs/cgroup', 'host-sys'],
    ['/etc', 'host-etc'], ['/etc/shadow', 'host-etc'], ['/srv/../etc/', 'host-etc'], ['/./etc//ssh', 'host-etc'],
  ])('%s needs %s', (p, access) => {
    expect(bindAccess(p)?.access).toBe(access);
  });

  it.each(['/srv/data', '/home/app/etc', '/etcetera', '/processes', '/var/lib/app', '/opt/sys'])('%s is an ordinary path', (p) => {
    expect(bindAccess(p)).toBeUndefined();
  });
});

describe('the plan', () => {
  it('refuses a bind of the Docker socket, /, /proc, /sys or /etc that the unit does not allow, naming the allow: fix', () => {
    for (const [source, access] of [['/var/run/docker.sock', 'docker-socket'], ['/', 'host-root'], ['/proc', 'host-proc'], ['/sys', 'host-sys'], ['/etc/shadow', 'host-etc'], ['../../../etc', 'host-etc']] as const) {
      const problems = problemsOf({ volumes: [`${source}:/mnt/x`] });
      expect(problems, source).toHaveLength(1);
      expect(problems[0]).toMatchObject({ path: 'services.web.volumes[0]', fix: expect.stringContaining(`allow: [${access}]`) });
    }
  });

  it('accepts it when allowed, with a warning that says what is exposed; an unused allowance is a warning too', () => {
    const plan = planOf({ volumes: ['/var/run/docker.sock:/var/run/docker.sock'], allow: ['docker-socket', 'host-etc'] });
    expect(plan.units.web!.allow).toEqual(['docker-socket', 'host-etc']);
    expect(plan.warnings.map((w) => w.message)).toEqual([
      expect.stringContaining('is allowed docker-socket: the Docker socket'),
      'allows host-etc, which none of its binds uses',
    ]);
    expect(planOf({}).units.web!.allow).toBeUndefined();
  });

  it('refuses an unknown allowance', () => {
    expect(() => planOf({ allow: ['privileged'] })).toThrow(InventoryError);
  });

  it('Docker over tcp without TLS is a problem, unless insecure: true (then a warning)', () => {
    const problems = problemsOf({}, { host: 'tcp://10.0.0.5:2375' });
    expect(problems).toEqual([expect.objectContaining({ path: 'hosts.edge.docker.host', fix: expect.stringContaining('insecure: true') })]);
    const plan = planOf({}, { host: 'tcp://10.0.0.5:2375', insecure: true });
    expect(plan.warnings).toEqual([expect.objectContaining({ path: 'hosts.edge.docker', message: expect.stringContaining('without TLS') })]);
    expect(planOf({}, { host: 'tcp://10.0.0.5:2376', tls: { ca: 'ca.pem', cert: 'c.pem', key: 'k.pem' } }).warnings).toEqual([]);
  });
});

describe('unitSpecProblems (what the worker re-checks)', () => {
  const good = () => structuredClone(planOf({ volumes: ['/srv/data:/data', 'cache:/cache'] }).units.web!) as unknown as Record<string, unknown>;

  it('accepts the plan\'s own unit on its own host', () => {
    expect(unitSpecProblems(good(), 'edge')).toEqual([]);
  });

  it('refuses a unit of another host', () => {
    expect(unitSpecProblems(good(), 'other')[0]!.path).toBe('unit.host');
  });

  it('refuses extra fields (privileged-like options smuggled into the input)', () => {
    for (const extra of [{ privileged: true }, { capAdd: ['SYS_ADMIN'] }, { pidMode: 'host' }]) {
      const problems = unitSpecProblems({ ...good(), ...extra }, 'edge');
      expect(problems[0]!.message).toContain(`unknown field(s) ${Object.keys(extra)[0]}`);
    }
    const v = good();
    (v.volumes as Record<string, unknown>[])[0]!.propagation = 'rshared';
    expect(unitSpecProblems(v, 'edge')[0]!.path).toBe('unit.volumes.0');
  });

  it('refuses a sensitive bind the unit does not allow, also when written to dodge the check', () => {
    for (const source of ['/var/run/docker.sock', '/', '/srv/../proc', '/etc', '/sys/kernel']) {
      const v = good();
      (v.volumes as Record<string, unknown>[])[0]!.source = source;
      const problems = unitSpecProblems(v, 'edge');
      expect(problems, source).toHaveLength(1);
      expect(problems[0]!.message).toContain(`binds ${source}`);
    }
    const allowed = good();
    (allowed.volumes as Record<string, unknown>[])[0]!.source = '/etc/ssl';
    allowed.allow = ['host-etc'];
    expect(unitSpecProblems(allowed, 'edge')).toEqual([]);
  });

  it('refuses relative or colon-carrying bind sources, bad names and non-objects', () => {
    for (const source of ['srv/data', '/srv:/etc']) {
      const v = good();
      (v.volumes as Record<string, unknown>[])[0]!.source = source;
      expect(unitSpecProblems(v, 'edge').length, source).toBeGreaterThan(0);
    }
    expect(unitSpecProblems({ ...good(), name: '../x' }, 'edge')[0]!.path).toBe('unit.name');
    expect(unitSpecProblems({ ...good(), allow: ['everything'] }, 'edge')[0]!.path).toBe('unit.allow.0');
    expect(unitSpecProblems(null, 'edge').length).toBeGreaterThan(0);
  });
});
