/**
 * Running a client tool (pg_dump, pg_restore, psql, redis-cli, influx) with an argv array, never a
 * shell: on the worker host, or inside a container through the Docker API (`docker exec`). Its
 * stdin can come from a file and its stdout go to a file, streamed; cancellation kills it.
 */
import { spawn } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { createHash } from 'node:crypto';
import { PassThrough, Transform, Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type Dockerode from 'dockerode';
import { cancellationSignal, heartbeat } from '@temporalio/activity';

export interface ToolOptions {
  env?: Record<string, string | undefined>;
  stdinFile?: string;
  stdoutFile?: string;
  signal?: AbortSignal;
}

export interface ToolResult {
  code: number;
  /** Captured stdout (when not written to a file), at most 4 MiB. */
  stdout: string;
  stderr: string;
  /** With stdoutFile: the file's sha256 and size, computed while it was written (no second read). */
  sha256?: string;
  bytes?: number;
}

const CAPTURE_LIMIT = 4 << 20;

function capture(): { sink: Writable; text(): string } {
  const chunks: Buffer[] = [];
  let size = 0;
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      if (size < CAPTURE_LIMIT) chunks.push(chunk);
      size += chunk.length;
      done();
    },
  });
  return { sink, text: () => Buffer.concat(chunks).toString('utf8') };
}

/** Run argv on this host (container undefined) or in the named container. */
export async function runTool(docker: Dockerode, container: string | undefined, argv: string[], opts: ToolOptions = {}): Promise<ToolResult> {
  const env = Object.fromEntries(Object.entries(opts.env ?? {}).filter((e): e is [string, string] => e[1] !== undefined));
  const out = opts.stdoutFile ? undefined : capture();
  const err = capture();
  const hash = createHash('sha256');
  let bytes = 0;
  const hashing = () => new Transform({
    transform(chunk: Buffer, _enc, done) {
      hash.update(chunk);
      bytes += chunk.length;
      done(null, chunk);
    },
  });
  const toFile = (from: NodeJS.ReadableStream) => pipeline(from, hashing(), createWriteStream(opts.stdoutFile!, { highWaterMark: 1 << 20 }));
  const digest = () => (opts.stdoutFile ? { sha256: hash.digest('hex'), bytes } : {});

  if (!container) {
    const child = spawn(argv[0]!, argv.slice(1), { env: { ...process.env, ...env }, stdio: [opts.stdinFile ? 'pipe' : 'ignore', 'pipe', 'pipe'], signal: opts.signal });
    const exited = new Promise<number>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
    });
    const flows = [opts.stdoutFile ? toFile(child.stdout!) : pipeline(child.stdout!, out!.sink), pipeline(child.stderr!, err.sink)];
    if (opts.stdinFile) flows.push(pipeline(createReadStream(opts.stdinFile), child.stdin!).catch(() => undefined));
    const [code] = await Promise.all([exited, ...flows]);
    return { code: code as number, stdout: out?.text() ?? '', stderr: err.text(), ...digest() };
  }

  const exec = await docker.getContainer(container).exec({
    Cmd: argv,
    Env: Object.entries(env).map(([k, v]) => `${k}=${v}`),
    AttachStdin: Boolean(opts.stdinFile),
    AttachStdout: true,
    AttachStderr: true,
  });
  const stream = await exec.start({ hijack: true, stdin: Boolean(opts.stdinFile) });
  const onAbort = () => stream.destroy(new Error('cancelled'));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort(); // aborted before the listener was there: no event comes
  try {
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    docker.modem.demuxStream(stream, stdout, stderr);
    const ended = new Promise<void>((resolve, reject) => {
      stream.once('end', resolve);
      stream.once('close', resolve);
      stream.once('error', reject);
    }).then(() => { stdout.end(); stderr.end(); });
    if (opts.stdinFile) {
      const input = createReadStream(opts.stdinFile);
      input.pipe(stream, { end: true });
    }
    await Promise.all([ended, opts.stdoutFile ? toFile(stdout) : pipeline(stdout, out!.sink), pipeline(stderr, err.sink)]);
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
  }
  const info = await exec.inspect();
  return { code: info.ExitCode ?? 1, stdout: out?.text() ?? '', stderr: err.text(), ...digest() };
}

/**
 * A tool kept running inside a container with its stdin open, for a conversation: psql holding
 * open the transaction whose snapshot pg_dump reads. `ask` writes input and resolves with the
 * stdout lines printed before a line equal to `marker` (the input should end by printing it);
 * if the tool exits first, it rejects with the tool's stderr.
 */
export interface ToolSession {
  ask(input: string, marker: string): Promise<string[]>;
  /** End stdin (after `input`, if given) and wait for the tool to exit. */
  close(input?: string): Promise<ToolResult>;
}

export async function openToolSession(docker: Dockerode, container: string, argv: string[], opts: Pick<ToolOptions, 'env' | 'signal'> = {}): Promise<ToolSession> {
  const env = Object.entries(opts.env ?? {}).filter((e): e is [string, string] => e[1] !== undefined).map(([k, v]) => `${k}=${v}`);
  const exec = await docker.getContainer(container).exec({ Cmd: argv, Env: env, AttachStdin: true, AttachStdout: true, AttachStderr: true });
  const stream = await exec.start({ hijack: true, stdin: true });
  const onAbort = () => stream.destroy(new Error('cancelled'));
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  if (opts.signal?.aborted) onAbort(); // aborted before the listener was there: no event comes
  const stdout = new PassThrough();
  const err = capture();
  docker.modem.demuxStream(stream, stdout, err.sink);
  let text = '';
  let waiter: { marker: string; resolve(lines: string[]): void; reject(e: Error): void } | undefined;
  let ended: Error | undefined;
  const settle = () => {
    if (!waiter) return;
    const at = `\n${text}`.indexOf(`\n${waiter.marker}\n`);
    if (at >= 0) {
      const lines = text.slice(0, at).split('\n').filter((l) => l !== '');
      text = text.slice(at + waiter.marker.length + 1);
      const { resolve } = waiter;
      waiter = undefined;
      resolve(lines);
    } else if (ended) {
      const { reject } = waiter;
      waiter = undefined;
      reject(ended);
    }
  };
  stdout.setEncoding('utf8');
  stdout.on('data', (chunk: string) => {
    text += chunk;
    settle();
  });
  const done = new Promise<void>((resolve) => {
    let why = '';
    let closing = false;
    const finish = () => {
      if (!closing) stdout.end();
      closing = true;
    };
    stream.once('end', finish);
    stream.once('close', finish);
    stream.once('error', (e: Error) => {
      why = ` (${e.message})`;
      finish();
    });
    stdout.once('end', () => {
      err.sink.end();
      ended = new Error(`${argv[0]} in ${container} ended${why}: ${err.text().trim() || 'no error output'}`);
      settle();
      resolve();
    });
  });
  return {
    ask(input, marker) {
      if (waiter) return Promise.reject(new Error(`${argv[0]} in ${container}: one question at a time`));
      return new Promise<string[]>((resolve, reject) => {
        waiter = { marker, resolve, reject };
        if (ended) settle();
        else stream.write(input);
      });
    },
    async close(input) {
      if (!ended) stream.end(input);
      await done;
      opts.signal?.removeEventListener('abort', onAbort);
      const info = await exec.inspect();
      return { code: info.ExitCode ?? 1, stdout: text, stderr: err.text() };
    },
  };
}

/** Heartbeat every few seconds while `work` runs (long dumps, restores). */
export async function withHeartbeat<T>(beat: () => void, work: Promise<T>, everyMs = 5000): Promise<T> {
  const timer = setInterval(beat, everyMs);
  try {
    return await work;
  } finally {
    clearInterval(timer);
  }
}

/** The running activity's cancellation signal; undefined outside an activity (the bench calls activities directly). */
export function activitySignal(): AbortSignal | undefined {
  try {
    return cancellationSignal();
  } catch {
    return undefined;
  }
}

/** Heartbeat the running activity; nothing outside one. */
export function activityBeat(details?: unknown): void {
  try {
    heartbeat(details);
  } catch { /* outside an activity */ }
}
