/**
 * A unit's candidate (issue #13's judge): the Docker create options of its new version started beside
 * the running one, and where the worker probes it. Pure builders, checked by equality.
 */
import { describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { candidateCreateOptions, containerCreateOptions } from '../../src/activities/docker.js';
import { candidateTarget } from '../../src/plan/judge.js';
import { LABELS } from '../../src/plan/queues.js';

const plan = buildPlan(parseInventory({
  version: 1,
  project: 'cand',
  hosts: { pc2: { address: '127.0.11.9' } },
  agents: {
    web: { image: 'web:2', ports: ['41900:8080'], healthcheck: { http: '/health' } },
    wide: { image: 'wide:2', ports: ['0.0.0.0:41901:9000'], healthcheck: { tcp: true } },
    inner: { image: 'inner:2', healthcheck: { exec: ['/bin/true'] } },
  },
  batches: [{ name: 'b1', agents: ['web', 'wide', 'inner'], analysis: { min_effect_ms: 30 }, latency_tolerance: 2 }],
}));
const stamp = { release: 'b1', change: 'c1' };

describe('the candidate container', () => {
  it('is the unit beside itself: named .next, labelled a candidate (never the unit), on an engine-picked loopback port, no alias, never restarted', () => {
    const unit = plan.units.web!;
    const own = containerCreateOptions('cand', unit, stamp, { A: '1' });
    const c = candidateCreateOptions('cand', unit, stamp, { A: '1' });
    expect(c.name).toBe('cand_pc2_web.next');
    expect(c.Labels?.[LABELS.unit]).toBeUndefined();
    expect(c.Labels).toMatchObject({ [LABELS.candidate]: 'web', [LABELS.project]: 'cand', [LABELS.specHash]: unit.specHash, [LABELS.change]: 'c1' });
    expect(c.HostConfig?.PortBindings).toEqual({ '8080/tcp': [{ HostIp: '127.0.11.9', HostPort: '' }] });
    expect(c.HostConfig?.RestartPolicy).toEqual({ Name: 'no' });
    expect(c.NetworkingConfig).toEqual({ EndpointsConfig: { 'cand-pc2': {} } });
    // Everything else is the unit's own: image, command, environment, network.
    expect({ ...c, name: own.name, Labels: own.Labels, HostConfig: { ...c.HostConfig, PortBindings: own.HostConfig?.PortBindings, RestartPolicy: own.HostConfig?.RestartPolicy }, NetworkingConfig: own.NetworkingConfig }).toEqual(own);
  });

  it('a unit published on every address gets its candidate on loopback only', () => {
    expect(candidateCreateOptions('cand', plan.units.wide!, stamp, {}).HostConfig?.PortBindings).toEqual({ '9000/tcp': [{ HostIp: '127.0.0.1', HostPort: '' }] });
  });

  it('is probed with the unit\'s own probe, on the port its probed container port got; an exec probe runs inside it', () => {
    expect(candidateTarget(plan.units.web!, { name: 'cand_pc2_web.next', ports: { '8080/tcp': 32771 } }))
      .toEqual({ name: 'cand_pc2_web.next', probe: { kind: 'http', address: '127.0.11.9', port: 32771, path: '/health' } });
    expect(candidateTarget(plan.units.wide!, { name: 'n', ports: { '9000/tcp': 32772 } })).toEqual({ name: 'n', probe: { kind: 'tcp', address: '127.0.0.1', port: 32772 } });
    expect(candidateTarget(plan.units.web!, { name: 'n', ports: {} })).toBeUndefined();
    expect(candidateTarget(plan.units.inner!, { name: 'n', ports: {} })).toEqual({ name: 'n', probe: plan.units.inner!.probe });
  });

  it('the batch carries the judge\'s settings: the inventory\'s analysis, defaults filled, latency_tolerance when set', () => {
    expect(plan.batches[0]!.analysis).toEqual({ minEffectMs: 30, maxErrorRate: 0, samples: 40, alpha: 0.01, looks: 4, latencyTolerance: 2 });
  });
});
