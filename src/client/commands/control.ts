/**
 * `migrate pause|resume|approve|abort batch-N`: operator controls on a migrating batch, as Temporal
 * updates. The workflow's validators refuse what makes no sense now (approving a batch that is not
 * waiting, pausing one pending confirmation) and the refusal is printed as is.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { BATCH_CONTROLS, controlBatch, type BatchControl } from '../../ops/index.js';
import { action, commonOptions, parseOptions, printJson, temporalOptions, withClient } from '../common.js';

const controlOptions = commonOptions.pick({ json: true, address: true, namespace: true }).extend({ reason: z.string().max(200).optional() });

export function registerControl(program: Command): void {
  for (const [name, what] of Object.entries(BATCH_CONTROLS) as [BatchControl, string][]) {
    const cmd = temporalOptions(program
      .command(name)
      .description(what)
      .argument('<batch>', 'batch name, e.g. batch-1'));
    if (name === 'abort') cmd.option('--reason <text>', 'why (recorded in the batch\'s result)');
    cmd.action(action(async (batch: string, raw: unknown) => {
      const opts = parseOptions(controlOptions, raw);
      const phase = await withClient(opts, (client) => controlBatch(client, batch, name, opts.reason));
      if (opts.json) printJson({ ok: true, batch, control: name, phase });
      else process.stdout.write(`${batch}: ${name} accepted (batch is ${phase})\n`);
      return 0;
    }));
  }
}
