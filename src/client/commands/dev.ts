/** `migrate dev`: a dev server and one worker per host on this machine, until Ctrl-C. */
import type { Command } from 'commander';
import { z } from 'zod';
import { loadInventoryFiles } from '../../inventory/load.js';
import { startDevEnvironment } from '../../dev/environment.js';
import { hostQueue } from '../../plan/queues.js';
import { action, collect, parseOptions } from '../common.js';

export const DEV_INVENTORY = ['inventory/agentsys.yaml', 'inventory/local.yaml'];

export const devOptions = z.object({
  inventory: z.array(z.string()).default(DEV_INVENTORY),
  dataDir: z.string().default('.data'),
  port: z.coerce.number().int().min(1).max(65535).default(7233),
  uiPort: z.coerce.number().int().min(1).max(65535).default(8233),
});

export function registerDev(program: Command): void {
  program
    .command('dev')
    .description('start a Temporal dev server (SQLite, Web UI) and one worker per inventory host on this machine')
    .option('-i, --inventory <file>', `inventory files (default ${DEV_INVENTORY.join(' + ')})`, collect)
    .option('--data-dir <dir>', 'where the dev server keeps its SQLite file and hosts their data', '.data')
    .option('--port <port>', 'Temporal frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(devOptions, raw);
      const { inventory } = await loadInventoryFiles(opts.inventory);
      const env = await startDevEnvironment(inventory, { dataDir: opts.dataDir, port: opts.port, uiPort: opts.uiPort });
      process.stdout.write(`Temporal dev server on ${env.server.address}; Web UI ${env.server.uiUrl}\n`);
      for (const h of Object.keys(inventory.hosts)) process.stdout.write(`  worker for ${h} polling ${hostQueue(h)}\n`);
      process.stdout.write('Ctrl-C stops everything.\n');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await env.stop();
    }));
}
