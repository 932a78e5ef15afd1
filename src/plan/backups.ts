/**
 * The inventory's `backups:` section → the backup targets of the plan, and the retention rule.
 * Pure: no I/O, safe to import from workflow code.
 *
 * Secrets stay references (`{ from_env }` / `{ from_file }`): the worker of the target's host reads
 * them, so they never enter a workflow's input or history.
 */
import type { Problem } from '../inventory/problems.js';
import type { Inventory, SecretRef } from '../inventory/schema.js';
import { closest } from './graph.js';
import { containerName } from './queues.js';

export type BackupKind = 'postgres' | 'redis' | 'influxdb';

/** One thing to back up, resolved to where its host's worker reaches it. */
export interface BackupComponent {
  name: string;
  kind: BackupKind;
  host: string;
  via: 'tcp' | 'docker-exec';
  /** The database's container (docker-exec). */
  container?: string;
  address: string;
  port?: number;
  database?: string;
  user?: string;
  password?: SecretRef;
  /** Redis: the server's data folder inside its container. */
  dataDir?: string;
  /** InfluxDB: the major version (1 or 2; 2 when absent). */
  version?: 1 | 2;
  /** InfluxDB 1.x: the databases to back up (undefined = all but _internal); `port` is its HTTP API. */
  databases?: string[];
  /** InfluxDB 1.x: the backup/restore RPC port inside the container. */
  rpcPort?: number;
}

export interface RetentionPolicy {
  keepLast: number;
  keepDaily: number;
  keepWeekly: number;
}

export interface BackupPlan {
  /** Folder on each host; undefined = the host's data folder + /backups. */
  directory?: string;
  retention: RetentionPolicy;
  components: BackupComponent[];
}

/** Resolve and cross-check `backups:`; problems are appended (path + fix), like buildPlan's own. */
export function planBackups(inv: Inventory, placed: ReadonlyMap<string, string>, problems: Problem[]): BackupPlan | undefined {
  const b = inv.backups;
  if (!b) return undefined;
  const hostNames = Object.keys(inv.hosts);
  const components: BackupComponent[] = [];
  const seen = new Map<string, string>();
  const targets = [
    ...b.postgres.map((t, i) => ({ kind: 'postgres' as const, path: `backups.postgres[${i}]`, t })),
    ...b.redis.map((t, i) => ({ kind: 'redis' as const, path: `backups.redis[${i}]`, t })),
    ...b.influxdb.map((t, i) => ({ kind: 'influxdb' as const, path: `backups.influxdb[${i}]`, t })),
  ];
  for (const { kind, path, t } of targets) {
    let ok = true;
    const earlier = seen.get(t.name);
    if (earlier) {
      problems.push({ path: `${path}.name`, message: `duplicate backup component "${t.name}" (also ${earlier})`, fix: 'give each component its own name: it names the file in every backup' });
      ok = false;
    }
    seen.set(t.name, path);
    if (!Object.hasOwn(inv.hosts, t.host)) {
      const hint = closest(t.host, hostNames);
      problems.push({
        path: `${path}.host`,
        message: `unknown host "${t.host}"${hint ? ` (did you mean "${hint}"?)` : ''}`,
        fix: `use one of the declared hosts: ${hostNames.join(', ')}`,
      });
      ok = false;
    }
    if (t.via === 'docker-exec') {
      if (!t.unit) {
        problems.push({ path: `${path}.unit`, message: 'via: docker-exec needs the service whose container runs the database', fix: 'add `unit: NAME` (a service of this inventory), or use `via: tcp`' });
        ok = false;
      } else if (!Object.hasOwn(inv.services, t.unit)) {
        const hint = closest(t.unit, Object.keys(inv.services));
        problems.push({
          path: `${path}.unit`,
          message: `unknown service "${t.unit}"${hint ? ` (did you mean "${hint}"?)` : ''}`,
          fix: hint ? `write "${hint}"` : 'name a service declared under services',
        });
        ok = false;
      } else if (placed.has(t.unit) && placed.get(t.unit) !== t.host) {
        problems.push({
          path: `${path}.host`,
          message: `service "${t.unit}" runs on ${placed.get(t.unit)}, not on ${t.host}: docker exec only reaches containers of its own host`,
          fix: `write host: ${placed.get(t.unit)}`,
        });
        ok = false;
      }
    }
    if (!ok) continue;
    const container = t.via === 'docker-exec' && t.unit ? containerName(inv.project, t.host, t.unit) : undefined;
    const base = { name: t.name, kind, host: t.host, via: t.via, container, address: t.address };
    if (kind === 'postgres') {
      const p = t as NonNullable<Inventory['backups']>['postgres'][number];
      components.push({ ...base, port: p.port, database: p.database, user: p.user, password: p.password });
    } else if (kind === 'redis') {
      const r = t as NonNullable<Inventory['backups']>['redis'][number];
      components.push({ ...base, port: r.port, password: r.password, dataDir: r.data_dir });
    } else {
      const f = t as NonNullable<Inventory['backups']>['influxdb'][number];
      const wrong = influxVersionProblems(f, path);
      problems.push(...wrong);
      if (wrong.length > 0) continue;
      if (f.version === 1) {
        components.push({ ...base, version: 1, port: f.port ?? 8086, rpcPort: f.rpc_port ?? 8088, databases: f.databases, user: f.user, password: f.password });
      } else {
        components.push({ ...base, version: 2, password: f.token });
      }
    }
  }
  return {
    directory: b.directory,
    retention: { keepLast: b.retention.keep_last, keepDaily: b.retention.keep_daily, keepWeekly: b.retention.keep_weekly },
    components,
  };
}

type InfluxTarget = NonNullable<Inventory['backups']>['influxdb'][number];

/** Fields that belong to the other InfluxDB major version: each is a problem with its fix. */
function influxVersionProblems(f: InfluxTarget, path: string): Problem[] {
  const out: Problem[] = [];
  if (f.version === 2) {
    for (const field of ['databases', 'port', 'rpc_port', 'user', 'password'] as const) {
      if (f[field] !== undefined) {
        out.push({
          path: `${path}.${field}`,
          message: `\`${field}\` is for InfluxDB 1.x, and this target is version 2 (the default): \`influx backup\` takes every bucket with the operator token`,
          fix: field === 'password' ? 'write `token: { from_env: … }` for 2.x, or `version: 1`' : `remove \`${field}\`, or write \`version: 1\``,
        });
      }
    }
  } else {
    if (f.token !== undefined) out.push({ path: `${path}.token`, message: 'InfluxDB 1.x has no tokens', fix: 'write `user:` and `password: { from_env: … }` (auth-enabled servers), or `version: 2`' });
    if (f.password !== undefined && f.user === undefined) out.push({ path: `${path}.user`, message: 'a password without a user', fix: 'add `user:` (an admin user of the InfluxDB 1.x server)' });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Retention

export type BackupStatus = 'taken' | 'verified' | 'failed';

export interface BackupRecord {
  id: string;
  /** ISO 8601. */
  createdAt: string;
  status: BackupStatus;
}

/** Monday of the ISO week (UTC), as YYYY-MM-DD: backups of one week share it. */
function weekOf(iso: string): string {
  const d = new Date(iso);
  const day = (d.getUTCDay() + 6) % 7;
  return new Date(Date.UTC(d.getUTCFullYear(), d.getUTCMonth(), d.getUTCDate() - day)).toISOString().slice(0, 10);
}

/**
 * Which backups to keep and which to delete.
 *  - verified: the newest `keepLast`, plus the newest of each of the last `keepDaily` days and
 *    `keepWeekly` weeks (UTC) that have one; the newest verified backup is always kept;
 *  - taken (not yet verified: a backup in progress) are kept;
 *  - failed: kept only when newer than the newest verified one (the operator looks at it), else deleted.
 */
export function selectRetention(backups: BackupRecord[], policy: RetentionPolicy): { keep: string[]; remove: string[] } {
  const newestFirst = [...backups].sort((a, b) => b.createdAt.localeCompare(a.createdAt) || b.id.localeCompare(a.id));
  const verified = newestFirst.filter((b) => b.status === 'verified');
  const keep = new Set<string>();
  verified.slice(0, Math.max(1, policy.keepLast)).forEach((b) => keep.add(b.id));
  for (const [bucket, count] of [[(b: BackupRecord) => b.createdAt.slice(0, 10), policy.keepDaily], [(b: BackupRecord) => weekOf(b.createdAt), policy.keepWeekly]] as const) {
    const seen = new Set<string>();
    for (const b of verified) {
      const key = bucket(b);
      if (seen.has(key)) continue;
      if (seen.size >= count) break;
      seen.add(key);
      keep.add(b.id);
    }
  }
  const newestVerified = verified[0]?.createdAt ?? '';
  for (const b of newestFirst) {
    if (b.status === 'taken') keep.add(b.id);
    if (b.status === 'failed' && b.createdAt > newestVerified) keep.add(b.id);
  }
  return { keep: newestFirst.filter((b) => keep.has(b.id)).map((b) => b.id), remove: newestFirst.filter((b) => !keep.has(b.id)).map((b) => b.id) };
}
