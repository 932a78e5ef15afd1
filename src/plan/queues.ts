/**
 * Task-queue and naming conventions shared by the client, the workers and the workflows.
 * Pure and deterministic: safe to import from workflow code.
 */

/** Workflows run here; any worker process may poll it. */
export const ORCHESTRATOR_QUEUE = 'orchestrator';

/** Activities that touch one host run on that host's queue, polled only by that host's worker. */
export function hostQueue(host: string): string {
  return `host-${host}`;
}

/**
 * Container name: project, host and unit together, so several hosts (and several projects) can
 * share one Docker engine without touching each other's containers.
 */
export function containerName(project: string, host: string, unit: string): string {
  return `${project}-${host}-${unit}`;
}

/** The network all of a project's containers on one host join; units reach each other by name. */
export function networkName(project: string, host: string): string {
  return `${project}-${host}`;
}

/** Labels every container the tool creates carries. */
export const LABELS = {
  project: 'io.agent-migrate.project',
  host: 'io.agent-migrate.host',
  unit: 'io.agent-migrate.unit',
  kind: 'io.agent-migrate.kind',
  release: 'io.agent-migrate.release',
  specHash: 'io.agent-migrate.spec-hash',
  role: 'io.agent-migrate.role',
} as const;

/** Where a replaced container is kept, stopped, until its release is confirmed (instant rollback). */
export function previousName(container: string): string {
  return `${container}.prev`;
}
