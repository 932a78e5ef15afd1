/**
 * A NATS server with JetStream for the health plane in dev and tests: Debian's `nats-server`
 * (scripts/setup.sh installs it), listening on one address (the isolated hosts' bridge, or
 * loopback), its JetStream store in a folder of its own. `stop()` ends it and removes nothing else.
 */
import { spawn } from 'node:child_process';
import { openSync, closeSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';

export interface NatsServer {
  url: string;
  pid: number;
  stop(): Promise<void>;
}

const answers = (address: string, port: number) => new Promise<boolean>((resolve) => {
  const s = net.connect({ host: address, port });
  s.setTimeout(500, () => { s.destroy(); resolve(false); });
  s.once('connect', () => { s.destroy(); resolve(true); });
  s.once('error', () => resolve(false));
});

export async function startNatsServer(options: { address: string; port: number; storeDir: string; timeoutMs?: number }): Promise<NatsServer> {
  await mkdir(options.storeDir, { recursive: true });
  const logFile = path.join(options.storeDir, 'nats-server.log');
  const fd = openSync(logFile, 'a');
  const child = (() => {
    try {
      return spawn('nats-server', ['-js', '-a', options.address, '-p', String(options.port), '-sd', options.storeDir, '--server_name', `migrate-${options.port}`], { stdio: ['ignore', fd, fd] });
    } finally {
      closeSync(fd);
    }
  })();
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.once('error', () => undefined);
  const deadline = Date.now() + (options.timeoutMs ?? 15_000);
  while (!(await answers(options.address, options.port))) {
    if (child.exitCode !== null || Date.now() > deadline) {
      child.kill('SIGKILL');
      const tail = (await readFile(logFile, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n');
      throw new Error(`nats-server on ${options.address}:${options.port} ${child.exitCode !== null ? 'exited' : 'did not answer'} (is Debian's nats-server installed? scripts/setup.sh installs it); its log:\n${tail}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url: `nats://${options.address}:${options.port}`,
    pid: child.pid!,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(t);
    },
  };
}
