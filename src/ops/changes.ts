/**
 * What deploys and batches share as open changes: the ledger (their record, which outlives the
 * workflows' own histories), and the confirm / rollback updates on the change's open workflow.
 */
import { WorkflowNotFoundError, WorkflowUpdateFailedError, type Client, type WorkflowHandle } from '@temporalio/client';
import { rootMessage } from '../common/failure.js';
import { confirmUpdate, rollbackUpdate, type DecisionResult, type RollbackOptions } from '../workflows/change.js';
import { changeKey, ledgerQuery, ledgerWorkflowId, type ChangeKind, type ChangeRecord } from '../workflows/ledger.js';
import { OperationFailed } from './errors.js';

export type { DecisionResult, RollbackOptions } from '../workflows/change.js';
export type { ChangeRecord } from '../workflows/ledger.js';

/** Every change the project's ledger holds (none when the ledger was never started). */
export async function readLedger(client: Client, project: string): Promise<ChangeRecord[]> {
  try {
    return await client.workflow.getHandle(ledgerWorkflowId(project)).query(ledgerQuery);
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return [];
    throw err;
  }
}

/** One change's record in the ledger. */
export async function ledgerRecord(client: Client, project: string, kind: ChangeKind, name: string): Promise<ChangeRecord | undefined> {
  return (await readLedger(client, project)).find((r) => changeKey(r) === changeKey({ kind, name }));
}

/** Is the workflow open (running)? undefined when it does not exist (never started, or deleted by retention). */
export async function isOpen(handle: WorkflowHandle): Promise<boolean | undefined> {
  try {
    return (await handle.describe()).status.name === 'RUNNING';
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return undefined;
    throw err;
  }
}

export type Decision = 'confirm' | 'rollback';

/**
 * Confirm or roll back an open change (deploy or batch): an update on its workflow. A change that is
 * no longer open is explained from the ledger.
 */
export async function decide(client: Client, handle: WorkflowHandle, what: string, decision: Decision, options: RollbackOptions, record: () => Promise<ChangeRecord | undefined>): Promise<DecisionResult> {
  if (!(await isOpen(handle))) {
    const r = await record();
    if (!r) throw new OperationFailed(`${what} has no record: it was never started (or not in this project)`);
    if (decision === 'rollback' && r.status === 'confirmed') throw new OperationFailed(`${what} was confirmed: its previous containers were dropped. Deploy or migrate the version before it again`);
    throw new OperationFailed(`${what} is ${r.status}, not pending confirmation: nothing to ${decision === 'rollback' ? 'roll back' : 'confirm'}`);
  }
  try {
    return decision === 'confirm'
      ? await handle.executeUpdate(confirmUpdate)
      : await handle.executeUpdate(rollbackUpdate, { args: [options] });
  } catch (err) {
    if (err instanceof WorkflowUpdateFailedError) throw new OperationFailed(`${decision} of ${what} refused: ${rootMessage(err)}`);
    throw err;
  }
}
