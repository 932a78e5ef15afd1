/**
 * `migrate deploy`: start the release's `deployStack` workflow (id `deploy-<release>`) for the plan's
 * services and, with --wait, show each service's phase live until the release is healthy and
 * pending confirmation, confirmed, or failed and rolled back.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { BadInput, defaultRelease, startDeploy } from '../../ops/index.js';
import { action, commonOptions, inventoryOption, loadPlan, parseOptions, planForRun, printJson, releaseName, skipBackupOption, temporalOptions, withClient } from '../common.js';
import { describeBackupStep, followDeployLines } from '../format.js';

const deployOptions = commonOptions.extend({
  release: releaseName.optional(),
  stub: z.boolean().default(false),
  wait: z.boolean().default(false),
  confirm: z.boolean().default(false),
  concurrency: z.coerce.number().int().min(1).max(64).default(8),
  skipBackup: skipBackupOption,
});

export function registerDeploy(program: Command): void {
  temporalOptions(inventoryOption(program
    .command('deploy')
    .description('deploy the stack: each service starts once its dependencies are healthy; any failure rolls every host back'))
    .option('--release <name>', 'release name (workflow id deploy-<name>; default r<UTC timestamp>)')
    .option('--stub', 'run every unit as the local stub image (this machine has none of the real images)')
    .option('--wait', 'show live progress until the release is healthy or rolled back')
    .option('--confirm', 'confirm as soon as everything is healthy (drops the kept previous containers)')
    .option('--concurrency <n>', 'services started at once', '8')
    .option('--skip-backup <reason>', 'deploy without taking a verified backup first (the reason is recorded in the workflow)'))
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(deployOptions, raw);
      const loaded = await loadPlan(opts.inventory);
      const release = opts.release ?? defaultRelease();
      // `status`, `rollback` and `confirm` read a batch's name (or `all`) as the batch: a release may not take one.
      if (release === 'all' || /^batch-\d+$/.test(release) || loaded.plan.batches.some((b) => b.name === release)) {
        throw new BadInput('invalid options', [{ path: '--release', message: `"${release}" names a batch (or all batches), not a release`, fix: 'pick another release name, e.g. --release v42' }]);
      }
      const plan = await planForRun(loaded.plan, opts.stub);
      const say = opts.json ? undefined : (line: string) => process.stdout.write(`${line}\n`);
      return withClient(opts, async (client) => {
        const handle = await startDeploy(client, plan, { release, concurrency: opts.concurrency, autoConfirm: opts.confirm, skipBackup: opts.skipBackup });
        say?.(`deploying release ${release} of ${plan.project} (workflow ${handle.workflowId})`);
        say?.(describeBackupStep(plan, opts.skipBackup));
        if (!opts.wait) {
          if (opts.json) printJson({ ok: true, release, workflowId: handle.workflowId });
          else say?.(`follow it with \`migrate status ${release} --watch\``);
          return 0;
        }
        const { progress, error } = await followDeployLines(handle, say);
        if (opts.json) printJson({ ok: !error, release, workflowId: handle.workflowId, progress });
        else if (error) process.stderr.write(`error: ${error}\n`);
        else say?.(progress.phase === 'pending-confirmation'
          ? `release ${release} is healthy, pending confirmation: \`migrate confirm ${release}\` keeps it, \`migrate rollback ${release}\` undoes it`
          : `release ${release}: ${progress.phase}`);
        return error ? 1 : 0;
      });
    }));
}
