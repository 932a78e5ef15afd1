/**
 * The demo's batch step: batch-1's agents installed at version 1 (stub), then migrated to version 2
 * with one agent made to fail validation (AGENT_MODE=unhealthy): it alone is rolled back to its old
 * container while the others migrate. Then version 2 "writes" rows the backup the batch started
 * with does not hold, and `migrate rollback batch-1 --restore-data` puts back both the containers
 * (version 1, the exact old ones) and the data (the backup).
 */
import type { Client } from '@temporalio/client';
import type { Plan } from '../../plan/plan.js';
import { stubbedPlan } from '../../dev/stub-image.js';
import type { BatchResult } from '../../workflows/batch.js';
import { startBatch } from '../commands/start.js';
import { formatBatch, watchBatch } from '../commands/batch-status.js';
import { confirmCompletedBatch, rollbackCompletedBatch } from '../commands/batch-rollback.js';
import { formatDataRestore } from '../safeguard-format.js';
import type { DemoData } from './data-step.js';

export async function batchDemoStep(client: Client, plan: Plan, say: (line?: string) => void, data?: DemoData): Promise<BatchResult> {
  const batch = plan.batches[0];
  if (!batch) throw new Error('the inventory declares no batch');
  const failing = batch.agents[Math.min(2, batch.agents.length - 1)]!;

  say(`-- ${batch.name}: install version 1 of its ${batch.agents.length} agents (stub image) --`);
  const v1 = await watchBatch(await startBatch(client, await stubbedPlan(plan, { version: '1' }), batch.name, { force: true, samples: 10 }));
  say(formatBatch(v1));
  await confirmCompletedBatch(client, plan.project, batch.name);

  say();
  say(`-- ${batch.name}: migrate to version 2; ${failing} is made to fail validation (AGENT_MODE=unhealthy) --`);
  const v2plan = await stubbedPlan(plan, { version: '2', env: { [failing]: { AGENT_MODE: 'unhealthy' } } });
  const v2 = await watchBatch(await startBatch(client, v2plan, batch.name, { force: true, samples: 10 }));
  say(formatBatch(v2));
  const back = v2.agents.find((a) => a.agent === failing);
  say(`${failing}: ${back?.phase} — ${back?.reason ?? ''}; it runs its exact previous container again, the others run version 2.`);
  say(`(migrate status ${batch.name} shows this table; the others' old containers are kept as .prev until migrate confirm ${batch.name})`);
  if (!data || v2.backup?.status !== 'verified') return v2;

  say();
  say(`-- ${batch.name}: version 2 writes data; then migrate rollback ${batch.name} --restore-data ${data.component.name} --`);
  const before = await data.rows();
  await data.write(250, `${batch.name} version 2`);
  say(`  ${data.component.database}.agent_memory: ${before} rows as batch-1's backup ${v2.backup.id} holds them, ${await data.rows()} after version 2 wrote`);
  // Only PostgreSQL: this machine's Redis is reached over tcp, whose files a worker cannot replace.
  const back2 = await rollbackCompletedBatch(client, plan.project, batch.name, { restoreData: plan.backups, components: [data.component.name] });
  say(`  agents: ${back2.agents.map((a) => `${a.agent} ${a.phase}`).join(', ')}`);
  if (back2.restore) say(formatDataRestore(back2.restore).replace(/^/gm, '  '));
  say(`  ${data.component.database}.agent_memory: ${await data.rows()} rows again`);
  return v2;
}
