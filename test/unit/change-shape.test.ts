/** The pure parts of the one change shape: exactness in words, refusals of kept containers, the ledger's pruning. */
import { describe, expect, it } from 'vitest';
import { differences, keptRefusals } from '../../src/workflows/unit-swap.js';
import { pruneRecords, type ChangeRecord } from '../../src/workflows/ledger.js';

const running = (id: string) => ({ current: { id, running: true } });

describe('differences', () => {
  it('is empty when every unit runs the same container in the same state', () => {
    expect(differences({ 'pc2/A': running('a1'), 'pc2/B': {} }, { 'pc2/A': running('a1'), 'pc2/B': {} })).toEqual([]);
  });
  it('names each unit that runs another container, is stopped, or keeps another container', () => {
    expect(differences(
      { 'pc2/A': running('a1'), 'pc2/B': running('b1'), 'pc2/C': running('c1'), 'pc2/D': {} },
      { 'pc2/A': running('a2'), 'pc2/B': { current: { id: 'b1', running: false } }, 'pc2/C': { ...running('c1'), previous: 'c0' }, 'pc2/D': running('d1') },
    )).toEqual([
      'pc2/A: ran a1 (running) before, runs a2 (running) now',
      'pc2/B: ran b1 (running) before, runs b1 (stopped) now',
      'pc2/C: kept nothing before, keeps c0 now',
      'pc2/D: ran nothing before, runs d1 (running) now',
    ]);
  });
});

describe('keptRefusals', () => {
  const kept = (change?: string) => ({ previous: { id: 'p1234567890123', name: 'p_pc2_A.prev', role: 'previous' as const, change, running: false }, others: [] });
  it('refuses a unit that keeps another change\'s container, with the fix', () => {
    expect(keptRefusals({ 'pc2/A': kept('migrate-batch-1@run1') }, 'migrate-batch-1@run2')).toEqual([
      expect.stringMatching(/^pc2\/A still keeps p_pc2_A\.prev \(p12345678901, made by migrate-batch-1@run1\) for a change not yet confirmed: confirm or roll back that change first/),
    ]);
  });
  it('does not refuse a container the same change made', () => {
    expect(keptRefusals({ 'pc2/A': kept('c'), 'pc2/B': { others: [] } }, 'c')).toEqual([]);
  });
});

describe('pruneRecords', () => {
  const rec = (name: string, status: ChangeRecord['status'], updatedAt: number): ChangeRecord => ({ kind: 'batch', name, workflowId: `migrate-${name}`, runId: 'r', status, units: [], startedAt: 0, updatedAt });
  it('keeps every open record and the newest closed ones', () => {
    const records = [rec('a', 'confirmed', 1), rec('b', 'pending-confirmation', 2), rec('c', 'rolled-back', 3), rec('d', 'running', 0), rec('e', 'failed', 5)];
    expect(pruneRecords(records, 2).map((r) => r.name)).toEqual(['b', 'c', 'd', 'e']);
  });
});
