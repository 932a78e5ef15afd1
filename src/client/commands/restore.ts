/** `migrate restore ID`: put a verified backup back (PostgreSQL: optionally into another database). */
import type { Command } from 'commander';
import { z } from 'zod';
import { BadInput, restoreBackupNow } from '../../ops/index.js';
import { action, backupId, collect, commonOptions, inventoryOption, loadPlan, parseArgument, parseOptions, printJson, temporalOptions, withClient } from '../common.js';

const restoreOptions = commonOptions.extend({
  target: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, { message: 'must be a PostgreSQL database name' }).optional(),
  only: z.array(z.string().regex(/^[A-Za-z0-9_.-]+$/, { message: 'must be a backup component name' })).optional(),
  force: z.boolean().default(false),
});

export function registerRestore(program: Command): void {
  temporalOptions(inventoryOption(program
    .command('restore')
    .argument('<id>', 'backup id (see migrate backup list)')
    .description('restore a verified backup, then compare the restored tables with what the backup recorded')
    .option('--target <database>', 'PostgreSQL: restore into this database instead of the original')
    .option('--only <component>', 'restore only this component (repeatable)', collect)
    .option('--force', 'restore even if the backup is not verified')))
    .action(action(async (rawId: string, raw: unknown) => {
      const opts = parseOptions(restoreOptions, raw);
      const id = parseArgument(backupId, rawId, '<id>');
      const { plan } = await loadPlan(opts.inventory);
      if (!plan.backups) throw new BadInput('nothing to restore', [{ path: 'backups', message: 'the inventory declares no backups', fix: 'add a `backups:` section' }]);
      const unknown = (opts.only ?? []).filter((n) => !plan.backups!.components.some((c) => c.name === n));
      if (unknown.length) throw new BadInput('invalid options', [{ path: '--only', message: `no backup component ${unknown.map((n) => `"${n}"`).join(', ')}`, fix: `name some of ${plan.backups.components.map((c) => c.name).join(', ')}` }]);
      const backups = plan.backups;
      const result = await withClient(opts, (client) => restoreBackupNow(client, { id, backups, components: opts.only, targetDatabase: opts.target, force: opts.force }));
      if (opts.json) printJson(result);
      else process.stdout.write(`restore ${id}: ${result.ok ? 'ok' : 'incomplete'}\n${result.components.map((c) => `  ${c.ok ? '✓' : '✗'} ${c.name}: ${c.detail}`).join('\n')}\n`);
      return result.ok ? 0 : 1;
    }));
}
