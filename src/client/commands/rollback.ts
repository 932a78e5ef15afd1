/**
 * `migrate rollback RELEASE | batch-N [--restore-data [NAMES]]`: undo a change pending confirmation
 * — every unit back on its exact previous container, checked — an update on the change's own open
 * workflow, which holds what to undo and the backup it started with (`--restore-data` restores it).
 */
import type { Command } from 'commander';
import { BadInput, decideBatch, decideRelease, type RollbackOptions } from '../../ops/index.js';
import { unknownComponents } from '../../workflows/safeguard.js';
import { action, commonOptions, inventoryOption, loadPlan, parseOptions, printJson, resolveTarget, restoreDataOption, temporalOptions, withClient } from '../common.js';
import { decisionOk, formatDecision } from '../format.js';

const rollbackOptions = commonOptions.extend({ restoreData: restoreDataOption });

export function registerRollback(program: Command): void {
  temporalOptions(inventoryOption(program
    .command('rollback')
    .description('undo a release or a batch pending confirmation: every unit back on exactly what it ran before, checked')
    .argument('<target>', 'a release, or a batch of the inventory (batch-1 … batch-4)'), 'inventory file (repeatable): names the project and its batches')
    .option('--restore-data [components]', 'then restore the backup the deploy or batch started with: every component, or those named (comma-separated)'))
    .action(action(async (target: string, raw: unknown) => {
      const opts = parseOptions(rollbackOptions, raw);
      const { plan } = await loadPlan(opts.inventory);
      const t = resolveTarget(plan, target, false);
      const components = opts.restoreData?.components;
      if (opts.restoreData && !plan.backups) {
        throw new BadInput('invalid --restore-data', [{ path: '--restore-data', message: 'the inventory declares no backups: there is nothing to restore', fix: 'drop --restore-data, or pass the inventory the change ran with (-i FILE, with its backups: section)' }]);
      }
      // The change's workflow holds its backup and checks the names again; the inventory's names catch a typo before anything starts.
      const unknown = components && plan.backups ? unknownComponents(plan.backups, components) : [];
      if (unknown.length) {
        throw new BadInput('invalid --restore-data', [{ path: '--restore-data', message: `no backup component ${unknown.map((u) => `"${u}"`).join(', ')}`, fix: `name some of ${plan.backups!.components.map((c) => c.name).join(', ')}, or give no value to restore all` }]);
      }
      const options: RollbackOptions = opts.restoreData ? { restoreData: true, components } : {};
      const what = t.kind === 'batch' ? t.batch : `release ${target}`;
      const result = await withClient(opts, (client) => (t.kind === 'batch'
        ? decideBatch(client, plan.project, t.batch, 'rollback', options)
        : decideRelease(client, target, 'rollback', options, plan.project)));
      if (opts.json) printJson({ ok: decisionOk(result), target, ...result });
      else process.stdout.write(`${formatDecision(what, result)}\n`);
      return decisionOk(result) ? 0 : 1;
    }));
}
