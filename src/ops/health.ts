/**
 * Host loss, as the CLI and tests call it: the health plane's view (`healthView`), the aggregator
 * that starts `failoverHost` for a lost host (`watchHealth`), an operator's approval of a stateful
 * move, and `failback`.
 */
import { WorkflowExecutionAlreadyStartedError, type Client, type WorkflowHandle } from '@temporalio/client';
import type { Inventory } from '../inventory/schema.js';
import { snapshotHealth, startAggregator, type Aggregator, type PlaneTarget } from '../health/aggregator.js';
import type { Aggregate, HostView, Transition } from '../health/judge.js';
import { connectPlane, fencesOf } from '../health/plane.js';
import { planFailback, planFailover, type FailoverMove } from '../plan/failover.js';
import { buildPlan, type PlanOptions, type UnitSpec } from '../plan/plan.js';
import { ORCHESTRATOR_QUEUE } from '../plan/queues.js';
import { approveFailoverUpdate, failbackHost, failoverHost, failoverProgressQuery, type FailbackResult, type FailoverProgress } from '../workflows/failover.js';
import { BadInput, OperationFailed } from './errors.js';

export const failoverWorkflowId = (project: string, host: string) => `failover-${project}-${host}`;
export const failbackWorkflowId = (project: string, host: string) => `failback-${project}-${host}`;

/** Where the health plane is, from the inventory (`health:`), or bad input naming the fix. */
export function planeTarget(inventory: Inventory, options: PlanOptions = {}): PlaneTarget {
  if (!inventory.health) {
    throw new BadInput('no health plane', [{ path: 'health', message: 'the inventory names no NATS server for the health plane', fix: 'add health: { nats: [nats://127.0.0.1:4222] } (a nats-server started with -js); every worker then publishes its host\'s health' }]);
  }
  const plan = buildPlan(inventory, options);
  return {
    project: inventory.project,
    settings: inventory.health,
    hosts: Object.fromEntries(plan.hosts.map((h) => [h.name, h.address])),
    // Agents run only once a batch started them: the stack's services are what every host must show.
    expected: Object.values(plan.units).filter((u) => u.kind === 'service' && !u.job).map((u) => ({ unit: u.name, host: u.host, criticality: u.criticality })),
  };
}

export async function healthView(inventory: Inventory, options: PlanOptions = {}): Promise<Aggregate> {
  const target = planeTarget(inventory, options);
  try {
    return await snapshotHealth(target);
  } catch (err) {
    throw new OperationFailed((err as Error).message);
  }
}

/** Start (or find) the failover of `host`: the plan decides where its units go among the hosts that are up. */
export async function startFailover(client: Client, inventory: Inventory, lost: HostView, upHosts: string[], options: PlanOptions = {}, mapSpec?: (spec: UnitSpec) => UnitSpec): Promise<WorkflowHandle<typeof failoverHost>> {
  const target = planeTarget(inventory, options);
  const planned = planFailover(inventory, lost.host, upHosts, options);
  const { stays } = planned;
  // --stub (dev, demo, tests): the stand-in image on both sides, as the deploy ran it.
  const moves = mapSpec ? planned.moves.map((m) => ({ ...m, spec: mapSpec(m.spec), home: mapSpec(m.home) })) : planned.moves;
  const workflowId = failoverWorkflowId(inventory.project, lost.host);
  try {
    return await client.workflow.start(failoverHost, {
      taskQueue: ORCHESTRATOR_QUEUE,
      workflowId,
      args: [{ project: inventory.project, lostHost: lost.host, plane: { project: target.project, settings: target.settings }, moves, stays, reason: lost.reason }],
      staticSummary: `failover of ${lost.host}: ${moves.map((m) => `${m.unit} → ${m.to}`).join(', ') || 'nothing to move'}`,
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError) return client.workflow.getHandle(workflowId);
    throw err;
  }
}

export interface WatchOptions {
  /** Start failoverHost for a host judged lost. */
  failover?: { client: Client; planOptions?: PlanOptions; mapSpec?: (spec: UnitSpec) => UnitSpec };
  onView?: (view: Aggregate, changes: { alerts: Transition[]; recoveries: Transition[] }) => void;
  onFailover?: (host: string, workflowId: string) => void;
  onError?: (err: Error) => void;
}

/**
 * The aggregator, running: who starts failoverHost when a host is lost (`migrate health --watch
 * --failover`, one such process per system). Only *lost* starts it: a worker lost or a partitioned
 * host keeps its units where they are.
 */
export async function watchHealth(inventory: Inventory, options: WatchOptions = {}, planOptions: PlanOptions = {}): Promise<Aggregator> {
  const target = planeTarget(inventory, planOptions);
  let aggregator: Aggregator | undefined = undefined;
  const started = new Set<string>();
  aggregator = await startAggregator({
    ...target,
    onView: options.onView,
    onHostLost: (lost) => {
      const fo = options.failover;
      if (!fo || started.has(lost.host)) return;
      started.add(lost.host);
      const up = aggregator?.current()?.hosts.filter((h) => h.state === 'up').map((h) => h.host) ?? [];
      startFailover(fo.client, inventory, lost, up, fo.planOptions ?? planOptions, fo.mapSpec).then(
        (h) => options.onFailover?.(lost.host, h.workflowId),
        (err: Error) => { started.delete(lost.host); options.onError?.(err); },
      );
    },
  }).catch((err: Error) => { throw new OperationFailed(err.message); });
  return aggregator;
}

export async function failoverProgress(client: Client, project: string, host: string): Promise<FailoverProgress> {
  return client.workflow.getHandle(failoverWorkflowId(project, host)).query(failoverProgressQuery);
}

export async function approveFailover(client: Client, project: string, host: string, unit: string, backupId?: string): Promise<{ unit: string; to: string }> {
  try {
    return await client.workflow.getHandle(failoverWorkflowId(project, host)).executeUpdate(approveFailoverUpdate, { args: [{ unit, ...(backupId ? { backupId } : {}) }] });
  } catch (err) {
    throw new OperationFailed(`cannot approve ${unit}'s failover from ${host}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
  }
}

/** Move the units failed over from `host` back to it (from the fence records), exactly; waits for the result. */
export async function failback(client: Client, inventory: Inventory, host: string, options: PlanOptions = {}, tuning: { freezeHoldMs?: number } = {}): Promise<FailbackResult> {
  const target = planeTarget(inventory, options);
  if (!(host in target.hosts)) throw new BadInput('unknown host', [{ path: 'host', message: `no host "${host}" in the inventory`, fix: `use one of: ${Object.keys(target.hosts).join(', ')}` }]);
  const plane = await connectPlane(target.settings, target.project, { name: 'migrate-failback', failFast: true }).catch((err: Error) => { throw new OperationFailed(err.message); });
  let fences;
  try {
    fences = await fencesOf(plane, host);
  } finally {
    await plane.close();
  }
  // Back exactly as it ran: the fence keeps the unit's spec at home and where it was moved.
  // A stateful unit's data comes back with it: its backup target where it runs now and at home.
  const moves: FailoverMove[] = fences.filter((f) => f.spec && f.home).map((f) => planFailback(inventory, host, { unit: f.unit, to: f.to, spec: f.spec!, home: f.home! }, options));
  if (moves.length === 0) return { host, units: [] };
  const settings = target.settings;
  const handle = await client.workflow.start(failbackHost, {
    taskQueue: ORCHESTRATOR_QUEUE,
    workflowId: failbackWorkflowId(inventory.project, host),
    workflowIdConflictPolicy: 'USE_EXISTING',
    args: [{ project: inventory.project, host, plane: { project: target.project, settings }, moves, fenceRefreshMs: 2 * Math.max(1_000, 4 * settings.heartbeat), ...tuning }],
    staticSummary: `failback to ${host}: ${moves.map((m) => m.unit).join(', ')}`,
  });
  return handle.result();
}
