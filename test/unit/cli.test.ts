/** The `migrate` binary as a user runs it: exit codes and output of `migrate plan`. Starts nothing. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

const run = async (...args: string[]) => {
  try {
    const { stdout, stderr } = await promisify(execFile)('./bin/migrate.mjs', args, { env: { ...process.env, NO_COLOR: '1' } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, stdout: e.stdout, stderr: e.stderr };
  }
};

describe('migrate plan', () => {
  it('shows the two hosts, the stack\'s dependency order and four batches of the shipped inventory', async () => {
    const r = await run('plan');
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/mainpc\s+queue host-mainpc\s+RTX 4090 24 GB/);
    expect(r.stdout).toMatch(/pc2\s+queue host-pc2\s+RTX 3060 12 GB/);
    expect(r.stdout).toMatch(/wave 1:[\s\S]*postgres[\s\S]*wave 4:[\s\S]*nginx/);
    expect(r.stdout.match(/^ {2}(batch-\d|mainpc-groups): /gm)).toHaveLength(4);
  });

  it('--json gives the plan to scripts', async () => {
    const r = await run('plan', '--json', '-i', 'inventory/agentsys.yaml', '-i', 'inventory/local.yaml');
    expect(r.code).toBe(0);
    const plan = JSON.parse(r.stdout);
    expect(plan.units.redis.ports[0].hostIp).toBe('127.0.0.11');
    expect(plan.batches).toHaveLength(4);
  });

  it('exits 2 on the seeds\' contradictions and lists every one with its path and fix', async () => {
    const r = await run('plan', '--inventory', 'test/fixtures/seed-contradictions.yaml');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    for (const expected of [
      'services.postgres.environment.POSTGRES_PASSWORD: a secret is written here as a literal value',
      'services.redis.command[2]: a secret follows "--requirepass"',
      'services.rl-training-server.gpu: needs 2 GPU(s) with at least 24 GB',
      'agents.MemoryDecayManager.healthcheck.http: has an http health check but publishes no port',
      'agents.CacheManager.ports[0]: host port 7112/tcp on pc2 is already published by agents.ExperienceTracker.ports[0]',
      'batches[1].agents[1]: agent "ExperienceTracker" is in two batches: already in batch-2',
    ]) expect(r.stderr).toContain(expected);
    expect(r.stderr.match(/^ {6}fix: /gm)!.length).toBe(6);
    expect(r.stderr).not.toContain('pc2-redis');
  });

  it('exits 2 with --json too, problems as data', async () => {
    const r = await run('plan', '--json', '--inventory', 'test/fixtures/seed-contradictions.yaml');
    expect(r.code).toBe(2);
    expect(JSON.parse(r.stdout).problems).toHaveLength(6);
  });

  it('exits 2 on seeds 001 and 003 side by side: each group contradiction with its fix', async () => {
    const r = await run('plan', '--inventory', 'test/fixtures/seed-group-contradictions.yaml');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    for (const expected of [
      'agents.pc2-memory-services.group.count: says the group holds 8 agent(s), but it lists 5',
      'agents.pc2-memory-services.group.agents.CacheManager: agent "CacheManager" is declared twice',
      'batches[0].agents: batch-1 names ResourceManager, AdvancedRouter, TaskScheduler, AuthenticationAgent, UnifiedUtilsAgent, AgentTrustScorer but not TieredResponder, AsyncProcessor, ProactiveContextMonitor, all agents of group "pc2-infrastructure"',
      'fix: name "pc2-infrastructure" in batch-1 instead of its agents',
    ]) expect(r.stderr).toContain(expected);
  });

  it('exits 2 on a missing file and on an unknown option', async () => {
    expect((await run('plan', '--inventory', 'nope.yaml')).code).toBe(2);
    expect((await run('plan', '--frobnicate')).code).toBe(2);
  });
});

describe('bad safeguard options are refused before anything starts (exit 2, the flag and the fix named)', () => {
  it('--skip-backup needs a reason', async () => {
    const r = await run('deploy', '--skip-backup', ' ', '--address', '127.0.0.1:1');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--skip-backup.*say why the backup is skipped/);
  });

  it('--restore-data takes component names only', async () => {
    const r = await run('rollback', 'r1', '--restore-data', 'pg;drop', '--address', '127.0.0.1:1');
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--restore-data.*backup component names separated by commas/);
  });
});
