/**
 * A host's side of the health plane, run by its `migrate worker`: every `heartbeat` it publishes its
 * heartbeat and probes its engine and its peers' workers; twice per heartbeat it probes its units
 * (src/health/plane.ts). A unit's change is published as soon as a probe sees it.
 *
 * Fencing. A unit failed over elsewhere has a fence record for this host: while it exists, this
 * worker keeps its copy stopped. A worker that has heard no acknowledgement from NATS for twice
 * `lost_after` assumes the others judge its host lost and stops its units that have a failover
 * policy itself, before their new copies serve; back on the plane, it starts again those no
 * failover moved and keeps the fenced ones stopped. So a singleton never runs twice.
 */
import net from 'node:net';
import type { HostContext } from '../activities/context.js';
import { createHealthActivities } from '../activities/health.js';
import type { HealthSettings, Inventory } from '../inventory/schema.js';
import type { UnitSpec } from '../plan/plan.js';
import { containerName } from '../plan/queues.js';
import { setHostLost } from '../metrics/migrate.js';
import type { Aggregate, Heartbeat, Reach, UnitReading } from './judge.js';
import { connectPlane, decode, encode, fencesOf, peerPorts, type Plane } from './plane.js';

export interface PublisherOptions {
  context: HostContext;
  inventory: Inventory;
  settings: HealthSettings;
  /** The units planned on this host (the plan as this worker sees it). */
  units: UnitSpec[];
  /** Every host's address, for the peer probes. */
  peers: Record<string, string>;
  log?: (line: string) => void;
}

export interface HealthPublisher {
  plane: Plane;
  /** Units this worker stopped because the plane was gone (and may start again). */
  selfFenced(): string[];
  stop(): Promise<void>;
}

/** A TCP connect to a worker's peer port: accepted, refused (the host answers, no worker), or no answer. */
export function reach(address: string, port: number, timeoutMs: number): Promise<Reach> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: address, port });
    const done = (r: Reach) => { socket.destroy(); resolve(r); };
    socket.setTimeout(timeoutMs, () => done('unreachable'));
    socket.once('connect', () => done('accepted'));
    socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'unreachable'));
  });
}

/** Longer than a connect to a live host takes, even on a loaded machine: a probe waiting longer says the host does not answer. */
export const ANSWER_MS = 150;

/** How long a connect to a peer's worker port may take before the peer counts as unreachable (a loaded machine answers late). */
export const reachTimeoutMs = (s: Pick<HealthSettings, 'lost_after'>) => Math.max(300, Math.round(0.75 * s.lost_after));

const sameReading = (a: UnitReading | undefined, b: UnitReading) => a !== undefined && a.ok === b.ok && a.fenced === b.fenced && a.detail === b.detail;

export async function startHealthPublisher(options: PublisherOptions): Promise<HealthPublisher> {
  const { context, settings, inventory } = options;
  const { host, docker, project } = context;
  const log = options.log ?? ((line: string) => process.stderr.write(`health ${host}: ${line}\n`));
  const probes = createHealthActivities(context);
  const policy = new Map(Object.entries({ ...inventory.services, ...inventory.agents }).filter(([, s]) => s.failover).map(([n, s]) => [n, s.failover!]));

  // The peer port: accepting is all it does (a dead worker then reads "refused" at a live address).
  const ports = peerPorts(settings, { ...options.peers, [host]: context.spec.address });
  const listener = net.createServer((s) => s.end());
  listener.on('error', (err) => log(`peer port ${context.spec.address}:${ports[host]}: ${err.message}`));
  await new Promise<void>((resolve) => listener.listen(ports[host], context.spec.address, resolve).once('error', () => resolve()));

  const plane = await connectPlane(settings, project, { name: `worker-${host}-${process.pid}`, pingIntervalMs: Math.max(500, settings.lost_after) });
  const { nc, names, readings } = plane;

  let seq = 0;
  let lastAck = Date.now();
  let putting = false;
  let engine: Heartbeat['engine'] = { ok: true };
  const peerReach: Record<string, Reach> = {};
  /** When the probe of each peer now waiting started. */
  const peerWaiting = new Map<string, number>();
  /** What this host says of its peers: a probe waiting longer than a live host takes to answer means the last answer is out of date. */
  const peersNow = (): Record<string, Reach> => Object.fromEntries(Object.entries(peerReach).map(([h, r]) => {
    const waiting = peerWaiting.get(h);
    return [h, waiting !== undefined && Date.now() - waiting > ANSWER_MS ? 'unreachable' : r];
  }));
  const latest = new Map<string, UnitReading>();
  const lastPut = new Map<string, number>();
  /** Units failed over to this host: probed here too. */
  let guests: UnitSpec[] = [];
  /** Units whose copy here is fenced. */
  let fenced = new Set<string>();
  const selfFenced = new Set<string>();
  let stopped = false;

  const publishReading = (r: UnitReading) => {
    nc.publish(names.status(host), encode({ type: 'unit', reading: r }));
    readings.put(`${host}.${r.unit}`, encode(r)).then(() => { lastAck = Date.now(); }, () => undefined);
  };

  async function heartbeat(): Promise<void> {
    const hb: Heartbeat = {
      host, at: Date.now(), seq: ++seq,
      worker: { pid: process.pid, identity: context.identity },
      engine,
      peers: peersNow(),
      units: { total: latest.size, healthy: [...latest.values()].filter((r) => r.ok).length },
    };
    nc.publish(names.status(host), encode({ type: 'heartbeat', heartbeat: hb }));
    if (putting) return; // the previous put still waits for its ack (the plane is slow or gone)
    putting = true;
    try {
      await readings.put(host, encode(hb));
      const wasAway = Date.now() - lastAck > 2 * settings.lost_after;
      lastAck = Date.now();
      if (wasAway || selfFenced.size > 0) await rejoin();
    } catch { /* no ack: judged below */ } finally {
      putting = false;
    }
  }

  async function stopCopy(unit: string, why: string): Promise<void> {
    const name = containerName(project, host, unit);
    try {
      const info = await docker.getContainer(name).inspect();
      if (info.State.Running) {
        await docker.getContainer(name).stop({ t: 0 });
        log(`stopped ${name}: ${why}`);
      }
    } catch { /* no such container: nothing serves */ }
  }

  /** Back on the plane: fenced copies stay stopped; the ones stopped only for fear of a failover start again. */
  async function rejoin(): Promise<void> {
    await refreshFences();
    for (const unit of [...selfFenced]) {
      if (fenced.has(unit)) {
        selfFenced.delete(unit);
        continue;
      }
      try {
        await docker.getContainer(containerName(project, host, unit)).start();
        log(`started ${unit} again: back on the health plane and not failed over`);
      } catch (err) {
        if ((err as { statusCode?: number }).statusCode !== 304) log(`could not start ${unit} again: ${(err as Error).message}`);
      }
      selfFenced.delete(unit);
    }
  }

  async function refreshFences(): Promise<void> {
    const all = await fencesOf(plane);
    fenced = new Set(all.filter((f) => f.from === host).map((f) => f.unit));
    for (const unit of fenced) await stopCopy(unit, 'failed over elsewhere (fence record)');
    const hosted = all.filter((f) => f.to === host && f.spec);
    const names = hosted.map((f) => f.unit).sort().join(',');
    if (names !== guests.map((g) => g.name).sort().join(',')) log(`probing the units failed over here: ${names || 'none'}`);
    guests = hosted.map((f) => f.spec!);
  }

  async function selfFenceIfAway(): Promise<void> {
    if (Date.now() - lastAck <= 2 * settings.lost_after) return;
    // A peer that still reaches this worker sees it as partitioned, and no failover follows: keep serving.
    if (Object.values(peersNow()).some((r) => r === 'accepted')) return;
    for (const unit of options.units) {
      if (!policy.has(unit.name) || selfFenced.has(unit.name)) continue;
      selfFenced.add(unit.name);
      await stopCopy(unit.name, `no acknowledgement from NATS for ${Math.round((Date.now() - lastAck) / 100) / 10} s: it may be failed over elsewhere`);
    }
  }

  async function probeEngine(): Promise<void> {
    engine = await docker.ping().then(() => ({ ok: true }), (err: Error) => ({ ok: false, detail: err.message }));
  }

  /** Every peer's worker port: a loop of its own, so neither a peer's timeout delays a unit's probe nor a slow engine keeps an old answer standing. */
  async function probePeers(): Promise<void> {
    await Promise.all(Object.entries(options.peers).filter(([h]) => h !== host).map(async ([h, address]) => {
      peerWaiting.set(h, Date.now());
      peerReach[h] = await reach(address, ports[h]!, reachTimeoutMs(settings));
      peerWaiting.delete(h);
    }));
  }

  async function probeAll(): Promise<void> {
    const units = [...options.units, ...guests.filter((g) => !options.units.some((u) => u.name === g.name))];
    await Promise.all(units.map(async (unit) => {
      const now = Date.now();
      const isFenced = fenced.has(unit.name) || selfFenced.has(unit.name);
      const probe = isFenced ? { ok: false, detail: fenced.has(unit.name) ? 'fenced: failed over elsewhere' : 'stopped: off the health plane' } : await probes.probeUnit(unit);
      const prev = latest.get(unit.name);
      const reading: UnitReading = {
        unit: unit.name, host, ok: probe.ok, detail: probe.detail, criticality: unit.criticality, at: now,
        since: prev && prev.ok === probe.ok ? prev.since : now, ...(isFenced ? { fenced: true } : {}),
      };
      latest.set(unit.name, reading);
      // A change at once; an unchanged reading once a second, so its key does not expire.
      if (!sameReading(prev, reading) || now - (lastPut.get(unit.name) ?? 0) > 1_000) {
        publishReading(reading);
        lastPut.set(unit.name, now);
      }
    }));
  }

  const loop = (every: number, fn: () => Promise<void>) => {
    let timer: NodeJS.Timeout | undefined;
    const tick = async () => {
      const started = Date.now();
      await fn().catch((err: Error) => log(err.message));
      if (!stopped) timer = setTimeout(() => void tick(), Math.max(0, every - (Date.now() - started)));
    };
    void tick();
    return () => clearTimeout(timer);
  };

  // migrate_host_lost on this worker's metrics, from the aggregator's view.
  const aggregateSub = nc.subscribe(names.aggregate, {
    callback: (err, msg) => {
      if (err) return;
      for (const h of decode<Aggregate>(msg.data).hosts) setHostLost(h.host, h.state === 'lost');
    },
  });

  await refreshFences().catch((err: Error) => log(`fences: ${err.message}`));
  const stops = [
    loop(settings.heartbeat, heartbeat),
    // Units twice per heartbeat: a change reaches the plane within about half a heartbeat.
    loop(Math.max(50, settings.heartbeat / 2), probeAll),
    loop(settings.heartbeat, probeEngine),
    loop(settings.heartbeat, probePeers),
    loop(settings.heartbeat, selfFenceIfAway),
    loop(Math.max(1_000, 4 * settings.heartbeat), () => (Date.now() - lastAck < settings.lost_after ? refreshFences() : Promise.resolve())),
  ];
  log(`publishing to ${settings.nats.join(', ')} (${names.status(host)}, bucket ${names.bucket}) every ${settings.heartbeat} ms`);

  return {
    plane,
    selfFenced: () => [...selfFenced],
    async stop() {
      stopped = true;
      stops.forEach((s) => s());
      aggregateSub.unsubscribe();
      listener.close();
      await plane.close().catch(() => undefined);
    },
  };
}
