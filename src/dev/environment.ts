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

export interface DevEnvironment {
  server: DevServer;
  connection: NativeConnection;
  workers: Worker[];
  /** Resolves when every worker has stopped. */
  running: Promise<void>;
  stop(): Promise<void>;
}

let runtimeInstalled = false;
export function quietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  Runtime.install({ logger: new DefaultLogger(process.env.MIGRATE_LOG_LEVEL === 'debug' ? 'DEBUG' : 'ERROR') });
}

export async function startDevEnvironment(inventory: Inventory, options: { dataDir: string; port?: number; uiPort?: number }): Promise<DevEnvironment> {
  quietRuntime();
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
  for (const host of Object.keys(inventory.hosts)) {
    workers.push(await createHostWorker({ connection, context: hostContext(inventory, host) }));
  }
  const running = Promise.all(workers.map((w) => w.run())).then(() => undefined);
  return {
    server,
    connection,
    workers,
    running,
    async stop() {
      for (const w of workers) if (w.getState() === 'RUNNING') w.shutdown();
      await running;
      await connection.close();
      await server.stop();
    },
  };
}
