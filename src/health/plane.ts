/**
 * The health plane on NATS JetStream (one outside system: NATS). Names of subjects and buckets, and
 * connecting to them.
 *
 *   <subjects>.status.<host>   every heartbeat and every unit change of <host> (core NATS, fast)
 *   <subjects>.aggregate       the aggregator's judged view, on every change and once a second
 *   <subjects>.alerts          a host or a critical unit went down
 *   <subjects>.recovery        it came back
 *
 * KV bucket `health_<project>`: key `<host>` = its latest heartbeat, `<host>.<unit>` = the unit's latest
 * reading. The bucket's max age expires keys no one refreshes, so a silent host goes stale on its own.
 * KV bucket `fence_<project>` (no expiry): key `<host>.<unit>` = the unit was failed over elsewhere;
 * the worker of <host> keeps its copy stopped while the key exists.
 */
import { connect, StringCodec, type KV, type NatsConnection } from 'nats';
import type { HealthSettings } from '../inventory/schema.js';
import type { UnitSpec } from '../plan/plan.js';

export const codec = StringCodec();

export interface PlaneNames {
  status: (host: string) => string;
  statusAll: string;
  aggregate: string;
  alerts: string;
  recovery: string;
  bucket: string;
  fenceBucket: string;
}

export function planeNames(project: string, subjects = 'health'): PlaneNames {
  const bucketSafe = project.replace(/[^A-Za-z0-9_-]/g, '_');
  return {
    status: (host) => `${subjects}.status.${host}`,
    statusAll: `${subjects}.status.*`,
    aggregate: `${subjects}.aggregate`,
    alerts: `${subjects}.alerts`,
    recovery: `${subjects}.recovery`,
    bucket: `health_${bucketSafe}`,
    fenceBucket: `fence_${bucketSafe}`,
  };
}

/**
 * Each host's peer port: `peer_port`, except where hosts share an address (one engine, hosts left on
 * 127.0.0.1): there the second gets peer_port + 1, the third + 2, in the inventory's order, so no two
 * workers' listeners clash and a probe asks the worker it means. Every side (worker, peers,
 * aggregator) computes it from the same hosts and addresses. Pure.
 */
export function peerPorts(settings: Pick<HealthSettings, 'peer_port'>, hosts: Record<string, string>): Record<string, number> {
  const taken = new Map<string, number>();
  return Object.fromEntries(Object.entries(hosts).map(([host, address]) => {
    const n = taken.get(address) ?? 0;
    taken.set(address, n + 1);
    return [host, settings.peer_port + n];
  }));
}

/** Keys older than this vanish from the health bucket (a silent host's readings go with them). */
export function readingMaxAgeMs(settings: Pick<HealthSettings, 'lost_after'>): number {
  return Math.max(5_000, 5 * settings.lost_after);
}

export interface FenceRecord {
  unit: string;
  /** The host whose copy must stay stopped. */
  from: string;
  /** Where the unit runs now. */
  to: string;
  /** The failover workflow that moved it. */
  workflowId: string;
  at: number;
  /** The unit as it runs on `to` (that host's worker probes it there). */
  spec?: UnitSpec;
  /** The unit as it ran on `from`: what failback starts again there, exactly. */
  home?: UnitSpec;
}

export const fenceKey = (host: string, unit: string) => `${host}.${unit}`;

export interface Plane {
  nc: NatsConnection;
  names: PlaneNames;
  readings: KV;
  fences: KV;
  close(): Promise<void>;
}

export interface ConnectOptions {
  name: string;
  /** Fail at once when no server answers (CLI), instead of waiting for one (workers). */
  failFast?: boolean;
  /** How often the client pings the server: a cut link is noticed after about two missed pings. */
  pingIntervalMs?: number;
}

export async function connectPlane(settings: HealthSettings, project: string, options: ConnectOptions): Promise<Plane> {
  const names = planeNames(project, settings.subjects);
  let nc: NatsConnection;
  try {
    nc = await connect({
      servers: settings.nats,
      name: options.name,
      reconnect: true,
      maxReconnectAttempts: -1,
      reconnectTimeWait: 200,
      waitOnFirstConnect: !options.failFast,
      timeout: 2_000,
      pingInterval: options.pingIntervalMs ?? 1_000,
      maxPingOut: 2,
    });
  } catch (err) {
    throw new Error(`cannot reach NATS at ${settings.nats.join(', ')} (${(err as Error).message}): start a server with JetStream (nats-server -js), or fix health.nats in the inventory`);
  }
  try {
    const js = nc.jetstream();
    const readings = await js.views.kv(names.bucket, { history: 1, ttl: readingMaxAgeMs(settings) });
    const fences = await js.views.kv(names.fenceBucket, { history: 1 });
    return { nc, names, readings, fences, close: () => nc.close() };
  } catch (err) {
    await nc.close().catch(() => undefined);
    throw new Error(`NATS at ${settings.nats.join(', ')} answers but its JetStream key-value store does not (${(err as Error).message}): start the server with JetStream enabled (nats-server -js)`);
  }
}

export const encode = (value: unknown) => codec.encode(JSON.stringify(value));
export const decode = <T>(data: Uint8Array): T => JSON.parse(codec.decode(data)) as T;

/**
 * The keys of a bucket (optionally under a filter like `pc2.>`), from the stream's subjects. Not
 * `kv.keys()`: that stops when the server says nothing is pending, which nats-server 2.9 (Debian's)
 * miscounts for last-per-subject consumers, so keys went missing.
 */
export async function listKeys(nc: NatsConnection, bucket: string, filter = '>'): Promise<string[]> {
  const jsm = await nc.jetstreamManager();
  const prefix = `$KV.${bucket}.`;
  const info = await jsm.streams.info(`KV_${bucket}`, { subjects_filter: `${prefix}${filter}` });
  return Object.keys(info.state.subjects ?? {}).map((s) => s.slice(prefix.length)).sort();
}

/** The current values of a bucket's keys (deleted and expired ones left out). */
export async function readValues<T>(nc: NatsConnection, kv: KV, bucket: string, filter = '>'): Promise<{ key: string; value: T; created: number }[]> {
  const out: { key: string; value: T; created: number }[] = [];
  for (const key of await listKeys(nc, bucket, filter)) {
    const e = await kv.get(key);
    if (e && e.operation === 'PUT' && e.value.length > 0) out.push({ key, value: decode<T>(e.value), created: e.created.getTime() });
  }
  return out;
}

/** Every fence record whose copy is `host`'s (or every one, without `host`). */
export async function fencesOf(plane: Pick<Plane, 'nc' | 'fences' | 'names'>, host?: string): Promise<FenceRecord[]> {
  return (await readValues<FenceRecord>(plane.nc, plane.fences, plane.names.fenceBucket, host ? `${host}.>` : '>')).map((v) => v.value);
}
