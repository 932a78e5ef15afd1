/**
 * Faults for tests on isolated hosts (src/dev/isolated-hosts.ts): take a host off the network and
 * back, kill its engine and start it again, kill a worker. Each acts on the real thing (the veth,
 * the dockerd process) and returns once the fault is in place.
 */
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { promisify } from 'node:util';
import { killEngineProcesses, pidAlive, startEngine, terminateEngineProcess, type IsolatedHost } from './isolated-hosts.js';

const exec = promisify(execFile);

async function setLink(host: IsolatedHost, state: 'up' | 'down'): Promise<void> {
  try {
    await exec('ip', ['link', 'set', 'dev', host.link, state]);
  } catch (err) {
    throw new Error(`host ${host.name}: ip link set ${host.link} ${state}: ${(err as { stderr?: string }).stderr?.trim() || (err as Error).message}`);
  }
}

/** Take the host off the bridge: nothing reaches it and it reaches nothing (its processes keep running). */
export function cutLink(host: IsolatedHost): Promise<void> {
  return setLink(host, 'down');
}

/** Put the host back on the bridge. */
export function restoreLink(host: IsolatedHost): Promise<void> {
  return setLink(host, 'up');
}

/** The host's engine dies (SIGKILL to dockerd and its containerd); its containers' processes live on. */
export function killEngine(host: IsolatedHost): Promise<void> {
  return killEngineProcesses(host);
}

/** The host's engine stops as `systemctl stop docker` stops it (SIGTERM: its containers are stopped first). */
export function stopEngine(host: IsolatedHost, timeoutMs?: number): Promise<void> {
  return terminateEngineProcess(host, timeoutMs);
}

/** Start the host's engine again (same data root and socket); resolves once it answers. Returns its pid. */
export function restartEngine(host: IsolatedHost, timeoutMs?: number): Promise<number> {
  return startEngine(host, timeoutMs);
}

/** Kill a process (a worker) at once, its process group too, and wait until it is gone. */
export async function killWorker(pid: number, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, signal);
    } catch { /* not a group leader, or gone */ }
  }
  const deadline = Date.now() + 10_000;
  while (pidAlive(pid) && !(await isZombie(pid))) {
    if (Date.now() > deadline) throw new Error(`process ${pid} is still alive 10 s after ${signal}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function isZombie(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  return stat === '' || stat.slice(stat.lastIndexOf(')') + 2).startsWith('Z');
}
