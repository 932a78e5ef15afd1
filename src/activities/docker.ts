/**
 * Docker on one host, through dockerode. A unit's containers are found by their labels (project,
 * host, unit), never by name alone; each also carries its spec hash and the change that created it.
 * The name is for people, and says the role: `<project>_<host>_<unit>` serves, `….prev` is kept,
 * stopped, for rollback until its change is confirmed. Every call is idempotent: `ensure…` looks
 * before it creates, retire and put-back find the containers wherever an earlier attempt left
 * them, stopping a stopped container or removing a missing one is success.
 */
import { access, copyFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type Dockerode from 'dockerode';
import type { UnitSpec } from '../plan/plan.js';
import { CANDIDATE_SUFFIX, containerName, LABELS, networkName, PREVIOUS_SUFFIX, previousName } from '../plan/queues.js';
import { beat, type HostContext } from './context.js';
import { readSecret } from './secrets.js';
import { unitSpecProblems } from '../common/unit-guard.js';
import { formatProblem } from '../inventory/problems.js';

/**
 * Refuse a unit this host must not run (unknown fields, a bind of the Docker socket, /, /proc, /sys
 * or /etc that its inventory does not allow, a unit of another host) before anything touches the
 * engine: a worker trusts no workflow input. Non-retryable `InvalidSpec`.
 */
export function assertUnitAccepted(unit: unknown, host: string): asserts unit is UnitSpec {
  const problems = unitSpecProblems(unit, host);
  if (problems.length === 0) return;
  const name = (unit as { name?: unknown })?.name;
  throw ApplicationFailure.create({
    message: `host ${host} refuses unit ${typeof name === 'string' ? name : '(unnamed)'}: ${problems.map((p) => `${p.path}: ${p.message} (fix: ${p.fix})`).join('; ')}`,
    type: 'InvalidSpec',
    nonRetryable: true,
    details: [problems.map(formatProblem).join('\n')],
  });
}

async function listFiles(dir: string, prefix = ''): Promise<string[]> {
  const out: string[] = [];
  for (const entry of await readdir(path.join(dir, prefix), { withFileTypes: true })) {
    const rel = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (entry.isDirectory()) out.push(...(await listFiles(dir, rel)));
    else out.push(rel);
  }
  return out;
}

/** Build `context` into `tag` through the engine; resolves when done, rejects with the build's error. */
export async function buildImage(docker: Dockerode, context: string, tag: string, options: { dockerfile?: string; buildargs?: Record<string, string> } = {}): Promise<void> {
  const stream = await docker.buildImage({ context, src: await listFiles(context) }, { t: tag, dockerfile: options.dockerfile, buildargs: options.buildargs, rm: true, forcerm: true });
  await new Promise<void>((resolve, reject) => {
    docker.modem.followProgress(stream, (err: Error | null, output: { error?: string; errorDetail?: { message: string } }[]) => {
      const failed = output?.find((o) => o.error);
      if (err) reject(err);
      else if (failed) reject(new Error(`building ${tag} from ${context} failed: ${failed.errorDetail?.message ?? failed.error}`));
      else resolve();
    });
  });
}

/** Copy into `context` each file it lacks from the first of its candidate paths on this host. */
async function provideHostFiles(context: string, files: Record<string, string[]>): Promise<void> {
  for (const [name, candidates] of Object.entries(files)) {
    const target = path.join(context, name);
    if (await access(target).then(() => true, () => false)) continue;
    let copied = false;
    for (const candidate of candidates) {
      if (!(await access(candidate).then(() => true, () => false))) continue;
      await copyFile(candidate, target);
      copied = true;
      break;
    }
    if (!copied) throw new Error(`${name} is missing from ${context} and none of ${candidates.join(', ')} exists on this host`);
  }
}

export interface ContainerRef {
  id: string;
  name: string;
  specHash: string;
  /** True when an existing container with the same spec was found and reused. */
  reused: boolean;
}

/** What a created container is stamped with: the release (for people) and the change that created it. */
export interface ChangeStamp {
  release: string;
  /** The deploy's or batch run's id (`deploy-r42`, `migrate-batch-1@<run>`). */
  change: string;
}

/** One of a unit's containers, as its labels and name say. */
export interface UnitContainer {
  id: string;
  name: string;
  /** `previous`: kept, stopped, for rollback (its name ends in `.prev`); `current`: the one that serves. */
  role: 'current' | 'previous';
  specHash?: string;
  change?: string;
  running: boolean;
  /** Behind the host's traffic proxy (published on engine-picked ports): issue #13. */
  routed?: boolean;
}

export interface UnitContainers {
  current?: UnitContainer;
  previous?: UnitContainer;
  /** More than one in a role (never made by the tool): reported, never guessed at. */
  others: UnitContainer[];
}

export interface PutBackResult {
  /** The container running again (the previous one), if the unit had one. */
  restored?: string;
  /** The containers of the change that were removed. */
  removed: string[];
}

export const short = (id: string) => id.slice(0, 12);

function unconfirmedPrevious(unit: string, previous: UnitContainer): ApplicationFailure {
  return ApplicationFailure.nonRetryable(
    `${unit} still keeps ${previous.name} (${short(previous.id)}, made by ${previous.change ?? 'an earlier change'}) for a change not yet confirmed: confirm or roll back that change first (migrate confirm|rollback …)`,
    'UnconfirmedPrevious',
  );
}

export interface ContainerState {
  name: string;
  id: string;
  image: string;
  imageId: string;
  project?: string;
  unit?: string;
  release?: string;
  specHash?: string;
  status: string; // created | running | exited | restarting | paused | dead
  running: boolean;
  health?: string; // starting | healthy | unhealthy
  restartCount: number;
  startedAt?: string;
  exitCode?: number;
}

/** A host's running set, for "exactly as before" comparisons. */
export interface HostSnapshot {
  host: string;
  containers: { name: string; id: string; unit: string; image: string; specHash?: string; running: boolean }[];
}

/** The host port each of a container's ports got (`8080/tcp` → 32771); ports not published are left out. */
export function hostPorts(info: Pick<Dockerode.ContainerInspectInfo, 'NetworkSettings'>): Record<string, number> {
  const ports: Record<string, number> = {};
  for (const [key, bound] of Object.entries(info.NetworkSettings.Ports ?? {})) {
    const port = Number(bound?.[0]?.HostPort);
    if (port) ports[key] = port;
  }
  return ports;
}

function statusCode(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}

/**
 * Whether a failed call says the engine itself was away (its socket closed or refused, or it was
 * shutting down), not that the container cannot start: worth retrying once the engine is back.
 */
function engineAway(err: unknown): boolean {
  const message = (err as Error)?.message ?? '';
  if (statusCode(err) === undefined) return true; // no HTTP answer at all: socket hang up, ECONNREFUSED, ENOENT
  // "failed to update store": its network store already closed while it shuts down; "client
  // connection is closing": its link to containerd, the same.
  return /transport is closing|connection refused|connection reset|failed to update store|client connection is closing/i.test(message);
}

/** A container's start failed: retried while the engine was away, otherwise final. */
function startFailure(name: string, err: unknown): Error {
  if (engineAway(err)) return new Error(`${name} could not start, its engine was away (retried): ${(err as Error).message}`);
  return ApplicationFailure.nonRetryable(`${name} could not start: ${(err as Error).message}`, 'StartFailed');
}

const NS = 1_000_000; // Docker durations are nanoseconds

/** The Docker create options for a unit. Pure apart from the resolved secret values passed in. */
export function containerCreateOptions(
  project: string,
  unit: UnitSpec,
  stamp: ChangeStamp,
  env: Record<string, string>,
): Dockerode.ContainerCreateOptions {
  const name = containerName(project, unit.host, unit.name);
  const exposed: Record<string, object> = {};
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of unit.ports) {
    const key = `${p.target}/${p.protocol}`;
    exposed[key] = {};
    (bindings[key] ??= []).push({ HostIp: p.hostIp, HostPort: String(p.published) });
  }
  const binds: string[] = [];
  const mounts: { Type: 'volume'; Source: string; Target: string; ReadOnly: boolean }[] = [];
  for (const v of unit.volumes) {
    if (v.type === 'bind') binds.push(`${v.source}:${v.target}${v.readOnly ? ':ro' : ''}`);
    // Named volumes belong to one host's project, like compose's `<project>_<volume>`.
    else mounts.push({ Type: 'volume', Source: `${project}-${unit.host}-${v.source}`, Target: v.target, ReadOnly: v.readOnly });
  }
  const hc = unit.dockerHealthcheck;
  return {
    name,
    Image: unit.image,
    Cmd: unit.command,
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    ExposedPorts: exposed,
    Labels: {
      [LABELS.project]: project,
      [LABELS.host]: unit.host,
      [LABELS.unit]: unit.name,
      [LABELS.kind]: unit.kind,
      [LABELS.release]: stamp.release,
      [LABELS.change]: stamp.change,
      [LABELS.specHash]: unit.specHash,
    },
    Healthcheck: hc
      ? { Test: hc.test, Interval: Math.max(hc.intervalMs, 1) * NS, Timeout: hc.timeoutMs * NS, Retries: hc.retries, StartPeriod: hc.startPeriodMs * NS }
      : undefined,
    HostConfig: {
      PortBindings: bindings,
      Binds: binds.length ? binds : undefined,
      Mounts: mounts.length ? mounts : undefined,
      // A one-shot job runs once: restarting it after its exit would run it again.
      RestartPolicy: { Name: unit.job ? 'no' : 'unless-stopped' },
      NetworkMode: networkName(project, unit.host),
      // Dependencies on other hosts, by the same name (src/plan/cross-host.ts).
      ExtraHosts: unit.extraHosts?.length ? unit.extraHosts : undefined,
      // The plan's GPUs by index (their memory adds up), else any `count` of them.
      DeviceRequests: unit.gpuDeviceRequest && unit.gpu
        ? [{ Driver: 'nvidia', ...(unit.gpuIndexes ? { DeviceIDs: unit.gpuIndexes.map(String) } : { Count: unit.gpu.count }), Capabilities: [['gpu']] }]
        : undefined,
    },
    NetworkingConfig: { EndpointsConfig: { [networkName(project, unit.host)]: { Aliases: [unit.name] } } },
  };
}

/** Where a unit's candidate answers: its container, and the host port each of its ports got (`8080/tcp` → 32771). */
export interface CandidateRef {
  id: string;
  name: string;
  specHash: string;
  ports: Record<string, number>;
}

/** The wildcard addresses a port can be published on, and the loopback a candidate is published on instead. */
const LOOPBACK_OF: Record<string, string> = { '0.0.0.0': '127.0.0.1', '::': '::1', '': '127.0.0.1' };

/**
 * The Docker create options for a unit's candidate: the unit's own options, but named `….next`,
 * labelled as a candidate (never as the unit), each port published on a port the engine picks (on
 * loopback when the unit publishes on every address), restarted never, and joined to the project's
 * network without the unit's alias (the other units keep reaching the running version). Pure.
 */
export function candidateCreateOptions(
  project: string,
  unit: UnitSpec,
  stamp: ChangeStamp,
  env: Record<string, string>,
  routed = false,
): Dockerode.ContainerCreateOptions {
  const base = containerCreateOptions(project, unit, stamp, env);
  const { [LABELS.unit]: _unit, ...rest } = base.Labels ?? {};
  // A routed candidate is the unit's container to be (it is promoted by a rename): it carries the
  // unit's label too, and is told apart from the unit's current container by its `.next` name.
  const labels = routed ? { ...rest, [LABELS.unit]: unit.name, [LABELS.routed]: 'true' } : rest;
  const bindings: Record<string, { HostIp: string; HostPort: string }[]> = {};
  for (const p of unit.ports) (bindings[`${p.target}/${p.protocol}`] ??= []).push({ HostIp: LOOPBACK_OF[p.hostIp] ?? p.hostIp, HostPort: '' });
  return {
    ...base,
    name: `${base.name!}${CANDIDATE_SUFFIX}`,
    Labels: { ...labels, [LABELS.candidate]: unit.name },
    HostConfig: { ...base.HostConfig, PortBindings: bindings, RestartPolicy: { Name: 'no' } },
    NetworkingConfig: { EndpointsConfig: { [networkName(project, unit.host)]: {} } },
  };
}

/** Read secrets on this host: they never travel through Temporal. */
export async function resolveEnvironment(unit: UnitSpec): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const [key, value] of Object.entries(unit.environment)) {
    out[key] = typeof value === 'string' ? value : (await readSecret(value, `${unit.name} on ${unit.host}: ${key}`))!;
  }
  return out;
}

/** A routed unit's candidate carries the unit's label, but is not one of its containers until promoted. */
const isCandidate = (c: Dockerode.ContainerInfo) => c.Names[0]!.endsWith(CANDIDATE_SUFFIX);

function unitContainer(c: Dockerode.ContainerInfo): UnitContainer {
  const name = c.Names[0]!.replace(/^\//, '');
  return {
    ...(c.Labels[LABELS.routed] === 'true' ? { routed: true } : {}),
    id: c.Id,
    name,
    role: name.endsWith(PREVIOUS_SUFFIX) ? 'previous' : 'current',
    specHash: c.Labels[LABELS.specHash],
    change: c.Labels[LABELS.change],
    running: c.State === 'running',
  };
}

export function createDockerActivities(ctx: HostContext) {
  const { docker, project, host } = ctx;

  async function inspect(name: string): Promise<ContainerState | undefined> {
    try {
      const c = await docker.getContainer(name).inspect();
      const labels = c.Config.Labels ?? {};
      return {
        name: c.Name.replace(/^\//, ''),
        id: c.Id,
        image: c.Config.Image,
        imageId: c.Image,
        project: labels[LABELS.project],
        unit: labels[LABELS.unit],
        release: labels[LABELS.release],
        specHash: labels[LABELS.specHash],
        status: c.State.Status,
        running: c.State.Running,
        health: c.State.Health?.Status,
        restartCount: c.RestartCount,
        startedAt: c.State.StartedAt,
        exitCode: c.State.ExitCode,
      };
    } catch (err) {
      if (statusCode(err) === 404) return undefined;
      throw err;
    }
  }

  async function unitContainers(unitName: string): Promise<UnitContainers> {
    const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`, `${LABELS.host}=${host}`, `${LABELS.unit}=${unitName}`] } });
    const out: UnitContainers = { others: [] };
    for (const c of list.sort((a, b) => a.Created - b.Created)) {
      if (isCandidate(c)) continue;
      const entry = unitContainer(c);
      if (out[entry.role]) out.others.push(entry);
      else out[entry.role] = entry;
    }
    return out;
  }

  async function stop(id: string): Promise<void> {
    try {
      await docker.getContainer(id).stop({ t: 10 });
    } catch (err) {
      if (statusCode(err) !== 304 && statusCode(err) !== 404) throw err;
    }
  }

  /**
   * Start a container; one already running is fine (false). Right after an engine restart, the
   * project network may still hold an endpoint under the container's name that no container uses
   * any more ("endpoint with name … already exists in network …"): that stale
   * endpoint is disconnected by force and the start tried once more (an endpoint is named after
   * its container, and container names are unique on an engine, so no live container loses one).
   */
  async function startOnce(id: string): Promise<boolean> {
    try {
      await docker.getContainer(id).start();
      return true;
    } catch (err) {
      if (statusCode(err) === 304) return false;
      const stale = /endpoint with name (\S+) already exists in network (\S+)/.exec((err as Error).message ?? '');
      if (statusCode(err) !== 403 || !stale) throw err;
      await docker.getNetwork(stale[2]!).disconnect({ Container: stale[1]!, Force: true }).catch((e: unknown) => {
        if (statusCode(e) !== 404) throw e;
      });
      log.warn('a stale network endpoint was disconnected before starting the container', { container: id, endpoint: stale[1], network: stale[2] });
      await docker.getContainer(id).start().catch((e: unknown) => { if (statusCode(e) !== 304) throw e; });
      return true;
    }
  }

  /**
   * Stop a container so that it stays stopped when its engine restarts. A `docker stop` of a running
   * container marks it stopped by hand (`unless-stopped` then keeps it down); one found already
   * stopped (by its engine shutting down, say) is not marked, and the engine would start it again
   * on its next start: a kept `.prev` serving beside the new container. So such a one is started
   * and stopped again, now by hand.
   */
  async function stopByHand(id: string): Promise<void> {
    try {
      await docker.getContainer(id).stop({ t: 10 });
      return;
    } catch (err) {
      if (statusCode(err) === 404) return;
      if (statusCode(err) !== 304) throw err;
    }
    const info = await docker.getContainer(id).inspect();
    if (!['unless-stopped', 'always'].includes(info.HostConfig.RestartPolicy?.Name ?? '')) return;
    try {
      await docker.getContainer(id).start();
    } catch (err) {
      if (statusCode(err) !== 304) {
        // Seen right after an engine restart: "task … already exists" (containerd still holds the old
        // task), on every retry. The container is stopped; going on beats retrying until the change
        // times out, at the risk that a later engine restart brings it back.
        log.warn('could not start the stopped container to stop it by hand; left as the engine stopped it', { container: id, error: (err as Error).message });
        return;
      }
    }
    await stop(id);
    log.info('stopped by hand again, so the engine does not restart it', { container: id });
  }

  /** Stop the unit's current container `id` (by hand) and keep it as `….prev`; one already kept is success. */
  async function retire(unitName: string, id: string): Promise<UnitContainer> {
    const { current, previous } = await unitContainers(unitName);
    if (previous && previous.id !== id) throw unconfirmedPrevious(unitName, previous);
    if (previous?.id === id) {
      if (previous.running) await stop(id);
      return { ...previous, running: false };
    }
    if (current?.id !== id) {
      throw ApplicationFailure.nonRetryable(`${unitName} on host ${host}: container ${short(id)} is neither its current nor its kept container (current: ${current ? short(current.id) : 'none'}): something else changed it`, 'ContainerConflict');
    }
    await stopByHand(id);
    const to = previousName(current.name);
    await docker.getContainer(id).rename({ name: to });
    log.info('container retired', { container: current.name, to });
    return { ...current, name: to, role: 'previous', running: false };
  }

  /** Remove (force); true when it existed. */
  async function remove(id: string): Promise<boolean> {
    try {
      await docker.getContainer(id).remove({ force: true });
      log.info('container removed', { container: id });
      return true;
    } catch (err) {
      if (statusCode(err) === 404) return false;
      if (statusCode(err) === 409) return true; // removal already in progress
      throw err;
    }
  }

  // Docker does not make network names unique (CheckDuplicate is best effort): parallel creates on
  // one host are serialised here, and duplicates left by a race elsewhere are collapsed to the oldest.
  // Only the call in flight is shared: the next one looks again, so a network removed meanwhile is
  // recreated rather than remembered.
  let networkInFlight: Promise<string> | undefined;
  /** Image builds under way on this host, by tag: concurrent units wait for the same build. */
  const buildsInFlight = new Map<string, Promise<void>>();
  function ensureNetwork(): Promise<string> {
    networkInFlight ??= createNetworkOnce().finally(() => { networkInFlight = undefined; });
    return networkInFlight;
  }

  async function createNetworkOnce(): Promise<string> {
    const name = networkName(project, host);
    const matching = async () => (await docker.listNetworks({ filters: { name: [name] } })).filter((n) => n.Name === name);
    let existing = await matching();
    if (existing.length === 0) {
      try {
        await docker.createNetwork({ Name: name, Driver: 'bridge', CheckDuplicate: true, Labels: { [LABELS.project]: project, [LABELS.host]: host } });
        log.info('network created', { network: name });
      } catch (err) {
        if (statusCode(err) !== 409) throw err; // created concurrently: fine
      }
      existing = await matching();
    }
    if (existing.length > 1) {
      const [keep, ...extra] = [...existing].sort((a, b) => a.Created.localeCompare(b.Created) || a.Id.localeCompare(b.Id));
      for (const n of extra) await docker.getNetwork(n.Id).remove().catch(() => undefined);
      log.warn('duplicate networks removed', { network: name, kept: keep!.Id });
    }
    return name;
  }

  /**
   * Make sure the unit's image exists on this host's engine: build it from its context (on this
   * host, by this worker), or find it. An `ifMissing` build (the stub image) is skipped when the
   * engine has the image, and units of one host needing the same image share one build.
   */
  async function ensureImage(unit: UnitSpec): Promise<{ image: string; built: boolean }> {
    assertUnitAccepted(unit, host);
    const present = async () => {
      try {
        await docker.getImage(unit.image).inspect();
        return true;
      } catch (err) {
        if (statusCode(err) !== 404) throw err;
        return false;
      }
    };
    const { build } = unit;
    if (build && !(build.ifMissing && (await present()))) {
      let building = buildsInFlight.get(unit.image);
      if (!building) {
        log.info('building image', { unit: unit.name, image: unit.image, context: build.context, host });
        building = (async () => {
          if (build.hostFiles) await provideHostFiles(build.context, build.hostFiles);
          await buildImage(docker, build.context, unit.image, { dockerfile: build.dockerfile, buildargs: build.args });
        })().finally(() => buildsInFlight.delete(unit.image));
        buildsInFlight.set(unit.image, building);
      }
      try {
        await building;
      } catch (err) {
        throw ApplicationFailure.nonRetryable(`${unit.name}: building ${unit.image} on host ${host}: ${(err as Error).message}`, 'ImageBuildFailed');
      }
      log.info('image built', { unit: unit.name, image: unit.image, host });
      return { image: unit.image, built: true };
    }
    if (build || (await present())) return { image: unit.image, built: false };
    throw ApplicationFailure.nonRetryable(
      `${unit.name}: image ${unit.image} is not on host ${host} and no build context is given: load or pull it on that host, or add build: to the unit`,
      'ImageMissing',
    );
  }

  /**
   * Create-or-reuse the unit's container, then start it. A current container of the unit with
   * another spec hash is a conflict the workflow must resolve first (retire it): nothing is ever
   * replaced silently. A container of another owner under the unit's name is a conflict too.
   * `again`: the one more try after a start refused by what an engine restart left behind (below).
   */
  async function ensureContainer(unit: UnitSpec, stamp: ChangeStamp, again = false): Promise<ContainerRef> {
    assertUnitAccepted(unit, host);
    let { current } = await unitContainers(unit.name);
    let reused = true;
    if (current && current.specHash !== unit.specHash) {
      throw ApplicationFailure.nonRetryable(
        `${current.name} (${short(current.id)}) runs spec ${current.specHash ?? '(none)'} but ${unit.specHash} is wanted: retire it first`,
        'ContainerConflict',
      );
    }
    if (!current) {
      const name = containerName(project, host, unit.name);
      await ensureNetwork();
      const env = await resolveEnvironment(unit);
      let created: string | undefined;
      try {
        created = (await docker.createContainer(containerCreateOptions(project, unit, stamp, env))).id;
        log.info('container created', { container: name, change: stamp.change, specHash: unit.specHash });
      } catch (err) {
        if (statusCode(err) !== 409) throw err;
        // The name is taken: by this unit (a retried attempt raced its earlier self), or by something else.
        const holder = await inspect(name);
        if (holder && holder.unit !== unit.name) {
          throw ApplicationFailure.nonRetryable(`${name} exists on host ${host} but is not ${unit.name}'s container (labels: project ${holder.project ?? '-'}, unit ${holder.unit ?? '-'}): remove or rename it`, 'ContainerConflict');
        }
      }
      reused = false;
      // Created here: the engine's answer says what it is (only after a race is it looked up by its labels).
      current = created
        ? { id: created, name, role: 'current', specHash: unit.specHash, change: stamp.change, running: false }
        : (await unitContainers(unit.name)).current;
      if (!current) throw new Error(`${name} was created on host ${host} but is not found by its labels`);
    }
    if (!current.running) {
      try {
        if (await startOnce(current.id)) log.info('container started', { container: current.name });
      } catch (err) {
        const message = (err as Error).message ?? '';
        if (again) throw startFailure(current.name, err);
        // Right after an engine restart, containerd may still hold the task or the record of a
        // container the engine was starting as it went down ("task … already exists", "id already
        // in use", on every try). One this very change made, never confirmed, is made anew under a
        // new id (the stale one stays behind with the old id); any other is left to an operator.
        if (current.change === stamp.change && /task \S+:? already exists|id already in use/.test(message)) {
          log.warn('container made anew: its engine holds a stale task for it', { container: current.name, id: current.id, error: message });
          await remove(current.id);
          return ensureContainer(unit, stamp, true);
        }
        // The unit's kept container, retired, which its engine started again on its way back up
        // (it was stopped by the engine going down, not by hand), holds the port: it is stopped
        // by hand, as a retire leaves it, and the start tried once more.
        const { previous } = /port is already allocated/.test(message) ? await unitContainers(unit.name) : {};
        if (previous?.running) {
          log.warn('the kept container runs again (its engine restarted): stopped before the new one starts', { container: previous.name, id: previous.id });
          await stopByHand(previous.id);
          return ensureContainer(unit, stamp, true);
        }
        throw startFailure(current.name, err);
      }
    }
    return { id: current.id, name: current.name, specHash: unit.specHash, reused };
  }

  return {
    /** Make sure of one unit's image (above). */
    ensureImage,

    /**
     * Several units' images at once (issue #14: a deploy makes sure of them all in one call per host
     * while its backup runs). A unit whose image cannot be had is reported, not thrown: the others
     * still go on; an engine that does not answer fails the call (it is retried).
     */
    async ensureImages(units: UnitSpec[]): Promise<{ unit: string; problem?: string }[]> {
      return Promise.all(units.map((u) => ensureImage(u).then(
        () => ({ unit: u.name }),
        (err: unknown) => {
          if (err instanceof ApplicationFailure && err.nonRetryable) return { unit: u.name, problem: err.message };
          throw err;
        },
      )));
    },

    /** Several units' containers at once (one engine call): for "exactly as before" checks. */
    async unitsState(unitNames: string[]): Promise<Record<string, UnitContainers>> {
      const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`, `${LABELS.host}=${host}`] } });
      const wanted = new Set(unitNames);
      const out: Record<string, UnitContainers> = {};
      for (const u of unitNames) out[u] = { others: [] };
      for (const c of list.sort((a, b) => a.Created - b.Created)) {
        const unit = c.Labels[LABELS.unit];
        if (!unit || !wanted.has(unit) || isCandidate(c)) continue;
        const entry = unitContainer(c);
        const slot = out[unit]!;
        if (slot[entry.role]) slot.others.push(entry);
        else slot[entry.role] = entry;
      }
      return out;
    },

    /** The unit's containers on this host, found by their labels: the current one, the one kept for rollback, and any other. */
    async unitContainers(unitName: string): Promise<UnitContainers> {
      return unitContainers(unitName);
    },

    /** Create-or-reuse the unit's container, then start it (above). */
    ensureContainer,

    /**
     * A replace in one call (issue #14): retire the unit's running container `currentId` (kept,
     * stopped, as `.prev`), then create and start the new one. Idempotent, as each step is: a
     * retried call finds the old container already retired and the new one already there.
     */
    async replaceContainer(unit: UnitSpec, stamp: ChangeStamp, currentId: string): Promise<ContainerRef> {
      assertUnitAccepted(unit, host);
      await retire(unit.name, currentId);
      return ensureContainer(unit, stamp);
    },

    /**
     * Start the unit's new version beside its running one (issue #13's judge): `….next`, on ports
     * the engine picks. Idempotent: a running candidate of the same spec is reused; one of another
     * spec, or stopped, is replaced.
     */
    async startCandidate(unit: UnitSpec, stamp: ChangeStamp, options: { routed?: boolean } = {}): Promise<CandidateRef> {
      const routed = options.routed === true;
      assertUnitAccepted(unit, host);
      const name = `${containerName(project, host, unit.name)}${CANDIDATE_SUFFIX}`;
      let found = await docker.getContainer(name).inspect().catch((err: unknown) => { if (statusCode(err) === 404) return undefined; throw err; });
      if (found && (found.Config.Labels?.[LABELS.candidate] !== unit.name || found.Config.Labels?.[LABELS.project] !== project)) {
        throw ApplicationFailure.nonRetryable(`${name} exists on host ${host} but is not ${unit.name}'s candidate: remove or rename it`, 'ContainerConflict');
      }
      if (found && (found.Config.Labels?.[LABELS.specHash] !== unit.specHash || !found.State.Running || (found.Config.Labels?.[LABELS.routed] === 'true') !== routed)) {
        await remove(found.Id);
        found = undefined;
      }
      if (!found) {
        await ensureNetwork();
        const env = await resolveEnvironment(unit);
        const created = await docker.createContainer(candidateCreateOptions(project, unit, stamp, env, routed));
        log.info('candidate created', { container: name, change: stamp.change, specHash: unit.specHash });
        try {
          await startOnce(created.id);
        } catch (err) {
          throw startFailure(name, err);
        }
        found = await docker.getContainer(created.id).inspect();
      }
      return { id: found.Id, name, specHash: unit.specHash, ports: hostPorts(found) };
    },

    /**
     * Give a routed unit's judged candidate the unit's network alias (the project network is left
     * and joined again with it: an endpoint's aliases cannot change), so that the other units reach
     * it by name too once it is promoted. Its engine-picked ports change: route it after this.
     * Idempotent: a candidate that has the alias is left alone.
     */
    async aliasCandidate(unitName: string): Promise<{ changed: boolean }> {
      const name = `${containerName(project, host, unitName)}${CANDIDATE_SUFFIX}`;
      const net = networkName(project, host);
      const info = await docker.getContainer(name).inspect();
      const endpoint = info.NetworkSettings.Networks?.[net];
      if (endpoint?.Aliases?.includes(unitName)) return { changed: false };
      if (endpoint) await docker.getNetwork(net).disconnect({ Container: info.Id, Force: true });
      await docker.getNetwork(net).connect({ Container: info.Id, EndpointConfig: { Aliases: [unitName] } }).catch((err: unknown) => {
        if (statusCode(err) !== 403 && !/already exists/i.test((err as Error).message)) throw err; // connected meanwhile
      });
      log.info('candidate joined its network under the unit\'s name', { container: name });
      return { changed: true };
    },

    /**
     * Make a routed unit's candidate its container (issue #13), once the traffic proxy sends it all
     * the traffic: the old container `previousId` (drained) is stopped and kept as `….prev`, exactly
     * as a swap retires it; the candidate gets the unit's restart policy and then its name.
     * Idempotent: a candidate already promoted is success.
     */
    async promoteCandidate(unit: UnitSpec, previousId?: string): Promise<{ id: string }> {
      assertUnitAccepted(unit, host);
      const candidateName = `${containerName(project, host, unit.name)}${CANDIDATE_SUFFIX}`;
      const found = await docker.getContainer(candidateName).inspect().catch((err: unknown) => { if (statusCode(err) === 404) return undefined; throw err; });
      if (!found) {
        const { current } = await unitContainers(unit.name);
        if (current?.routed && current.specHash === unit.specHash && current.id !== previousId) return { id: current.id };
        throw ApplicationFailure.nonRetryable(`${unit.name} on host ${host}: its candidate ${candidateName} is gone, so it cannot be promoted`, 'ContainerMissing');
      }
      if (found.Config.Labels?.[LABELS.routed] !== 'true' || found.Config.Labels?.[LABELS.unit] !== unit.name) {
        throw ApplicationFailure.nonRetryable(`${candidateName} on host ${host} is not ${unit.name}'s routed candidate: it cannot be promoted`, 'ContainerConflict');
      }
      if (previousId) await retire(unit.name, previousId);
      await docker.getContainer(found.Id).update({ RestartPolicy: { Name: 'unless-stopped' } });
      const to = containerName(project, host, unit.name);
      await docker.getContainer(found.Id).rename({ name: to });
      log.info('candidate promoted', { container: to, id: found.Id, previous: previousId });
      return { id: found.Id };
    },

    /**
     * Start the unit's container `id` again, as the change that made it left it (an automatic
     * confirm, after an engine restart did not bring it back): only while it is still the unit's
     * current container; a kept `.prev` the engine started again instead (its stop was the engine
     * going down, so its restart policy brought it back) is stopped by hand first, as its retire
     * left it. Returns what it did, in words.
     */
    async startUnitAgain(unitName: string, id: string): Promise<{ started: boolean; detail: string }> {
      const { current, previous } = await unitContainers(unitName);
      if (current?.id !== id) return { started: false, detail: `${unitName}'s container is ${current ? short(current.id) : 'gone'} now, not ${short(id)}: left alone` };
      if (current.running) return { started: false, detail: `${current.name} runs` };
      if (previous?.running) await stopByHand(previous.id);
      await startOnce(id);
      log.info('container started again', { container: current.name, id, previousStopped: previous?.running === true });
      return { started: true, detail: `${current.name} started again${previous?.running ? ` (its kept ${previous.name}, started by its engine, stopped again)` : ''}` };
    },

    /** Start a container by id (a routed unit's kept one, before traffic returns to it); a running one is success. */
    async startContainer(id: string): Promise<{ started: boolean }> {
      try {
        return { started: await startOnce(id) };
      } catch (err) {
        if (statusCode(err) === 404) throw ApplicationFailure.nonRetryable(`container ${short(id)} on host ${host} is gone`, 'PreviousMissing');
        throw err;
      }
    },

    /** Remove the unit's candidate (after it was judged, or on rollback); a missing one is success. */
    async removeCandidate(unitName: string): Promise<{ existed: boolean }> {
      return { existed: await remove(`${containerName(project, host, unitName)}${CANDIDATE_SUFFIX}`) };
    },

    /** Stop a container (name or id); a stopped or missing one is success. */
    async stopContainer(name: string, timeoutSeconds = 10): Promise<{ existed: boolean }> {
      try {
        await docker.getContainer(name).stop({ t: timeoutSeconds });
        log.info('container stopped', { container: name });
      } catch (err) {
        if (statusCode(err) === 404) return { existed: false };
        if (statusCode(err) !== 304) throw err;
      }
      return { existed: true };
    },

    /** Remove a container (name or id), stopping it first; a missing one is success. */
    async removeContainer(name: string): Promise<{ existed: boolean }> {
      return { existed: await remove(name) };
    },

    /**
     * Keep the unit's current container `id` for rollback: stop it and rename it to `<name>.prev`.
     * Refused (`UnconfirmedPrevious`) while another container of the unit is kept from a change not
     * yet confirmed: nothing is silently destroyed. Idempotent: a container already retired is
     * success.
     */
    async retireContainer(unitName: string, id: string): Promise<UnitContainer> {
      return retire(unitName, id);
    },

    /**
     * Undo a swap, from wherever an earlier attempt left it: remove every current container of the
     * unit except `previousId`, bring `previousId` back under the unit's name and start it. Without
     * `previousId` (a first install), the unit is left with no container. Idempotent.
     */
    async putBack(unitName: string, previousId?: string): Promise<PutBackResult> {
      const { current, previous, others } = await unitContainers(unitName);
      const removed: string[] = [];
      for (const c of [current, ...others.filter((o) => o.role === 'current')]) {
        if (c && c.id !== previousId) {
          await remove(c.id);
          removed.push(c.id);
        }
      }
      if (!previousId) return { removed };
      const old = [current, previous, ...others].find((c) => c?.id === previousId);
      if (!old) throw ApplicationFailure.nonRetryable(`${unitName} on host ${host}: its previous container ${short(previousId)} is gone, so it cannot be put back`, 'PreviousMissing');
      const name = containerName(project, host, unitName);
      if (old.role === 'previous') {
        // The unit's name is free now (its current container was removed above); a legacy name keeps its own form.
        const back = old.name.slice(0, -PREVIOUS_SUFFIX.length) || name;
        await docker.getContainer(old.id).rename({ name: back });
        log.info('previous container put back', { container: back, id: old.id });
      }
      await startOnce(old.id);
      return { restored: old.id, removed };
    },

    /** Drop the container kept for rollback once its change is confirmed (only while it is still the kept one). */
    async discardPrevious(unitName: string, previousId: string): Promise<{ removed: boolean }> {
      const { previous } = await unitContainers(unitName);
      if (previous?.id !== previousId) return { removed: false };
      await remove(previousId);
      log.info('previous container discarded', { unit: unitName, id: previousId });
      return { removed: true };
    },

    /** The last lines a container wrote, for failure messages. */
    async containerLogs(name: string, tail = 20): Promise<string> {
      try {
        const buf = (await docker.getContainer(name).logs({ stdout: true, stderr: true, tail, follow: false })) as unknown as Buffer;
        // Strip the 8-byte multiplexing headers.
        const out: string[] = [];
        for (let i = 0; i + 8 <= buf.length;) {
          const len = buf.readUInt32BE(i + 4);
          out.push(buf.subarray(i + 8, i + 8 + len).toString());
          i += 8 + len;
        }
        return out.join('').trim();
      } catch {
        return '';
      }
    },

    /** Every container of this project on this host (current and kept-for-rollback). */
    async snapshotHost(): Promise<HostSnapshot> {
      beat();
      const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`, `${LABELS.host}=${host}`] } });
      return {
        host,
        containers: list
          .map((c) => ({ name: c.Names[0]!.replace(/^\//, ''), id: c.Id, unit: c.Labels[LABELS.unit] ?? '', image: c.Image, specHash: c.Labels[LABELS.specHash], running: c.State === 'running' }))
          .sort((a, b) => a.name.localeCompare(b.name)),
      };
    },
  };
}

export type DockerActivities = ReturnType<typeof createDockerActivities>;
