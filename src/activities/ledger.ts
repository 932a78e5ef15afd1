/**
 * The project ledger, through the worker's Temporal client: a change workflow writes its record
 * (signal-with-start, so the first write starts the ledger), and the batch gate reads it. These
 * activities touch Temporal only, so they run on the orchestrator queue.
 */
import { Context, log } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';
import { ORCHESTRATOR_QUEUE } from '../plan/queues.js';
import { observeChange } from '../metrics/migrate.js';
import { changeKey, ledgerQuery, ledgerWorkflowId, projectLedger, recordChangeSignal, type ChangeRecord } from '../workflows/ledger.js';

export function createLedgerActivities() {
  return {
    /** Upsert a change's record in its project's ledger (starting the ledger when it is not running). */
    async recordChange(project: string, record: ChangeRecord): Promise<void> {
      await Context.current().client.workflow.signalWithStart(projectLedger, {
        workflowId: ledgerWorkflowId(project),
        taskQueue: ORCHESTRATOR_QUEUE,
        args: [{ project }],
        signal: recordChangeSignal,
        signalArgs: [record],
        staticSummary: `the record of every change of ${project}`,
      });
      log.info('change recorded', { project, change: changeKey(record), status: record.status });
      observeChange(project, record);
    },

    /** One change's record, or undefined when the ledger has none. */
    async readChange(project: string, key: string): Promise<ChangeRecord | undefined> {
      try {
        const records = await Context.current().client.workflow.getHandle(ledgerWorkflowId(project)).query(ledgerQuery);
        return records.find((r) => changeKey(r) === key);
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return undefined;
        throw err;
      }
    },
  };
}

export type LedgerActivities = ReturnType<typeof createLedgerActivities>;
