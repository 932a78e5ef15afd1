/**
 * Agent groups (seed 003, issue 14 item 1): one container holding several agents, one health check
 * per agent port, one migration. Pure: the plan, the workers' strict unit schema, the stub.
 */
import { describe, expect, it } from 'vitest';
import { InventoryError, loadInventoryFiles, parseInventory } from '../../src/inventory/load.js';
import type { InventoryInput } from '../../src/inventory/schema.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubUnit } from '../../src/plan/stub.js';
import { unitSpecProblems } from '../../src/common/unit-guard.js';
import { problems } from '../helpers/problems.js';

const hosts = { pc2: { address: '127.0.13.2' } };
const group = (agents: Record<string, number>, extra: Record<string, unknown> = {}) => ({
  image: 'g:1', placement: { host: 'pc2' }, healthcheck: { http: '/health' }, group: { agents }, ...extra,
});
const agent = (port: number) => ({ image: 'a:1', placement: { host: 'pc2' }, healthcheck: { http: '/health' }, ports: [`${port}:${port}`] });
const inv = (extra: Partial<InventoryInput>): InventoryInput => ({ version: 1, project: 'sc', hosts, ...extra }) as InventoryInput;

describe('a group is one unit', () => {
  const plan = buildPlan(parseInventory(inv({
    agents: { memory: group({ MemoryOrchestratorService: 7140, CacheManager: 7102 }), Solo: agent(7130) },
    batches: [{ name: 'b1', agents: ['memory', 'Solo'] }],
  })));
  const unit = plan.units.memory!;

  it('publishes each agent\'s port and probes each of them; its probe is the first agent\'s', () => {
    expect(unit.ports.map((p) => [p.hostIp, p.published, p.target])).toEqual([['127.0.13.2', 7140, 7140], ['127.0.13.2', 7102, 7102]]);
    expect(unit.members).toEqual([
      { name: 'MemoryOrchestratorService', probe: { kind: 'http', address: '127.0.13.2', port: 7140, path: '/health' } },
      { name: 'CacheManager', probe: { kind: 'http', address: '127.0.13.2', port: 7102, path: '/health' } },
    ]);
    expect(unit.probe).toEqual(unit.members![0]!.probe);
    expect(plan.units.Solo!.members).toBeUndefined();
    expect(plan.batches[0]!.agents).toEqual(['memory', 'Solo']);
  });

  it('is accepted by the workers\' strict unit schema, stubbed too; a member with another probe kind is refused', () => {
    expect(unitSpecProblems(unit, 'pc2')).toEqual([]);
    const stub = stubUnit(unit, { image: 'stub:1' });
    expect(stub.environment.AGENT_PORTS).toBe('7140 7102');
    expect(unitSpecProblems(stub, 'pc2')).toEqual([]);
    const smuggled = { ...unit, members: [{ name: 'X', probe: { kind: 'exec', command: ['sh'] } }] };
    expect(unitSpecProblems(smuggled, 'pc2')[0]!.path).toMatch(/^unit\.members\.0\.probe/);
  });

  it('a batch naming every agent of a group migrates the group, once', () => {
    const p = buildPlan(parseInventory(inv({
      agents: { memory: group({ A: 7140, B: 7102 }), Solo: agent(7130) },
      batches: [{ name: 'b1', agents: ['B', 'Solo', 'A'] }],
    })));
    expect(p.batches[0]!.agents).toEqual(['memory', 'Solo']);
  });

  it('a tcp check probes each port too', () => {
    const p = buildPlan(parseInventory(inv({ agents: { g: group({ A: 7140, B: 7102 }, { healthcheck: { tcp: true } }) } })));
    expect(p.units.g!.members!.map((m) => m.probe)).toEqual([{ kind: 'tcp', address: '127.0.13.2', port: 7140 }, { kind: 'tcp', address: '127.0.13.2', port: 7102 }]);
  });
});

describe('a batch that splits a group is refused', () => {
  it('some of a group\'s agents in one batch: the fix names the group or the missing agents', () => {
    const p = problems(inv({
      agents: { memory: group({ A: 7140, B: 7102, C: 7105 }) },
      batches: [{ name: 'b1', agents: ['A', 'B'] }, { name: 'b2', agents: ['C'] }],
    }));
    expect(p).toEqual([
      { path: 'batches[0].agents', message: expect.stringContaining('b1 names A, B but not C, all agents of group "memory"'), fix: expect.stringContaining('name "memory" in b1 instead of its agents') },
      { path: 'batches[1].agents[0]', message: expect.stringContaining('split between b1 (batches[0].agents[0]) and b2'), fix: expect.stringContaining('move all of memory\'s agents (A, B, C) into one batch') },
    ]);
  });

  it('a group named in one batch and one of its agents in another', () => {
    const p = problems(inv({
      agents: { memory: group({ A: 7140, B: 7102 }) },
      batches: [{ name: 'b1', agents: ['memory'] }, { name: 'b2', agents: ['B'] }],
    }));
    expect(p).toEqual([expect.objectContaining({ path: 'batches[1].agents[0]', message: expect.stringContaining('split between b1') })]);
  });
});

describe('what a group cannot be', () => {
  it('an agent declared alone and in a group; an agent in two groups; a dependency on a group\'s agent', () => {
    const p = problems(inv({
      agents: {
        g1: group({ A: 7140, B: 7102 }),
        g2: group({ B: 7105 }),
        A: agent(7150),
        other: { ...agent(7160), depends_on: ['B'] },
      },
    }));
    expect(p).toEqual(expect.arrayContaining([
      expect.objectContaining({ path: 'agents.g1.group.agents.A', message: expect.stringContaining('declared twice'), fix: expect.stringContaining('remove agents.A') }),
      expect.objectContaining({ path: 'agents.g2.group.agents.B', message: 'agent "B" is in two groups: "g1" and "g2"' }),
      expect.objectContaining({ path: 'agents.other.depends_on.B', fix: 'write "g1"' }),
    ]));
  });

  it('a service with a group, a group probed by a command', () => {
    const p = problems(inv({
      services: { s: { image: 's:1', placement: { host: 'pc2' }, group: { agents: { X: 7000 } } } },
      agents: { e: group({ Y: 7001 }, { healthcheck: { exec: ['true'] } }) },
    }));
    expect(p.map((x) => x.path)).toEqual(['services.s.group', 'agents.e.healthcheck']);
    for (const x of p) expect(x.fix, x.path).toBeTruthy();
  });

  it('a group without agents, an agent without a port (schema errors, with their paths)', () => {
    const p = problems(inv({ agents: { empty: group({}), bad: group({ Z: 0 }) } }));
    expect(p.map((x) => x.path)).toEqual(['agents.empty.group.agents', 'agents.bad.group.agents.Z']);
    for (const x of p) expect(x.fix, x.path).toBeTruthy();
  });

  it('a port one of its agents shares with another unit', () => {
    const p = problems(inv({ agents: { g: group({ A: 7140 }), Other: agent(7140) } }));
    expect(p).toEqual([expect.objectContaining({ path: 'agents.Other.ports[0]', message: expect.stringContaining('already published by agents.g.group.agents.A') })]);
  });
});

describe('the seeds\' group contradictions (seeds 001 and 003 side by side)', () => {
  it('migrate plan reports each with its fix', async () => {
    const { inventory } = await loadInventoryFiles(['test/fixtures/seed-group-contradictions.yaml']);
    let found: { path: string; message: string; fix?: string }[] = [];
    try { buildPlan(inventory); } catch (err) { found = (err as InventoryError).problems; }
    const at = (path: string) => found.filter((x) => x.path === path);
    // group headers' counts their port lists do not match (web services' 3 and 3 do)
    expect(at('agents.pc2-memory-services.group.count')[0]).toMatchObject({ message: expect.stringContaining('holds 8 agent(s), but it lists 5'), fix: expect.stringContaining('write count: 5') });
    expect(at('agents.pc2-ai-reasoning.group.count')[0]!.message).toContain('holds 4 agent(s), but it lists 5');
    expect(at('agents.pc2-infrastructure.group.count')[0]!.message).toContain('holds 5 agent(s), but it lists 9');
    expect(at('agents.pc2-web-services.group.count')).toEqual([]);
    // seed 003's group holds an agent seed 001 declares alone
    expect(at('agents.pc2-memory-services.group.agents.CacheManager')[0]!.message).toContain('declared twice');
    // seed 001's batches split every group but web services
    const splits = found.filter((x) => x.path.startsWith('batches') && /split/.test(x.message));
    expect(new Set(splits.map((x) => /group "([^"]+)"/.exec(x.message)![1]))).toEqual(new Set(['pc2-memory-services', 'pc2-infrastructure', 'pc2-ai-reasoning']));
    for (const x of found) expect(x.fix, x.path).toBeTruthy();
  });

  it('the shipped inventory resolves them: it plans, every PC2 agent once', async () => {
    const { inventory } = await loadInventoryFiles(['inventory/agentsys.yaml']);
    const plan = buildPlan(inventory);
    const pc2 = plan.batches.filter((b) => b.name.startsWith('batch-')).flatMap((b) => b.agents.flatMap((u) => plan.units[u]!.members?.map((m) => m.name) ?? [u]));
    expect(pc2).toHaveLength(25);
    expect(new Set(pc2).size).toBe(25);
  });
});
