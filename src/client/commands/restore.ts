/** `migrate restore ID`: put a verified backup back (PostgreSQL: optionally into another database). */
import type { Command } from 'commander';
import { z } from 'zod';
import { ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import type { RestoreResult } from '../../workflows/backup.js';
import { action, collect, commonOptions, connectClient, loadPlan, parseOptions, printJson, UsageError } from '../common.js';

const restoreOptions = commonOptions.extend({
  target: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]{0,62}$/, { message: 'must be a PostgreSQL database name' }).optional(),
  only: z.array(z.string().min(1)).optional(),
  force: z.boolean().default(false),
});

export function registerRestore(program: Command): void {
  program
    .command('restore')
    .argument('<id>', 'backup id (see migrate backup list)')
    .description('restore a verified backup, then compare the restored tables with what the backup recorded')
    .option('--target <database>', 'PostgreSQL: restore into this database instead of the original')
    .option('--only <component>', 'restore only this component (repeatable)', collect)
    .option('--force', 'restore even if the backup is not verified')
    .option('-i, --inventory <file>', 'inventory file (repeatable)', collect)
    .option('--address <host:port>', 'Temporal frontend address')
    .option('--namespace <ns>', 'Temporal namespace')
    .option('--json', 'machine-readable output')
    .action(action(async (id: string, raw: unknown) => {
      const opts = parseOptions(restoreOptions, raw);
      const { plan } = await loadPlan(opts.inventory);
      if (!plan.backups) throw new UsageError('nothing to restore', [{ path: 'backups', message: 'the inventory declares no backups', fix: 'add a `backups:` section' }]);
      const { client, close } = await connectClient(opts);
      try {
        const result: RestoreResult = await client.workflow.execute('restoreBackup', {
          taskQueue: ORCHESTRATOR_QUEUE,
          workflowId: `restore-${id}`,
          args: [{ id, backups: plan.backups, components: opts.only, targetDatabase: opts.target, force: opts.force }],
        });
        if (opts.json) printJson(result);
        else process.stdout.write(`restore ${id}: ${result.ok ? 'ok' : 'incomplete'}\n${result.components.map((c) => `  ${c.ok ? '✓' : '✗'} ${c.name}: ${c.detail}`).join('\n')}\n`);
        return result.ok ? 0 : 1;
      } finally {
        await close();
      }
    }));
}
