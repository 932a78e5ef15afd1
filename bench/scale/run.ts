/**
 * bench/scale: seed 004's 297 agents over the two hosts, in batches of about 75, installed (version 1)
 * then migrated (version 2) with `start all`, as `migrate start all --confirm --wait` does it
 * (startAllBatches, followAllBatches, followBatch). Prints, one line each:
 *
 *   figure <name> = <value> <unit> (goal <op> <value>)
 *
 *   npx tsx bench/scale/run.ts            # SCALE_AGENTS=120 for a shorter run; SCALE_TRACE=1: the overhead stretch by stretch
 *
 * Its own Temporal dev server, in-process workers (one per host plus the orchestrator), the stub
 * image on 127.0.22.243 (mainpc) and 127.0.22.244 (pc2) (SCALE_HOSTS=a,b), ports from 29000 (SCALE_PORT_BASE),
 * project `scale<pid>` (removed afterwards).
 *
 * Overhead per agent = the agent workflow's time − what the engine and the probes take, which no
 * orchestrator can save:
 *   − container start-to-healthy: ensureContainer began (in a replaceContainer, when its retire
 *     was done: the engine's `rename` of the old container) → its waitHealthy returned (or, a wait that
 *     samples once healthy, saw it healthy: its `healthyAt`), and the judge's
 *     candidate the same way (startCandidate began → its waitHealthy returned), as the host's worker
 *     ran them (an interceptor times every activity: a local one leaves no start time in history;
 *     a queued one's wait for a worker stays in the overhead);
 *   − the judge's sampling windows: sampleLatency (baseline, validation) and sampleBeside, began → returned,
 *     and a wait's own sample (its `healthyAt` → returned);
 *   − the engine's own time to stop the old container (its `kill` → `stop` events) and to remove the
 *     candidate (`kill` → `destroy`), read from the engine's event stream during the migration, each
 *     printed as its own figure. A real agent's graceful stop is its own time (the stub exits on
 *     SIGTERM at once): it lands in old_container_stop, not in the overhead.
 * Each moment is left out once (the candidate's removal runs beside the swap, inside other windows).
 * What remains is ours: Temporal's workflow tasks and dispatch, our own engine look-ups, the signals.
 * The workers run in this process: their peak memory is its peak RSS.
 */
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import os from 'node:os';
import Dockerode from 'dockerode';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, type ActivityInterceptorsFactory } from '@temporalio/worker';
import proto from '@temporalio/proto';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { ensureStubImage, STUB_IMAGE } from '../../src/dev/stub-image.js';
import { startDevServer } from '../../src/dev/temporal-server.js';
import { quietRuntime } from '../../src/dev/environment.js';
import { createHostWorker, createOrchestratorWorker, hostContext } from '../../src/workers/workers.js';
import { agentWorkflowId, allBatchesWorkflowId, batchWorkflowId } from '../../src/workflows/batch.js';
import { LABELS } from '../../src/plan/queues.js';
import { ledgerWorkflowId } from '../../src/workflows/ledger.js';
import { followAllBatches, followBatch, startAllBatches, type AllBatchesProgress } from '../../src/ops/index.js';
import { historyCalls } from '../../src/common/history-calls.js';
import type { HealthyResult } from '../../src/activities/health.js';
import { machineCpuSeconds, processCpuSeconds, removeProject } from '../common.js';

// a CommonJS module: under tsx, its named exports come through the default one
const { temporal } = proto;
const AGENTS = Number(process.env.SCALE_AGENTS ?? 297);
const PER_BATCH = 75;
const CONCURRENCY = Number(process.env.SCALE_CONCURRENCY ?? 10);
const SAMPLES = 3;
const project = `scale${process.pid}`;
const docker = new Dockerode();
const [mainAddress, pc2Address] = (process.env.SCALE_HOSTS ?? '127.0.22.243,127.0.22.244').split(',');
const hosts = { mainpc: mainAddress!, pc2: pc2Address! } as const;
const PORT_BASE = Number(process.env.SCALE_PORT_BASE ?? 29000);
const agents = Array.from({ length: AGENTS }, (_, i) => `Agent${String(i + 1).padStart(3, '0')}`);
const hostOfAgent = (i: number) => (i % 2 === 0 ? 'mainpc' : 'pc2');
const batchCount = Math.ceil(AGENTS / PER_BATCH);
const per = Math.ceil(AGENTS / batchCount);
const inventory = parseInventory({
  version: 1,
  project,
  hosts: Object.fromEntries(Object.entries(hosts).map(([h, address]) => [h, { address }])),
  agents: Object.fromEntries(agents.map((a, i) => [a, {
    placement: { host: hostOfAgent(i) }, image: `agentsys/${a.toLowerCase()}:2.0`, ports: [`${PORT_BASE + Math.floor(i / 2)}:8080`],
    healthcheck: { http: '/health', interval: '200ms', timeout: '5s', retries: 5, start_period: '2s' },
  }])),
  batches: Array.from({ length: batchCount }, (_, b) => ({
    name: `${project}-batch-${b + 1}`, agents: agents.slice(b * per, (b + 1) * per), concurrency: CONCURRENCY, max_failures: 0, latency_tolerance: 100,
  })),
});
const plan = buildPlan(inventory);
const names = plan.batches.map((b) => b.name);
const at = (v: string) => stubPlan(plan, { image: STUB_IMAGE, version: v });
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const figure = (name: string, value: string | number, unit: string, goal: string) => process.stdout.write(`figure ${name} = ${value} ${unit} (goal ${goal})\n`);

quietRuntime();
await ensureStubImage(docker);
const server = await startDevServer({ ui: false });
const native = await NativeConnection.connect({ address: server.address });
const client = new Client({ connection: await Connection.connect({ address: server.address }) });
/** Each activity's run as its worker saw it (a local one leaves no start time in history): workflow id → runs, in order. */
const spans = new Map<string, Run[]>();
/** An activity's run; a health wait that sampled once healthy (issue #14) says when it began to sample. */
interface Run { name: string; start: number; end: number; sampledFrom?: number }
const timing: ActivityInterceptorsFactory = (ctx) => ({
  inbound: {
    async execute(input, next) {
      const start = Date.now();
      let sampledFrom: number | undefined;
      try {
        const result = await next(input) as unknown;
        const healthy = result as Partial<HealthyResult> | undefined;
        if (ctx.info.activityType === 'waitHealthy' && (healthy?.sample || healthy?.besideSample)) sampledFrom = healthy.healthyAt;
        return result;
      } finally {
        const id = ctx.info.workflowExecution?.workflowId ?? '';
        spans.set(id, [...(spans.get(id) ?? []), { name: ctx.info.activityType, start, end: Date.now(), sampledFrom }]);
      }
    },
  },
});
const workers = [await createOrchestratorWorker({ connection: native }), ...await Promise.all(Object.keys(hosts).map((h) => createHostWorker({ connection: native, context: hostContext(inventory, h), activityInterceptors: [timing] })))];
const running = Promise.all(workers.map((w) => w.run()));
let peakRss = 0;
const sampler = setInterval(() => { peakRss = Math.max(peakRss, process.memoryUsage().rss); }, 250);

/** `migrate start all --confirm --wait`: every batch in order, each confirmed once it migrated. */
async function startAll(version: string, force: boolean): Promise<{ ms: number; all: AllBatchesProgress }> {
  const t = performance.now();
  const parent = await startAllBatches(client, at(version), { samples: SAMPLES, force, autoConfirm: true });
  const all = await followAllBatches(client, parent, names, async (name, handle) => {
    const r = await followBatch(handle, undefined, 1000);
    process.stderr.write(`  v${version} ${name}: ${r.outcome}, ${r.agents.filter((a) => a.phase === 'migrated' || a.phase === 'confirmed').length}/${r.agents.length} agents, ${((performance.now() - t) / 1000).toFixed(0)} s\n`);
    for (const a of r.agents.filter((x) => x.phase === 'failed' || (x.reason && x.reason !== 'batch rolled back'))) {
      process.stderr.write(`    ${a.agent}: ${a.phase}: ${a.reason}\n`);
      const evs = (await fetchHistory(agentWorkflowId(name, a.agent))).events ?? [];
      process.stderr.write(`    its history: ${evs.map((e) => `${e.eventId}:${temporal.api.enums.v1.EventType[e.eventType!]}@${time(e) % 100000}${e.workflowTaskFailedEventAttributes ? `(${e.workflowTaskFailedEventAttributes.cause} ${e.workflowTaskFailedEventAttributes.failure?.message})` : ''}${e.markerRecordedEventAttributes?.markerName === 'core_local_activity' ? `(${JSON.stringify(historyCalls([e])[0])})` : ''}`).join('\n')}\n`);
    }
  });
  if (all.stoppedAt) throw new Error(`v${version} stopped at ${all.stoppedAt}: ${all.error}`);
  const ms = performance.now() - t;
  // `start all` ends when its last batch has settled; a confirmed batch's workflow closes a moment
  // later. The next version's batches take the same ids: wait until every run has closed.
  for (const name of names) await client.workflow.getHandle(batchWorkflowId(name), all.runs[name]).result();
  return { ms, all };
}

/**
 * The engine's own record of the migration: its container events (project's label), by container.
 * Stop time of a container = its `kill` (SIGTERM) → `stop` events; a candidate's removal = `kill` → `destroy`.
 */
async function watchEngine() {
  const stream = await docker.getEvents({ filters: { type: ['container'], label: [`${LABELS.project}=${project}`] } });
  const byId = new Map<string, { action: string; at: number; attributes: Record<string, string> }[]>();
  let rest = '';
  stream.on('data', (chunk: Buffer) => {
    const lines = (rest + chunk.toString()).split('\n');
    rest = lines.pop() ?? '';
    for (const line of lines.filter(Boolean)) {
      const e = JSON.parse(line) as { id: string; Action: string; timeNano: number; Actor: { Attributes: Record<string, string> } };
      byId.set(e.id, [...(byId.get(e.id) ?? []), { action: e.Action, at: e.timeNano / 1e6, attributes: e.Actor.Attributes }]);
    }
  });
  const between = (id: string | undefined, from: string, to: string): Span | undefined => {
    const evs = id ? byId.get(id) : undefined;
    const a = evs?.find((e) => e.action === from);
    const b = a && evs!.find((e) => e.action === to && e.at >= a.at);
    return b ? [a!.at, b.at] : undefined;
  };
  const candidates = () => new Map([...byId].filter(([, evs]) => evs[0]?.attributes[LABELS.candidate]).map(([id, evs]) => [evs[0]!.attributes[LABELS.candidate]!, id]));
  let candidateIds: Map<string, string> | undefined;
  return {
    close: () => (stream as unknown as { destroy(): void }).destroy(),
    stop: (id?: string) => between(id, 'kill', 'stop'),
    /** When the container was renamed (a retire's last step: kept as `.prev`). */
    renamedAt: (id?: string) => (id ? byId.get(id)?.find((e) => e.action === 'rename')?.at : undefined),
    candidateRemoval: (unit: string) => between((candidateIds ??= candidates()).get(unit), 'kill', 'destroy'),
    summary: () => {
      const spans: Record<string, number[]> = {};
      for (const evs of byId.values()) {
        const who = evs[0]?.attributes[LABELS.candidate] ? 'candidate' : 'unit';
        const pairs = who === 'candidate'
          ? [['create', 'start'], ['kill', 'die'], ['die', 'destroy']]
          : [['create', 'start'], ['kill', 'die'], ['die', 'stop'], ['stop', 'rename']];
        for (const [from, to] of pairs) {
          const a = evs.find((e) => e.action === from);
          const b = a && evs.find((e) => e.action === to && e.at >= a.at);
          if (b) (spans[`${who} ${from} → ${to}`] ??= []).push(b.at - a!.at);
        }
        for (const e of evs.filter((x) => x.action === 'kill')) (spans[`${who} kill signal ${e.attributes.signal}`] ??= []).push(0);
      }
      return Object.entries(spans).map(([k, xs]) => (k.includes('signal') ? `${k} ×${xs.length}` : `${k} ${Math.round(median(xs))} (n ${xs.length})`)).join(', ');
    },
  };
}

/** A stretch of time: [from, to] in ms since the epoch. */
type Span = [number, number];

/** How much of [from, to] the spans cover (each moment counted once, however many spans cover it). */
function covered(spans: Span[], [from, to]: Span): number {
  let sum = 0;
  let reached = from;
  for (const [a, b] of spans.map(([a, b]): Span => [Math.max(a, from), Math.min(b, to)]).filter(([a, b]) => b > a).sort((x, y) => x[0] - y[0])) {
    if (b > reached) { sum += b - Math.max(a, reached); reached = b; }
  }
  return sum;
}



/**
 * SCALE_TRACE=1: where the overhead lies, between which two moments of an agent's life (history
 * events by the server's clock, activity runs by the worker's: one machine, one clock). Each stretch
 * between two consecutive moments adds what the left-out windows do not cover to `from → to`.
 */
const TRACE = process.env.SCALE_TRACE === '1';
const segments = new Map<string, number>();
function traceSegments(events: NonNullable<History['events']>, runs: Run[], left: Span[]) {
  const { EventType } = temporal.api.enums.v1;
  const scheduledName = new Map<number, string>();
  const marks: { at: number; label: string }[] = [];
  for (const e of events) {
    const type = EventType[e.eventType!]!.replace(/^EVENT_TYPE_/, '').toLowerCase();
    if (type === 'marker_recorded') continue; // written when its workflow task completed: the runs say when
    const s = e.activityTaskScheduledEventAttributes;
    if (s) scheduledName.set(Number(e.eventId), s.activityType?.name ?? '');
    const of = e.activityTaskStartedEventAttributes?.scheduledEventId ?? e.activityTaskCompletedEventAttributes?.scheduledEventId;
    marks.push({ at: time(e), label: `${type}${s ? `:${s.activityType?.name}` : of ? `:${scheduledName.get(Number(of))}` : ''}` });
  }
  for (const r of runs) marks.push({ at: r.start, label: `run ${r.name}` }, { at: r.end, label: `ran ${r.name}` });
  marks.sort((a, b) => a.at - b.at);
  for (const [i, m] of marks.slice(0, -1).entries()) {
    const next = marks[i + 1]!;
    const gap = next.at - m.at - covered(left, [m.at, next.at]);
    if (gap > 0) segments.set(`${m.label} → ${next.label}`, (segments.get(`${m.label} → ${next.label}`) ?? 0) + gap);
  }
}

type History = Awaited<ReturnType<ReturnType<Client['workflow']['getHandle']>['fetchHistory']>>;
const fetchHistory = async (id: string, runId?: string) => client.workflow.getHandle(id, runId).fetchHistory();
const time = (e: NonNullable<History['events']>[number]) => Number(e.eventTime!.seconds) * 1000 + e.eventTime!.nanos! / 1e6;

try {
  process.stderr.write(`bench/scale: ${AGENTS} agents, ${batchCount} batches of ≤ ${per}, concurrency ${CONCURRENCY}, ${SAMPLES} probes per sample\n`);
  const install = await startAll('1', true);
  spans.clear(); // the migration's runs take the install's workflow ids
  const engine = await watchEngine();
  const eluBefore = performance.eventLoopUtilization();
  const cpuBefore = { bench: process.cpuUsage(), server: await processCpuSeconds(server.process.pid), machine: await machineCpuSeconds() };
  const migration = await startAll('2', false);
  const cpu = {
    bench: (process.cpuUsage(cpuBefore.bench).user + process.cpuUsage(cpuBefore.bench).system) / 1e6,
    server: (await processCpuSeconds(server.process.pid)) - cpuBefore.server,
    machine: (await machineCpuSeconds()) - cpuBefore.machine,
  };
  const elu = performance.eventLoopUtilization(eluBefore).utilization;
  engine.close();
  const migrated = migration.all.results.flatMap((r) => r.agents).filter((a) => (a.phase === 'confirmed' || a.phase === 'migrated') && a.action === 'replaced').length;

  // Per agent of the migration, from its workflow's history and the engine's events.
  const previousOf = new Map(migration.all.results.flatMap((r) => r.agents).map((a) => [a.agent, a.previousId]));
  const overheads: number[] = [];
  const gaps: number[] = [];
  const excluded = { startToHealthy: [] as number[], candidateStartToHealthy: [] as number[], sampling: [] as number[], oldStop: [] as number[], candidateRemoval: [] as number[] };
  const perActivity = new Map<string, number[]>();
  // Where the overhead goes, per agent (sums; they may overlap where calls run side by side).
  const breakdown = new Map<string, number[]>();
  const counts = new Map<string, number[]>();
  const push = (m: Map<string, number[]>, k: string, v: number) => m.set(k, [...(m.get(k) ?? []), v]);
  const EXCLUDED = new Set(['ensureContainer', 'startCandidate', 'waitHealthy', 'sampleLatency', 'sampleBeside']); // replaceContainer: partly (its retire stays in)
  const retried = new Map<string, number>(); // activities that needed more than one attempt (a timeout, a lost worker)
  const EXCLUDED_NOTE = 'activityRun: the activities outside the excluded windows, as their worker ran them';
  let largest = { id: '', events: 0, bytes: 0 };
  const weigh = (id: string, h: History) => {
    const bytes = temporal.api.history.v1.History.encode(h).finish().length;
    if ((h.events?.length ?? 0) > largest.events) largest = { id, events: h.events!.length, bytes };
  };
  for (const [i, a] of agents.entries()) {
    const batch = names[Math.floor(i / per)]!;
    const id = agentWorkflowId(batch, a);
    const h = await fetchHistory(id);
    weigh(id, h);
    const events = h.events ?? [];
    const calls = historyCalls(events);
    for (const c of calls) if (c.attempt > 1) retried.set(c.name, (retried.get(c.name) ?? 0) + 1);
    // Start-to-healthy windows: from ensureContainer / startCandidate started to the next waitHealthy's end, as the worker ran them.
    let windowFrom: { kind: 'startToHealthy' | 'candidateStartToHealthy'; at: number } | undefined;
    const windows = { startToHealthy: 0, candidateStartToHealthy: 0 };
    let sampling = 0;
    const engineAndProbes: Span[] = []; // what the overhead leaves out
    const inActivities: Span[] = [];
    const parts = { activityRun: 0, wftQueue: 0, wftRun: 0, signals: 0 };
    const n = { workflowTasks: 0, workflowTasksOffSticky: 0, activities: calls.length, localActivities: calls.filter((c) => c.local).length, signals: 0 };
    for (const run of spans.get(id) ?? []) {
      const took = run.end - run.start;
      inActivities.push([run.start, run.end]);
      push(perActivity, run.name, took);
      if (run.name === 'ensureContainer') windowFrom = { kind: 'startToHealthy', at: run.start };
      // A replace in one call (retire, then ensure): its ensure part begins when the retire is done (the old container renamed).
      if (run.name === 'replaceContainer') windowFrom = { kind: 'startToHealthy', at: engine.renamedAt(previousOf.get(a)) ?? run.end };
      if (run.name === 'startCandidate') windowFrom = { kind: 'candidateStartToHealthy', at: run.start };
      // A wait that sampled once healthy: its start-to-healthy ends there, its sampling runs to its end.
      const healthyAt = run.sampledFrom ?? run.end;
      if (run.name === 'waitHealthy' && windowFrom) { windows[windowFrom.kind] += healthyAt - windowFrom.at; engineAndProbes.push([windowFrom.at, healthyAt]); windowFrom = undefined; }
      if (run.sampledFrom !== undefined) { sampling += run.end - run.sampledFrom; engineAndProbes.push([run.sampledFrom, run.end]); }
      if (run.name === 'sampleLatency' || run.name === 'sampleBeside') { sampling += took; engineAndProbes.push([run.start, run.end]); }
      if (!EXCLUDED.has(run.name)) parts.activityRun += took;
    }
    const wftScheduled = new Map<number, number>();
    const wftStarted = new Map<number, number>();
    const signalAt = new Map<number, number>();
    for (const e of events) {
      const wft = e.workflowTaskScheduledEventAttributes;
      if (wft) {
        wftScheduled.set(Number(e.eventId), time(e));
        n.workflowTasks++;
        // After the first, a task on the normal queue means the worker's cache lost the workflow (or its sticky queue timed out): a full replay.
        if (n.workflowTasks > 1 && wft.taskQueue?.kind !== temporal.api.enums.v1.TaskQueueKind.TASK_QUEUE_KIND_STICKY) n.workflowTasksOffSticky++;
      }
      const ws = e.workflowTaskStartedEventAttributes;
      if (ws) { wftStarted.set(Number(ws.scheduledEventId), time(e)); parts.wftQueue += time(e) - (wftScheduled.get(Number(ws.scheduledEventId)) ?? time(e)); }
      const wc = e.workflowTaskCompletedEventAttributes;
      if (wc) parts.wftRun += time(e) - (wftStarted.get(Number(wc.scheduledEventId)) ?? time(e));
      if (e.signalExternalWorkflowExecutionInitiatedEventAttributes) { signalAt.set(Number(e.eventId), time(e)); n.signals++; }
      const sig = e.externalWorkflowExecutionSignaledEventAttributes;
      if (sig) parts.signals += time(e) - (signalAt.get(Number(sig.initiatedEventId)) ?? time(e));
    }
    const lifetime: Span = [time(events[0]!), time(events.at(-1)!)];
    const total = lifetime[1] - lifetime[0];
    const oldStop = engine.stop(previousOf.get(a));
    const candidateRemoval = engine.candidateRemoval(a);
    excluded.startToHealthy.push(windows.startToHealthy);
    excluded.candidateStartToHealthy.push(windows.candidateStartToHealthy);
    excluded.sampling.push(sampling);
    if (oldStop) { excluded.oldStop.push(oldStop[1] - oldStop[0]); engineAndProbes.push(oldStop); }
    if (candidateRemoval) { excluded.candidateRemoval.push(candidateRemoval[1] - candidateRemoval[0]); engineAndProbes.push(candidateRemoval); }
    // Each left-out moment once: the candidate's removal runs beside the swap, inside other windows.
    overheads.push(total - covered(engineAndProbes, lifetime));
    if (TRACE) traceSegments(events, spans.get(id) ?? [], engineAndProbes);
    gaps.push(total - covered(inActivities, lifetime));
    for (const [k, v] of Object.entries(parts)) push(breakdown, k, v);
    for (const [k, v] of Object.entries(n)) push(counts, k, v);
  }
  for (const id of [...names.map(batchWorkflowId), allBatchesWorkflowId(project), ledgerWorkflowId(project)]) weigh(id, await fetchHistory(id));
  // SCALE_SAVE_HISTORIES=DIR: the first batch's and its first agent's histories, as test/histories holds them (replay checks).
  if (process.env.SCALE_SAVE_HISTORIES) {
    for (const [file, id] of [['batch-agents-on-host.json', batchWorkflowId(names[0]!)], ['agent-on-its-host.json', agentWorkflowId(names[0]!, agents[0]!)]] as const) {
      const history = Buffer.from(temporal.api.history.v1.History.encode(await fetchHistory(id)).finish()).toString('base64');
      await writeFile(path.join(process.env.SCALE_SAVE_HISTORIES, file), `${JSON.stringify({ workflowId: id, history })}\n`);
    }
  }
  // The batches' first runs (the install) too.
  for (const name of names) weigh(`${batchWorkflowId(name)} (install)`, await fetchHistory(batchWorkflowId(name), install.all.runs[name]));

  process.stdout.write(`bench/scale: ${AGENTS} agents over ${Object.keys(hosts).length} hosts, ${batchCount} batches, concurrency ${CONCURRENCY}; install ${(install.ms / 1000).toFixed(1)} s\n`);
  figure('migrated', migrated, 'agents', `= ${AGENTS}`);
  figure('total_time', (migration.ms / 1000).toFixed(1), 's', 'report (start all, every batch migrated and confirmed)');
  figure('overhead_per_agent_median', Math.round(median(overheads)), 'ms', '<= 150');
  figure('overhead_per_agent_mean', Math.round(overheads.reduce((s, x) => s + x, 0) / overheads.length), 'ms', '<= 150');
  figure('orchestration_gaps_per_agent_median', Math.round(median(gaps)), 'ms', 'report (agent workflow time outside any activity)');
  // What the overhead leaves out, each on its own (medians per agent).
  figure('excluded_start_to_healthy_median', Math.round(median(excluded.startToHealthy)), 'ms', 'report (ensureContainer began, or replaceContainer\'s retire done → waitHealthy returned)');
  figure('excluded_candidate_start_to_healthy_median', Math.round(median(excluded.candidateStartToHealthy)), 'ms', 'report (the judge\'s candidate: startCandidate began → waitHealthy returned)');
  figure('excluded_sampling_median', Math.round(median(excluded.sampling)), 'ms', 'report (sampleLatency and sampleBeside, began → returned)');
  figure('old_container_stop_median', Math.round(median(excluded.oldStop)), `ms (engine kill → stop, ${excluded.oldStop.length} agents)`, 'report');
  figure('candidate_removal_median', Math.round(median(excluded.candidateRemoval)), `ms (engine kill → destroy, ${excluded.candidateRemoval.length} agents)`, 'report');
  process.stdout.write(`engine, medians (ms): ${engine.summary()}\n`);
  process.stdout.write(`activity medians (ms): ${[...perActivity].map(([n, xs]) => `${n} ${Math.round(median(xs))}`).join(', ')}\n`);
  process.stdout.write(`overhead breakdown, medians per agent (ms): ${[...breakdown].map(([n, xs]) => `${n} ${Math.round(median(xs))}`).join(', ')} (${EXCLUDED_NOTE}; wftQueue/Run: workflow tasks scheduled → started / started → completed; signals: to the batch, initiated → delivered)\n`);
  process.stdout.write(`per agent, medians: ${[...counts].map(([n, xs]) => `${n} ${median(xs)}`).join(', ')}\n`);
  process.stdout.write(`CPU during the migration (s): bench process (workers, client) ${cpu.bench.toFixed(1)}, Temporal server ${cpu.server.toFixed(1)}, whole machine ${cpu.machine.toFixed(1)} of ${((migration.ms / 1000) * os.cpus().length).toFixed(1)} available; the workers' main thread busy ${(elu * 100).toFixed(0)} % of the time\n`);
  process.stdout.write(`activities retried: ${[...retried].map(([n, k]) => `${n} ${k}`).join(', ') || 'none'}\n`);
  process.stdout.write(`load average at the end: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.cpus().length} cores\n`);
  if (TRACE) process.stdout.write(`overhead by stretch, ms per agent (mean): ${[...segments].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([k, v]) => `\n  ${(v / agents.length).toFixed(1)}  ${k}`).join('')}\n`);
  figure('largest_history_events', largest.events, 'events', '<= 10240');
  figure('largest_history_bytes', largest.bytes, `bytes (${largest.id})`, 'report');
  figure('workers_peak_rss', Math.round(Math.max(peakRss, process.resourceUsage().maxRSS * 1024) / 2 ** 20), 'MiB (in-process workers + client)', 'report');
} finally {
  clearInterval(sampler);
  for (const w of workers) w.shutdown();
  await running;
  await native.close();
  await client.connection.close();
  await server.stop();
  await removeProject(docker, project);
}
