/**
 * Redis: snapshot (BGSAVE, wait until INFO persistence shows it finished), copy the RDB file,
 * verify it (sha256, "REDIS" + version header, redis-check-rdb when installed), restore it.
 *
 * Over tcp the server's own dump.rdb is on its disk, not ours: the copy is fetched with
 * `redis-cli --rdb FILE`, which asks the server for a fresh point-in-time RDB (as a replica
 * would). Via docker-exec, dump.rdb is copied out of the container (docker cp). BGSAVE snapshots
 * the whole instance, every database.
 */
import { execFile } from 'node:child_process';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import type Dockerode from 'dockerode';
import { ApplicationFailure } from '@temporalio/common';
import { cancellationSignal, heartbeat, log, sleep } from '@temporalio/activity';
import type { BackupComponent } from '../plan/backups.js';
import type { HostContext } from './context.js';
import { backupFolder, checkFile, sha256File, storeFile, type ComponentEntry, type ComponentVerification } from './backup-store.js';
import { runTool } from './exec.js';
import { readSecret } from './secrets.js';
import { firstFileOfTar, oneFileTar } from './tar.js';

export interface RedisRequest {
  directory?: string;
  backupId: string;
  component: BackupComponent;
}

export function parseInfo(text: string): Record<string, string> {
  return Object.fromEntries(text.split(/\r?\n/).filter((l) => l.includes(':') && !l.startsWith('#')).map((l) => [l.slice(0, l.indexOf(':')), l.slice(l.indexOf(':') + 1).trim()]));
}

/** "REDIS0011…": the magic and a 4-digit version, else why not. */
export function rdbHeaderProblem(head: Buffer): string | undefined {
  const text = head.subarray(0, 9).toString('latin1');
  return /^REDIS\d{4}$/.test(text) ? undefined : `does not start with an RDB header ("REDIS" + 4-digit version), found ${JSON.stringify(text)}`;
}

/**
 * Why a container stopped, from the end of its log: the lines that say error or abort (Redis
 * prints a long RDB check after the cause), else the last lines; on one line.
 */
/** A file's content from inside a container (docker cp), or undefined when it is not there. */
async function readFromContainer(container: Dockerode.Container, file: string): Promise<Buffer | undefined> {
  let archive: NodeJS.ReadableStream;
  try {
    archive = await container.getArchive({ path: file });
  } catch (err) {
    if ((err as { statusCode?: number }).statusCode === 404) return undefined;
    throw err;
  }
  const chunks: Buffer[] = [];
  for await (const chunk of archive as AsyncIterable<Buffer>) chunks.push(chunk);
  return firstFileOfTar(Buffer.concat(chunks))?.data;
}

async function logTail(container: Dockerode.Container): Promise<string> {
  const raw = await container.logs({ stdout: true, stderr: true, tail: 40, follow: false }).catch(() => Buffer.alloc(0));
  let buf = Buffer.isBuffer(raw) ? raw : Buffer.from(String(raw));
  if (buf.length > 0 && buf[0]! <= 2) { // multiplexed (no tty): 8-byte frame headers
    const frames: Buffer[] = [];
    for (let at = 0; at + 8 <= buf.length; at += 8 + buf.readUInt32BE(at + 4)) frames.push(buf.subarray(at + 8, at + 8 + buf.readUInt32BE(at + 4)));
    buf = Buffer.concat(frames);
  }
  const lines = buf.toString('utf8').split('\n').map((l) => l.replace(/^\d+:[A-Z] \d+ \w+ \d+ [\d:.]+ [#*.-] /, '').trim()).filter(Boolean);
  const causes = lines.filter((l) => /error|abort|fatal|unexpected|short read|can't|cannot|failed/i.test(l));
  return (causes.length ? causes.slice(0, 3) : lines.slice(-3)).join(' / ') || '(nothing)';
}

export function createRedisActivities(ctx: HostContext) {
  /** A Redis command: over tcp with ioredis, or redis-cli inside the container. */
  async function command(c: BackupComponent, args: string[]): Promise<string> {
    const password = await readSecret(c.password, `backups ${c.name}.password`);
    if (c.via === 'tcp') {
      const redis = new Redis({ host: c.address, port: c.port, password, lazyConnect: true, maxRetriesPerRequest: 1, enableOfflineQueue: false });
      try {
        await redis.connect();
        return String(await redis.call(args[0]!, ...args.slice(1)));
      } finally {
        redis.disconnect();
      }
    }
    const res = await runTool(ctx.docker, c.container, ['redis-cli', ...args], { env: { REDISCLI_AUTH: password } });
    // redis-cli exits 0 on an error reply and prints it as is: an upper-case code and a message
    // (ERR, NOAUTH, NOPERM, LOADING, MISCONF…). No good reply to INFO, BGSAVE or PING looks like that.
    if (res.code !== 0 || /^[A-Z][A-Z_]+ /.test(res.stdout)) throw new Error(`redis-cli ${args[0]} in ${c.container}: ${(res.stdout + res.stderr).trim()}`);
    return res.stdout;
  }

  return {
    async snapshotRedis(req: RedisRequest): Promise<ComponentEntry> {
      const c = req.component;
      const folder = backupFolder(ctx, req.directory, req.backupId);
      await mkdir(folder, { recursive: true });
      const fileName = `${c.name}.rdb`;
      const file = storeFile(folder, fileName);
      const partial = `${file}.partial`;
      const t0 = Date.now();
      const before = parseInfo(await command(c, ['INFO', 'persistence']));
      log.info('redis BGSAVE', { backupId: req.backupId, component: c.name, lastSave: before.rdb_last_save_time });
      let reply: string;
      try {
        reply = await command(c, ['BGSAVE']);
      } catch (err) {
        if (!/in progress/i.test((err as Error).message)) throw ApplicationFailure.retryable(`Redis ${c.name}: BGSAVE refused: ${(err as Error).message}`, 'SnapshotFailed');
        reply = 'already in progress'; // one already running counts too
      }
      if (!/^Background saving (started|scheduled)|^already in progress/.test(reply.trim())) {
        throw ApplicationFailure.retryable(`Redis ${c.name}: BGSAVE did not start a save: ${JSON.stringify(reply.trim())}`, 'SnapshotFailed');
      }
      for (;;) {
        await sleep(200);
        heartbeat();
        const now = parseInfo(await command(c, ['INFO', 'persistence']));
        if (now.rdb_bgsave_in_progress === undefined) throw ApplicationFailure.retryable(`Redis ${c.name}: INFO persistence does not say whether a save runs`, 'SnapshotFailed');
        if (now.rdb_bgsave_in_progress !== '0') continue;
        // Redis 7 counts saves (rdb_saves); before that, rdb_last_save_time has one-second
        // resolution: a save in the same second as the last one still counts once finished.
        const finished = now.rdb_saves !== undefined && before.rdb_saves !== undefined
          ? Number(now.rdb_saves) > Number(before.rdb_saves)
          : Number(now.rdb_last_save_time) > Number(before.rdb_last_save_time) || Date.now() - t0 > 2500;
        if (!finished) continue;
        if (now.rdb_last_bgsave_status !== 'ok') throw ApplicationFailure.retryable(`Redis ${c.name}: BGSAVE finished with status ${now.rdb_last_bgsave_status}`, 'SnapshotFailed');
        break;
      }
      if (c.via === 'tcp') {
        const password = await readSecret(c.password, `backups ${c.name}.password`);
        const res = await runTool(ctx.docker, undefined, ['redis-cli', '-h', c.address, '-p', String(c.port), '--rdb', partial], { env: { REDISCLI_AUTH: password }, signal: cancellationSignal() });
        if (res.code !== 0) throw ApplicationFailure.retryable(`redis-cli --rdb from ${c.name} failed: ${(res.stdout + res.stderr).trim()}`, 'SnapshotFailed');
      } else {
        const data = await readFromContainer(ctx.docker.getContainer(c.container!), path.posix.join(c.dataDir ?? '/data', 'dump.rdb'));
        if (!data) throw ApplicationFailure.retryable(`no dump.rdb in ${c.container}:${c.dataDir}`, 'SnapshotFailed');
        await writeFile(partial, data);
      }
      await rename(partial, file);
      const { sha256, bytes } = await sha256File(file);
      log.info('redis snapshot copied', { backupId: req.backupId, component: c.name, bytes });
      return { name: c.name, kind: 'redis', host: ctx.host, file: fileName, bytes, sha256, dumpMs: Date.now() - t0 };
    },

    /**
     * Freeze writes (failback): `CLIENT PAUSE holdMs WRITE` (Redis 6.2 and later). Clients' write
     * commands wait, unanswered, until the pause ends (renew it by calling again before then) or the
     * server stops (their connection closes: never acknowledged); reads, INFO and BGSAVE go on. A
     * pause nobody renews lifts itself after holdMs.
     */
    async freezeRedis(c: BackupComponent, holdMs: number): Promise<void> {
      try {
        await command(c, ['CLIENT', 'PAUSE', String(Math.max(1, Math.round(holdMs))), 'WRITE']);
      } catch (err) {
        throw ApplicationFailure.nonRetryable(`Redis ${c.name}: CLIENT PAUSE ${holdMs} WRITE refused (it needs Redis 6.2 or later): ${(err as Error).message}`, 'FreezeFailed');
      }
      log.info('redis writes paused', { component: c.name, container: c.container, holdMs });
    },

    /** Lift the freeze: CLIENT UNPAUSE. Idempotent (a server restarted since has no pause). */
    async thawRedis(c: BackupComponent): Promise<void> {
      await command(c, ['CLIENT', 'UNPAUSE']);
      log.info('redis writes unpaused', { component: c.name, container: c.container });
    },

    async verifyRedis(req: RedisRequest & { entry: ComponentEntry }): Promise<ComponentVerification> {
      const t0 = Date.now();
      const folder = backupFolder(ctx, req.directory, req.backupId);
      const fail = (detail: string): ComponentVerification => ({ name: req.component.name, ok: false, detail, ms: Date.now() - t0 });
      const fileProblem = await checkFile(folder, req.entry);
      if (fileProblem) return fail(fileProblem);
      const file = storeFile(folder, req.entry.file);
      const fh = await open(file, 'r');
      const head = Buffer.alloc(9);
      await fh.read(head, 0, 9, 0).finally(() => fh.close());
      const headProblem = rdbHeaderProblem(head);
      if (headProblem) return fail(`${req.entry.file} ${headProblem}`);
      try {
        const { stdout } = await promisify(execFile)('redis-check-rdb', [file], { timeout: 120_000 });
        return { name: req.component.name, ok: true, detail: `RDB header ok; redis-check-rdb: ${/RDB looks OK/i.test(stdout) ? 'RDB looks OK' : stdout.trim().split('\n').pop()}`, ms: Date.now() - t0 };
      } catch (err) {
        const e = err as NodeJS.ErrnoException & { stdout?: string };
        if (e.code === 'ENOENT') return { name: req.component.name, ok: true, detail: 'RDB header ok (redis-check-rdb is not installed on this host: contents not checked)', ms: Date.now() - t0 };
        return fail(`redis-check-rdb rejects ${req.entry.file}: ${(e.stdout ?? e.message).trim().split('\n').filter((l) => /error|invalid|unexpected|wrong/i.test(l)).slice(0, 3).join(' / ') || e.message}`);
      }
    },

    /**
     * Put the RDB back: stop the container, replace dump.rdb, start it (Redis loads it at start).
     * Over tcp the server's files are not ours to replace: refused, with the manual steps.
     */
    async restoreRedis(req: RedisRequest & { entry: ComponentEntry }): Promise<ComponentVerification> {
      const c = req.component;
      const t0 = Date.now();
      const folder = backupFolder(ctx, req.directory, req.backupId);
      const fileProblem = await checkFile(folder, req.entry);
      if (fileProblem) throw ApplicationFailure.nonRetryable(`refusing to restore ${c.name}: ${fileProblem}`, 'BackupCorrupt');
      const file = storeFile(folder, req.entry.file);
      if (c.via === 'tcp') {
        return { name: c.name, ok: false, detail: `not restored: over tcp this worker cannot replace the server's files; stop Redis ${c.address}:${c.port}, copy ${file} to its dir as dump.rdb (appendonly off), start it`, ms: Date.now() - t0 };
      }
      const container = ctx.docker.getContainer(c.container!);
      const dataDir = c.dataDir ?? '/data';
      const stop = () => container.stop({ t: 10 }).catch((err: { statusCode?: number }) => { if (err.statusCode !== 304) throw err; });

      /** Put `content` in as dump.rdb and start Redis; wait until it answers with it loaded, or has stopped. */
      const putAndWait = async (content: Buffer): Promise<{ ok: true; detail: string } | { ok: false; why: string; aof?: true }> => {
        await stop();
        await container.putArchive(oneFileTar('dump.rdb', content), { path: dataDir });
        await container.start();
        let silentSince = Date.now();
        let lastError = '';
        for (;;) {
          const state = (await container.inspect()).State;
          if (!state.Running || state.Restarting) return { ok: false, why: `it exited with code ${state.ExitCode}; its log says: ${await logTail(container)}` };
          try {
            const info = parseInfo(await command(c, ['INFO', 'persistence']));
            if (info.loading === '0') {
              if (info.aof_enabled === '1') return { ok: false, aof: true, why: 'it has appendonly on, so it loaded its AOF and ignored dump.rdb: turn appendonly off for the restore, then on again' };
              const loaded = info.rdb_last_load_keys_loaded !== undefined ? `: ${info.rdb_last_load_keys_loaded} keys loaded (${info.rdb_last_load_keys_expired ?? 0} had expired)` : '';
              return { ok: true, detail: loaded };
            }
            silentSince = Date.now(); // loading: it answers, and a big file takes its time
          } catch (err) {
            lastError = (err as Error).message;
            if (Date.now() - silentSince > 60_000) return { ok: false, why: `it does not answer (${lastError}); its log says: ${await logTail(container)}` };
          }
          heartbeat();
          await sleep(250);
        }
      };

      // A safety copy of what Redis had, put back if the restored file does not load. One left by an
      // interrupted earlier attempt of this restore is the original: it is kept, not overwritten.
      const safety = storeFile(folder, `${req.entry.file}.before-restore`);
      let haveSafety = await stat(safety).then(() => true, () => false);
      if (!haveSafety) {
        await stop(); // Redis writes its last snapshot as it stops: the copy is what it held
        const current = await readFromContainer(container, path.posix.join(dataDir, 'dump.rdb'));
        if (current) {
          await writeFile(`${safety}.partial`, current);
          await rename(`${safety}.partial`, safety);
          haveSafety = true;
        }
      }
      await rm(`${file}.partial`, { force: true });
      const failed = (why: string): ComponentVerification => ({ name: c.name, ok: false, detail: `Redis in ${c.container} did not come back after dump.rdb was replaced: ${why}`, ms: Date.now() - t0 });

      const restored = await putAndWait(await readFile(file));
      if (restored.ok) {
        await rm(safety, { force: true });
        return { name: c.name, ok: true, detail: `dump.rdb replaced in ${c.container}:${dataDir} and Redis restarted${restored.detail}`, ms: Date.now() - t0 };
      }
      if (restored.aof) {
        // It runs, on its own AOF, with the data it had: only the file it ignored is put back.
        if (haveSafety) await container.putArchive(oneFileTar('dump.rdb', await readFile(safety)), { path: dataDir });
        await rm(safety, { force: true });
        return failed(`${restored.why}; it runs on with the data its AOF holds, unchanged`);
      }
      if (!haveSafety) return failed(`${restored.why}; it had no dump.rdb before, so there is nothing to put back`);
      const back = await putAndWait(await readFile(safety));
      if (back.ok) {
        await rm(safety, { force: true });
        return failed(`${restored.why}; the dump.rdb it had before was put back and Redis runs with it again${back.detail}`);
      }
      return failed(`${restored.why}; putting back the dump.rdb it had before failed too (${back.why}): that file is kept at ${safety} on ${ctx.host}`);
    },
  };
}
