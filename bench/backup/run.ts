/**
 * Bench: our PostgreSQL backup activity (dump only) against bare `pg_dump -Fc`, in the same run,
 * on a database of about --mb megabytes; then the time a full verification takes.
 *
 *   npx tsx bench/backup/run.ts --mb 1024 [--rounds 2] [--host 127.0.0.1] [--port 5432] [--user postgres]
 *
 * Needs a PostgreSQL where --user may CREATE DATABASE. The database is dropped at the end.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import Dockerode from 'dockerode';
import pg from 'pg';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import type { ComponentEntry, ComponentVerification } from '../../src/activities/backup-store.js';
import { createPostgresActivities } from '../../src/activities/postgres.js';
import type { HostContext } from '../../src/activities/context.js';
import type { BackupComponent } from '../../src/plan/backups.js';
import { hostSchema } from '../../src/inventory/schema.js';

const { values } = parseArgs({ options: {
  mb: { type: 'string', default: '1024' },
  rounds: { type: 'string', default: '2' },
  host: { type: 'string', default: '127.0.0.1' },
  port: { type: 'string', default: '5432' },
  user: { type: 'string', default: 'postgres' },
} });
const mb = Number(values.mb);
const rounds = Number(values.rounds);
const database = `migrate_bench_${process.pid}`;
const conn = { host: values.host, port: Number(values.port), user: values.user };

async function sql(db: string, text: string): Promise<pg.QueryResult> {
  const c = new pg.Client({ ...conn, database: db });
  await c.connect();
  try {
    return await c.query(text);
  } finally {
    await c.end();
  }
}

function run(argv: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['ignore', 'ignore', 'inherit'] });
    child.once('error', reject);
    child.once('close', (code) => (code === 0 ? resolve() : reject(new Error(`${argv[0]} exited ${code}`))));
  });
}

async function timed<T>(fn: () => Promise<T>): Promise<[number, T]> {
  const t0 = performance.now();
  const v = await fn();
  return [(performance.now() - t0) / 1000, v];
}

const work = await mkdtemp(path.join(os.tmpdir(), 'migrate-bench-'));
try {
  // About 150 bytes a row on disk with its index (measured: 370 MB for 2.44 M rows).
  const rows = Math.round((mb * 1e6) / 150);
  process.stdout.write(`building ${database}: ${rows} rows (~${mb} MB)…\n`);
  await sql('postgres', `CREATE DATABASE ${database}`);
  const [buildS] = await timed(async () => {
    await sql(database, `CREATE TABLE readings (id bigint PRIMARY KEY, sensor text, value double precision, at timestamptz)`);
    await sql(database, `INSERT INTO readings SELECT g, md5(g::text) || md5((g * 7)::text), random(), now() - g * interval '1 second' FROM generate_series(1, ${rows}) g`);
    await sql(database, 'VACUUM ANALYZE readings');
  });
  const size = Number((await sql(database, `SELECT pg_database_size('${database}') AS s`)).rows[0].s);
  process.stdout.write(`built in ${buildS.toFixed(1)} s: ${(size / 1e6).toFixed(0)} MB on disk\n`);

  const ctx: HostContext = { host: 'bench', spec: hostSchema.parse({}), project: 'bench', docker: new Dockerode(), identity: 'bench', dataDir: work };
  const acts = createPostgresActivities(ctx);
  const component: BackupComponent = { name: 'pg', kind: 'postgres', host: 'bench', via: 'tcp', address: conn.host, port: conn.port, database, user: conn.user };
  const env = new MockActivityEnvironment(undefined, { logger: new DefaultLogger('WARN') });

  const bare: number[] = [];
  const ours: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const file = path.join(work, `bare-${r}.dump`);
    const [b] = await timed(() => run(['pg_dump', '-Fc', '-h', conn.host, '-p', String(conn.port), '-U', conn.user, '-d', database, '-f', file]));
    bare.push(b);
    const bareBytes = (await stat(file)).size;
    await rm(file);
    const [o, entry] = await timed(() => env.run(acts.dumpPostgres, { directory: work, backupId: `bench-${r}`, component, stats: false }) as Promise<ComponentEntry>);
    ours.push(o);
    process.stdout.write(`round ${r + 1}: pg_dump -Fc ${b.toFixed(2)} s (${(bareBytes / 1e6).toFixed(0)} MB), dumpPostgres ${o.toFixed(2)} s (${(entry.bytes / 1e6).toFixed(0)} MB, incl. sha256)\n`);
    await rm(path.join(work, 'bench', `bench-${r}`), { recursive: true, force: true });
  }
  const best = (xs: number[]) => Math.min(...xs);
  const ratio = best(ours) / best(bare);
  process.stdout.write(`dump only: ours ${best(ours).toFixed(2)} s vs pg_dump ${best(bare).toFixed(2)} s → ratio ${ratio.toFixed(3)}× (target ≤ 1.05×)\n`);

  // A full backup (dump + table statistics in the same snapshot), then a full verification.
  const [fullS, entry] = await timed(() => env.run(acts.dumpPostgres, { directory: work, backupId: 'bench-full', component }) as Promise<ComponentEntry>);
  process.stdout.write(`full backup (dump ${((entry.dumpMs ?? 0) / 1000).toFixed(2)} s + table statistics ${((entry.statsMs ?? 0) / 1000).toFixed(2)} s): ${fullS.toFixed(2)} s\n`);
  const [verifyS, verdict] = await timed(() => env.run(acts.verifyPostgres, { directory: work, backupId: 'bench-full', component, entry }) as Promise<ComponentVerification>);
  process.stdout.write(`full verification (sha256, pg_restore --list, restore into scratch db, counts + checksums): ${verifyS.toFixed(2)} s — ${verdict.ok ? 'ok' : 'FAILED'}: ${verdict.detail}\n`);
  process.stdout.write(`${JSON.stringify({ mb, sizeBytes: size, rows, bareS: bare, oursS: ours, ratio, fullBackupS: fullS, verifyS, verified: verdict.ok })}\n`);
} finally {
  await sql('postgres', `DROP DATABASE IF EXISTS ${database} WITH (FORCE)`).catch(() => undefined);
  await rm(work, { recursive: true, force: true });
}
