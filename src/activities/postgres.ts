/**
 * PostgreSQL: take a custom-format dump, prove it restorable, restore it.
 *
 * - dump: `pg_dump -Fc` (on this host over tcp, or inside the database's container via docker
 *   exec), streamed to the backup folder. Over tcp the dump reads a snapshot exported by a
 *   REPEATABLE READ transaction that stays open, and the per-table row counts and checksums are
 *   read from that same snapshot: the manifest describes exactly what the dump holds.
 * - verify: the file's sha256, `pg_restore --list`, then a full restore into a scratch database
 *   whose tables' row counts and checksums must equal the manifest's; the scratch database is dropped.
 * - restore: `pg_restore --clean --if-exists` into the original (or a target) database, then the
 *   same comparison.
 * - freeze / thaw (failback's write freeze): `default_transaction_read_only = on` for the whole
 *   server (ALTER SYSTEM, reloaded), then every other client session ended, so none keeps a writable
 *   transaction; new sessions start read-only and their writes fail with an error. Our own sessions
 *   (the scratch database of a verify, the thaw) set it off for themselves (PGOPTIONS). It is a
 *   default, not a lock: a client that sets `default_transaction_read_only = off` itself, or begins
 *   READ WRITE, still writes.
 */
import { mkdir, rename, rm } from 'node:fs/promises';
import { createHash, randomUUID } from 'node:crypto';
import pg from 'pg';
import { ApplicationFailure } from '@temporalio/common';
import { log } from '@temporalio/activity';
import type { BackupComponent } from '../plan/backups.js';
import type { HostContext } from './context.js';
import { backupFolder, checkFile, sha256File, storeFile, type ComponentEntry, type ComponentVerification, type TableStats } from './backup-store.js';
import { activityBeat, activitySignal, openToolSession, runTool, withHeartbeat } from './exec.js';
import { readSecret } from './secrets.js';

export interface PostgresRequest {
  directory?: string;
  backupId: string;
  component: BackupComponent;
}

const TABLES_SQL = `SELECT quote_ident(schemaname) || '.' || quote_ident(tablename) FROM pg_tables
  WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1`;
/** Order-independent: count and the sum of a 64-bit hash of every row's text. */
const statsSql = (table: string) => `SELECT count(*)::text, coalesce(sum(hashtextextended(t::text, 0)::numeric), 0)::text FROM ${table} t`;

/** A database name safe to create: derived from the backup id, at most 63 bytes. */
export function scratchDatabase(backupId: string, component: string): string {
  return `migrate_verify_${createHash('sha256').update(`${backupId}/${component}`).digest('hex').slice(0, 16)}`;
}

type Query = (database: string, sql: string) => Promise<string[][]>;

/** A session of our own that writes even while the server is frozen (default_transaction_read_only = on). */
const WRITABLE = '-c default_transaction_read_only=off';

export function createPostgresActivities(ctx: HostContext) {

  async function connect(c: BackupComponent, database: string, writable = false): Promise<pg.Client> {
    const client = new pg.Client({ host: c.address, port: c.port, user: c.user, database, password: await readSecret(c.password, `backups ${c.name}.password`), ...(writable ? { options: WRITABLE } : {}) });
    await client.connect().catch((err: Error) => {
      throw new Error(`cannot connect to PostgreSQL ${c.name} at ${c.address}:${c.port}/${database} as ${c.user}: ${err.message}`);
    });
    return client;
  }

  /** Runs SQL over tcp (pg) or through psql inside the container. Rows as text. */
  function query(c: BackupComponent, writable = false): Query {
    if (c.via === 'tcp') {
      return async (database, sql) => {
        const client = await connect(c, database, writable);
        try {
          const res = await client.query({ text: sql, rowMode: 'array' });
          return res.rows.map((r: unknown[]) => r.map((v) => (v === null ? '' : String(v))));
        } finally {
          await client.end();
        }
      };
    }
    return async (database, sql) => {
      const res = await runTool(ctx.docker, c.container, ['psql', '-X', '-v', 'ON_ERROR_STOP=1', '-U', c.user!, '-d', database, '-tA', '-F', '\t', '-c', sql], { env: await toolEnv(c, writable), signal: activitySignal() });
      if (res.code !== 0) throw new Error(`psql in ${c.container} failed: ${res.stderr.trim()}`);
      return res.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
    };
  }

  async function toolEnv(c: BackupComponent, writable = false): Promise<Record<string, string | undefined>> {
    return { PGPASSWORD: await readSecret(c.password, `backups ${c.name}.password`), PGCONNECT_TIMEOUT: '10', ...(writable ? { PGOPTIONS: WRITABLE } : {}) };
  }

  /** argv for a tool: connection flags over tcp; inside the container the local socket. */
  function connArgs(c: BackupComponent, database: string): string[] {
    return c.via === 'tcp' ? ['-h', c.address, '-p', String(c.port), '-U', c.user!, '-d', database] : ['-U', c.user!, '-d', database];
  }

  /**
   * A REPEATABLE READ READ ONLY transaction that stays open, its snapshot exported for pg_dump
   * --snapshot, and queries in it: over tcp a pg connection; inside the container a psql kept
   * running with its stdin open (each -c would be a new session, and a new snapshot).
   */
  async function holdSnapshot(c: BackupComponent): Promise<{ snapshot: string; query(sql: string): Promise<string[][]>; release(): Promise<void> }> {
    const begin = 'BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY';
    if (c.via === 'tcp') {
      const client = await connect(c, c.database!);
      await client.query(begin);
      const res = await client.query<{ s: string }>('SELECT pg_export_snapshot() AS s');
      return {
        snapshot: res.rows[0]!.s,
        query: async (sql) => (await client.query({ text: sql, rowMode: 'array' })).rows.map((r: unknown[]) => r.map(String)),
        release: async () => {
          await client.query('COMMIT').catch(() => undefined);
          await client.end();
        },
      };
    }
    const session = await openToolSession(ctx.docker, c.container!, ['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-tA', '-F', '\t', ...connArgs(c, c.database!)], { env: await toolEnv(c), signal: activitySignal() });
    const marker = `migrate-done-${randomUUID()}`;
    const query = async (sql: string) => (await session.ask(`${sql};\n\\echo ${marker}\n`, marker)).map((l) => l.split('\t'));
    const release = async () => {
      const res = await session.close('COMMIT;\n');
      if (res.code !== 0) log.warn('psql holding the snapshot exited with an error', { container: c.container, code: res.code, stderr: res.stderr.trim() });
    };
    try {
      await query(begin);
      const [[snapshot]] = (await query('SELECT pg_export_snapshot()')) as [[string]];
      return { snapshot, query, release };
    } catch (err) {
      await release();
      throw new Error(`cannot open a snapshot with psql in ${c.container}: ${(err as Error).message}`);
    }
  }

  async function tableStats(run: (sql: string) => Promise<string[][]>): Promise<Record<string, TableStats>> {
    const out: Record<string, TableStats> = {};
    for (const [table] of await run(TABLES_SQL)) {
      const [[rows, sum]] = (await run(statsSql(table!))) as [[string, string]];
      out[table!] = { rows: Number(rows), checksum: sum };
      activityBeat({ table });
    }
    return out;
  }

  function compareTables(expected: Record<string, TableStats> | undefined, got: Record<string, TableStats>): string | undefined {
    if (!expected) return undefined;
    const diffs: string[] = [];
    for (const [t, e] of Object.entries(expected)) {
      const g = got[t];
      if (!g) diffs.push(`table ${t} is missing`);
      else if (g.rows !== e.rows) diffs.push(`table ${t} has ${g.rows} rows, the backup recorded ${e.rows}`);
      else if (g.checksum !== e.checksum) diffs.push(`table ${t} has the recorded ${e.rows} rows but different contents (checksum)`);
    }
    return diffs.length ? diffs.join('; ') : undefined;
  }

  async function pgRestore(c: BackupComponent, file: string, args: string[], writable = false): Promise<{ code: number; stderr: string; stdout: string }> {
    // Inside a container the dump arrives on stdin; on this host pg_restore reads the file.
    const local = c.via === 'tcp';
    return withHeartbeat(activityBeat, runTool(ctx.docker, c.container, ['pg_restore', ...args, ...(local ? [file] : [])], { env: await toolEnv(c, writable), stdinFile: local ? undefined : file, signal: activitySignal() }));
  }

  return {
    /** Dump one database into the backup's folder. `stats: false` skips the table statistics (the bench's "dump only"). */
    async dumpPostgres(req: PostgresRequest & { stats?: boolean }): Promise<ComponentEntry> {
      const c = req.component;
      const folder = backupFolder(ctx, req.directory, req.backupId);
      await mkdir(folder, { recursive: true });
      const fileName = `${c.name}.dump`;
      const file = storeFile(folder, fileName);
      const partial = `${file}.partial`;
      const env = await toolEnv(c);
      log.info('pg_dump starting', { backupId: req.backupId, component: c.name, via: c.via, database: c.database });
      // The dump and the table statistics read one snapshot, held open by a transaction.
      const held = await holdSnapshot(c);
      try {
        const t0 = Date.now();
        const res = await withHeartbeat(activityBeat, runTool(ctx.docker, c.container, ['pg_dump', '-Fc', `--snapshot=${held.snapshot}`, ...connArgs(c, c.database!)], { env, stdoutFile: partial, signal: activitySignal() }));
        if (res.code !== 0) {
          await rm(partial, { force: true });
          throw ApplicationFailure.retryable(`pg_dump of ${c.name} (${c.database}) failed with exit code ${res.code}: ${res.stderr.trim()}`, 'DumpFailed');
        }
        const dumpMs = Date.now() - t0;
        const t1 = Date.now();
        const tables = req.stats !== false ? await tableStats(held.query) : undefined;
        await rename(partial, file);
        const { sha256, bytes } = res.sha256 !== undefined ? { sha256: res.sha256, bytes: res.bytes! } : await sha256File(file);
        log.info('pg_dump done', { backupId: req.backupId, component: c.name, bytes, dumpMs });
        return { name: c.name, kind: 'postgres', host: ctx.host, file: fileName, bytes, sha256, tables, dumpMs, statsMs: tables ? Date.now() - t1 : undefined };
      } finally {
        await held.release();
      }
    },

    /** Prove the dump restorable: checksum, table of contents, full restore into a scratch database. */
    async verifyPostgres(req: PostgresRequest & { entry: ComponentEntry }): Promise<ComponentVerification> {
      const c = req.component;
      const t0 = Date.now();
      const folder = backupFolder(ctx, req.directory, req.backupId);
      const file = storeFile(folder, req.entry.file);
      const fail = (detail: string): ComponentVerification => ({ name: c.name, ok: false, detail, ms: Date.now() - t0 });
      const fileProblem = await checkFile(folder, req.entry);
      if (fileProblem) return fail(fileProblem);
      const list = await pgRestore(c, file, ['--list']);
      if (list.code !== 0) return fail(`pg_restore --list cannot read ${req.entry.file}: ${list.stderr.trim()}`);
      const scratch = scratchDatabase(req.backupId, c.name);
      // The scratch database is ours: it is written even while the server is frozen (failback).
      const sql = query(c, true);
      await sql(c.database!, `DROP DATABASE IF EXISTS ${scratch}`);
      await sql(c.database!, `CREATE DATABASE ${scratch}`);
      try {
        const restored = await pgRestore(c, file, ['--no-owner', '--no-privileges', '--exit-on-error', ...connArgs(c, scratch)], true);
        if (restored.code !== 0) return fail(`restoring ${req.entry.file} into a scratch database failed: ${restored.stderr.trim()}`);
        const got = await tableStats((q) => sql(scratch, q));
        const diff = compareTables(req.entry.tables, got);
        if (diff) return fail(`the restored copy differs from the backup: ${diff}`);
        return { name: c.name, ok: true, detail: `restored into a scratch database: ${Object.keys(got).length} tables, ${Object.values(got).reduce((n, t) => n + t.rows, 0)} rows, counts and checksums match`, ms: Date.now() - t0 };
      } finally {
        await sql(c.database!, `DROP DATABASE IF EXISTS ${scratch} WITH (FORCE)`).catch((err: Error) => log.warn('scratch database not dropped', { scratch, error: err.message }));
      }
    },

    /** Restore the dump into the component's database (or `targetDatabase`), then compare with the manifest. */
    /**
     * `liftFreeze` (failover): a server whose data still says `default_transaction_read_only = on`
     * through ALTER SYSTEM (a failback's freeze, kept in a volume the failed-back copy left behind)
     * gets it reset, so the moved unit serves writes. The restore's own sessions write either way.
     */
    async restorePostgres(req: PostgresRequest & { entry: ComponentEntry; targetDatabase?: string; liftFreeze?: boolean }): Promise<ComponentVerification> {
      const c = req.component;
      const t0 = Date.now();
      const folder = backupFolder(ctx, req.directory, req.backupId);
      const fileProblem = await checkFile(folder, req.entry);
      if (fileProblem) throw ApplicationFailure.nonRetryable(`refusing to restore ${c.name}: ${fileProblem}`, 'BackupCorrupt');
      const target = req.targetDatabase ?? c.database!;
      if (!/^[A-Za-z_][A-Za-z0-9_]{0,62}$/.test(target)) throw ApplicationFailure.nonRetryable(`"${target}" is not a database name`, 'InvalidTarget');
      const sql = query(c, true);
      let lifted = '';
      if (req.liftFreeze) {
        // What ALTER SYSTEM wrote (this session's own value is off: PGOPTIONS).
        const set = await sql(c.database!, "SELECT setting FROM pg_file_settings WHERE name = 'default_transaction_read_only' AND sourcefile LIKE '%postgresql.auto.conf'");
        if (set.some(([v]) => v === 'on')) {
          await sql(c.database!, 'ALTER SYSTEM RESET default_transaction_read_only');
          await sql(c.database!, 'SELECT pg_reload_conf()');
          lifted = '; a write freeze left in its data (ALTER SYSTEM default_transaction_read_only) was lifted';
          log.warn('a write freeze left in the data was lifted', { component: c.name, container: c.container });
        }
      }
      const exists = await sql(c.database!, `SELECT 1 FROM pg_database WHERE datname = '${target}'`);
      if (exists.length === 0) await sql(c.database!, `CREATE DATABASE ${target}`);
      log.info('pg_restore starting', { backupId: req.backupId, component: c.name, target });
      const res = await pgRestore(c, storeFile(folder, req.entry.file), ['--clean', '--if-exists', '--no-owner', '--no-privileges', '--single-transaction', '--exit-on-error', ...connArgs(c, target)], true);
      if (res.code !== 0) throw ApplicationFailure.nonRetryable(`pg_restore of ${c.name} into ${target} failed: ${res.stderr.trim()}`, 'RestoreFailed');
      const got = await tableStats((q) => sql(target, q));
      const diff = compareTables(req.entry.tables, got);
      log.info('pg_restore done', { backupId: req.backupId, component: c.name, target, matches: !diff });
      return { name: c.name, ok: !diff, detail: (diff ?? `restored into ${target}: ${Object.keys(got).length} tables, counts and checksums match the backup`) + lifted, ms: Date.now() - t0 };
    },

    /**
     * Freeze writes (failback): the server's default_transaction_read_only on, reloaded; once a new
     * session reads it, every other client session is ended and waited for, so no writable
     * transaction is left. Idempotent: a second call finds it on and ends whatever connected since.
     * Returns how many sessions it ended.
     */
    async freezePostgres(c: BackupComponent): Promise<{ ended: number }> {
      const own = query(c, true);
      await own(c.database!, 'ALTER SYSTEM SET default_transaction_read_only = on').catch((err: Error) => {
        if (/permission denied|must be superuser/i.test(err.message)) throw ApplicationFailure.nonRetryable(`PostgreSQL ${c.name}: ${c.user} cannot freeze writes (ALTER SYSTEM needs a superuser, or GRANT ALTER SYSTEM ON PARAMETER default_transaction_read_only): ${err.message}`, 'FreezeFailed');
        throw err;
      });
      await own(c.database!, 'SELECT pg_reload_conf()');
      // The postmaster reloads on its own time: a new session reads the new default once it has.
      const plain = query(c);
      const deadline = Date.now() + 30_000;
      for (;;) {
        const [[value]] = (await plain(c.database!, 'SHOW default_transaction_read_only')) as [[string]];
        if (value === 'on') break;
        if (Date.now() > deadline) throw ApplicationFailure.retryable(`PostgreSQL ${c.name}: default_transaction_read_only still reads ${value} 30 s after the reload`, 'FreezeFailed');
        activityBeat();
        await new Promise((r) => setTimeout(r, 100));
      }
      const others = `SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()`;
      const pids = (await own(c.database!, `SELECT pid, pg_terminate_backend(pid) FROM (${others}) s`)).map(([pid]) => pid!);
      // pg_terminate_backend only signals: wait until each ended session is gone (its transaction rolled back).
      while (pids.length > 0) {
        const left = await own(c.database!, `SELECT pid FROM pg_stat_activity WHERE pid IN (${pids.map(Number).join(',')})`);
        if (left.length === 0) break;
        if (Date.now() > deadline) throw ApplicationFailure.retryable(`PostgreSQL ${c.name}: sessions ${left.map(([p]) => p).join(', ')} did not end after pg_terminate_backend`, 'FreezeFailed');
        activityBeat();
        await new Promise((r) => setTimeout(r, 100));
      }
      log.info('postgres writes frozen', { component: c.name, container: c.container, ended: pids.length });
      return { ended: pids.length };
    },

    /** Lift the freeze: default_transaction_read_only back to the server's default, reloaded. Idempotent. */
    async thawPostgres(c: BackupComponent): Promise<void> {
      const own = query(c, true);
      await own(c.database!, 'ALTER SYSTEM RESET default_transaction_read_only');
      await own(c.database!, 'SELECT pg_reload_conf()');
      log.info('postgres writes thawed', { component: c.name, container: c.container });
    },
  };
}
