/**
 * `migrate dev --isolated-hosts`: every inventory host an isolated host (src/dev/isolated-hosts.ts),
 * the Temporal dev server answering on the bridge (forwarded to its loopback port), and one `migrate worker --host NAME` process per
 * host running inside that host's namespace, reaching Temporal over the bridge and Docker through its
 * own engine. An inventory override (each host's bridge address and engine socket) is written beside
 * the engines, so `migrate … -i <base> -i <override>` addresses these hosts.
 */
import type { ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import Dockerode from 'dockerode';
import { Connection } from '@temporalio/client';
import { stringify } from 'yaml';
import type { Inventory } from '../inventory/schema.js';
import { hostQueue } from '../plan/queues.js';
import { workflowBundle } from '../workers/workers.js';
import { defaultStateDir, pidAlive, removeStaleIsolatedHosts, spawnInNamespace, upIsolatedHosts, type IsolatedHost, type IsolatedHosts } from './isolated-hosts.js';
import { killWorker } from './faults.js';
import { loadImageInto } from './image-transfer.js';
import { ensureStubImage, STUB_IMAGE } from './stub-image.js';
import { startDevServer, type DevServer } from './temporal-server.js';

const here = path.dirname(fileURLToPath(import.meta.url));
export const MIGRATE_BIN = path.resolve(here, '../../bin/migrate.mjs');

export const ISOLATED_DEFAULTS = { prefix: 'mig', subnet: '10.231.0.0/24' } as const;

export interface IsolatedWorker {
  host: string;
  pid: number;
  process: ChildProcess;
  log: string;
}

export interface IsolatedEnvironment {
  iso: IsolatedHosts;
  /** The Temporal server as this machine reaches it (127.0.0.1:PORT). */
  temporal: TemporalServer;
  /** The dev server this started (absent when given `temporal`). */
  server?: DevServer;
  /** Where the hosts reach the Temporal server: the bridge address, forwarded to its loopback port. */
  temporalAddress: string;
  /** The inventory override that points every host at its namespace's address and engine. */
  inventoryOverride: string;
  /** Every inventory file the workers were given, the override last. */
  inventoryFiles: string[];
  workers: IsolatedWorker[];
  /** Whether the stub image was loaded into every host's engine (only with `preloadStub`: otherwise each worker builds it on its own engine when a unit needs it). */
  stubLoaded: boolean;
  stop(): Promise<void>;
}

export interface TemporalServer {
  address: string;
  namespace: string;
  uiUrl?: string;
}

export interface IsolatedEnvironmentOptions {
  inventory: Inventory;
  inventoryFiles: string[];
  dataDir: string;
  prefix?: string;
  subnet?: string;
  stateDir?: string;
  port?: number;
  uiPort?: number;
  ui?: boolean;
  /** A Temporal server already listening on 127.0.0.1 (a test run's): no dev server is started. */
  temporal?: { address: string; namespace?: string };
  /** How long each worker may take to poll its queue (default 90 s: tsx and workflow loading on a small machine). */
  workerTimeoutMs?: number;
  /** Copy this machine's stub image into every host's engine up front (default: no, each host's worker builds it when a unit needs it). */
  preloadStub?: boolean;
}

/** The override the workers load after the operator's files: each host at its bridge address and its own engine. */
export function isolatedInventoryOverride(iso: { hosts: Pick<IsolatedHost, 'name' | 'address' | 'dockerSocket'>[] }): unknown {
  return {
    hosts: Object.fromEntries(iso.hosts.map((h) => [h.name, { address: h.address, docker: { socket: h.dockerSocket } }])),
  };
}

const LOOPBACK = new Set(['127.0.0.1', 'localhost']);

/**
 * The inventory's tcp backup targets on this machine's loopback (local.yaml: the PostgreSQL and
 * Redis running here), which no host's namespace reaches as 127.0.0.1: the lists with each such
 * target at `bridgeAddress` instead, and the ports to forward there (pure). Lists replace the
 * base file's in an override, so a list is written whole, or not at all when nothing changed.
 */
export function loopbackBackupsOverride(backups: Inventory['backups'], bridgeAddress: string): { backups?: Record<string, unknown[]>; ports: number[] } {
  const lists: Record<string, unknown[]> = {};
  const ports = new Set<number>();
  for (const kind of ['postgres', 'redis'] as const) {
    const targets = backups?.[kind] ?? [];
    if (!targets.some((t) => t.via === 'tcp' && LOOPBACK.has(t.address))) continue;
    lists[kind] = targets.map((t) => {
      if (t.via !== 'tcp' || !LOOPBACK.has(t.address)) return t;
      ports.add(t.port);
      return { ...t, address: bridgeAddress };
    });
  }
  return { backups: Object.keys(lists).length > 0 ? lists : undefined, ports: [...ports].sort((a, b) => a - b) };
}

/**
 * The health plane's NATS servers on this machine's loopback, which no host's namespace reaches as
 * 127.0.0.1: the list with each such server at `bridgeAddress` instead (its port forwarded there), and
 * the ports to forward (pure). Absent when the inventory has no health plane or none is on loopback.
 */
export function loopbackNatsOverride(health: Inventory['health'], bridgeAddress: string): { nats?: string[]; ports: number[] } {
  if (!health) return { ports: [] };
  const ports = new Set<number>();
  const nats = health.nats.map((url) => {
    const m = /^(nats|tls):\/\/([^\s/:]+)(?::(\d+))?$/.exec(url);
    if (!m || !LOOPBACK.has(m[2]!)) return url;
    const port = Number(m[3] ?? 4222);
    ports.add(port);
    return `${m[1]}://${bridgeAddress}:${port}`;
  });
  return ports.size > 0 ? { nats, ports: [...ports].sort((a, b) => a - b) } : { ports: [] };
}

async function waitForPollers(server: TemporalServer, workers: IsolatedWorker[], timeoutMs: number): Promise<void> {
  const connection = await Connection.connect({ address: server.address });
  try {
    const deadline = Date.now() + timeoutMs;
    for (const w of workers) {
      for (;;) {
        if (!pidAlive(w.pid)) throw new Error(`the worker of ${w.host} (pid ${w.pid}) exited; its log: ${w.log}`);
        const res = await connection.workflowService.describeTaskQueue({
          namespace: server.namespace,
          taskQueue: { name: hostQueue(w.host) },
          taskQueueType: 2, // TASK_QUEUE_TYPE_ACTIVITY
        });
        if ((res.pollers ?? []).some((p) => p.identity?.endsWith(`:${w.pid}`))) break;
        if (Date.now() > deadline) throw new Error(`the worker of ${w.host} (pid ${w.pid}) did not poll ${hostQueue(w.host)} within ${timeoutMs / 1000} s; its log: ${w.log}`);
        await new Promise((r) => setTimeout(r, 250));
      }
    }
  } finally {
    await connection.close();
  }
}

export async function startIsolatedEnvironment(options: IsolatedEnvironmentOptions): Promise<IsolatedEnvironment> {
  const prefix = options.prefix ?? ISOLATED_DEFAULTS.prefix;
  const dataDir = path.resolve(options.dataDir);
  const hosts = Object.keys(options.inventory.hosts);
  const stateDir = options.stateDir ?? defaultStateDir(prefix);
  await removeStaleIsolatedHosts(stateDir); // what a crashed earlier run left (one still running is refused by up)
  const iso = await upIsolatedHosts({ prefix, subnet: options.subnet ?? ISOLATED_DEFAULTS.subnet, hosts, stateDir });
  let server: DevServer | undefined;
  const workers: IsolatedWorker[] = [];
  const stop = async () => {
    await Promise.all(workers.map(async (w) => {
      if (!pidAlive(w.pid)) return;
      // SIGTERM first: the worker finishes its activities and closes its connection.
      try {
        process.kill(w.pid, 'SIGTERM');
      } catch { /* gone */ }
      const deadline = Date.now() + 15_000;
      while (pidAlive(w.pid) && w.process.exitCode === null && w.process.signalCode === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (w.process.exitCode === null && w.process.signalCode === null) await killWorker(w.pid);
    }));
    await server?.stop();
    await iso.down();
  };
  try {
    const inventoryOverride = path.join(iso.stateDir, 'inventory.yaml');
    const loopback = loopbackBackupsOverride(options.inventory.backups, iso.bridgeAddress);
    for (const port of loopback.ports) await iso.forwardToLoopback(port);
    // The health plane's NATS on this machine's loopback: forwarded onto the bridge, where every host reaches it (a cut link cuts it off).
    const nats = loopbackNatsOverride(options.inventory.health, iso.bridgeAddress);
    for (const port of nats.ports) await iso.forwardToLoopback(port);
    const override = {
      ...(isolatedInventoryOverride(iso) as object),
      ...(loopback.backups ? { backups: loopback.backups } : {}),
      ...(nats.nats ? { health: { nats: nats.nats } } : {}),
    };
    await writeFile(inventoryOverride, `# written by migrate dev --isolated-hosts; removed with the hosts\n${stringify(override)}`);
    const inventoryFiles = [...options.inventoryFiles.map((f) => path.resolve(f)), inventoryOverride];

    // Bundle the workflows once here rather than once per worker (seconds each on a small machine).
    const bundleFile = path.join(iso.stateDir, 'workflow-bundle.js');
    const root = new Dockerode();
    const [started, bundle, stubLoaded] = await Promise.all([
      options.temporal ? undefined : startDevServer({
        dbFile: path.join(dataDir, 'temporal-isolated.sqlite'),
        port: options.port,
        uiPort: options.uiPort,
        ui: options.ui,
      }),
      workflowBundle(),
      // Only when asked: the stub image, built on this machine's engine, then loaded into each host's.
      options.preloadStub
        ? ensureStubImage(root)
          .then(() => Promise.all(iso.hosts.map((h) => loadImageInto(root, iso.docker(h.name), STUB_IMAGE))))
          .then(() => true, () => false)
        : false,
    ]);
    server = started;
    const temporal: TemporalServer = started ?? { address: options.temporal!.address, namespace: options.temporal!.namespace ?? 'default' };
    if (!/^127\.0\.0\.1:\d+$/.test(temporal.address)) throw new Error(`the Temporal server must listen on 127.0.0.1 (it is forwarded onto the bridge), not ${temporal.address}`);
    const address = await iso.forwardToLoopback(Number(temporal.address.split(':').pop()));
    let bundlePath: string;
    if ('code' in bundle) {
      await writeFile(bundleFile, bundle.code);
      bundlePath = bundleFile;
    } else {
      bundlePath = bundle.codePath;
    }

    const logDir = path.join(dataDir, 'isolated-logs');
    await mkdir(logDir, { recursive: true });
    for (const host of iso.hosts) {
      const log = path.join(logDir, `${host.name}.log`);
      const argv = [process.execPath, MIGRATE_BIN, 'worker', '--host', host.name, '--address', address, '--namespace', temporal.namespace,
        ...inventoryFiles.flatMap((f) => ['-i', f])];
      const child = spawnInNamespace(host, argv, {
        MIGRATE_DATA_DIR: dataDir,
        MIGRATE_WORKFLOW_BUNDLE: bundlePath,
      }, { logFile: log });
      if (child.pid === undefined) throw new Error(`the worker of ${host.name} could not be started`);
      workers.push({ host: host.name, pid: child.pid, process: child, log });
    }
    await waitForPollers(temporal, workers, options.workerTimeoutMs ?? 90_000);
    return { iso, temporal, server, temporalAddress: address, inventoryOverride, inventoryFiles, workers, stubLoaded, stop };
  } catch (err) {
    await stop().catch(() => undefined);
    throw err;
  }
}
