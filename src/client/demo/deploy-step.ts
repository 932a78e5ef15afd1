/**
 * The demo's deploy step: the shipped inventory (agentsys.yaml + local.yaml) with the stub image
 * standing in for every service, deployed in dependency order with live progress, then confirmed.
 */
import type { Client } from '@temporalio/client';
import type { Plan } from '../../plan/plan.js';
import { stubbedPlan } from '../../dev/stub-image.js';
import { decideRelease, defaultRelease, startDeploy } from '../../ops/index.js';
import { followDeployLines, formatBackupOutcome } from '../format.js';

export async function deployDemoStep(client: Client, plan: Plan, say: (line?: string) => void): Promise<void> {
  const stubbed = stubbedPlan(plan);
  const release = `demo-${defaultRelease()}`;
  const services = Object.values(stubbed.units).filter((u) => u.kind === 'service');
  say(`  ${services.length} services of ${plan.project}, each started once its dependencies are healthy (release ${release})`);
  const started = Date.now();
  const handle = await startDeploy(client, stubbed, { release });
  const { progress, error } = await followDeployLines(handle, (line) => say(line));
  if (error) {
    say(`  deploy failed and was rolled back: ${error}`);
    return;
  }
  const backup = formatBackupOutcome(progress.backup);
  if (backup) say(`  ${backup}`);
  say(`  all ${services.length} healthy in ${((Date.now() - started) / 1000).toFixed(1)} s; ${progress.phase}`);
  await decideRelease(client, release, 'confirm', {}, plan.project);
  say(`  confirmed (\`migrate status ${release}\` shows it; a failed service would have rolled every host back)`);
}
