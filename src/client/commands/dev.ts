/**
 * `migrate dev`: a dev server and one worker per host on this machine, until Ctrl-C.
 * `migrate dev --isolated-hosts`: every host its own network namespace, Docker engine and worker
 * process (src/dev/isolated-environment.ts); `--down` removes what a killed earlier run left.
 */
import type { Command } from 'commander';
import path from 'node:path';
import Table from 'cli-table3';
import { z } from 'zod';
import { startDevEnvironment, quietRuntime } from '../../dev/environment.js';
import { ISOLATED_DEFAULTS, startIsolatedEnvironment } from '../../dev/isolated-environment.js';
import { defaultStateDir, downIsolatedHosts, isolatedHostsUnsupported, leftovers } from '../../dev/isolated-hosts.js';
import { hostQueue } from '../../plan/queues.js';
import { stubbedUnit } from '../../dev/stub-image.js';
import { BadInput, OperationFailed } from '../../ops/errors.js';
import { action, checkDevPorts, DEV_INVENTORY, devOptions, inventoryOption, loadPlan, parseOptions, printJson } from '../common.js';

const devCommandOptions = devOptions.extend({
  isolatedHosts: z.boolean().default(false),
  // No defaults here: given without --isolated-hosts they are bad input (see isolatedOnly).
  subnet: z.string().regex(/^\d{1,3}(\.\d{1,3}){3}\/\d{1,2}$/, { message: 'must be an IPv4 CIDR, e.g. 10.231.0.0/24' }).optional(),
  prefix: z.string().regex(/^[a-z][a-z0-9-]{0,8}$/, { message: 'must be 1 to 9 lowercase letters, digits or "-", starting with a letter (it names links)' }).optional(),
  down: z.boolean().default(false),
  json: z.boolean().default(false),
  stub: z.boolean().default(false),
});

function untilSignal(): Promise<void> {
  return new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

export function registerDev(program: Command): void {
  inventoryOption(program
    .command('dev')
    .description('start a Temporal dev server (SQLite, Web UI) and one worker per inventory host on this machine'), `inventory files (default ${DEV_INVENTORY.join(' + ')})`)
    .option('--data-dir <dir>', 'where the dev server keeps its SQLite file and hosts their data', '.data')
    .option('--port <port>', 'Temporal frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .option('--isolated-hosts', 'every host its own network namespace, Docker engine and worker process (Linux, root)')
    .option('--subnet <cidr>', `with --isolated-hosts: their bridge subnet (default ${ISOLATED_DEFAULTS.subnet})`)
    .option('--prefix <name>', `with --isolated-hosts: names their namespaces and links (default ${ISOLATED_DEFAULTS.prefix})`)
    .option('--down', 'with --isolated-hosts: remove what an earlier run left (namespaces, links, engines, workers)')
    .option('--json', 'print the hosts as JSON')
    .option('--stub', 'with a health plane (`health:`): a failed-over unit runs the stand-in image, as `deploy --stub` ran it')
    .option('--metrics <host:port>', 'serve the workers\' Prometheus metrics (the tool\'s and the Temporal SDK\'s) on HOST:PORT')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(devCommandOptions, raw);
      checkDevPorts(opts);
      const isolatedOnly = (['subnet', 'prefix', 'down'] as const).filter((k) => opts[k] !== undefined && opts[k] !== false);
      if (!opts.isolatedHosts && isolatedOnly.length > 0) {
        throw new BadInput('invalid options', isolatedOnly.map((k) => ({ path: `--${k}`, message: 'only means something with --isolated-hosts', fix: `add --isolated-hosts, or drop --${k}` })));
      }
      if (opts.isolatedHosts && opts.stub) {
        throw new BadInput('invalid options', [{ path: '--stub', message: 'only means something on one engine: isolated hosts\' workers publish health, and the aggregator is yours to run', fix: 'drop --stub, and run `migrate health --watch --failover --stub` with the printed inventory' }]);
      }
      if (opts.isolatedHosts) return isolatedDev({ ...opts, subnet: opts.subnet ?? ISOLATED_DEFAULTS.subnet, prefix: opts.prefix ?? ISOLATED_DEFAULTS.prefix });
      const { inventory, plan } = await loadPlan(opts.inventory); // the whole plan checked before anything starts
      const planOptions = { baseDir: path.dirname(path.resolve(opts.inventory[0]!)) };
      const env = await startDevEnvironment(inventory, {
        dataDir: opts.dataDir, port: opts.port, uiPort: opts.uiPort, metrics: opts.metrics,
        // With a health plane: every host's publisher and the aggregator, failover armed (this is the system's one).
        health: { plan, planOptions, mapSpec: opts.stub ? stubbedUnit : undefined, say: (line) => process.stdout.write(`${line}\n`) },
      });
      process.stdout.write(`Temporal dev server on ${env.server.address}; Web UI ${env.server.uiUrl}\n`);
      for (const h of Object.keys(inventory.hosts)) process.stdout.write(`  worker for ${h} polling ${hostQueue(h)}\n`);
      if (env.metricsUrl) process.stdout.write(`  metrics on ${env.metricsUrl}\n`);
      if (inventory.health) {
        process.stdout.write(`  health plane on ${inventory.health.nats.join(', ')}: each host's publisher and the aggregator (failover armed) start once it answers\n`);
        void env.health?.then((h) => { if (h.aggregator) process.stdout.write(`  health plane up: ${h.publishers.length} publishers, the aggregator judging\n`); });
      } else process.stdout.write('  no health plane (the inventory has no `health:`): hosts are not watched, nothing fails over\n');
      process.stdout.write('Ctrl-C stops everything.\n');
      await untilSignal();
      await env.stop();
    }));
}

async function isolatedDev(opts: z.infer<typeof devCommandOptions> & { subnet: string; prefix: string }): Promise<number> {
  const stateDir = defaultStateDir(opts.prefix);
  if (opts.down) {
    await downIsolatedHosts(stateDir);
    const left = await leftovers(opts.prefix, stateDir);
    if (opts.json) printJson({ ok: left.length === 0, leftovers: left });
    else process.stdout.write(left.length ? `still there:\n${left.map((l) => `  ${l}`).join('\n')}\n` : 'isolated hosts removed: nothing left\n');
    return left.length ? 1 : 0;
  }
  const why = await isolatedHostsUnsupported();
  if (why) throw new OperationFailed(`cannot start isolated hosts: ${why}; \`migrate dev\` without --isolated-hosts plays every host on this machine's engine`);
  quietRuntime();
  const { inventory } = await loadPlan(opts.inventory);
  // Listen before starting: a Ctrl-C during the start still ends in the ordered teardown below.
  const stopped = untilSignal();
  const started = Date.now();
  const env = await startIsolatedEnvironment({ inventory, inventoryFiles: opts.inventory, dataDir: opts.dataDir, port: opts.port, uiPort: opts.uiPort, subnet: opts.subnet, prefix: opts.prefix, stateDir });
  const hosts = env.iso.hosts.map((h) => ({
    host: h.name,
    address: h.address,
    netns: h.netns,
    docker: `unix://${h.dockerSocket}`,
    dockerPid: h.dockerPid,
    workerPid: env.workers.find((w) => w.host === h.name)!.pid,
    workerLog: env.workers.find((w) => w.host === h.name)!.log,
    queue: hostQueue(h.name),
  }));
  if (opts.json) {
    printJson({
      ok: true,
      mode: 'isolated-hosts',
      temporal: { address: env.temporal.address, fromHosts: env.temporalAddress, ui: env.temporal.uiUrl },
      bridge: { name: env.iso.bridge, address: env.iso.bridgeAddress },
      inventory: env.inventoryFiles,
      stubImageLoaded: env.stubLoaded,
      startedInMs: Date.now() - started,
      hosts,
    });
  } else {
    process.stdout.write(`isolated hosts on ${env.iso.bridge} (${env.iso.bridgeAddress}/${env.iso.prefixLength}), up in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    process.stdout.write(`Temporal dev server on ${env.temporal.address}, from the hosts ${env.temporalAddress}; Web UI ${env.temporal.uiUrl}\n`);
    const table = new Table({ head: ['host', 'address', 'Docker endpoint', 'dockerd pid', 'worker pid', 'queue'] });
    for (const h of hosts) table.push([h.host, h.address, h.docker, String(h.dockerPid), String(h.workerPid), h.queue]);
    process.stdout.write(`${table.toString()}\n`);
    process.stdout.write(`these hosts as an inventory: ${env.inventoryFiles.map((f) => `-i ${f}`).join(' ')}\n`);
    process.stdout.write('Ctrl-C removes everything (or, after a crash: migrate dev --isolated-hosts --down).\n');
  }
  await stopped;
  await env.stop();
  return 0;
}
