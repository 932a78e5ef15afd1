/**
 * `migrate pause|resume|approve|abort batch-N`: operator controls on a migrating batch, as Temporal
 * updates. The workflow's validators refuse what makes no sense now (approving a batch that is not
 * waiting, pausing one pending confirmation) and the refusal is printed as is.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { BadInput, BATCH_CONTROLS, controlBatch, type BatchControl } from '../../ops/index.js';
import { action, commonOptions, inventoryOption, loadPlan, parseOptions, printJson, temporalOptions, withClient } from '../common.js';

const controlOptions = commonOptions.extend({ reason: z.string().max(200).optional() });

export function registerControl(program: Command): void {
  for (const [name, what] of Object.entries(BATCH_CONTROLS) as [BatchControl, string][]) {
    const cmd = temporalOptions(inventoryOption(program
      .command(name)
      .description(what)
      .argument('<batch>', 'a batch of the inventory, e.g. batch-1'), 'inventory file (repeatable): names the batches'));
    if (name === 'abort') cmd.option('--reason <text>', 'why (recorded in the batch\'s result)');
    cmd.action(action(async (batch: string, raw: unknown) => {
      const opts = parseOptions(controlOptions, raw);
      const { plan } = await loadPlan(opts.inventory);
      if (!plan.batches.some((b) => b.name === batch)) {
        throw new BadInput('invalid batch', [{ path: 'batch', message: `no batch "${batch}" in the inventory (${plan.project})`, fix: `use one of: ${plan.batches.map((b) => b.name).join(', ') || '(none declared)'}` }]);
      }
      const phase = await withClient(opts, (client) => controlBatch(client, batch, name, opts.reason));
      if (opts.json) printJson({ ok: true, batch, control: name, phase });
      else process.stdout.write(`${batch}: ${name} accepted (batch is ${phase})\n`);
      return 0;
    }));
  }
}
