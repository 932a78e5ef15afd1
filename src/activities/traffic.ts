/**
 * The per-host traffic proxy (issue #13): one HAProxy container per project and host, from Debian's
 * package in an image built here FROM scratch (the binary and the libraries `ldd` lists), in the
 * host's network namespace so it binds the units' published ports itself. Its configuration
 * (src/plan/traffic.ts) lives in this host's data folder; routes change through its runtime API
 * (an abstract socket: no file, no port) and a new unit's frontends by a seamless reload (SIGUSR2
 * to its master: listening sockets are handed over, no connection refused).
 *
 * Idempotent: the routes are kept in a file and every call converges the proxy on them.
 */
import { execFile } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rename, rm, writeFile, chmod, stat } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { promisify } from 'node:util';
import { log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { LABELS } from '../plan/queues.js';
import { backendName, haproxyConfig, routeCommands, runtimeSocket, splitWeights, type RoutedPort, type Slot, type UnitRoute } from '../plan/traffic.js';
import type { HostContext } from './context.js';
import { buildImage } from './docker.js';

export const TRAFFIC_IMAGE = 'agent-migrate/traffic-proxy:1';
const HAPROXY = process.env.HAPROXY_PATH ?? '/usr/sbin/haproxy';
const run = promisify(execFile);

/** The libraries (and loader) a dynamic ELF needs, as absolute paths. */
async function sharedLibraries(file: string): Promise<string[]> {
  const { stdout } = await run('ldd', [file]);
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    if (/=> not found/.test(line)) throw new Error(`${file} needs ${line.trim()}: install the package that provides it`);
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

/** One line of runtime-API commands (`;`-separated); the proxy answers and closes. */
export function runtimeApi(project: string, host: string, commands: string[], timeoutMs = 5000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ path: `\0${runtimeSocket(project, host)}` });
    let out = '';
    socket.setTimeout(timeoutMs, () => { socket.destroy(); reject(new Error(`the traffic proxy's runtime API did not answer within ${timeoutMs} ms`)); });
    socket.on('connect', () => socket.write(`${commands.join(';')}\n`));
    socket.on('data', (d) => { out += d.toString(); });
    socket.on('error', reject);
    socket.on('close', () => resolve(out));
  });
}

/** Changes to each routes file, one after the other (see serially). */
const routeQueues = new Map<string, Promise<unknown>>();

export function createTrafficActivities(ctx: HostContext) {
  const { docker, project, host, dataDir } = ctx;
  const dir = path.join(dataDir, 'traffic', project);
  const routesFile = path.join(dir, 'routes.json');
  const name = `${project}_${host}__traffic`;

  /**
   * The routes file is read, changed and written, then the proxy brought to it: one change at a
   * time on this host (the agents of a batch migrate in parallel; the worker's traffic keeper), in
   * the order they came — one queue per routes file in this process, whoever made the activities.
   */
  function serially<T>(fn: () => Promise<T>): Promise<T> {
    const next = (routeQueues.get(routesFile) ?? Promise.resolve()).then(fn, fn);
    routeQueues.set(routesFile, next.catch(() => undefined));
    return next;
  }

  async function readRoutes(): Promise<UnitRoute[]> {
    try {
      return JSON.parse(await readFile(routesFile, 'utf8')) as UnitRoute[];
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw err;
    }
  }

  async function writeRoutes(routes: UnitRoute[]): Promise<void> {
    await mkdir(dir, { recursive: true });
    for (const [file, content] of [[routesFile, JSON.stringify(routes, null, 1)], [path.join(dir, 'haproxy.cfg'), haproxyConfig(project, host, routes)]] as const) {
      await writeFile(`${file}.tmp`, content);
      await rename(`${file}.tmp`, file);
    }
  }

  async function ensureImage(): Promise<boolean> {
    if (await docker.getImage(TRAFFIC_IMAGE).inspect().then(() => true, () => false)) return false;
    await mkdir(dataDir, { recursive: true }); // a fresh host's data folder may not exist yet
    const context = await mkdtemp(path.join(dataDir, 'traffic-image-'));
    try {
      const root = path.join(context, 'rootfs');
      for (const file of [HAPROXY, ...await sharedLibraries(HAPROXY)]) {
        const to = path.join(root, file);
        await mkdir(path.dirname(to), { recursive: true });
        await copyFile(file, to);
        await chmod(to, (await stat(file)).mode & 0o7777);
      }
      await writeFile(path.join(context, 'Dockerfile'), [
        'FROM scratch',
        'COPY rootfs/ /',
        `ENTRYPOINT ["${HAPROXY}", "-W", "-db", "-f", "/cfg/haproxy.cfg"]`,
        '',
      ].join('\n'));
      await buildImage(docker, context, TRAFFIC_IMAGE);
      log.info('traffic proxy image built', { image: TRAFFIC_IMAGE, host });
      return true;
    } finally {
      await rm(context, { recursive: true, force: true });
    }
  }

  /** The proxy container, created and started when missing; its configuration written first. */
  async function ensureProxy(): Promise<{ id: string; started: boolean }> {
    const found = await docker.getContainer(name).inspect().catch(() => undefined);
    if (found?.State.Running) return { id: found.Id, started: false };
    await ensureImage();
    await writeRoutes(await readRoutes());
    let id = found?.Id;
    if (!id) {
      const created = await docker.createContainer({
        name,
        Image: TRAFFIC_IMAGE,
        Labels: { [LABELS.project]: project, [LABELS.host]: host, [LABELS.kind]: 'traffic-proxy' },
        HostConfig: { NetworkMode: 'host', Binds: [`${dir}:/cfg:ro`], RestartPolicy: { Name: 'unless-stopped' } },
      });
      id = created.id;
      log.info('traffic proxy created', { container: name });
    }
    await docker.getContainer(id).start().catch((err: { statusCode?: number }) => { if (err.statusCode !== 304) throw err; });
    await waitAnswers();
    return { id, started: true };
  }

  async function waitAnswers(check = (_out: string) => true): Promise<void> {
    const deadline = Date.now() + 15_000;
    for (;;) {
      const out = await runtimeApi(project, host, ['show backend']).catch(() => undefined);
      if (out !== undefined && check(out)) return;
      if (Date.now() > deadline) throw new Error(`the traffic proxy ${name} on ${host} does not answer on its runtime API`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The pid of the HAProxy worker that answers the runtime API now. */
  async function workerPid(): Promise<string | undefined> {
    const out = await runtimeApi(project, host, ['show info']).catch(() => '');
    return /^Pid: (\d+)$/m.exec(out)?.[1];
  }

  /**
   * Send a route's commands, then read the weights back and send again until they hold: right
   * after a reload, the old worker may still answer a first command before it lets go.
   */
  async function apply(route: UnitRoute): Promise<void> {
    const commands = routeCommands(route);
    const want = route.ports.flatMap((p) => (['blue', 'green'] as const).map((s) => ({ server: `${backendName(route.unit, p)}/${s}`, weight: route[s]?.ports[`${p.target}/tcp`] ? route[s]!.weight : 0 })));
    for (let attempt = 0; ; attempt++) {
      const out = await runtimeApi(project, host, commands);
      const bad = out.split('\n').filter((l) => /no such|unknown|require|invalid|error/i.test(l));
      if (bad.length) throw new Error(`the traffic proxy refused ${commands.join('; ')}: ${bad.join('; ')}`);
      const got = await runtimeApi(project, host, want.map((w) => `get weight ${w.server}`));
      const weights = got.split('\n').filter((l) => /^\d+ \(initial/.test(l)).map((l) => Number(l.split(' ')[0]));
      if (weights.length === want.length && want.every((w, i) => weights[i] === w.weight)) return;
      if (attempt >= 20) throw new Error(`the traffic proxy ${name} does not hold the weights it was given (${got.trim()})`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Write `route` and bring the proxy to it: by the runtime API when its frontends exist, else by a seamless reload. */
  function route(r: UnitRoute): Promise<{ reloaded: boolean }> {
    return serially(() => routeNow(r));
  }

  async function routeNow(r: UnitRoute): Promise<{ reloaded: boolean }> {
    await ensureProxy();
    const routes = await readRoutes();
    const before = routes.find((x) => x.unit === r.unit);
    const samePorts = before && JSON.stringify(before.ports) === JSON.stringify(r.ports);
    await writeRoutes([...routes.filter((x) => x.unit !== r.unit), r]);
    if (samePorts) {
      await apply(r);
      return { reloaded: false };
    }
    await reload((out) => r.ports.every((p) => out.split('\n').includes(backendName(r.unit, p))));
    log.info('traffic proxy reloaded', { container: name, unit: r.unit });
    return { reloaded: true };
  }

  /** Reload the proxy's configuration seamlessly; resolves once the new worker alone answers and `ready` holds. */
  async function reload(ready: (showBackend: string) => boolean): Promise<void> {
    const oldPid = await workerPid();
    await docker.getContainer(name).kill({ signal: 'SIGUSR2' });
    await waitAnswers(ready);
    // The new worker alone answers from now on (three answers in a row from another pid).
    for (let fresh = 0, tries = 0; fresh < 3 && tries < 100; tries++) {
      const pid = await workerPid();
      fresh = pid && pid !== oldPid ? fresh + 1 : 0;
      if (fresh < 3) await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Where a running container's ports are published: `8080/tcp` → host port, and the address (a wildcard read as loopback). */
  async function publishedPorts(id: string): Promise<{ ports: Record<string, number>; address: string }> {
    const info = await docker.getContainer(id).inspect().catch((err: { statusCode?: number }) => {
      if (err.statusCode === 404) throw ApplicationFailure.nonRetryable(`container ${id.slice(0, 12)} on ${host} is gone: it cannot take traffic`, 'ContainerMissing');
      throw err;
    });
    if (!info.State.Running) throw new Error(`${info.Name.replace(/^\//, '')} on ${host} is not running: it cannot take traffic`);
    const ports: Record<string, number> = {};
    let address = '127.0.0.1';
    for (const [key, bound] of Object.entries(info.NetworkSettings.Ports ?? {})) {
      const b = bound?.[0];
      if (!b || !Number(b.HostPort)) continue;
      ports[key] = Number(b.HostPort);
      address = ({ '0.0.0.0': '127.0.0.1', '::': '::1', '': '127.0.0.1' } as Record<string, string>)[b.HostIp] ?? b.HostIp;
    }
    return { ports, address };
  }

  async function unrouteNow(unit: string): Promise<{ removed: boolean }> {
    const routes = await readRoutes();
    const gone = routes.find((r) => r.unit === unit);
    if (!gone) return { removed: false };
    await ensureProxy();
    await writeRoutes(routes.filter((r) => r.unit !== unit));
    await reload((out) => gone.ports.every((p) => !out.split('\n').includes(backendName(unit, p))));
    log.info('unit no longer routed', { unit, host });
    return { removed: true };
  }

  /**
   * Wait until the container listens on address:port (at most 40 s: inside the calling profile's
   * minute). Docker's userland proxy accepts a connection on a published port even before the
   * container listens, and closes it when it cannot reach it: a connection that stays open 200 ms
   * is one the container accepted.
   */
  async function listening(address: string, port: number | undefined): Promise<void> {
    if (!port) return;
    const deadline = Date.now() + 40_000;
    for (;;) {
      const ok = await new Promise<boolean>((resolve) => {
        const s = net.connect({ host: address, port });
        let held: NodeJS.Timeout | undefined;
        const done = (v: boolean) => { clearTimeout(held); s.destroy(); resolve(v); };
        s.setTimeout(1000, () => done(false));
        s.on('connect', () => { held = setTimeout(() => done(true), 200); });
        s.on('end', () => done(false));
        s.on('close', () => done(false));
        s.on('error', () => done(false));
      });
      if (ok) return;
      if (Date.now() > deadline) throw new Error(`nothing listens on ${address}:${port} on ${host} after 40 s: traffic not moved there`);
      await new Promise((res) => setTimeout(res, 50));
    }
  }

  async function setTrafficNow(unit: string, to: Slot, percent: number): Promise<Record<Slot, number>> {
    const routes = await readRoutes();
    const route = routes.find((r) => r.unit === unit);
    if (!route) throw ApplicationFailure.nonRetryable(`${unit} on ${host} is not routed through the traffic proxy`, 'InvalidSpec');
    const weights = splitWeights(to, percent);
    for (const s of ['blue', 'green'] as const) if (route[s]) route[s]!.weight = weights[s];
    await writeRoutes(routes);
    await apply(route);
    log.info('traffic moved', { unit, to, percent });
    return weights;
  }

  /**
   * Routes whose containers the engine started again (a host reboot, a crash under a restart
   * policy) point at ports those containers no longer have: each such slot takes its container's
   * ports as they are now, written (a proxy started later reads them) and sent to a running proxy.
   * `ids`: only the slots of these containers (absent: every slot). Returns the units changed.
   */
  async function refreshNow(ids?: Set<string>): Promise<string[]> {
    const routes = await readRoutes();
    const changed: UnitRoute[] = [];
    for (const r of routes) {
      let moved = false;
      for (const s of ['blue', 'green'] as const) {
        const slot = r[s];
        if (!slot?.id || (ids && !ids.has(slot.id))) continue;
        const now = await publishedPorts(slot.id).catch(() => undefined); // gone or stopped: nothing to follow
        if (!now || (JSON.stringify(now.ports) === JSON.stringify(slot.ports) && now.address === (slot.address ?? '127.0.0.1'))) continue;
        r[s] = { ...slot, ...now };
        moved = true;
      }
      if (moved) changed.push(r);
    }
    if (changed.length === 0) return [];
    await writeRoutes(routes);
    const running = await docker.getContainer(name).inspect().then((i) => i.State.Running, () => false);
    if (running) {
      await waitAnswers();
      for (const r of changed) await apply(r);
    }
    return changed.map((r) => r.unit);
  }

  return {
    /** Bring the routes to their containers' ports as they are now (see refreshNow); idempotent. */
    refreshRoutes(ids?: string[]): Promise<string[]> {
      return serially(() => refreshNow(ids ? new Set(ids) : undefined));
    },

    /**
     * Route a unit's published ports to containers, by id: each slot's container is inspected here
     * (its engine-picked ports may have changed since it last started). `ports` defaults to the
     * unit's route as the proxy keeps it. A slot left out takes no traffic.
     */
    async routeContainers(unit: string, slots: Partial<Record<Slot, { id: string; weight: number }>>, ports?: RoutedPort[]): Promise<{ reloaded: boolean }> {
      const known = ports ?? (await readRoutes()).find((r) => r.unit === unit)?.ports;
      if (!known) throw ApplicationFailure.nonRetryable(`${unit} on ${host} is not routed through the traffic proxy and no ports were given`, 'InvalidSpec');
      const r: UnitRoute = { unit, ports: known };
      for (const s of ['blue', 'green'] as const) {
        const c = slots[s];
        if (!c) continue;
        r[s] = { id: c.id, ...(await publishedPorts(c.id)), weight: c.weight };
        // A container just started (a kept one taking its traffic back) listens before it gets any.
        if (c.weight > 0) for (const p of known) await listening(r[s]!.address!, r[s]!.ports[`${p.target}/tcp`]);
      }
      return route(r);
    },

    /** Stop routing a unit: its frontends go by a seamless reload, and its published ports are free again. */
    unrouteUnit(unit: string): Promise<{ removed: boolean }> {
      return serially(() => unrouteNow(unit));
    },

    /**
     * Wait until a slot that takes no more traffic has no connection left (HAProxy's `scur`), at
     * most `timeoutMs`: then its container can stop without cutting a request.
     */
    async drainSlot(unit: string, slot: Slot, timeoutMs = 10_000): Promise<{ drained: boolean; sessions: number }> {
      const r = (await readRoutes()).find((x) => x.unit === unit);
      if (!r) return { drained: true, sessions: 0 };
      const backends = new Set(r.ports.map((p) => backendName(unit, p)));
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const csv = await runtimeApi(project, host, ['show stat']);
        let sessions = 0;
        for (const line of csv.split('\n')) {
          const f = line.split(',');
          if (backends.has(f[0]!) && f[1] === slot) sessions += Number(f[4]) || 0;
        }
        if (sessions === 0) return { drained: true, sessions };
        if (Date.now() > deadline) {
          log.warn('slot not drained in time', { unit, slot, sessions });
          return { drained: false, sessions };
        }
        await new Promise((res) => setTimeout(res, 100));
      }
    },

    /** The host's traffic proxy, running (built and started when missing). */
    async ensureTrafficProxy(): Promise<{ id: string; started: boolean }> {
      return serially(() => ensureProxy());
    },

    /**
     * Route a unit's published ports as `route` says. A unit the proxy does not serve yet gets its
     * frontends by a seamless reload; one it serves is steered through the runtime API at once.
     */
    async routeUnit(r: UnitRoute): Promise<{ reloaded: boolean }> {
      return route(r);
    },

    /** Put `percent` of a routed unit's traffic on slot `to`, the rest on the other; 100 moves all of it at once. */
    setTraffic(unit: string, to: Slot, percent: number): Promise<Record<Slot, number>> {
      return serially(() => setTrafficNow(unit, to, percent));
    },

    /** A routed unit's route as the proxy keeps it. */
    async trafficRoute(unit: string): Promise<UnitRoute | undefined> {
      return (await readRoutes()).find((r) => r.unit === unit);
    },
  };
}

export type TrafficActivities = ReturnType<typeof createTrafficActivities>;
