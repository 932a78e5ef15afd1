/**
 * How things read on a terminal: a deploy's and a batch's progress, a ledger record, a confirm or
 * rollback's result, and the data safeguard (the backup a change starts with, what `--restore-data`
 * did). Pure, except the live section at the end: followers that print as a change moves.
 */
import Table from 'cli-table3';
import type { WorkflowHandle } from '@temporalio/client';
import type { Plan } from '../plan/plan.js';
import type { BackupOutcome, DataRestore } from '../workflows/safeguard.js';
import { SETTLED_AGENT_PHASES, type AgentPhase } from '../workflows/batch.js';
import { followBatch, followDeploy, type AgentProgress, type BatchResult, type ChangeRecord, type DecisionResult, type DeployHandle, type DeployProgress } from '../ops/index.js';

// ---------------------------------------------------------------------------------------------
// The data safeguard

/** One line on what happens to the data first. */
export function describeBackupStep(plan: Plan, skipReason: string | undefined): string {
  if (skipReason !== undefined) return `  backup skipped by the operator: "${skipReason}" (recorded in the workflow)`;
  if (!plan.backups?.components.length) return '  no backup first: the inventory declares no backups';
  return `  first a verified backup of ${plan.backups.components.map((c) => `${c.name} (${c.kind} on ${c.host})`).join(', ')}`;
}

/** The backup line of a deploy's or batch's progress. */
export function formatBackupOutcome(b: BackupOutcome | undefined): string | undefined {
  if (!b) return undefined;
  if (b.status === 'verified') return `backup: ${b.id} (verified before any change; \`migrate restore ${b.id}\`)`;
  if (b.status === 'skipped') return `backup: skipped by the operator: "${b.reason}"`;
  return `backup: none (${b.reason})`;
}

/** What `--restore-data` did, one line per component. */
export function formatDataRestore(r: DataRestore): string {
  if (r.error) return `data restore from backup ${r.backupId || '(none)'}: FAILED: ${r.error}`;
  return [`data restored from backup ${r.backupId}: ${r.ok ? 'ok' : 'INCOMPLETE'}`, ...(r.result?.components ?? []).map((c) => `  ${c.name.padEnd(24)} ${c.ok ? 'ok' : 'NOT restored'}  ${c.detail}`)].join('\n');
}

/** After a rollback: exactly as before, or what differs. */
function exactness(r: { exact?: boolean; differences?: string[] }): string[] {
  if (r.exact === true) return ['every host runs exactly what it ran before'];
  if (r.exact === false) return ['NOT exactly as before:', ...(r.differences ?? []).map((d) => `  ✗ ${d}`)];
  return [];
}

// ---------------------------------------------------------------------------------------------
// Deploys

export function formatUnitLine(name: string, u: DeployProgress['units'][string]): string {
  const phase = u.phase === 'rolled-back' ? 'rolled back' : u.phase;
  return `  ${name.padEnd(24)} ${u.host.padEnd(8)} ${phase.padEnd(12)}${u.action ? ` ${u.action}` : ''}${u.error ? `  ${u.error}` : ''}`;
}

export function formatProgress(p: DeployProgress): string {
  const lines = [`release ${p.release} of ${p.project}: ${p.phase}`];
  const backup = formatBackupOutcome(p.backup);
  if (backup) lines.push(`  ${backup}`);
  for (const [name, u] of Object.entries(p.units)) lines.push(formatUnitLine(name, u));
  lines.push(...exactness(p));
  if (p.restore) lines.push(formatDataRestore(p.restore));
  if (p.error) lines.push(`error: ${p.error}`);
  if (p.notConfirmed) lines.push(`${p.notConfirmed}: \`migrate confirm ${p.release}\` once it is healthy, or \`migrate rollback ${p.release}\``);
  return lines.join('\n');
}

/** A follower's printer: for each progress read, the lines of the units whose phase changed since the last. */
export function unitChanges(): (p: DeployProgress) => string[] {
  const seen = new Map<string, string>();
  return (p) => Object.entries(p.units).flatMap(([name, u]) => {
    if (seen.get(name) === u.phase) return [];
    seen.set(name, u.phase);
    return [formatUnitLine(name, u)];
  });
}

// ---------------------------------------------------------------------------------------------
// Batches

const DONE = new Set<AgentPhase>(SETTLED_AGENT_PHASES);
const ms = (v?: number) => (v === undefined || Number.isNaN(v) ? '–' : `${v.toFixed(1)} ms`);

function bar(agents: AgentProgress[], width = 28): string {
  const done = agents.filter((a) => DONE.has(a.phase)).length;
  const filled = agents.length ? Math.round((done / agents.length) * width) : width;
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${agents.length}`;
}

function agentResult(a: AgentProgress): string {
  switch (a.phase) {
    case 'migrated': return a.firstInstall ? 'installed' : 'migrated (old kept as .prev)';
    case 'confirmed': return a.firstInstall ? 'installed, confirmed' : 'confirmed (.prev dropped)';
    case 'unchanged': return 'already at this version';
    default:
      // A routed agent between traffic steps (issue #13): its share on the new version, and what it waits for.
      if (a.awaitingApproval && !a.reason) return `${a.traffic ?? 0}% of its traffic on the new version; waits for \`migrate approve\``;
      return a.reason ?? '';
  }
}

/** A batch's progress bar, its backup, and one row per agent: phase, baseline vs now (p95), result. */
export function formatBatch(p: BatchResult & { phase?: string; paused?: boolean }): string {
  const table = new Table({ head: ['agent', 'host', 'phase', 'baseline p95', 'now p95', 'result'], style: { head: [], border: [] } });
  for (const a of p.agents) table.push([a.agent, a.host, a.phase, ms(a.baseline?.p95Ms), ms(a.now?.p95Ms), agentResult(a)]);
  const lines = [`${p.batch}: ${p.phase ?? p.status}${p.paused ? ' (paused)' : ''}  ${bar(p.agents)}`];
  const backup = formatBackupOutcome(p.backup);
  if (backup) lines.push(backup);
  if (p.reason) lines.push(p.reason);
  lines.push(table.toString(), ...exactness(p));
  const judged = p.agents.filter((a) => a.judge);
  if (judged.length) lines.push('judge (new version beside the old, probed in turn):', ...judged.map((a) => `  ${a.agent}: ${formatJudge(a.judge!)}`));
  if (p.restore) lines.push(formatDataRestore(p.restore));
  return lines.join('\n');
}

/** The judge's decision and its evidence on one line: counts, statistic, threshold, p-values. */
export function formatJudge(j: NonNullable<AgentProgress['judge']>): string {
  const p = (v: number) => (v < 0.0001 ? v.toExponential(1) : String(Math.round(v * 10000) / 10000));
  return `${j.verdict} — ${j.test} U=${j.u} (z=${j.z}${j.exact ? ', exact' : ''}) p=${p(j.pValue)} vs α=${j.alpha}${j.looks && j.looks > 1 ? ` (look ${j.look} of ${j.looks})` : ''}, min effect ${j.effectMs} ms; `
    + `p50 ${j.p50Ms.old} → ${j.p50Ms.new} ms, p95 ${j.p95Ms.old} → ${j.p95Ms.new} ms; errors ${j.errors.old}/${j.samples.old} → ${j.errors.new}/${j.samples.new} (max ${j.maxErrorRate * 100}%, p=${p(j.errorPValue)})`;
}

// ---------------------------------------------------------------------------------------------
// Open changes: the ledger, confirm and rollback

const when = (t?: number) => (t ? new Date(t).toISOString() : '–');

/** A change as the project ledger remembers it (its workflow execution is gone from Temporal). */
export function formatRecord(r: ChangeRecord): string {
  const what = r.kind === 'deploy' ? `release ${r.name}` : r.name;
  const lines = [
    `${what}: ${r.status}${r.outcome && r.outcome !== 'migrated' && r.outcome !== r.status ? ` (${r.outcome})` : ''} — from the project ledger (workflow ${r.workflowId} is no longer in Temporal's history)`,
    `  started ${when(r.startedAt)}, last change ${when(r.updatedAt)}${r.closedAt ? `, closed ${when(r.closedAt)}` : ''}`,
  ];
  const backup = formatBackupOutcome(r.backup);
  if (backup) lines.push(`  ${backup}`);
  for (const u of r.units) lines.push(`  ${u.unit.padEnd(24)} ${u.host.padEnd(8)} ${(u.action ?? '').padEnd(10)} ${(u.previousId ?? '–').slice(0, 12)} → ${(u.newId ?? '–').slice(0, 12)}`);
  if (r.reason) lines.push(`  ${r.reason}`);
  return lines.join('\n');
}

/** What a confirm or a rollback did. */
export function formatDecision(what: string, r: DecisionResult): string {
  const lines = [`${what}: ${r.status}`, ...exactness(r).map((l) => `  ${l}`)];
  if (r.restore) lines.push(formatDataRestore(r.restore));
  return lines.join('\n');
}

/** Did a confirm or rollback end as asked: exactly as before, and the data restored when asked. */
export function decisionOk(r: DecisionResult): boolean {
  return r.exact !== false && (!r.restore || r.restore.ok);
}

// ---------------------------------------------------------------------------------------------
// Live output

/** A block of text redrawn in place on a terminal (nothing is drawn elsewhere); `clear()` removes it. */
export function liveBlock(out: NodeJS.WriteStream = process.stdout): { show(text: string): void; clear(): void } {
  let lines = 0;
  const clear = () => {
    if (out.isTTY && lines) out.write(`\x1b[${lines}A\x1b[J`);
    lines = 0;
  };
  return {
    show(text) {
      if (!out.isTTY) return;
      clear();
      out.write(`${text}\n`);
      lines = text.split('\n').length;
    },
    clear,
  };
}

/** Follow a batch until it settles (ops.followBatch), its table redrawn in place when `live`; returns where it settled. */
export async function followBatchLive(handle: WorkflowHandle, live: boolean): Promise<BatchResult & { phase?: string }> {
  const block = liveBlock();
  try {
    return await followBatch(handle, live ? (p) => block.show(formatBatch(p)) : undefined);
  } finally {
    block.clear();
  }
}

/** Follow a deploy until it settles (ops.followDeploy); `say` gets a line each time a service changes phase. */
export function followDeployLines(handle: DeployHandle, say?: (line: string) => void): ReturnType<typeof followDeploy> {
  const changes = unitChanges();
  return followDeploy(handle, say && ((p) => { for (const line of changes(p)) say(line); }));
}
