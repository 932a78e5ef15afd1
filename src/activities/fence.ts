/**
 * Fence records on the health plane's NATS key-value store (one outside system: NATS), written and
 * cleared by failoverHost and failbackHost on a surviving host's queue. While `<host>.<unit>` exists,
 * the worker of <host> keeps its copy of <unit> stopped (src/health/publisher.ts). Idempotent: a put
 * overwrites, a delete of a missing key is success.
 */
import { log } from '@temporalio/activity';
import type { HealthSettings } from '../inventory/schema.js';
import { connectPlane, encode, fenceKey, fencesOf, type FenceRecord, type Plane } from '../health/plane.js';
import { observeFailover } from '../metrics/migrate.js';
import type { HostContext } from './context.js';

export interface PlaneRef {
  project: string;
  settings: HealthSettings;
}

export function createFenceActivities(ctx: HostContext) {
  const planes = new Map<string, Promise<Plane>>();
  const planeFor = (ref: PlaneRef) => {
    const key = `${ref.project}|${ref.settings.nats.join(',')}|${ref.settings.subjects}`;
    let p = planes.get(key);
    if (!p) {
      p = connectPlane(ref.settings, ref.project, { name: `fence-${ctx.host}-${process.pid}`, failFast: true });
      p.catch(() => planes.delete(key));
      planes.set(key, p);
    }
    return p;
  };

  return {
    /** Write the fence: `record.from`'s copy of the unit stays stopped from now on. */
    async writeFence(ref: PlaneRef, record: FenceRecord): Promise<void> {
      const { fences } = await planeFor(ref);
      await fences.put(fenceKey(record.from, record.unit), encode(record));
      log.info('fence written', { unit: record.unit, from: record.from, to: record.to });
    },

    async clearFence(ref: PlaneRef, host: string, unit: string): Promise<void> {
      const { fences } = await planeFor(ref);
      await fences.delete(fenceKey(host, unit));
      log.info('fence cleared', { unit, host });
    },

    async listFences(ref: PlaneRef, host: string): Promise<FenceRecord[]> {
      return fencesOf(await planeFor(ref), host);
    },

    /** Count a finished move (migrate_failovers_total). */
    async countFailover(from: string, to: string, unit: string, outcome: 'moved' | 'failed' | 'failed-back'): Promise<void> {
      observeFailover({ from, to, unit, outcome });
    },
  };
}

export type FenceActivities = ReturnType<typeof createFenceActivities>;
