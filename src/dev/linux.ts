/**
 * The few Linux calls isolated hosts need: `ip` and friends run with an argv (no shell), and
 * /proc and /sys read directly (processes, network namespaces, mounts, cgroups).
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, readFile, readdir, readlink, rmdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';

const exec = promisify(execFile);

export async function run(cmd: string, args: string[]): Promise<string> {
  try {
    const { stdout } = await exec(cmd, args);
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')}: ${(e.stderr ?? '').trim() || e.message}`);
  }
}

export async function tryRun(cmd: string, args: string[]): Promise<boolean> {
  try {
    await exec(cmd, args);
    return true;
  } catch {
    return false;
  }
}

/** Whether an executable is on PATH (or in /usr/sbin, /sbin, where Debian keeps `ip` and `iptables`). */
export async function onPath(tool: string): Promise<boolean> {
  for (const dir of [...(process.env.PATH ?? '').split(path.delimiter), '/usr/sbin', '/sbin'].filter(Boolean)) {
    try {
      await access(path.join(dir, tool), constants.X_OK);
      return true;
    } catch { /* next */ }
  }
  return false;
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() > deadline) return false;
    await sleep(intervalMs);
  }
}

export async function linkExists(name: string): Promise<boolean> {
  return tryRun('ip', ['link', 'show', 'dev', name]);
}

export async function netnsList(): Promise<string[]> {
  const out = await run('ip', ['netns', 'list']);
  return out.split('\n').map((l) => l.trim().split(/\s+/)[0]!).filter(Boolean);
}

/** Processes whose network namespace is `netns` (what `ip netns pids` reports). */
export async function netnsPids(netns: string): Promise<number[]> {
  try {
    return (await run('ip', ['netns', 'pids', netns])).split('\n').map(Number).filter((n) => n > 0);
  } catch {
    return [];
  }
}

export function childPids(pid: number, all: { pid: number; ppid: number }[]): number[] {
  return all.filter((p) => p.ppid === pid).map((p) => p.pid);
}

export async function processTable(): Promise<{ pid: number; ppid: number }[]> {
  const out: { pid: number; ppid: number }[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const text = await readFile(`/proc/${entry}/stat`, 'utf8');
      const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
      out.push({ pid: Number(entry), ppid: Number(fields[1]) });
    } catch { /* gone */ }
  }
  return out;
}

/** Mount points at or below `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n')
    .map((line) => line.split(' ')[4])
    .filter((m): m is string => m !== undefined && (m === dir || m.startsWith(`${dir}/`)))
    .map((m) => m.replace(/\\040/g, ' '))
    .sort((a, b) => b.length - a.length);
}

export async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

/** The network namespace a process lives in (its /proc/PID/ns/net link, e.g. "net:[4026532281]"). */
export async function netnsOfPid(pid: number): Promise<string> {
  return readlink(`/proc/${pid}/ns/net`);
}

/** The same identity for a named namespace (the inode of /var/run/netns/NAME). */
export async function netnsId(netns: string): Promise<string> {
  const s = await stat(`/var/run/netns/${netns}`);
  return `net:[${s.ino}]`;
}

export async function pidsInCgroups(ids: string[]): Promise<number[]> {
  if (ids.length === 0) return [];
  const out: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cg = await readFile(`/proc/${entry}/cgroup`, 'utf8');
      if (ids.some((id) => cg.includes(id))) out.push(Number(entry));
    } catch { /* gone */ }
  }
  return out;
}

export async function removeCgroups(ids: string[]): Promise<void> {
  let controllers: string[];
  try {
    controllers = await readdir('/sys/fs/cgroup');
  } catch {
    return;
  }
  for (const c of controllers) {
    for (const id of ids) {
      for (const dir of [path.join('/sys/fs/cgroup', c, 'docker', id), path.join('/sys/fs/cgroup', c, 'system.slice', `docker-${id}.scope`)]) {
        await rmdir(dir).catch(() => undefined);
      }
    }
  }
}
