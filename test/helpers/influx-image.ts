/**
 * An InfluxDB 1.x image for the tests, FROM scratch: Debian's influxd and influx binaries (packages
 * influxdb and influxdb-client, installed by scripts/setup.sh), the shared libraries ldd lists for
 * them, busybox-static for a shell, and a config whose backup/restore RPC listens on 127.0.0.1:8088
 * inside the container (as the official influxdb:1.x images do). No registry is reachable, so
 * nothing is pulled: the image is built once through the local engine and kept under its tag.
 */
import { execFile } from 'node:child_process';
import { access, chmod, copyFile, mkdir, mkdtemp, realpath, rm, writeFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type Dockerode from 'dockerode';
import { buildImage } from '../../src/activities/docker.js';

export const INFLUX_IMAGE = 'agent-migrate/test-influxdb:1.6';

const CONFIG = `reporting-enabled = false
# The backup/restore RPC: reachable only from inside the container (influxd backup|restore -host 127.0.0.1:8088).
bind-address = "127.0.0.1:8088"

[meta]
  dir = "/var/lib/influxdb/meta"

[data]
  dir = "/var/lib/influxdb/data"
  wal-dir = "/var/lib/influxdb/wal"
  query-log-enabled = false

[http]
  bind-address = ":8086"
  log-enabled = false

[monitor]
  store-enabled = false
`;

const DOCKERFILE = `FROM scratch
COPY rootfs/ /
RUN ["/bin/busybox", "--install", "-s", "/bin"]
RUN ["/bin/sh", "-c", "mkdir -p /tmp /var/lib/influxdb && chmod 1777 /tmp"]
EXPOSE 8086
ENTRYPOINT ["/usr/bin/influxd", "-config", "/etc/influxdb/influxdb.conf"]
`;

async function executable(candidates: (string | undefined)[], what: string, fix: string): Promise<string> {
  for (const c of candidates.filter(Boolean) as string[]) {
    try {
      await access(c, constants.X_OK);
      return c;
    } catch { /* next */ }
  }
  throw new Error(`${what} was not found: ${fix}`);
}

/** The shared objects a binary loads (absolute paths, the loader included); none for a static one. */
async function sharedLibraries(binary: string): Promise<string[]> {
  const { stdout } = await promisify(execFile)('ldd', [binary]).catch((err: { stdout?: string; stderr?: string }) => {
    if (/not a dynamic executable|statically linked/.test(`${err.stdout ?? ''}${err.stderr ?? ''}`)) return { stdout: '' };
    throw err;
  });
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    const m = /=>\s*(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(0x/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

/** Copy `from` to rootfs at `inside` (its path in the image), following symlinks. */
async function place(rootfs: string, from: string, inside: string): Promise<void> {
  const to = path.join(rootfs, inside);
  await mkdir(path.dirname(to), { recursive: true });
  await copyFile(await realpath(from), to);
  await chmod(to, 0o755);
}

export async function ensureInfluxImage(docker: Dockerode): Promise<string> {
  try {
    await docker.getImage(INFLUX_IMAGE).inspect();
    return INFLUX_IMAGE;
  } catch { /* build it */ }
  const fix = 'install Debian\'s influxdb and influxdb-client (scripts/setup.sh does)';
  const influxd = await executable([process.env.INFLUXD_PATH, '/usr/bin/influxd'], 'influxd', fix);
  const influx = await executable([process.env.INFLUX_PATH, '/usr/bin/influx'], 'influx', fix);
  const busybox = await executable([process.env.BUSYBOX_PATH, '/bin/busybox', '/usr/bin/busybox'], 'busybox', 'install Debian\'s busybox-static (scripts/setup.sh does)');

  const context = await mkdtemp(path.join(os.tmpdir(), 'migrate-influx-image-'));
  try {
    const rootfs = path.join(context, 'rootfs');
    await place(rootfs, influxd, '/usr/bin/influxd');
    await place(rootfs, influx, '/usr/bin/influx');
    await place(rootfs, busybox, '/bin/busybox');
    const libs = new Set([...(await sharedLibraries(influxd)), ...(await sharedLibraries(influx))]);
    for (const lib of libs) await place(rootfs, lib, lib);
    await mkdir(path.join(rootfs, 'etc/influxdb'), { recursive: true });
    await writeFile(path.join(rootfs, 'etc/influxdb/influxdb.conf'), CONFIG);
    await writeFile(path.join(context, 'Dockerfile'), DOCKERFILE);
    await buildImage(docker, context, INFLUX_IMAGE);
  } finally {
    await rm(context, { recursive: true, force: true });
  }
  return INFLUX_IMAGE;
}
