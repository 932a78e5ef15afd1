/**
 * Per-test-file Temporal plumbing: a client and in-process host workers against the run's dev
 * server (started once by global-setup). Every test names its own project, so containers of
 * different tests never meet on the shared engine.
 */
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type Worker } from '@temporalio/worker';
import type { Inventory } from '../../src/inventory/schema.js';
import { quietRuntime } from '../../src/dev/environment.js';
import { createHostWorker, createOrchestratorWorker, hostContext } from '../../src/workers/workers.js';

export interface TestWorld {
  client: Client;
  connection: NativeConnection;
  workers: Map<string, Worker>;
  runs: Map<string, Promise<void>>;
  /** Start (or restart) the worker of one host, optionally with a fixed identity. */
  startHost(host: string, identity?: string): Promise<Worker>;
  /** Stop one host's worker (as if its process died or it was shut down). */
  stopHost(host: string): Promise<void>;
  close(): Promise<void>;
}

/** `address`: another dev server than the run's (default: the run's, from global-setup). */
export async function startWorld(inventory: Inventory, options: { hosts?: string[]; orchestrator?: boolean; address?: string } = {}): Promise<TestWorld> {
  quietRuntime();
  const address = options.address ?? inject('temporalAddress');
  process.env.MIGRATE_WORKFLOW_BUNDLE = inject('workflowBundle');
  const connection = await NativeConnection.connect({ address });
  const clientConnection = await Connection.connect({ address });
  const client = new Client({ connection: clientConnection });
  const workers = new Map<string, Worker>();
  const runs = new Map<string, Promise<void>>();

  const world: TestWorld = {
    client,
    connection,
    workers,
    runs,
    async startHost(host, identity) {
      const worker = await createHostWorker({ connection, context: hostContext(inventory, host, identity) });
      workers.set(host, worker);
      runs.set(host, worker.run());
      return worker;
    },
    async stopHost(host) {
      const worker = workers.get(host);
      if (!worker) return;
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await runs.get(host);
      workers.delete(host);
      runs.delete(host);
    },
    async close() {
      for (const host of [...workers.keys()]) await world.stopHost(host);
      await clientConnection.close();
      await connection.close();
    },
  };

  if (options.orchestrator !== false) {
    const orchestrator = await createOrchestratorWorker({ connection });
    workers.set('__orchestrator', orchestrator);
    runs.set('__orchestrator', orchestrator.run());
  }
  for (const host of options.hosts ?? Object.keys(inventory.hosts)) await world.startHost(host);
  return world;
}

/** Run `fn` with a world of this inventory's workers, closed afterwards whatever happens. */
export async function withWorld<T>(inventory: Inventory, fn: (world: TestWorld) => Promise<T>): Promise<T> {
  const world = await startWorld(inventory);
  try {
    return await fn(world);
  } finally {
    await world.close();
  }
}

/** A workflow's history as JSON with every payload decoded (payloads are base64 in the JSON form): for "no secret in it" checks. */
export async function historyText(client: Client, workflowId: string): Promise<string> {
  const raw = JSON.stringify(await client.workflow.getHandle(workflowId).fetchHistory());
  return raw.replace(/"data":"([A-Za-z0-9+/=]+)"/g, (_m, b64: string) => `"data":${JSON.stringify(Buffer.from(b64, 'base64').toString('utf8'))}`);
}
