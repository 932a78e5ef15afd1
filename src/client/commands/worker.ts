/** `migrate worker --host NAME`: this machine is host NAME; poll its task queue (and run workflows). */
import type { Command } from 'commander';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { z } from 'zod';
import { createHostWorker, createOrchestratorWorker, hostContext, runWorkers } from '../../workers/workers.js';
import { startHealthPublisher, type HealthPublisher } from '../../health/publisher.js';
import { keepTrafficRoutes } from '../../workers/traffic-keeper.js';
import { hostQueue, ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import { BadInput, OperationFailed } from '../../ops/errors.js';
import { action, clientDataConverter, collect, commonOptions, connectionFlags, loadPlan, metricsBind, parseOptions, temporalConnection } from '../common.js';
import { sdkConnectOptions } from '../../common/connection.js';
import { quietRuntime } from '../../dev/environment.js';
import { freeLoopbackPort, seedWorkerMetrics, serveMetrics, type MetricsServer } from '../../metrics/server.js';

const workerOptions = commonOptions.extend({
  host: z.string({ message: 'name this machine\'s host: --host NAME (one of the inventory\'s hosts)' }).min(1),
  workflows: z.boolean().default(true),
  metrics: metricsBind.optional(),
});

export function registerWorker(program: Command): void {
  connectionFlags(program
    .command('worker')
    .description('run the worker of one host: its activities and its agents\' migrations on host-<NAME>, and workflow tasks on the orchestrator queue')
    .requiredOption('--host <name>', 'which inventory host this machine is')
    .option('-i, --inventory <file>', 'inventory file (repeatable)', collect)
    .option('--no-workflows', 'poll only this host\'s queue (its activities and its agents\' migrations), not the orchestrator queue')
    .option('--metrics <host:port>', 'serve Prometheus metrics (the tool\'s and the Temporal SDK\'s) on HOST:PORT'))
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(workerOptions, raw);
      // The whole plan is checked, as `migrate plan` does: a worker does not serve an inventory that would be refused.
      const { inventory, plan } = await loadPlan(opts.inventory);
      if (!Object.hasOwn(inventory.hosts, opts.host)) {
        throw new BadInput('invalid options', [{ path: '--host', message: `unknown host "${opts.host}"`, fix: `use one of: ${Object.keys(inventory.hosts).join(', ')}` }]);
      }
      const target = temporalConnection(opts);
      const dataConverter = clientDataConverter(); // bad codec keys are bad input, before any connection
      // The SDK's metrics need the runtime installed with them, before the first connection.
      const sdkMetricsPort = opts.metrics ? await freeLoopbackPort() : undefined;
      if (sdkMetricsPort) quietRuntime({ sdkMetricsPort });
      let connection: NativeConnection;
      try {
        connection = await NativeConnection.connect(sdkConnectOptions(target));
      } catch (err) {
        throw new OperationFailed(`cannot reach the Temporal server at ${target.describe} (${(err as Error).message}): start one with \`migrate dev\`, or pass --address (and --tls-ca/--tls-cert/--tls-key or --api-key if it needs them)`);
      }
      const context = hostContext(inventory, opts.host);
      await context.docker.ping().catch((err: Error) => {
        throw new OperationFailed(`host ${opts.host}: its Docker engine does not answer (${err.message}); check hosts.${opts.host}.docker in the inventory`);
      });
      const workers: Worker[] = [await createHostWorker({ connection, namespace: target.namespace, context, dataConverter: dataConverter ?? null })];
      if (opts.workflows) workers.push(await createOrchestratorWorker({ connection, namespace: target.namespace, dataConverter: dataConverter ?? null }));
      let metrics: MetricsServer | undefined;
      if (opts.metrics) {
        await seedWorkerMetrics([context], inventory.backups?.directory);
        metrics = await serveMetrics(opts.metrics, { sdkPort: sdkMetricsPort }).catch((err: Error) => {
          throw new OperationFailed(`${err.message}: choose another --metrics address`);
        });
        process.stderr.write(`worker ${context.identity}: metrics on ${metrics.url}\n`);
      }
      // The health plane (issue 12): this host's heartbeat and its units' health on NATS. Started
      // beside the Temporal workers, not before them: a NATS server not up yet delays only this.
      let health: Promise<HealthPublisher | undefined> = Promise.resolve(undefined);
      if (inventory.health) {
        health = startHealthPublisher({
          context, inventory, settings: inventory.health,
          units: Object.values(plan.units).filter((u) => u.host === opts.host),
          peers: Object.fromEntries(plan.hosts.map((h) => [h.name, h.address])),
        }).catch((err: Error) => {
          process.stderr.write(`worker ${context.identity}: health plane: ${err.message}\n`);
          return undefined;
        });
      }
      // The host's traffic proxy follows its routed containers when the engine starts them again (issue #13).
      const keeper = keepTrafficRoutes(context, (line) => process.stderr.write(`worker ${context.identity}: ${line}\n`));
      const abort = new AbortController();
      process.once('SIGINT', () => abort.abort());
      process.once('SIGTERM', () => abort.abort());
      process.stderr.write(`worker ${context.identity}: polling ${hostQueue(opts.host)}${opts.workflows ? ` and ${ORCHESTRATOR_QUEUE}` : ''} on ${target.describe}\n`);
      try {
        await runWorkers(workers, abort.signal);
      } finally {
        keeper.stop();
        await metrics?.close();
        await (await health)?.stop();
        await connection.close();
      }
    }));
}
