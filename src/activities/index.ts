/** Every activity a host's worker offers, built from that host's clients. */
import type { HostContext } from './context.js';
import { createHostInfoActivities } from './host-info.js';
import { createDockerActivities, type ChangeStamp, type ContainerRef } from './docker.js';
import { createHealthActivities, type HealthyResult, type ThenSample } from './health.js';
import type { UnitSpec } from '../plan/plan.js';
import { createBackupStoreActivities } from './backup-store.js';
import { createPostgresActivities } from './postgres.js';
import { createRedisActivities } from './redis.js';
import { createInfluxActivities } from './influx.js';
import { createFenceActivities } from './fence.js';
import { createTrafficActivities } from './traffic.js';

export function createHostActivities(ctx: HostContext) {
  const docker = createDockerActivities(ctx);
  const health = createHealthActivities(ctx);
  return {
    ...createHostInfoActivities(ctx),
    ...docker,
    ...health,
    /**
     * Create-or-reuse the unit's container and start it (`ensureContainer`), then wait until it is
     * healthy (`waitHealthy`, with `then`: and sample it): one call for what a deploy did in two
     * (issue #14: a round trip and a workflow task less per service). Idempotent as both are: a
     * retry finds the container it started and waits again. A cancel is seen only in the wait: the
     * container it was making is made first (the workflow waits for that: see PROFILES.start).
     */
    async startHealthy(unit: UnitSpec, stamp: ChangeStamp, then?: ThenSample): Promise<StartedHealthy> {
      const container = await docker.ensureContainer(unit, stamp);
      return { ...(await health.waitHealthy(unit, undefined, then)), container };
    },
    ...createBackupStoreActivities(ctx),
    ...createPostgresActivities(ctx),
    ...createRedisActivities(ctx),
    ...createInfluxActivities(ctx),
    ...createFenceActivities(ctx),
    ...createTrafficActivities(ctx),
  };
}

/** A started container, healthy: what `startHealthy` returns. */
export interface StartedHealthy extends HealthyResult {
  container: ContainerRef;
}

export type HostActivities = ReturnType<typeof createHostActivities>;
export type { HostContext };
