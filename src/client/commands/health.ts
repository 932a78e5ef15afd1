/**
 * `migrate health [--watch] [--json] [--failover]`: every unit on every host in one view, with the
 * age of each reading and its host's state (up, lost, worker-lost, partitioned), from the health
 * plane (NATS, the inventory's `health:`). Exit status 1 when a host is not up or a critical unit is
 * not healthy. `--watch` keeps judging (this process is then the aggregator: it publishes
 * health.aggregate, health.alerts and health.recovery) until Ctrl-C; with `--failover` it also
 * starts `failoverHost` for a host judged lost. Run one `--watch --failover` per system.
 */
import type { Command } from 'commander';
import Table from 'cli-table3';
import path from 'node:path';
import { z } from 'zod';
import type { Aggregate, Transition } from '../../health/judge.js';
import { loadInventoryFiles } from '../../inventory/load.js';
import { stubbedUnit } from '../../dev/stub-image.js';
import { healthView, watchHealth } from '../../ops/index.js';
import { action, commonOptions, connectClient, inventoryOption, parseOptions, printJson, temporalOptions } from '../common.js';

const healthOptions = commonOptions.extend({
  watch: z.boolean().default(false),
  failover: z.boolean().default(false),
  stub: z.boolean().default(false),
}).refine((o) => !o.failover || o.watch, { message: '--failover needs --watch: failover is started by the process that keeps watching', path: ['failover'] });

const age = (ms: number | undefined) => (ms === undefined ? '-' : ms < 10_000 ? `${(ms / 1000).toFixed(1)}s` : `${Math.round(ms / 1000)}s`);

export function formatHealth(view: Aggregate): string {
  const hosts = new Table({ head: ['host', 'state', 'heartbeat age', 'why'], style: { head: [], border: [] } });
  for (const h of view.hosts) hosts.push([h.host, h.state, age(h.ageMs), h.reason]);
  const units = new Table({ head: ['unit', 'host', 'state', 'reading age', 'criticality', 'detail'], style: { head: [], border: [] } });
  for (const u of view.units) units.push([u.unit, u.host, u.state, age(u.ageMs), u.criticality, u.detail ?? '']);
  return `${hosts.toString()}\n${units.toString()}\n${view.down ? 'DOWN: a host is not up or a critical unit is not healthy' : 'all hosts up, every critical unit healthy'}`;
}

const line = (t: Transition) => `${new Date(t.at).toISOString()} ${t.kind === 'host' ? `host ${t.host}` : `${t.unit} on ${t.host}`}: ${t.from} → ${t.to}${t.reason ? ` (${t.reason})` : ''}`;

export function registerHealth(program: Command): void {
  temporalOptions(inventoryOption(program
    .command('health')
    .description('every unit on every host, with the age of each reading and the host\'s state; exit 1 when a host or a critical unit is down')
    .option('--watch', 'keep judging and print every change (this process is then the aggregator) until Ctrl-C')
    .option('--failover', 'with --watch: start failoverHost for a host judged lost')
    .option('--stub', 'with --failover: move the stand-in image, as `deploy --stub` ran it (dev, demo)')))
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(healthOptions, raw);
      const { inventory } = await loadInventoryFiles(opts.inventory);
      const planOptions = { baseDir: path.dirname(path.resolve(opts.inventory[0]!)) };
      if (!opts.watch) {
        const view = await healthView(inventory, planOptions);
        if (opts.json) printJson(view);
        else process.stdout.write(`${formatHealth(view)}\n`);
        return view.down ? 1 : 0;
      }
      const temporal = opts.failover ? await connectClient(opts) : undefined;
      let last: Aggregate | undefined;
      const aggregator = await watchHealth(inventory, {
        failover: temporal ? { client: temporal.client, planOptions, mapSpec: opts.stub ? stubbedUnit : undefined } : undefined,
        onView: (view, { alerts, recoveries }) => {
          const first = last === undefined;
          last = view;
          if (opts.json) {
            if (first || alerts.length || recoveries.length) process.stdout.write(`${JSON.stringify({ view, alerts, recoveries })}\n`);
          } else if (first) process.stdout.write(`${formatHealth(view)}\n`);
          else for (const t of [...alerts, ...recoveries]) process.stdout.write(`${line(t)}\n`);
        },
        onFailover: (host, workflowId) => process.stdout.write(`${host} lost: failover started (workflow ${workflowId})\n`),
        onError: (err) => process.stderr.write(`failover could not start: ${err.message}\n`),
      }, planOptions);
      await new Promise<void>((resolve) => {
        process.once('SIGINT', resolve);
        process.once('SIGTERM', resolve);
      });
      await aggregator.stop();
      await temporal?.close();
      return last?.down ? 1 : 0;
    }));
}
