/** `migrate plan`: validate the inventory and print the plan. Starts nothing. */
import type { Command } from 'commander';
import { formatPlan } from '../../plan/format.js';
import { action, commonOptions, inventoryOption, loadPlan, parseOptions, printJson } from '../common.js';

export function registerPlan(program: Command): void {
  inventoryOption(program
    .command('plan')
    .description('validate the inventory and print the plan: hosts, dependency order, placement, batches'))
    .option('--json', 'machine-readable output')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(commonOptions.pick({ inventory: true, json: true }), raw);
      const { plan } = await loadPlan(opts.inventory);
      if (opts.json) printJson(plan);
      else process.stdout.write(`${formatPlan(plan)}\n`);
    }));
}
