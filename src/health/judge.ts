/**
 * Judging the health plane's readings (pure: no I/O, unit-tested without any server).
 *
 * Every host's worker publishes a heartbeat (src/health/publisher.ts). When a host's heartbeats stop,
 * who is at fault is told apart by one more fact, a TCP connect to the worker's peer port at the
 * host's address (made by the aggregator, and by every other host's worker):
 *
 *   connect accepted     → the worker lives but its heartbeats do not reach NATS: *partitioned*
 *   connection refused   → the host answers but nothing listens: *worker lost*
 *   no answer            → *partitioned* when another host that still publishes reaches it,
 *                          else *host lost*
 */

export type HostState = 'up' | 'lost' | 'worker-lost' | 'partitioned';
export type Reach = 'accepted' | 'refused' | 'unreachable';

export interface UnitReading {
  unit: string;
  host: string;
  ok: boolean;
  detail?: string;
  criticality: 'critical' | 'high' | 'medium' | 'low';
  /** When the unit was last probed (ms since epoch, the worker's clock). */
  at: number;
  /** Since when the unit has been in this state (ms since epoch). */
  since: number;
  /** Stopped by its own worker because the unit was failed over elsewhere (a fence). */
  fenced?: boolean;
}

export interface Heartbeat {
  host: string;
  /** The worker's clock, ms since epoch. */
  at: number;
  seq: number;
  worker: { pid: number; identity: string };
  engine: { ok: boolean; detail?: string };
  /** How this host reaches every other host's worker. */
  peers: Record<string, Reach>;
  /** The units this host's worker probes, and how many of them pass. */
  units: { total: number; healthy: number };
}

export interface HostView {
  host: string;
  state: HostState;
  reason: string;
  /** Age of its newest heartbeat (ms), absent when none was ever seen. */
  ageMs?: number;
  heartbeat?: Heartbeat;
}

export interface UnitView extends UnitReading {
  /** Age of the reading (ms); absent when there is none. */
  ageMs?: number;
  /** healthy/unhealthy as probed; stale when its host is not up (the reading is old news). */
  state: 'healthy' | 'unhealthy' | 'stale' | 'fenced';
}

export interface Aggregate {
  at: number;
  hosts: HostView[];
  units: UnitView[];
  /** A host is not up, or a critical unit is not healthy. */
  down: boolean;
}

export interface Observations {
  now: number;
  lostAfterMs: number;
  hosts: string[];
  /** Newest heartbeat per host with the time it was received (ms since epoch, the judge's clock). */
  heartbeats: Map<string, { heartbeat: Heartbeat; receivedAt: number }>;
  /** The judge's own connect to each host's worker port (only needed for silent hosts). */
  reach: Map<string, Reach>;
  units: { reading: UnitReading; receivedAt: number }[];
  /** Units the plan puts on each host: one with no reading (never probed, or expired with its silent host) is shown stale. */
  expected?: Pick<UnitReading, 'unit' | 'host' | 'criticality'>[];
}

export function judgeHost(host: string, o: Pick<Observations, 'now' | 'lostAfterMs' | 'heartbeats' | 'reach'>): HostView {
  const seen = o.heartbeats.get(host);
  const ageMs = seen ? Math.max(0, o.now - seen.receivedAt) : undefined;
  const base = { host, ageMs, heartbeat: seen?.heartbeat };
  if (ageMs !== undefined && ageMs <= o.lostAfterMs) return { ...base, state: 'up', reason: 'heartbeating' };
  const silent = ageMs === undefined ? 'no heartbeat ever seen' : `no heartbeat for ${(ageMs / 1000).toFixed(1)} s`;
  const reach = o.reach.get(host) ?? 'unreachable';
  if (reach === 'accepted') return { ...base, state: 'partitioned', reason: `${silent}, but its worker answers at its address: cut off from the health plane` };
  if (reach === 'refused') return { ...base, state: 'worker-lost', reason: `${silent}; the host answers but its worker does not (connection refused)` };
  const witnesses = [...o.heartbeats.values()]
    .filter(({ heartbeat: hb, receivedAt }) => hb.host !== host && o.now - receivedAt <= o.lostAfterMs && hb.peers[host] === 'accepted')
    .map(({ heartbeat: hb }) => hb.host);
  if (witnesses.length > 0) return { ...base, state: 'partitioned', reason: `${silent} and unreachable from here, but ${witnesses.join(', ')} still reach${witnesses.length === 1 ? 'es' : ''} its worker` };
  return { ...base, state: 'lost', reason: `${silent} and its address does not answer` };
}

export function aggregate(o: Observations): Aggregate {
  const hosts = o.hosts.map((h) => judgeHost(h, o));
  const upHosts = new Set(hosts.filter((h) => h.state === 'up').map((h) => h.host));
  const read = new Set(o.units.map(({ reading }) => `${reading.host}/${reading.unit}`));
  const missing: Observations['units'] = (o.expected ?? []).filter((e) => !read.has(`${e.host}/${e.unit}`))
    .map((e) => ({ reading: { ...e, ok: false, detail: 'no reading', at: 0, since: 0 }, receivedAt: Number.NaN }));
  const units = [...o.units, ...missing]
    .filter(({ reading }) => o.hosts.includes(reading.host))
    .map(({ reading, receivedAt }): UnitView => ({
      ...reading,
      ageMs: Number.isNaN(receivedAt) ? undefined : Math.max(0, o.now - receivedAt),
      state: reading.fenced ? 'fenced' : !upHosts.has(reading.host) || Number.isNaN(receivedAt) ? 'stale' : reading.ok ? 'healthy' : 'unhealthy',
    }))
    .sort((a, b) => a.host.localeCompare(b.host) || a.unit.localeCompare(b.unit));
  const down = hosts.some((h) => h.state !== 'up') || units.some((u) => u.criticality === 'critical' && u.state !== 'healthy' && u.state !== 'fenced');
  return { at: o.now, hosts, units, down };
}

export interface Transition {
  kind: 'host' | 'unit';
  host: string;
  unit?: string;
  from: string;
  to: string;
  reason?: string;
  at: number;
}

/** What changed between two aggregates: alerts (something went down) and recoveries (it came back). */
export function transitions(before: Aggregate | undefined, after: Aggregate): { alerts: Transition[]; recoveries: Transition[] } {
  const alerts: Transition[] = [];
  const recoveries: Transition[] = [];
  const prevHosts = new Map(before?.hosts.map((h) => [h.host, h.state]));
  for (const h of after.hosts) {
    const from = prevHosts.get(h.host);
    if (from === h.state || (from === undefined && h.state === 'up')) continue;
    const t: Transition = { kind: 'host', host: h.host, from: from ?? 'unknown', to: h.state, reason: h.reason, at: after.at };
    (h.state === 'up' ? recoveries : alerts).push(t);
  }
  const prevUnits = new Map(before?.units.map((u) => [`${u.host}/${u.unit}`, u.state]));
  for (const u of after.units) {
    const from = prevUnits.get(`${u.host}/${u.unit}`);
    // A stale unit follows its host's alert (and its return, its host's recovery); a fenced one is on purpose.
    if (from === u.state || u.state === 'stale' || u.state === 'fenced' || ((from === undefined || from === 'stale' || from === 'fenced') && u.state === 'healthy')) continue;
    const t: Transition = { kind: 'unit', host: u.host, unit: u.unit, from: from ?? 'unknown', to: u.state, reason: u.detail, at: after.at };
    (u.state === 'healthy' ? recoveries : alerts).push(t);
  }
  return { alerts, recoveries };
}

/**
 * When a heartbeat counts as received, for judging its host: a late one (flushed by a NATS client
 * that reconnects, or held in TCP retransmission after a link comes back) must not make its host
 * look up, since it says only that the host was alive when it was sent.
 *
 * The worker's clock and the judge's may differ, so lateness is measured against the smallest
 * delay (received − sent) of the host's recent heartbeats: that is the clocks' offset plus the
 * fastest transit. A heartbeat later than that by more than `toleranceMs` counts as received when
 * it would have been on time. A step of the worker's clock shows as a run of heartbeats that arrive
 * at their normal pace, all late by the same amount: after `steadyRun` of them the offset is taken
 * anew (faster than `lost_after` at any allowed setting, so a clock step never reads as a lost host).
 * A restarted worker (another pid) starts afresh; an older heartbeat (lower seq) than the last is ignored.
 */
export interface HeartbeatTiming {
  pid: number;
  seq: number;
  /** Received − sent of recent heartbeats, newest last. */
  delays: number[];
  /** When they were received, newest last. */
  arrivals: number[];
}

export const TIMING_WINDOW = 20;

export function timeHeartbeat(
  prev: HeartbeatTiming | undefined, hb: Pick<Heartbeat, 'at' | 'seq' | 'worker'>, receivedAt: number,
  o: { heartbeatMs: number; toleranceMs: number; steadyRun?: number },
): { timing: HeartbeatTiming; countsAt: number } | undefined {
  const steadyRun = o.steadyRun ?? 3;
  const same = prev && prev.pid === hb.worker.pid;
  if (same && hb.seq <= prev.seq) return undefined;
  const delay = receivedAt - hb.at;
  let delays = [...(same ? prev.delays : []), delay].slice(-TIMING_WINDOW);
  const arrivals = [...(same ? prev.arrivals : []), receivedAt].slice(-TIMING_WINDOW);
  const base = Math.min(...delays);
  if (delay - base > o.toleranceMs && arrivals.length >= steadyRun) {
    const recent = arrivals.slice(-steadyRun);
    const recentDelays = delays.slice(-steadyRun);
    const paced = recent.every((a, i) => i === 0 || a - recent[i - 1]! >= o.heartbeatMs / 2);
    const agree = Math.max(...recentDelays) - Math.min(...recentDelays) <= o.toleranceMs;
    if (paced && agree) delays = recentDelays; // the worker's clock stepped back: its offset is new
  }
  const late = delay - Math.min(...delays);
  return { timing: { pid: hb.worker.pid, seq: hb.seq, delays, arrivals }, countsAt: late > o.toleranceMs ? receivedAt - late : receivedAt };
}
