/**
 * `migrate rollback RELEASE` and `migrate confirm RELEASE`: decide a release that is healthy and
 * pending confirmation. Both are updates on the release's still-open deploy workflow, which holds
 * the exact undo list and the kept `.prev` containers.
 */
import type { Command } from 'commander';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { deployWorkflowId, type DecisionResult, type DeployProgress, type RollbackOptions } from '../../workflows/deploy.js';
import { action, CommandFailed, commonOptions, connectClient, parseOptions, printJson, restoreDataOption } from '../common.js';
import { releaseName } from './deploy.js';
import { formatDataRestore } from '../safeguard-format.js';
import { rootMessage } from '../../common/failure.js';

const decideOptions = commonOptions.pick({ json: true, address: true, namespace: true }).extend({ release: releaseName, restoreData: restoreDataOption });

async function decide(client: Client, release: string, update: 'rollback' | 'confirm', options: RollbackOptions = {}): Promise<DecisionResult> {
  const handle = client.workflow.getHandle(deployWorkflowId(release));
  let running: boolean;
  try {
    running = (await handle.describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CommandFailed(`no deploy of release ${release} (no workflow ${deployWorkflowId(release)})`);
    throw err;
  }
  const progress = await handle.query<DeployProgress>('progress').catch(() => undefined);
  if (!running || progress?.phase !== 'pending-confirmation') {
    const phase = progress?.phase ?? 'closed';
    if (update === 'rollback' && phase === 'confirmed') {
      throw new CommandFailed(`release ${release} was confirmed: its previous containers were dropped. Deploy the release before it again (migrate deploy --release …)`);
    }
    throw new CommandFailed(`release ${release} is ${phase}, not pending confirmation: nothing to ${update}`);
  }
  if (update === 'confirm') return handle.executeUpdate<DecisionResult, []>('confirm');
  try {
    return await handle.executeUpdate<DecisionResult, [RollbackOptions]>('rollback', { args: [options] });
  } catch (err) {
    // The validator's refusal (e.g. --restore-data with no backup) reaches us as the update's failure.
    throw new CommandFailed(`rollback of ${release} refused: ${rootMessage(err)}`);
  }
}

/** Back to the release before: restore each replaced container, remove each added one; with restoreData, the data too. */
export function rollbackReleaseCommand(client: Client, release: string, options: RollbackOptions = {}): Promise<DecisionResult> {
  return decide(client, release, 'rollback', options);
}

/** Keep the release: drop the previous containers kept for rollback. */
export function confirmReleaseCommand(client: Client, release: string): Promise<DecisionResult> {
  return decide(client, release, 'confirm');
}

function register(program: Command, name: 'rollback' | 'confirm', description: string, fn: (c: Client, r: string, o: RollbackOptions) => Promise<DecisionResult>): void {
  const command = program
    .command(`${name} <release>`)
    .description(description);
  if (name === 'rollback') command.option('--restore-data [components]', 'then restore the backup the deploy (or batch) started with: every component, or those named (comma-separated)');
  command
    .option('--address <host:port>', 'Temporal frontend')
    .option('--namespace <ns>', 'Temporal namespace')
    .option('--json', 'machine-readable output')
    .action(action(async (release: string, raw: Record<string, unknown>) => {
      const opts = parseOptions(decideOptions, { ...raw, release });
      const { client, close } = await connectClient(opts);
      try {
        const result = await fn(client, opts.release, opts.restoreData ? { restoreData: true, components: opts.restoreData.components } : {});
        const ok = result.exact !== false && (!result.restore || result.restore.ok);
        if (opts.json) printJson({ ok, release: opts.release, ...result });
        else {
          process.stdout.write(`release ${opts.release}: ${result.phase}${result.exact === true ? ' (every host runs exactly what it ran before)' : ''}\n`);
          if (result.exact === false) process.stdout.write('warning: some host differs from before the deploy: `migrate status` shows before/after\n');
          if (result.restore) process.stdout.write(`${formatDataRestore(result.restore)}\n`);
        }
        return ok ? 0 : 1;
      } finally {
        await close();
      }
    }));
}

export function registerRollback(program: Command): void {
  register(program, 'rollback', 'return a release pending confirmation to the release before it (`rollback batch-N`: a completed batch\'s agents to their old containers)', rollbackReleaseCommand);
  register(program, 'confirm', 'keep a release pending confirmation: drop the previous containers (`confirm batch-N`: the same for a completed batch)', confirmReleaseCommand);
}
