/**
 * Task-queue and naming conventions shared by the client, the workers and the workflows.
 * Pure and deterministic: safe to import from workflow code.
 */

/** Workflows run here, and the activities that only talk to Temporal (the ledger); any worker process may poll it. */
export const ORCHESTRATOR_QUEUE = 'orchestrator';

/** Activities that touch one host run on that host's queue, polled only by that host's worker. */
export function hostQueue(host: string): string {
  return `host-${host}`;
}

/**
 * A container's name, for people: `<project>_<host>_<unit>`. Identity is the labels (project, host,
 * unit), never the name. Project and host names cannot contain "_", so no two units share a name.
 */
export function containerName(project: string, host: string, unit: string): string {
  return `${project}_${host}_${unit}`;
}

/** The name a retired container is kept under, stopped, until its change is confirmed. Unit names cannot end in it. */
export const PREVIOUS_SUFFIX = '.prev';

export function previousName(container: string): string {
  return `${container}${PREVIOUS_SUFFIX}`;
}

/** The network all of a project's containers on one host join; units reach each other by name. */
export function networkName(project: string, host: string): string {
  return `${project}-${host}`;
}

/** Labels every container the tool creates carries. They are the container's identity. */
export const LABELS = {
  project: 'io.agent-migrate.project',
  host: 'io.agent-migrate.host',
  unit: 'io.agent-migrate.unit',
  kind: 'io.agent-migrate.kind',
  release: 'io.agent-migrate.release',
  specHash: 'io.agent-migrate.spec-hash',
  /** The change (deploy or batch run) that created the container. */
  change: 'io.agent-migrate.change',
  /**
   * A unit's candidate: its new version started beside the running one to be judged (issue #13).
   * It carries this label (the unit's name) instead of `unit`, so it is never taken for the unit's
   * current or kept container.
   */
  candidate: 'io.agent-migrate.candidate',
  /**
   * A routed unit's container (issue #13): published on engine-picked loopback ports behind the
   * host's traffic proxy, which owns the unit's published ports. Born a candidate (`….next`, with the
   * unit's label too, so it is the unit's once renamed), promoted by renaming.
   */
  routed: 'io.agent-migrate.routed',
} as const;

/** The name suffix of a unit's candidate (its new version, judged beside the running one). */
export const CANDIDATE_SUFFIX = '.next';
