/**
 * Temporal's own record of earlier runs, read through the worker's client: the batch gate asks
 * "did batch N-1 complete, and was it not rolled back since?" from the server's history rather
 * than from a file the operator could lose or a flag the client could forget to pass.
 */
import { Context, log } from '@temporalio/activity';
import { WorkflowNotFoundError } from '@temporalio/client';

export interface RunRecord {
  workflowId: string;
  /** RUNNING | COMPLETED | FAILED | CANCELLED | TERMINATED | TIMED_OUT | CONTINUED_AS_NEW | NOT_FOUND */
  status: string;
  closedAt?: number;
  startedAt?: number;
  /** The `outcome` field of the run's result, when it completed with one. */
  outcome?: string;
}

export function createRecordActivities() {
  return {
    /** The latest run of a workflow id: status, times and, if completed, its outcome. */
    async runRecord(workflowId: string): Promise<RunRecord> {
      const handle = Context.current().client.workflow.getHandle(workflowId);
      try {
        const d = await handle.describe();
        const record: RunRecord = { workflowId, status: d.status.name, startedAt: d.startTime.getTime(), closedAt: d.closeTime?.getTime() };
        if (d.status.name === 'COMPLETED') {
          const result = (await handle.result()) as { outcome?: string } | undefined;
          record.outcome = result?.outcome;
        }
        log.info('run record', { ...record });
        return record;
      } catch (err) {
        if (err instanceof WorkflowNotFoundError) return { workflowId, status: 'NOT_FOUND' };
        throw err;
      }
    },
  };
}

export type RecordActivities = ReturnType<typeof createRecordActivities>;
