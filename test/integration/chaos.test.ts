/**
 * Chaos (issue 15, item 7): real processes killed at seeded random points of a deploy, a batch
 * migration, its rollback and a backup — SIGKILL of a host's `migrate worker` process (which also
 * runs workflow tasks) or of the Temporal dev server (restarted on the same SQLite file and port).
 * After each operation the world is checked: every unit has exactly one live container and at most
 * one previous (`.prev`), no other container of the project exists, no workflow is left running
 * (but the project's ledger, which lives on by design), and every backup marked verified has its
 * files whole (size and sha256 as its manifest says).
 *
 * Recovery is printed as figures, not asserted (no timed assertions): from the kill until the target
 * runs again (worker polling, server answering), and from then until the workflow resumed — the
 * activities the kill interrupted started again (or ended), or, if it interrupted none, the first
 * event from a process that was not killed, or the workflow closed. The seed is printed: MIGRATE_CHAOS_SEED=N
 * replays a run, MIGRATE_CHAOS_POINTS=N asks for more points (default 20).
 *
 * Not here: a Docker engine restart. The engine is shared by every suite on this machine; it is done
 * on an isolated host's own dockerd in test/integration/engine-restart.test.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import Dockerode from 'dockerode';
import pg from 'pg';
import { Client, Connection, type WorkflowHandle } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startDevServer, type DevServer } from '../../src/dev/temporal-server.js';
import { stubbedPlan } from '../../src/dev/stub-image.js';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan, type Plan } from '../../src/plan/plan.js';
import { containerName, LABELS, ORCHESTRATOR_QUEUE, previousName } from '../../src/plan/queues.js';
import { batchProgressQuery, batchWorkflowId } from '../../src/workflows/batch.js';
import { backupDatabases } from '../../src/workflows/backup.js';
import { ledgerWorkflowId } from '../../src/workflows/ledger.js';
import { decideBatch, startBatch, startDeploy } from '../../src/ops/index.js';
import { removeProjects } from '../helpers/containers.js';
import { rng } from '../helpers/seeded.js';

const PROJECT = 'hxchaos';
// Below the ephemeral range (32768–60999): the server restarts on it, and any outgoing connection could hold it.
const PORT = 31200;
const ADDRESS = `127.0.0.1:${PORT}`;
const DATABASE = 'hxchaos';
const SEED = Number(process.env.MIGRATE_CHAOS_SEED ?? Math.floor(Math.random() * 1e9));
const POINTS = Number(process.env.MIGRATE_CHAOS_POINTS ?? 20);
const HOSTS = { hxa: '127.0.12.20', hxb: '127.0.12.21' } as const;
type Host = keyof typeof HOSTS;
type Target = Host | 'server';

const random = rng(SEED);
const pick = <T>(xs: readonly T[]): T => xs[Math.floor(random() * xs.length)]!;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const docker = new Dockerode();
let dir: string;
let inventoryFile: string;
let plan: Plan;
let server: DevServer;
let connection: Connection;
let client: Client;
const workers = new Map<Host, ChildProcess>();

/** One kill: `backMs` from the kill until the target runs again, `recoveryMs` from then until the workflow resumed. */
interface Point { op: string; target: Target; delayMs: number; backMs?: number; recoveryMs?: number; hit: boolean }
const points: Point[] = [];

/** Start one host's worker process; resolves once it polls. */
async function startWorker(host: Host): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['bin/migrate.mjs', 'worker', '--host', host, '-i', inventoryFile, '--address', ADDRESS], {
    env: { ...process.env, MIGRATE_WORKFLOW_BUNDLE: inject('workflowBundle'), MIGRATE_CODEC_KEYS: '', MIGRATE_CODEC_KEYS_FILE: '' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  workers.set(host, child);
  let log = '';
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`worker ${host} did not start: ${log}`)), 120_000);
    child.stderr!.on('data', (d: Buffer) => {
      log = (log + d.toString()).slice(-4000);
      if (log.includes('polling')) { clearTimeout(timer); resolve(); }
    });
    child.once('exit', (code) => { clearTimeout(timer); reject(new Error(`worker ${host} exited (${code}): ${log}`)); });
  });
  child.removeAllListeners('exit');
  return child;
}

async function killWorker(host: Host): Promise<number> {
  const child = workers.get(host)!;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await exited;
  return child.pid!;
}

const startServer = () => startDevServer({ dbFile: path.join(dir, 'temporal.sqlite'), port: PORT, ui: false });

async function killServer(): Promise<void> {
  const exited = new Promise((r) => server.process.once('exit', r));
  server.process.kill('SIGKILL');
  await exited;
}

/** Retry a call through a server restart. */
/**
 * Race `promise` against `ms`: a call to a server that was just SIGKILLed and restarted can wait on
 * a dead channel with no deadline of its own (a fresh-clone run hung here 30 min, seed 307205097).
 */
function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms / 1000} s`)), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Retry `fn` until it succeeds or `ms` pass; each attempt gets at most `attemptMs`. */
async function patiently<T>(fn: () => Promise<T>, what: string, ms = 120_000, attemptMs = 60_000): Promise<T> {
  const until = Date.now() + ms;
  for (;;) {
    try {
      return await within(Math.max(1_000, Math.min(attemptMs, until - Date.now())), fn(), what);
    } catch (err) {
      if (Date.now() > until) throw new Error(`${what}: ${(err as Error).message}`);
      await sleep(500);
    }
  }
}

/** A protobuf Timestamp (seconds may be a Long) in milliseconds. */
const tsToMs = (ts: { seconds?: unknown; nanos?: number | null }) => Number(String(ts.seconds ?? 0)) * 1000 + Math.floor((ts.nanos ?? 0) / 1e6);

const IDENTITY = /"identity":"([^"]+)"/;
/** temporal.api.enums.v1.PendingActivityState.PENDING_ACTIVITY_STATE_STARTED */
const ACTIVITY_STARTED = 2;

/** The activities a worker (or, for the server, any worker) was running: what a kill interrupts. */
async function inFlight(handle: WorkflowHandle, pid: number | undefined): Promise<string[]> {
  const d = await within(15_000, handle.describe(), 'describe').catch(() => undefined);
  return (d?.raw.pendingActivities ?? [])
    .filter((a) => Number(a.state) === ACTIVITY_STARTED && (pid === undefined || (a.lastWorkerIdentity ?? '').endsWith(`:${pid}`)))
    .map((a) => a.activityId!);
}

/**
 * When the workflow resumed after a kill at `since`. If activities were in flight on what was
 * killed: when the last of them was started again (or ended). Otherwise: the first event after the
 * kill from a process that was not killed (a workflow task picked up again). Or when it closed.
 * A workflow with nothing in flight and no workflow task due (a batch waiting for its decision)
 * has nothing to resume: it counts as resumed when the server answers for it again. (Before that
 * rule this loop waited forever for an event no one would write: seed 307205097.)
 */
async function resumedAt(handle: WorkflowHandle, since: number, killedPid: number | undefined, held: string[]): Promise<number> {
  const live = (identity: string | undefined) => identity !== undefined && (killedPid === undefined || !identity.endsWith(`:${killedPid}`));
  const until = Date.now() + 300_000;
  for (;;) {
    if (Date.now() > until) throw new Error(`${handle.workflowId}: did not resume within 300 s of the kill`);
    const seen = await (async () => {
      const d = await within(15_000, handle.describe(), 'describe');
      if (d.status.name !== 'RUNNING') return tsToMs(d.raw.workflowExecutionInfo?.closeTime ?? {}) || Date.now();
      const pending = new Map((d.raw.pendingActivities ?? []).map((a) => [a.activityId!, a]));
      if (held.length > 0) {
        const restarted = held.map((id) => {
          const a = pending.get(id);
          if (!a) return Date.now(); // ended: completed, or failed for good
          const started = a.lastStartedTime ? tsToMs(a.lastStartedTime) : 0;
          return Number(a.state) === ACTIVITY_STARTED && started > since ? started : undefined;
        });
        return restarted.every((t) => t !== undefined) ? Math.max(...(restarted as number[])) : undefined;
      }
      if (pending.size === 0 && !d.raw.pendingWorkflowTask) return Date.now();
      const history = await within(15_000, handle.fetchHistory(), 'history');
      for (const e of history.events ?? []) {
        const at = e.eventTime ? tsToMs(e.eventTime) : 0;
        if (at > since && live(IDENTITY.exec(JSON.stringify(e))?.[1])) return at;
      }
      return undefined;
    })().catch(() => undefined);
    if (seen !== undefined) return seen;
    await sleep(250);
  }
}

/** Kills per operation: the next one is drawn once the workflow resumed from the last. */
const KILLS_PER_OPERATION = 2;

/**
 * Kill a drawn target a drawn delay into the operation (if it still runs), restart it, and measure:
 * kill → the target back (the worker polls again, the server answers), and back → the workflow
 * resumed on a live worker.
 */
async function chaos(op: string, handle: () => WorkflowHandle, running: () => boolean): Promise<void> {
  for (let k = 0; k < KILLS_PER_OPERATION; k++) {
    const target = pick<Target>(['hxa', 'hxb', 'server']);
    const delayMs = Math.floor(random() * 3000);
    const point: Point = { op, target, delayMs, hit: false };
    points.push(point);
    await sleep(delayMs);
    if (!running()) return;
    point.hit = true;
    const pid = target === 'server' ? undefined : workers.get(target)!.pid;
    const held = await inFlight(handle(), pid);
    const killedAt = Date.now();
    let killedPid: number | undefined;
    if (target === 'server') {
      await killServer();
      server = await patiently(startServer, 'restart the dev server', 120_000, 120_000);
    } else {
      killedPid = await killWorker(target);
      await startWorker(target);
    }
    const backAt = Date.now();
    const at = await resumedAt(handle(), killedAt, killedPid, held);
    point.backMs = backAt - killedAt;
    point.recoveryMs = Math.max(0, at - backAt);
    console.log(`chaos ${op}: SIGKILL ${target} at +${delayMs} ms (${held.length ? `running ${held.length} activities` : 'between activities'}); back after ${(point.backMs / 1000).toFixed(1)} s, the workflow resumed ${(point.recoveryMs / 1000).toFixed(1)} s later`);
  }
}

/** Run an operation to its end with a kill somewhere in it. */
async function withChaos<T>(op: string, workflowId: string, run: () => Promise<T>): Promise<T> {
  let done = false;
  const result = run().finally(() => { done = true; });
  await chaos(op, () => client.workflow.getHandle(workflowId), () => !done);
  return result;
}

/** What the world must look like after every operation. */
async function checkWorld(when: string): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${PROJECT}`] } });
  const names = list.map((c) => c.Names[0]!.slice(1));
  const expected = new Set<string>();
  for (const u of Object.values(plan.units)) {
    const live = containerName(PROJECT, u.host, u.name);
    const current = list.filter((c) => c.Names[0]!.slice(1) === live);
    const prev = list.filter((c) => c.Names[0]!.slice(1) === previousName(live));
    if (current.length + prev.length > 0) {
      expect(current.filter((c) => c.State === 'running'), `${when}: ${u.name} has exactly one live container (${names.join(', ')})`).toHaveLength(1);
      expect(prev.length, `${when}: ${u.name} has at most one previous`).toBeLessThanOrEqual(1);
    }
    expected.add(live).add(previousName(live));
  }
  expect(names.filter((n) => !expected.has(n)), `${when}: stray containers`).toEqual([]);
  const running: string[] = [];
  await patiently(async () => {
    running.length = 0;
    for await (const w of client.workflow.list({ query: 'ExecutionStatus="Running"' })) if (w.workflowId !== ledgerWorkflowId(PROJECT)) running.push(w.workflowId);
  }, 'list workflows');
  expect(running, `${when}: workflows left running`).toEqual([]);
  for (const host of Object.keys(HOSTS)) {
    const root = path.join(dir, 'backups', host);
    for (const id of await readdir(root).catch(() => [] as string[])) {
      const manifest = JSON.parse(await readFile(path.join(root, id, 'manifest.json'), 'utf8').catch(() => '{}')) as { status?: string; components?: { file: string; bytes: number; sha256: string }[] };
      if (manifest.status !== 'verified') continue;
      for (const c of manifest.components ?? []) {
        const file = path.join(root, id, c.file);
        const hash = createHash('sha256');
        let bytes = 0;
        for await (const chunk of createReadStream(file)) { hash.update(chunk as Buffer); bytes += (chunk as Buffer).length; }
        expect({ bytes, sha256: hash.digest('hex') }, `${when}: backup ${id} is marked verified: ${c.file} must be whole`).toEqual({ bytes: c.bytes, sha256: c.sha256 });
      }
    }
  }
}

const inventoryYaml = (backups: string) => `version: 1
project: ${PROJECT}
hosts:
  hxa: { address: ${HOSTS.hxa}, gpu_runtime: none }
  hxb: { address: ${HOSTS.hxb}, gpu_runtime: none }
services:
  api:
    placement: { host: hxa }
    image: hxchaos/api:1
    ports: ["42210:8080"]
    healthcheck: { http: /health, interval: 200ms, timeout: 1s, retries: 3, start_period: 1s }
  edge:
    placement: { host: hxb }
    image: hxchaos/edge:1
    ports: ["42211:8080"]
    healthcheck: { http: /health, interval: 200ms, timeout: 1s, retries: 3, start_period: 1s }
agents:
  AgentOne:
    placement: { host: hxb }
    image: hxchaos/agent-one:1
    ports: ["42212:8080"]
    healthcheck: { http: /health, interval: 200ms, timeout: 1s, retries: 3, start_period: 1s }
  AgentTwo:
    placement: { host: hxa }
    image: hxchaos/agent-two:1
    ports: ["42213:8080"]
    healthcheck: { http: /health, interval: 200ms, timeout: 1s, retries: 3, start_period: 1s }
batches:
  - { name: batch-1, agents: [AgentOne, AgentTwo], concurrency: 2, max_failures: 2, latency_tolerance: 100 }
backups:
  directory: ${backups}
  postgres:
    - { name: pg, host: hxa, via: tcp, address: 127.0.0.1, port: 5432, database: ${DATABASE}, user: postgres }
`;

async function sql(database: string, text: string): Promise<void> {
  const c = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database });
  await c.connect();
  try {
    await c.query(text);
  } finally {
    await c.end();
  }
}

beforeAll(async () => {
  console.log(`chaos seed ${SEED} (replay: MIGRATE_CHAOS_SEED=${SEED}), ${POINTS} points`);
  dir = await mkdtemp(path.join(os.tmpdir(), 'hx-chaos-'));
  inventoryFile = path.join(dir, 'inventory.yaml');
  await writeFile(inventoryFile, inventoryYaml(path.join(dir, 'backups')));
  await removeProjects([PROJECT]);
  await sql('postgres', `DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`);
  await sql('postgres', `CREATE DATABASE ${DATABASE}`);
  await sql(DATABASE, 'CREATE TABLE items (id int PRIMARY KEY, body text); INSERT INTO items SELECT g, md5(g::text) FROM generate_series(1, 2000) g');
  const { parse } = await import('yaml');
  plan = buildPlan(parseInventory(parse(await readFile(inventoryFile, 'utf8'))));
  server = await startServer();
  connection = await Connection.connect({ address: ADDRESS });
  client = new Client({ connection });
  await Promise.all((Object.keys(HOSTS) as Host[]).map(startWorker));
}, 300_000);

afterAll(async () => {
  for (const child of workers.values()) child.kill('SIGKILL');
  await connection?.close().catch(() => undefined);
  await server?.stop().catch(() => undefined);
  await removeProjects([PROJECT]);
  await sql('postgres', `DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`).catch(() => undefined);
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe(`chaos: SIGKILL of workers and of the Temporal server at random points (seed ${SEED})`, () => {
  it('after every deploy, batch, rollback and backup the world is whole', async () => {
    for (let round = 1; points.filter((p) => p.hit).length < POINTS; round++) {
      const v = String(round);
      const stub = stubbedPlan(plan, { version: v });

      // A deploy, confirmed by itself once healthy.
      const release = `hx-r${round}`;
      await withChaos(`deploy ${release}`, `deploy-${release}`, async () => {
        const handle = await patiently(() => startDeploy(client, stub, { release, autoConfirm: true, skipBackup: 'chaos test: backups have their own step' }), 'start deploy');
        return patiently(() => handle.result(), 'deploy result', 600_000);
      });
      await checkWorld(`after deploy ${release}`);

      // A batch, left pending confirmation…
      const result = await withChaos(`batch round ${round}`, batchWorkflowId('batch-1'), async () => {
        const handle = await patiently(() => startBatch(client, stub, 'batch-1', { force: true, samples: 3, skipBackup: 'chaos test' }), 'start batch');
        return patiently(async () => {
          for (;;) {
            const d = await within(15_000, handle.describe(), 'describe batch');
            if (d.status.name !== 'RUNNING') return d.status.name;
            const p = await within(15_000, handle.query(batchProgressQuery), 'query batch').catch(() => undefined);
            if (p?.phase === 'pending-confirmation') return p.phase;
            await sleep(300);
          }
        }, 'follow batch', 600_000, 600_000);
      });
      // …then rolled back (a first install has nothing to go back to: confirmed instead).
      if (result === 'pending-confirmation') {
        const decision = round === 1 ? 'confirm' : 'rollback';
        await withChaos(`${decision} round ${round}`, batchWorkflowId('batch-1'), async () => {
          await patiently(async () => {
            const d = await client.workflow.getHandle(batchWorkflowId('batch-1')).describe();
            if (d.status.name === 'RUNNING') await decideBatch(client, PROJECT, 'batch-1', decision);
          }, `${decision} batch`, 600_000);
          return patiently(() => client.workflow.getHandle(batchWorkflowId('batch-1')).result(), 'batch result', 600_000);
        });
      }
      await checkWorld(`after batch round ${round}`);

      // A backup.
      const backupId = `backup-hx${round}`;
      await withChaos(`backup round ${round}`, backupId, async () => {
        const handle = await patiently(() => client.workflow.start(backupDatabases, { taskQueue: ORCHESTRATOR_QUEUE, workflowId: backupId, args: [{ backups: plan.backups! }] }), 'start backup');
        return patiently(() => handle.result(), 'backup result', 600_000);
      });
      await checkWorld(`after backup round ${round}`);
    }

    const hits = points.filter((p) => p.hit);
    const sorted = (xs: number[]) => [...xs].sort((a, b) => a - b);
    const s = (ms: number) => (ms / 1000).toFixed(1);
    const rec = sorted(hits.map((p) => p.recoveryMs!));
    const total = sorted(hits.map((p) => p.backMs! + p.recoveryMs!));
    const byTarget = (t: Target) => hits.filter((p) => p.target === t).length;
    console.log(`chaos: ${hits.length} kills inside a running operation (${points.length} drawn): workers ${byTarget('hxa') + byTarget('hxb')}, server ${byTarget('server')}; seed ${SEED}`);
    console.log(`figure chaos_resume_after_restart_median = ${s(rec[Math.floor(rec.length / 2)]!)} s (goal <= 10 s)`);
    console.log(`figure chaos_resume_after_restart_max = ${s(rec.at(-1)!)} s (goal <= 10 s)`);
    console.log(`figure chaos_kill_to_resume_median = ${s(total[Math.floor(total.length / 2)]!)} s (goal <= 10 s)`);
    console.log(`figure chaos_kill_to_resume_max = ${s(total.at(-1)!)} s (goal <= 10 s)`);
    expect(hits.length).toBeGreaterThanOrEqual(POINTS);
  }, 1_800_000);
});
