/**
 * What a host's worker accepts before it touches its Docker engine: a worker trusts nothing, not
 * even a workflow's input (anyone who can start a workflow could hand it any unit). Pure: the plan
 * uses the same rules for its problems and warnings, the Docker activities re-check every unit.
 *
 * - The unit is strict: no field the plan does not make (a `privileged`, `cap_add`, `pid: host`
 *   smuggled in would be refused, and the tool itself creates none of them).
 * - Binds of `/`, the Docker socket, `/proc`, `/sys` and `/etc` (their subpaths, and folders that
 *   contain them) are refused unless the unit's inventory entry allows them (`allow: [...]`).
 * - Bind sources are absolute, normalised paths; named volumes are plain names.
 */
import { z } from 'zod';
import type { Problem } from '../inventory/problems.js';

/** What a unit may be allowed to reach on its host (`allow:` in the inventory). */
export const HOST_ACCESS = ['docker-socket', 'host-root', 'host-proc', 'host-sys', 'host-etc'] as const;
export type HostAccess = (typeof HOST_ACCESS)[number];

const DOCKER_SOCKETS = ['/var/run/docker.sock', '/run/docker.sock'];
const SENSITIVE: { access: HostAccess; paths: string[]; what: string }[] = [
  { access: 'docker-socket', paths: DOCKER_SOCKETS, what: 'the Docker socket (full control of the host)' },
  { access: 'host-proc', paths: ['/proc'], what: 'the host\'s /proc' },
  { access: 'host-sys', paths: ['/sys'], what: 'the host\'s /sys' },
  { access: 'host-etc', paths: ['/etc'], what: 'the host\'s /etc (passwords, keys, configuration)' },
];

/** `/a/./b//c/../d/` → `/a/b/d`; undefined when not absolute. */
export function normalizeHostPath(p: string): string | undefined {
  if (!p.startsWith('/')) return undefined;
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '..') out.pop();
    else if (part !== '.' && part !== '') out.push(part);
  }
  return `/${out.join('/')}`;
}

const within = (p: string, root: string) => p === root || p.startsWith(`${root}/`);

/** What a bind of host path `source` would expose, as the access it needs (none: an ordinary path). */
export function bindAccess(source: string): { access: HostAccess; what: string } | undefined {
  const p = normalizeHostPath(source);
  if (p === undefined) return undefined;
  if (p === '/') return { access: 'host-root', what: 'the host\'s whole file system' };
  for (const s of SENSITIVE) {
    // A subpath of a sensitive path, or a folder containing one (`/var/run` holds the socket).
    if (s.paths.some((root) => within(p, root) || within(root, p))) return { access: s.access, what: s.what };
  }
  return undefined;
}

/** The problems of one unit's binds, as the plan and the worker both report them. */
export function bindProblems(unitPath: string, volumes: { source: string; target: string; type: 'bind' | 'volume' }[], allow: readonly string[]): Problem[] {
  const problems: Problem[] = [];
  volumes.forEach((v, i) => {
    if (v.type !== 'bind') return;
    const found = bindAccess(v.source);
    if (found && !allow.includes(found.access)) {
      problems.push({
        path: `${unitPath}.volumes[${i}]`,
        message: `binds ${v.source}, which exposes ${found.what} to the container`,
        fix: `remove the bind, or allow it explicitly for this unit: allow: [${found.access}]`,
      });
    }
  });
  return problems;
}

// ---------------------------------------------------------------------------------------------
// The strict shape of a UnitSpec, as the plan makes it (src/plan/plan.ts).

const NAME_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const ENV_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;
const ms = z.number().int().min(0);
const portNum = z.number().int().min(1).max(65535);

// Checked for what it exposes once normalised (bindAccess): `/data/../etc` is /etc.
const hostPath = z.string().refine((p) => normalizeHostPath(p) !== undefined && !p.includes(':') && !p.includes('\0'), { message: 'must be an absolute host path without ":"' });
const containerPath = z.string().refine((p) => normalizeHostPath(p) !== undefined && !p.includes('\0'), { message: 'must be an absolute container path' });

const volume = z.discriminatedUnion('type', [
  z.strictObject({ type: z.literal('bind'), source: hostPath, target: containerPath, readOnly: z.boolean() }),
  z.strictObject({ type: z.literal('volume'), source: z.string().regex(NAME_RE, { message: 'must be a volume name' }), target: containerPath, readOnly: z.boolean() }),
]);

const secretRef = z.union([z.strictObject({ from_env: z.string().regex(ENV_RE) }), z.strictObject({ from_file: z.string().min(1) })]);

const probe = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('http'), address: z.string().min(1), port: portNum, path: z.string().startsWith('/') }),
  z.strictObject({ kind: z.literal('tcp'), address: z.string().min(1), port: portNum }),
  z.strictObject({ kind: z.literal('exec'), command: z.array(z.string()).min(1) }),
  z.strictObject({ kind: z.literal('docker') }),
  z.strictObject({ kind: z.literal('running') }),
]);

export const unitSpecSchema = z.strictObject({
  name: z.string().regex(NAME_RE, { message: 'must be a unit name' }),
  kind: z.enum(['service', 'agent']),
  host: z.string().regex(NAME_RE, { message: 'must be a host name' }),
  image: z.string().min(1).max(512).regex(/^[^\s]+$/, { message: 'must be an image reference' }),
  build: z.strictObject({
    context: z.string().min(1),
    dockerfile: z.string().min(1).optional(),
    args: z.record(z.string(), z.string()),
    ifMissing: z.boolean().optional(),
    // Host files copied into the build context (the stub image's busybox): plain names in, and never
    // from what a bind may not expose either (/, the Docker socket, /proc, /sys, /etc).
    hostFiles: z.record(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*$/, { message: 'must be a plain file name' }),
      z.array(hostPath.refine((p) => bindAccess(p) === undefined, { message: 'must not read from /, the Docker socket, /proc, /sys or /etc' })).min(1)).optional(),
  }).optional(),
  command: z.array(z.string()).optional(),
  environment: z.record(z.string().regex(ENV_RE, { message: 'must be an environment variable name' }), z.union([z.string(), secretRef])),
  ports: z.array(z.strictObject({ hostIp: z.string().min(1), published: portNum, target: portNum, protocol: z.enum(['tcp', 'udp']) })),
  volumes: z.array(volume),
  dockerHealthcheck: z.strictObject({ test: z.array(z.string()).min(1), intervalMs: ms, timeoutMs: ms, retries: z.number().int().min(0), startPeriodMs: ms }).optional(),
  probe,
  timing: z.strictObject({ intervalMs: ms, timeoutMs: ms, retries: z.number().int().min(0), startPeriodMs: ms }),
  gpu: z.strictObject({ count: z.number().int().min(1), minVramGb: z.number().positive() }).optional(),
  gpuIndexes: z.array(z.number().int().min(0)).optional(),
  gpuDeviceRequest: z.boolean(),
  dependsOn: z.record(z.string(), z.enum(['service_started', 'service_healthy', 'service_completed_successfully'])),
  criticality: z.enum(['critical', 'high', 'medium', 'low']),
  tier: z.string().optional(),
  allow: z.array(z.enum(HOST_ACCESS)).optional(),
  extraHosts: z.array(z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_.-]*:[0-9A-Fa-f.:]+$/, { message: 'must be NAME:IP' })).optional(),
  job: z.literal(true).optional(),
  // A group of agents (seed 003): each agent probed on its own port.
  members: z.array(z.strictObject({
    name: z.string().regex(NAME_RE, { message: 'must be an agent name' }),
    probe: z.discriminatedUnion('kind', [
      z.strictObject({ kind: z.literal('http'), address: z.string().min(1), port: portNum, path: z.string().startsWith('/') }),
      z.strictObject({ kind: z.literal('tcp'), address: z.string().min(1), port: portNum }),
    ]),
  })).min(1).optional(),
  // An agent's own traffic steps (issue #13): percentages ending at 100.
  traffic: z.strictObject({ steps: z.array(z.number().int().min(1).max(100)).min(1), holdMs: ms, approve: z.boolean() }).optional(),
  specHash: z.string().regex(/^[0-9a-f]{16}$/, { message: 'must be the plan\'s 16-hex-digit spec hash' }),
});

/**
 * Every reason a host's worker refuses this unit (empty: accepted). `host` is the worker's own
 * host: a unit placed elsewhere is refused too.
 */
export function unitSpecProblems(input: unknown, host: string): Problem[] {
  const parsed = unitSpecSchema.safeParse(input);
  if (!parsed.success) {
    return parsed.error.issues.map((issue) => ({
      path: ['unit', ...issue.path.map(String)].join('.'),
      message: issue.code === 'unrecognized_keys' ? `unknown field(s) ${issue.keys.join(', ')}: the plan makes none such, so a worker refuses them` : issue.message,
      fix: 'start the change from `migrate` with a valid inventory (migrate plan shows its problems)',
    }));
  }
  const unit = parsed.data;
  const problems: Problem[] = [];
  if (unit.host !== host) {
    problems.push({ path: 'unit.host', message: `${unit.name} is placed on host ${unit.host}, but this is host ${host}'s worker`, fix: 'send the unit to its own host\'s queue' });
  }
  problems.push(...bindProblems(`unit ${unit.name}`, unit.volumes, unit.allow ?? []));
  return problems;
}
