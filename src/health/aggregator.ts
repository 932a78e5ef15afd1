/**
 * The aggregator: reads every host's heartbeats and unit readings off the health plane, asks a
 * silent host's address itself (src/health/judge.ts says why), judges, and publishes the view on
 * `<subjects>.aggregate`, what went down on `<subjects>.alerts` and what came back on
 * `<subjects>.recovery`. `snapshotHealth` is the same judgement once, from the bucket (the CLI's
 * `migrate health`); `startAggregator` keeps it current (`migrate health --watch`, which also starts
 * `failoverHost` for a lost host when given `--failover`).
 */
import type { HealthSettings } from '../inventory/schema.js';
import { aggregate, timeHeartbeat, transitions, type Aggregate, type HeartbeatTiming, type Heartbeat, type HostView, type Observations, type Reach, type Transition, type UnitReading } from './judge.js';
import { connectPlane, decode, encode, peerPorts, readValues, type Plane } from './plane.js';
import { ANSWER_MS, reach, reachTimeoutMs } from './publisher.js';

export interface PlaneTarget {
  project: string;
  settings: HealthSettings;
  /** Every host and its address (where its worker's peer port listens). */
  hosts: Record<string, string>;
  /** The units the plan puts on each host (shown stale when they have no reading). */
  expected?: Observations['expected'];
}

type Seen = Pick<Observations, 'heartbeats' | 'units'>;

async function readBucket(plane: Plane): Promise<Seen> {
  const heartbeats: Observations['heartbeats'] = new Map();
  const units: Observations['units'] = [];
  for (const { key, value, created } of await readValues<Heartbeat | UnitReading>(plane.nc, plane.readings, plane.names.bucket)) {
    if (key.includes('.')) units.push({ reading: value as UnitReading, receivedAt: created });
    else heartbeats.set(key, { heartbeat: value as Heartbeat, receivedAt: created });
  }
  return { heartbeats, units };
}

/** The judged view once, from the bucket: what `migrate health` prints. */
export async function snapshotHealth(target: PlaneTarget): Promise<Aggregate> {
  const plane = await connectPlane(target.settings, target.project, { name: 'migrate-health', failFast: true });
  try {
    const seen = await readBucket(plane);
    const now = Date.now();
    const reachMap = new Map<string, Reach>();
    const ports = peerPorts(target.settings, target.hosts);
    await Promise.all(Object.entries(target.hosts).map(async ([h, address]) => {
      const hb = seen.heartbeats.get(h);
      if (!hb || now - hb.receivedAt > target.settings.lost_after) reachMap.set(h, await reach(address, ports[h]!, reachTimeoutMs(target.settings)));
    }));
    return aggregate({ now, lostAfterMs: target.settings.lost_after, hosts: Object.keys(target.hosts), reach: reachMap, expected: target.expected, ...seen });
  } finally {
    await plane.close();
  }
}

export interface Aggregator {
  plane: Plane;
  current(): Aggregate | undefined;
  /** Resolves with the first view `test` accepts (or rejects after `timeoutMs`). */
  until(test: (view: Aggregate) => boolean, timeoutMs: number): Promise<Aggregate>;
  stop(): Promise<void>;
}

export interface AggregatorOptions extends PlaneTarget {
  /** How often the view is judged (default 50 ms). */
  tickMs?: number;
  onView?: (view: Aggregate, changes: { alerts: Transition[]; recoveries: Transition[] }) => void;
  /** A host was judged lost (not worker-lost, not partitioned). */
  onHostLost?: (host: HostView) => void;
}

export async function startAggregator(options: AggregatorOptions): Promise<Aggregator> {
  const { settings } = options;
  const hosts = Object.keys(options.hosts);
  const ports = peerPorts(settings, options.hosts);
  const plane = await connectPlane(settings, options.project, { name: `migrate-aggregator-${process.pid}`, pingIntervalMs: 1_000 });
  const { nc, names } = plane;
  const seen = await readBucket(plane);
  const heartbeats = seen.heartbeats;
  const units = new Map(seen.units.map((u) => [`${u.reading.host}.${u.reading.unit}`, u]));
  const timings = new Map<string, HeartbeatTiming>();
  const reachOf = new Map<string, { reach: Reach; at: number }>();
  const probing = new Set<string>();
  /** When the probe now waiting for each host started. */
  const inflight = new Map<string, number>();
  let view: Aggregate | undefined;
  let lastPublished = 0;
  let dirty = true;
  const waiters = new Set<{ test: (v: Aggregate) => boolean; resolve: (v: Aggregate) => void }>();

  const sub = nc.subscribe(names.statusAll, {
    callback: (err, msg) => {
      if (err) return;
      const m = decode<{ type: 'heartbeat'; heartbeat: Heartbeat } | { type: 'unit'; reading: UnitReading }>(msg.data);
      const receivedAt = Date.now();
      if (m.type === 'heartbeat') {
        // A late heartbeat (flushed after a reconnect) counts as received when it was due, not now.
        const timed = timeHeartbeat(timings.get(m.heartbeat.host), m.heartbeat, receivedAt, { heartbeatMs: settings.heartbeat, toleranceMs: settings.heartbeat });
        if (!timed) return;
        timings.set(m.heartbeat.host, timed.timing);
        const before = heartbeats.get(m.heartbeat.host);
        heartbeats.set(m.heartbeat.host, { heartbeat: m.heartbeat, receivedAt: Math.max(timed.countsAt, before?.receivedAt ?? 0) });
      } else {
        const key = `${m.reading.host}.${m.reading.unit}`;
        const before = units.get(key)?.reading;
        units.set(key, { reading: m.reading, receivedAt });
        if (!before || before.ok !== m.reading.ok || before.fenced !== m.reading.fenced) dirty = true;
      }
    },
  });

  /** Ask a host that has gone quiet for longer than two heartbeats whether its worker answers. */
  function probeSilent(now: number): void {
    for (const h of hosts) {
      const hb = heartbeats.get(h);
      const quiet = !hb || now - hb.receivedAt > Math.min(2 * settings.heartbeat, settings.lost_after / 2);
      if (!quiet || probing.has(h)) continue;
      probing.add(h);
      const started = Date.now();
      inflight.set(h, started);
      void reach(options.hosts[h]!, ports[h]!, reachTimeoutMs(settings)).then((r) => {
        reachOf.set(h, { reach: r, at: started });
        probing.delete(h);
        inflight.delete(h);
        dirty = true;
      });
    }
  }

  function tick(): void {
    const now = Date.now();
    probeSilent(now);
    // Only a reach measured after the host went quiet speaks for it; without one, its last judgement stands.
    const reachMap = new Map<string, Reach>();
    // An answer (accepted, refused) comes back within milliseconds; a probe that has waited longer
    // than that means the answer before it is out of date (the link went down since): hold until it ends.
    for (const [h, r] of reachOf) {
      const hb = heartbeats.get(h);
      const waiting = inflight.get(h);
      const outdated = r.reach !== 'unreachable' && waiting !== undefined && waiting > r.at && now - waiting > ANSWER_MS;
      if ((!hb || r.at >= hb.receivedAt) && !outdated) reachMap.set(h, r.reach);
    }
    const next = aggregate({ now, lostAfterMs: settings.lost_after, hosts, heartbeats, reach: reachMap, units: [...units.values()], expected: options.expected });
    next.hosts = next.hosts.map((hv) => {
      const hb = heartbeats.get(hv.host);
      const silent = !hb || now - hb.receivedAt > settings.lost_after;
      if (!silent || reachMap.has(hv.host)) return hv;
      const before = view?.hosts.find((p) => p.host === hv.host);
      return before ? { ...before, ageMs: hv.ageMs } : hv;
    });
    next.down = next.hosts.some((h) => h.state !== 'up') || next.units.some((u) => u.criticality === 'critical' && u.state !== 'healthy' && u.state !== 'fenced');
    const changes = transitions(view, next);
    const changed = dirty || changes.alerts.length + changes.recoveries.length > 0;
    view = next;
    dirty = false;
    for (const t of changes.alerts) nc.publish(names.alerts, encode(t));
    for (const t of changes.recoveries) nc.publish(names.recovery, encode(t));
    if (changed || now - lastPublished >= 1_000) {
      nc.publish(names.aggregate, encode(next));
      lastPublished = now;
    }
    options.onView?.(next, changes);
    // Only a host this aggregator has seen is failed over: one silent since it started may simply not be set up yet.
    for (const t of changes.alerts) {
      if (t.kind === 'host' && t.to === 'lost' && t.from !== 'unknown') options.onHostLost?.(next.hosts.find((h) => h.host === t.host)!);
    }
    for (const w of waiters) {
      if (w.test(next)) {
        waiters.delete(w);
        w.resolve(next);
      }
    }
  }

  const timer = setInterval(tick, options.tickMs ?? 50);
  tick();
  return {
    plane,
    current: () => view,
    until(test, timeoutMs) {
      if (view && test(view)) return Promise.resolve(view);
      return new Promise((resolve, reject) => {
        const w = { test, resolve: (v: Aggregate) => { clearTimeout(t); resolve(v); } };
        const t = setTimeout(() => {
          waiters.delete(w);
          reject(new Error(`the health view did not reach the expected state within ${timeoutMs / 1000} s; last: ${JSON.stringify(view?.hosts.map((h) => [h.host, h.state, h.reason]))} ${JSON.stringify(view?.units.map((u) => [u.host, u.unit, u.state, u.detail]))}`));
        }, timeoutMs);
        waiters.add(w);
      });
    },
    async stop() {
      clearInterval(timer);
      sub.unsubscribe();
      await plane.close().catch(() => undefined);
    },
  };
}
