/**
 * The data safeguard (issue #5, wire-in): a deploy and a batch migration start by taking a verified
 * backup; one that does not verify refuses the change before any container moves; `--skip-backup`
 * records its reason; `rollback … --restore-data` puts the containers back and then the data.
 * Real Temporal, real Docker (stub images), this machine's PostgreSQL; assertions on rows,
 * containers and workflow histories.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { WorkflowFailedError } from '@temporalio/client';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan, type Plan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { containerName, LABELS } from '../../src/plan/queues.js';
import { STUB_IMAGE } from '../../src/dev/stub-image.js';
import type { DeployProgress } from '../../src/workflows/deploy.js';
import type { BatchResult } from '../../src/workflows/batch.js';
import { decideBatch, decideRelease, followBatch, startBatch, startDeploy } from '../../src/ops/index.js';
import { historyText, startWorld, type TestWorld } from '../helpers/temporal.js';

const pid = process.pid;
const project = `sg${pid}`;
const database = `migrate_sg_${pid}`;
const secretVar = `MIGRATE_SG_PG_PASSWORD_${pid}`;
const secret = `sg-secret-${pid}-${Math.random().toString(36).slice(2)}`;
const docker = new Dockerode();
const hc = { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '1s' };

async function sql<T extends pg.QueryResultRow = Record<string, unknown>>(db: string, text: string): Promise<T[]> {
  const c = new pg.Client({ host: '127.0.0.1', port: 5432, user: 'postgres', database: db });
  await c.connect();
  try {
    return (await c.query<T>(text)).rows;
  } finally {
    await c.end();
  }
}

/** Independent of the activities' checksums: row count and the md5 of every row in key order. */
async function contents(): Promise<{ rows: number; md5: string }> {
  const [r] = await sql<{ rows: string; md5: string }>(database, `SELECT count(*) AS rows, md5(coalesce(string_agg(t::text, '|' ORDER BY id), '')) AS md5 FROM memory t`);
  return { rows: Number(r!.rows), md5: r!.md5 };
}

/** What a new version might do to the data: add, change and delete rows. */
async function scribble(): Promise<void> {
  await sql(database, `INSERT INTO memory (note) SELECT 'written by the new version ' || g FROM generate_series(1, 120) g`);
  await sql(database, `UPDATE memory SET note = 'changed' WHERE id % 7 = 0`);
  await sql(database, `DELETE FROM memory WHERE id % 11 = 0`);
}

let dir: string;

function inventory(databaseName = database) {
  return parseInventory({
    version: 1,
    project,
    hosts: { mainpc: { address: '127.0.0.71' }, pc2: { address: '127.0.0.72' } },
    services: { api: { image: 'api:1', placement: { host: 'mainpc' }, ports: ['8001:8001'], healthcheck: hc } },
    agents: {
      Agent1: { image: 'agentsys/agent1:2', placement: { host: 'pc2' }, ports: ['7301:8080'], healthcheck: hc },
      Agent2: { image: 'agentsys/agent2:2', placement: { host: 'pc2' }, ports: ['7302:8080'], healthcheck: hc },
    },
    batches: [{ name: 'sg-batch-1', agents: ['Agent1', 'Agent2'], concurrency: 2, max_failures: 1 }],
    backups: {
      directory: dir,
      postgres: [{ name: 'pg', host: 'mainpc', via: 'tcp', address: '127.0.0.1', port: 5432, database: databaseName, user: 'postgres', password: { from_env: secretVar } }],
    },
  });
}

const stubbed = (plan: Plan, version = '1') => stubPlan(plan, { image: STUB_IMAGE, version });

async function containers(): Promise<{ name: string; id: string; running: boolean }[]> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
  return list.map((c) => ({ name: c.Names[0]!.slice(1), id: c.Id, running: c.State === 'running' })).sort((a, b) => a.name.localeCompare(b.name));
}

async function pendingConfirmation(world: TestWorld, workflowId: string): Promise<DeployProgress> {
  const handle = world.client.workflow.getHandle(workflowId);
  for (const until = Date.now() + 90_000; Date.now() < until;) {
    const p = await handle.query<DeployProgress>('progress');
    if (p.phase === 'pending-confirmation') return p;
    if (p.phase === 'failed') throw new Error(`deploy failed: ${p.error}`);
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error('deploy did not settle in 90 s');
}

/** The event ids, in the deploy's own history, of the backup child's completion and of the first container created. */
async function order(world: TestWorld, workflowId: string): Promise<{ backupDone?: number; firstContainer?: number; children: string[]; childIds: string[] }> {
  const history = await world.client.workflow.getHandle(workflowId).fetchHistory();
  let backupDone: number | undefined;
  let firstContainer: number | undefined;
  const children: string[] = [];
  const childIds: string[] = [];
  for (const e of history.events ?? []) {
    const id = Number(e.eventId);
    const started = e.startChildWorkflowExecutionInitiatedEventAttributes;
    if (started) {
      children.push(started.workflowType!.name!);
      childIds.push(started.workflowId!);
    }
    if (e.childWorkflowExecutionCompletedEventAttributes?.workflowType?.name === 'backupDatabases') backupDone ??= id;
    if (['ensureContainer', 'startHealthy'].includes(e.activityTaskScheduledEventAttributes?.activityType?.name ?? '')) firstContainer ??= id;
  }
  return { backupDone, firstContainer, children, childIds };
}

let world: TestWorld;
/** Every workflow this file ran, with its children: replayed against the current code at the end. */
const ran = new Set<string>();
async function remember(workflowId: string): Promise<void> {
  ran.add(workflowId);
  for (const child of (await order(world, workflowId)).childIds) if (!child.startsWith('deploy-lock-')) await remember(child);
}

beforeAll(async () => {
  process.env[secretVar] = secret;
  dir = await mkdtemp(path.join(os.tmpdir(), `migrate-sg-${pid}-`));
  await sql('postgres', `DROP DATABASE IF EXISTS ${database}`);
  await sql('postgres', `CREATE DATABASE ${database}`);
  await sql(database, `CREATE TABLE memory (id bigserial PRIMARY KEY, note text NOT NULL)`);
  await sql(database, `INSERT INTO memory (note) SELECT md5(g::text) FROM generate_series(1, 500) g`);
  world = await startWorld(inventory());
});

afterAll(async () => {
  await world?.close();
  for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } })) {
    await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  }
  for (const n of await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } })) {
    await docker.getNetwork(n.Id).remove().catch(() => undefined);
  }
  await sql('postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
  delete process.env[secretVar];
  await rm(dir, { recursive: true, force: true });
});

describe('a verified backup before every deploy and batch; rollback --restore-data (real Temporal, Docker, PostgreSQL)', () => {
  it('deploy: the backup verifies before the first container is created; rollback --restore-data brings back containers and rows; no secret in any history', async () => {
    const before = await contents();
    const release = `sg-${pid}-a`;
    const handle = await startDeploy(world.client, stubbed(buildPlan(inventory())), { release });
    const progress = await pendingConfirmation(world, handle.workflowId);

    expect(progress.backup?.status).toBe('verified');
    const seen = await order(world, handle.workflowId);
    expect(seen.children).toContain('backupDatabases');
    expect(seen.backupDone).toBeDefined();
    expect(seen.firstContainer).toBeDefined();
    expect(seen.backupDone!).toBeLessThan(seen.firstContainer!);
    const backupRun = await world.client.workflow.getHandle(progress.backup!.workflowId!).describe();
    expect(backupRun.status.name).toBe('COMPLETED');
    expect((await containers()).map((c) => c.name)).toEqual([containerName(project, 'mainpc', 'api')]);

    await scribble();
    expect(await contents()).not.toEqual(before);

    const decided = await decideRelease(world.client, release, 'rollback', { restoreData: true });
    expect(decided.status).toBe('rolled-back');
    expect(decided.exact).toBe(true);
    expect(decided.restore?.ok).toBe(true);
    expect(decided.restore?.backupId).toBe(progress.backup!.id);
    expect(await contents()).toEqual(before);
    expect(await containers()).toEqual([]); // a first install: rolling back removes it

    const seenAfter = await order(world, handle.workflowId);
    expect(seenAfter.children).toEqual(['deployLock', 'backupDatabases', 'restoreBackup']);
    for (const id of [handle.workflowId, ...seenAfter.childIds]) expect(await historyText(world.client, id)).not.toContain(secret);
    await remember(handle.workflowId);
  });

  it('deploy: a backup that does not verify refuses the deploy before any container exists; the lock is let go', async () => {
    const release = `sg-${pid}-b`;
    const broken = buildPlan(inventory(`${database}_missing`));
    const handle = await startDeploy(world.client, stubbed(broken), { release });
    const err = await handle.result().then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    const cause = (err as WorkflowFailedError).cause as { type?: string; message: string };
    expect(cause.type).toBe('BackupFailed');
    expect(cause.message).toMatch(/refused before any change.*--skip-backup/);
    expect(await containers()).toEqual([]);
    expect((await order(world, handle.workflowId)).firstContainer).toBeUndefined();
    const lock = await world.client.workflow.getHandle(`deploy-lock-${project}`).describe();
    expect(lock.status.name).toBe('COMPLETED');
    await remember(handle.workflowId);
  });

  it('deploy --skip-backup: no backup is taken, the reason is in the input and the progress; --restore-data is refused', async () => {
    const release = `sg-${pid}-c`;
    const reason = 'migrating an empty staging database';
    const handle = await startDeploy(world.client, stubbed(buildPlan(inventory())), { release, skipBackup: reason });
    const progress = await pendingConfirmation(world, handle.workflowId);
    expect(progress.backup).toEqual({ status: 'skipped', reason });
    expect((await order(world, handle.workflowId)).children).toEqual(['deployLock']);
    expect(await historyText(world.client, handle.workflowId)).toContain(reason);

    await expect(decideRelease(world.client, release, 'rollback', { restoreData: true })).rejects.toThrow(/no backup to restore: its backup was skipped/);
    expect((await handle.query<DeployProgress>('progress')).phase).toBe('pending-confirmation'); // refused: nothing happened
    const decided = await decideRelease(world.client, release, 'rollback');
    expect(decided.status).toBe('rolled-back');
    expect(await containers()).toEqual([]);
    await remember(handle.workflowId);
  });

  it('batch: the backup is taken after the gates, before any agent moves; rollback --restore-data restores the exact old containers, then the rows', async () => {
    const plan = buildPlan(inventory());
    // Version 1 installed and confirmed (skipping the backup, with a reason).
    const v1 = await followBatch(await startBatch(world.client, stubbed(plan, '1'), 'sg-batch-1', { force: true, samples: 5, skipBackup: 'first install in a test' }));
    expect(v1.outcome).toBe('migrated');
    expect(v1.backup).toEqual({ status: 'skipped', reason: 'first install in a test' });
    await expect(decideBatch(world.client, project, 'sg-batch-1', 'rollback', { restoreData: true })).rejects.toThrow(/no backup to restore: its backup was skipped/);
    await decideBatch(world.client, project, 'sg-batch-1', 'confirm');
    await remember('migrate-sg-batch-1');
    const oldIds = Object.fromEntries((await containers()).map((c) => [c.name, c.id]));
    const before = await contents();

    const v2 = await followBatch(await startBatch(world.client, stubbed(plan, '2'), 'sg-batch-1', { force: true, samples: 5 }));
    expect(v2.outcome).toBe('migrated');
    expect(v2.backup?.status).toBe('verified');
    expect(v2.backup?.id).toMatch(/^migrate-sg-batch-1-backup-/);
    // The backup's child completed before the first agent's child workflow started.
    const history = await world.client.workflow.getHandle('migrate-sg-batch-1').fetchHistory();
    const events = history.events ?? [];
    const backupDone = events.findIndex((e) => e.childWorkflowExecutionCompletedEventAttributes?.workflowType?.name === 'backupDatabases');
    const firstAgent = events.findIndex((e) => e.startChildWorkflowExecutionInitiatedEventAttributes?.workflowType?.name === 'migrateAgent');
    expect(backupDone).toBeGreaterThan(-1);
    expect(backupDone).toBeLessThan(firstAgent);

    await scribble();
    const back = await decideBatch(world.client, project, 'sg-batch-1', 'rollback', { restoreData: true });
    expect(back).toMatchObject({ status: 'rolled-back', exact: true, differences: [] });
    expect(((await world.client.workflow.getHandle('migrate-sg-batch-1').result()) as BatchResult).agents.map((a) => a.phase)).toEqual(['rolled-back', 'rolled-back']);
    expect(back.restore?.ok).toBe(true);
    expect(back.restore?.backupId).toBe(v2.backup!.id);
    expect(await contents()).toEqual(before);
    const now = await containers();
    expect(Object.fromEntries(now.filter((c) => !c.name.endsWith('.prev')).map((c) => [c.name, c.id]))).toEqual(oldIds);
    expect(now.every((c) => c.running || c.name.endsWith('.prev'))).toBe(true);
    expect(await historyText(world.client, 'migrate-sg-batch-1')).not.toContain(secret);
    await remember('migrate-sg-batch-1');
  });

  it('replays every history above (deploys, batch, agents, backups, restores) against the current code', async () => {
    expect(ran.size).toBeGreaterThanOrEqual(10);
    const histories = [...ran].map(async (workflowId) => ({ workflowId, history: await world.client.workflow.getHandle(workflowId).fetchHistory() }));
    const failed: string[] = [];
    for await (const r of Worker.runReplayHistories({ workflowBundle: { codePath: inject('workflowBundle') } }, (async function* () { for (const h of histories) yield await h; })())) {
      if (r.error) failed.push(`${r.workflowId}: ${r.error.message}`);
    }
    expect(failed).toEqual([]);
  });
});
