/**
 * The backup store: one folder per backup id under the host's backup directory, holding the
 * components' files and a manifest.json. Files and manifest are created and removed together
 * (the folder is the unit), and a manifest is replaced atomically (write + rename).
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ApplicationFailure } from '@temporalio/common';
import { log } from '@temporalio/activity';
import { selectRetention, type BackupKind, type BackupStatus, type RetentionPolicy } from '../plan/backups.js';
import type { HostContext } from './context.js';

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

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$/;

/**
 * The host's backup directory: <backups.directory>/<host> (hosts may share a mount, or, in tests
 * and `migrate dev`, one machine), else <dataDir>/backups, which is already the host's own.
 */
export function backupRoot(ctx: HostContext, directory?: string): string {
  return path.resolve(directory ? path.join(directory, ctx.host) : path.join(ctx.dataDir, 'backups'));
}

export function backupFolder(ctx: HostContext, directory: string | undefined, id: string): string {
  if (!ID_RE.test(id)) throw ApplicationFailure.nonRetryable(`"${id}" is not a backup id (letters, digits, "_", "." and "-")`, 'InvalidBackupId');
  return path.join(backupRoot(ctx, directory), id);
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
  const file = path.join(folder, entry.file);
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

async function readManifest(folder: string): Promise<Manifest | undefined> {
  try {
    return JSON.parse(await readFile(path.join(folder, 'manifest.json'), 'utf8')) as Manifest;
  } catch {
    return undefined;
  }
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
      const m = await readManifest(path.join(root, name));
      out.push(m ? summarize(m) : { id: name, host: ctx.host, createdAt: '', status: 'failed', components: [], problems: ['no manifest.json'] });
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
      return summarize(manifest);
    },

    async readBackupManifest(directory: string | undefined, id: string): Promise<Manifest> {
      const folder = backupFolder(ctx, directory, id);
      const manifest = await readManifest(folder);
      if (!manifest) throw ApplicationFailure.nonRetryable(`no backup "${id}" on host ${ctx.host} (no ${path.join(folder, 'manifest.json')}): \`migrate backup list\` shows the backups`, 'BackupNotFound');
      return manifest;
    },

    async markBackup(directory: string | undefined, id: string, components: ComponentVerification[]): Promise<BackupSummary> {
      const folder = backupFolder(ctx, directory, id);
      const manifest = await readManifest(folder);
      if (!manifest) throw ApplicationFailure.nonRetryable(`no backup "${id}" on host ${ctx.host}`, 'BackupNotFound');
      manifest.status = components.every((c) => c.ok) ? 'verified' : 'failed';
      manifest.verification = { at: new Date().toISOString(), components };
      await writeManifest(folder, manifest);
      log.info('backup marked', { id, host: ctx.host, status: manifest.status });
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
        await rm(path.join(root, id), { recursive: true, force: true });
        log.info('backup removed by retention', { id, host: ctx.host });
      }
      return { kept: keep, removed: remove };
    },
  };
}
