/**
 * The backup store: one folder per backup id under the host's backup directory, holding the
 * components' files and a manifest.json. Files and manifest are created and removed together
 * (the folder is the unit), and a manifest is replaced atomically (write + rename).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { copyFile, lstat, mkdir, readdir, readFile, realpath, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { log } from '@temporalio/activity';
import { z } from 'zod';
import { selectRetention, type BackupKind, type BackupStatus, type RetentionPolicy } from '../plan/backups.js';
import type { HostContext } from './context.js';
import { observeBackup } from '../metrics/migrate.js';

export interface TableStats {
  rows: number;
  checksum: string;
}

/** InfluxDB 1.x: the points of one measurement of one retention policy, counted per field. */
export interface InfluxSeriesCount {
  rp: string;
  measurement: string;
  /** Field → number of values (count(*)): for a measurement whose points all carry every field, each is its point count. */
  fields: Record<string, number>;
}

/** InfluxDB 1.x: one database of a backup, its folder inside the archive and what it held. */
export interface InfluxDatabaseStats {
  name: string;
  /** Folder of its `influxd backup -portable` files, inside the archive's top folder. */
  folder: string;
  series: InfluxSeriesCount[];
}

export interface ComponentEntry {
  name: string;
  kind: BackupKind;
  host: string;
  /** File name inside the backup's folder. */
  file: string;
  bytes: number;
  sha256: string;
  tables?: Record<string, TableStats>;
  /** How long the dump itself took, and (Postgres) the table statistics. */
  dumpMs?: number;
  statsMs?: number;
  /** InfluxDB 1.x: the databases the archive holds, their points counted just before the backup (time <= countedTo). */
  influx?: { version: 1; countedTo: string; databases: InfluxDatabaseStats[] };
}

export interface ComponentVerification {
  name: string;
  ok: boolean;
  /** What was checked, or why it failed: a sentence an operator can act on. */
  detail: string;
  ms: number;
}

export interface Manifest {
  id: string;
  createdAt: string;
  host: string;
  components: ComponentEntry[];
  status: BackupStatus;
  verification?: { at: string; components: ComponentVerification[] };
}

/** A backup id or a file name inside a backup: one plain path segment (no "/", never "." or ".."). */
const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$/;
export const isPlainName = (name: unknown): name is string => typeof name === 'string' && ID_RE.test(name);

/**
 * `root` joined with plain names, resolved, and refused unless it lies strictly inside `root`:
 * nothing outside the store is ever read, written or removed. Pure (no I/O).
 */
export function insideStore(root: string, ...names: string[]): string {
  const base = path.resolve(root);
  for (const n of names) {
    if (!isPlainName(n)) throw ApplicationFailure.nonRetryable(`"${n}" is not a plain name inside the backup store ${base} (letters, digits, "_", "." and "-"; no "/" or "..")`, 'OutsideBackupStore');
  }
  const resolved = path.resolve(base, ...names);
  const rel = path.relative(base, resolved);
  if (rel === '' || rel.startsWith('..') || path.isAbsolute(rel)) {
    throw ApplicationFailure.nonRetryable(`${resolved} is not inside the backup store ${base}`, 'OutsideBackupStore');
  }
  return resolved;
}

/** A file of a backup: `folder` is a backup's folder (from backupFolder), `file` a plain name. */
export function storeFile(folder: string, file: string): string {
  return insideStore(folder, file);
}

const hex64 = z.string().regex(/^[0-9a-f]{64}$/, { message: 'must be a sha256 in hex' });
const count = z.number().int().min(0);
const plainName = z.string().regex(ID_RE, { message: 'must be a plain name (letters, digits, "_", "." and "-"; no "/" or "..")' });

/** One component of a manifest, as read from disk or handed to an activity by a workflow. */
const componentSchema = z.object({
  name: plainName,
  kind: z.enum(['postgres', 'redis', 'influxdb']),
  host: z.string().min(1),
  file: plainName,
  bytes: count,
  sha256: hex64,
  tables: z.record(z.string(), z.object({ rows: count, checksum: z.string() })).optional(),
  dumpMs: count.optional(),
  statsMs: count.optional(),
  influx: z.object({
    version: z.literal(1),
    countedTo: z.string(),
    databases: z.array(z.object({
      name: z.string(),
      folder: plainName,
      series: z.array(z.object({ rp: z.string(), measurement: z.string(), fields: z.record(z.string(), count) })),
    })),
  }).optional(),
});

const issuesText = (error: z.ZodError) => error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');

/** A folder of the store that is what it says: a real folder, not a link out of the store. */
async function folderProblem(folder: string): Promise<string | undefined> {
  const st = await lstat(folder).catch(() => undefined);
  if (!st) return undefined; // missing: the caller says so in its own words
  if (!st.isDirectory()) return `${folder} is not a folder (a link?): refused`;
  const [root, real] = await Promise.all([realpath(path.dirname(folder)), realpath(folder)]);
  return path.dirname(real) === root ? undefined : `${folder} resolves to ${real}, outside the backup store: refused`;
}

/** A manifest as read from disk: a tampered or truncated one is refused, never followed. */
export const manifestSchema = z.object({
  id: plainName,
  createdAt: z.string().refine((t) => !Number.isNaN(Date.parse(t)), { message: 'must be an ISO 8601 time' }),
  host: z.string().min(1),
  status: z.enum(['taken', 'verified', 'failed']),
  components: z.array(componentSchema),
  verification: z.object({
    at: z.string(),
    components: z.array(z.object({ name: z.string(), ok: z.boolean(), detail: z.string(), ms: z.number() })),
  }).optional(),
});

/** Validate a parsed manifest.json of the folder `id`: the manifest, or a sentence saying what is wrong. */
export function checkManifest(raw: unknown, id: string): { manifest: Manifest } | { problem: string } {
  const parsed = manifestSchema.safeParse(raw);
  if (!parsed.success) {
    return { problem: `manifest.json is invalid: ${issuesText(parsed.error)}` };
  }
  if (parsed.data.id !== id) return { problem: `manifest.json names the backup "${parsed.data.id}" but lies in the folder "${id}"` };
  return { manifest: parsed.data };
}

/**
 * The host's backup directory: <backups.directory>/<host> (hosts may share a mount, or, in tests
 * and `migrate dev`, one machine), else <dataDir>/backups, which is already the host's own.
 */
export function backupRoot(ctx: HostContext, directory?: string): string {
  return path.resolve(directory ? path.join(directory, ctx.host) : path.join(ctx.dataDir, 'backups'));
}

export function backupFolder(ctx: HostContext, directory: string | undefined, id: string): string {
  if (!ID_RE.test(id)) throw ApplicationFailure.nonRetryable(`"${id}" is not a backup id (letters, digits, "_", "." and "-")`, 'InvalidBackupId');
  return insideStore(backupRoot(ctx, directory), id);
}

export async function sha256File(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  for await (const chunk of createReadStream(file) as AsyncIterable<Buffer>) {
    hash.update(chunk);
    bytes += chunk.length;
  }
  return { sha256: hash.digest('hex'), bytes };
}

/** The file is still the one the manifest recorded; otherwise a sentence saying what changed. */
export async function checkFile(folder: string, entry: ComponentEntry): Promise<string | undefined> {
  // The entry came through a workflow: checked again here, before anything is read.
  if (!isPlainName(entry.file)) return `the manifest names the file "${String(entry.file)}", which is not a plain file name inside ${folder}: the manifest was tampered with`;
  const parsed = componentSchema.safeParse(entry);
  if (!parsed.success) return `the manifest's entry for ${entry.file} is invalid: ${issuesText(parsed.error)}`;
  const outside = await folderProblem(folder);
  if (outside) return outside;
  const file = storeFile(folder, entry.file);
  const st = await lstat(file).catch(() => undefined);
  if (st && !st.isFile()) return `${entry.file} in ${folder} is not a regular file (a link or a folder): refused`;
  let got: { sha256: string; bytes: number };
  try {
    got = await sha256File(file);
  } catch {
    return `${entry.file} is missing from ${folder}`;
  }
  if (got.bytes !== entry.bytes) return `${entry.file} has ${got.bytes} bytes but the manifest recorded ${entry.bytes}: the file was truncated or changed after the backup`;
  if (got.sha256 !== entry.sha256) return `${entry.file} has sha256 ${got.sha256.slice(0, 12)}… but the manifest recorded ${entry.sha256.slice(0, 12)}…: the file was corrupted after the backup`;
  return undefined;
}

/** The folder's manifest, validated; undefined when there is none, a problem when it is not valid. */
async function readManifest(folder: string): Promise<{ manifest: Manifest } | { problem: string } | undefined> {
  const outside = await folderProblem(folder);
  if (outside) return { problem: outside };
  const file = path.join(folder, 'manifest.json');
  const st = await lstat(file).catch(() => undefined);
  if (!st) return undefined;
  if (!st.isFile() || st.size > 64 * 1024 * 1024) return { problem: 'manifest.json is not a regular file (a link, a folder, or over 64 MiB): refused' };
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { problem: `manifest.json is not JSON: ${(err as Error).message}` };
  }
  return checkManifest(raw, path.basename(folder));
}

/** A readable, valid manifest, or a non-retryable failure saying why not. */
async function mustReadManifest(ctx: HostContext, folder: string, id: string): Promise<Manifest> {
  const read = await readManifest(folder);
  if (!read) throw ApplicationFailure.nonRetryable(`no backup "${id}" on host ${ctx.host} (no ${path.join(folder, 'manifest.json')}): \`migrate backup list\` shows the backups`, 'BackupNotFound');
  if ('problem' in read) throw ApplicationFailure.nonRetryable(`backup "${id}" on host ${ctx.host} cannot be used: ${read.problem}`, 'BackupManifestInvalid');
  return read.manifest;
}

async function writeManifest(folder: string, manifest: Manifest): Promise<void> {
  const tmp = path.join(folder, `.manifest.${process.pid}.tmp`);
  await writeFile(tmp, `${JSON.stringify(manifest, null, 2)}\n`);
  await rename(tmp, path.join(folder, 'manifest.json'));
}

export interface BackupSummary {
  id: string;
  host: string;
  createdAt: string;
  status: BackupStatus;
  components: { name: string; kind: BackupKind; bytes: number; tables?: number }[];
  problems: string[];
}

export function summarize(m: Manifest): BackupSummary {
  return {
    id: m.id,
    host: m.host,
    createdAt: m.createdAt,
    status: m.status,
    components: m.components.map((c) => ({ name: c.name, kind: c.kind, bytes: c.bytes, tables: c.tables ? Object.keys(c.tables).length : undefined })),
    problems: (m.verification?.components ?? []).filter((v) => !v.ok).map((v) => `${v.name}: ${v.detail}`),
  };
}

export function createBackupStoreActivities(ctx: HostContext) {
  /** Every backup on this host, newest first. Folders without a manifest are listed as failed. */
  async function listBackups(directory: string | undefined): Promise<BackupSummary[]> {
    const root = backupRoot(ctx, directory);
    const names = await readdir(root).catch(() => [] as string[]);
    const out: BackupSummary[] = [];
    for (const name of names) {
      if (!ID_RE.test(name)) continue;
      // The id is the folder's name (checked above), never the manifest's word for it.
      const read = await readManifest(insideStore(root, name));
      if (read && 'manifest' in read) out.push(summarize(read.manifest));
      else out.push({ id: name, host: ctx.host, createdAt: '', status: 'failed', components: [], problems: [read ? read.problem : 'no manifest.json'] });
    }
    return out.sort((a, b) => b.createdAt.localeCompare(a.createdAt));
  }

  return {
    /** Make (or find) the backup's folder; idempotent. */
    async prepareBackupFolder(directory: string | undefined, id: string): Promise<string> {
      const folder = backupFolder(ctx, directory, id);
      await mkdir(folder, { recursive: true });
      return folder;
    },

    /** Record the components taken on this host: status 'taken' until verified. */
    async recordBackup(directory: string | undefined, id: string, createdAt: string, components: ComponentEntry[]): Promise<BackupSummary> {
      const folder = backupFolder(ctx, directory, id);
      await mkdir(folder, { recursive: true });
      const manifest: Manifest = { id, createdAt, host: ctx.host, components, status: 'taken' };
      await writeManifest(folder, manifest);
      log.info('backup recorded', { id, host: ctx.host, components: components.map((c) => c.name) });
      observeBackup(manifest);
      return summarize(manifest);
    },

    async readBackupManifest(directory: string | undefined, id: string): Promise<Manifest> {
      return mustReadManifest(ctx, backupFolder(ctx, directory, id), id);
    },

    async markBackup(directory: string | undefined, id: string, components: ComponentVerification[]): Promise<BackupSummary> {
      const folder = backupFolder(ctx, directory, id);
      const manifest = await mustReadManifest(ctx, folder, id);
      manifest.status = components.every((c) => c.ok) ? 'verified' : 'failed';
      manifest.verification = { at: new Date().toISOString(), components };
      await writeManifest(folder, manifest);
      log.info('backup marked', { id, host: ctx.host, status: manifest.status });
      observeBackup(manifest);
      return summarize(manifest);
    },

    listBackups,

    /** Delete what the retention rule does not keep: the folder (files and manifest) at once. */
    async applyBackupRetention(directory: string | undefined, policy: RetentionPolicy): Promise<{ kept: string[]; removed: string[] }> {
      const all = await listBackups(directory);
      // A folder with no manifest is a backup that died before it was recorded: old ones go.
      const { keep, remove } = selectRetention(all.filter((b) => b.createdAt !== ''), policy);
      const root = backupRoot(ctx, directory);
      for (const id of remove) {
        const folder = insideStore(root, id);
        // A link in the store is not a backup: removing it would follow nothing, but it is refused anyway.
        if (!(await lstat(folder).then((st) => st.isDirectory(), () => false))) continue;
        await rm(folder, { recursive: true, force: true });
        log.info('backup removed by retention', { id, host: ctx.host });
      }
      return { kept: keep, removed: remove };
    },

    /**
     * Host loss (failoverHost): bring the lost host's latest verified backup of `component` into this
     * host's store, to restore it into the unit moved here. The lost host's store is read from
     * `<directory>/<fromHost>/`: on isolated hosts every host shares this machine's files; on real
     * machines `backups.directory` must be shared storage (NFS, a replicated volume) or replicated to
     * the surviving hosts, or no backup of a lost host can be reached.
     *
     * The file is checked against its manifest's checksum where it is read and again where it is
     * written; it lands in the folder `<id>.from-<fromHost>` with a manifest of that one component, on
     * this host. Idempotent: a folder already adopted (its file still matching) is returned as it is.
     */
    async adoptFailoverBackup(directory: string | undefined, fromHost: string, component: string, backupId?: string): Promise<{ backupId: string; from: string; entry: ComponentEntry }> {
      if (!directory) {
        throw ApplicationFailure.nonRetryable(`cannot reach ${fromHost}'s backups from ${ctx.host}: set \`backups.directory\` to a folder every host shares (or replicates), so a lost host's backups can be restored elsewhere`, 'BackupNotFound');
      }
      if (!isPlainName(fromHost) || !isPlainName(component)) throw ApplicationFailure.nonRetryable(`"${fromHost}"/"${component}" is not a plain host/component name`, 'OutsideBackupStore');
      const source = insideStore(path.resolve(directory), fromHost);
      const names = (await readdir(source).catch(() => [] as string[])).filter((n) => ID_RE.test(n) && (!backupId || n === backupId));
      const candidates: { manifest: Manifest; entry: ComponentEntry; folder: string }[] = [];
      const refused: string[] = [];
      for (const name of names) {
        const folder = insideStore(source, name);
        const read = await readManifest(folder);
        if (!read || 'problem' in read) continue;
        const entry = read.manifest.components.find((c) => c.name === component);
        if (!entry) continue;
        if (read.manifest.status !== 'verified') {
          refused.push(`${name} is ${read.manifest.status}`);
          continue;
        }
        candidates.push({ manifest: read.manifest, entry, folder });
      }
      candidates.sort((a, b) => b.manifest.createdAt.localeCompare(a.manifest.createdAt));
      for (const c of candidates) {
        const problem = await checkFile(c.folder, c.entry);
        if (problem) {
          refused.push(`${c.manifest.id}: ${problem}`);
          continue;
        }
        const id = `${c.manifest.id}.from-${fromHost}`;
        const root = backupRoot(ctx, directory);
        const folder = insideStore(root, id);
        const entry: ComponentEntry = { ...c.entry, host: ctx.host };
        const have = await readManifest(folder);
        if (have && 'manifest' in have && have.manifest.status === 'verified' && have.manifest.components.some((e) => e.name === component) && !(await checkFile(folder, entry))) {
          return { backupId: id, from: c.manifest.id, entry };
        }
        await mkdir(folder, { recursive: true });
        const tmp = storeFile(folder, `${entry.file}.${process.pid}.tmp`);
        await copyFile(storeFile(c.folder, c.entry.file), tmp);
        await rename(tmp, storeFile(folder, entry.file));
        const copied = await checkFile(folder, entry);
        if (copied) throw ApplicationFailure.retryable(`the copy of ${c.manifest.id}/${entry.file} from ${fromHost} does not match its manifest: ${copied}`, 'BackupCopyMismatch');
        const manifest: Manifest = {
          id, createdAt: c.manifest.createdAt, host: ctx.host, components: [entry], status: 'verified',
          verification: { at: new Date().toISOString(), components: (c.manifest.verification?.components ?? []).filter((v) => v.name === component) },
        };
        await writeManifest(folder, manifest);
        log.info('backup adopted from a lost host', { id, from: fromHost, host: ctx.host, component });
        return { backupId: id, from: c.manifest.id, entry };
      }
      throw ApplicationFailure.nonRetryable(
        `no verified backup of "${component}" in ${source}${backupId ? ` named ${backupId}` : ''}${refused.length ? ` (${refused.join('; ')})` : ''}: take one (\`migrate backup now\`) before a host is lost, or approve with another backup id`,
        'BackupNotFound',
      );
    },
  };
}
