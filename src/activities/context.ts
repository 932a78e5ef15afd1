/** What a host's activities know about the host they run on. Built by the worker from the inventory. */
import { Context } from '@temporalio/activity';
import type Dockerode from 'dockerode';
import type { Host } from '../inventory/schema.js';

export interface HostContext {
  /** The inventory's name for this host; the worker polls `host-<name>`. */
  host: string;
  spec: Host;
  project: string;
  docker: Dockerode;
  /** The worker's identity as Temporal records it in history. */
  identity: string;
  /** Where this host keeps the tool's files (backups, build contexts). */
  dataDir: string;
}

/**
 * Tell the server this activity is alive (with what it got to). A local activity (an agent's look,
 * run inside its workflow task on the host's own worker: issue #14) has no heartbeat: it is skipped.
 */
export function beat(details?: unknown): void {
  const context = Context.current();
  if (!context.info.isLocal) context.heartbeat(details);
}
