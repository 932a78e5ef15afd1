/**
 * `migrate import compose`: the seeds' compose files (test/fixtures/compose, copied verbatim from
 * seeds 000 and 003 with their mistakes) and a hand-written one, through the pure importer and then
 * through the same loading and planning `migrate plan` does. No server.
 */
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parseDocument } from 'yaml';
import { importCompose, hostFromFileName } from '../../src/import/compose.js';
import { splitWords } from '../../src/import/text.js';
import { InventoryError, loadInventoryFiles, parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { registerImport } from '../../src/client/commands/import.js';

const FIXTURES = 'test/fixtures/compose';
const fixture = (name: string) => readFile(path.join(FIXTURES, name), 'utf8');
let tmp: string;
beforeAll(async () => { tmp = await mkdtemp(path.join(tmpdir(), 'import-compose-')); });
afterAll(async () => { await rm(tmp, { recursive: true, force: true }); });

/** Apply edits to the written YAML (the operator following the printed fixes), save it, load and plan it as `migrate plan` does. */
async function planWritten(yamlText: string, edits: [string[], unknown][], name: string) {
  const doc = parseDocument(yamlText);
  for (const [p, v] of edits) doc.setIn(p, v);
  const file = path.join(tmp, name);
  await writeFile(file, doc.toString());
  const { inventory } = await loadInventoryFiles([file]);
  return { inventory, plan: buildPlan(inventory) };
}

/** The seed's own fix for its duplicate `networks:`: one map with the entries of both. */
function mergeNetworks(text: string): string {
  const lines = text.split('\n');
  const second = lines.findIndex((l, i) => i > 3 && l.startsWith('networks:'));
  const entries = lines.slice(second + 1);
  const first = lines.indexOf('networks:');
  return [...lines.slice(0, first + 1), ...entries.filter((l) => l.trim() !== ''), ...lines.slice(first + 1, second)].join('\n');
}

describe('seed 000: docker-compose.complete.yml', () => {
  it('is refused with the duplicate `networks:` key, its two lines and the fix', async () => {
    const text = await fixture('docker-compose.complete.yml');
    let err: unknown;
    try {
      importCompose([{ file: 'docker-compose.complete.yml', text }]);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(InventoryError);
    const problems = (err as InventoryError).problems;
    expect(problems).toHaveLength(1);
    const secondLine = text.split('\n').findIndex((l, i) => i > 3 && l.startsWith('networks:')) + 1;
    expect(secondLine).toBe(291);
    expect(problems[0]).toEqual({
      path: 'docker-compose.complete.yml:291',
      message: 'duplicate key "networks" (first at line 4): compose keeps only one of the two, silently',
      fix: 'merge the two `networks:` maps into one (lines 4 and 291), or rename one',
    });
  });

  describe('with its networks merged (the printed fix)', () => {
    let text: string;
    let result: ReturnType<typeof importCompose>;
    beforeAll(async () => {
      text = mergeNetworks(await fixture('docker-compose.complete.yml'));
      result = importCompose([{ file: 'docker-compose.complete.yml', text, host: 'mainpc' }], { project: 'agentsys' });
    });

    it('reports the `databaseabase` network as the one mistake, at its line, with the name it meant', () => {
      const line = text.split('\n').findIndex((l) => l.trim() === '- databaseabase') + 1;
      expect(result.notes.filter((n) => n.kind === 'mistake')).toEqual([{
        kind: 'mistake',
        file: 'docker-compose.complete.yml',
        line,
        path: 'services.redis.networks[0]',
        message: 'the network "databaseabase" is not declared under the top-level `networks:` (did you mean "database"?): compose would refuse the file',
        fix: 'write "database"',
      }]);
    });

    it('says the networks become one per host, and that the subnet is left out', () => {
      const info = result.notes.find((n) => n.kind === 'info' && n.path === 'networks');
      expect(info?.message).toContain('one network, agentsys-mainpc');
      expect(info?.message).toContain('frontend, api, backend, database, monitoring, rl');
      expect(result.notes).toContainEqual(expect.objectContaining({ kind: 'unmappable', path: 'networks.agent-network.ipam' }));
    });

    it('turns every literal password into a from_env reference and lists it for the operator', () => {
      const services = result.inventory.services as Record<string, { environment?: Record<string, unknown>; command?: unknown }>;
      expect(services.postgres!.environment!.POSTGRES_PASSWORD).toEqual({ from_env: 'AGENTSYS_POSTGRES_PASSWORD' });
      expect(services.influxdb!.environment!.DOCKER_INFLUXDB_INIT_PASSWORD).toEqual({ from_env: 'AGENTSYS_DOCKER_INFLUXDB_INIT_PASSWORD' });
      expect(services.grafana!.environment!.GF_SECURITY_ADMIN_PASSWORD).toEqual({ from_env: 'AGENTSYS_GF_SECURITY_ADMIN_PASSWORD' });
      // the URL with a password in it: six services, one variable
      for (const s of ['production-api', 'agent-api', 'agent-coordinator', 'memory-manager', 'workflow-engine', 'knowledge-manager']) {
        expect(services[s]!.environment!.DATABASE_URL).toEqual({ from_env: 'AGENTSYS_DATABASE_URL' });
      }
      // redis-server --requirepass redis_pass
      expect(services.redis!.command).toBe('exec redis-server --requirepass "$REDIS_PASSWORD" --maxmemory 512mb --maxmemory-policy allkeys-lru');
      expect(services.redis!.environment).toEqual({ REDIS_PASSWORD: { from_env: 'AGENTSYS_REDIS_PASSWORD' } });

      expect(result.secrets.map((s) => [s.name, s.hosts, s.usedBy.length])).toEqual([
        ['AGENTSYS_DATABASE_URL', ['mainpc'], 6],
        ['AGENTSYS_POSTGRES_PASSWORD', ['mainpc'], 1],
        ['AGENTSYS_REDIS_PASSWORD', ['mainpc'], 1],
        ['AGENTSYS_DOCKER_INFLUXDB_INIT_PASSWORD', ['mainpc'], 1],
        ['AGENTSYS_GF_SECURITY_ADMIN_PASSWORD', ['mainpc'], 1],
      ]);
      expect(result.secrets[1]!.from).toEqual([`docker-compose.complete.yml:${text.split('\n').findIndex((l) => l.includes('POSTGRES_PASSWORD')) + 1} services.postgres.environment.POSTGRES_PASSWORD`]);
      // no value reaches the inventory, its YAML or the notes
      const everything = JSON.stringify([result.inventory, result.notes, result.secrets]) + result.yaml;
      for (const literal of ['agent_pass', 'redis_pass', 'admin_pass']) expect(everything).not.toContain(literal);
      expect(result.yaml).toContain('AGENTSYS_POSTGRES_PASSWORD  (on mainpc: services.postgres.environment.POSTGRES_PASSWORD)');
    });

    it('reports each published port without a health check and adds a tcp probe on its first port', () => {
      const services = result.inventory.services as Record<string, { healthcheck?: unknown; ports?: string[] }>;
      const probed = result.notes.filter((n) => n.kind === 'changed' && n.message.startsWith('no healthcheck but publishes'));
      expect(probed).toHaveLength(20);
      expect(Object.keys(services)).toHaveLength(20);
      expect(services.nginx!.healthcheck).toEqual({ tcp: 80 });
      expect(services.postgres!.healthcheck).toEqual({ tcp: 5432 });
      expect(probed.find((n) => n.path === 'services.nginx.ports')?.message).toBe('no healthcheck but publishes 80:80: added healthcheck: { tcp: 80 } (ready once the published port accepts a TCP connection)');
    });

    it('keeps compose\'s depends_on meaning (service_started) and the GPU reservation', () => {
      const services = result.inventory.services as Record<string, { depends_on?: unknown; gpu?: unknown }>;
      expect(services['agent-api']!.depends_on).toEqual({
        postgres: { condition: 'service_started' }, redis: { condition: 'service_started' }, 'agent-coordinator': { condition: 'service_started' },
      });
      expect(services['rl-training-server']!.gpu).toEqual({ count: 1 });
      expect(result.inventory.hosts).toEqual({ mainpc: { docker: { socket: '/var/run/docker.sock' }, gpus: [], gpu_runtime: 'nvidia' } });
    });

    it('plans once the printed to-do is done: the host\'s GPU declared', async () => {
      expect(result.notes.filter((n) => n.kind === 'todo').map((n) => n.fix)).toEqual(['declare them: hosts.mainpc.gpus: [{ model: RTX 4090, vram_gb: 24 }] (your model and memory)']);
      expect(result.problems.map((p) => p.path)).toEqual(['services.rl-training-server.gpu']);
      const { plan } = await planWritten(result.yaml, [[['hosts', 'mainpc', 'gpus'], [{ model: 'RTX 4090', vram_gb: 24 }]]], 'seed000.yaml');
      expect(Object.keys(plan.units)).toHaveLength(20);
      expect(plan.serviceWaves[0]).toEqual(expect.arrayContaining(['postgres', 'redis', 'influxdb', 'prometheus']));
      expect(plan.serviceWaves.at(-1)).toContain('nginx');
      expect(plan.units['rl-training-server']!.gpuDeviceRequest).toBe(true);
      expect(plan.units.postgres!.environment.POSTGRES_PASSWORD).toEqual({ from_env: 'AGENTSYS_POSTGRES_PASSWORD' });
      expect(plan.units.postgres!.probe).toEqual({ kind: 'tcp', address: '127.0.0.1', port: 5432 });
    });
  });
});

describe('seed 003: docker-compose.mainpc.yml + docker-compose.pc2.yml', () => {
  let result: ReturnType<typeof importCompose>;
  beforeAll(async () => {
    result = importCompose([
      { file: 'docker-compose.mainpc.yml', text: await fixture('docker-compose.mainpc.yml') },
      { file: 'docker-compose.pc2.yml', text: await fixture('docker-compose.pc2.yml') },
    ], { project: 'agentsys' });
  });
  const noImage = [
    'reasoning-services-group', 'vision-processing-group', 'learning-knowledge-group', 'speech-services-group', 'audio-interface-group', 'emotion-system-group',
    'memory-services-group', 'ai-reasoning-group', 'web-services-group', 'infrastructure-group',
  ];

  it('takes the hosts from the file names, one file per host', () => {
    expect(result.hosts).toEqual([{ file: 'docker-compose.mainpc.yml', host: 'mainpc' }, { file: 'docker-compose.pc2.yml', host: 'pc2' }]);
    expect(Object.keys(result.inventory.hosts as object)).toEqual(['mainpc', 'pc2']);
    const services = result.inventory.services as Record<string, { placement: unknown }>;
    expect(services['gpu-infrastructure-group']!.placement).toEqual({ host: 'mainpc' });
    expect(services.redis!.placement).toEqual({ host: 'pc2' });
  });

  it('lists exactly the seed\'s contradictions: a fragment without `services:`, ten groups without an image, a GPU on an undeclared card', () => {
    const mistakes = result.notes.filter((n) => n.kind === 'mistake');
    expect(mistakes[0]).toMatchObject({ file: 'docker-compose.mainpc.yml', line: 4, path: 'gpu-infrastructure-group' });
    expect(mistakes[0]!.message).toContain('the file has no `services:` key');
    expect(mistakes.slice(1).map((n) => n.path.split('.').at(-1))).toEqual(noImage);
    expect(mistakes).toHaveLength(11);
    expect(result.notes.filter((n) => n.kind === 'todo').map((n) => n.message)).toEqual([
      'gpu-infrastructure-group reserves a GPU, but compose does not say which GPUs mainpc has: gpu_runtime: nvidia is set, the GPU list is empty',
    ]);
    expect(result.problems.map((p) => p.path)).toEqual(noImage.map((s) => `services.${s}`));
    // container_name is left out, with the reason
    expect(result.notes).toContainEqual(expect.objectContaining({ kind: 'unmappable', path: 'services.redis.container_name', line: 8 }));
  });

  it('plans as a two-host inventory once the listed fixes are made', async () => {
    const { plan } = await planWritten(result.yaml, [
      ...noImage.map((s): [string[], unknown] => [['services', s, 'image'], `agentsys/${s}:1`]),
      [['hosts', 'mainpc', 'gpus'], [{ model: 'RTX 4090', vram_gb: 24 }]],
    ], 'seed003.yaml');
    expect(plan.hosts.map((h) => h.queue)).toEqual(['host-mainpc', 'host-pc2']);
    expect(plan.units['gpu-infrastructure-group']!.host).toBe('mainpc');
    expect(plan.units['infrastructure-group']!.host).toBe('pc2');
    expect(plan.units['infrastructure-group']!.ports).toHaveLength(9);
    expect(plan.units['observability-hub-forwarder']!.environment).toEqual({ HUB_MODE: 'forwarder', MAINPC_ENDPOINT: 'http://192.168.100.16:9000' });
  });
});

describe('a hand-written compose file, field by field', () => {
  const compose = `
name: Shop
services:
  db:
    image: postgres:\${PG_TAG:-16}
    environment:
      POSTGRES_PASSWORD: hunter2
      POSTGRES_USER: shop
      PGDATA:
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U $$POSTGRES_USER"]
      interval: 2s
      timeout: 1m30s
      retries: 5
      start_period: 10s
      start_interval: 1s
    volumes:
      - type: volume
        source: dbdata
        target: /var/lib/postgresql/data
      - /scratch
    networks: [back]
    restart: always
  api:
    build:
      context: ./api
      dockerfile: Dockerfile.prod
      args: ["VERSION=1.2", "COMMIT"]
      target: runtime
    command: python -m api --name "my shop" --verbose
    entrypoint: /init
    container_name: shop-api
    environment:
      - DATABASE_URL=postgresql://shop:hunter2@db:5432/shop
      - API_TOKEN=\${API_TOKEN}
      - LOG_LEVEL=info
    ports:
      - "127.0.0.1:8080:8000"
      - target: 9100
        published: "9101"
        protocol: udp
      - "7000-7001:7000-7001"
    volumes:
      - ./config:/etc/api:ro,z
    depends_on:
      db:
        condition: service_healthy
      migrate:
        condition: service_completed_successfully
        restart: true
    deploy:
      replicas: 2
      resources:
        limits: { memory: 1g }
        reservations:
          devices:
            - capabilities: [gpu]
              count: 2
    labels: { team: shop }
    heathcheck: { test: ["CMD", "true"] }
  migrate:
    image: shop/migrate:1
    restart: "no"
    depends_on: [db]
volumes:
  dbdata:
networks:
  back:
`;

  it('maps every field, notes every change and lists what it left out', () => {
    const r = importCompose([{ file: 'deploy/compose.yaml', text: compose, baseDir: 'deploy' }]);
    expect(r.project).toBe('shop');
    expect(r.hosts).toEqual([{ file: 'deploy/compose.yaml', host: 'main' }]);
    const s = r.inventory.services as Record<string, Record<string, unknown>>;

    expect(s.db).toEqual({
      image: 'postgres:16',
      environment: { POSTGRES_PASSWORD: { from_env: 'SHOP_POSTGRES_PASSWORD' }, POSTGRES_USER: 'shop', PGDATA: { from_env: 'PGDATA' } },
      healthcheck: { test: ['CMD-SHELL', 'pg_isready -U $POSTGRES_USER'], interval: '2s', timeout: '1m30s', retries: 5, start_period: '10s' },
      volumes: ['dbdata:/var/lib/postgresql/data', 'db_scratch:/scratch'],
      placement: { host: 'main' },
    });
    expect(s.api).toEqual({
      build: { context: './deploy/api', dockerfile: 'Dockerfile.prod', args: { VERSION: '1.2' } },
      command: ['python', '-m', 'api', '--name', 'my shop', '--verbose'],
      environment: { DATABASE_URL: { from_env: 'SHOP_DATABASE_URL' }, API_TOKEN: { from_env: 'API_TOKEN' }, LOG_LEVEL: 'info' },
      ports: ['127.0.0.1:8080:8000', '9101:9100/udp', '7000:7000', '7001:7001'],
      volumes: ['./deploy/config:/etc/api:ro'],
      gpu: { count: 2 },
      healthcheck: { tcp: 8000 },
      depends_on: { db: { condition: 'service_healthy' }, migrate: { condition: 'service_completed_successfully' } },
      placement: { host: 'main' },
    });
    expect(s.migrate).toEqual({ image: 'shop/migrate:1', depends_on: { db: { condition: 'service_started' } }, placement: { host: 'main' } });

    const byPath = (p: string) => r.notes.filter((n) => n.path === p).map((n) => n.kind);
    expect(byPath('services.db.image')).toEqual(['changed']);
    expect(byPath('services.db.environment.PGDATA')).toEqual(['changed']);
    expect(byPath('services.db.healthcheck.start_interval')).toEqual(['unmappable']);
    expect(byPath('services.db.volumes[1]')).toEqual(['changed']);
    expect(byPath('services.api.build.target')).toEqual(['unmappable']);
    expect(byPath('services.api.build.args.COMMIT')).toEqual(['unmappable']);
    expect(byPath('services.api.entrypoint')).toEqual(['unmappable']);
    expect(byPath('services.api.container_name')).toEqual(['unmappable']);
    expect(byPath('services.api.labels')).toEqual(['unmappable']);
    expect(byPath('services.api.volumes[0]')).toEqual(['changed', 'unmappable']);
    expect(byPath('services.api.deploy.replicas')).toEqual(['unmappable']);
    expect(byPath('services.api.deploy.resources.limits')).toEqual(['unmappable']);
    expect(byPath('services.api.depends_on.migrate.restart')).toEqual(['unmappable']);
    expect(byPath('services.api.ports[2]')).toEqual(['changed']);
    expect(byPath('services.api.ports')).toEqual(['changed']);
    expect(byPath('services.migrate.restart')).toEqual(['unmappable']);
    const typo = r.notes.find((n) => n.path === 'services.api.heathcheck')!;
    expect(typo).toMatchObject({ kind: 'mistake', line: compose.split('\n').findIndex((l) => l.includes('heathcheck')) + 1 });
    expect(typo.message).toContain('did you mean "healthcheck"?');
    expect(r.secrets.map((x) => x.name)).toEqual(['SHOP_POSTGRES_PASSWORD', 'SHOP_DATABASE_URL']);
    expect(r.yaml).not.toContain('hunter2');

    // what the inventory loader makes of it
    const inv = parseInventory(parseDocument(r.yaml).toJS());
    expect(inv.services.db!.healthcheck).toMatchObject({ interval: 2000, timeout: 90_000, retries: 5, start_period: 10_000 });
    expect(inv.services.api!.ports).toEqual([
      { hostIp: '127.0.0.1', published: 8080, target: 8000, protocol: 'tcp' },
      { hostIp: undefined, published: 9101, target: 9100, protocol: 'udp' },
      { hostIp: undefined, published: 7000, target: 7000, protocol: 'tcp' },
      { hostIp: undefined, published: 7001, target: 7001, protocol: 'tcp' },
    ]);
    expect(inv.services.api!.volumes).toEqual([{ source: './deploy/config', target: '/etc/api', readOnly: true, type: 'bind' }]);
    expect(inv.services.db!.volumes[1]).toEqual({ source: 'db_scratch', target: '/scratch', readOnly: false, type: 'volume' });
    // and it plans, once the GPU is declared
    expect(r.problems.map((p) => p.path)).toEqual(['services.api.gpu']);
  });

  it('renames a service two hosts declare, and follows its depends_on on that host', () => {
    const a = 'services:\n  redis: { image: redis:7 }\n  app: { image: app:1, depends_on: [redis] }\n';
    const b = 'services:\n  redis: { image: redis:7 }\n  worker: { image: w:1, depends_on: [redis, app] }\n';
    const r = importCompose([{ file: 'a.yml', text: a, host: 'one' }, { file: 'b.yml', text: b, host: 'two' }], { project: 'p' });
    const s = r.inventory.services as Record<string, Record<string, unknown>>;
    expect(Object.keys(s)).toEqual(['redis', 'app', 'redis-two', 'worker']);
    expect(s.worker!.depends_on).toEqual({ 'redis-two': { condition: 'service_started' }, app: { condition: 'service_started' } });
    expect(r.notes).toContainEqual(expect.objectContaining({ kind: 'changed', file: 'b.yml', path: 'services.redis' }));
    expect(r.notes).toContainEqual(expect.objectContaining({ kind: 'info', file: 'b.yml', path: 'services.worker.depends_on' }));
    // worker (two) → app (one) crosses hosts, and app publishes no port: the plan refuses it (src/plan/cross-host.ts).
    expect(r.problems.map((p) => p.path)).toEqual(['services.worker.depends_on.app']);
  });
});

describe('helpers', () => {
  it('names the host after the file, or main', () => {
    expect(hostFromFileName('docker/docker-compose.mainpc.yml')).toBe('mainpc');
    expect(hostFromFileName('compose.pc2.yaml')).toBe('pc2');
    expect(hostFromFileName('docker-compose.yml')).toBeUndefined();
    expect(hostFromFileName('docker-compose.complete.yml')).toBeUndefined();
  });

  it('splits a string command as compose does', () => {
    expect(splitWords(`sh -c 'echo "a b"' x\\ y "q\\"z"`)).toEqual(['sh', '-c', 'echo "a b"', 'x y', 'q"z']);
    expect(splitWords('echo "open')).toBeUndefined();
  });
});

describe('the command', () => {
  async function run(...args: string[]): Promise<{ code: number; out: string; err: string }> {
    const program = new Command('migrate').exitOverride();
    registerImport(program);
    let out = '';
    let err = '';
    const o = vi.spyOn(process.stdout, 'write').mockImplementation((s) => { out += String(s); return true; });
    const e = vi.spyOn(process.stderr, 'write').mockImplementation((s) => { err += String(s); return true; });
    const before = process.exitCode;
    try {
      await program.parseAsync(['node', 'migrate', ...args]);
      return { code: Number(process.exitCode ?? 0), out, err };
    } finally {
      o.mockRestore();
      e.mockRestore();
      process.exitCode = before;
    }
  }

  it('exits 2 on the duplicate key with the file, line and fix, and writes nothing', async () => {
    const out = path.join(tmp, 'dup.yaml');
    const r = await run('import', 'compose', `${FIXTURES}/docker-compose.complete.yml`, '-o', out);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${FIXTURES}/docker-compose.complete.yml:291: duplicate key "networks"`);
    expect(r.err).toContain('fix: merge the two `networks:` maps into one');
    await expect(readFile(out)).rejects.toThrow();
  });

  it('exits 2 on an unreadable file, and on more --host than files', async () => {
    expect((await run('import', 'compose', 'nope.yml')).code).toBe(2);
    expect((await run('import', 'compose', `${FIXTURES}/docker-compose.pc2.yml`, '--host', 'a', '--host', 'b')).code).toBe(2);
    expect((await run('import', 'compose', `${FIXTURES}/docker-compose.pc2.yml`, '--host', 'Not A Host')).code).toBe(2);
  });

  it('writes the inventory, pairs --host with the files in order, and exits 0 when it plans', async () => {
    const a = path.join(tmp, 'docker-compose.yml');
    await writeFile(a, 'services:\n  web:\n    image: nginx:1\n    ports: ["8080:80"]\n    environment: { ADMIN_PASSWORD: s3cret }\n');
    const out = path.join(tmp, 'inv', 'inventory.yaml');
    await import('node:fs/promises').then((fs) => fs.mkdir(path.dirname(out), { recursive: true }));
    const r = await run('import', 'compose', a, '--host', 'edge', '-o', out, '--project', 'demo', '--json');
    expect(r.code).toBe(0);
    const json = JSON.parse(r.out);
    expect(json).toMatchObject({ ok: true, output: out, project: 'demo', hosts: [{ file: a, host: 'edge' }], problems: [] });
    expect(json.secrets).toEqual([expect.objectContaining({ name: 'DEMO_ADMIN_PASSWORD', hosts: ['edge'] })]);
    const { inventory } = await loadInventoryFiles([out]);
    expect(inventory.services.web!.placement).toEqual({ host: 'edge' });
    expect(await readFile(out, 'utf8')).not.toContain('s3cret');
    // an existing output is kept unless --force
    expect((await run('import', 'compose', a, '-o', out)).code).toBe(2);
    expect((await run('import', 'compose', a, '-o', out, '--force', '--project', 'demo')).code).toBe(0);
  });
});
