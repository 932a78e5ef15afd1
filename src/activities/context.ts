/** What a host's activities know about the host they run on. Built by the worker from the inventory. */
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
