/**
 * bench/judge: does the batch's judge (issue #13) flap, and does it catch real regressions?
 * On this machine, with the stub agents on one host (127.0.11.2, ports 41200…), its own Temporal
 * dev server and in-process workers, project `pdjudge<pid>` (removed afterwards):
 *
 *   1. version 1 installed;
 *   2. identical new versions migrated at concurrency 8, then 20: every rolled-back agent is a false rollback;
 *      during the concurrency-8 run a client sends requests to some agents' published ports throughout;
 *   3. a migration where 10 % of the agents answer 50 ms slower (AGENT_LATENCY_MS) and another 10 %
 *      fail 5 % of their requests (AGENT_ERROR_PERCENT): each should be rolled back, the rest not.
 *
 * Prints, one line each:  figure <name> = <value> <unit> (goal <op> <value>)
 *
 *   npx tsx bench/judge/run.ts        # JUDGE_AGENTS=150 JUDGE_SAMPLES=60 JUDGE_CONCURRENCY=8,20
 *                                     # JUDGE_TRAFFIC=25,50,75,100 (the batch's traffic steps through the
 *                                     # host's proxy; `none`: the swap without it) JUDGE_ADDRESS JUDGE_PORT
 */
import Dockerode from 'dockerode';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { ensureStubImage, STUB_IMAGE } from '../../src/dev/stub-image.js';
import { startDevServer } from '../../src/dev/temporal-server.js';
import { quietRuntime } from '../../src/dev/environment.js';
import { createHostWorker, createOrchestratorWorker, hostContext } from '../../src/workers/workers.js';
import { startBatch, type BatchResult } from '../../src/ops/index.js';
import { removeProject } from '../common.js';

const AGENTS = Number(process.env.JUDGE_AGENTS ?? 150);
const SAMPLES = Number(process.env.JUDGE_SAMPLES ?? 60);
const CONCURRENCIES = (process.env.JUDGE_CONCURRENCY ?? '8,20').split(',').map(Number);
const HAMMERED = 8;
const TRAFFIC = (process.env.JUDGE_TRAFFIC ?? '25,50,75,100') === 'none' ? undefined : (process.env.JUDGE_TRAFFIC ?? '25,50,75,100').split(',').map(Number);
const PORT = Number(process.env.JUDGE_PORT ?? 41200);
const project = `pdjudge${process.pid}`;
const address = process.env.JUDGE_ADDRESS ?? '127.0.11.2';
const batch = `pd-judge-${process.pid}`;
const docker = new Dockerode();
const agents = Array.from({ length: AGENTS }, (_, i) => `Agent${String(i + 1).padStart(3, '0')}`);
const inventory = parseInventory({
  version: 1,
  project,
  hosts: { pc2: { address } },
  agents: Object.fromEntries(agents.map((a, i) => [a, {
    placement: { host: 'pc2' }, image: `agentsys/${a.toLowerCase()}:2.0`, ports: [`${PORT + i}:8080`],
    healthcheck: { http: '/health', interval: '200ms', timeout: '5s', retries: 10, start_period: '5s' },
  }])),
  // The judge's defaults, but for the samples: max_failures high, so every agent is judged on its own.
  batches: [{ name: batch, agents, concurrency: 8, max_failures: AGENTS, analysis: { samples: SAMPLES }, ...(TRAFFIC ? { traffic: TRAFFIC } : {}) }],
});
const plan = buildPlan(inventory);
const figure = (name: string, value: string | number, unit: string, goal: string) => process.stdout.write(`figure ${name} = ${value} ${unit} (goal ${goal})\n`);
const log = (line: string) => process.stderr.write(`${new Date().toISOString().slice(11, 19)} ${line}\n`);

quietRuntime();
await ensureStubImage(docker, { rebuild: true }); // this checkout's stub (AGENT_ERROR_PERCENT)
const server = await startDevServer({ ui: false });
const native = await NativeConnection.connect({ address: server.address });
const client = new Client({ connection: await Connection.connect({ address: server.address }) });
const workers = [await createOrchestratorWorker({ connection: native }), await createHostWorker({ connection: native, context: hostContext(inventory, 'pc2') })];
const running = Promise.all(workers.map((w) => w.run()));

let version = 0;
/** Migrate every agent to the next version (identical but for AGENT_VERSION and `env`), confirmed at once. */
async function migrate(concurrency: number, env?: Record<string, Record<string, string>>): Promise<{ r: BatchResult; s: number }> {
  version++;
  const t = performance.now();
  const p = stubPlan(plan, { image: STUB_IMAGE, version: String(version), env });
  p.batches = p.batches.map((b) => ({ ...b, concurrency }));
  // Confirmed at once: its result comes when its workflow closes.
  const r = await (await startBatch(client, p, batch, { force: true, autoConfirm: true, skipBackup: 'bench: no databases' })).result();
  const s = (performance.now() - t) / 1000;
  const looks = r.agents.map((a) => a.judge?.look ?? 0).filter((l) => l > 0);
  log(`v${version} at concurrency ${concurrency}: ${r.outcome}, ${r.agents.filter((a) => a.phase === 'rolled-back').length} rolled back, ${r.agents.filter((a) => a.phase === 'failed').length} failed, ${s.toFixed(0)} s; agents by the judge's last look: ${[...new Set(looks)].sort((a, b) => a - b).map((l) => `${looks.filter((x) => x === l).length} at ${l}`).join(', ') || 'none judged'}`);
  return { r, s };
}

/** A client sending requests to these agents' published ports, one after the other each, until stopped. */
function hammer(ports: number[]) {
  let stop = false;
  const counts = { ok: 0, failed: 0, errors: new Map<string, number>() };
  const loops = ports.map(async (port) => {
    while (!stop) {
      try {
        const res = await fetch(`http://${address}:${port}/work`, { signal: AbortSignal.timeout(5000) });
        await res.arrayBuffer();
        if (res.ok) counts.ok++;
        else { counts.failed++; counts.errors.set(`HTTP ${res.status}`, (counts.errors.get(`HTTP ${res.status}`) ?? 0) + 1); }
      } catch (err) {
        counts.failed++;
        const why = String((err as Error & { cause?: Error }).cause?.message ?? (err as Error).message).replace(/\d+\.\d+\.\d+\.\d+:\d+/, 'ADDR');
        counts.errors.set(why, (counts.errors.get(why) ?? 0) + 1);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  });
  return { counts, async stop() { stop = true; await Promise.all(loops); } };
}

const rolledBack = (r: BatchResult, among: string[]) => r.agents.filter((a) => among.includes(a.agent) && (a.phase === 'rolled-back' || a.phase === 'failed'));

try {
  log(`bench/judge: ${AGENTS} agents, ${SAMPLES} probes of each version per agent, concurrency ${CONCURRENCIES.join(' and ')}, traffic ${TRAFFIC ? TRAFFIC.join(' → ') : 'not routed'}`);
  let install = await migrate(20);
  for (let attempt = 1; attempt <= 3 && install.r.agents.some((a) => a.phase !== 'confirmed'); attempt++) {
    // A loaded machine may time out a first start: install again (the installed ones are reused).
    for (const a of install.r.agents.filter((x) => x.phase !== 'confirmed')) log(`install: ${a.agent} ${a.phase}: ${a.reason}`);
    version--;
    install = await migrate(8);
  }
  if (install.r.agents.some((a) => a.phase !== 'confirmed')) throw new Error('version 1 did not install on every agent');

  // 2. Identical versions.
  let requests = { ok: 0, failed: 0, errors: new Map<string, number>() };
  const identical: string[] = [];
  for (const [i, c] of CONCURRENCIES.entries()) {
    const client = i === 0 ? hammer(agents.slice(0, HAMMERED).map((_, k) => PORT + k)) : undefined;
    const { r, s } = await migrate(c);
    if (client) { await client.stop(); requests = client.counts; }
    const wrong = rolledBack(r, agents);
    for (const a of wrong) identical.push(`c${c} ${a.agent}: ${a.reason}`);
    figure(`false_rollbacks_identical_c${c}`, wrong.length, `agents of ${AGENTS} (${s.toFixed(0)} s)`, '= 0');
  }
  figure('failed_requests_during_migration', requests.failed, `of ${requests.ok + requests.failed} requests to ${HAMMERED} agents' published ports`, '= 0');
  if (requests.failed) log(`request failures: ${[...requests.errors].map(([k, n]) => `${k} ×${n}`).join(', ')}`);

  // 3. Injected regressions: every 10th agent +50 ms, every 10th (offset 5) 5 % of requests failing.
  const slow = agents.filter((_, i) => i % 10 === 0);
  const erring = agents.filter((_, i) => i % 10 === 5);
  const env = Object.fromEntries([...slow.map((a) => [a, { AGENT_LATENCY_MS: '50' }]), ...erring.map((a) => [a, { AGENT_ERROR_PERCENT: '5' }])]);
  const { r } = await migrate(CONCURRENCIES.at(-1)!, env);
  const rest = agents.filter((a) => !slow.includes(a) && !erring.includes(a));
  const caughtSlow = rolledBack(r, slow);
  const caughtErr = rolledBack(r, erring);
  figure('latency_regressions_caught', Math.round((100 * caughtSlow.length) / slow.length), `% (${caughtSlow.length} of ${slow.length} agents +50 ms)`, '= 100');
  figure('error_regressions_caught', Math.round((100 * caughtErr.length) / erring.length), `% (${caughtErr.length} of ${erring.length} agents failing 5 % of requests)`, '= 100');
  figure('false_rollbacks_beside_regressions', rolledBack(r, rest).length, `agents of ${rest.length}`, '= 0');
  for (const a of [...rolledBack(r, rest), ...slow.filter((s) => !caughtSlow.some((c) => c.agent === s)).map((s) => r.agents.find((a) => a.agent === s)!)]) identical.push(`regression run ${a.agent} (${a.phase}): ${a.judge?.summary ?? a.reason}`);
  for (const line of identical) log(line);
} finally {
  for (const w of workers) w.shutdown();
  await running;
  await native.close();
  await client.connection.close();
  await server.stop();
  await removeProject(docker, project);
}
