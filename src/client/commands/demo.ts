/**
 * `migrate demo`: the README's main command. On this one machine: a Temporal dev server with its
 * Web UI, one worker per inventory host, then the plan and the routing proof (each host's step on
 * its own worker, each GPU-bound step on the host the plan chose), a deploy, and a batch migration
 * with one agent made to fail, rolled back with its data (the steps under ../demo, through src/ops).
 *
 * Two modes, and the demo says which it runs in. Isolated hosts (the default where it can run: root,
 * `ip`, `nsenter`, `dockerd`): every host its own network namespace, dockerd and `migrate worker`
 * process, the loopback PostgreSQL and Redis of local.yaml's backups forwarded onto the bridge. One
 * engine (`--one-engine`, or where isolated hosts cannot run, with a line saying why): every host a
 * loopback address on this machine's Docker engine, workers in this process.
 */
import type { Command } from 'commander';
import { z } from 'zod';
import { Client, Connection } from '@temporalio/client';
import { loadInventoryFiles } from '../../inventory/load.js';
import { buildPlan } from '../../plan/plan.js';
import { formatPlan } from '../../plan/format.js';
import { ORCHESTRATOR_QUEUE } from '../../plan/queues.js';
import { gpuStep, probeHosts } from '../../workflows/routing.js';
import { quietRuntime, startDevEnvironment } from '../../dev/environment.js';
import { isolatedHostsUnsupported } from '../../dev/isolated-hosts.js';
import { startIsolatedEnvironment } from '../../dev/isolated-environment.js';
import type { Inventory } from '../../inventory/schema.js';
import type { HostReport, GpuGrant } from '../../activities/host-info.js';
import { action, checkDevPorts, DEV_INVENTORY, devOptions, inventoryOption, loadPlan, parseOptions } from '../common.js';
import { deployDemoStep } from '../demo/deploy-step.js';
import { batchDemoStep } from '../demo/batch-step.js';
import { seedDemoData } from '../demo/data-step.js';

const demoOptions = devOptions.extend({ keepRunning: z.boolean().default(false), isolatedHosts: z.boolean().default(false), oneEngine: z.boolean().default(false) })
  .refine((o) => !(o.isolatedHosts && o.oneEngine), { message: '--isolated-hosts and --one-engine exclude each other: give one of them (or neither: isolated hosts where they can run)', path: ['oneEngine'] });

interface DemoEnvironment {
  mode: 'one-engine' | 'isolated-hosts';
  address: string;
  uiUrl?: string;
  /** The inventory as the workers read it (isolated: each host at its bridge address). */
  inventory: Inventory;
  /** Lines that describe the hosts, printed under step 2. */
  hosts: string[];
  stop(): Promise<void>;
}

/** Which mode the demo runs in, and why: isolated hosts unless one engine is asked for or they cannot run here. */
export async function demoMode(oneEngine: boolean): Promise<{ mode: DemoEnvironment['mode']; why: string }> {
  if (oneEngine) return { mode: 'one-engine', why: 'as asked (--one-engine): every host a loopback address on this machine\'s Docker engine' };
  const unsupported = await isolatedHostsUnsupported();
  if (!unsupported) return { mode: 'isolated-hosts', why: 'every host its own network namespace, Docker engine and `migrate worker` process (--one-engine for one engine)' };
  return { mode: 'one-engine', why: `every host a loopback address on this machine's Docker engine; isolated hosts cannot run here: ${unsupported}` };
}

async function startDemoEnvironment(mode: DemoEnvironment['mode'], inventory: Inventory, opts: z.infer<typeof demoOptions>): Promise<DemoEnvironment> {
  if (mode === 'one-engine') {
    const env = await startDevEnvironment(inventory, { dataDir: opts.dataDir, port: opts.port, uiPort: opts.uiPort });
    return { mode, address: env.server.address, uiUrl: env.server.uiUrl, inventory, hosts: [], stop: () => env.stop() };
  }
  quietRuntime();
  const env = await startIsolatedEnvironment({ inventory, inventoryFiles: opts.inventory, dataDir: opts.dataDir, port: opts.port, uiPort: opts.uiPort });
  const { inventory: seen } = await loadInventoryFiles(env.inventoryFiles);
  const hosts = env.iso.hosts.map((h) => `  ${h.name.padEnd(8)} ${h.address.padEnd(12)} unix://${h.dockerSocket}  dockerd ${h.dockerPid}, worker ${env.workers.find((w) => w.host === h.name)!.pid}`);
  return { mode, address: env.temporal.address, uiUrl: env.temporal.uiUrl, inventory: seen, hosts, stop: () => env.stop() };
}

export function registerDemo(program: Command): void {
  inventoryOption(program
    .command('demo')
    .description('run the demo on this machine: dev server, one worker per host, plan, routing, deploy, batch migration and rollback'), `inventory files (default ${DEV_INVENTORY.join(' + ')})`)
    .option('--data-dir <dir>', 'dev server data folder', '.data')
    .option('--port <port>', 'Temporal frontend port', '7233')
    .option('--ui-port <port>', 'Web UI port', '8233')
    .option('--keep-running', 'leave the dev server, workers and Web UI up afterwards (Ctrl-C stops)')
    .option('--isolated-hosts', 'every host its own network namespace, Docker engine and worker process: the default where it can run (Linux, root)')
    .option('--one-engine', 'every host a loopback address on this machine\'s Docker engine, workers in this process')
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(demoOptions, raw);
      checkDevPorts(opts);
      const { inventory } = await loadPlan(opts.inventory); // the whole plan checked before anything starts
      const { mode, why } = await demoMode(opts.oneEngine);
      const say = (line = '') => process.stdout.write(`${line}\n`);
      say(`mode: ${mode} — ${why}`);
      say();
      say('== 1. The plan (migrate plan) ==');
      say(formatPlan(buildPlan(inventory)));
      say();
      say('== 2. Temporal dev server and one worker per host ==');
      const env = await startDemoEnvironment(mode, inventory, opts);
      const plan = buildPlan(env.inventory);
      say(`Temporal ${env.address}, Web UI ${env.uiUrl}`);
      for (const line of env.hosts) say(line);
      try {
        const client = new Client({ connection: await Connection.connect({ address: env.address }) });
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
        // This process reaches the data as the inventory names it (loopback); the hosts, through the bridge.
        const data = await seedDemoData(buildPlan(inventory)).catch((err: Error) => {
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
        say(`Every step above is a workflow in the Web UI (${mode}): ${env.uiUrl}/namespaces/default/workflows`);
        if (opts.keepRunning) {
          say('Still running (--keep-running); Ctrl-C stops.');
          await new Promise<void>((resolve) => { process.once('SIGINT', resolve); process.once('SIGTERM', resolve); });
        }
      } finally {
        await env.stop();
      }
    }));
}
