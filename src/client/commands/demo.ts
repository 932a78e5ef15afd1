/**
 * `migrate demo`: the README's main command. On this one machine: a Temporal dev server with its
 * Web UI, one worker per inventory host, then the plan and the routing proof (each host's step on
 * its own worker, each GPU-bound step on the host the plan chose), a deploy, and a batch migration
 * with one agent made to fail, rolled back with its data (the steps under ../demo, through src/ops).
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { Client, Connection } from '@temporalio/client';
import { loadInventoryFiles } from '../../inventory/load.js';
import { buildPlan } from '../../plan/plan.js';
import { formatPlan } from '../../plan/format.js';
import { ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import { gpuStep, probeHosts } from '../../workflows/routing.js';
import { startDevEnvironment } from '../../dev/environment.js';
import type { HostReport, GpuGrant } from '../../activities/host-info.js';
import { action, DEV_INVENTORY, devOptions, inventoryOption, parseOptions } from '../common.js';
import { deployDemoStep } from '../demo/deploy-step.js';
import { batchDemoStep } from '../demo/batch-step.js';
import { seedDemoData } from '../demo/data-step.js';

const demoOptions = devOptions.extend({ keepRunning: z.boolean().default(false), port: z.coerce.number().int().default(7233) });

export function registerDemo(program: Command): void {
  inventoryOption(program
    .command('demo')
    .description('run the demo on this machine: dev server, one worker per host, plan, routing, deploy, batch migration and rollback'), `inventory files (default ${DEV_INVENTORY.join(' + ')})`)
    .option('--data-dir <dir>', 'dev server data folder', '.data')
    .option('--port <port>', 'Temporal frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .option('--keep-running', 'leave the dev server, workers and Web UI up afterwards (Ctrl-C stops)')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(demoOptions, raw);
      const { inventory } = await loadInventoryFiles(opts.inventory);
      const plan = buildPlan(inventory);
      const say = (line = '') => process.stdout.write(`${line}\n`);
      say('== 1. The plan (migrate plan) ==');
      say(formatPlan(plan));
      say();
      say('== 2. Temporal dev server and one worker per host ==');
      const env = await startDevEnvironment(inventory, { dataDir: opts.dataDir, port: opts.port, uiPort: opts.uiPort });
      say(`Temporal ${env.server.address}, Web UI ${env.server.uiUrl}`);
      try {
        const client = new Client({ connection: await Connection.connect({ address: env.server.address }) });
        say();
        say('== 3. Routing: one step on each host\'s queue ==');
        const stamp = new Date().toISOString().replace(/[:.]/g, '-');
        const reports: HostReport[] = await client.workflow.execute(probeHosts, { taskQueue: ORCHESTRATOR_QUEUE, workflowId: `demo-probe-hosts-${stamp}`, args: [plan.hosts.map((h) => h.name)] });
        for (const r of reports) say(`  ${r.host.padEnd(8)} ran on worker ${r.identity} (Docker ${r.docker.serverVersion}, ${r.gpus.map((g) => `${g.model} ${g.vramGb} GB`).join(', ') || 'no GPU'})`);
        say();
        say('== 4. GPU-bound steps run only on the host whose GPU fits ==');
        for (const unit of Object.values(plan.units).filter((u) => u.gpu)) {
          const grant: GpuGrant = await client.workflow.execute(gpuStep, {
            taskQueue: ORCHESTRATOR_QUEUE,
            workflowId: `demo-gpu-${unit.name}-${stamp}`,
            args: [{ unit: unit.name, host: unit.host, gpu: unit.gpu! }],
          });
          say(`  ${unit.name.padEnd(24)} needs ≥${unit.gpu!.minVramGb} GB → ${grant.host} (${grant.gpus.map((g) => g.model).join(', ')}), run by ${grant.identity}`);
        }
        say();
        say('== 5. Deploy: a verified backup first, then the stack in dependency order, health-gated (migrate deploy --stub --wait) ==');
        const data = await seedDemoData(plan).catch((err: Error) => {
          say(`  (no demo data: ${err.message}; the backups will say why)`);
          return undefined;
        });
        if (data) say(`  demo data: ${data.component.database}.agent_memory on PostgreSQL ${data.component.address}:${data.component.port}, ${await data.rows()} rows`);
        await deployDemoStep(client, plan, say);
        say();
        say('== 6. Batch migration: batch-1 (backup first), one agent made to fail and rolled back alone; then rollback --restore-data ==');
        await batchDemoStep(client, plan, say, data);
        await client.connection.close();
        say();
        say(`Every step above is a workflow in the Web UI: ${env.server.uiUrl}/namespaces/default/workflows`);
        if (opts.keepRunning) {
          say('Still running (--keep-running); Ctrl-C stops.');
          await new Promise<void>((resolve) => { process.once('SIGINT', resolve); process.once('SIGTERM', resolve); });
        }
      } finally {
        await env.stop();
      }
    }));
}
