/** Every activity a host's worker offers, built from that host's clients. */
import type { HostContext } from './context.js';
import { createHostInfoActivities } from './host-info.js';
import { createDockerActivities } from './docker.js';
import { createHealthActivities } from './health.js';
import { createBackupStoreActivities } from './backup-store.js';
import { createPostgresActivities } from './postgres.js';
import { createRedisActivities } from './redis.js';
import { createInfluxActivities } from './influx.js';
import { createFenceActivities } from './fence.js';
import { createTrafficActivities } from './traffic.js';

export function createHostActivities(ctx: HostContext) {
  return {
    ...createHostInfoActivities(ctx),
    ...createDockerActivities(ctx),
    ...createHealthActivities(ctx),
    ...createBackupStoreActivities(ctx),
    ...createPostgresActivities(ctx),
    ...createRedisActivities(ctx),
    ...createInfluxActivities(ctx),
    ...createFenceActivities(ctx),
    ...createTrafficActivities(ctx),
  };
}

export type HostActivities = ReturnType<typeof createHostActivities>;
export type { HostContext };
