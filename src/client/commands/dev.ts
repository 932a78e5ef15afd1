/** `migrate dev`: a dev server and one worker per host on this machine, until Ctrl-C. */
import type { Command } from 'commander';
import { loadInventoryFiles } from '../../inventory/load.js';
import { startDevEnvironment } from '../../dev/environment.js';
import { hostQueue } from '../../plan/queues.js';
import { action, DEV_INVENTORY, devOptions, inventoryOption, parseOptions } from '../common.js';

export function registerDev(program: Command): void {
  inventoryOption(program
    .command('dev')
    .description('start a Temporal dev server (SQLite, Web UI) and one worker per inventory host on this machine'), `inventory files (default ${DEV_INVENTORY.join(' + ')})`)
    .option('--data-dir <dir>', 'where the dev server keeps its SQLite file and hosts their data', '.data')
    .option('--port <port>', 'Temporal frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .option('--metrics <host:port>', 'serve the workers\' Prometheus metrics (the tool\'s and the Temporal SDK\'s) on HOST:PORT')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(devOptions, raw);
      const { inventory } = await loadInventoryFiles(opts.inventory);
      const env = await startDevEnvironment(inventory, { dataDir: opts.dataDir, port: opts.port, uiPort: opts.uiPort, metrics: opts.metrics });
      process.stdout.write(`Temporal dev server on ${env.server.address}; Web UI ${env.server.uiUrl}\n`);
      for (const h of Object.keys(inventory.hosts)) process.stdout.write(`  worker for ${h} polling ${hostQueue(h)}\n`);
      if (env.metricsUrl) process.stdout.write(`  metrics on ${env.metricsUrl}\n`);
      process.stdout.write('Ctrl-C stops everything.\n');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await env.stop();
    }));
}
