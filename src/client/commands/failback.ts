/**
 * `migrate failback HOST`: move the units failed over from HOST back to it, exactly (the failbackHost
 * workflow: a stateful unit's writes frozen and its data backed up, stop the moved copy, clear the
 * fence, start the home copy behind its health gate, restore the data, remove the moved copy). `migrate failback HOST --approve UNIT [--backup ID]` lets a stateful unit of a
 * running failover of HOST move.
 */
import type { Command } from 'commander';
import path from 'node:path';
import { z } from 'zod';
import { HOST_NAME_RE, NAME_RE } from '../../inventory/schema.js';
import { loadInventoryFiles } from '../../inventory/load.js';
import { approveFailover, failback } from '../../ops/index.js';
import { BadInput } from '../../ops/errors.js';
import { action, backupId, commonOptions, inventoryOption, parseArgument, parseOptions, printJson, temporalOptions, withClient } from '../common.js';

const failbackOptions = commonOptions.extend({
  approve: z.string().regex(NAME_RE, { message: 'must be a unit name of the inventory' }).optional(),
  backup: backupId.optional(),
}).refine((o) => !o.backup || o.approve, { message: '--backup goes with --approve UNIT', path: ['backup'] });

export function registerFailback(program: Command): void {
  temporalOptions(inventoryOption(program
    .command('failback')
    .description('move the units failed over from HOST back to it, exactly; or, with --approve UNIT, let a stateful unit of HOST\'s failover move')
    .argument('<host>', 'the host that was lost and is back')
    .option('--approve <unit>', 'approve the failover of this stateful unit (its failover waits for it)')
    .option('--backup <id>', 'with --approve: restore this backup rather than the latest verified one')))
    .action(action(async (hostArg: string, raw: unknown) => {
      const host = parseArgument(z.string().regex(HOST_NAME_RE, { message: 'must be a host name of the inventory' }), hostArg, 'host');
      const opts = parseOptions(failbackOptions, raw);
      const { inventory } = await loadInventoryFiles(opts.inventory);
      // Checked against the inventory before any connection: a name it lacks is bad input.
      if (!Object.hasOwn(inventory.hosts, host)) {
        throw new BadInput('invalid arguments', [{ path: 'host', message: `unknown host "${host}"`, fix: `use one of the inventory's hosts: ${Object.keys(inventory.hosts).join(', ')}` }]);
      }
      if (opts.approve && !Object.hasOwn(inventory.services, opts.approve)) {
        throw new BadInput('invalid options', [{ path: '--approve', message: `"${opts.approve}" is not a service of the inventory`, fix: `name a stateful service that fails over from ${host}: ${Object.entries(inventory.services).filter(([, s]) => s.failover).map(([n]) => n).join(', ') || 'none has a failover policy'}` }]);
      }
      const planOptions = { baseDir: path.dirname(path.resolve(opts.inventory[0]!)) };
      return withClient(opts, async (client) => {
        if (opts.approve) {
          const r = await approveFailover(client, inventory.project, host, opts.approve, opts.backup);
          if (opts.json) printJson(r);
          else process.stdout.write(`${r.unit}: approved, moving to ${r.to}\n`);
          return 0;
        }
        const result = await failback(client, inventory, host, planOptions);
        if (opts.json) printJson(result);
        else if (result.units.length === 0) process.stdout.write(`nothing was failed over from ${host}\n`);
        else for (const u of result.units) process.stdout.write(`${u.unit}: ${u.status === 'back' ? `back on ${host} (its copy on ${u.from} removed)` : `still on ${u.from}: ${u.error}`}${u.writes ? ` [writes ${u.writes}]` : ''}\n`);
        return result.units.some((u) => u.status === 'failed') ? 1 : 0;
      });
    }));
}
