/**
 * The inventory: hosts, services, agents and batches, in YAML.
 *
 * The vocabulary follows docker-compose where it fits (image, build, command, environment, ports,
 * volumes, healthcheck, depends_on, deploy.resources.reservations.devices) so that operators' compose
 * files can be imported. Everything here is shape validation only; cross-references (unknown
 * dependency, cycles, port clashes, placement) are checked by `src/plan/validate.ts`.
 *
 * Pure: no I/O.
 */
import { HOST_ACCESS } from '../common/unit-guard.js';
import { z } from 'zod';

/** Names that reach Docker (container names, labels) and Temporal (task queues). */
export const NAME_RE = /^[A-Za-z][A-Za-z0-9_.-]{0,62}$/;
export const HOST_NAME_RE = /^[a-z][a-z0-9-]{0,30}$/;
export const ENV_NAME_RE = /^[A-Za-z_][A-Za-z0-9_]*$/;

const name = z.string().regex(NAME_RE, {
  message: 'must start with a letter and contain only letters, digits, "_", "." or "-" (at most 63 characters)',
});
const hostName = z.string().regex(HOST_NAME_RE, {
  message: 'must be lowercase letters, digits and "-", starting with a letter (at most 31 characters); it becomes the task queue "host-<name>"',
});

/** "1m30s", "500ms", "10s", or a number of milliseconds → milliseconds. */
export function parseDuration(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isFinite(value) && value >= 0 ? value : undefined;
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h)/g;
  let total = 0;
  let consumed = 0;
  for (const m of value.matchAll(re)) {
    const n = Number(m[1]);
    total += n * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    consumed += m[0].length;
  }
  return consumed === value.length && consumed > 0 ? Math.round(total) : undefined;
}

const duration = z.union([z.string(), z.number()]).transform((v, ctx) => {
  const ms = parseDuration(v);
  if (ms === undefined) {
    ctx.addIssue({ code: 'custom', message: `"${v}" is not a duration: write it like "500ms", "10s" or "1m30s"`, params: { fix: 'write it like "500ms", "10s" or "1m30s" (or a number of milliseconds)' } });
    return z.NEVER;
  }
  return ms;
});
/** A duration that must be more than zero (a probe's interval and timeout). */
const positiveDuration = duration.refine((ms) => ms > 0, { message: 'must be more than zero: a zero interval or timeout would probe without pause or give up at once', params: { fix: 'write a duration like "500ms" or "2s"' } });

/** An IPv4 address, or an IPv6 address without brackets. Pure: no node:net. */
export function isIpAddress(text: string): boolean {
  if (/^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/.test(text)) return true;
  if (!text.includes(':') || !/^[0-9A-Fa-f:.]+$/.test(text)) return false;
  try {
    return new URL(`http://[${text}]/`).hostname.length > 2;
  } catch {
    return false;
  }
}
/** A host name a client tool can resolve (RFC 1123 labels), or an IP address. */
const HOSTNAME_RE = /^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const ipAddress = z.string().refine(isIpAddress, {
  message: 'is not an IP address: published ports are bound to it and probed on it',
  params: { fix: 'write an IPv4 address like 127.0.0.1 or 10.0.0.5, or an IPv6 address like ::1 (no brackets)' },
});
const networkAddress = z.string().refine((a) => isIpAddress(a) || HOSTNAME_RE.test(a), {
  message: 'is not an IP address or a host name',
  params: { fix: 'write an address like 10.0.0.5 or a host name like db.example.org (no scheme, no port)' },
});

const port = z.number().int().min(1).max(65535);

// ---------------------------------------------------------------------------------------------
// Hosts

const dockerEndpoint = z.union([
  z.strictObject({ socket: z.string().min(1) }),
  z.strictObject({
    host: z.string().regex(/^tcp:\/\/[^:/]+:\d+$/, { message: 'must look like tcp://HOST:PORT' }),
    /** Paths to PEM files on the worker host. */
    tls: z.strictObject({ ca: z.string(), cert: z.string(), key: z.string() }).optional(),
    /** Docker over tcp without TLS gives anyone on the network the host: only when written here (plan warns). */
    insecure: z.boolean().optional(),
  }),
]);

const gpuSchema = z.strictObject({
  model: z.string().min(1),
  vram_gb: z.number().positive(),
});

export const hostSchema = z.strictObject({
  /** How the worker on this host reaches its Docker engine. */
  docker: dockerEndpoint.default({ socket: '/var/run/docker.sock' }),
  /** Address on which published ports are bound and probed (loopback unless you expose them). */
  address: ipAddress.default('127.0.0.1'),
  gpus: z.array(gpuSchema).default([]),
  /** Whether the NVIDIA container runtime is installed, so GPU device requests can be honoured. */
  gpu_runtime: z.enum(['nvidia', 'none']).default('none'),
  labels: z.record(z.string(), z.string()).default({}),
  description: z.string().optional(),
});

// ---------------------------------------------------------------------------------------------
// Services and agents

/** A secret is never written in the inventory: only where the worker host finds it. */
const secretRef = z.union([
  z.strictObject({ from_env: z.string().regex(ENV_NAME_RE, { message: 'must be an environment variable name' }) }),
  z.strictObject({ from_file: z.string().min(1) }),
], { message: 'a secret is never written in the inventory: write { from_env: VARIABLE } or { from_file: /path/on/the/host }, which the worker reads on its host' });
export type SecretRef = z.infer<typeof secretRef>;

const envValue = z.union([z.string(), z.number(), z.boolean(), secretRef]);
/** compose: a map, or a list of "KEY=VALUE". */
const environment = z
  .union([z.record(z.string(), envValue), z.array(z.string())])
  .transform((env, ctx) => {
    if (!Array.isArray(env)) {
      return Object.fromEntries(
        Object.entries(env).map(([k, v]) => [k, typeof v === 'object' ? v : String(v)]),
      ) as Record<string, string | SecretRef>;
    }
    // Entries, then fromEntries: a name like __proto__ becomes a variable, not the object's prototype.
    const entries: [string, string][] = [];
    env.forEach((entry, i) => {
      const eq = entry.indexOf('=');
      if (eq <= 0) {
        ctx.addIssue({ code: 'custom', path: [i], message: `"${entry}" is not KEY=VALUE`, params: { fix: 'write NAME=value, or use the map form (NAME: value)' } });
        return;
      }
      entries.push([entry.slice(0, eq), entry.slice(eq + 1)]);
    });
    return Object.fromEntries(entries) as Record<string, string | SecretRef>;
  });

export interface PortMapping {
  hostIp?: string;
  published: number;
  target: number;
  protocol: 'tcp' | 'udp';
}

/** compose short syntax ("8080", "8080:80", "127.0.0.1:8080:80", ".../udp") or long syntax. */
const portMapping = z.union([
  z.union([z.string(), z.number()]).transform((raw, ctx): PortMapping => {
    const text = String(raw);
    const m = /^(?:(\d{1,3}(?:\.\d{1,3}){3}):)?(?:(\d+):)?(\d+)(?:\/(tcp|udp))?$/.exec(text);
    const published = m ? Number(m[2] ?? m[3]) : NaN;
    const target = m ? Number(m[3]) : NaN;
    if (!m || published < 1 || published > 65535 || target < 1 || target > 65535) {
      ctx.addIssue({ code: 'custom', message: `"${text}" is not a port mapping: write "HOST:CONTAINER" (e.g. "7140:7140"), optionally "IP:HOST:CONTAINER" or with "/udp"`, params: { fix: 'write "HOST:CONTAINER" (e.g. "7140:7140"), optionally "IP:HOST:CONTAINER" or with "/udp"; ports are 1 to 65535' } });
      return z.NEVER;
    }
    return { hostIp: m[1], published, target, protocol: (m[4] as 'tcp' | 'udp' | undefined) ?? 'tcp' };
  }),
  z
    .strictObject({
      target: port,
      published: z.union([port, z.string().regex(/^\d+$/).transform(Number)]).optional(),
      host_ip: z.string().optional(),
      protocol: z.enum(['tcp', 'udp']).default('tcp'),
    })
    .transform((p): PortMapping => ({ hostIp: p.host_ip, published: p.published ?? p.target, target: p.target, protocol: p.protocol })),
]);

export interface VolumeMount {
  source: string;
  target: string;
  readOnly: boolean;
  /** A named volume (managed by Docker) or a bind mount of a host path. */
  type: 'volume' | 'bind';
}

const volumeMount = z.string().transform((text, ctx): VolumeMount => {
  const parts = text.split(':');
  if (parts.length < 2 || parts.length > 3 || !parts[0] || !parts[1]?.startsWith('/')) {
    ctx.addIssue({ code: 'custom', message: `"${text}" is not a volume: write "NAME:/container/path" or "/host/path:/container/path[:ro]"`, params: { fix: 'write "NAME:/container/path" or "/host/path:/container/path[:ro]"' } });
    return z.NEVER;
  }
  const [source, target, mode] = parts as [string, string, string | undefined];
  if (mode !== undefined && mode !== 'ro' && mode !== 'rw') {
    ctx.addIssue({ code: 'custom', message: `"${text}": the mode must be "ro" or "rw"`, params: { fix: 'end it with ":ro" or ":rw", or leave the mode out' } });
    return z.NEVER;
  }
  const type = source.startsWith('/') || source.startsWith('.') ? 'bind' : 'volume';
  return { source, target, readOnly: mode === 'ro', type };
});

/** Exactly one probe kind, plus compose's timing fields. */
export const healthcheckSchema = z
  .strictObject({
    /** HTTP GET must answer 2xx. A path, or {path, port} where port is the container port. */
    http: z.union([z.string().startsWith('/'), z.strictObject({ path: z.string().startsWith('/'), port: port.optional() })]).optional(),
    /** A TCP connect to this container port must succeed. `true` takes the first published port. */
    tcp: z.union([port, z.literal(true)]).optional(),
    /** A command run inside the container (docker exec) must exit 0. */
    exec: z.array(z.string()).min(1).optional(),
    /** compose's own healthcheck test: handed to Docker, readiness read from the container's health status. */
    test: z.union([z.array(z.string()).min(1), z.string()]).optional(),
    interval: positiveDuration.default(1000),
    timeout: positiveDuration.default(2000),
    retries: z.number().int().min(1).default(3),
    start_period: duration.default(0),
  })
  .superRefine((h, ctx) => {
    const kinds = (['http', 'tcp', 'exec', 'test'] as const).filter((k) => h[k] !== undefined);
    if (kinds.length !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: kinds.length === 0
          ? 'a health check needs one probe: http, tcp, exec or test'
          : `a health check takes one probe, found ${kinds.join(' and ')}: keep one`,
        params: { fix: kinds.length === 0 ? 'add http: /health (with a published port), tcp: PORT, exec: [cmd, …] or test: [CMD-SHELL, "…"]' : `keep one of ${kinds.join(', ')}` },
      });
    }
  });

const dependsOn = z.union([
  z.array(name),
  z.record(name, z.strictObject({
    condition: z.enum(['service_started', 'service_healthy', 'service_completed_successfully']).default('service_healthy'),
  })),
]).transform((d): Record<string, { condition: 'service_started' | 'service_healthy' | 'service_completed_successfully' }> =>
  Array.isArray(d) ? Object.fromEntries(d.map((n) => [n, { condition: 'service_healthy' as const }])) : d,
);

/** compose's GPU reservation; translated into `gpu.count`. */
const composeDeploy = z.strictObject({
  resources: z.strictObject({
    reservations: z.strictObject({
      devices: z.array(z.strictObject({
        driver: z.string().optional(),
        count: z.union([z.number().int().min(1), z.literal('all')]).optional(),
        device_ids: z.array(z.string()).optional(),
        capabilities: z.array(z.string()).default([]),
      })).optional(),
    }).optional(),
  }).optional(),
});

/** One agent of a group: the port it answers on (published as the same host port), or { port, description }. */
const groupMember = z.union([
  port.transform((p) => ({ port: p, description: undefined as string | undefined })),
  z.strictObject({ port, description: z.string().optional() }),
], { message: 'an agent of a group is its port (7140) or { port: 7140, description: "…" }' });

/**
 * Seed 003's agent groups: one container holding several agents, each answering on its own port.
 * The group is one unit: one container, one health check per agent port, one migration.
 */
export const groupSchema = z.strictObject({
  /** The agents it holds, name → port (published on the same host port, probed by the health check). */
  agents: z.record(name, groupMember).refine((a) => Object.keys(a).length > 0, {
    message: 'a group holds at least one agent',
    params: { fix: 'list its agents with their ports: agents: { AgentName: 7140 }' },
  }),
  /** How many agents the owners' header says the group holds (seed 003's "(8 agents)"): the plan checks the list against it. */
  count: z.number().int().min(1).optional(),
});

/**
 * Traffic in steps (issue #13, seed 002): the share of each routed agent's traffic its new version
 * takes, step by step, through the host's traffic proxy. `[25, 50, 75, 100]`, or with a hold per
 * step and an operator's approval between steps.
 */
const trafficStep = z.number().int({ message: 'must be a whole percentage' }).min(1, { message: 'must be at least 1 (a step of 0 moves nothing)' }).max(100, { message: 'must be at most 100' });
const trafficSteps = z.array(trafficStep).min(1, { message: 'needs at least one step, ending at 100' }).superRefine((steps, ctx) => {
  const fix = 'write ascending percentages ending at 100, like [25, 50, 75, 100]';
  for (let i = 1; i < steps.length; i++) {
    if (steps[i]! <= steps[i - 1]!) ctx.addIssue({ code: 'custom', path: [i], message: `must be more than the step before it (${steps[i - 1]}): steps go up`, params: { fix } });
  }
  if (steps.length && steps[steps.length - 1] !== 100) ctx.addIssue({ code: 'custom', path: [steps.length - 1], message: `the last step must be 100 (all traffic on the new version), not ${steps[steps.length - 1]}`, params: { fix } });
});
export const trafficSchema = z.union([
  trafficSteps,
  z.strictObject({
    steps: trafficSteps,
    /** How long each step holds before the next one. */
    hold: duration.default(0),
    /** Wait for an operator's `migrate approve` before each step after the first. */
    approve: z.boolean().default(false),
  }),
]).transform((t) => (Array.isArray(t) ? { steps: t, hold: 0, approve: false } : t));

export const serviceSchema = z
  .strictObject({
    /** Agents only: this unit is a group of agents (seed 003). */
    group: groupSchema.optional(),
    image: z.string().min(1).optional(),
    build: z.union([
      z.string().min(1).transform((context) => ({ context, dockerfile: undefined as string | undefined, args: {} as Record<string, string> })),
      z.strictObject({ context: z.string().min(1), dockerfile: z.string().optional(), args: z.record(z.string(), z.string()).default({}) }),
    ]).optional(),
    command: z.union([z.string().transform((s) => ['/bin/sh', '-c', s]), z.array(z.string())]).optional(),
    environment: environment.default({}),
    ports: z.array(portMapping).default([]),
    volumes: z.array(volumeMount).default([]),
    healthcheck: healthcheckSchema.optional(),
    depends_on: dependsOn.default({}),
    gpu: z.strictObject({ count: z.union([z.number().int().min(1), z.literal('all')]).default(1), min_vram_gb: z.number().positive().default(1) }).optional(),
    deploy: composeDeploy.optional(),
    placement: z.union([
      z.strictObject({ host: z.string() }),
      z.strictObject({ labels: z.record(z.string(), z.string()) }),
    ]).optional(),
    criticality: z.enum(['critical', 'high', 'medium', 'low']).default('medium'),
    /** Host access this unit is allowed (binds of the Docker socket, /, /proc, /sys, /etc): refused otherwise, shown by plan. */
    allow: z.array(z.enum(HOST_ACCESS)).default([]),
    /**
     * Where this unit goes when its host is lost (failoverHost): the first of these hosts that is up
     * and meets its placement (GPU, VRAM). Stateless units move on their own; a unit with
     * `stateful: true` waits for an operator's approval and is restored from its latest verified backup.
     */
    failover: z.strictObject({
      to: z.array(hostName).min(1, { message: 'name at least one host to fail over to' }),
      /** Holds data (PostgreSQL, Redis, InfluxDB): never moved without an operator's approval. */
      stateful: z.boolean().default(false),
      /** The backup target (backups.postgres/redis/influxdb name) restored on the new host (stateful only). */
      backup: name.optional(),
    }).optional(),
    /** Agents only: this agent's traffic steps, instead of its batch's (issue #13). */
    traffic: trafficSchema.optional(),
    /** Free text shown in plans and the Web UI (the stack's tier, the agent's role). */
    tier: z.string().optional(),
    description: z.string().optional(),
  })
  .superRefine((s, ctx) => {
    if (!s.image && !s.build) {
      ctx.addIssue({ code: 'custom', message: 'needs an image or a build context: add `image: NAME:TAG` or `build: ./path`', params: { fix: 'add `image: NAME:TAG` or `build: ./path`' } });
    }
  })
  .transform((s) => {
    // compose GPU reservations become our explicit GPU need.
    const device = s.deploy?.resources?.reservations?.devices?.find((d) => d.driver === 'nvidia' || d.capabilities.includes('gpu'));
    // compose's `count: all` is every GPU of the host the unit lands on: the plan resolves it.
    const gpu: { count: number | 'all'; min_vram_gb: number } | undefined = s.gpu ?? (device ? { count: device.count ?? 1, min_vram_gb: 1 } : undefined);
    const { deploy: _deploy, ...rest } = s;
    return { ...rest, gpu };
  });

/**
 * The batch's judge (issue #13): each agent's new version is started beside the running one, both
 * are probed in turn, and the new one fails when it is significantly slower by more than
 * `min_effect_ms`, or fails more probes than `max_error_rate` allows (src/plan/judge.ts).
 */
export const analysisSchema = z.strictObject({
  /** Smallest latency increase (ms) that counts as a regression. */
  min_effect_ms: z.number().min(0).default(20),
  /** Highest error rate of the new version still accepted (0: any failed probe fails it). */
  max_error_rate: z.number().min(0).max(1).default(0),
  /** Probes of each version. */
  samples: z.number().int().min(5).max(1000).default(40),
  /** Significance level of the judge's tests, split evenly over its looks. */
  alpha: z.number().gt(0).max(0.2).default(0.01),
  /**
   * Looks of the sequential judge: while the latency test is inconclusive, each look doubles the
   * probes of both versions, up to this many looks (1: one look of `samples`).
   */
  looks: z.number().int().min(1).max(6).default(4),
});

export const batchSchema = z.strictObject({
  name,
  description: z.string().optional(),
  /** Agents and agent groups: a group is named, or all of its agents are (never some of them). */
  agents: z.array(z.string()).min(1, { message: 'a batch needs at least one agent' }),
  /** How many agents of the batch migrate at once. */
  concurrency: z.number().int().min(1).default(1),
  /** More failures than this roll back the whole batch (seed 001: "multiple failures" → 1). */
  max_failures: z.number().int().min(0).default(1),
  /**
   * Allowed latency of the new version, as a multiple of the old one's. Kept for existing
   * inventories: the judge uses it as a relative minimum effect, max(analysis.min_effect_ms,
   * (latency_tolerance − 1) × the old version's median) — only when set; runs started before the
   * judge use it as before (default 1.5).
   */
  latency_tolerance: z.number().min(1).optional(),
  /** How the judge compares each agent's new version with its old one. */
  analysis: analysisSchema.default({ min_effect_ms: 20, max_error_rate: 0, samples: 40, alpha: 0.01, looks: 4 }),
  /** Wait for an operator's approval before cutting over. */
  approval: z.boolean().default(false),
  /**
   * Move each agent's traffic to its new version in steps through the host's traffic proxy (agents
   * with published ports and an http/tcp probe; not GPU units, not jobs): no downtime.
   */
  traffic: trafficSchema.optional(),
});

// ---------------------------------------------------------------------------------------------
// Backups (seed 000 §6.1: PostgreSQL, Redis and InfluxDB on mainpc)

/**
 * How the worker reaches a database: `tcp` runs the client tools on the worker host against
 * address:port; `docker-exec` runs them inside the database's own container (the inventory unit
 * named by `unit`), as the owners' backup script does.
 */
const backupVia = z.enum(['tcp', 'docker-exec']);

const backupTargetBase = {
  name,
  /** The host that holds the data: its worker takes the backup and keeps the files. */
  host: z.string(),
  via: backupVia.default('tcp'),
  /** The service whose container runs the database (docker-exec only). */
  unit: name.optional(),
  address: networkAddress.default('127.0.0.1'),
};

export const postgresBackupSchema = z.strictObject({
  ...backupTargetBase,
  port: port.default(5432),
  database: z.string().regex(/^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/, { message: 'must be a PostgreSQL database name' }),
  user: z.string().regex(/^[A-Za-z_][A-Za-z0-9_$-]{0,62}$/, { message: 'must be a PostgreSQL role name' }).default('postgres'),
  password: secretRef.optional(),
});

export const redisBackupSchema = z.strictObject({
  ...backupTargetBase,
  port: port.default(6379),
  password: secretRef.optional(),
  /** Where the server writes dump.rdb inside its container (docker-exec only). */
  data_dir: z.string().startsWith('/').default('/data'),
});

/**
 * InfluxDB, inside its container. `version: 2` (the seed's influxdb:2.7): `influx backup`, restored
 * with `influx restore --full`, authenticated by `token`. `version: 1`: `influxd backup -portable`
 * over the RPC port, queried through the `influx` CLI on the HTTP port, as `user`/`password` when
 * the server has auth-enabled.
 */
export const influxBackupSchema = z.strictObject({
  ...backupTargetBase,
  via: z.literal('docker-exec', { message: 'InfluxDB is backed up with `influx backup` inside its container: write `via: docker-exec`' }).default('docker-exec'),
  version: z.union([z.literal(1), z.literal(2)], { message: 'InfluxDB major version: 1 or 2' }).default(2),
  /** 2.x: the operator token. */
  token: secretRef.optional(),
  /** 1.x: the databases to back up (default: every database but _internal, listed at backup time). */
  databases: z.array(z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/, { message: 'must be an InfluxDB database name: letters, digits, "_", "." or "-"' })).min(1).optional(),
  /** 1.x: the HTTP API port inside the container (default 8086). */
  port: port.optional(),
  /** 1.x: the backup/restore RPC port inside the container (default 8088; influxd binds it to 127.0.0.1). */
  rpc_port: port.optional(),
  /** 1.x with auth-enabled: an admin user (it lists, drops and creates databases). */
  user: z.string().min(1).optional(),
  password: secretRef.optional(),
});

export const backupsSchema = z.strictObject({
  /** Folder on each host that keeps its backups, in a subfolder named after the host (default: the host's data folder + /backups). */
  directory: z.string().min(1).optional(),
  retention: z.strictObject({
    /** The newest N verified backups. */
    keep_last: z.number().int().min(1).default(7),
    /** The newest verified backup of each of the last N days that have one. */
    keep_daily: z.number().int().min(0).default(7),
    /** The newest verified backup of each of the last N weeks that have one. */
    keep_weekly: z.number().int().min(0).default(4),
  }).default({ keep_last: 7, keep_daily: 7, keep_weekly: 4 }),
  postgres: z.array(postgresBackupSchema).default([]),
  redis: z.array(redisBackupSchema).default([]),
  influxdb: z.array(influxBackupSchema).default([]),
});

/**
 * The health plane (src/health): every host's worker publishes its heartbeat and its units' health
 * on NATS JetStream; a host whose heartbeats stop for `lost_after` is judged lost.
 */
const natsUrl = z.string().regex(/^(nats|tls):\/\/[^\s/:]+(:\d{1,5})?$/, {
  message: 'is not a NATS URL: write it like nats://10.0.0.1:4222 (or tls://HOST:PORT)',
});
export const healthSchema = z.strictObject({
  /** The NATS server(s) every worker and the aggregator reach (JetStream enabled). */
  nats: z.array(natsUrl).min(1, { message: 'name at least one NATS server: write nats: [nats://127.0.0.1:4222]' }),
  /** First token of every subject: <subjects>.status.<host>, <subjects>.aggregate, … (default "health", as the seed names them). */
  subjects: z.string().regex(/^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/, { message: 'must be NATS subject tokens (letters, digits, "_", "-") joined by "."' }).default('health'),
  /** How often each worker publishes its heartbeat and probes its units. */
  heartbeat: positiveDuration.default(250),
  /** A host silent this long is judged (lost, worker lost or partitioned). */
  lost_after: positiveDuration.default(1000),
  /** TCP port each worker listens on at its host's address, so peers and the aggregator can tell a dead worker from an unreachable host. */
  peer_port: port.default(7499),
}).superRefine((h, ctx) => {
  if (h.lost_after < 2 * h.heartbeat) {
    ctx.addIssue({ code: 'custom', path: ['lost_after'], message: `must be at least twice the heartbeat (${h.heartbeat} ms): one late heartbeat is not a lost host`, params: { fix: `write lost_after: ${4 * h.heartbeat}ms` } });
  }
});
export type HealthSettings = z.infer<typeof healthSchema>;

export const inventorySchema = z.strictObject({
  version: z.literal(1, { message: 'only inventory format version 1 exists: write `version: 1`' }),
  /** Prefix of every container, network and volume the tool creates; keeps several systems apart on one engine. */
  project: z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, { message: 'must be lowercase letters, digits and "-", starting with a letter' }),
  hosts: z.record(hostName, hostSchema).refine((h) => Object.keys(h).length > 0, { message: 'declare at least one host', params: { fix: 'add hosts: { NAME: { address: 127.0.0.1 } }' } }),
  services: z.record(name, serviceSchema).default({}),
  agents: z.record(name, serviceSchema).default({}),
  batches: z.array(batchSchema).default([]),
  backups: backupsSchema.optional(),
  health: healthSchema.optional(),
});

export type Inventory = z.infer<typeof inventorySchema>;
export type InventoryInput = z.input<typeof inventorySchema>;
export type Host = z.infer<typeof hostSchema>;
export type Service = z.infer<typeof serviceSchema>;
export type Healthcheck = z.infer<typeof healthcheckSchema>;
export type Batch = z.infer<typeof batchSchema>;
export type Group = z.infer<typeof groupSchema>;
export type Backups = z.infer<typeof backupsSchema>;
