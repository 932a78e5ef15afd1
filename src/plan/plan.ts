/**
 * Inventory → plan. Pure: no I/O, deterministic for a given inventory.
 *
 * `buildPlan` checks everything the schema cannot see on its own (cross-references, cycles, port
 * clashes, placement, GPU needs, batches, literal secrets) and either returns a plan or throws an
 * InventoryError listing every problem with the field's path and a fix. Nothing is started.
 */
import { bindAccess, bindProblems, type HostAccess } from '../common/unit-guard.js';
import { createHash } from 'node:crypto';
import { InventoryError, type Problem } from '../inventory/problems.js';
import type { Inventory, PortMapping, SecretRef, Service, VolumeMount } from '../inventory/schema.js';
import { closest, findCycle, topologicalWaves, type Graph } from './graph.js';
import { hostQueue } from './queues.js';
import { planBackups, type BackupPlan } from './backups.js';
import { applyCrossHostLinks } from './cross-host.js';
import { ambiguousNames } from './names.js';
import { literalSecretProblems } from './secrets.js';
import { packGpus, type GpuNeed } from './gpu.js';
import type { JudgeSettings } from './judge.js';
import { routable } from './traffic.js';

export type UnitKind = 'service' | 'agent';

/** How readiness is judged, resolved to concrete addresses on the unit's host. */
export type Probe =
  | { kind: 'http'; address: string; port: number; path: string }
  | { kind: 'tcp'; address: string; port: number }
  | { kind: 'exec'; command: string[] }
  | { kind: 'docker' }
  | { kind: 'running' };

export interface ProbeTiming {
  intervalMs: number;
  timeoutMs: number;
  retries: number;
  startPeriodMs: number;
}

/** How a unit's image is made on its own host's engine, by that host's worker. */
export interface UnitBuild {
  /** A folder on the unit's host (every host here has the same checkout). */
  context: string;
  dockerfile?: string;
  args: Record<string, string>;
  /** Build only when the host's engine lacks the image (the stub image): otherwise rebuilt every deploy. */
  ifMissing?: boolean;
  /** Files the context needs from the host, copied in when missing: name in the context → candidate paths on the host, first found wins. */
  hostFiles?: Record<string, string[]>;
}

/** Everything a host's activities need to run one unit. Secrets stay references. */
export interface UnitSpec {
  name: string;
  kind: UnitKind;
  host: string;
  image: string;
  build?: UnitBuild;
  command?: string[];
  environment: Record<string, string | SecretRef>;
  ports: Required<PortMapping>[];
  volumes: VolumeMount[];
  /** compose-style test handed to Docker as the container's own HEALTHCHECK. */
  dockerHealthcheck?: { test: string[]; intervalMs: number; timeoutMs: number; retries: number; startPeriodMs: number };
  probe: Probe;
  timing: ProbeTiming;
  gpu?: { count: number; minVramGb: number };
  /** Which GPUs of its host (positions in the host's declared `gpus`), chosen so each GPU's memory adds up. */
  gpuIndexes?: number[];
  /** Add the NVIDIA device request (the host declares a GPU runtime). */
  gpuDeviceRequest: boolean;
  dependsOn: Record<string, 'service_started' | 'service_healthy' | 'service_completed_successfully'>;
  /** `name:address` entries resolving cross-host dependencies (src/plan/cross-host.ts); absent when none. */
  extraHosts?: string[];
  /**
   * A one-shot job (a database migration): some dependent names it with
   * `service_completed_successfully`. It runs once (restart policy "no"), is not probed, and must
   * exit 0 before its dependents start; a non-zero exit fails the change.
   */
  job?: true;
  criticality: 'critical' | 'high' | 'medium' | 'low';
  tier?: string;
  /** Host access the inventory allows this unit (`allow:`); the worker refuses any other sensitive bind. */
  allow?: HostAccess[];
  /**
   * A group of agents (seed 003): the agents this one container holds, each probed on its own port.
   * The unit is healthy when every one of them answers; `probe` is the first agent's.
   */
  members?: GroupMember[];
  /** An agent's own traffic steps (issue #13): they take the place of its batch's. */
  traffic?: TrafficSteps;
  /** Hash of everything that defines the container: a changed hash means the container is replaced. */
  specHash: string;
}

/** One agent of a group, and how its readiness is judged (its own port). */
export interface GroupMember {
  name: string;
  probe: Extract<Probe, { kind: 'http' | 'tcp' }>;
}

export interface PlannedHost {
  name: string;
  queue: string;
  address: string;
  gpus: { model: string; vramGb: number }[];
  gpuRuntime: 'nvidia' | 'none';
  labels: Record<string, string>;
}

export interface PlannedBatch {
  name: string;
  index: number;
  description?: string;
  agents: string[];
  concurrency: number;
  maxFailures: number;
  latencyTolerance: number;
  /** The judge's settings (inventory `analysis`, with `latency_tolerance` as its relative effect). */
  analysis: JudgeSettings;
  approval: boolean;
  /** Traffic in steps through the host's traffic proxy (issue #13); absent: the swap of before. */
  traffic?: TrafficSteps;
}

/** A batch's traffic steps: percentages ending at 100, the hold of each, approval between steps. */
export interface TrafficSteps {
  steps: number[];
  holdMs: number;
  approve: boolean;
}

export interface Plan {
  project: string;
  hosts: PlannedHost[];
  units: Record<string, UnitSpec>;
  /** The stack's services in waves: a wave may start once every earlier wave it depends on is healthy. */
  serviceWaves: string[][];
  batches: PlannedBatch[];
  /** What `backupDatabases` takes, from the inventory's `backups:` section (absent: none declared). */
  backups?: BackupPlan;
  warnings: Problem[];
}

export interface PlanOptions {
  /** Folder that relative build contexts and bind mounts resolve against (the inventory's folder). */
  baseDir?: string;
}

function joinPath(base: string | undefined, p: string): string {
  if (!base || p.startsWith('/')) return p;
  const parts = `${base}/${p}`.split('/');
  const out: string[] = [];
  for (const part of parts) {
    if (part === '..') out.pop();
    else if (part !== '.' && part !== '') out.push(part);
  }
  return `${base.startsWith('/') ? '/' : ''}${out.join('/')}`;
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    return `{${Object.keys(value).sort().filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .map((k) => `${JSON.stringify(k)}:${canonicalJson((value as Record<string, unknown>)[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

export function hashSpec(spec: Omit<UnitSpec, 'specHash'>): string {
  // Only what defines the running container; placement bookkeeping (criticality, tier, deps) is left out.
  const { name, host, image, build, command, environment, ports, volumes, dockerHealthcheck, gpu, gpuIndexes, gpuDeviceRequest, extraHosts } = spec;
  return createHash('sha256')
    .update(canonicalJson({ name, host, image, build, command, environment, ports, volumes, dockerHealthcheck, gpu, gpuIndexes, gpuDeviceRequest, extraHosts }))
    .digest('hex')
    .slice(0, 16);
}

function describeGpus(inv: Inventory): string {
  const all = Object.entries(inv.hosts).flatMap(([h, host]) => host.gpus.map((g) => `${h}: ${g.model} ${g.vram_gb} GB`));
  return all.length ? all.join(', ') : 'no host declares a GPU';
}

/** The wildcard addresses a port can be published on; probed on the loopback of the same family. */
const WILDCARD: Record<string, string> = { '0.0.0.0': '127.0.0.1', '::': '::1' };
const probeAddress = (ip: string) => (Object.hasOwn(WILDCARD, ip) ? WILDCARD[ip]! : ip);

/** Names the CLI reads as something else: `migrate start all` runs every batch. */
const RESERVED_BATCH_NAMES = new Set(['all']);

export function buildPlan(inv: Inventory, options: PlanOptions = {}): Plan {
  const problems: Problem[] = [];
  const warnings: Problem[] = [];
  // Maps, not objects, for every look-up by a name from the inventory: a host named `constructor`
  // or `toString` must not find Object.prototype's.
  const hostsByName = new Map(Object.entries(inv.hosts));
  const hostNames = [...hostsByName.keys()];
  const hostOf = (h: string) => hostsByName.get(h)!;

  // --- One namespace for services and agents ------------------------------------------------
  const units = new Map<string, { kind: UnitKind; spec: Service; path: string }>();
  const byLowerName = new Map<string, string>();
  for (const [name, spec] of Object.entries(inv.services)) {
    units.set(name, { kind: 'service', spec, path: `services.${name}` });
    byLowerName.set(name.toLowerCase(), name);
  }
  for (const [name, spec] of Object.entries(inv.agents)) {
    const clash = byLowerName.get(name.toLowerCase());
    if (clash !== undefined) {
      problems.push({
        path: `agents.${name}`,
        message: `duplicate service: "${name}" is also declared as services.${clash} (container names are case-insensitive on some hosts)`,
        fix: 'give one of them another name, or declare it once',
      });
      continue;
    }
    units.set(name, { kind: 'agent', spec, path: `agents.${name}` });
    byLowerName.set(name.toLowerCase(), name);
  }

  // --- Agent groups (seed 003): one unit, several agents ------------------------------------------
  const groupOf = new Map<string, string>(); // member agent → its group unit
  const memberByLowerName = new Map<string, string>();
  for (const [name, { kind, spec, path }] of units) {
    if (!spec.group) continue;
    if (kind === 'service') {
      problems.push({ path: `${path}.group`, message: 'only agents form groups: the stack\'s services deploy one container each', fix: `declare "${name}" under agents, or remove group` });
      continue;
    }
    const members = Object.keys(spec.group.agents);
    for (const member of members) {
      const here = `${path}.group.agents.${member}`;
      const unitClash = byLowerName.get(member.toLowerCase());
      const groupClash = memberByLowerName.get(member.toLowerCase());
      if (unitClash !== undefined) {
        const other = units.get(unitClash)!;
        problems.push({
          path: here,
          message: other.spec.group
            ? `"${member}" names both an agent of group "${name}" and the group ${other.path}`
            : `agent "${member}" is declared twice: as ${other.path} (its own container) and in group "${name}" — an agent runs in one container`,
          fix: other.spec.group ? 'give the group or the agent another name' : `remove ${other.path} (the group runs it: move its description to the group's entry), or remove "${member}" from the group`,
        });
        continue;
      }
      if (groupClash !== undefined) {
        problems.push({
          path: here,
          message: `agent "${member}" is in two groups: "${groupOf.get(groupClash)}" and "${name}"`,
          fix: `an agent runs in one container: remove it from one of the groups`,
        });
        continue;
      }
      groupOf.set(member, name);
      memberByLowerName.set(member.toLowerCase(), member);
    }
    const { count } = spec.group;
    if (count !== undefined && count !== members.length) {
      problems.push({
        path: `${path}.group.count`,
        message: `says the group holds ${count} agent(s), but it lists ${members.length} (${members.join(', ')})`,
        fix: count > members.length
          ? `add the ${count - members.length} missing agent(s) with their ports, or write count: ${members.length} if the list is right`
          : `remove the ${members.length - count} agent(s) too many, or write count: ${members.length} if the list is right`,
      });
    }
    const hc = spec.healthcheck;
    if (hc && hc.http === undefined && hc.tcp !== true) {
      problems.push({
        path: `${path}.healthcheck`,
        message: 'a group is probed on each of its agents\' ports: its health check must be http (a path) or tcp: true',
        fix: 'write healthcheck: { http: /health } (each agent\'s port is probed with it) or healthcheck: { tcp: true }',
      });
    } else if (hc && typeof hc.http === 'object' && hc.http.port !== undefined) {
      problems.push({ path: `${path}.healthcheck.http.port`, message: 'a group is probed on each of its agents\' ports, not on one', fix: 'write http: /PATH without a port' });
    }
  }

  // --- Dependencies -----------------------------------------------------------------------------
  const graph: Graph = new Map();
  for (const [name, { kind, spec, path }] of units) {
    const deps: string[] = [];
    for (const dep of Object.keys(spec.depends_on)) {
      const target = units.get(dep);
      if (kind === 'service' && target?.kind === 'agent') {
        // The stack deploys before any agent migrates, and agents move batch by batch: a service
        // cannot wait for one (this was silently dropped before).
        problems.push({
          path: `${path}.depends_on.${dep}`,
          message: `service "${name}" depends on the agent "${dep}": services deploy as the stack, before and apart from the agents' batches, so nothing would ever wait for it`,
          fix: `remove the dependency, or declare "${dep}" under services if the stack needs it`,
        });
        continue;
      }
      if (!target && groupOf.has(dep)) {
        problems.push({
          path: `${path}.depends_on.${dep}`,
          message: `"${dep}" is an agent of group "${groupOf.get(dep)}": units depend on the container, which is the group`,
          fix: `write "${groupOf.get(dep)}"`,
        });
        continue;
      }
      if (!target) {
        const hint = closest(dep, units.keys());
        problems.push({
          path: `${path}.depends_on.${dep}`,
          message: `unknown dependency "${dep}"${hint ? ` (did you mean "${hint}"?)` : ''}`,
          fix: hint ? `write "${hint}", or declare "${dep}" under services or agents` : `declare "${dep}" under services or agents, or remove the dependency`,
        });
        continue;
      }
      deps.push(dep);
    }
    graph.set(name, deps);
  }
  const cycle = findCycle(graph);
  if (cycle) {
    problems.push({
      path: `${units.get(cycle[0]!)!.path}.depends_on`,
      message: `dependency cycle: ${cycle.join(' → ')}`,
      fix: 'remove one of these depends_on entries: nothing in a cycle could ever start',
    });
  }

  // --- Placement ----------------------------------------------------------------------------
  const placed = new Map<string, string>();
  const gpuNeeds: GpuNeed[] = [];
  for (const [name, { spec, path }] of units) {
    let candidates = hostNames;
    if (spec.placement && 'host' in spec.placement) {
      const wanted = spec.placement.host;
      if (!hostsByName.has(wanted)) {
        const hint = closest(wanted, hostNames);
        problems.push({
          path: `${path}.placement.host`,
          message: `unknown host "${wanted}"${hint ? ` (did you mean "${hint}"?)` : ''}`,
          fix: `use one of the declared hosts: ${hostNames.join(', ')}`,
        });
        continue;
      }
      candidates = [wanted];
    } else if (spec.placement && 'labels' in spec.placement) {
      const want = Object.entries(spec.placement.labels);
      candidates = hostNames.filter((h) => {
        const labels = hostOf(h).labels;
        return want.every(([k, v]) => Object.hasOwn(labels, k) && labels[k] === v);
      });
      if (candidates.length === 0) {
        problems.push({
          path: `${path}.placement.labels`,
          message: `no host has the labels ${want.map(([k, v]) => `${k}=${v}`).join(', ')}`,
          fix: 'add the labels to a host, or change the constraint',
        });
        continue;
      }
    }
    if (spec.gpu) {
      const { count, min_vram_gb: minVram } = spec.gpu;
      // compose's `count: all`: every GPU of the host, so each of them must meet the need.
      const fits = (h: string) => {
        const gpus = hostOf(h).gpus;
        return count === 'all' ? gpus.length > 0 && gpus.every((g) => g.vram_gb >= minVram) : gpus.filter((g) => g.vram_gb >= minVram).length >= count;
      };
      const fitting = candidates.filter(fits);
      if (fitting.length === 0) {
        const where = candidates.length === hostNames.length ? 'no host' : `host ${candidates.join(', ')}`;
        problems.push({
          path: `${path}.gpu`,
          message: `needs ${count === 'all' ? 'all the GPUs of its host (at least one)' : `${count} GPU(s)`} with at least ${minVram} GB of VRAM, which ${where} can meet (${describeGpus(inv)})`,
          fix: 'lower gpu.min_vram_gb or gpu.count, place it on a host with such a GPU, or declare that GPU on its host',
        });
        continue;
      }
      // Which GPU(s) of which host: decided below, all GPU units together, so the memory adds up.
      gpuNeeds.push({ unit: name, path, count, minVramGb: minVram, hosts: fitting });
      continue;
    }
    placed.set(name, candidates[0]!);
  }
  const gpuPacking = packGpus(hostNames.map((h) => ({ name: h, gpus: hostOf(h).gpus.map((g) => ({ model: g.model, vramGb: g.vram_gb })) })), gpuNeeds);
  problems.push(...gpuPacking.problems);
  for (const [unit, { host }] of gpuPacking.assigned) placed.set(unit, host);

  // --- Failover policy (src/plan/failover.ts) -------------------------------------------------------
  for (const [, { spec, path }] of units) {
    spec.failover?.to.forEach((h, i) => {
      if (!hostsByName.has(h)) {
        const hint = closest(h, hostNames);
        problems.push({ path: `${path}.failover.to[${i}]`, message: `unknown host "${h}"${hint ? ` (did you mean "${hint}"?)` : ''}`, fix: `use one of the declared hosts: ${hostNames.join(', ')}` });
      }
    });
    if (spec.failover?.backup !== undefined && !spec.failover.stateful) {
      problems.push({ path: `${path}.failover.backup`, message: 'a backup is restored only for a stateful unit', fix: 'add `stateful: true`, or remove `backup`' });
    }
    const backupNames = inv.backups ? [...inv.backups.postgres, ...inv.backups.redis, ...inv.backups.influxdb].map((b) => b.name) : [];
    if (spec.failover?.backup !== undefined && !backupNames.includes(spec.failover.backup)) {
      problems.push({ path: `${path}.failover.backup`, message: `no backup target named "${spec.failover.backup}"`, fix: backupNames.length ? `use one of backups.postgres/redis/influxdb: ${backupNames.join(', ')}` : 'declare it under `backups:` (postgres, redis or influxdb)' });
    }
  }

  // --- Per-unit checks and normalised specs -----------------------------------------------------
  const specs: Record<string, UnitSpec> = {};
  const jobs = new Set([...units.values()].flatMap(({ spec }) => Object.entries(spec.depends_on).filter(([, c]) => c.condition === 'service_completed_successfully').map(([d]) => d)));
  const published = new Map<string, { ip: string; path: string; unit: string }[]>(); // host/proto/port → users
  for (const [name, { kind, spec, path }] of units) {
    const host = placed.get(name);
    // Literal secrets never enter the inventory (nor, therefore, any workflow input).
    problems.push(...literalSecretProblems(path, spec));

    if (kind === 'service' && spec.traffic) {
      problems.push({ path: `${path}.traffic`, message: 'only agents move their traffic in steps: the stack\'s services are deployed, not migrated in batches', fix: `remove traffic from ${name}, or declare it under agents` });
    }
    if (kind === 'agent' && !spec.healthcheck) {
      problems.push({
        path: `${path}.healthcheck`,
        message: 'an agent needs a health check: its migration is validated against its own baseline',
        fix: 'add healthcheck: { http: /health } with a published port, or healthcheck: { exec: [...] }',
      });
    }
    if (!host) continue;
    const hostSpec = hostOf(host);

    const ports: Required<PortMapping>[] = spec.ports.map((p) => ({ ...p, hostIp: p.hostIp ?? hostSpec.address }));
    const portPaths = ports.map((_, i) => `${path}.ports[${i}]`);
    // A group's agents answer on their own ports: each is published on the same host port unless `ports` maps it.
    for (const [member, { port: target }] of Object.entries(spec.group?.agents ?? {})) {
      if (ports.some((p) => p.target === target && p.protocol === 'tcp')) continue;
      ports.push({ hostIp: hostSpec.address, published: target, target, protocol: 'tcp' });
      portPaths.push(`${path}.group.agents.${member}`);
    }
    ports.forEach((p, i) => {
      const key = `${host}/${p.protocol}/${p.published}`;
      const users = published.get(key) ?? [];
      const clash = users.find((u) => u.ip === p.hostIp || Object.hasOwn(WILDCARD, u.ip) || Object.hasOwn(WILDCARD, p.hostIp));
      if (clash) {
        problems.push({
          path: portPaths[i]!,
          message: `host port ${p.published}/${p.protocol} on ${host} is already published by ${clash.path}`,
          fix: `publish another host port (e.g. "${p.published + 1000}:${p.target}"), or move one of them to another host`,
        });
      }
      users.push({ ip: p.hostIp, path: portPaths[i]!, unit: name });
      published.set(key, users);
    });

    const hc = spec.healthcheck;
    const timing: ProbeTiming = hc
      ? { intervalMs: hc.interval, timeoutMs: hc.timeout, retries: hc.retries, startPeriodMs: hc.start_period }
      : { intervalMs: 500, timeoutMs: 2000, retries: 3, startPeriodMs: 0 };
    let probe: Probe = { kind: 'running' };
    let dockerHealthcheck: UnitSpec['dockerHealthcheck'];
    if (hc?.http !== undefined || hc?.tcp !== undefined) {
      const field = hc.http !== undefined ? 'http' : 'tcp';
      const wantedTarget = hc.http !== undefined ? (typeof hc.http === 'string' ? undefined : hc.http.port) : hc.tcp === true ? undefined : hc.tcp;
      const mapping = wantedTarget === undefined ? ports.find((p) => p.protocol === 'tcp') : ports.find((p) => p.target === wantedTarget && p.protocol === 'tcp');
      if (!mapping) {
        problems.push({
          path: `${path}.healthcheck.${field}`,
          message: wantedTarget === undefined
            ? `has ${field === 'http' ? 'an' : 'a'} ${field} health check but publishes no port (${kind === 'agent' ? 'the seeds list some agents without ports' : 'nothing to probe'})`
            : `probes container port ${wantedTarget}, which is not published`,
          fix: `publish the port (ports: ["HOST:${wantedTarget ?? 'CONTAINER'}"]) or probe inside the container with healthcheck.exec`,
        });
      } else if (hc.http !== undefined) {
        probe = { kind: 'http', address: probeAddress(mapping.hostIp), port: mapping.published, path: typeof hc.http === 'string' ? hc.http : hc.http.path };
      } else {
        probe = { kind: 'tcp', address: probeAddress(mapping.hostIp), port: mapping.published };
      }
    } else if (hc?.exec) {
      probe = { kind: 'exec', command: hc.exec };
    } else if (hc?.test !== undefined) {
      probe = { kind: 'docker' };
      const test = typeof hc.test === 'string' ? ['CMD-SHELL', hc.test] : hc.test;
      dockerHealthcheck = { test, intervalMs: hc.interval, timeoutMs: hc.timeout, retries: hc.retries, startPeriodMs: hc.start_period };
    }

    // A group: every agent probed on its own port with the group's check (http path or tcp).
    let members: GroupMember[] | undefined;
    if (spec.group && hc && (hc.http !== undefined || hc.tcp === true)) {
      members = Object.entries(spec.group.agents).map(([member, { port: target }]) => {
        const mapping = ports.find((p) => p.target === target && p.protocol === 'tcp')!;
        const address = probeAddress(mapping.hostIp);
        return {
          name: member,
          probe: hc.http !== undefined
            ? { kind: 'http' as const, address, port: mapping.published, path: typeof hc.http === 'string' ? hc.http : hc.http.path }
            : { kind: 'tcp' as const, address, port: mapping.published },
        };
      });
      probe = members[0]!.probe;
    }

    for (const [dep, cond] of Object.entries(spec.depends_on)) {
      const depSpec = units.get(dep)?.spec;
      if (depSpec && cond.condition === 'service_healthy' && !depSpec.healthcheck) {
        warnings.push({
          path: `${path}.depends_on.${dep}`,
          message: `waits for "${dep}" to be healthy, but "${dep}" has no health check: running counts as healthy`,
          fix: `give ${dep} a healthcheck`,
        });
      }
    }

    // The worker refuses these binds too (src/common/unit-guard.ts): one rule, checked in both places.
    const volumes = spec.volumes.map((v) => (v.type === 'bind' ? { ...v, source: joinPath(options.baseDir, v.source) } : v));
    problems.push(...bindProblems(path, volumes, spec.allow));
    for (const access of spec.allow) {
      const bound = volumes.find((v) => v.type === 'bind' && bindAccess(v.source)?.access === access);
      warnings.push(bound
        ? { path: `${path}.allow`, message: `is allowed ${access}: ${bindAccess(bound.source)!.what} is bound into its container (${bound.source})`, fix: 'keep it only if the unit needs it: whoever controls this container controls that part of the host' }
        : { path: `${path}.allow`, message: `allows ${access}, which none of its binds uses`, fix: `remove ${access} from allow` });
    }

    const image = spec.image ?? `${inv.project}/${name.toLowerCase()}:build`;
    const unit: Omit<UnitSpec, 'specHash'> = {
      name,
      kind,
      host,
      image,
      build: spec.build ? { context: joinPath(options.baseDir, spec.build.context), dockerfile: spec.build.dockerfile, args: spec.build.args } : undefined,
      command: spec.command,
      environment: spec.environment,
      ports,
      volumes,
      dockerHealthcheck,
      probe,
      timing,
      gpu: spec.gpu ? { count: spec.gpu.count === 'all' ? hostSpec.gpus.length : spec.gpu.count, minVramGb: spec.gpu.min_vram_gb } : undefined,
      gpuIndexes: gpuPacking.assigned.get(name)?.indexes,
      gpuDeviceRequest: Boolean(spec.gpu) && hostSpec.gpu_runtime === 'nvidia',
      dependsOn: Object.fromEntries(Object.entries(spec.depends_on).map(([d, c]) => [d, c.condition])),
      criticality: spec.criticality,
      tier: spec.tier,
      ...(spec.allow.length ? { allow: [...spec.allow] } : {}),
      ...(jobs.has(name) ? { job: true as const } : {}),
      ...(members ? { members } : {}),
      ...(spec.traffic && kind === 'agent' ? { traffic: { steps: spec.traffic.steps, holdMs: spec.traffic.hold, approve: spec.traffic.approve } } : {}),
    };
    specs[name] = { ...unit, specHash: hashSpec(unit) };
  }

  for (const [name, spec] of Object.entries(specs)) {
    if (spec.traffic && !routable(spec)) {
      warnings.push({ path: `agents.${name}.traffic`, message: 'cannot be routed through the traffic proxy (a group, a GPU unit, a job, no published TCP port, or a probe that is not http/tcp): it is swapped, not moved in steps', fix: 'remove traffic from it, or publish its port and probe it over http/tcp' });
    }
  }

  // --- Batches ------------------------------------------------------------------------------
  // A batch names agents and agent groups; naming every agent of a group names the group (one
  // unit: one container, one migration). A batch naming only some of a group's agents would split
  // that container: a plan error, as is a group whose agents are spread over several batches.
  const seenBatch = new Map<string, number>();
  const inBatch = new Map<string, { batch: string; path: string }>();
  const batchUnits: string[][] = [];
  inv.batches.forEach((b, bi) => {
    if (seenBatch.has(b.name)) {
      problems.push({ path: `batches[${bi}].name`, message: `duplicate batch "${b.name}" (also batches[${seenBatch.get(b.name)}])`, fix: 'give each batch its own name' });
    }
    seenBatch.set(b.name, bi);
    if (RESERVED_BATCH_NAMES.has(b.name.toLowerCase())) {
      problems.push({ path: `batches[${bi}].name`, message: `"${b.name}" cannot name a batch: \`migrate start all\` means every batch`, fix: 'give the batch another name, e.g. batch-N' });
    }
    const resolved: string[] = [];
    const named = new Map<string, string[]>(); // group → its agents this batch names one by one
    b.agents.forEach((agent, ai) => {
      const here = `batches[${bi}].agents[${ai}]`;
      const group = groupOf.get(agent);
      const unitName = group ?? agent;
      const unit = units.get(unitName);
      if (!unit || unit.kind !== 'agent') {
        const hint = closest(agent, [...Object.keys(inv.agents), ...groupOf.keys()]);
        problems.push({
          path: here,
          message: unit ? `"${agent}" is a service, not an agent: batches migrate agents` : `unknown agent "${agent}"${hint ? ` (did you mean "${hint}"?)` : ''}`,
          fix: unit ? 'declare it under agents, or leave it out of the batch' : `declare it under agents${hint ? `, or write "${hint}"` : ''}`,
        });
        return;
      }
      if (group !== undefined) {
        const list = named.get(group) ?? [];
        if (list.includes(agent)) {
          problems.push({ path: here, message: `agent "${agent}" is named twice in ${b.name}`, fix: 'name it once' });
          return;
        }
        named.set(group, [...list, agent]);
        if (list.length > 0 || resolved.includes(group)) return; // the group is already in this batch
      } else if (unit.spec.group && named.has(agent)) {
        return; // named after some of its agents: one unit
      }
      const earlier = inBatch.get(unitName);
      if (earlier) {
        problems.push(group === undefined
          ? { path: here, message: `agent "${agent}" is in two batches: already in ${earlier.batch} (${earlier.path})`, fix: 'an agent migrates once: remove it from one of the batches' }
          : {
              path: here,
              message: `agent "${agent}" runs in group "${group}", whose agents are split between ${earlier.batch} (${earlier.path}) and ${b.name}: the group is one container and migrates as one unit`,
              fix: `move all of ${group}'s agents (${Object.keys(unit.spec.group!.agents).join(', ')}) into one batch, or name "${group}" in one batch instead of its agents`,
            });
        return;
      }
      inBatch.set(unitName, { batch: b.name, path: here });
      resolved.push(unitName);
    });
    for (const [group, list] of named) {
      if (resolved.includes(group) && b.agents.includes(group)) continue; // the group itself is named: all of it
      const all = Object.keys(units.get(group)!.spec.group!.agents);
      const missing = all.filter((m) => !list.includes(m));
      if (missing.length === 0 || inBatch.get(group)?.batch !== b.name) continue;
      problems.push({
        path: `batches[${bi}].agents`,
        message: `${b.name} names ${list.join(', ')} but not ${missing.join(', ')}, all agents of group "${group}": a group is one container and migrates as one unit, so a batch cannot split it`,
        fix: `name "${group}" in ${b.name} instead of its agents (it migrates all ${all.length}), or add ${missing.join(', ')} to ${b.name} and remove them from any other batch`,
      });
    }
    if (b.max_failures > resolved.length && resolved.length > 0) {
      problems.push({
        path: `batches[${bi}].max_failures`,
        message: `max_failures is ${b.max_failures} but the batch has ${resolved.length} agent(s)${resolved.length < b.agents.length ? ' or group(s)' : ''}: the whole batch could never be rolled back`,
        fix: `write a number from 0 to ${resolved.length}`,
      });
    }
    batchUnits.push(resolved);
  });
  for (const name of Object.keys(inv.agents)) {
    if (units.get(name)?.kind !== 'agent') continue;
    if (inv.batches.length > 0 && !inBatch.has(name)) {
      warnings.push({ path: `agents.${name}`, message: 'is in no batch: `migrate start` will never migrate it', fix: 'add it to a batch' });
    }
  }

  for (const [h, hostSpec] of hostsByName) {
    const endpoint = hostSpec.docker;
    if (!('host' in endpoint) || endpoint.tls) continue;
    if (endpoint.insecure) {
      warnings.push({ path: `hosts.${h}.docker`, message: `reaches Docker at ${endpoint.host} without TLS (insecure: true): anyone who can reach that port controls host ${h}`, fix: 'add tls: { ca, cert, key } (dockerd --tlsverify), or use socket: on the host itself' });
    } else {
      problems.push({ path: `hosts.${h}.docker.host`, message: `Docker over tcp without TLS (${endpoint.host}): anyone who can reach that port controls host ${h}`, fix: 'add tls: { ca: FILE, cert: FILE, key: FILE } (dockerd --tlsverify), use socket: /var/run/docker.sock, or write insecure: true to accept the risk' });
    }
  }
  problems.push(...ambiguousNames([...units].flatMap(([name, u]) => (placed.has(name) ? [{ unit: name, host: placed.get(name)!, path: u.path }] : []))));
  const backups = planBackups(inv, placed, problems);
  problems.push(...applyCrossHostLinks(specs, inv.hosts, warnings));

  if (problems.length > 0) throw new InventoryError(problems);

  const serviceGraph: Graph = new Map([...graph].filter(([n]) => units.get(n)!.kind === 'service').map(([n, deps]) => [n, deps.filter((d) => units.get(d)!.kind === 'service')]));
  return {
    project: inv.project,
    hosts: hostNames.map((h) => {
      const host = hostOf(h);
      return { name: h, queue: hostQueue(h), address: host.address, gpus: host.gpus.map((g) => ({ model: g.model, vramGb: g.vram_gb })), gpuRuntime: host.gpu_runtime, labels: host.labels };
    }),
    units: specs,
    serviceWaves: topologicalWaves(serviceGraph),
    batches: inv.batches.map((b, index) => ({
      name: b.name,
      index,
      description: b.description,
      agents: batchUnits[index]!,
      concurrency: b.concurrency,
      maxFailures: b.max_failures,
      latencyTolerance: b.latency_tolerance ?? 1.5,
      analysis: {
        minEffectMs: b.analysis.min_effect_ms, maxErrorRate: b.analysis.max_error_rate, samples: b.analysis.samples, alpha: b.analysis.alpha, looks: b.analysis.looks,
        ...(b.latency_tolerance !== undefined ? { latencyTolerance: b.latency_tolerance } : {}),
      },
      approval: b.approval,
      ...(b.traffic ? { traffic: { steps: b.traffic.steps, holdMs: b.traffic.hold, approve: b.traffic.approve } } : {}),
    })),
    backups,
    warnings,
  };
}
