/**
 * One machine playing every host: a Temporal dev server (SQLite in the data folder, Web UI on) and
 * one worker per inventory host, each on its own task queue, plus the orchestrator worker.
 * Hosts are kept apart on the one Docker engine by name prefix, labels and their own loopback address.
 */
import path from 'node:path';
import Dockerode from 'dockerode';
import { NativeConnection, Runtime, DefaultLogger, type Worker } from '@temporalio/worker';
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
  stop(): Promise<void>;
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

export async function startDevEnvironment(inventory: Inventory, options: { dataDir: string; port?: number; uiPort?: number; metrics?: string }): Promise<DevEnvironment> {
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
  return {
    server,
    connection,
    workers,
    running,
    metricsUrl: metrics?.url,
    async stop() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await running;
      await metrics?.close();
      await connection.close();
      await server.stop();
    },
  };
}
