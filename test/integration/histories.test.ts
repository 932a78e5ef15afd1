/**
 * Each file holds the workflow id and the history, protobuf-encoded (base64): this install carries
 * two protobufjs instances, and the SDK's JSON conversion fails across them.
 *
 * Upgrades of the tool while changes are open: a batch may stay open for days, so the workflow code
 * of a new release must replay the histories the previous release recorded. Histories recorded by
 * this release (test/integration/change.test.ts with MIGRATE_RECORD_HISTORIES=1) are checked in
 * under test/histories and replayed here against the current bundle. A change that breaks one needs
 * `patched()` (or worker versioning): see the README's "Changing workflow code".
 */
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';

const dir = path.resolve('test/histories');

describe('checked-in histories replay against the current workflow code', () => {
  it('replays every recorded history (deploy, batches, agent, ledger) without a non-determinism error', async () => {
    const files = (await readdir(dir)).filter((f) => f.endsWith('.json')).sort();
    expect(files.length).toBeGreaterThanOrEqual(5);
    const failed: string[] = [];
    for (const file of files) {
      const { workflowId, history } = JSON.parse(await readFile(path.join(dir, file), 'utf8')) as { workflowId: string; history: string };
      try {
        await Worker.runReplayHistory({ workflowBundle: { codePath: inject('workflowBundle') } }, temporal.api.history.v1.History.decode(Buffer.from(history, 'base64')), workflowId);
      } catch (err) {
        failed.push(`${file}: ${(err as Error).message}`);
      }
    }
    expect(failed).toEqual([]);
  });
});
