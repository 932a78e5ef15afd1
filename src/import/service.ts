/**
 * One compose service → one inventory unit. Every compose field is either mapped, mapped with a
 * note saying what changed, or left out with a note saying why; nothing is dropped silently.
 *
 * Pure: no I/O. The caller (compose.ts) supplies the context: where notes go, how literal secrets
 * become references, how relative host paths are rebased to the inventory's folder.
 */
import { parseDuration } from '../inventory/schema.js';
import type { NoteKind } from './notes.js';
import { closest } from '../plan/graph.js';
import { interpolate, shellQuote, splitWords, wholeVarRef } from './text.js';

type Key = string | number;

export interface ServiceContext {
  /** The unit's name in the inventory. */
  name: string;
  host: string;
  /** `services.<name>` as written in the compose file. */
  base: string;
  note(kind: NoteKind, rel: Key[], message: string, fix?: string): void;
  /** Register a literal secret; returns the variable the worker reads on its host. */
  secret(envKey: string, value: string, usedBy: string, rel: Key[]): string;
  /** A host path relative to the compose file's folder, rebased to the inventory's folder. */
  rebase(p: string): string;
  /** Networks declared at the top level of the file (undefined: the file declares none). */
  networks?: Set<string>;
  /** Volumes declared at the top level of the file. */
  volumes: Set<string>;
}

export interface MappedService {
  /** The unit, in the inventory's input form. */
  unit: Record<string, unknown>;
  /** compose `depends_on`, by the names the compose file uses. */
  dependsOn: Record<string, { condition: string }>;
  usesGpu: boolean;
  /** Its `depends_on` was written in compose's short (list) form. */
  shortDependsOn: boolean;
}

/** The planner's rule (src/plan/plan.ts), so that everything it would refuse is converted. */
const PLAN_SECRET_KEY_RE = /(PASS(WORD)?|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIALS?)$/i;
/** A wider net: *PASSWORD*, *TOKEN*, *SECRET*, *KEY* anywhere in the name, but not a file/path to one. */
const SECRET_WORD_RE = /PASSWORD|PASSWD|TOKEN|SECRET|KEY|CREDENTIAL/i;
const NOT_A_SECRET_RE = /_(FILE|PATH|DIR|ID|NAME|USER|USERNAME)$/i;
export const URL_CREDENTIALS_RE = /:\/\/[^:/@\s]+:[^@\s]+@/;
const SECRET_FLAG_RE = /^(--?(?:requirepass|password|passwd|pass|token|secret|api-key|apikey))(?:=(.*))?$/i;

export function isSecretKey(key: string): boolean {
  return PLAN_SECRET_KEY_RE.test(key) || (SECRET_WORD_RE.test(key) && !NOT_A_SECRET_RE.test(key));
}

const isMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/** compose service fields the inventory has no place for, and what leaving them out means. */
const UNMAPPABLE: Record<string, string> = {
  entrypoint: 'the inventory has no entrypoint: bake it into the image, or write the whole argv as `command` if the image has no ENTRYPOINT',
  env_file: 'compose reads it on the machine that runs compose: copy its variables into `environment` (secrets as { from_env: NAME })',
  labels: 'the tool labels its containers itself (project, host, unit, release, spec hash)',
  hostname: 'other units reach this one by its unit name on the host\'s network',
  domainname: 'other units reach this one by its unit name on the host\'s network',
  network_mode: 'every unit joins its host\'s one project network',
  user: 'the inventory has no user field: set USER in the image',
  working_dir: 'the inventory has no working_dir field: set WORKDIR in the image',
  secrets: 'the inventory passes secrets as environment references ({ from_env } / { from_file }); mount files with `volumes`',
  configs: 'mount the file with `volumes` instead',
  extends: 'not resolved: copy the extended service\'s fields into this one',
  profiles: 'every unit in the inventory is deployed: drop the services you do not want',
  scale: 'one container per unit',
  pull_policy: 'images are used as the host\'s engine has them (built or loaded there)',
  external_links: 'every unit on a host reaches the others by name',
  tmpfs: 'the inventory has no tmpfs mounts',
  devices: 'the inventory maps GPUs only (gpu / deploy.resources.reservations.devices)',
};
const NO_FIELD = 'the inventory has no field for it: the container runs without it';
const COMPOSE_FIELDS_WITHOUT_PLACE = [
  'privileged', 'cap_add', 'cap_drop', 'dns', 'dns_search', 'dns_opt', 'extra_hosts', 'ulimits', 'logging', 'shm_size',
  'stop_grace_period', 'stop_signal', 'sysctls', 'security_opt', 'read_only', 'init', 'ipc', 'pid', 'platform',
  'mem_limit', 'memswap_limit', 'mem_reservation', 'mem_swappiness', 'cpus', 'cpu_shares', 'cpu_quota', 'cpu_period',
  'cpuset', 'cpu_count', 'cpu_percent', 'oom_kill_disable', 'oom_score_adj', 'pids_limit', 'tty', 'stdin_open',
  'cgroup', 'cgroup_parent', 'isolation', 'storage_opt', 'userns_mode', 'uts', 'volumes_from', 'group_add',
  'blkio_config', 'device_cgroup_rules', 'mac_address', 'annotations', 'attach', 'develop', 'post_start', 'pre_stop',
  'use_api_socket', 'models', 'provider', 'label_file', 'credential_spec',
];

export function mapService(raw: Record<string, unknown>, ctx: ServiceContext): MappedService {
  const unit: Record<string, unknown> = {};
  const environment: Record<string, unknown> = {};
  let dependsOn: Record<string, { condition: string }> = {};
  let shortDependsOn = false;
  let usesGpu = false;

  /** compose interpolation of one string field, with notes for what could not be kept. */
  const text = (value: string, rel: Key[]): string => {
    const r = interpolate(value);
    if (r.defaulted.length) ctx.note('changed', rel, `\${${r.defaulted.join('}, ${')}} replaced by the default written in the file: the inventory does not read the shell environment`, 'write the value you want here');
    if (r.unresolved.length) ctx.note('unmappable', rel, `\${${r.unresolved.join('}, ${')}} is filled in by compose from the shell or .env; the inventory takes values literally, so it is left as written`, 'write the value here (a secret: as an environment variable { from_env: NAME })');
    return r.value;
  };

  for (const [key, value] of Object.entries(raw)) {
    switch (key) {
      case 'image':
        if (typeof value === 'string') unit.image = text(value, ['image']);
        else ctx.note('mistake', ['image'], 'image must be a string', 'write image: NAME:TAG');
        break;
      case 'build':
        unit.build = mapBuild(value, ctx, text);
        break;
      case 'command':
        Object.assign(unit, mapCommand(value, ctx, text, environment));
        break;
      case 'environment':
        mapEnvironment(value, ctx, text, environment);
        break;
      case 'ports':
        unit.ports = mapPorts(value, ctx, text);
        break;
      case 'volumes':
        unit.volumes = mapVolumes(value, ctx, text);
        break;
      case 'healthcheck': {
        const hc = mapHealthcheck(value, ctx, text);
        if (hc) unit.healthcheck = hc;
        else unit.healthcheck = null; // disabled on purpose: no probe is added below
        break;
      }
      case 'depends_on': {
        const d = mapDependsOn(value, ctx);
        dependsOn = d.dependsOn;
        shortDependsOn = d.short;
        break;
      }
      case 'deploy': {
        const count = mapDeploy(value, ctx);
        if (count !== undefined) {
          unit.gpu = { count };
          usesGpu = true;
        }
        break;
      }
      case 'runtime':
      case 'gpus':
        if ((key === 'runtime' && value === 'nvidia') || key === 'gpus') {
          const count = typeof value === 'number' ? value : 1;
          unit.gpu = { count };
          usesGpu = true;
          ctx.note('changed', [key], `${key}: ${String(value)} → gpu: { count: ${count} }`, 'set gpu.count and gpu.min_vram_gb to what the service needs');
        } else ctx.note('unmappable', [key], `runtime "${String(value)}" is not mapped: only the NVIDIA runtime, for GPUs`);
        break;
      case 'networks':
        mapNetworks(value, ctx);
        break;
      case 'container_name':
        ctx.note('unmappable', [key], `container_name "${String(value)}" is not kept: the tool names containers <project>-<host>-<unit> and finds them by their labels; other units reach this one as "${ctx.name}"`);
        break;
      case 'restart':
        if (value !== 'unless-stopped' && value !== 'always') {
          ctx.note('unmappable', [key], `restart: ${String(value)} is not kept: the tool runs every container with restart: unless-stopped`,
            value === 'no' ? 'a one-shot job (a migration) is a unit its dependents wait for with depends_on: { condition: service_completed_successfully }' : undefined);
        }
        break;
      case 'expose':
        ctx.note('info', [key], 'expose is not needed: every unit on a host reaches the others\' ports on the host\'s network');
        break;
      case 'links':
        ctx.note('info', [key], 'links are not needed: every unit on a host reaches the others by their unit names (a link alias is not kept)');
        break;
      default:
        if (key.startsWith('x-')) ctx.note('info', [key], 'extension field: not part of the model (its anchors are already resolved where they are used)');
        else if (key in UNMAPPABLE || COMPOSE_FIELDS_WITHOUT_PLACE.includes(key)) ctx.note('unmappable', [key], `${key} is left out: ${UNMAPPABLE[key] || NO_FIELD}`);
        else ctx.note('mistake', [key], `"${key}" is not a compose service field${suggest(key)}`, 'remove it or check its spelling (compose would refuse it)');
    }
  }

  if (Object.keys(environment).length) unit.environment = environment;
  if (!unit.image && !unit.build) {
    ctx.note('mistake', [], 'has neither image nor build: compose cannot run it, and the inventory needs one', 'add `image: NAME:TAG` or `build: ./path` (in the compose file or in the written inventory)');
  }

  // Readiness: compose without a healthcheck counts a started container as ready. The planner
  // needs a probe to wait on; a published TCP port gives one.
  if (unit.healthcheck === null) delete unit.healthcheck;
  else if (!unit.healthcheck) {
    const ports = (unit.ports as string[] | undefined) ?? [];
    const tcp = ports.find((p) => !p.endsWith('/udp'));
    if (tcp) {
      const target = Number(tcp.split(':').at(-1));
      unit.healthcheck = { tcp: target };
      ctx.note('changed', ['ports'], `no healthcheck but publishes ${tcp}: added healthcheck: { tcp: ${target} } (ready once the published port accepts a TCP connection)`,
        'if it serves an HTTP health endpoint, use healthcheck: { http: /health } instead: it proves more than an open port');
    } else {
      ctx.note('info', [], 'no healthcheck and no published port: it counts as ready once its container runs', 'add healthcheck: { exec: [...] } or a compose healthcheck test for a real readiness probe');
    }
  }

  unit.placement = { host: ctx.host };
  return { unit, dependsOn, usesGpu, shortDependsOn };

  function suggest(k: string): string {
    const hint = closest(k, ['image', 'build', 'command', 'environment', 'ports', 'volumes', 'healthcheck', 'depends_on', 'deploy', 'networks', 'restart', ...Object.keys(UNMAPPABLE)]);
    return hint ? ` (did you mean "${hint}"?)` : '';
  }
}

type Text = (value: string, rel: Key[]) => string;

function mapBuild(value: unknown, ctx: ServiceContext, text: Text): unknown {
  if (typeof value === 'string') return ctx.rebase(text(value, ['build']));
  if (!isMap(value)) {
    ctx.note('mistake', ['build'], 'build must be a path or a map with context', 'write build: ./path');
    return undefined;
  }
  const out: Record<string, unknown> = { context: ctx.rebase(typeof value.context === 'string' ? text(value.context, ['build', 'context']) : '.') };
  for (const [k, v] of Object.entries(value)) {
    if (k === 'context') continue;
    if (k === 'dockerfile' && typeof v === 'string') out.dockerfile = text(v, ['build', k]);
    else if (k === 'args') {
      const args: Record<string, string> = {};
      const entries: [string, unknown][] = Array.isArray(v)
        ? v.map((e) => { const s = String(e); const i = s.indexOf('='); return i < 0 ? [s, null] : [s.slice(0, i), s.slice(i + 1)]; })
        : isMap(v) ? Object.entries(v) : [];
      for (const [name, arg] of entries) {
        if (arg === null || arg === undefined) ctx.note('unmappable', ['build', 'args', name], `build arg ${name} has no value (compose takes it from the shell): left out`, `write ${name}: VALUE`);
        else args[name] = text(String(arg), ['build', 'args', name]);
      }
      out.args = args;
    } else ctx.note('unmappable', ['build', k], `build.${k} is left out: the inventory's build takes context, dockerfile and args`);
  }
  if (value.context === undefined) ctx.note('changed', ['build'], 'build has no context: "." (the compose file\'s folder) assumed, as compose does');
  return out;
}

function mapCommand(value: unknown, ctx: ServiceContext, text: Text, environment: Record<string, unknown>): { command?: unknown } {
  let argv: string[];
  if (typeof value === 'string') {
    const words = splitWords(value);
    if (!words) {
      ctx.note('mistake', ['command'], 'the command has an unterminated quote', 'close the quote');
      return {};
    }
    argv = words;
    ctx.note('info', ['command'], 'a string command is split into words as compose does, and written as a list (the inventory would run a string through /bin/sh -c)');
  } else if (Array.isArray(value)) argv = value.map(String);
  else {
    ctx.note('mistake', ['command'], 'command must be a string or a list');
    return {};
  }
  argv = argv.map((a, i) => text(a, ['command', i]));

  // A secret after --requirepass / --password: the worker passes it through the environment.
  const secretAt = argv.findIndex((a, i) => {
    const m = SECRET_FLAG_RE.exec(a);
    return m && (m[2] !== undefined || argv[i + 1] !== undefined);
  });
  if (secretAt < 0) return { command: argv };
  const m = SECRET_FLAG_RE.exec(argv[secretAt]!)!;
  const flag = m[1]!;
  const inline = m[2] !== undefined;
  const literal = inline ? m[2]! : argv[secretAt + 1]!;
  const word = /token/i.test(flag) ? 'TOKEN' : /secret/i.test(flag) ? 'SECRET' : /key/i.test(flag) ? 'API_KEY' : 'PASSWORD';
  const ref = wholeVarRef(literal);
  const containerVar = ref?.name ?? `${ctx.name.toUpperCase().replace(/[^A-Z0-9]+/g, '_')}_${word}`;
  const rel: Key[] = ['command'];
  if (!ref) {
    const exported = ctx.secret(containerVar, literal, `services.${ctx.name}.environment.${containerVar}`, rel);
    environment[containerVar] = { from_env: exported };
  } else if (!(ref.name in environment)) {
    ctx.note('todo', rel, `the command reads $${ref.name}, which this service's environment does not set`, `add environment: { ${ref.name}: { from_env: NAME } }`);
  }
  if (argv[0]?.startsWith('-')) {
    ctx.note('todo', rel, `a secret follows ${flag} in arguments for the image's entrypoint: written as a shell command, which needs the program's name first`, 'put the program (e.g. redis-server) first in the command');
  }
  const words = argv.map((a, i) => {
    if (i === secretAt && inline) return `${flag}="$${containerVar}"`;
    if (i === secretAt + 1 && !inline) return `"$${containerVar}"`;
    return shellQuote(a);
  });
  const command = `exec ${words.join(' ')}`;
  ctx.note('changed', rel, `the literal secret after ${flag} now comes from the environment variable ${containerVar}: the command is run by /bin/sh -c as \`${command}\` (the image needs a shell)`);
  return { command };
}

function mapEnvironment(value: unknown, ctx: ServiceContext, text: Text, environment: Record<string, unknown>): void {
  let entries: [string, unknown][];
  if (Array.isArray(value)) {
    entries = value.map((e) => {
      const s = String(e);
      const i = s.indexOf('=');
      return i < 0 ? [s, null] : [s.slice(0, i), s.slice(i + 1)];
    });
  } else if (isMap(value)) entries = Object.entries(value);
  else {
    ctx.note('mistake', ['environment'], 'environment must be a map or a list of KEY=VALUE');
    return;
  }
  entries.forEach(([key, v], i) => {
    const rel: Key[] = Array.isArray(value) ? ['environment', i] : ['environment', key];
    const usedBy = `services.${ctx.name}.environment.${key}`;
    if (v === null || v === undefined) {
      environment[key] = { from_env: key };
      ctx.note('changed', rel, `${key} has no value (compose passes the shell's): written as { from_env: ${key} }, read from the worker host's environment`);
      return;
    }
    if (typeof v !== 'string') {
      environment[key] = String(v);
      return;
    }
    const ref = wholeVarRef(v);
    if (ref && (ref.fallback === undefined || isSecretKey(key))) {
      environment[key] = { from_env: ref.name };
      ctx.note('changed', rel, `${key} = \${${ref.name}}: written as { from_env: ${ref.name} }, read from the worker host's environment${ref.fallback !== undefined ? ' (the default in the file is not kept)' : ''}`);
      return;
    }
    const literal = text(v, rel);
    if (literal !== '' && (isSecretKey(key) || URL_CREDENTIALS_RE.test(literal))) {
      const name = ctx.secret(key, literal, usedBy, rel);
      environment[key] = { from_env: name };
      return;
    }
    environment[key] = literal;
  });
}

const SHORT_PORT_RE = /^(?:(\[[^\]]*\]|\d{1,3}(?:\.\d{1,3}){3}):)?(?:(\d*(?:-\d+)?):)?(\d+(?:-\d+)?)(?:\/(\w+))?$/;

function mapPorts(value: unknown, ctx: ServiceContext, text: Text): string[] {
  if (!Array.isArray(value)) {
    ctx.note('mistake', ['ports'], 'ports must be a list');
    return [];
  }
  const out: string[] = [];
  value.forEach((p, i) => {
    const rel: Key[] = ['ports', i];
    let ip: string | undefined, hostPart: string | undefined, target: string, proto: string;
    if (isMap(p)) {
      for (const k of Object.keys(p)) if (!['target', 'published', 'host_ip', 'protocol', 'mode', 'name', 'app_protocol'].includes(k)) ctx.note('mistake', [...rel, k], `"${k}" is not a port field`);
      for (const k of ['mode', 'name', 'app_protocol']) if (p[k] !== undefined) ctx.note('unmappable', [...rel, k], `ports[].${k} is left out: the inventory publishes a port on the host's address`);
      if (p.target === undefined) {
        ctx.note('mistake', rel, 'a long-syntax port needs a target');
        return;
      }
      target = String(p.target);
      hostPart = p.published === undefined ? undefined : String(p.published);
      ip = typeof p.host_ip === 'string' ? p.host_ip : undefined;
      proto = typeof p.protocol === 'string' ? p.protocol : 'tcp';
    } else {
      const m = SHORT_PORT_RE.exec(text(String(p), rel));
      if (!m) {
        ctx.note('mistake', rel, `"${String(p)}" is not a port mapping`, 'write "HOST:CONTAINER", e.g. "8080:80"');
        return;
      }
      [ip, hostPart, target, proto] = [m[1], m[2] || undefined, m[3]!, m[4] ?? 'tcp'];
    }
    if (proto !== 'tcp' && proto !== 'udp') {
      ctx.note('unmappable', rel, `protocol ${proto} is left out: the inventory publishes tcp and udp`);
      return;
    }
    if (ip !== undefined && !/^\d{1,3}(?:\.\d{1,3}){3}$/.test(ip)) {
      ctx.note('changed', rel, `host address ${ip} is not kept (the inventory takes an IPv4 address): the port binds to the host's address`, `set hosts.${ctx.host}.address`);
      ip = undefined;
    }
    if (hostPart === undefined) {
      hostPart = target;
      ctx.note('changed', rel, `compose publishes container port ${target} on a random host port; the inventory publishes it on the same port, ${target}`);
    }
    const range = (s: string) => s.split('-').map(Number) as [number, number?];
    const [h0, h1] = range(hostPart);
    const [t0, t1] = range(target);
    if ((h1 ?? h0) - h0 !== (t1 ?? t0) - t0) {
      ctx.note('unmappable', rel, `the host range ${hostPart} and the container range ${target} differ in size: left out`, 'publish each port explicitly');
      return;
    }
    const n = (t1 ?? t0) - t0;
    if (n > 0) ctx.note('changed', rel, `the range ${hostPart}:${target} is written as ${n + 1} ports`);
    for (let k = 0; k <= n; k++) out.push(`${ip ? `${ip}:` : ''}${h0 + k}:${t0 + k}${proto === 'udp' ? '/udp' : ''}`);
  });
  return out;
}

function mapVolumes(value: unknown, ctx: ServiceContext, text: Text): string[] {
  if (!Array.isArray(value)) {
    ctx.note('mistake', ['volumes'], 'volumes must be a list');
    return [];
  }
  const out: string[] = [];
  value.forEach((v, i) => {
    const rel: Key[] = ['volumes', i];
    let source: string | undefined, target: string, readOnly = false;
    if (isMap(v)) {
      const type = typeof v.type === 'string' ? v.type : 'volume';
      if (type !== 'volume' && type !== 'bind') {
        ctx.note('unmappable', rel, `a ${type} mount is left out: the inventory mounts named volumes and host paths`);
        return;
      }
      for (const k of Object.keys(v)) if (!['type', 'source', 'target', 'read_only'].includes(k)) ctx.note('unmappable', [...rel, k], `volumes[].${k} is left out: the inventory's mounts take source, target and read-only`);
      if (typeof v.target !== 'string') {
        ctx.note('mistake', rel, 'a long-syntax volume needs a target');
        return;
      }
      source = typeof v.source === 'string' ? text(v.source, [...rel, 'source']) : undefined;
      target = text(v.target, [...rel, 'target']);
      readOnly = v.read_only === true;
    } else {
      const parts = text(String(v), rel).split(':');
      if (parts.length === 1) [target] = parts as [string];
      else {
        [source, target] = parts as [string, string];
        const modes = (parts[2] ?? '').split(',').filter(Boolean);
        readOnly = modes.includes('ro');
        const dropped = modes.filter((m) => m !== 'ro' && m !== 'rw');
        if (dropped.length) ctx.note('unmappable', rel, `mount option(s) ${dropped.join(', ')} left out: the inventory's mounts are read-only or read-write`);
        if (parts.length > 3) {
          ctx.note('mistake', rel, `"${String(v)}" is not a volume`, 'write "SOURCE:/container/path[:ro]"');
          return;
        }
      }
    }
    if (!target.startsWith('/')) {
      ctx.note('mistake', rel, `the container path "${target}" is not absolute`, 'write an absolute path inside the container');
      return;
    }
    if (source === undefined || source === '') {
      source = `${ctx.name}${target.replace(/[^A-Za-z0-9_.-]+/g, '_')}`.replace(/_+$/, '');
      ctx.note('changed', rel, `an anonymous volume for ${target} is written as the named volume "${source}" (created per host as <project>-<host>-${source})`);
    } else if (source.startsWith('~')) {
      ctx.note('unmappable', rel, `the host path ${source} is relative to a home folder, which the worker's host does not share: left out`, 'write an absolute host path');
      return;
    } else if (source.startsWith('/') || source.startsWith('.')) {
      const rebased = source.startsWith('/') ? source : ctx.rebase(source);
      if (rebased !== source) ctx.note('changed', rel, `the host path ${source} is written relative to the inventory's folder: ${rebased}`);
      source = rebased;
    } else if (!ctx.volumes.has(source)) {
      ctx.note('mistake', rel, `the named volume "${source}" is not declared under the top-level \`volumes:\`${suggestFrom(source, ctx.volumes)} (compose would refuse it)`, `declare it under volumes:, or fix the name`);
    }
    out.push(`${source}:${target}${readOnly ? ':ro' : ''}`);
  });
  return out;
}

/** "did you mean": the closest name, or a declared name the word starts with ("databaseabase" → "database"). */
function nameHint(name: string, names: Iterable<string>): string | undefined {
  const all = [...names];
  return closest(name, all) ?? all.filter((n) => n.length >= 3 && name.startsWith(n)).sort((a, b) => b.length - a.length)[0];
}

function suggestFrom(name: string, names: Iterable<string>): string {
  const hint = nameHint(name, names);
  return hint ? ` (did you mean "${hint}"?)` : '';
}

function mapHealthcheck(value: unknown, ctx: ServiceContext, text: Text): Record<string, unknown> | undefined {
  if (!isMap(value)) {
    ctx.note('mistake', ['healthcheck'], 'healthcheck must be a map');
    return undefined;
  }
  if (value.disable === true || (Array.isArray(value.test) && value.test[0] === 'NONE')) {
    ctx.note('info', ['healthcheck'], 'the healthcheck is disabled: it counts as ready once its container runs (no probe added)');
    return undefined;
  }
  const hc: Record<string, unknown> = {};
  if (typeof value.test === 'string') hc.test = text(value.test, ['healthcheck', 'test']);
  else if (Array.isArray(value.test) && value.test.length > 0) hc.test = value.test.map((t, i) => text(String(t), ['healthcheck', 'test', i]));
  for (const [k, v] of Object.entries(value)) {
    if (k === 'test' || k === 'disable') continue;
    if (k === 'interval' || k === 'timeout' || k === 'start_period') {
      if ((typeof v === 'string' || typeof v === 'number') && parseDuration(v) !== undefined) hc[k] = v;
      else ctx.note('unmappable', ['healthcheck', k], `${k} "${String(v)}" is not a duration the inventory reads ("500ms", "10s", "1m30s"): the default is used`);
    } else if (k === 'retries') {
      if (typeof v === 'number' && Number.isInteger(v) && v >= 1) hc.retries = v;
      else ctx.note('unmappable', ['healthcheck', k], `retries ${String(v)} is not kept (at least 1): the default, 3, is used`);
    } else ctx.note('unmappable', ['healthcheck', k], `healthcheck.${k} is left out: the inventory's health checks take interval, timeout, retries and start_period`);
  }
  if (hc.test === undefined) {
    ctx.note('unmappable', ['healthcheck'], 'a healthcheck without a test uses the image\'s own HEALTHCHECK, which the inventory cannot refer to: its timings are dropped', 'write the test here');
    return undefined;
  }
  return hc;
}

function mapDependsOn(value: unknown, ctx: ServiceContext): { dependsOn: Record<string, { condition: string }>; short: boolean } {
  const dependsOn: Record<string, { condition: string }> = {};
  if (Array.isArray(value)) {
    for (const d of value) dependsOn[String(d)] = { condition: 'service_started' };
    return { dependsOn, short: true };
  }
  if (!isMap(value)) {
    ctx.note('mistake', ['depends_on'], 'depends_on must be a list or a map');
    return { dependsOn, short: false };
  }
  for (const [dep, spec] of Object.entries(value)) {
    const condition = isMap(spec) && typeof spec.condition === 'string' ? spec.condition : 'service_started';
    if (!['service_started', 'service_healthy', 'service_completed_successfully'].includes(condition)) {
      ctx.note('mistake', ['depends_on', dep, 'condition'], `unknown condition "${condition}"`, 'write service_started, service_healthy or service_completed_successfully');
      dependsOn[dep] = { condition: 'service_started' };
      continue;
    }
    dependsOn[dep] = { condition };
    if (isMap(spec)) for (const k of Object.keys(spec)) if (k !== 'condition') ctx.note('unmappable', ['depends_on', dep, k], `depends_on.${dep}.${k} is left out: the inventory's dependencies take a condition`);
  }
  return { dependsOn, short: false };
}

/** compose's deploy: only GPU reservations have a place (gpu.count). */
function mapDeploy(value: unknown, ctx: ServiceContext): number | undefined {
  if (!isMap(value)) return undefined;
  let count: number | undefined;
  for (const [k, v] of Object.entries(value)) {
    if (k !== 'resources' || !isMap(v)) {
      ctx.note('unmappable', ['deploy', k], `deploy.${k} is left out: ${k === 'replicas' ? 'one container per unit' : k === 'placement' ? 'place units with placement: { host } or { labels }' : NO_FIELD}`);
      continue;
    }
    for (const [rk, rv] of Object.entries(v)) {
      if (rk !== 'reservations' || !isMap(rv)) {
        ctx.note('unmappable', ['deploy', 'resources', rk], `deploy.resources.${rk} is left out: the inventory has no CPU or memory ${rk === 'limits' ? 'limits' : 'reservations'}`);
        continue;
      }
      for (const [sk, sv] of Object.entries(rv)) {
        const rel: Key[] = ['deploy', 'resources', 'reservations', sk];
        if (sk !== 'devices' || !Array.isArray(sv)) {
          ctx.note('unmappable', rel, `deploy.resources.reservations.${sk} is left out: the inventory reserves GPUs only`);
          continue;
        }
        sv.forEach((d, i) => {
          const caps = isMap(d) && Array.isArray(d.capabilities) ? d.capabilities.map(String) : [];
          if (!isMap(d) || !(d.driver === 'nvidia' || caps.includes('gpu'))) {
            ctx.note('unmappable', [...rel, i], 'a device reservation that is not a GPU is left out');
            return;
          }
          if (count !== undefined) {
            ctx.note('unmappable', [...rel, i], 'a second GPU reservation is left out: the inventory takes one gpu.count', 'add its count to gpu.count');
            return;
          }
          count = typeof d.count === 'number' && d.count >= 1 ? d.count : 1;
          if (d.count === 'all') ctx.note('changed', [...rel, i], 'count: all → gpu.count: 1 (the planner needs a number)', 'set gpu.count');
          if (d.device_ids !== undefined) ctx.note('unmappable', [...rel, i, 'device_ids'], 'device_ids are left out: the planner picks a host whose declared GPUs fit');
          ctx.note('changed', [...rel, i], `GPU reservation → gpu: { count: ${count} } with min_vram_gb 1: compose does not say how much VRAM it needs`, 'set gpu.min_vram_gb, so that the planner places it on a GPU big enough');
        });
      }
    }
  }
  return count;
}

function mapNetworks(value: unknown, ctx: ServiceContext): void {
  const names: [string, unknown][] = Array.isArray(value) ? value.map((n) => [String(n), null]) : isMap(value) ? Object.entries(value) : [];
  names.forEach(([name, spec], i) => {
    const rel: Key[] = Array.isArray(value) ? ['networks', i] : ['networks', name];
    if (name !== 'default' && ctx.networks && !ctx.networks.has(name)) {
      const hint = nameHint(name, ctx.networks);
      ctx.note('mistake', rel, `the network "${name}" is not declared under the top-level \`networks:\`${hint ? ` (did you mean "${hint}"?)` : ''}: compose would refuse the file`,
        hint ? `write "${hint}"` : `declare "${name}" under networks:`);
    }
    if (isMap(spec)) for (const k of Object.keys(spec)) ctx.note('unmappable', [...rel, k], `networks.${name}.${k} is left out: a unit is reached by its unit name on its host's one network`);
  });
}
