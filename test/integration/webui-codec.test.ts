/**
 * Encrypted payloads, seen in the Web UI: a dev server of its own started with
 * `--ui-codec-endpoint` pointing at a `migrate codec-server` process (CORS for the UI's origin), a
 * workflow started by a client and run by a worker that both encrypt (AES-256-GCM), then Debian's
 * headless Chromium, driven through the DevTools protocol, opens the workflow's page: with the codec
 * server up the browser has it decode the input and result, and a person reads them; with the codec
 * server gone the same page shows only the stored ciphertext (and the UI says it could not connect).
 * Screenshots: .tmp/webui-codec-decoded.png and .tmp/webui-codec-ciphertext.png.
 */
import { randomBytes } from 'node:crypto';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { codecDataConverter } from '../../src/codec/data-converter.js';
import { parseCodecKeys } from '../../src/codec/keys.js';
import { quietRuntime } from '../../src/dev/environment.js';
import { startDevServer, type DevServer } from '../../src/dev/temporal-server.js';
import { launchChromium, type Browser } from '../helpers/chromium.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const KEYS = `k1:${randomBytes(32).toString('base64')}`;
const keys = parseCodecKeys(KEYS);
const UI = { ip: '127.0.14.20', port: 44020 };
const CODEC = { ip: '127.0.14.21', port: 44021 };
const queue = `ui-codec-${process.pid}`;
const workflowId = `ui-codec-${process.pid}`;
// An inventory value, as a deploy's input would carry it.
const marker = `POSTGRES_DB=agent_lightning_${process.pid}`;
const COULD_NOT_CONNECT = 'Codec Server could not connect';

let server: DevServer | undefined;
let codec: ChildProcess | undefined;
let connection: NativeConnection | undefined;
let clientConnection: Connection | undefined;
let worker: Worker | undefined;
let running: Promise<void> | undefined;
let browser: Browser | undefined;
let pageUrl: string;
let storedInput: string;

/** `migrate codec-server`, as an operator runs it next to the Web UI; resolves once it answers. */
async function startCodecServer(uiOrigin: string): Promise<ChildProcess> {
  const child = spawn(process.execPath, ['bin/migrate.mjs', 'codec-server', '--host', CODEC.ip, '--port', String(CODEC.port), '--cors-origin', uiOrigin], {
    env: { ...process.env, MIGRATE_CODEC_KEYS: KEYS, MIGRATE_CODEC_KEYS_FILE: '' }, stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-4000); });
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`migrate codec-server exited ${child.exitCode}: ${stderr}`);
    const answer = await fetch(`http://${CODEC.ip}:${CODEC.port}/decode`, { method: 'OPTIONS' }).catch(() => undefined);
    if (answer?.status === 204) return child;
    if (Date.now() > deadline) throw new Error(`migrate codec-server did not answer within 60 s: ${stderr}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function stopCodecServer(): Promise<void> {
  if (!codec || codec.exitCode !== null || codec.signalCode !== null) return;
  const exited = new Promise((r) => codec!.once('exit', r));
  codec.kill('SIGTERM');
  const timer = setTimeout(() => codec!.kill('SIGKILL'), 10_000);
  await exited;
  clearTimeout(timer);
}

beforeAll(async () => {
  expect(spawnSync('chromium', ['--version']).status, 'Debian\'s chromium package is missing: run scripts/setup.sh').toBe(0);
  quietRuntime();
  server = await startDevServer({ uiIp: UI.ip, uiPort: UI.port, uiCodecEndpoint: `http://${CODEC.ip}:${CODEC.port}` });
  codec = await startCodecServer(server.uiUrl!);

  connection = await NativeConnection.connect({ address: server.address });
  worker = await Worker.create({ connection, taskQueue: queue, workflowsPath: path.resolve(here, '../fixtures/workflows/codec-probe.ts'), dataConverter: codecDataConverter(keys) });
  running = worker.run();
  clientConnection = await Connection.connect({ address: server.address });
  const client = new Client({ connection: clientConnection, dataConverter: codecDataConverter(keys) });
  expect(await client.workflow.execute('codecProbe', { taskQueue: queue, workflowId, args: [{ marker, fail: false }] })).toEqual({ echoed: marker });

  // What the server stores (read without the keys): ciphertext only.
  const history = await new Client({ connection: clientConnection }).workflow.getHandle(workflowId).fetchHistory();
  expect(Buffer.from(temporal.api.history.v1.History.encode(history).finish()).includes(marker)).toBe(false);
  storedInput = Buffer.from(history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!.data!).toString('base64');

  pageUrl = `${server.uiUrl}/namespaces/default/workflows/${workflowId}`;
  browser = await launchChromium({ width: 1400, height: 1000 });
  await mkdir(path.resolve('.tmp'), { recursive: true });
});

afterAll(async () => {
  await browser?.close();
  await stopCodecServer();
  worker?.shutdown();
  await running;
  await connection?.close();
  await clientConnection?.close();
  await server?.stop();
});

describe('the Web UI with a codec server (real dev server with UI, real codec server, headless Chromium)', () => {
  it('with the codec server up, the workflow page shows the decoded input and result', async () => {
    const page = await browser!.open(pageUrl);
    // A page that lost a race with the loaded machine (the UI's error page, or its call to the codec
    // server failing) is read again after a reload; what is asserted is the page that decodes.
    const text = await page.waitForText((t) => t.includes(`"echoed": "${marker}"`), 'the decoded result', { reloadIf: (t) => t.includes('Uh oh') || t.includes(COULD_NOT_CONNECT) });
    expect(text).toContain(`"marker": "${marker}"`);
    expect(text).toContain('"fail": false');
    expect(text).not.toContain(storedInput);
    expect(text).not.toContain(COULD_NOT_CONNECT);
    await page.screenshot(path.resolve('.tmp/webui-codec-decoded.png'));
    await page.close();
  });

  it('without the codec server, the same page shows only ciphertext', async () => {
    await stopCodecServer();
    const page = await browser!.open(pageUrl); // a fresh browser context: nothing decoded is cached
    // The UI shows the payloads as stored until its call to the codec server fails, then says so.
    const text = await page.waitForText((t) => t.includes(storedInput) && t.includes(COULD_NOT_CONNECT), 'the stored ciphertext of the input and the codec server\'s absence');
    expect(text).not.toContain(marker);
    expect(text).not.toContain('agent_lightning');
    await page.screenshot(path.resolve('.tmp/webui-codec-ciphertext.png'));
    await page.close();
  });
});
