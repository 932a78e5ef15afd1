/**
 * InfluxDB, inside its container (docker exec), one archive per component (`<name>.tar`, the
 * backup's folder copied out with the Docker API's getArchive).
 *
 * InfluxDB 1.x (`version: 1`), exercised end to end by test/integration/backup-influx.test.ts
 * against Debian's influxd 1.6.7 in a FROM scratch container:
 * - backup: the declared databases (default: every one but _internal). For each, its points are
 *   counted per retention policy, measurement and field (`SELECT count(*) … WHERE time <= T`, T
 *   taken just before), then `influxd backup -portable -db X` writes its own folder. The counts go
 *   into the manifest entry. A point stamped <= T that is written between the count and the backup
 *   (a late writer) makes the backup hold more than was counted, and its verification fail.
 * - verify: the file's sha256 and size; then the archive is unpacked in the container and every
 *   database restored into a scratch database on the live server (`influxd restore -portable -db X
 *   -newdb migrate_verify_…`), counted the same way and compared with the manifest; the scratch
 *   databases are dropped whatever happens. The counts matter: influxd 1.6.7 restore exits 0 for a
 *   shard file that holds an empty archive, and for some damaged ones (16 random bytes in the
 *   middle of a shard file: 21 of 25 trials failed the restore, 3 exited 0 having restored no data,
 *   1 exited 0 with every count intact). Damage that leaves the counts intact (altered values) is
 *   caught only by the sha256 recorded at backup time.
 * - restore: first every database of the backup is restored into a scratch database and counted,
 *   as verify does: a backup that would not restore as recorded is refused with nothing changed.
 *   (A safety copy is not an exact "as it was": seen here with influxd 1.6.7, its backup/restore
 *   round trip brought back points deleted and a measurement dropped after the data was written.)
 *   Then, since
 *   1.x restores only into a database that does not exist, each database is dropped and
 *   restored. First a safety copy of every database that exists is taken in the container
 *   (`influxd backup -portable` into /tmp/migrate-before-restore-<id>/N, renamed there only when
 *   complete). If any drop, restore or count check fails, every database touched is dropped and
 *   restored from its safety copy (or, if it did not exist before, just dropped), and the activity
 *   fails with RestoreFailed: the component ends restored entirely or as it was. The safety copies
 *   are deleted once the restore (or the roll back) succeeded; a retried attempt reuses them, so
 *   the data as it was before the first attempt is what a roll back puts back. If the roll back
 *   itself fails, they are kept and the error names them. Databases created after the backup are
 *   left alone.
 * Tested there (influxd 1.6.7 with auth-enabled, three databases: two with data in two retention
 * policies, one empty): backup of every database → verified, scratch databases dropped; the data
 * changed → restore → identical values and timestamps, a database dropped since is back, one created
 * since is left alone; a restore whose counts differ from the manifest → refused with every database
 * as it was; a truncated or corrupted archive fails verification (sha256), and so do a truncated tar
 * and an emptied shard whose manifest was rewritten to match (the unpack, the count check); the
 * password never reaches a history. Not tested: a declared `databases:` list, non-default ports, a
 * roll back that fails, a database that did not exist before the restore being rolled back, a
 * retried restore reusing the safety copies, servers without busybox/coreutils (rm, mkdir, mv, test).
 *
 * InfluxDB 2.x (`version: 2`, the default: the seed's influxdb:2.7-alpine): `influx backup` inside
 * the container, `influx restore --full` from it, authenticated by the operator token. NOT exercised
 * by any test: InfluxDB 2 cannot be installed on this machine (Debian packages 1.6.7 only), so none
 * of it has ever run. Its verification checks the file and that the archive holds a backup manifest;
 * it does not restore into a scratch instance.
 */
import { createWriteStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { mkdir, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { ApplicationFailure } from '@temporalio/common';
import { log } from '@temporalio/activity';
import type { BackupComponent } from '../plan/backups.js';
import type { HostContext } from './context.js';
import {
  backupFolder, checkFile, sha256File, storeFile,
  type ComponentEntry, type ComponentVerification, type InfluxDatabaseStats, type InfluxSeriesCount,
} from './backup-store.js';
import { activityBeat, activitySignal, runTool, type ToolResult, withHeartbeat } from './exec.js';
import { readSecret } from './secrets.js';

export interface InfluxRequest {
  directory?: string;
  backupId: string;
  component: BackupComponent;
}

type Entry = InfluxRequest & { entry: ComponentEntry };

// ---------------------------------------------------------------------------------------------
// InfluxQL results and counts (pure: unit-tested in test/unit/influx-counts.test.ts)

/** An InfluxQL identifier, double-quoted with `\` and `"` escaped. */
export function quoteIdent(name: string): string {
  return `"${name.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
}

interface InfluxSeries {
  name?: string;
  columns: string[];
  values?: unknown[][];
}

interface InfluxResponse {
  error?: string;
  results?: { error?: string; series?: InfluxSeries[] }[];
}

/** The JSON document `influx -format json -execute` printed; undefined if none. */
export function parseInfluxOutput(stdout: string): InfluxResponse | undefined {
  for (const line of stdout.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      return JSON.parse(line) as InfluxResponse;
    } catch { /* next line */ }
  }
  return undefined;
}

/** The series of a `SELECT count(*) FROM "db"."rp"./.*\/` response: per measurement, field → count (nulls are absent fields). */
export function seriesCounts(rp: string, response: InfluxResponse): InfluxSeriesCount[] {
  const out: InfluxSeriesCount[] = [];
  for (const series of (response.results ?? []).flatMap((r) => r.series ?? [])) {
    const row = series.values?.[0] ?? [];
    const fields: Record<string, number> = {};
    series.columns.forEach((column, i) => {
      if (column.startsWith('count_') && row[i] !== null && row[i] !== undefined) fields[column.slice('count_'.length)] = Number(row[i]);
    });
    out.push({ rp, measurement: series.name ?? '', fields });
  }
  return out;
}

function sortSeries(series: InfluxSeriesCount[]): InfluxSeriesCount[] {
  return [...series].sort((a, b) => a.rp.localeCompare(b.rp) || a.measurement.localeCompare(b.measurement));
}

/** Where `got` differs from `expected`, as a sentence (the first few differences); undefined when equal. */
export function compareCounts(expected: InfluxSeriesCount[], got: InfluxSeriesCount[]): string | undefined {
  const key = (s: InfluxSeriesCount) => `${s.rp}/${s.measurement}`;
  const want = new Map(expected.map((s) => [key(s), s.fields]));
  const have = new Map(got.map((s) => [key(s), s.fields]));
  const diffs: string[] = [];
  for (const [k, fields] of want) {
    const other = have.get(k);
    if (!other) {
      diffs.push(`${k} is missing`);
      continue;
    }
    for (const f of new Set([...Object.keys(fields), ...Object.keys(other)])) {
      if ((fields[f] ?? 0) !== (other[f] ?? 0)) diffs.push(`${k} field ${f} has ${other[f] ?? 0} values, the backup recorded ${fields[f] ?? 0}`);
    }
  }
  for (const k of have.keys()) if (!want.has(k)) diffs.push(`${k} was not in the backup`);
  if (diffs.length === 0) return undefined;
  return diffs.slice(0, 3).join('; ') + (diffs.length > 3 ? ` (and ${diffs.length - 3} more)` : '');
}

function totalValues(databases: InfluxDatabaseStats[]): { measurements: number; values: number } {
  const series = databases.flatMap((d) => d.series);
  return { measurements: series.length, values: series.reduce((n, s) => n + Object.values(s.fields).reduce((a, b) => a + b, 0), 0) };
}

/** The last lines of a tool's output, for an error message. */
function tail(res: ToolResult): string {
  return `${res.stdout}\n${res.stderr}`.split('\n').map((l) => l.trim()).filter(Boolean).slice(-4).join(' / ');
}

// ---------------------------------------------------------------------------------------------

export function createInfluxActivities(ctx: HostContext) {
  const container = (c: BackupComponent) => ctx.docker.getContainer(c.container!);

  // --- InfluxDB 2.x ---------------------------------------------------------------------------

  const inContainer = async (c: BackupComponent, argv: string[]) => {
    const res = await runTool(ctx.docker, c.container, argv, { env: { INFLUX_TOKEN: await readSecret(c.password, `backups ${c.name}.token`) } });
    if (res.code !== 0) throw ApplicationFailure.retryable(`${argv.slice(0, 2).join(' ')} in ${c.container} failed: ${(res.stdout + res.stderr).trim()}`, 'InfluxFailed');
  };

  const v2 = {
    async backup(req: InfluxRequest): Promise<ComponentEntry> {
      const c = req.component;
      const folder = backupFolder(ctx, req.directory, req.backupId);
      await mkdir(folder, { recursive: true });
      const inside = `/tmp/migrate-backup-${req.backupId}`;
      const t0 = Date.now();
      await inContainer(c, ['rm', '-rf', inside]);
      await inContainer(c, ['influx', 'backup', inside]);
      const fileName = `${c.name}.tar`;
      const file = storeFile(folder, fileName);
      await pipeline(await container(c).getArchive({ path: inside }), createWriteStream(`${file}.partial`));
      await rename(`${file}.partial`, file);
      await inContainer(c, ['rm', '-rf', inside]);
      const { sha256, bytes } = await sha256File(file);
      log.info('influx backup copied', { backupId: req.backupId, component: c.name, bytes });
      return { name: c.name, kind: 'influxdb', host: ctx.host, file: fileName, bytes, sha256, dumpMs: Date.now() - t0 };
    },

    async verify(req: Entry): Promise<ComponentVerification> {
      const t0 = Date.now();
      const folder = backupFolder(ctx, req.directory, req.backupId);
      const problem = await checkFile(folder, req.entry);
      const tar = problem ? undefined : await readFile(storeFile(folder, req.entry.file));
      const hasManifest = tar?.includes(Buffer.from('.manifest')) ?? false;
      const detail = problem ?? (hasManifest ? 'archive intact and holds an influx backup manifest (not restored: no scratch instance)' : `${req.entry.file} holds no influx backup manifest`);
      return { name: req.component.name, ok: !problem && hasManifest, detail, ms: Date.now() - t0 };
    },

    async restore(req: Entry): Promise<ComponentVerification> {
      const c = req.component;
      const t0 = Date.now();
      const folder = backupFolder(ctx, req.directory, req.backupId);
      const problem = await checkFile(folder, req.entry);
      if (problem) throw ApplicationFailure.nonRetryable(`refusing to restore ${c.name}: ${problem}`, 'BackupCorrupt');
      const parent = `/tmp/migrate-restore-${req.backupId}`;
      await inContainer(c, ['mkdir', '-p', parent]);
      await container(c).putArchive(storeFile(folder, req.entry.file), { path: parent });
      await inContainer(c, ['influx', 'restore', '--full', path.posix.join(parent, `migrate-backup-${req.backupId}`)]);
      await inContainer(c, ['rm', '-rf', parent]);
      return { name: c.name, ok: true, detail: `influx restore --full from ${req.entry.file}`, ms: Date.now() - t0 };
    },
  };

  // --- InfluxDB 1.x ---------------------------------------------------------------------------

  /** A tool in the container; heartbeats while it runs. */
  async function tool(c: BackupComponent, argv: string[], env: Record<string, string | undefined> = {}): Promise<ToolResult> {
    return withHeartbeat(activityBeat, runTool(ctx.docker, c.container, argv, { env, signal: activitySignal() }));
  }

  /** A tool that must succeed (rm, mkdir, mv): a failure is worth retrying. */
  async function must(c: BackupComponent, argv: string[]): Promise<void> {
    const res = await tool(c, argv);
    if (res.code !== 0) throw ApplicationFailure.retryable(`${argv.join(' ')} in ${c.container} failed: ${tail(res)}`, 'InfluxFailed');
  }

  /** One InfluxQL statement through the container's `influx` CLI on the HTTP port. */
  async function influxql(c: BackupComponent, statement: string): Promise<InfluxResponse> {
    const env = { INFLUX_USERNAME: c.user, INFLUX_PASSWORD: await readSecret(c.password, `backups ${c.name}.password`) };
    const res = await tool(c, ['influx', '-host', c.address, '-port', String(c.port ?? 8086), '-format', 'json', '-execute', statement], env);
    const out = parseInfluxOutput(res.stdout);
    const error = out?.error ?? out?.results?.find((r) => r.error)?.error;
    if (res.code !== 0 || !out || error) throw ApplicationFailure.retryable(`influx -execute '${statement}' in ${c.container} failed: ${error ?? tail(res)}`, 'InfluxFailed');
    return out;
  }

  async function listDatabases(c: BackupComponent): Promise<string[]> {
    const out = await influxql(c, 'SHOW DATABASES');
    return (out.results ?? []).flatMap((r) => r.series ?? []).flatMap((s) => (s.values ?? []).map((v) => String(v[0])));
  }

  /** Every retention policy's points with time <= upTo, per measurement and field. */
  async function countPoints(c: BackupComponent, database: string, upTo: string): Promise<InfluxSeriesCount[]> {
    const policies = await influxql(c, `SHOW RETENTION POLICIES ON ${quoteIdent(database)}`);
    const rps = (policies.results ?? []).flatMap((r) => r.series ?? []).flatMap((s) => (s.values ?? []).map((v) => String(v[s.columns.indexOf('name')])));
    const out: InfluxSeriesCount[] = [];
    for (const rp of rps) {
      out.push(...seriesCounts(rp, await influxql(c, `SELECT count(*) FROM ${quoteIdent(database)}.${quoteIdent(rp)}./.*/ WHERE time <= '${upTo}'`)));
    }
    return sortSeries(out);
  }

  async function dropDatabase(c: BackupComponent, database: string): Promise<void> {
    await influxql(c, `DROP DATABASE ${quoteIdent(database)}`); // no error when it does not exist
  }

  const rpc = (c: BackupComponent) => `${c.address}:${c.rpcPort ?? 8088}`;

  /**
   * Restore every database of the backup (unpacked in `dir`) into a scratch database on the live
   * server and compare its counts with the manifest's; the scratch databases are dropped whatever
   * happens. Returns the first problem, or undefined when every database restores as recorded.
   */
  async function restoresIntact(c: BackupComponent, req: Entry, dir: string, purpose: 'verify' | 'check'): Promise<string | undefined> {
    const recorded = req.entry.influx!;
    const prefix = `migrate_${purpose}_${createHash('sha256').update(`${req.backupId}/${c.name}`).digest('hex').slice(0, 12)}`;
    const scratch = recorded.databases.map((_, i) => `${prefix}_${i}`);
    try {
      for (const [i, db] of recorded.databases.entries()) {
        await dropDatabase(c, scratch[i]!); // left by an earlier attempt
        const failed = await restoreDatabase(c, `${dir}/${db.folder}`, db.name, scratch[i]!);
        if (failed) return `restoring database "${db.name}" from ${req.entry.file} into a scratch database failed: ${failed}`;
        const diff = compareCounts(db.series, await countPoints(c, scratch[i]!, recorded.countedTo));
        if (diff) return `the restored copy of database "${db.name}" differs from the backup: ${diff}`;
      }
      return undefined;
    } finally {
      for (const db of scratch) await dropDatabase(c, db).catch((err: Error) => log.warn('scratch database not dropped', { database: db, error: err.message }));
    }
  }

  /**
   * `influxd restore -portable` of `from` (a database of the backup in `dir`) as `to`, which must not
   * exist. Returns the problem, or undefined. influxd 1.x restores a database that has no shards (no
   * data) and then reports "DB metadata not changed. database may already exist": accepted when `to`
   * did not exist before and does now.
   */
  async function restoreDatabase(c: BackupComponent, dir: string, from: string, to: string): Promise<string | undefined> {
    if ((await listDatabases(c)).includes(to)) return `database "${to}" already exists`;
    const res = await tool(c, ['influxd', 'restore', '-portable', '-host', rpc(c), '-db', from, ...(to === from ? [] : ['-newdb', to]), dir]);
    if (res.code === 0) return undefined;
    if (/DB metadata not changed/.test(res.stderr + res.stdout) && (await listDatabases(c)).includes(to)) return undefined;
    return tail(res);
  }

  async function backupDatabase(c: BackupComponent, database: string, dir: string): Promise<void> {
    const res = await tool(c, ['influxd', 'backup', '-portable', '-host', rpc(c), '-db', database, dir]);
    if (res.code !== 0) throw ApplicationFailure.retryable(`influxd backup -db ${database} in ${c.container} failed: ${tail(res)}`, 'InfluxFailed');
  }

  /** Copy the archive into the container and unpack it under `parent`; the backup's top folder, or a problem. */
  async function unpack(req: Entry, parent: string): Promise<{ dir?: string; problem?: string }> {
    const c = req.component;
    await must(c, ['rm', '-rf', parent]);
    await must(c, ['mkdir', '-p', parent]);
    const file = storeFile(backupFolder(ctx, req.directory, req.backupId), req.entry.file);
    try {
      await container(c).putArchive(file, { path: parent });
    } catch (err) {
      return { problem: `${req.entry.file} cannot be unpacked in ${c.container}: ${(err as Error).message.trim()}` };
    }
    return { dir: `${parent}/migrate-backup-${req.backupId}` };
  }

  const exists = async (c: BackupComponent, p: string) => (await tool(c, ['test', '-d', p])).code === 0;

  const v1 = {
    async backup(req: InfluxRequest): Promise<ComponentEntry> {
      const c = req.component;
      const folder = backupFolder(ctx, req.directory, req.backupId);
      await mkdir(folder, { recursive: true });
      const inside = `/tmp/migrate-backup-${req.backupId}`;
      const t0 = Date.now();
      const present = await listDatabases(c);
      const names = c.databases ?? present.filter((d) => d !== '_internal');
      const absent = names.filter((d) => !present.includes(d));
      if (absent.length > 0) throw ApplicationFailure.nonRetryable(`${c.name}: no database ${absent.map((d) => `"${d}"`).join(', ')} on ${c.container} (it has ${present.join(', ') || 'none'}): fix backups.influxdb databases`, 'InvalidTarget');
      if (names.length === 0) throw ApplicationFailure.nonRetryable(`${c.name}: ${c.container} has no database but _internal: nothing to back up`, 'InvalidTarget');

      await must(c, ['rm', '-rf', inside]);
      const countedTo = new Date().toISOString();
      const databases: InfluxDatabaseStats[] = [];
      let statsMs = 0;
      for (const [i, name] of names.entries()) {
        const s0 = Date.now();
        const series = await countPoints(c, name, countedTo);
        statsMs += Date.now() - s0;
        log.info('influxd backup starting', { backupId: req.backupId, component: c.name, database: name });
        await backupDatabase(c, name, `${inside}/${i}`);
        databases.push({ name, folder: String(i), series });
      }
      const fileName = `${c.name}.tar`;
      const file = storeFile(folder, fileName);
      await pipeline(await container(c).getArchive({ path: inside }), createWriteStream(`${file}.partial`));
      await rename(`${file}.partial`, file);
      await must(c, ['rm', '-rf', inside]);
      const { sha256, bytes } = await sha256File(file);
      log.info('influx backup copied', { backupId: req.backupId, component: c.name, databases: names, bytes });
      return { name: c.name, kind: 'influxdb', host: ctx.host, file: fileName, bytes, sha256, dumpMs: Date.now() - t0, statsMs, influx: { version: 1, countedTo, databases } };
    },

    async verify(req: Entry): Promise<ComponentVerification> {
      const c = req.component;
      const t0 = Date.now();
      const result = (ok: boolean, detail: string) => ({ name: c.name, ok, detail, ms: Date.now() - t0 });
      const problem = await checkFile(backupFolder(ctx, req.directory, req.backupId), req.entry);
      if (problem) return result(false, problem);
      const recorded = req.entry.influx;
      if (!recorded) return result(false, `the manifest records no InfluxDB 1.x databases for ${req.entry.file} (taken as version 2?): cannot verify it as version 1`);

      const parent = `/tmp/migrate-verify-${req.backupId}`;
      try {
        const { dir, problem: unpackProblem } = await unpack(req, parent);
        if (!dir) return result(false, unpackProblem!);
        const diff = await restoresIntact(c, req, dir, 'verify');
        if (diff) return result(false, diff);
        const { measurements, values } = totalValues(recorded.databases);
        return result(true, `restored ${recorded.databases.length} database(s) into scratch databases on ${c.container}: ${measurements} measurements, ${values} values, counts match the backup`);
      } finally {
        await must(c, ['rm', '-rf', parent]).catch((err: Error) => log.warn('unpacked archive not removed', { path: parent, error: err.message }));
      }
    },

    async restore(req: Entry): Promise<ComponentVerification> {
      const c = req.component;
      const t0 = Date.now();
      const problem = await checkFile(backupFolder(ctx, req.directory, req.backupId), req.entry);
      if (problem) throw ApplicationFailure.nonRetryable(`refusing to restore ${c.name}: ${problem}`, 'BackupCorrupt');
      const recorded = req.entry.influx;
      if (!recorded) throw ApplicationFailure.nonRetryable(`refusing to restore ${c.name} as InfluxDB 1.x: the manifest records no 1.x databases for ${req.entry.file}`, 'InvalidTarget');
      const work = `/tmp/migrate-restore-${req.backupId}`;
      const before = `/tmp/migrate-before-restore-${req.backupId}`;
      const names = recorded.databases.map((d) => d.name);
      try {
        const { dir, problem: unpackProblem } = await unpack(req, work);
        if (!dir) throw ApplicationFailure.nonRetryable(`not restored (nothing was changed): ${unpackProblem}`, 'RestoreFailed');

        // 0. Each database restored into a scratch database and counted first: a backup that would not
        // restore as recorded is refused before any live database is touched.
        const diff = await restoresIntact(c, req, dir, 'check');
        if (diff) throw ApplicationFailure.nonRetryable(`not restored (nothing was changed): ${diff}`, 'RestoreFailed');

        // 1. A safety copy of each database as it is now (an earlier attempt's copy is kept: it is older).
        const present = await listDatabases(c);
        const saved: boolean[] = [];
        for (const [i, name] of names.entries()) {
          const copy = `${before}/${i}`;
          if (await exists(c, copy)) saved.push(true);
          else if (!present.includes(name)) saved.push(false);
          else {
            await must(c, ['rm', '-rf', `${copy}.partial`]);
            await backupDatabase(c, name, `${copy}.partial`);
            await must(c, ['mv', `${copy}.partial`, copy]);
            saved.push(true);
          }
        }

        // 2. Replace each database with the backup's, and check its counts.
        const touched: number[] = [];
        try {
          for (const [i, db] of recorded.databases.entries()) {
            touched.push(i);
            log.info('influxd restore starting', { backupId: req.backupId, component: c.name, database: db.name });
            await dropDatabase(c, db.name);
            const failed = await restoreDatabase(c, `${dir}/${db.folder}`, db.name, db.name);
            if (failed) throw new Error(`influxd restore of database "${db.name}" failed: ${failed}`);
            const diff = compareCounts(db.series, await countPoints(c, db.name, recorded.countedTo));
            if (diff) throw new Error(`restored database "${db.name}" differs from the backup: ${diff}`);
          }
        } catch (err) {
          // 3. Put back every database touched, as it was.
          const undo: string[] = [];
          for (const i of touched.reverse()) {
            try {
              await dropDatabase(c, names[i]!);
              const failed = saved[i] ? await restoreDatabase(c, `${before}/${i}`, names[i]!, names[i]!) : undefined;
              if (failed) undo.push(`"${names[i]}": ${failed}`);
            } catch (e) {
              undo.push(`"${names[i]}": ${(e as Error).message}`);
            }
          }
          const why = (err as Error).message;
          if (undo.length > 0) {
            throw ApplicationFailure.nonRetryable(`restoring ${c.name} failed (${why}), and putting back ${undo.join('; ')} failed too: the databases as they were are kept in ${c.container}:${before}/N (N = ${names.map((n, i) => `${i} ${n}`).join(', ')}); restore one with influxd restore -portable -db NAME ${before}/N`, 'RestoreFailed');
          }
          await must(c, ['rm', '-rf', before]).catch(() => undefined);
          throw ApplicationFailure.nonRetryable(`restoring ${c.name} failed, and every database was put back as it was: ${why}`, 'RestoreFailed');
        }
        await must(c, ['rm', '-rf', before]);
        const { measurements, values } = totalValues(recorded.databases);
        log.info('influx restore done', { backupId: req.backupId, component: c.name, databases: names });
        return { name: c.name, ok: true, detail: `restored ${names.map((n) => `"${n}"`).join(', ')} in ${c.container}: ${measurements} measurements, ${values} values, counts match the backup`, ms: Date.now() - t0 };
      } finally {
        await must(c, ['rm', '-rf', work]).catch((err: Error) => log.warn('unpacked archive not removed', { path: work, error: err.message }));
      }
    },
  };

  const dialect = (c: BackupComponent) => (c.version === 1 ? v1 : v2);
  return {
    async backupInflux(req: InfluxRequest): Promise<ComponentEntry> {
      return dialect(req.component).backup(req);
    },
    async verifyInflux(req: Entry): Promise<ComponentVerification> {
      return dialect(req.component).verify(req);
    },
    async restoreInflux(req: Entry): Promise<ComponentVerification> {
      return dialect(req.component).restore(req);
    },
  };
}
