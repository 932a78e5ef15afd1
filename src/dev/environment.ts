/**
 * One machine playing every host: a Temporal dev server (SQLite in the data folder, Web UI on) and
 * one worker per inventory host, each on its own task queue, plus the orchestrator worker.
 * Hosts are kept apart on the one Docker engine by name prefix, labels and their own loopback address.
 * With a health plane (`health:` in the inventory): each host's health publisher, as `migrate worker`
 * starts it, and the aggregator with failover armed, as `migrate health --watch --failover` (the
 * system's one): a host of this machine judged lost is failed over here too.
 */
import path from 'node:path';
import Dockerode from 'dockerode';
import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
import { Client, Connection } from '@temporalio/client';
import { startHealthPublisher, type HealthPublisher } from '../health/publisher.js';
import type { Aggregator } from '../health/aggregator.js';
import { watchHealth } from '../ops/health.js';
import { keepTrafficRoutes } from '../workers/traffic-keeper.js';
import type { Plan, PlanOptions, UnitSpec } from '../plan/plan.js';
import type { Inventory } from '../inventory/schema.js';
import { createHostWorker, createOrchestratorWorker, hostContext } from '../workers/workers.js';
import { startDevServer, type DevServer } from './temporal-server.js';
import { ensureStubImage } from './stub-image.js';
import { freeLoopbackPort, seedWorkerMetrics, serveMetrics, type MetricsServer } from '../metrics/server.js';

export interface DevEnvironment {
  server: DevServer;
  connection: NativeConnection;
  workers: Worker[];
  /** Resolves when every worker has stopped. */
  running: Promise<void>;
  /** With `metrics`: where the workers' Prometheus metrics are served. */
  metricsUrl?: string;
  /**
   * With a health plane: the hosts' publishers and the aggregator (failover armed), once NATS
   * answers (they wait for it, as workers do; the rest of the environment does not wait for them).
   */
  health?: Promise<{ publishers: HealthPublisher[]; aggregator?: Aggregator }>;
  stop(): Promise<void>;
}

export interface DevHealthOptions {
  plan: Plan;
  planOptions?: PlanOptions;
  /** --stub: a failed-over unit runs the stand-in image, as the deploy ran it. */
  mapSpec?: (spec: UnitSpec) => UnitSpec;
  /** What the health plane says (a failover started, a connection refused), one line each. */
  say?: (line: string) => void;
}

let runtimeInstalled = false;
/**
 * Install the process's Temporal runtime (once per process), quiet; with `sdkMetricsPort`, the SDK
 * exports its own metrics for Prometheus on 127.0.0.1:<port> (src/metrics/server.ts serves them on).
 */
export function quietRuntime(options: { sdkMetricsPort?: number } = {}): void {
  if (runtimeInstalled) {
    if (options.sdkMetricsPort) throw new Error('the Temporal runtime of this process is already installed without metrics: install it with sdkMetricsPort first');
    return;
  }
  runtimeInstalled = true;
  Runtime.install({
    logger: new DefaultLogger(process.env.MIGRATE_LOG_LEVEL === 'debug' ? 'DEBUG' : 'ERROR'),
    ...(options.sdkMetricsPort ? { telemetryOptions: { metrics: { prometheus: { bindAddress: `127.0.0.1:${options.sdkMetricsPort}` } } } } : {}),
  });
}

export async function startDevEnvironment(inventory: Inventory, options: { dataDir: string; port?: number; uiPort?: number; metrics?: string; health?: DevHealthOptions }): Promise<DevEnvironment> {
  const sdkMetricsPort = options.metrics ? await freeLoopbackPort() : undefined;
  quietRuntime({ sdkMetricsPort });
  process.env.MIGRATE_DATA_DIR ??= options.dataDir;
  const docker = new Dockerode();
  await docker.ping().catch((err: Error) => {
    throw new Error(`no Docker engine answers on /var/run/docker.sock (${err.message}): run scripts/setup.sh, which installs docker.io and starts dockerd`);
  });
  const [server] = await Promise.all([
    startDevServer({ dbFile: path.join(options.dataDir, 'temporal.sqlite'), port: options.port ?? 7233, uiPort: options.uiPort ?? 8233 }),
    ensureStubImage(docker),
  ]);
  const connection = await NativeConnection.connect({ address: server.address });
  const workers: Worker[] = [await createOrchestratorWorker({ connection })];
  const contexts = Object.keys(inventory.hosts).map((host) => hostContext(inventory, host));
  for (const context of contexts) workers.push(await createHostWorker({ connection, context }));
  let metrics: MetricsServer | undefined;
  if (options.metrics) {
    await seedWorkerMetrics(contexts, inventory.backups?.directory);
    metrics = await serveMetrics(options.metrics, { sdkPort: sdkMetricsPort });
  }
  const running = Promise.all(workers.map((w) => w.run())).then(() => undefined);
  const health = inventory.health && options.health ? startDevHealth(inventory, contexts, server.address, options.health) : undefined;
  // Each host's traffic proxy follows its routed containers when the engine starts them again (new ports).
  const keepers = contexts.map((context) => keepTrafficRoutes(context));
  return {
    server,
    connection,
    workers,
    running,
    metricsUrl: metrics?.url,
    ...(health ? { health: health.ready } : {}),
    async stop() {
      keepers.forEach((k) => k.stop());
      await health?.stop();
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await running;
      await metrics?.close();
      await connection.close();
      await server.stop();
    },
  };
}

/**
 * Every host's health publisher and the aggregator, started in the background (each waits for NATS).
 * One that fails is said and the rest runs on; stop() stops what started and gives up on what still waits.
 */
function startDevHealth(inventory: Inventory, contexts: ReturnType<typeof hostContext>[], temporalAddress: string, options: DevHealthOptions) {
  const settings = inventory.health!;
  const say = options.say ?? ((line: string) => process.stderr.write(`${line}\n`));
  const peers = Object.fromEntries(options.plan.hosts.map((h) => [h.name, h.address]));
  const publishing = contexts.map((context) => startHealthPublisher({
    context, inventory, settings, peers,
    units: Object.values(options.plan.units).filter((u) => u.host === context.host),
  }).catch((err: Error) => {
    say(`health plane: ${context.host}'s publisher did not start: ${err.message}`);
    return undefined;
  }));
  const clientConnection = Connection.connect({ address: temporalAddress });
  const aggregating = clientConnection.then((connection) => watchHealth(inventory, {
    failover: { client: new Client({ connection }), planOptions: options.planOptions, mapSpec: options.mapSpec },
    onFailover: (host, workflowId) => say(`${host} lost: failover started (workflow ${workflowId})`),
    onError: (err) => say(`failover could not start: ${err.message}`),
  }, options.planOptions)).catch((err: Error) => {
    say(`health plane: the aggregator did not start: ${err.message}`);
    return undefined;
  });
  const ready = Promise.all([Promise.all(publishing), aggregating]).then(([ps, aggregator]) => ({ publishers: ps.filter((p): p is HealthPublisher => p !== undefined), ...(aggregator ? { aggregator } : {}) }));
  /** What has started by now (within a second): a part still waiting for NATS is left to the process's end. */
  const settled = <T>(p: Promise<T>) => Promise.race([p, new Promise<undefined>((r) => setTimeout(() => r(undefined), 1_000).unref())]);
  return {
    ready,
    async stop() {
      await (await settled(aggregating))?.stop();
      await Promise.all(publishing.map(async (p) => (await settled(p))?.stop()));
      await (await settled(clientConnection.catch(() => undefined)))?.close();
    },
  };
}
