/**
 * Isolated hosts on this machine: two network namespaces on a bridge, each with its own dockerd.
 * Asserts on the world: which engine holds which container, what answers on which address, what a
 * container on one host reaches on the other by name, and that down() leaves nothing behind.
 * Needs root, `ip` and `nsenter` (CI has them); skips with the reason otherwise.
 */
import { execFile, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import {
  defaultStateDir, isolatedHostsUnsupported, leftovers, netnsId, netnsList, netnsOfPid, pidAlive, removeStaleIsolatedHosts, upIsolatedHosts, type IsolatedHosts,
} from '../../src/dev/isolated-hosts.js';
import { cutLink, killEngine, killWorker, restartEngine, restoreLink } from '../../src/dev/faults.js';
import { MIGRATE_BIN, startIsolatedEnvironment, type IsolatedEnvironment } from '../../src/dev/isolated-environment.js';
import { freePort } from '../../src/dev/temporal-server.js';
import { probeHosts } from '../../src/workflows/routing.js';
import { ORCHESTRATOR_QUEUE } from '../../src/plan/queues.js';
import { loadImageInto } from '../../src/dev/image-transfer.js';
import { containerCreateOptions } from '../../src/activities/docker.js';
import { runTool } from '../../src/activities/exec.js';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { containerName, networkName } from '../../src/plan/queues.js';
import { ensureStubImage, STUB_IMAGE } from '../helpers/stub-image.js';

const exec = promisify(execFile);
const prefix = 'isot';
const subnet = '10.231.7.0/24';
const stateDir = `/var/lib/migrate-isolated/${prefix}`;
const project = 'isot';
const unsupported = await isolatedHostsUnsupported();
const root = new Dockerode();

async function httpStatus(url: string, timeoutMs = 1500): Promise<number | string> {
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
    await res.text();
    return res.status;
  } catch (err) {
    return (err as Error).name;
  }
}

async function eventually<T>(probe: () => Promise<T>, ok: (v: T) => boolean, timeoutMs: number): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (ok(value) || Date.now() > deadline) return value;
    await new Promise((r) => setTimeout(r, 200));
  }
}

describe.skipIf(unsupported)(`isolated hosts${unsupported ? ` (skipped: ${unsupported})` : ''}`, () => {
  let iso: IsolatedHosts;
  let a: Dockerode;
  let b: Dockerode;
  const timings: Record<string, number> = {};

  // svc-a on iso-a publishes 8080 on iso-a's address; client on iso-b depends on it by name.
  const plan = () => buildPlan(parseInventory({
    version: 1,
    project,
    hosts: { 'iso-a': { address: iso.host('iso-a').address }, 'iso-b': { address: iso.host('iso-b').address } },
    services: {
      'svc-a': { image: STUB_IMAGE, ports: ['8080:8080'], healthcheck: { http: '/health' }, placement: { host: 'iso-a' } },
      client: { image: STUB_IMAGE, depends_on: ['svc-a'], placement: { host: 'iso-b' } },
    },
  }));

  async function create(docker: Dockerode, unit: string): Promise<void> {
    const spec = plan().units[unit]!;
    await docker.createNetwork({ Name: networkName(project, spec.host), CheckDuplicate: true }).catch(() => undefined);
    const container = await docker.createContainer(containerCreateOptions(project, spec, { release: 'r1', change: 'test-r1' }, { AGENT_PORTS: '8080' }));
    await container.start();
  }

  beforeAll(async () => {
    await removeStaleIsolatedHosts(stateDir); // what a killed earlier run left (never another run's live hosts)
    const started = Date.now();
    iso = await upIsolatedHosts({ prefix, subnet, hosts: ['iso-a', 'iso-b'], stateDir });
    timings.upMs = Date.now() - started;
    a = iso.docker('iso-a');
    b = iso.docker('iso-b');
    await ensureStubImage(root);
    const loading = Date.now();
    await Promise.all([loadImageInto(root, a, STUB_IMAGE), loadImageInto(root, b, STUB_IMAGE)]);
    timings.loadImageMs = Date.now() - loading;
  });

  afterAll(async () => {
    await removeStaleIsolatedHosts(stateDir); // ours, or left by a dead process: never another live run's
    console.info(`isolated hosts: ${JSON.stringify(timings)}`);
  });

  it('gives each host its own engine: a container made through one is in no other engine', async () => {
    // (Docker 20.10 derives the engine ID from /etc/docker/key.json, shared here: the root dir tells them apart.)
    const roots = await Promise.all([root, a, b].map(async (d) => ((await d.info()) as { DockerRootDir: string }).DockerRootDir));
    expect(new Set(roots).size).toBe(3);
    await create(a, 'svc-a');
    const name = containerName(project, 'iso-a', 'svc-a');
    const names = async (d: Dockerode) => (await d.listContainers({ all: true })).flatMap((c) => c.Names.map((n) => n.slice(1)));
    expect(await names(a)).toContain(name);
    expect(await names(b)).not.toContain(name);
    expect(await names(root)).not.toContain(name);
    // Its dockerd runs inside the host's namespace.
    const { stdout } = await exec('ip', ['netns', 'pids', iso.host('iso-a').netns]);
    expect(stdout.split('\n').map(Number)).toContain(iso.host('iso-a').dockerPid);
  });

  it('answers from the root namespace on the host\'s own address, and nowhere else', async () => {
    const { address } = iso.host('iso-a');
    expect(await eventually(() => httpStatus(`http://${address}:8080/health`), (s) => s === 200, 10_000)).toBe(200);
    expect(await httpStatus(`http://${iso.host('iso-b').address}:8080/health`, 500)).not.toBe(200);
  });

  it('lets a container on iso-b reach svc-a on iso-a by name (ExtraHosts from the plan)', async () => {
    expect(plan().units.client!.extraHosts).toEqual([`svc-a:${iso.host('iso-a').address}`]);
    await create(b, 'client');
    const client = containerName(project, 'iso-b', 'client');
    const res = await runTool(b, client, ['sh', '-c', 'printf "GET /health HTTP/1.0\\r\\nHost: svc-a\\r\\n\\r\\n" | nc -w 3 svc-a 8080']);
    expect(res.stdout).toMatch(/^HTTP\/1\.0 200/);
    expect(res.stdout).toContain('"status":"ok"');
  });

  it('cutLink takes a host off the network and restoreLink puts it back', async () => {
    const host = iso.host('iso-a');
    const url = `http://${host.address}:8080/health`;
    await cutLink(host);
    try {
      expect(await httpStatus(url, 1000)).not.toBe(200);
      const client = containerName(project, 'iso-b', 'client');
      const res = await runTool(b, client, ['sh', '-c', 'printf "GET /health HTTP/1.0\\r\\n\\r\\n" | nc -w 2 svc-a 8080']);
      expect(res.stdout).not.toContain('200');
    } finally {
      await restoreLink(host);
    }
    expect(await eventually(() => httpStatus(url), (s) => s === 200, 10_000)).toBe(200);
  });

  it('killEngine stops the host\'s engine; restartEngine brings it back with its containers', async () => {
    const host = iso.host('iso-a');
    const before = host.dockerPid;
    await killEngine(host);
    expect(pidAlive(before)).toBe(false);
    await expect(a.ping()).rejects.toThrow();
    const started = Date.now();
    await restartEngine(host);
    timings.engineRestartMs = Date.now() - started;
    expect(host.dockerPid).not.toBe(before);
    expect(String(await a.ping())).toBe('OK');
    const listed = await a.listContainers({ all: true });
    expect(listed.map((c) => c.Names[0])).toContain(`/${containerName(project, 'iso-a', 'svc-a')}`);
  });

  it('down() leaves no namespace, link, mount, process or state behind', async () => {
    const pids = iso.hosts.map((h) => h.dockerPid);
    const started = Date.now();
    await iso.down();
    timings.downMs = Date.now() - started;
    const namespaces = await netnsList();
    expect(namespaces.filter((n) => n.startsWith(`${prefix}-`))).toEqual([]);
    const { stdout: links } = await exec('ip', ['-o', 'link', 'show']);
    expect(links).not.toMatch(new RegExp(`\\b${prefix}-`));
    expect(pids.filter(pidAlive)).toEqual([]);
    expect(existsSync(stateDir)).toBe(false);
    expect(await leftovers(prefix, stateDir)).toEqual([]);
    // The root engine never saw any of it.
    expect((await root.listContainers({ all: true })).filter((c) => c.Names.some((n) => n.startsWith(`/${project}-`)))).toEqual([]);
  });
});

describe.skipIf(unsupported)('a migrate worker inside each isolated host', () => {
  const workerPrefix = 'isow';
  const workerState = defaultStateDir(workerPrefix);
  let env: IsolatedEnvironment | undefined;
  let dir: string | undefined;

  afterAll(async () => {
    await env?.stop();
    await removeStaleIsolatedHosts(workerState); // ours, or left by a dead process: never another live run's
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('runs each host\'s activities in the worker process inside that host, reaching Temporal over the bridge', async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'isow-'));
    const inventoryFile = path.join(dir, 'inventory.yaml');
    const doc = { version: 1, project: 'isow', hosts: { 'iso-a': {}, 'iso-b': {} } };
    await writeFile(inventoryFile, stringify(doc));
    process.env.MIGRATE_WORKFLOW_BUNDLE = inject('workflowBundle'); // built once by global-setup
    // The run's dev server (127.0.0.1) is forwarded onto the bridge: the hosts reach it as another machine's.
    env = await startIsolatedEnvironment({
      inventory: parseInventory(doc), inventoryFiles: [inventoryFile], dataDir: path.join(dir, 'data'),
      prefix: workerPrefix, subnet: '10.231.5.0/24', stateDir: workerState, temporal: { address: inject('temporalAddress') },
    });
    expect(env.temporalAddress).toBe(`10.231.5.1:${inject('temporalAddress').split(':').pop()}`);
    const connection = await Connection.connect({ address: inject('temporalAddress') });
    try {
      const reports = await new Client({ connection }).workflow.execute(probeHosts, {
        taskQueue: ORCHESTRATOR_QUEUE,
        workflowId: `isolated-probe-${process.pid}-${Date.now()}`,
        args: [['iso-a', 'iso-b']],
        workflowExecutionTimeout: '2 minutes',
      });
      for (const w of env.workers) {
        const report = reports.find((r) => r.host === w.host)!;
        expect(report.pid).toBe(w.pid);
        expect(await netnsOfPid(report.pid)).toBe(await netnsId(env.iso.host(w.host).netns));
      }
      expect(await netnsOfPid(process.pid)).not.toBe(await netnsId(env.iso.host('iso-a').netns));
    } finally {
      await connection.close();
    }
    // The fault helper: the worker inside iso-a dies at once.
    const worker = env.workers[0]!;
    const exited = new Promise<NodeJS.Signals | null>((resolve) => worker.process.once('exit', (_code, signal) => resolve(signal)));
    await killWorker(worker.pid);
    expect(await exited).toBe('SIGKILL');
    await env.stop();
    expect(env.workers.map((w) => w.pid).filter(pidAlive)).toEqual([]);
    expect(await leftovers(workerPrefix, workerState)).toEqual([]);
  });
});

describe.skipIf(unsupported)('migrate dev --isolated-hosts', () => {
  const cliPrefix = 'isoc';
  const cliState = defaultStateDir(cliPrefix);
  let dir: string | undefined;

  afterAll(async () => {
    await removeStaleIsolatedHosts(cliState); // ours, or left by a dead process: never another live run's
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('prints each host\'s address, engine and worker (each in its namespace), and Ctrl-C removes everything', async () => {
    await removeStaleIsolatedHosts(cliState);
    dir = await mkdtemp(path.join(os.tmpdir(), 'isoc-'));
    const inventoryFile = path.join(dir, 'inventory.yaml');
    await writeFile(inventoryFile, stringify({ version: 1, project: 'isoc', hosts: { mainpc: {}, pc2: {} } }));
    const cli = spawn(process.execPath, [MIGRATE_BIN, 'dev', '--isolated-hosts', '--json', '--prefix', cliPrefix, '--subnet', '10.231.6.0/24',
      '--port', String(await freePort()), '--ui-port', String(await freePort()), '--data-dir', path.join(dir, 'data'), '-i', inventoryFile], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (c: Buffer) => { stdout += c.toString(); });
    cli.stderr.on('data', (c: Buffer) => { stderr += c.toString(); });
    const exited = new Promise<number | null>((resolve) => cli.once('exit', (code) => resolve(code)));
    try {
      type Printed = { ok: boolean; temporal: { fromHosts: string }; hosts: { host: string; address: string; netns: string; docker: string; dockerPid: number; workerPid: number }[] };
      const printed = await eventually<Printed | undefined>(async () => {
        try {
          return JSON.parse(stdout) as Printed;
        } catch {
          return undefined;
        }
      }, (v) => v !== undefined || cli.exitCode !== null, 120_000);
      expect(printed, `migrate dev printed no JSON; stderr: ${stderr}`).toBeDefined();
      expect(printed!.temporal.fromHosts).toMatch(/^10\.231\.6\.1:\d+$/);
      expect(printed!.hosts.map((h) => [h.host, h.address])).toEqual([['mainpc', '10.231.6.2'], ['pc2', '10.231.6.3']]);
      for (const h of printed!.hosts) {
        expect(await netnsOfPid(h.workerPid)).toBe(await netnsId(h.netns));
        expect(await netnsOfPid(h.dockerPid)).toBe(await netnsId(h.netns));
        expect(String(await new Dockerode({ socketPath: h.docker.replace('unix://', '') }).ping())).toBe('OK');
      }
      cli.kill('SIGINT');
      expect(await exited).toBe(0);
      for (const h of printed!.hosts) expect([h.workerPid, h.dockerPid].filter(pidAlive)).toEqual([]);
      expect(await leftovers(cliPrefix, cliState)).toEqual([]);
    } finally {
      if (cli.exitCode === null && cli.signalCode === null) {
        cli.kill('SIGKILL');
        await exited;
      }
    }
  });
});
