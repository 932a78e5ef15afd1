/**
 * The project ledger: one long-lived workflow per project (`ledger-<project>`) that keeps the record
 * of every change (deploy or batch): its outcome, each unit's previous and new container ids, the
 * backup it started with (or why none), and whether it was confirmed or rolled back. A change's own
 * workflow execution may be deleted (namespace retention); the ledger is not, since it never closes:
 * it continues as new, carrying its records, well before its history grows large.
 *
 * Written by the `recordChange` activity (signal-with-start: the first write starts it), read by the
 * `ledger` query (the CLI) and the `readLedger` activity (the batch gate).
 *
 * Deterministic: no I/O.
 */
import { condition, continueAsNew, defineQuery, defineSignal, setHandler, workflowInfo, allHandlersFinished } from '@temporalio/workflow';
import type { BackupOutcome } from './safeguard.js';

export type ChangeKind = 'deploy' | 'batch';

export type ChangeStatus = 'running' | 'pending-confirmation' | 'confirmed' | 'rolled-back' | 'failed';

/** What a change did to one unit. */
export interface UnitChange {
  unit: string;
  host: string;
  /** The container that ran before (kept as `.prev` until confirmed); none on a first install. */
  previousId?: string;
  /** The container the change made (or reused). */
  newId?: string;
  action?: 'new' | 'replaced' | 'reused' | 'restarted';
  /** Behind the host's traffic proxy (issue #13): undone by moving traffic back before anything is removed. */
  routed?: boolean;
  /** Routed by this change for the first time: its previous container held the published port itself (it gets it back on rollback). */
  handover?: boolean;
}

export interface ChangeRecord {
  kind: ChangeKind;
  /** The release (deploy) or the batch's name. */
  name: string;
  workflowId: string;
  runId: string;
  status: ChangeStatus;
  /** Batches: migrated or rolled back (a batch may migrate with some agents rolled back alone). */
  outcome?: 'migrated' | 'rolled-back';
  reason?: string;
  units: UnitChange[];
  backup?: BackupOutcome;
  startedAt: number;
  updatedAt: number;
  closedAt?: number;
}

export interface LedgerInput {
  project: string;
  records?: ChangeRecord[];
}

/** The key of a change: `deploy/<release>`, `batch/<name>` (a batch run again replaces its record). */
export const changeKey = (r: Pick<ChangeRecord, 'kind' | 'name'>) => `${r.kind}/${r.name}`;
export const ledgerWorkflowId = (project: string) => `ledger-${project}`;

export const recordChangeSignal = defineSignal<[ChangeRecord]>('recordChange');
export const ledgerQuery = defineQuery<ChangeRecord[]>('ledger');

/** Closed records kept (the newest); every open one is kept. */
export const KEEP_CLOSED = 500;
/** Continue as new past this many events (Temporal warns at 10,240). */
const MAX_EVENTS = 2_000;

const open = (r: ChangeRecord) => r.status === 'running' || r.status === 'pending-confirmation';

/** The records to carry on: every open one, and the newest closed ones. Pure. */
export function pruneRecords(records: ChangeRecord[], keepClosed = KEEP_CLOSED): ChangeRecord[] {
  const closed = records.filter((r) => !open(r)).sort((a, b) => b.updatedAt - a.updatedAt).slice(0, keepClosed);
  const keep = new Set([...records.filter(open), ...closed]);
  return records.filter((r) => keep.has(r));
}

export async function projectLedger(input: LedgerInput): Promise<void> {
  const records = new Map((input.records ?? []).map((r) => [changeKey(r), r]));
  setHandler(recordChangeSignal, (record) => {
    const key = changeKey(record);
    const known = records.get(key);
    // A later run of the same batch replaces the record; within one run, the newest write wins.
    if (known && known.runId === record.runId && known.updatedAt > record.updatedAt) return;
    records.set(key, record);
  });
  setHandler(ledgerQuery, () => [...records.values()]);
  await condition(() => workflowInfo().continueAsNewSuggested || workflowInfo().historyLength > MAX_EVENTS);
  await condition(allHandlersFinished);
  await continueAsNew<typeof projectLedger>({ project: input.project, records: pruneRecords([...records.values()]) });
}
