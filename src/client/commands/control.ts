/**
 * `migrate pause|resume|approve|abort batch-N`: operator controls on a running batch, as Temporal
 * updates. The workflow's validators refuse what makes no sense now (approving a batch that is not
 * waiting, pausing a finished one) and the refusal is printed as is.
 */
import type { Command } from 'commander';
import { WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { z } from 'zod';
import { abortUpdate, approveUpdate, batchWorkflowId, pauseUpdate, resumeUpdate } from '../../workflows/batch.js';
import { action, commonOptions, CommandFailed, connectClient, parseOptions, printJson } from '../common.js';
import { rootMessage } from '../../common/failure.js';

const controls = {
  pause: { update: pauseUpdate, what: 'start no further agents (those in flight finish)' },
  resume: { update: resumeUpdate, what: 'continue a paused batch' },
  approve: { update: approveUpdate, what: 'let a batch that waits for approval proceed to cutover' },
  abort: { update: abortUpdate, what: 'stop the batch and roll back every agent it changed' },
} as const;

const controlOptions = commonOptions.pick({ json: true, address: true, namespace: true }).extend({ reason: z.string().max(200).optional() });

export function registerControl(program: Command): void {
  for (const [name, { update, what }] of Object.entries(controls)) {
    const cmd = program
      .command(name)
      .description(`${what}`)
      .argument('<batch>', 'batch name, e.g. batch-1')
      .option('--json', 'machine-readable output')
      .option('--address <host:port>', 'Temporal frontend address')
      .option('--namespace <ns>', 'Temporal namespace');
    if (name === 'abort') cmd.option('--reason <text>', 'why (recorded in the batch\'s result)');
    cmd.action(action(async (batch: string, raw: unknown) => {
      const opts = parseOptions(controlOptions, raw);
      const { client, close } = await connectClient(opts);
      try {
        const handle = client.workflow.getHandle(batchWorkflowId(batch));
        let phase: string;
        try {
          phase = name === 'abort'
            ? await handle.executeUpdate(abortUpdate, { args: [opts.reason ?? 'aborted by operator'] })
            : await handle.executeUpdate(update as typeof pauseUpdate);
        } catch (err) {
          if (err instanceof WorkflowNotFoundError) throw new CommandFailed(`${batch} is not running`);
          if (err instanceof WorkflowUpdateFailedError) throw new CommandFailed(`${name} refused: ${rootMessage(err)}`);
          throw new CommandFailed(`${name} ${batch}: ${rootMessage(err)}`);
        }
        if (opts.json) printJson({ ok: true, batch, control: name, phase });
        else process.stdout.write(`${batch}: ${name} accepted (batch is ${phase})\n`);
        return 0;
      } finally {
        await close();
      }
    }));
  }
}
