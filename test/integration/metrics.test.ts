/**
 * Metrics out, seen by a real Prometheus (Debian's `prometheus` package): the `migrate worker`
 * binary runs with `--metrics HOST:PORT` against the run's dev server; Prometheus scrapes it every
 * second and evaluates the shipped alert rules (deploy/prometheus/alerts.yml, with `for:` set to 0s
 * in a copy). The test asks Prometheus's HTTP API — never the worker's logs — whether the tool's and
 * the SDK's metrics are there and which alerts fire:
 *   - a verified backup two days old (in the host's backup store when the worker starts) fires
 *     "no verified backup";
 *   - a deploy that confirms is counted with its duration; one that rolls back fires "deploy rolled back".
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parse, stringify } from 'yaml';
import { afterAll, describe, expect, inject, it } from 'vitest';
import Dockerode from 'dockerode';
import { Client, Connection, WorkflowFailedError } from '@temporalio/client';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { LABELS, ORCHESTRATOR_QUEUE } from '../../src/plan/queues.js';
import { freePort } from '../../src/dev/temporal-server.js';
import { deployStack, type DeployInput } from '../../src/workflows/deploy.js';
import { STUB_IMAGE } from '../helpers/stub-image.js';
import { eventually } from '../helpers/eventually.js';

const docker = new Dockerode();
const project = `metr${process.pid}`;
const WORKER_IP = '127.0.0.157';
const PROM_IP = '127.0.0.158';
const children: ChildProcess[] = [];
const dirs: string[] = [];

interface Sample { metric: Record<string, string>; value: [number, string] }

function spawnLogged(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): ChildProcess {
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  child.on('exit', (code) => { if (code) console.error(`${cmd} exited ${code}:\n${out.slice(-3000)}`); });
  children.push(child);
  return child;
}

afterAll(async () => {
  for (const c of children) {
    if (c.exitCode === null) {
      c.kill('SIGTERM');
      await new Promise((r) => { c.once('exit', r); setTimeout(r, 10_000); });
    }
  }
  for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } })) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  for (const n of await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } })) await docker.getNetwork(n.Id).remove().catch(() => undefined);
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

describe('worker metrics scraped by a real Prometheus, shipped alert rules evaluated', () => {
  it('promtool accepts the shipped rules and example config', () => {
    expect(spawnSync('prometheus', ['--version']).status, 'Debian\'s prometheus package is missing: run scripts/setup.sh').toBe(0);
    for (const args of [['check', 'rules', 'deploy/prometheus/alerts.yml'], ['check', 'config', 'deploy/prometheus/prometheus.yml']]) {
      const r = spawnSync('promtool', args, { encoding: 'utf8' });
      expect(r.status, r.stdout + r.stderr).toBe(0);
    }
  });

  it('serves the tool\'s and the SDK\'s metrics; a two-day-old verified backup and a rolled-back deploy fire their alerts', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'migrate-metrics-'));
    dirs.push(dir);
    const hc = { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '1s' };
    const raw = {
      version: 1,
      project,
      hosts: { mainpc: { address: '127.0.0.156' } },
      services: { web: { image: 'web:1', ports: ['8761:8761'], healthcheck: hc } },
    };
    await writeFile(path.join(dir, 'inventory.yaml'), stringify(raw));
    const plan = buildPlan(parseInventory(raw));

    // A verified backup of "db", taken two days ago, already in mainpc's store.
    const oldBackup = new Date(Date.now() - 2 * 24 * 3600_000);
    const id = `old-${process.pid}`;
    const folder = path.join(dir, 'data', 'hosts', 'mainpc', 'backups', id);
    await mkdir(folder, { recursive: true });
    await writeFile(path.join(folder, 'manifest.json'), JSON.stringify({
      id, createdAt: oldBackup.toISOString(), host: 'mainpc', status: 'verified',
      components: [{ name: 'db', kind: 'postgres', host: 'mainpc', file: 'db.dump', bytes: 1234, sha256: 'a'.repeat(64), dumpMs: 50 }],
      verification: { at: oldBackup.toISOString(), components: [{ name: 'db', ok: true, detail: 'restored', ms: 10 }] },
    }));

    // The worker, as an operator starts it.
    const metricsPort = await freePort(WORKER_IP);
    const address = inject('temporalAddress');
    spawnLogged(process.execPath, ['bin/migrate.mjs', 'worker', '--host', 'mainpc', '-i', path.join(dir, 'inventory.yaml'), '--address', address, '--metrics', `${WORKER_IP}:${metricsPort}`], {
      ...process.env, MIGRATE_DATA_DIR: path.join(dir, 'data'), MIGRATE_WORKFLOW_BUNDLE: inject('workflowBundle'),
    });
    const scrape = () => fetch(`http://${WORKER_IP}:${metricsPort}/metrics`).then((r) => r.text());
    const first = await eventually('the worker\'s metrics endpoint', async () => (await scrape().catch(() => '')).includes('temporal_') ? scrape() : undefined, 60_000);
    expect(first).toContain(`migrate_backup_newest_verified_timestamp_seconds{host="mainpc",component="db"} ${Math.floor(oldBackup.getTime() / 1000)}`);
    expect(first).toContain('migrate_host_lost{host="mainpc"} 0');

    // Prometheus: its own config, the shipped rules with `for: 0s`, scraping every second.
    const rules = parse(await readFile('deploy/prometheus/alerts.yml', 'utf8')) as { groups: { rules: { for?: string }[] }[] };
    for (const g of rules.groups) for (const r of g.rules) if (r.for) r.for = '0s';
    await writeFile(path.join(dir, 'alerts.yml'), stringify(rules));
    await writeFile(path.join(dir, 'prometheus.yml'), stringify({
      global: { scrape_interval: '1s', evaluation_interval: '1s' },
      rule_files: ['alerts.yml'],
      scrape_configs: [{ job_name: 'migrate', static_configs: [{ targets: [`${WORKER_IP}:${metricsPort}`] }] }],
    }));
    const promPort = await freePort(PROM_IP);
    spawnLogged('prometheus', [`--config.file=${path.join(dir, 'prometheus.yml')}`, `--storage.tsdb.path=${path.join(dir, 'tsdb')}`, `--web.listen-address=${PROM_IP}:${promPort}`, '--log.level=warn']);
    const api = async <T>(p: string): Promise<T> => {
      const body = await (await fetch(`http://${PROM_IP}:${promPort}/api/v1/${p}`)).json() as { status: string; data: T };
      if (body.status !== 'success') throw new Error(JSON.stringify(body));
      return body.data;
    };
    const query = (q: string) => api<{ result: Sample[] }>(`query?query=${encodeURIComponent(q)}`).then((d) => d.result);
    const firing = async (name: string) => (await api<{ alerts: { labels: Record<string, string>; state: string }[] }>('alerts')).alerts.filter((a) => a.labels.alertname === name && a.state === 'firing');

    // The tool's and the SDK's metrics, as Prometheus stored them.
    const verified = await eventually('the newest-verified gauge in Prometheus', async () => (await query('migrate_backup_newest_verified_timestamp_seconds')).at(0));
    expect(verified.metric).toMatchObject({ job: 'migrate', host: 'mainpc', component: 'db' });
    expect(Number(verified.value[1])).toBe(Math.floor(oldBackup.getTime() / 1000));
    const sdk = await query('count({__name__=~"temporal_.+", job="migrate"})');
    expect(Number(sdk[0]!.value[1])).toBeGreaterThan(0);

    // "No verified backup in 26 hours" fires for db.
    const noBackup = await eventually('MigrateNoVerifiedBackup firing', async () => (await firing('MigrateNoVerifiedBackup')).at(0));
    expect(noBackup.labels).toMatchObject({ component: 'db', severity: 'critical' });
    expect(await firing('MigrateHostLost')).toEqual([]);

    // A deploy that confirms, then one that rolls back, both run by the spawned worker.
    const connection = await Connection.connect({ address });
    const client = new Client({ connection });
    try {
      const units = (version: string, env: Record<string, string> = {}) => Object.values(stubPlan(plan, { image: STUB_IMAGE, version, env: { web: env } }).units);
      const deploy = (release: string, args: Partial<DeployInput>) => client.workflow.execute(deployStack, {
        taskQueue: ORCHESTRATOR_QUEUE, workflowId: `deploy-${release}`, args: [{ release, project, units: [], ...args }],
      });
      const good = await deploy(`m-good-${process.pid}`, { units: units('1'), autoConfirm: true });
      expect(good.phase).toBe('confirmed');
      const bad = await deploy(`m-bad-${process.pid}`, { units: units('2', { AGENT_MODE: 'unhealthy' }), autoConfirm: true }).catch((e: unknown) => e);
      expect(bad).toBeInstanceOf(WorkflowFailedError);
    } finally {
      await connection.close();
    }

    const changes = await eventually('both deploys counted', async () => {
      const r = await query(`migrate_changes_total{project="${project}"}`);
      return r.length === 2 ? r : undefined;
    });
    expect(Object.fromEntries(changes.map((s) => [s.metric.status, Number(s.value[1])]))).toEqual({ confirmed: 1, failed: 1 });
    const durations = await query(`migrate_change_duration_seconds_sum{project="${project}",status="confirmed"}`);
    expect(Number(durations[0]!.value[1])).toBeGreaterThan(0);
    const rolled = await eventually('MigrateDeployRolledBack firing', async () => (await firing('MigrateDeployRolledBack')).find((a) => a.labels.project === project));
    expect(rolled.labels.severity).toBe('warning');
    console.log(`metrics: deploy durations ${JSON.stringify(durations.map((s) => s.value[1]))} s; alerts firing: MigrateNoVerifiedBackup(db), MigrateDeployRolledBack(${project})`);
  });
});
