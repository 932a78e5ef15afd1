/**
 * `migrate confirm RELEASE | batch-N`: keep a change pending confirmation — after re-checking that
 * every changed unit is still healthy, drop the previous containers kept for rollback. An update on
 * the change's own open workflow; refused (and the change stays open) while a unit is not healthy.
 */
import type { Command } from 'commander';
import { decideBatch, decideRelease } from '../../ops/index.js';
import { action, commonOptions, inventoryOption, loadPlan, parseOptions, printJson, resolveTarget, temporalOptions, withClient } from '../common.js';
import { formatDecision } from '../format.js';

export function registerConfirm(program: Command): void {
  temporalOptions(inventoryOption(program
    .command('confirm')
    .description('keep a release or a batch pending confirmation: re-check health, then drop the previous containers kept for rollback')
    .argument('<target>', 'a release, or a batch of the inventory (batch-1 … batch-4)'), 'inventory file (repeatable): names the project and its batches'))
    .action(action(async (target: string, raw: unknown) => {
      const opts = parseOptions(commonOptions, raw);
      const { plan } = await loadPlan(opts.inventory);
      const t = resolveTarget(plan, target, false);
      const result = await withClient(opts, (client) => (t.kind === 'batch'
        ? decideBatch(client, plan.project, t.batch, 'confirm')
        : decideRelease(client, target, 'confirm', {}, plan.project)));
      if (opts.json) printJson({ ok: true, target, ...result });
      else process.stdout.write(`${formatDecision(t.kind === 'batch' ? t.batch : `release ${target}`, result)}\n`);
      return 0;
    }));
}
