/**
 * InfluxDB 1.x backups, against a real influxd (Debian's 1.6.7, in a FROM scratch container built by
 * test/helpers/influx-image.ts, auth enabled), through a real Temporal dev server and an in-process
 * host worker: random points → backupDatabases (counted, backed up, restored into scratch databases
 * and compared) → change the data → a restore that fails its check puts everything back as it was →
 * restoreBackup → identical values; a truncated or corrupted archive fails verification, also when
 * its manifest was rewritten to match it. InfluxDB 2.x (the seed's) is not tested: it cannot be
 * installed here.
 */
import { createHash } from 'node:crypto';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import Dockerode from 'dockerode';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { containerName, LABELS, ORCHESTRATOR_QUEUE } from '../../src/plan/queues.js';
import type { BackupPlan } from '../../src/plan/backups.js';
import type { Manifest } from '../../src/activities/backup-store.js';
import { runTool } from '../../src/activities/exec.js';
import type { BackupResult, RestoreResult } from '../../src/workflows/backup.js';
import { historyText, startWorld, type TestWorld } from '../helpers/temporal.js';
import { ensureInfluxImage, INFLUX_IMAGE } from '../helpers/influx-image.js';

const pid = process.pid;
const project = `influxbk${pid}`;
const container = containerName(project, 'mainpc', 'influxdb'); // what planBackups names for unit influxdb on mainpc
const user = 'admin';
const secretVar = `MIGRATE_TEST_INFLUX_PASSWORD_${pid}`;
const secret = `s3cr3t-${pid}-${Math.random().toString(36).slice(2)}`;
const docker = new Dockerode();

interface Response {
  results?: { error?: string; series?: { name?: string; columns: string[]; values?: unknown[][] }[] }[];
}

/** One InfluxQL statement inside the container, as the admin user; the JSON response. */
async function q(statement: string, database?: string): Promise<Response> {
  const res = await runTool(docker, container, ['influx', '-host', '127.0.0.1', '-format', 'json', '-precision', 'rfc3339', ...(database ? ['-database', database] : []), '-execute', statement], {
    env: { INFLUX_USERNAME: user, INFLUX_PASSWORD: secret },
  });
  if (res.code !== 0) throw new Error(`${statement}: ${res.stdout}${res.stderr}`);
  return JSON.parse(res.stdout.split('\n').find((l) => l.startsWith('{'))!) as Response;
}

const seriesOf = (r: Response) => (r.results ?? []).flatMap((x) => x.series ?? []);

async function databases(): Promise<string[]> {
  return seriesOf(await q('SHOW DATABASES')).flatMap((s) => (s.values ?? []).map((v) => String(v[0]))).sort();
}

/** Line protocol through the HTTP API, from inside the container (busybox wget), in chunks. */
async function write(database: string, lines: string[], rp?: string): Promise<void> {
  for (let i = 0; i < lines.length; i += 200) {
    const url = `http://127.0.0.1:8086/write?db=${database}&precision=ns${rp ? `&rp=${rp}` : ''}&u=${user}&p=${secret}`;
    const res = await runTool(docker, container, ['wget', '-q', '-O', '-', `--post-data=${lines.slice(i, i + 200).join('\n')}`, url]);
    if (res.code !== 0) throw new Error(`write to ${database}: ${res.stderr}`);
  }
}

const now = BigInt(Date.now()) * 1_000_000n;
/** Distinct timestamps (one per second, going back from now) so that no point overwrites another. */
const at = (i: number) => (now - BigInt(i + 1) * 1_000_000_000n).toString();
const rand = () => Math.random().toFixed(6);
const randInt = () => Math.floor(Math.random() * 1e9);

/**
 * Independent of the activity's counts: every value of every measurement, as `SELECT *` returns it
 * (RFC 3339 timestamps, in time order), per database, retention policy and measurement: row count and sha256.
 */
async function contents(): Promise<Record<string, { rows: number; sha256: string }>> {
  const out: Record<string, { rows: number; sha256: string }> = {};
  for (const [db, rp] of [['metrics', 'autogen'], ['events', 'short']] as const) {
    const measurements = seriesOf(await q('SHOW MEASUREMENTS', db)).flatMap((s) => (s.values ?? []).map((v) => String(v[0])));
    for (const m of measurements) {
      const series = seriesOf(await q(`SELECT * FROM "${db}"."${rp}"."${m}"`));
      const rows = series.flatMap((s) => s.values ?? []);
      out[`${db}.${rp}.${m}`] = { rows: rows.length, sha256: createHash('sha256').update(JSON.stringify(series.map((s) => [s.columns, s.values]))).digest('hex') };
    }
  }
  return out;
}

/** Run a tool on this host with `input` on stdin; its stdout. */
function execFileAsync(file: string, args: string[], input?: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const child = execFile(file, args, { encoding: 'buffer', maxBuffer: 1 << 28 }, (err, stdout) => (err ? reject(err) : resolve(stdout)));
    child.stdin!.end(input);
  });
}

let dir: string;
function inventoryFor(directory: string) {
  return parseInventory({
    version: 1,
    project,
    hosts: { mainpc: {} },
    services: { influxdb: { image: INFLUX_IMAGE, placement: { host: 'mainpc' } } },
    backups: {
      directory,
      influxdb: [{ name: 'influx', host: 'mainpc', via: 'docker-exec', unit: 'influxdb', version: 1, user, password: { from_env: secretVar } }],
    },
  });
}


describe('InfluxDB 1.x backup / verify / restore (real influxd 1.6, Temporal, Docker)', () => {
  let world: TestWorld;
  let plan: BackupPlan;
  const workflowIds: string[] = [];
  const manifestPath = () => path.join(dir, 'mainpc', backupId, 'manifest.json');
  const readManifest = async () => JSON.parse(await readFile(manifestPath(), 'utf8')) as Manifest;
  const tmpInContainer = async () => (await runTool(docker, container, ['ls', '/tmp'])).stdout.split('\n').filter((f) => f.startsWith('migrate-'));
  const run = <T>(workflowType: string, workflowId: string, args: unknown[]): Promise<T> => {
    workflowIds.push(workflowId);
    return world.client.workflow.execute(workflowType, { taskQueue: ORCHESTRATOR_QUEUE, workflowId, args });
  };

  beforeAll(async () => {
    process.env[secretVar] = secret;
    dir = await mkdtemp(path.join(os.tmpdir(), `migrate-influx-backup-${pid}-`));
    await ensureInfluxImage(docker);
    await docker.getContainer(container).remove({ force: true }).catch(() => undefined);
    const created = await docker.createContainer({
      name: container,
      Image: INFLUX_IMAGE,
      Env: ['INFLUXDB_HTTP_AUTH_ENABLED=true'],
      Labels: { [LABELS.project]: project, [LABELS.host]: 'mainpc', [LABELS.unit]: 'influxdb' },
    });
    await created.start();
    for (let i = 0; ; i++) {
      // The first admin user can be created without credentials, once the HTTP API answers.
      const res = await runTool(docker, container, ['influx', '-host', '127.0.0.1', '-execute', `CREATE USER ${user} WITH PASSWORD '${secret}' WITH ALL PRIVILEGES`]);
      if (res.code === 0) break;
      if (i > 100) throw new Error(`influxd did not answer: ${res.stdout}${res.stderr}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    await q('CREATE DATABASE metrics');
    await q('CREATE DATABASE events');
    await q('CREATE RETENTION POLICY short ON events DURATION 30d REPLICATION 1');
    await q('CREATE DATABASE empty'); // no shards: influxd 1.x restores it with a complaint
    await write('metrics', Array.from({ length: 1200 }, (_, i) => `cpu,host=h${i % 4},region=r${i % 2} usage=${rand()},busy=${randInt()}i ${at(i)}`));
    await write('metrics', Array.from({ length: 700 }, (_, i) => `mem,host=h${i % 4} free=${randInt()}i,used_pct=${rand()} ${at(i)}`));
    await write('events', Array.from({ length: 300 }, (_, i) => `agent_event,agent=A${i % 5} kind="k${randInt()}",duration=${rand()} ${at(i)}`), 'short');
    plan = buildPlan(inventoryFor(dir)).backups!;
    world = await startWorld(inventoryFor(dir));
  });

  afterAll(async () => {
    await world?.close();
    await docker.getContainer(container).remove({ force: true }).catch(() => undefined); // the image is kept
    await rm(dir, { recursive: true, force: true });
    delete process.env[secretVar];
  });

  let backupId: string;
  it('backs up every database, counts its points, and verifies by restoring into scratch databases', async () => {
    const result = await run<BackupResult>('backupDatabases', `influx-backup-${pid}`, [{ backups: plan }]);
    backupId = result.id;
    expect(result.status).toBe('verified');
    expect(result.hosts[0]!.problems).toEqual([]);

    const manifest = await readManifest();
    expect(manifest.status).toBe('verified');
    expect(manifest.verification?.components[0]?.detail).toMatch(/^restored 3 database\(s\) into scratch databases .*counts match the backup/);
    const entry = manifest.components[0]!;
    expect(entry.kind).toBe('influxdb');
    expect(entry.influx?.databases.map((d) => d.name).sort()).toEqual(['empty', 'events', 'metrics']); // all but _internal
    const series = Object.fromEntries(entry.influx!.databases.flatMap((d) => d.series.map((s) => [`${d.name}.${s.rp}.${s.measurement}`, s.fields])));
    expect(series).toEqual({
      'metrics.autogen.cpu': { usage: 1200, busy: 1200 },
      'metrics.autogen.mem': { free: 700, used_pct: 700 },
      'events.short.agent_event': { kind: 300, duration: 300 },
    });
    expect((await readdir(path.join(dir, 'mainpc', backupId))).sort()).toEqual(['influx.tar', 'manifest.json']);
    // Scratch databases dropped, nothing left in the container's /tmp, no credential in the manifest.
    expect(await databases()).toEqual(['empty', 'events', 'metrics']);
    expect(await tmpInContainer()).toEqual([]);
    expect(await readFile(manifestPath(), 'utf8')).not.toContain(secret);
    const history = await world.client.workflow.getHandle(`influx-backup-${pid}`).fetchHistory();
    const scheduled = (history.events ?? []).flatMap((e) => (e.activityTaskScheduledEventAttributes ? [e.activityTaskScheduledEventAttributes.activityType!.name] : []));
    expect(scheduled).toEqual(expect.arrayContaining(['backupInflux', 'verifyInflux']));
  });

  let original: Record<string, { rows: number; sha256: string }>;
  let changed: Record<string, { rows: number; sha256: string }>;
  it('a backup that would not restore as its manifest records is refused before any database is touched', async () => {
    original = await contents();
    expect(original['metrics.autogen.cpu']!.rows).toBe(1200);
    // Change the world after the backup: delete, add, drop.
    await q('DELETE FROM cpu WHERE host = \'h1\'', 'metrics');
    await write('metrics', Array.from({ length: 50 }, (_, i) => `mem,host=h9 free=${randInt()}i,used_pct=${rand()} ${at(i)}`));
    await q('DROP MEASUREMENT agent_event', 'events');
    await write('events', [`agent_event,agent=new kind="late",duration=1 ${at(0)}`], 'short');
    await q('DROP DATABASE empty');
    await q('CREATE DATABASE extra'); // made after the backup: a restore leaves it alone
    changed = await contents();
    expect(changed['metrics.autogen.cpu']!.rows).toBe(900);
    expect(changed['events.short.agent_event']!.rows).toBe(1);

    // A manifest that records one value more for the last database: its restore fails the check.
    const text = await readFile(manifestPath(), 'utf8');
    const tampered = JSON.parse(text) as Manifest;
    const last = tampered.components[0]!.influx!.databases.filter((d) => d.series.length > 0).at(-1)!;
    const field = Object.keys(last.series[0]!.fields)[0]!;
    last.series[0]!.fields[field]! += 1;
    await writeFile(manifestPath(), JSON.stringify(tampered));
    try {
      // The workflow reports each component; this one was not restored, and says why.
      const result = await run<RestoreResult>('restoreBackup', `influx-restore-rollback-${pid}`, [{ id: backupId, backups: plan }]);
      expect(result.ok).toBe(false);
      expect(result.components).toHaveLength(1);
      expect(result.components[0]!.ok).toBe(false);
      expect(result.components[0]!.detail).toMatch(/^not restored: /);
      const message = result.components[0]!.detail;
      expect(message).toMatch(/not restored \(nothing was changed\): the restored copy of database ".*" differs from the backup: .* has \d+ values, the backup recorded \d+/);
    } finally {
      await writeFile(manifestPath(), text);
    }
    expect(await contents()).toEqual(changed);
    expect(await databases()).toEqual(['events', 'extra', 'metrics']);
    expect(await tmpInContainer()).toEqual([]);
  });

  it('restores after the data changed: the same databases, values and timestamps as at the backup', async () => {
    const result = await run<RestoreResult>('restoreBackup', `influx-restore-${pid}`, [{ id: backupId, backups: plan }]);
    expect(result.ok).toBe(true);
    expect(result.components[0]!.detail).toMatch(/^restored .*counts match the backup/);
    expect(await contents()).toEqual(original);
    expect(await databases()).toEqual(['empty', 'events', 'extra', 'metrics']);
    expect(await tmpInContainer()).toEqual([]); // the safety copies are gone once restored
  });

  it('fails verification of a truncated or corrupted archive, also when the manifest was rewritten to match', async () => {
    const file = path.join(dir, 'mainpc', backupId, 'influx.tar');
    const bytes = await readFile(file);
    const verify = async (name: string) => run<{ status: string; hosts: { problems: string[] }[] }>('verifyBackup', `influx-verify-${name}-${pid}`, [{ id: backupId, backups: plan }]);

    await truncate(file, Math.floor(bytes.length / 2));
    let result = await verify('truncated');
    expect(result.status).toBe('failed');
    expect(result.hosts[0]!.problems).toEqual([expect.stringMatching(/^influx: influx\.tar has \d+ bytes but the manifest recorded \d+: the file was truncated/)]);
    expect((await readManifest()).status).toBe('failed');

    const flipped = Buffer.from(bytes);
    flipped[Math.floor(flipped.length / 3)]! ^= 0xff;
    await writeFile(file, flipped);
    result = await verify('corrupted');
    expect(result.hosts[0]!.problems).toEqual([expect.stringMatching(/^influx: influx\.tar has sha256 .* but the manifest recorded .*: the file was corrupted/)]);

    // The manifest's size and sha256 rewritten to match a damaged archive: only unpacking and the
    // scratch restore can tell. (1) truncated: the tar itself is cut short.
    const text = await readFile(manifestPath(), 'utf8');
    const rewriteManifestFor = async (damaged: Buffer) => {
      const manifest = JSON.parse(text) as Manifest;
      manifest.components[0]!.bytes = damaged.length;
      manifest.components[0]!.sha256 = createHash('sha256').update(damaged).digest('hex');
      await writeFile(file, damaged);
      await writeFile(manifestPath(), JSON.stringify(manifest));
    };
    await rewriteManifestFor(bytes.subarray(0, Math.floor(bytes.length * 0.6 / 512) * 512 + 100)); // mid-block: never a clean end
    result = await verify('rewritten-truncated');
    expect(result.status).toBe('failed');
    expect(result.hosts[0]!.problems).toEqual([expect.stringMatching(/^influx: influx\.tar cannot be unpacked in .*: .*unexpected EOF/)]);
    expect((await readManifest()).status).toBe('failed');

    // (2) every shard file of "metrics" swapped for an empty one (a valid gzip of an empty tar), in a
    // valid archive: influxd restore exits 0 having restored no data (measured with 1.6.7), so only
    // the count comparison can tell.
    const metrics = (JSON.parse(text) as Manifest).components[0]!.influx!.databases.find((d) => d.name === 'metrics')!;
    const unpacked = await mkdtemp(path.join(os.tmpdir(), `migrate-influx-damage-${pid}-`));
    try {
      await execFileAsync('tar', ['-C', unpacked, '-xf', '-'], bytes);
      const top = `migrate-backup-${backupId}`;
      const shards = (await readdir(path.join(unpacked, top, metrics.folder))).filter((f) => /\.s\d+\.tar\.gz$/.test(f));
      expect(shards.length).toBeGreaterThan(0);
      for (const f of shards) await writeFile(path.join(unpacked, top, metrics.folder, f), gzipSync(Buffer.alloc(1024)));
      await rewriteManifestFor(await execFileAsync('tar', ['-C', unpacked, '-cf', '-', top]));
    } finally {
      await rm(unpacked, { recursive: true, force: true });
    }
    result = await verify('rewritten-shard');
    expect(result.status).toBe('failed');
    expect(result.hosts[0]!.problems).toEqual(['influx: the restored copy of database "metrics" differs from the backup: autogen/cpu is missing; autogen/mem is missing']);
    expect(await databases()).toEqual(['empty', 'events', 'extra', 'metrics']); // scratch databases dropped after a failure too
    expect(await tmpInContainer()).toEqual([]);

    // A failed backup is not restored.
    await expect(run('restoreBackup', `influx-restore-failed-${pid}`, [{ id: backupId, backups: plan }])).rejects.toThrow();
  });

  it('never writes the password into a workflow history, a manifest or a result', async () => {
    expect(workflowIds.length).toBeGreaterThanOrEqual(6);
    for (const id of workflowIds) {
      const json = await historyText(world.client, id);
      expect(json).toContain(secretVar);
      expect(json).not.toContain(secret);
    }
  });
});
