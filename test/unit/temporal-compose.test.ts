/**
 * docker-compose.temporal.yml, the production Temporal, checked by docker-compose itself (`config`:
 * no image can be pulled here, so nothing is started) and by what its resolved config says.
 * Needs the docker-compose binary that scripts/setup.sh installs (Debian's v1).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../../src/common/search-attributes.js';

const FILE = 'docker-compose.temporal.yml';

async function compose(args: string[], env: Record<string, string>): Promise<{ code: number; stdout: string; stderr: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('TEMPORAL_')));
  try {
    const { stdout, stderr } = await promisify(execFile)('docker-compose', ['-f', FILE, ...args], { env: { ...base, ...env } });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code: number | string; stdout: string; stderr: string };
    if (e.code === 'ENOENT') throw new Error('docker-compose is not installed: run scripts/setup.sh');
    return { code: Number(e.code), stdout: e.stdout, stderr: e.stderr };
  }
}

interface Service {
  image: string;
  command?: string[];
  entrypoint?: string[];
  environment?: Record<string, string>;
  depends_on?: Record<string, { condition: string }>;
  ports?: string[];
}
async function config(env: Record<string, string> = {}): Promise<Record<string, Service>> {
  const r = await compose(['config'], { TEMPORAL_DB_PASSWORD: 'not-a-real-password', ...env });
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  return (parse(r.stdout) as { services: Record<string, Service> }).services;
}

describe('docker-compose.temporal.yml', () => {
  it('is valid for docker-compose (config -q exits 0)', async () => {
    const r = await compose(['config', '-q'], { TEMPORAL_DB_PASSWORD: 'x' });
    expect(r).toEqual({ code: 0, stdout: '', stderr: '' });
  });

  it('refuses to start without the database password', async () => {
    const r = await compose(['config', '-q'], {});
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('set TEMPORAL_DB_PASSWORD');
  });

  it('runs temporalio/server, not auto-setup, after a one-shot schema job from the admin tools', async () => {
    const s = await config();
    expect(Object.values(s).map((x) => x.image).filter((i) => i.includes('auto-setup'))).toEqual([]);
    expect(s.temporal!.image).toMatch(/^temporalio\/server:/);
    expect(s.temporal!.depends_on).toEqual({ 'temporal-schema': { condition: 'service_completed_successfully' } });
    const schema = s['temporal-schema']!;
    expect(schema.image).toMatch(/^temporalio\/admin-tools:/);
    expect(schema.depends_on).toEqual({ postgresql: { condition: 'service_healthy' } });
    const script = schema.command!.join('\n');
    for (const step of ['temporal-sql-tool', ' create', 'setup-schema -v 0.0', 'update-schema -d',
      'schema temporal /etc/temporal/schema/postgresql/v12/temporal/versioned',
      'schema temporal_visibility /etc/temporal/schema/postgresql/v12/visibility/versioned']) expect(script).toContain(step);
    expect(script.startsWith('set -eu')).toBe(true);
    expect(schema.environment).toMatchObject({ SQL_PLUGIN: 'postgres12', SQL_PASSWORD: 'not-a-real-password' });
    expect(s.temporal!.environment).toMatchObject({ DB: 'postgres12', POSTGRES_SEEDS: 'postgresql', DBNAME: 'temporal', VISIBILITY_DBNAME: 'temporal_visibility' });
  });

  it('creates the namespace with an explicit retention (30 days), then registers every search attribute, failing loudly', async () => {
    const s = await config();
    const ns = s['temporal-namespace']!;
    expect(ns.depends_on).toEqual({ temporal: { condition: 'service_healthy' } });
    expect(ns.environment!.TEMPORAL_RETENTION).toBe('720h');
    expect(ns.command!.join('\n')).toMatch(/namespace create --namespace "\$\$TEMPORAL_NAMESPACE" --retention "\$\$TEMPORAL_RETENTION"/);
    expect((await config({ TEMPORAL_RETENTION: '1000h' }))['temporal-namespace']!.environment!.TEMPORAL_RETENTION).toBe('1000h');

    const sa = s['temporal-search-attributes']!;
    expect(sa.depends_on).toEqual({ 'temporal-namespace': { condition: 'service_completed_successfully' } });
    expect(sa.environment!.SEARCH_ATTRIBUTES!.split(' ').sort())
      .toEqual(Object.entries(SEARCH_ATTRIBUTE_DEFINITIONS).map(([name, type]) => `${name}=${type}`).sort());
    const script = sa.command!.join('\n');
    expect(script.startsWith('set -eu')).toBe(true);
    expect(script).not.toContain('|| true');
    expect(script).toContain('exit 1');
  });

  it('puts the Web UI on its own bind, loopback unless told otherwise', async () => {
    const s = await config();
    expect(s['temporal-ui']!.image).toMatch(/^temporalio\/ui:/);
    expect(s['temporal-ui']!.ports).toEqual(['127.0.0.1:8080:8080/tcp']);
    expect(s.temporal!.ports).toEqual(['127.0.0.1:7233:7233/tcp']);
    const moved = await config({ TEMPORAL_UI_BIND: '10.0.0.5' });
    expect(moved['temporal-ui']!.ports).toEqual(['10.0.0.5:8080:8080/tcp']);
    expect(moved.temporal!.ports).toEqual(['127.0.0.1:7233:7233/tcp']);
  });
});
