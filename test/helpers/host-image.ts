/**
 * Images for tests, built FROM scratch out of programs installed on this machine (no registry can
 * be reached): each binary with the shared libraries `ldd` lists for it and the dynamic loader, at
 * the paths they have here, plus extra files and folders, plus busybox-static for a shell.
 *
 * An image is built once: it carries a label with a hash of its spec (paths, sizes and mtimes of
 * the host files, the Dockerfile lines, the written files), and is rebuilt only when that changes.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { chmod, copyFile, cp, mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import type Dockerode from 'dockerode';
import { buildImage } from '../../src/activities/docker.js';
import { findBusybox } from '../../src/dev/stub-image.js';

const SPEC_LABEL = 'io.agent-migrate.test-image-spec';

export interface HostImageSpec {
  tag: string;
  /** Executables on this host, copied (symlinks followed) to the same path, with their libraries. */
  binaries: string[];
  /** Shared objects loaded with dlopen (no ldd entry for them): copied with their own libraries. */
  libraries?: string[];
  /** Files or folders copied as they are, to the same path. */
  paths?: string[];
  /** Files written into the image: path → content (and mode, default 0644). */
  write?: Record<string, string | { content: string; mode: number }>;
  /** Dockerfile lines after the root filesystem and busybox are in place (RUN, USER, ENTRYPOINT…). */
  dockerfile: string[];
}

const run = promisify(execFile);

/** The libraries (and loader) a dynamic ELF needs, as absolute paths; none for a static one. */
export async function sharedLibraries(file: string): Promise<string[]> {
  let stdout: string;
  try {
    ({ stdout } = await run('ldd', [file]));
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    if (/not a dynamic executable|statically linked/.test(`${e.stdout ?? ''}${e.stderr ?? ''}`)) return [];
    throw err;
  }
  const libs: string[] = [];
  for (const line of stdout.split('\n')) {
    if (/=> not found/.test(line)) throw new Error(`${file} needs ${line.trim()}: install the package that provides it`);
    const m = /=>\s+(\/\S+)/.exec(line) ?? /^\s*(\/\S+)\s+\(/.exec(line);
    if (m) libs.push(m[1]!);
  }
  return libs;
}

async function fingerprint(spec: HostImageSpec, busybox: string): Promise<string> {
  const hash = createHash('sha256');
  const visit = async (p: string): Promise<void> => {
    const s = await stat(p).catch(() => {
      throw new Error(`${p} is not on this machine: install the package that provides it (scripts/setup.sh installs what the tests need)`);
    });
    hash.update(`${p}\0${s.size}\0${s.mtimeMs}\0`);
    if (s.isDirectory()) for (const name of (await readdir(p)).sort()) await visit(path.join(p, name));
  };
  for (const p of [busybox, ...spec.binaries, ...(spec.libraries ?? []), ...(spec.paths ?? [])]) await visit(p);
  hash.update(JSON.stringify([spec.write ?? {}, spec.dockerfile]));
  return hash.digest('hex').slice(0, 16);
}

/** Build `spec.tag` unless an image of that tag with the same spec is already there; returns the tag. */
export async function ensureHostImage(docker: Dockerode, spec: HostImageSpec): Promise<string> {
  const busybox = await findBusybox();
  const want = await fingerprint(spec, busybox);
  const have = await docker.getImage(spec.tag).inspect().then((i) => i.Config.Labels?.[SPEC_LABEL], () => undefined);
  if (have === want) return spec.tag;

  const context = await mkdtemp(path.join(os.tmpdir(), 'migrate-host-image-'));
  try {
    const root = path.join(context, 'rootfs');
    const put = async (from: string) => {
      const to = path.join(root, from);
      await mkdir(path.dirname(to), { recursive: true });
      await copyFile(from, to); // follows symlinks: the file's content under the name asked for
      await chmod(to, (await stat(from)).mode & 0o7777);
    };
    const libs = new Set<string>();
    for (const file of [...spec.binaries, ...(spec.libraries ?? [])]) {
      await put(file);
      for (const lib of await sharedLibraries(file)) libs.add(lib);
    }
    for (const lib of libs) await put(lib);
    for (const p of spec.paths ?? []) {
      await mkdir(path.dirname(path.join(root, p)), { recursive: true });
      await cp(p, path.join(root, p), { recursive: true, dereference: true });
    }
    for (const [p, entry] of Object.entries(spec.write ?? {})) {
      const { content, mode } = typeof entry === 'string' ? { content: entry, mode: 0o644 } : entry;
      await mkdir(path.dirname(path.join(root, p)), { recursive: true });
      await writeFile(path.join(root, p), content, { mode });
      await chmod(path.join(root, p), mode);
    }
    await copyFile(busybox, path.join(context, 'busybox'));
    await chmod(path.join(context, 'busybox'), 0o755);
    await writeFile(path.join(context, 'Dockerfile'), [
      'FROM scratch',
      'COPY busybox /bin/busybox',
      'RUN ["/bin/busybox", "--install", "-s", "/bin"]',
      'COPY rootfs/ /',
      `LABEL ${SPEC_LABEL}=${want}`,
      ...spec.dockerfile,
      '',
    ].join('\n'));
    await buildImage(docker, context, spec.tag);
    return spec.tag;
  } finally {
    await rm(context, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------
// The two database images of the docker-exec backup tests.

const PG_BIN = '/usr/lib/postgresql/15/bin';

export const TEST_POSTGRES_IMAGE = 'agent-migrate/test-postgres:15';
export const TEST_REDIS_IMAGE = 'agent-migrate/test-redis:7';

/**
 * PostgreSQL 15 from this machine's packages, as the `postgres` user. On an empty data folder the
 * entrypoint runs initdb: with POSTGRES_PASSWORD set, every connection (local socket and tcp)
 * needs that password (scram-sha-256); without it, trust. It listens on the local socket in
 * /var/run/postgresql, where the tools inside find it with no -h, and on tcp 5432.
 */
export function postgresImageSpec(): HostImageSpec {
  const entrypoint = `#!/bin/sh
set -eu
PGDATA=/var/lib/postgresql/data
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "\${POSTGRES_PASSWORD:-}" ]; then
    umask 077
    printf '%s\\n' "$POSTGRES_PASSWORD" > /tmp/pwfile
    initdb -D "$PGDATA" -U postgres --locale=C --encoding=UTF8 -A scram-sha-256 --pwfile=/tmp/pwfile
    rm -f /tmp/pwfile
    echo 'host all all all scram-sha-256' >> "$PGDATA/pg_hba.conf"
  else
    initdb -D "$PGDATA" -U postgres --locale=C --encoding=UTF8 -A trust
    echo 'host all all all trust' >> "$PGDATA/pg_hba.conf"
  fi
  printf '%s\\n' "listen_addresses = '*'" "unix_socket_directories = '/var/run/postgresql'" >> "$PGDATA/postgresql.conf"
fi
exec postgres -D "$PGDATA"
`;
  return {
    tag: TEST_POSTGRES_IMAGE,
    binaries: ['initdb', 'postgres', 'pg_ctl', 'pg_dump', 'pg_restore', 'psql'].map((b) => `${PG_BIN}/${b}`),
    // initdb creates plpgsql and the snowball text search dictionaries: the server dlopens them.
    libraries: ['/usr/lib/postgresql/15/lib/plpgsql.so', '/usr/lib/postgresql/15/lib/dict_snowball.so'],
    paths: ['/usr/share/postgresql/15', '/usr/share/zoneinfo/UTC', '/usr/share/zoneinfo/Etc/UTC'],
    write: {
      '/etc/passwd': 'root:x:0:0:root:/root:/bin/sh\npostgres:x:999:999:PostgreSQL:/var/lib/postgresql:/bin/sh\n',
      '/etc/group': 'root:x:0:\npostgres:x:999:\n',
      '/etc/nsswitch.conf': 'passwd: files\ngroup: files\n',
      '/usr/local/bin/entrypoint': { content: entrypoint, mode: 0o755 },
    },
    dockerfile: [
      'RUN ["/bin/sh", "-c", "mkdir -p /tmp /var/lib/postgresql /var/run/postgresql && chmod 1777 /tmp && chown postgres:postgres /var/lib/postgresql /var/run/postgresql && chmod 2775 /var/run/postgresql"]',
      `ENV PATH=${PG_BIN}:/usr/local/bin:/usr/bin:/bin TZ=UTC`,
      'USER postgres',
      'EXPOSE 5432',
      // Fast shutdown: roll back open transactions and stop, as the official image does.
      'STOPSIGNAL SIGINT',
      'ENTRYPOINT ["/usr/local/bin/entrypoint"]',
    ],
  };
}

/** Redis 7 from this machine's packages, as the `redis` user, writing dump.rdb to /data. */
export function redisImageSpec(): HostImageSpec {
  return {
    tag: TEST_REDIS_IMAGE,
    binaries: ['/usr/bin/redis-server', '/usr/bin/redis-cli'],
    write: {
      '/etc/passwd': 'root:x:0:0:root:/root:/bin/sh\nredis:x:999:999:Redis:/data:/bin/sh\n',
      '/etc/group': 'root:x:0:\nredis:x:999:\n',
      '/etc/nsswitch.conf': 'passwd: files\ngroup: files\n',
    },
    dockerfile: [
      // redis-check-rdb is redis-server under another name (it looks at argv[0]).
      'RUN ["/bin/sh", "-c", "ln -s redis-server /usr/bin/redis-check-rdb && mkdir -p /data && chown redis:redis /data"]',
      'USER redis',
      'WORKDIR /data',
      'EXPOSE 6379',
      'ENTRYPOINT ["/usr/bin/redis-server", "--dir", "/data", "--bind", "0.0.0.0", "--protected-mode", "no", "--appendonly", "no"]',
    ],
  };
}
