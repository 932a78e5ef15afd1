/** Inventory validation and planning: pure code, no server. Every invalid case of issue #2. */
import { describe, expect, it } from 'vitest';
import { loadInventoryFiles, parseInventory, parseYaml } from '../../src/inventory/load.js';
import type { InventoryInput } from '../../src/inventory/schema.js';
import { buildPlan } from '../../src/plan/plan.js';
import { parseDuration } from '../../src/inventory/schema.js';
import { problems } from '../helpers/problems.js';

const hosts = {
  mainpc: { gpus: [{ model: 'RTX 4090', vram_gb: 24 }], labels: { role: 'heavy' } },
  pc2: { gpus: [{ model: 'RTX 3060', vram_gb: 12 }], labels: { role: 'edge' } },
};

function inv(extra: Partial<InventoryInput>): InventoryInput {
  return { version: 1, project: 'test', hosts, ...extra } as InventoryInput;
}

const agent = (port: number, extra: Record<string, unknown> = {}) => ({
  image: 'a:1', ports: [`${port}:${port}`], healthcheck: { http: '/health' }, placement: { host: 'pc2' }, ...extra,
});

describe('the shipped inventory', () => {
  it('plans the two hosts, the stack in dependency order, seed 003\'s groups and four batches', async () => {
    const { inventory } = await loadInventoryFiles(['inventory/agentsys.yaml']);
    const plan = buildPlan(inventory);
    expect(plan.hosts.map((h) => [h.name, h.queue])).toEqual([['mainpc', 'host-mainpc'], ['pc2', 'host-pc2']]);
    expect(plan.batches.map((b) => [b.name, b.agents.length])).toEqual([['batch-1', 2], ['batch-2', 2], ['batch-3', 3], ['mainpc-groups', 7]]);
    // seed 001's 25 PC2 agents (22 of them in seed 003's four PC2 groups) and seed 003's 7 MainPC groups
    const agentsOn = (h: string) => Object.values(plan.units).filter((u) => u.kind === 'agent' && u.host === h).flatMap((u) => u.members?.map((m) => m.name) ?? [u.name]);
    expect(agentsOn('pc2')).toHaveLength(25);
    expect(agentsOn('mainpc')).toHaveLength(26);
    expect(Object.values(plan.units).filter((u) => u.members).map((u) => [u.name, u.members!.length])).toEqual([
      ['pc2-infrastructure', 9], ['pc2-memory-services', 5], ['pc2-ai-reasoning', 5], ['pc2-web-services', 3],
      ['mainpc-gpu-infrastructure', 1], ['mainpc-reasoning-services', 3], ['mainpc-vision-processing', 1], ['mainpc-learning-knowledge', 5],
      ['mainpc-speech-services', 2], ['mainpc-audio-interface', 8], ['mainpc-emotion-system', 6],
    ]);
    // every agent of seed 001's batch 1 migrates in batch-1, inside its group
    const batch1 = plan.batches[0]!.agents.flatMap((g) => plan.units[g]!.members!.map((m) => m.name));
    for (const a of ['MemoryOrchestratorService', 'ResourceManager', 'AdvancedRouter', 'TaskScheduler', 'AuthenticationAgent', 'UnifiedUtilsAgent', 'AgentTrustScorer']) expect(batch1).toContain(a);
    // data layer first, nginx last
    expect(plan.serviceWaves[0]).toEqual(expect.arrayContaining(['postgres', 'redis', 'influxdb']));
    expect(plan.serviceWaves.at(-1)).toContain('nginx');
    const waveOf = (s: string) => plan.serviceWaves.findIndex((w) => w.includes(s));
    for (const [name, unit] of Object.entries(plan.units)) {
      if (unit.kind !== 'service') continue;
      for (const dep of Object.keys(unit.dependsOn)) expect(waveOf(dep), `${dep} before ${name}`).toBeLessThan(waveOf(name));
    }
    expect(plan.units['rl-training-server']!.host).toBe('mainpc');
    expect(plan.units['pc2-ai-reasoning']!.members!.map((m) => m.name)).toContain('VisionProcessingAgent');
    expect(plan.units['pc2-ai-reasoning']!.host).toBe('pc2');
    // Secrets stay references.
    expect(plan.units.postgres!.environment.POSTGRES_PASSWORD).toEqual({ from_env: 'AGENTSYS_POSTGRES_PASSWORD' });
  });

  it('is deterministic', async () => {
    const { inventory } = await loadInventoryFiles(['inventory/agentsys.yaml', 'inventory/local.yaml']);
    expect(JSON.stringify(buildPlan(inventory))).toBe(JSON.stringify(buildPlan(inventory)));
  });

  it('layers the local override: each host its own loopback address, no GPU runtime', async () => {
    const { inventory } = await loadInventoryFiles(['inventory/agentsys.yaml', 'inventory/local.yaml']);
    const plan = buildPlan(inventory);
    expect(plan.units.redis!.ports[0]!.hostIp).toBe('127.0.0.11');
    expect(plan.units['pc2-redis']!.ports[0]!.hostIp).toBe('127.0.0.12');
    expect(plan.units['rl-training-server']!.gpuDeviceRequest).toBe(false);
  });
});

describe('the seeds\' own contradictions are caught', () => {
  it('an agent in two batches (seed 001: ExperienceTracker in batch 2 and batch 4)', () => {
    const p = problems(inv({
      agents: { ExperienceTracker: agent(7112), TutorAgent: agent(7108) },
      batches: [{ name: 'batch-2', agents: ['ExperienceTracker'] }, { name: 'batch-4', agents: ['TutorAgent', 'ExperienceTracker'] }],
    }));
    expect(p).toEqual([expect.objectContaining({ path: 'batches[1].agents[1]', message: expect.stringContaining('already in batch-2') })]);
  });

  it('an agent without a port but with an HTTP health check (seed 001: MemoryDecayManager)', () => {
    const p = problems(inv({ agents: { MemoryDecayManager: { image: 'a:1', healthcheck: { http: '/health' }, placement: { host: 'pc2' } } } }));
    expect(p).toEqual([expect.objectContaining({ path: 'agents.MemoryDecayManager.healthcheck.http', message: expect.stringContaining('publishes no port') })]);
    expect(p[0]!.fix).toMatch(/publish the port/);
  });

  it('two units on one host port', () => {
    const p = problems(inv({ agents: { A: agent(7112), B: agent(7112) } }));
    expect(p).toEqual([expect.objectContaining({ path: 'agents.B.ports[0]', message: 'host port 7112/tcp on pc2 is already published by agents.A.ports[0]' })]);
  });

  it('the same port on two hosts is no clash', () => {
    expect(problems(inv({ services: { r1: { image: 'r', ports: ['6379:6379'], placement: { host: 'mainpc' } }, r2: { image: 'r', ports: ['6379:6379'], placement: { host: 'pc2' } } } }))).toEqual([]);
  });

  it('literal secrets (seed 000: POSTGRES_PASSWORD, a DATABASE_URL with a password, --requirepass)', () => {
    const p = problems(inv({
      services: {
        postgres: { image: 'p', environment: { POSTGRES_PASSWORD: 'agent_pass', POSTGRES_USER: 'agent_user' } },
        api: { image: 'a', environment: ['DATABASE_URL=postgresql://agent_user:agent_pass@postgres:5432/db'] },
        redis: { image: 'r', command: ['redis-server', '--requirepass', 'redis_pass'] },
      },
    }));
    expect(p.map((x) => x.path)).toEqual(['services.postgres.environment.POSTGRES_PASSWORD', 'services.api.environment.DATABASE_URL', 'services.redis.command[2]']);
    expect(p[0]!.fix).toMatch(/from_env/);
  });

  it('duplicate keys in YAML (seed 000 declares networks: twice)', () => {
    expect(() => parseYaml('services:\n  a: {image: x}\n  a: {image: y}\n', 'f.yaml')).toThrowError(/duplicate key/);
  });
});

describe('every invalid case exits with a problem naming the field and the fix', () => {
  it('unknown dependency, with a suggestion', () => {
    const p = problems(inv({ services: { postgres: { image: 'p' }, api: { image: 'a', depends_on: ['postgress'] } } }));
    expect(p).toEqual([expect.objectContaining({ path: 'services.api.depends_on.postgress', message: 'unknown dependency "postgress" (did you mean "postgres"?)' })]);
  });

  it('a dependency cycle, printed', () => {
    const p = problems(inv({ services: { a: { image: 'x', depends_on: ['b'] }, b: { image: 'x', depends_on: ['c'] }, c: { image: 'x', depends_on: ['a'] } } }));
    expect(p).toHaveLength(1);
    expect(p[0]!.message).toBe('dependency cycle: a → b → c → a');
  });

  it('a self-dependency is a cycle', () => {
    expect(problems(inv({ services: { a: { image: 'x', depends_on: ['a'] } } }))[0]!.message).toBe('dependency cycle: a → a');
  });

  it('a duplicate service (the same name as a service and an agent)', () => {
    const p = problems(inv({ services: { Cache: { image: 'x' } }, agents: { cache: agent(7102) } }));
    expect(p[0]).toMatchObject({ path: 'agents.cache', message: expect.stringContaining('duplicate service') });
  });

  it('a GPU need no host can meet, listing what the hosts have', () => {
    const p = problems(inv({ services: { trainer: { image: 'x', gpu: { count: 1, min_vram_gb: 48 } } } }));
    expect(p[0]).toMatchObject({ path: 'services.trainer.gpu', message: expect.stringContaining('mainpc: RTX 4090 24 GB, pc2: RTX 3060 12 GB') });
  });

  it('a GPU need the pinned host cannot meet', () => {
    const p = problems(inv({ services: { trainer: { image: 'x', gpu: { min_vram_gb: 16 }, placement: { host: 'pc2' } } } }));
    expect(p[0]).toMatchObject({ path: 'services.trainer.gpu', message: expect.stringContaining('host pc2') });
  });

  it('compose\'s GPU reservation is understood', () => {
    const plan = buildPlan(parseInventory(inv({ services: { t: { image: 'x', deploy: { resources: { reservations: { devices: [{ driver: 'nvidia', count: 1, capabilities: ['gpu'] }] } } } } } })));
    expect(plan.units.t!.gpu).toEqual({ count: 1, minVramGb: 1 });
  });

  it('an unknown host', () => {
    const p = problems(inv({ services: { a: { image: 'x', placement: { host: 'pc3' } } } }));
    expect(p[0]).toMatchObject({ path: 'services.a.placement.host', message: 'unknown host "pc3" (did you mean "pc2"?)', fix: 'use one of the declared hosts: mainpc, pc2' });
  });

  it('labels no host has', () => {
    expect(problems(inv({ services: { a: { image: 'x', placement: { labels: { role: 'gpu-farm' } } } } }))[0]).toMatchObject({ path: 'services.a.placement.labels' });
  });

  it('malformed names', () => {
    const p = problems({ version: 1, project: 'test', hosts: { 'Main PC': {} }, services: { 'my service!': { image: 'x' } } });
    expect(p.map((x) => x.path)).toEqual(['hosts.Main PC', 'services.my service!']);
    expect(p.map((x) => x.message).join('\n')).toMatch(/invalid name/);
  });

  it('an unknown field, with its path', () => {
    const p = problems(inv({ services: { a: { image: 'x', depend_on: ['b'] } as never } }));
    expect(p).toEqual([expect.objectContaining({ path: 'services.a.depend_on', message: 'unknown field "depend_on"' })]);
  });

  it('an unknown agent in a batch, and a service in a batch', () => {
    const p = problems(inv({ services: { redis: { image: 'r' } }, agents: { TutorAgent: agent(7108) }, batches: [{ name: 'batch-1', agents: ['TutorAgnet', 'redis'] }] }));
    expect(p.map((x) => x.message)).toEqual(['unknown agent "TutorAgnet" (did you mean "TutorAgent"?)', '"redis" is a service, not an agent: batches migrate agents']);
  });

  it('an agent without a health check', () => {
    expect(problems(inv({ agents: { A: { image: 'a', placement: { host: 'pc2' } } } }))[0]).toMatchObject({ path: 'agents.A.healthcheck' });
  });

  it('a unit without image or build, a bad port and a bad duration', () => {
    const p = problems(inv({ services: { a: { ports: ['80:http'] }, b: { image: 'x', healthcheck: { tcp: 80, interval: 'soon' } } } as never }));
    expect(p.map((x) => x.path)).toEqual(['services.a.ports[0]', 'services.b.healthcheck.interval']);
    expect(p[1]!.message).toBe('"soon" is not a duration: write it like "500ms", "10s" or "1m30s"');
    expect(problems(inv({ services: { a: {} } }))).toEqual([expect.objectContaining({ path: 'services.a', message: expect.stringContaining('needs an image or a build context') })]);
  });

  it('two probes in one health check', () => {
    expect(problems(inv({ services: { a: { image: 'x', ports: ['80:80'], healthcheck: { http: '/', tcp: 80 } } } }))[0]!.message).toMatch(/keep one/);
  });

  it('lists every problem at once', () => {
    const p = problems(inv({ services: { a: { image: 'x', depends_on: ['nope'], placement: { host: 'nowhere' } } }, agents: { B: agent(1), C: agent(1) } }));
    expect(p.length).toBeGreaterThanOrEqual(3);
  });
});

describe('placement', () => {
  it('best fit: the smallest GPU that is big enough', () => {
    const plan = buildPlan(parseInventory(inv({ services: { small: { image: 'x', gpu: { min_vram_gb: 4 } }, big: { image: 'x', gpu: { min_vram_gb: 20 } } } })));
    expect([plan.units.small!.host, plan.units.big!.host]).toEqual(['pc2', 'mainpc']);
  });

  it('works for N hosts (hosts are data, never constants)', () => {
    const many = Object.fromEntries(Array.from({ length: 12 }, (_, i) => [`node${i}`, { gpus: i === 7 ? [{ model: 'A100', vram_gb: 80 }] : [] }]));
    const plan = buildPlan(parseInventory({ version: 1, project: 'big', hosts: many, services: { llm: { image: 'x', gpu: { min_vram_gb: 40 } } } }));
    expect(plan.hosts).toHaveLength(12);
    expect(plan.units.llm!.host).toBe('node7');
    expect(plan.hosts[7]!.queue).toBe('host-node7');
  });

  it('the NVIDIA device request only where the host declares the runtime', () => {
    const withRuntime = buildPlan(parseInventory(inv({ hosts: { mainpc: { ...hosts.mainpc, gpu_runtime: 'nvidia' } }, services: { t: { image: 'x', gpu: { min_vram_gb: 16 } } } })));
    expect(withRuntime.units.t!.gpuDeviceRequest).toBe(true);
    const without = buildPlan(parseInventory(inv({ services: { t: { image: 'x', gpu: { min_vram_gb: 16 } } } })));
    expect(without.units.t!.gpuDeviceRequest).toBe(false);
  });
});

describe('durations and hashes', () => {
  it('parses compose durations', () => {
    expect([parseDuration('1m30s'), parseDuration('500ms'), parseDuration('2s'), parseDuration('x')]).toEqual([90_000, 500, 2000, undefined]);
  });

  it('a changed image changes only that unit\'s spec hash', () => {
    const a = buildPlan(parseInventory(inv({ services: { x: { image: 'x:1' }, y: { image: 'y:1' } } })));
    const b = buildPlan(parseInventory(inv({ services: { x: { image: 'x:2' }, y: { image: 'y:1' } } })));
    expect(a.units.x!.specHash).not.toBe(b.units.x!.specHash);
    expect(a.units.y!.specHash).toBe(b.units.y!.specHash);
  });
});
