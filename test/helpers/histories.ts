/**
 * Record a workflow's history under test/histories (replayed by test/integration/histories.test.ts),
 * protobuf-encoded (base64): this install carries two protobufjs instances, and the SDK's JSON
 * conversion fails across them.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { inject } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';

/** Whether this run records histories (MIGRATE_RECORD_HISTORIES=1). */
export const recordingHistories = process.env.MIGRATE_RECORD_HISTORIES === '1';

export async function writeHistory(file: string, workflowId: string, runId?: string): Promise<void> {
  const dir = path.resolve('test/histories');
  await mkdir(dir, { recursive: true });
  const client = new Client({ connection: await Connection.connect({ address: inject('temporalAddress') }) });
  try {
    const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
    const encoded = Buffer.from(temporal.api.history.v1.History.encode(history).finish()).toString('base64');
    await writeFile(path.join(dir, `${file}.json`), `${JSON.stringify({ workflowId, history: encoded })}\n`);
  } finally {
    await client.connection.close();
  }
}
