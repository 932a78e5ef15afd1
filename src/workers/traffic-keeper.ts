/**
 * Keeps a host's traffic proxy pointed at its routed containers (issue #13). A routed container
 * publishes its ports on ports the engine picks, and the engine picks new ones each time it starts
 * the container again — after a host reboot, or a crash under the restart policy — while the
 * proxy still sends the unit's traffic to the old ones. The keeper, run beside the host's worker,
 * follows the engine's `start` events of this project's routed containers and of the proxy itself,
 * and brings those routes to the ports as they are now (src/activities/traffic.ts, refreshRoutes).
 * Once when it starts too: a rebooted host's engine starts its containers before the worker runs.
 */
import type { HostContext } from '../activities/context.js';
import { createTrafficActivities } from '../activities/traffic.js';
import { LABELS } from '../plan/queues.js';

export interface TrafficKeeper {
  /** Resolves once the first pass (every route) is done. */
  ready: Promise<void>;
  stop(): void;
}

export function keepTrafficRoutes(context: HostContext, say: (line: string) => void = (l) => process.stderr.write(`${l}\n`)): TrafficKeeper {
  const { docker, project, host } = context;
  const traffic = createTrafficActivities(context);
  let stopped = false;
  let stream: NodeJS.ReadableStream | undefined;
  let retry: NodeJS.Timeout | undefined;
  /** Containers started since the last pass; `all` after the proxy itself started. */
  let pending = new Set<string>();
  let all = false;
  let timer: NodeJS.Timeout | undefined;

  const refresh = async (ids?: string[]) => {
    const units = await traffic.refreshRoutes(ids).catch((err: Error) => {
      say(`traffic ${host}: routes not refreshed: ${err.message}`);
      return [];
    });
    if (units.length) say(`traffic ${host}: ${units.join(', ')} started again on new ports; the proxy follows`);
  };
  const flush = () => {
    timer = undefined;
    const ids = all ? undefined : [...pending];
    pending = new Set();
    all = false;
    void refresh(ids);
  };

  const listen = async () => {
    if (stopped) return;
    try {
      stream = await docker.getEvents({ filters: { type: ['container'], event: ['start'], label: [`${LABELS.project}=${project}`] } });
      stream.on('data', (chunk: Buffer) => {
        for (const line of chunk.toString().split('\n').filter(Boolean)) {
          const e = JSON.parse(line) as { id?: string; Actor?: { Attributes?: Record<string, string> } };
          const labels = e.Actor?.Attributes ?? {};
          if (labels[LABELS.kind] === 'traffic-proxy') all = true;
          else if (labels[LABELS.routed] === 'true' && e.id) pending.add(e.id);
          else continue;
          timer ??= setTimeout(flush, 200); // a reboot starts many at once: one pass for them
        }
      });
      stream.on('error', () => undefined);
      stream.on('end', () => { if (!stopped) retry = setTimeout(() => void listen(), 1_000); });
    } catch (err) {
      say(`traffic ${host}: engine events: ${(err as Error).message}; retrying`);
      retry = setTimeout(() => void listen(), 1_000);
    }
  };

  const ready = listen().then(() => refresh());
  return {
    ready,
    stop() {
      stopped = true;
      clearTimeout(retry);
      clearTimeout(timer);
      (stream as unknown as { destroy?: () => void } | undefined)?.destroy?.();
    },
  };
}
