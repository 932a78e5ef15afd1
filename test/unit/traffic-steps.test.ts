/**
 * Traffic in steps (issue #13): the inventory's `traffic:` (its two forms, and the errors that name
 * the field and the fix), which agents are routed through the host's proxy, and the create options
 * of a routed candidate. Pure, checked by equality.
 */
import { describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { candidateCreateOptions } from '../../src/activities/docker.js';
import { batchInput } from '../../src/ops/batches.js';
import { LABELS } from '../../src/plan/queues.js';
import { routable, routedPorts } from '../../src/plan/traffic.js';
import { problems } from '../helpers/problems.js';
import { unitSpecProblems } from '../../src/common/unit-guard.js';

const inv = (traffic: unknown, agents: Record<string, unknown> = { web: { image: 'web:2', ports: ['27900:8080'], healthcheck: { http: '/health' } } }) => ({
  version: 1,
  project: 'txunit',
  hosts: { pc2: { address: '127.0.20.9', gpus: [{ model: 'RTX', vram_gb: 24 }] } },
  agents,
  batches: [{ name: 'b1', agents: Object.keys(agents), ...(traffic === undefined ? {} : { traffic }) }],
});

describe('the inventory\'s traffic steps', () => {
  it('takes a list of steps or { steps, hold, approve }; the batch input carries them; no traffic: none', () => {
    expect(buildPlan(parseInventory(inv([25, 50, 75, 100]))).batches[0]!.traffic).toEqual({ steps: [25, 50, 75, 100], holdMs: 0, approve: false });
    const plan = buildPlan(parseInventory(inv({ steps: [10, 100], hold: '1m30s', approve: true })));
    expect(plan.batches[0]!.traffic).toEqual({ steps: [10, 100], holdMs: 90_000, approve: true });
    expect(batchInput(plan, 'b1').traffic).toEqual({ steps: [10, 100], holdMs: 90_000, approve: true });
    expect(buildPlan(parseInventory(inv(undefined))).batches[0]!.traffic).toBeUndefined();
    expect(batchInput(buildPlan(parseInventory(inv(undefined))), 'b1')).not.toHaveProperty('traffic');
  });

  it('refuses steps that do not go up, do not end at 100, or are not whole percentages from 1 to 100, naming the step and the fix', () => {
    const fix = 'write ascending percentages ending at 100, like [25, 50, 75, 100]';
    expect(problems(inv([50, 25, 100]))).toEqual([{ path: 'batches[0].traffic[1]', message: 'must be more than the step before it (50): steps go up', fix }]);
    expect(problems(inv({ steps: [25, 50] }))).toEqual([{ path: 'batches[0].traffic.steps[1]', message: 'the last step must be 100 (all traffic on the new version), not 50', fix }]);
    expect(problems(inv([0, 100]))).toEqual([expect.objectContaining({ path: 'batches[0].traffic[0]', message: 'must be at least 1 (a step of 0 moves nothing)' })]);
    expect(problems(inv([50, 101]))[0]).toMatchObject({ path: 'batches[0].traffic[1]', message: 'must be at most 100' });
    expect(problems(inv([25.5, 100]))).toEqual([expect.objectContaining({ path: 'batches[0].traffic[0]', message: 'must be a whole percentage' })]);
    expect(problems(inv([]))).toEqual([expect.objectContaining({ path: 'batches[0].traffic', message: 'needs at least one step, ending at 100' })]);
    expect(problems(inv({ steps: [100], hold: 'soon' }))).toEqual([expect.objectContaining({ path: 'batches[0].traffic.hold' })]);
    expect(problems(inv({ steps: [100], weights: 1 }))).toEqual([expect.objectContaining({ path: 'batches[0].traffic.weights', message: 'unknown field "weights"' })]);
  });
});

describe('an agent\'s own traffic steps', () => {
  it('take the place of its batch\'s, in the plan and in the batch input; a service may not have them', () => {
    const plan = buildPlan(parseInventory(inv([50, 100], {
      web: { image: 'web:2', ports: ['27900:8080'], healthcheck: { http: '/health' }, traffic: { steps: [10, 100], approve: true } },
      api: { image: 'api:2', ports: ['27901:8080'], healthcheck: { http: '/health' } },
    })));
    expect(plan.units.web!.traffic).toEqual({ steps: [10, 100], holdMs: 0, approve: true });
    expect(plan.units.api!.traffic).toBeUndefined();
    expect(unitSpecProblems(plan.units.web, 'pc2')).toEqual([]); // the host's worker takes it
    expect(batchInput(plan, 'b1').units.find((u) => u.name === 'web')!.traffic).toEqual({ steps: [10, 100], holdMs: 0, approve: true });
    // The same container either way: traffic steps are not part of what the container is.
    const bare = buildPlan(parseInventory(inv([50, 100], { web: { image: 'web:2', ports: ['27900:8080'], healthcheck: { http: '/health' } } })));
    expect(plan.units.web!.specHash).toBe(bare.units.web!.specHash);
    expect(problems({ ...inv(undefined), services: { db: { image: 'db:1', traffic: [100] } } })).toEqual([expect.objectContaining({ path: 'services.db.traffic', fix: 'remove traffic from db, or declare it under agents' })]);
    expect(problems(inv(undefined, { web: { image: 'web:2', ports: ['27900:8080'], healthcheck: { http: '/health' }, traffic: [50, 40, 100] } }))).toEqual([expect.objectContaining({ path: 'agents.web.traffic[1]' })]);
  });

  it('on an agent that cannot be routed: a warning that it is swapped instead', () => {
    const plan = buildPlan(parseInventory(inv(undefined, { inner: { image: 'inner:2', healthcheck: { exec: ['/bin/true'] }, traffic: [50, 100] } })));
    expect(plan.warnings).toContainEqual(expect.objectContaining({ path: 'agents.inner.traffic', message: expect.stringContaining('it is swapped, not moved in steps') }));
  });
});

describe('which agents are routed', () => {
  const plan = buildPlan(parseInventory(inv([100], {
    web: { image: 'web:2', ports: ['27900:8080'], healthcheck: { http: '/health' } },
    tcp: { image: 'tcp:2', ports: ['27901:9000'], healthcheck: { tcp: true } },
    gpu: { image: 'gpu:2', ports: ['27902:8080'], healthcheck: { http: '/health' }, gpu: { count: 1, min_vram_gb: 8 } },
    inner: { image: 'inner:2', healthcheck: { exec: ['/bin/true'] } },
    docker: { image: 'docker:2', ports: ['27903:8080'], healthcheck: { test: ['CMD', 'true'] } },
  })));
  it('those with published TCP ports and an http/tcp probe; not GPU units, nor ones probed inside the container', () => {
    expect(Object.values(plan.units).filter(routable).map((u) => u.name).sort()).toEqual(['tcp', 'web']);
    expect(routedPorts(plan.units.web!)).toEqual([{ hostIp: '127.0.20.9', published: 27900, target: 8080 }]);
  });

  it('a routed candidate is the unit\'s container to be: the unit\'s label too, marked routed, named .next, on an engine-picked port', () => {
    const c = candidateCreateOptions('txunit', plan.units.web!, { release: 'b1', change: 'c1' }, {}, true);
    expect(c.name).toBe('txunit_pc2_web.next');
    expect(c.Labels).toMatchObject({ [LABELS.unit]: 'web', [LABELS.candidate]: 'web', [LABELS.routed]: 'true' });
    expect(c.HostConfig?.PortBindings).toEqual({ '8080/tcp': [{ HostIp: '127.0.20.9', HostPort: '' }] });
    expect(c.HostConfig?.RestartPolicy).toEqual({ Name: 'no' });
  });
});
