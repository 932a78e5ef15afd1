/**
 * `migrate dev` (one engine) with a health plane in the inventory: it starts each host's health
 * publisher and the aggregator, as `migrate worker` and `migrate health --watch --failover` would.
 * Both hosts on one address (the default 127.0.0.1 case; here 127.0.21.5): each worker gets its own
 * peer port, so neither listener clashes with the other's. Asserts on the world: the binary's
 * process, the peer ports, the aggregate on NATS, `migrate health --json`.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { connect, StringCodec } from 'nats';
import { stringify } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MIGRATE_BIN } from '../../src/dev/isolated-environment.js';
import { onPath } from '../../src/dev/linux.js';
import { startNatsServer, type NatsServer } from '../../src/dev/nats-server.js';
import type { Aggregate } from '../../src/health/judge.js';
import { eventually } from '../helpers/eventually.js';

const exec = promisify(execFile);
const ADDRESS = '127.0.21.5';
const NATS_PORT = 28423;
const PEER_PORT = 28510;
const project = `hldev${process.pid}`;
const unsupported = (await onPath('nats-server')) ? undefined : '`nats-server` is missing: install Debian\'s nats-server (scripts/setup.sh does)';

const accepts = (port: number) => new Promise<boolean>((resolve) => {
  const s = net.connect({ host: ADDRESS, port });
  s.setTimeout(1_000, () => { s.destroy(); resolve(false); });
  s.once('connect', () => { s.destroy(); resolve(true); });
  s.once('error', () => resolve(false));
});

describe.skipIf(unsupported)(`migrate dev with a health plane${unsupported ? ` (skipped: ${unsupported})` : ''}`, () => {
  let dir: string;
  let nats: NatsServer | undefined;
  let dev: ChildProcess | undefined;
  let out = '';
  let inventoryFile: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'hldev-'));
    nats = await startNatsServer({ address: ADDRESS, port: NATS_PORT, storeDir: path.join(dir, 'nats') });
    inventoryFile = path.join(dir, 'inventory.yaml');
    await writeFile(inventoryFile, stringify({
      version: 1,
      project,
      hosts: { mainpc: { address: ADDRESS, gpu_runtime: 'none' }, pc2: { address: ADDRESS, gpu_runtime: 'none' } },
      health: { nats: [`nats://${ADDRESS}:${NATS_PORT}`], subjects: `${project}.health`, heartbeat: '250ms', lost_after: '1s', peer_port: PEER_PORT },
    }));
    dev = spawn(process.execPath, [MIGRATE_BIN, 'dev', '-i', inventoryFile, '--data-dir', path.join(dir, 'data'), '--port', '28600', '--ui-port', '28601'], { stdio: ['ignore', 'pipe', 'pipe'] });
    dev.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
    dev.stderr!.on('data', (d: Buffer) => { out += d.toString(); });
  }, 60_000);

  afterAll(async () => {
    if (dev && dev.exitCode === null) {
      const exited = new Promise((r) => dev!.once('exit', r));
      dev.kill('SIGINT');
      await Promise.race([exited, new Promise((r) => setTimeout(r, 20_000))]);
      if (dev.exitCode === null) dev.kill('SIGKILL');
    }
    await nats?.stop();
    await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('starts both hosts\' publishers, each on its own peer port, and the aggregator; `migrate health` sees both hosts up', async () => {
    await eventually('the health plane up', async () => {
      if (dev!.exitCode !== null) throw new Error(`migrate dev exited (${dev!.exitCode}): ${out}`);
      return out.includes('health plane up: 2 publishers, the aggregator judging') ? true : undefined;
    }, 90_000, 250).catch((err: Error) => { throw new Error(`${err.message}\n${out}`); });
    // One address, two workers: two listeners, neither refused.
    expect([await accepts(PEER_PORT), await accepts(PEER_PORT + 1)]).toEqual([true, true]);

    // The aggregator publishes health.aggregate: both hosts up.
    const nc = await connect({ servers: `nats://${ADDRESS}:${NATS_PORT}` });
    try {
      let latest: Aggregate | undefined;
      nc.subscribe(`${project}.health.aggregate`, { callback: (err, m) => { if (!err) latest = JSON.parse(StringCodec().decode(m.data)) as Aggregate; } });
      const view = await eventually('an aggregate with both hosts up', async () => (latest?.hosts.every((h) => h.state === 'up') ? latest : undefined), 30_000);
      expect(view.hosts.map((h) => [h.host, h.state])).toEqual([['mainpc', 'up'], ['pc2', 'up']]);
    } finally {
      await nc.close();
    }
    const { stdout } = await exec(process.execPath, [MIGRATE_BIN, 'health', '--json', '-i', inventoryFile]);
    expect((JSON.parse(stdout) as Aggregate).hosts.map((h) => [h.host, h.state])).toEqual([['mainpc', 'up'], ['pc2', 'up']]);

    // Ctrl-C stops it all: the peer ports close.
    const exited = new Promise<number | null>((r) => dev!.once('exit', (code) => r(code)));
    dev!.kill('SIGINT');
    expect(await exited).toBe(0);
    expect([await accepts(PEER_PORT), await accepts(PEER_PORT + 1)]).toEqual([false, false]);
  }, 150_000);
});
