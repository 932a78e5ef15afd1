/** `migrate status RELEASE`: each service's phase in a release's deploy (the `progress` query). */
import type { Command } from 'commander';
import { WorkflowNotFoundError, type Client } from '@temporalio/client';
import { deployWorkflowId, type DeployProgress } from '../../workflows/deploy.js';
import { action, CommandFailed, commonOptions, connectClient, parseOptions, printJson } from '../common.js';
import { formatProgress, releaseName } from './deploy.js';

const statusOptions = commonOptions.pick({ json: true, address: true, namespace: true }).extend({ release: releaseName });

export interface ReleaseStatus {
  release: string;
  workflowId: string;
  status: string;
  progress: DeployProgress;
}

/** A release's deploy: its workflow status and per-service progress. */
export async function releaseStatus(client: Client, release: string): Promise<ReleaseStatus> {
  const handle = client.workflow.getHandle(deployWorkflowId(release));
  try {
    const description = await handle.describe();
    const progress = await handle.query<DeployProgress>('progress');
    return { release, workflowId: handle.workflowId, status: description.status.name, progress };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) throw new CommandFailed(`no deploy of release ${release} (no workflow ${deployWorkflowId(release)}): \`migrate deploy --release ${release}\` starts one`);
    throw err;
  }
}

export function registerStatus(program: Command): void {
  program
    .command('status <release>')
    .description('show a release\'s deploy: each service\'s phase (waiting, starting, healthy, failed, rolled back)')
    .option('--address <host:port>', 'Temporal frontend')
    .option('--namespace <ns>', 'Temporal namespace')
    .option('--json', 'machine-readable output')
    .action(action(async (release: string, raw: Record<string, unknown>) => {
      const opts = parseOptions(statusOptions, { ...raw, release });
      const { client, close } = await connectClient(opts);
      try {
        const s = await releaseStatus(client, opts.release);
        if (opts.json) printJson(s);
        else process.stdout.write(`${formatProgress(s.progress)}\n(workflow ${s.workflowId}: ${s.status})\n`);
        return s.progress.phase === 'failed' ? 1 : 0;
      } finally {
        await close();
      }
    }));
}
