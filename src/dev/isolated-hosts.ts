/**
 * Isolated hosts on one Linux machine (root): each host its own network namespace, with a veth into
 * one bridge and its own address, and its own `dockerd` (own data root, exec root and socket) started
 * inside that namespace. Workers started with `spawnInNamespace` reach the rest only over the bridge,
 * as they would from another machine.
 *
 *   root namespace:  <prefix>-br  10.231.0.1/24  (the Temporal dev server listens here)
 *   host i:          netns <prefix>-<host>, eth0 10.231.0.(i+2)/24, dockerd on <state>/<host>/docker.sock
 *
 * Namespaces have no default route: they reach the bridge subnet and nothing else. `down()` (or
 * `downIsolatedHosts(stateDir)` from another process, which reads the state file) removes every
 * namespace, link, firewall rule, mount, process and file this made; `leftovers()` lists what remains.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, rmdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import Dockerode from 'dockerode';
import {
  childPids, exists, linkExists, mountsUnder, netnsList, netnsPids, onPath, pidAlive, pidsInCgroups, processTable, removeCgroups, run, tryRun, waitFor,
} from './linux.js';

export { linkExists, netnsId, netnsList, netnsOfPid, pidAlive } from './linux.js';

export interface IsolatedHost {
  name: string;
  /** The host's address on the bridge: it publishes ports here, and other hosts reach it here. */
  address: string;
  /** Its own engine's socket (in the root mount namespace, so any process can open it). */
  dockerSocket: string;
  dockerPid: number;
  /** `ip netns` name; the namespace is mounted at /var/run/netns/<netns>. */
  netns: string;
  /** The bridge side of the host's veth: cut it to take the host off the network. */
  link: string;
  /** The argv (after nsenter) that (re)starts its dockerd, and its log file. */
  engineArgv: string[];
  engineLog: string;
  stateDir: string;
}

export interface IsolatedHostsOptions {
  /** Names every link and namespace: lowercase letters, digits and '-', at most 9 characters. */
  prefix: string;
  /** IPv4 subnet of the bridge, e.g. 10.231.0.0/24: .1 is the bridge, hosts get .2, .3, … */
  subnet: string;
  hosts: string[];
  /** Where engines keep their data (default /var/lib/migrate-isolated/<prefix>); removed by down(). */
  stateDir?: string;
  /** How long each engine may take to answer (default 60 s). */
  engineTimeoutMs?: number;
}

export interface IsolatedHosts {
  prefix: string;
  stateDir: string;
  bridge: string;
  bridgeAddress: string;
  /** Prefix length of the subnet (24 for a /24). */
  prefixLength: number;
  hosts: IsolatedHost[];
  host(name: string): IsolatedHost;
  docker(name: string): Dockerode;
  /**
   * Make a TCP port that listens on 127.0.0.1 in the root namespace (the Temporal dev server) answer
   * on the bridge address too, so the hosts reach it as another machine's server: a DNAT rule on the
   * bridge (and route_localnet on it), and an SNAT rule so the service sees a loopback peer, as it
   * would from its own machine. Returns `bridgeAddress:port`. Undone by down().
   */
  forwardToLoopback(port: number): Promise<string>;
  down(): Promise<void>;
}

interface StateFile {
  /** The process that brought them up: while it lives, they are in use. */
  ownerPid: number;
  prefix: string;
  bridge: string;
  bridgeAddress: string;
  prefixLength: number;
  firewallRule?: string[];
  /** `iptables -t nat` rules (without -I/-D) that forward bridge ports to loopback. */
  natRules?: string[][];
  hosts: IsolatedHost[];
}

const PREFIX_RE = /^[a-z][a-z0-9-]{0,8}$/;
const HOST_RE = /^[a-z0-9][a-z0-9_-]*$/i;
const STATE_FILE = 'isolated-hosts.json';

const DEFAULT_STATE_BASE = '/var/lib/migrate-isolated';

export function defaultStateDir(prefix: string): string {
  return path.join(DEFAULT_STATE_BASE, prefix);
}

/** Why isolated hosts cannot run here, or undefined when they can (root, `ip`, `nsenter`, `dockerd`). */
export async function isolatedHostsUnsupported(): Promise<string | undefined> {
  if (process.platform !== 'linux') return `isolated hosts need Linux network namespaces (this is ${process.platform})`;
  if (process.getuid?.() !== 0) return 'isolated hosts need root (network namespaces, bridges and dockerd)';
  for (const [tool, pkg] of [['ip', 'iproute2'], ['nsenter', 'util-linux'], ['dockerd', 'docker.io']] as const) {
    if (!(await onPath(tool))) return `\`${tool}\` is missing: install Debian's ${pkg} (scripts/setup.sh does)`;
  }
  return undefined;
}

// --- addresses ---------------------------------------------------------------------------------

function ipToInt(ip: string): number {
  const parts = ip.split('.').map(Number);
  if (parts.length !== 4 || parts.some((p) => !Number.isInteger(p) || p < 0 || p > 255)) throw new Error(`"${ip}" is not an IPv4 address`);
  return ((parts[0]! << 24) | (parts[1]! << 16) | (parts[2]! << 8) | parts[3]!) >>> 0;
}

function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** The bridge's address and one address per host inside `subnet` (pure). */
export function allocateAddresses(subnet: string, count: number): { bridge: string; hosts: string[]; prefixLength: number } {
  const match = /^([\d.]+)\/(\d{1,2})$/.exec(subnet);
  if (!match) throw new Error(`subnet "${subnet}" must be IPv4 CIDR, e.g. 10.231.0.0/24`);
  const prefixLength = Number(match[2]);
  if (prefixLength < 8 || prefixLength > 29) throw new Error(`subnet "${subnet}": the prefix length must be between 8 and 29`);
  const mask = prefixLength === 0 ? 0 : (~0 << (32 - prefixLength)) >>> 0;
  const network = (ipToInt(match[1]!) & mask) >>> 0;
  const usable = 2 ** (32 - prefixLength) - 3; // network, bridge, broadcast
  if (count > usable) throw new Error(`subnet "${subnet}" has room for ${usable} hosts, not ${count}`);
  return {
    bridge: intToIp(network + 1),
    hosts: Array.from({ length: count }, (_, i) => intToIp(network + 2 + i)),
    prefixLength,
  };
}

// --- engines -------------------------------------------------------------------------------------

export function dockerFor(host: Pick<IsolatedHost, 'dockerSocket'>): Dockerode {
  return new Dockerode({ socketPath: host.dockerSocket });
}

function engineArgv(dir: string): string[] {
  return [
    'dockerd',
    '--data-root', path.join(dir, 'data'),
    '--exec-root', path.join(dir, 'exec'),
    '--pidfile', path.join(dir, 'docker.pid'),
    '-H', `unix://${path.join(dir, 'docker.sock')}`,
    // Not the machine's /etc/docker/daemon.json: the namespace's own docker0 and iptables, defaults.
    '--config-file', path.join(dir, 'daemon.json'),
    '--log-level', 'warn',
  ];
}

/** Start (or restart) a host's dockerd inside its namespace and wait until it answers. */
export async function startEngine(host: IsolatedHost, timeoutMs = 60_000): Promise<number> {
  const log = openSync(host.engineLog, 'a');
  let child: ChildProcess;
  try {
    // nsenter execs dockerd (no --fork), so the child's pid is dockerd's. Own process group: a
    // Ctrl-C in the terminal reaches the CLI, which then tears down in order.
    child = spawn('nsenter', [`--net=/var/run/netns/${host.netns}`, '--', ...host.engineArgv], { stdio: ['ignore', log, log], detached: true });
  } finally {
    closeSync(log);
  }
  child.unref();
  const pid = child.pid;
  if (pid === undefined) throw new Error(`host ${host.name}: dockerd could not be started`);
  host.dockerPid = pid;
  await recordEnginePid(host);
  const docker = dockerFor(host);
  const ok = await waitFor(async () => {
    if (!pidAlive(pid)) return true;
    return docker.ping().then(() => true, () => false);
  }, timeoutMs, 150);
  if (!ok || !pidAlive(pid)) {
    const tail = (await readFile(host.engineLog, 'utf8').catch(() => '')).split('\n').slice(-15).join('\n');
    throw new Error(`host ${host.name}: dockerd ${pidAlive(pid) ? `did not answer within ${timeoutMs / 1000} s` : 'exited'}; its log (${host.engineLog}):\n${tail}`);
  }
  return pid;
}

/** SIGKILL a host's dockerd and the containerd it started: the engine is gone, its containers' shims stay. */
export async function killEngineProcesses(host: IsolatedHost): Promise<void> {
  const enginePid = await findEnginePid(host);
  if (enginePid === undefined) return; // already dead
  const table = await processTable();
  const victims = [enginePid, ...childPids(enginePid, table)];
  for (const pid of victims) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch { /* already gone */ }
  }
  await waitFor(() => victims.every((p) => !pidAlive(p)), 10_000);
}

/**
 * Stop a host's dockerd the way `systemctl stop docker` does: SIGTERM, it stops its containers
 * (without marking them stopped by hand: `unless-stopped` ones start again with the engine) and
 * its containerd, and exits. Resolves once it is gone.
 */
export async function terminateEngineProcess(host: IsolatedHost, timeoutMs = 60_000): Promise<void> {
  const enginePid = await findEnginePid(host);
  if (enginePid === undefined) return; // already stopped
  try {
    process.kill(enginePid, 'SIGTERM');
  } catch { /* gone */ }
  if (!(await waitFor(() => !pidAlive(enginePid), timeoutMs))) throw new Error(`host ${host.name}: dockerd (pid ${enginePid}) still runs ${timeoutMs / 1000} s after SIGTERM`);
}

/** Keep the state file's pid current after a restart (`migrate dev --isolated-hosts --down` reports from it). */
async function recordEnginePid(host: IsolatedHost): Promise<void> {
  const stateDir = path.dirname(host.stateDir);
  const state = await readState(stateDir);
  const entry = state?.hosts.find((h) => h.name === host.name);
  if (!state || !entry) return;
  entry.dockerPid = host.dockerPid;
  await saveState(stateDir, state);
}

// --- up --------------------------------------------------------------------------------------------

async function saveState(stateDir: string, state: StateFile): Promise<void> {
  await writeFile(path.join(stateDir, STATE_FILE), `${JSON.stringify(state, null, 2)}\n`);
}

export async function upIsolatedHosts(options: IsolatedHostsOptions): Promise<IsolatedHosts> {
  const { prefix, hosts: names } = options;
  if (!PREFIX_RE.test(prefix)) throw new Error(`prefix "${prefix}" must be lowercase letters, digits and '-', 1 to 9 characters (it names network links)`);
  for (const n of names) if (!HOST_RE.test(n)) throw new Error(`host name "${n}" cannot name a network namespace`);
  if (new Set(names).size !== names.length) throw new Error(`host names repeat: ${names.join(', ')}`);
  const why = await isolatedHostsUnsupported();
  if (why) throw new Error(why);
  const addresses = allocateAddresses(options.subnet, names.length);
  const stateDir = path.resolve(options.stateDir ?? defaultStateDir(prefix));
  const bridge = `${prefix}-br`;
  if (await linkExists(bridge)) {
    const owner = (await readState(stateDir))?.ownerPid;
    throw new Error(`link ${bridge} already exists: isolated hosts with prefix "${prefix}" are ${owner && pidAlive(owner) ? `in use by process ${owner}` : 'up or were left behind'}; remove them with \`migrate dev --isolated-hosts --prefix ${prefix} --down\` (downIsolatedHosts('${stateDir}'))`);
  }
  await mkdir(stateDir, { recursive: true });
  const state: StateFile = { ownerPid: process.pid, prefix, bridge, bridgeAddress: addresses.bridge, prefixLength: addresses.prefixLength, hosts: [] };
  await saveState(stateDir, state);

  try {
    await run('ip', ['link', 'add', bridge, 'type', 'bridge']);
    await run('ip', ['addr', 'add', `${addresses.bridge}/${addresses.prefixLength}`, 'dev', bridge]);
    await run('ip', ['link', 'set', bridge, 'up']);
    // With br_netfilter loaded, bridged frames pass the root FORWARD chain, whose policy the root
    // engine sets to DROP: let traffic between the hosts (and only between them) through.
    const rule = ['FORWARD', '-i', bridge, '-o', bridge, '-m', 'comment', '--comment', `migrate-isolated-${prefix}`, '-j', 'ACCEPT'];
    if (await tryRun('iptables', ['-I', ...rule])) state.firewallRule = rule;
    await saveState(stateDir, state);

    for (const [i, name] of names.entries()) {
      const dir = path.join(stateDir, name);
      await mkdir(dir, { recursive: true });
      await writeFile(path.join(dir, 'daemon.json'), '{}\n');
      const host: IsolatedHost = {
        name,
        address: addresses.hosts[i]!,
        dockerSocket: path.join(dir, 'docker.sock'),
        dockerPid: 0,
        netns: `${prefix}-${name}`,
        link: `${prefix}-v${i}`,
        engineArgv: engineArgv(dir),
        engineLog: path.join(dir, 'dockerd.log'),
        stateDir: dir,
      };
      state.hosts.push(host);
      await saveState(stateDir, state);
      const peer = `${prefix}-p${i}`;
      await run('ip', ['netns', 'add', host.netns]);
      await run('ip', ['link', 'add', host.link, 'type', 'veth', 'peer', 'name', peer]);
      await run('ip', ['link', 'set', peer, 'netns', host.netns]);
      await run('ip', ['link', 'set', host.link, 'master', bridge, 'up']);
      await run('ip', ['-n', host.netns, 'link', 'set', peer, 'name', 'eth0']);
      await run('ip', ['-n', host.netns, 'addr', 'add', `${host.address}/${addresses.prefixLength}`, 'dev', 'eth0']);
      await run('ip', ['-n', host.netns, 'link', 'set', 'eth0', 'up']);
      await run('ip', ['-n', host.netns, 'link', 'set', 'lo', 'up']);
    }
    // Engines start in parallel (each takes a second or two).
    await Promise.all(state.hosts.map((h) => startEngine(h, options.engineTimeoutMs)));
    await saveState(stateDir, state);
  } catch (err) {
    await downIsolatedHosts(stateDir).catch(() => undefined);
    throw err;
  }
  return handle(stateDir, state);
}

function handle(stateDir: string, state: StateFile): IsolatedHosts {
  const byName = new Map(state.hosts.map((h) => [h.name, h]));
  return {
    prefix: state.prefix,
    stateDir,
    bridge: state.bridge,
    bridgeAddress: state.bridgeAddress,
    prefixLength: state.prefixLength,
    hosts: state.hosts,
    host(name) {
      const h = byName.get(name);
      if (!h) throw new Error(`no isolated host "${name}" (there are ${[...byName.keys()].join(', ')})`);
      return h;
    },
    docker(name) {
      return dockerFor(this.host(name));
    },
    async forwardToLoopback(port) {
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new Error(`port ${port} is not a TCP port`);
      // A specific non-loopback --ip breaks the dev server (its services dial each other on 127.0.0.1),
      // and 0.0.0.0 would expose it on every interface: forward the bridge address instead.
      await writeFile(`/proc/sys/net/ipv4/conf/${state.bridge}/route_localnet`, '1');
      const comment = ['-m', 'comment', '--comment', `migrate-isolated-${state.prefix}`];
      const dnat = ['PREROUTING', '-i', state.bridge, '-d', state.bridgeAddress, '-p', 'tcp', '--dport', String(port),
        ...comment, '-j', 'DNAT', '--to-destination', `127.0.0.1:${port}`];
      // And from the loopback address: a loopback service trusts loopback peers only (PostgreSQL's
      // pg_hba "host … 127.0.0.1/32", Redis's protected mode), and these peers are this machine's own hosts.
      const snat = ['INPUT', '-i', state.bridge, '-d', '127.0.0.1', '-p', 'tcp', '--dport', String(port),
        ...comment, '-j', 'SNAT', '--to-source', '127.0.0.1'];
      state.natRules = [...(state.natRules ?? []), dnat, snat];
      await saveState(stateDir, state);
      await run('iptables', ['-t', 'nat', '-I', ...dnat]);
      await run('iptables', ['-t', 'nat', '-I', ...snat]);
      return `${state.bridgeAddress}:${port}`;
    },
    down: () => downIsolatedHosts(stateDir),
  };
}

// --- processes inside a namespace -----------------------------------------------------------------

/**
 * Run a process inside a host's network namespace (its files and mounts are the machine's): e.g.
 * `spawnInNamespace(host, [process.execPath, 'bin/migrate.mjs', 'worker', '--host', 'pc2', '--address', …])`.
 * The process gets its own process group; stop it with `killWorker(child.pid)`.
 */
export function spawnInNamespace(
  host: Pick<IsolatedHost, 'netns'>,
  argv: string[],
  env: Record<string, string> = {},
  options: { cwd?: string; logFile?: string } = {},
): ChildProcess {
  const fd = options.logFile ? openSync(options.logFile, 'a') : undefined;
  try {
    return spawn('nsenter', [`--net=/var/run/netns/${host.netns}`, '--', ...argv], {
      cwd: options.cwd,
      env: { ...process.env, ...env },
      stdio: ['ignore', fd ?? 'inherit', fd ?? 'inherit'],
      detached: true,
    });
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
}

// --- down ------------------------------------------------------------------------------------------

/** Container processes of an engine whose API is gone: found through their cgroup (the container id). */
async function containerIds(host: IsolatedHost): Promise<string[]> {
  try {
    return (await readdir(path.join(host.stateDir, 'data', 'containers'))).filter((id) => /^[0-9a-f]{64}$/.test(id));
  } catch {
    return [];
  }
}

/**
 * The host's running dockerd, found in its namespace by its data root (never a pid taken on trust:
 * a recorded pid may be stale after a restart, or reused by another process).
 */
async function findEnginePid(host: IsolatedHost): Promise<number | undefined> {
  const dataRoot = host.engineArgv[host.engineArgv.indexOf('--data-root') + 1]!;
  for (const pid of await netnsPids(host.netns)) {
    const argv = (await readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '')).split('\0');
    if (path.basename(argv[0] ?? '') === 'dockerd' && argv.includes(dataRoot)) return pid;
  }
  return undefined;
}

async function stopHostEngine(host: IsolatedHost): Promise<void> {
  const enginePid = await findEnginePid(host);
  if (enginePid !== undefined) {
    host.dockerPid = enginePid;
    // Remove its containers through the engine first: that unmounts and frees everything cleanly.
    const docker = dockerFor(host);
    try {
      const containers = await docker.listContainers({ all: true });
      await Promise.all(containers.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    } catch { /* not answering: the sweep below handles it */ }
    try {
      process.kill(host.dockerPid, 'SIGTERM');
    } catch { /* gone */ }
    if (!(await waitFor(() => !pidAlive(host.dockerPid), 15_000))) {
      try {
        process.kill(host.dockerPid, 'SIGKILL');
      } catch { /* gone */ }
    }
  }
  // Whatever is left: container processes (their own namespaces, found by cgroup), then everything
  // still in the host's namespace (containerd, shims, workers).
  const ids = await containerIds(host);
  for (let round = 0; round < 3; round++) {
    const pids = [...await pidsInCgroups(ids), ...await netnsPids(host.netns)].filter((p) => p !== process.pid);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch { /* gone */ }
    }
    await waitFor(() => pids.every((p) => !pidAlive(p)), 5000);
  }
  await removeCgroups(ids);
}

/** Remove everything `upIsolatedHosts` made under `stateDir` (also from another process). Idempotent. */
async function readState(stateDir: string): Promise<StateFile | undefined> {
  try {
    return JSON.parse(await readFile(path.join(stateDir, STATE_FILE), 'utf8')) as StateFile;
  } catch {
    return undefined;
  }
}

/**
 * Remove what a process that has died left under `stateDir` (a killed test run, a crashed
 * `migrate dev`); hosts whose owner still runs are left alone. True when nothing is in use there now.
 */
export async function removeStaleIsolatedHosts(stateDir: string): Promise<boolean> {
  const state = await readState(stateDir);
  if (!state) return true;
  if (state.ownerPid !== process.pid && pidAlive(state.ownerPid)) return false;
  await downIsolatedHosts(stateDir);
  return true;
}

export async function downIsolatedHosts(stateDir: string): Promise<void> {
  const state = await readState(stateDir);
  if (!state) return;
  await Promise.all(state.hosts.map((h) => stopHostEngine(h)));
  for (const mount of await mountsUnder(stateDir)) await tryRun('umount', ['-l', mount]);
  for (const h of state.hosts) {
    if ((await netnsList()).includes(h.netns)) await run('ip', ['netns', 'del', h.netns]);
    // Deleting the namespace deletes the veth's inner end, and with it the outer one (asynchronously).
    if (!(await waitFor(async () => !(await linkExists(h.link)), 5000))) await tryRun('ip', ['link', 'del', h.link]);
  }
  if (await linkExists(state.bridge)) await run('ip', ['link', 'del', state.bridge]);
  if (state.firewallRule) while (await tryRun('iptables', ['-D', ...state.firewallRule]));
  for (const rule of state.natRules ?? []) while (await tryRun('iptables', ['-t', 'nat', '-D', ...rule]));
  await rm(stateDir, { recursive: true, force: true });
  // The shared parent of the default state folders goes too once empty.
  if (path.dirname(stateDir) === DEFAULT_STATE_BASE) await rmdir(DEFAULT_STATE_BASE).catch(() => undefined);
}

/** What is left of isolated hosts with this prefix and state folder: empty when down() was complete. */
export async function leftovers(prefix: string, stateDir: string = defaultStateDir(prefix)): Promise<string[]> {
  const out: string[] = [];
  for (const ns of await netnsList()) if (ns.startsWith(`${prefix}-`)) out.push(`network namespace ${ns}`);
  const links = await run('ip', ['-o', 'link', 'show']);
  for (const line of links.split('\n')) {
    const name = line.split(':')[1]?.trim().split('@')[0];
    if (name?.startsWith(`${prefix}-`)) out.push(`link ${name}`);
  }
  for (const m of await mountsUnder(stateDir)) out.push(`mount ${m}`);
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.includes(`${stateDir}/`)) out.push(`process ${entry}: ${cmdline.split('\0').join(' ').trim().slice(0, 120)}`);
  }
  const rules = await run('iptables', ['-S', 'FORWARD']).catch(() => '');
  if (rules.includes(`migrate-isolated-${prefix}`)) out.push(`iptables FORWARD rule migrate-isolated-${prefix}`);
  const nat = await run('iptables', ['-t', 'nat', '-S', 'PREROUTING']).catch(() => '');
  if (nat.includes(`migrate-isolated-${prefix}`)) out.push(`iptables nat PREROUTING rule migrate-isolated-${prefix}`);
  if (await exists(stateDir)) out.push(`folder ${stateDir}`);
  return out;
}
