/**
 * The demo's batch step: batch-1's agents installed at version 1 (stub) and confirmed, then migrated
 * to version 2 with one agent made to fail validation (AGENT_MODE=unhealthy): it alone is rolled
 * back to its old container while the others migrate, and the batch stays open, pending
 * confirmation. Then version 2 "writes" rows the backup the batch started with does not hold, and
 * `migrate rollback batch-1 --restore-data` — an update on the open batch, which holds that backup —
 * puts back both the containers (version 1, the exact old ones) and the data.
 */
import type { Client } from '@temporalio/client';
import type { Plan } from '../../plan/plan.js';
import { stubbedPlan } from '../../dev/stub-image.js';
import { decideBatch, startBatch, type BatchResult } from '../../ops/index.js';
import { followBatchLive, formatBatch, formatDecision } from '../format.js';
import type { DemoData } from './data-step.js';

export async function batchDemoStep(client: Client, plan: Plan, say: (line?: string) => void, data?: DemoData): Promise<BatchResult> {
  const batch = plan.batches[0];
  if (!batch) throw new Error('the inventory declares no batch');
  const failing = batch.agents[Math.min(2, batch.agents.length - 1)]!;

  say(`-- ${batch.name}: install version 1 of its ${batch.agents.length} agents (stub image), then confirm it (migrate confirm ${batch.name}) --`);
  const v1run = await startBatch(client, stubbedPlan(plan, { version: '1' }), batch.name, { force: true, samples: 10 });
  const v1 = await followBatchLive(v1run, true);
  say(formatBatch(v1));
  if (v1.status !== 'pending-confirmation') throw new Error(`${batch.name} version 1 did not install: ${v1.reason ?? v1.status}`);
  say(formatDecision(batch.name, await decideBatch(client, plan.project, batch.name, 'confirm')));
  await v1run.result(); // decided: its workflow closes, and the next run may take the same id

  say();
  say(`-- ${batch.name}: migrate to version 2; ${failing} is made to fail validation (AGENT_MODE=unhealthy) --`);
  const v2plan = stubbedPlan(plan, { version: '2', env: { [failing]: { AGENT_MODE: 'unhealthy' } } });
  const v2 = await followBatchLive(await startBatch(client, v2plan, batch.name, { force: true, samples: 10 }), true);
  say(formatBatch(v2));
  const back = v2.agents.find((a) => a.agent === failing);
  if (v2.status !== 'pending-confirmation') {
    // More agents failed than the batch allows (on a loaded machine the latency judge can flap: issue #13): rolled back whole.
    say(`${batch.name} was rolled back whole (${v2.reason ?? 'too many failures'}): every agent runs its exact previous container again${v2.exact === false ? ', except: see the differences above' : ''}.`);
    return v2;
  }
  say(`${failing}: ${back?.phase} — ${back?.reason ?? ''}; it runs its exact previous container again, the others run version 2.`);
  say(`(${batch.name} stays open, pending confirmation: \`migrate status ${batch.name}\` shows this table; the others' old containers are kept as .prev until \`migrate confirm ${batch.name}\`)`);
  if (!data || v2.backup?.status !== 'verified') {
    // No data to show: roll the containers back alone, so the batch does not stay open after the demo.
    say();
    say(`-- ${batch.name}: migrate rollback ${batch.name} --`);
    say(formatDecision(`  ${batch.name}`, await decideBatch(client, plan.project, batch.name, 'rollback')).replace(/\n/g, '\n  '));
    return v2;
  }

  say();
  say(`-- ${batch.name}: version 2 writes data; then migrate rollback ${batch.name} --restore-data ${data.component.name} --`);
  const before = await data.rows();
  await data.write(250, `${batch.name} version 2`);
  say(`  ${data.component.database}.agent_memory: ${before} rows as ${batch.name}'s backup ${v2.backup.id} holds them, ${await data.rows()} after version 2 wrote`);
  // Only PostgreSQL: this machine's Redis is reached over tcp, whose files a worker cannot replace.
  const rolledBack = await decideBatch(client, plan.project, batch.name, 'rollback', { restoreData: true, components: [data.component.name] });
  say(formatDecision(`  ${batch.name}`, rolledBack).replace(/\n/g, '\n  '));
  say(`  ${data.component.database}.agent_memory: ${await data.rows()} rows again`);
  return v2;
}
