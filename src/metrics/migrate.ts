/**
 * The tool's metrics, fed by the activities that see each event happen:
 *   - `observeChange(project, record)` from the ledger's `recordChange` (every status change of a
 *     deploy or batch passes there);
 *   - `observeBackup(summary, components)` from the backup store's `recordBackup` (taken) and
 *     `markBackup` (verified or failed), and from the store on disk when a worker starts;
 *   - `setHostLost(host, lost)` for the host-lost signal (0 for the worker's own hosts at start), fed
 *     by each worker from the health plane's aggregate view;
 *   - `observeFailover(…)` from the fence activities of failoverHost and failbackHost.
 * See registry.ts for the list of names. No I/O.
 */
import type { ChangeRecord } from '../workflows/ledger.js';
import { counter, gauge, summary } from './registry.js';

const changeDuration = summary('migrate_change_duration_seconds', 'Duration of closed deploys and batches, from start to confirm, rollback or failure');
const changesTotal = counter('migrate_changes_total', 'Closed deploys and batches by final status');
const rollbacksTotal = counter('migrate_rollbacks_total', 'Deploys and batches that rolled back (a batch with any agent rolled back counts)');
const agentsByPhase = gauge('migrate_agents', 'Agents of the batches this worker recorded, by their batch\'s status');
const backupBytes = gauge('migrate_backup_bytes', 'Size of the newest backup taken, per component');
const backupDuration = gauge('migrate_backup_duration_seconds', 'Dump time of the newest backup taken, per component');
const newestVerified = gauge('migrate_backup_newest_verified_timestamp_seconds', 'Creation time (unix seconds) of the newest verified backup, per component');
const backupsTotal = counter('migrate_backups_total', 'Backups recorded (taken) and marked (verified or failed), per host');
const failoversTotal = counter('migrate_failovers_total', 'Units moved off a lost host (moved, failed) and moved back (failed-back), by from, to and unit');
const hostLost = gauge('migrate_host_lost', '1 while a host is lost, 0 while it is present');

const CLOSED = new Set(['confirmed', 'rolled-back', 'failed']);
/** The newest record of each change (key: project/kind/name), and the runs already counted as closed. */
const latest = new Map<string, { project: string; record: ChangeRecord }>();
const counted = new Set<string>();

export function observeChange(project: string, record: ChangeRecord): void {
  latest.set(`${project}/${record.kind}/${record.name}`, { project, record });
  const closedKey = `${record.workflowId}/${record.runId}`;
  if (CLOSED.has(record.status) && !counted.has(closedKey)) {
    counted.add(closedKey);
    const labels = { kind: record.kind, project, status: record.status };
    changesTotal.inc(labels);
    changeDuration.observe(labels, Math.max(0, ((record.closedAt ?? record.updatedAt) - record.startedAt) / 1000));
    // A change that failed after it touched a unit was rolled back by itself (deploy step 6, a batch's undo).
    const undone = record.status === 'failed' && record.units.some((u) => u.action !== undefined && u.action !== 'reused');
    if (record.status === 'rolled-back' || record.outcome === 'rolled-back' || undone) rollbacksTotal.inc({ kind: record.kind, project });
  }
  // Agents by phase: every batch's agents, counted under their batch's current status.
  const rows = new Map<string, { labels: { project: string; phase: string }; value: number }>();
  for (const { project: p, record: r } of latest.values()) {
    if (r.kind !== 'batch') continue;
    const row = rows.get(`${p}/${r.status}`) ?? { labels: { project: p, phase: r.status }, value: 0 };
    row.value += r.units.length;
    rows.set(`${p}/${r.status}`, row);
  }
  agentsByPhase.replace([...rows.values()]);
}

export interface BackupObservation {
  host: string;
  createdAt: string;
  status: 'taken' | 'verified' | 'failed';
  components: { name: string; bytes: number; dumpMs?: number }[];
}

/** A backup taken (sizes, durations), or marked verified (the newest-verified time) or failed. */
export function observeBackup(b: BackupObservation, options: { count?: boolean } = {}): void {
  if (options.count !== false) backupsTotal.inc({ host: b.host, status: b.status });
  for (const c of b.components) {
    const labels = { host: b.host, component: c.name };
    if (b.status === 'taken') {
      backupBytes.set(labels, c.bytes);
      if (c.dumpMs !== undefined) backupDuration.set(labels, c.dumpMs / 1000);
    }
    const created = Date.parse(b.createdAt);
    if (b.status === 'verified' && !Number.isNaN(created)) newestVerified.max(labels, Math.floor(created / 1000));
  }
}

export function setHostLost(host: string, lost: boolean): void {
  hostLost.set({ host }, lost ? 1 : 0);
}

/** A unit moved by failoverHost (or back by failbackHost), from the fence activity that saw it. */
export function observeFailover(f: { from: string; to: string; unit: string; outcome: 'moved' | 'failed' | 'failed-back' }): void {
  failoversTotal.inc(f);
}
