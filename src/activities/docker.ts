/**
 * Docker on one host, through dockerode. Idempotent by construction: a unit's container has a
 * deterministic name and carries labels (project, host, unit, release, spec hash); `ensure…` looks
 * before it creates; stopping a stopped container, or removing a missing one, is success.
 */
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { Context, log } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import type Dockerode from 'dockerode';
import type { UnitSpec } from '../plan/plan.js';
import { containerName, LABELS, networkName, previousName } from '../plan/queues.js';
import type { HostContext } from './context.js';
import { readSecret } from './secrets.js';

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

export interface ContainerRef {
  id: string;
  name: string;
  specHash: string;
  /** True when an existing container with the same spec was found and reused. */
  reused: boolean;
}

export interface ContainerState {
  name: string;
  id: string;
  image: string;
  imageId: string;
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
  containers: { name: string; image: string; specHash?: string; running: boolean }[];
}

function statusCode(err: unknown): number | undefined {
  return (err as { statusCode?: number })?.statusCode;
}

const NS = 1_000_000; // Docker durations are nanoseconds

/** The Docker create options for a unit. Pure apart from the resolved secret values passed in. */
export function containerCreateOptions(
  project: string,
  unit: UnitSpec,
  release: string,
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
      [LABELS.release]: release,
      [LABELS.specHash]: unit.specHash,
    },
    Healthcheck: hc
      ? { Test: hc.test, Interval: Math.max(hc.intervalMs, 1) * NS, Timeout: hc.timeoutMs * NS, Retries: hc.retries, StartPeriod: hc.startPeriodMs * NS }
      : undefined,
    HostConfig: {
      PortBindings: bindings,
      Binds: binds.length ? binds : undefined,
      Mounts: mounts.length ? mounts : undefined,
      RestartPolicy: { Name: 'unless-stopped' },
      NetworkMode: networkName(project, unit.host),
      // Dependencies on other hosts, by the same name (src/plan/cross-host.ts).
      ExtraHosts: unit.extraHosts?.length ? unit.extraHosts : undefined,
      DeviceRequests: unit.gpuDeviceRequest && unit.gpu ? [{ Driver: 'nvidia', Count: unit.gpu.count, Capabilities: [['gpu']] }] : undefined,
    },
    NetworkingConfig: { EndpointsConfig: { [networkName(project, unit.host)]: { Aliases: [unit.name] } } },
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

  // Docker does not make network names unique (CheckDuplicate is best effort): parallel creates on
  // one host are serialised here, and duplicates left by a race elsewhere are collapsed to the oldest.
  // Only the call in flight is shared: the next one looks again, so a network removed meanwhile is
  // recreated rather than remembered.
  let networkInFlight: Promise<string> | undefined;
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

  return {
    /** Make sure the unit's image exists on this host: build it from its context, or find it. */
    async ensureImage(unit: UnitSpec): Promise<{ image: string; built: boolean }> {
      if (unit.build) {
        log.info('building image', { unit: unit.name, image: unit.image, context: unit.build.context });
        try {
          await buildImage(docker, unit.build.context, unit.image, { dockerfile: unit.build.dockerfile, buildargs: unit.build.args });
        } catch (err) {
          throw ApplicationFailure.nonRetryable(`${unit.name}: ${(err as Error).message}`, 'ImageBuildFailed');
        }
        return { image: unit.image, built: true };
      }
      try {
        await docker.getImage(unit.image).inspect();
        return { image: unit.image, built: false };
      } catch (err) {
        if (statusCode(err) !== 404) throw err;
      }
      throw ApplicationFailure.nonRetryable(
        `${unit.name}: image ${unit.image} is not on host ${host} and no build context is given: load or pull it on that host, or add build: to the unit`,
        'ImageMissing',
      );
    },

    async inspectContainer(name: string): Promise<ContainerState | undefined> {
      return inspect(name);
    },

    /**
     * Create-or-reuse the unit's container under its deterministic name, then start it.
     * A container of that name with another spec hash is a conflict the workflow must resolve
     * first (retire it): nothing is ever replaced silently.
     */
    async ensureContainer(unit: UnitSpec, release: string): Promise<ContainerRef> {
      const name = containerName(project, host, unit.name);
      let state = await inspect(name);
      let reused = true;
      if (state && state.specHash !== unit.specHash) {
        throw ApplicationFailure.nonRetryable(
          `${name} exists with spec ${state.specHash ?? '(none)'} but ${unit.specHash} is wanted: retire it first`,
          'ContainerConflict',
        );
      }
      if (!state) {
        await ensureNetwork();
        const env = await resolveEnvironment(unit);
        try {
          await docker.createContainer(containerCreateOptions(project, unit, release, env));
          log.info('container created', { container: name, release, specHash: unit.specHash });
        } catch (err) {
          if (statusCode(err) !== 409) throw err; // a retried attempt raced its earlier self
        }
        reused = false;
        state = (await inspect(name))!;
      }
      if (!state.running) {
        try {
          await docker.getContainer(name).start();
          log.info('container started', { container: name });
        } catch (err) {
          if (statusCode(err) !== 304) {
            throw ApplicationFailure.nonRetryable(`${name} could not start: ${(err as Error).message}`, 'StartFailed');
          }
        }
      }
      return { id: state.id, name, specHash: unit.specHash, reused };
    },

    /** Stop a container; a stopped or missing one is success. */
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

    async startContainer(name: string): Promise<void> {
      try {
        await docker.getContainer(name).start();
        log.info('container started', { container: name });
      } catch (err) {
        if (statusCode(err) === 404) throw ApplicationFailure.nonRetryable(`${name} does not exist on host ${host}`, 'ContainerMissing');
        if (statusCode(err) !== 304) throw err;
      }
    },

    /** Rename; if it was already renamed (from missing, to present) that is success. */
    async renameContainer(from: string, to: string): Promise<{ renamed: boolean }> {
      const [a, b] = await Promise.all([inspect(from), inspect(to)]);
      if (!a && b) return { renamed: false };
      if (!a) throw ApplicationFailure.nonRetryable(`cannot rename ${from}: no such container on host ${host}`, 'ContainerMissing');
      if (b) throw ApplicationFailure.nonRetryable(`cannot rename ${from} to ${to}: ${to} exists on host ${host}`, 'ContainerConflict');
      await docker.getContainer(from).rename({ name: to });
      log.info('container renamed', { from, to });
      return { renamed: true };
    },

    /** Remove a container (stopping it first); a missing one is success. */
    async removeContainer(name: string): Promise<{ existed: boolean }> {
      try {
        await docker.getContainer(name).remove({ force: true });
        log.info('container removed', { container: name });
        return { existed: true };
      } catch (err) {
        if (statusCode(err) === 404) return { existed: false };
        if (statusCode(err) === 409) {
          // removal already in progress
          return { existed: true };
        }
        throw err;
      }
    },

    /**
     * Keep the unit's current container for rollback: stop it and rename it to `<name>.prev`
     * (an older `.prev` is removed first). Idempotent; returns what was retired, if anything.
     */
    async retireContainer(unitName: string): Promise<ContainerState | undefined> {
      const name = containerName(project, host, unitName);
      const prev = previousName(name);
      const current = await inspect(name);
      if (!current) return await inspect(prev); // already retired by an earlier attempt
      const older = await inspect(prev);
      if (older) await docker.getContainer(prev).remove({ force: true });
      try {
        await docker.getContainer(name).stop({ t: 10 });
      } catch (err) {
        if (statusCode(err) !== 304) throw err;
      }
      await docker.getContainer(name).rename({ name: prev });
      log.info('container retired', { container: name, to: prev });
      return { ...current, name: prev, running: false };
    },

    /**
     * Undo a retire: drop the unit's current container (if any) and bring `<name>.prev` back
     * under the unit's name, started. Idempotent.
     */
    async restorePrevious(unitName: string): Promise<{ restored: boolean }> {
      const name = containerName(project, host, unitName);
      const prev = previousName(name);
      const previous = await inspect(prev);
      if (!previous) return { restored: false };
      const current = await inspect(name);
      if (current) await docker.getContainer(name).remove({ force: true });
      await docker.getContainer(prev).rename({ name });
      try {
        await docker.getContainer(name).start();
      } catch (err) {
        if (statusCode(err) !== 304) throw err;
      }
      log.info('previous container restored', { container: name });
      return { restored: true };
    },

    /** Drop the kept `.prev` container once a release is confirmed. */
    async discardPrevious(unitName: string): Promise<{ existed: boolean }> {
      const prev = previousName(containerName(project, host, unitName));
      try {
        await docker.getContainer(prev).remove({ force: true });
        return { existed: true };
      } catch (err) {
        if (statusCode(err) === 404) return { existed: false };
        throw err;
      }
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
      Context.current().heartbeat();
      const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`, `${LABELS.host}=${host}`] } });
      return {
        host,
        containers: list
          .map((c) => ({ name: c.Names[0]!.replace(/^\//, ''), image: c.Image, specHash: c.Labels[LABELS.specHash], running: c.State === 'running' }))
          .sort((a, b) => a.name.localeCompare(b.name)),
      };
    },
  };
}

export type DockerActivities = ReturnType<typeof createDockerActivities>;
