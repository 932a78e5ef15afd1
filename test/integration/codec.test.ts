/**
 * Encrypted payloads end to end on the run's dev server: a client made by the CLI's connectClient
 * with MIGRATE_CODEC_KEYS set, and a worker with the same keys. The history (its protobuf bytes,
 * as the server stores them) holds no plaintext input, result or failure message; the client reads
 * them back; `migrate codec-server`'s handler decodes the stored input for the Web UI (CORS too).
 */
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { WorkflowFailedError, type Client } from '@temporalio/client';
import { NativeConnection, Worker } from '@temporalio/worker';
import { temporal } from '@temporalio/proto';
import { connectClient } from '../../src/client/common.js';
import { codecDataConverter } from '../../src/codec/data-converter.js';
import { AesGcmCodec } from '../../src/codec/aes-gcm.js';
import { parseCodecKeys } from '../../src/codec/keys.js';
import { createCodecServer } from '../../src/codec/server.js';
import { quietRuntime } from '../../src/dev/environment.js';
import { createOrchestratorWorker } from '../../src/workers/workers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const KEYS = `k2:${randomBytes(32).toString('base64')},k1:${randomBytes(32).toString('base64')}`;
const queue = `codec-${process.pid}`;
const marker = `plaintext-marker-${process.pid}-POSTGRES_DB=agent_lightning`;
let client: Client;
let closeClient: () => Promise<void>;
let connection: NativeConnection;
let worker: Worker;
let running: Promise<void>;
const savedKeys = process.env.MIGRATE_CODEC_KEYS;

async function historyBytes(workflowId: string): Promise<Buffer> {
  const history = await client.workflow.getHandle(workflowId).fetchHistory();
  return Buffer.from(temporal.api.history.v1.History.encode(history).finish());
}

beforeAll(async () => {
  quietRuntime();
  process.env.MIGRATE_CODEC_KEYS = KEYS;
  ({ client, close: closeClient } = await connectClient({ address: inject('temporalAddress') }));
  connection = await NativeConnection.connect({ address: inject('temporalAddress') });
  worker = await Worker.create({
    connection,
    taskQueue: queue,
    workflowsPath: path.resolve(here, '../fixtures/workflows/codec-probe.ts'),
    dataConverter: codecDataConverter(parseCodecKeys(KEYS)),
  });
  running = worker.run();
});

afterAll(async () => {
  if (savedKeys === undefined) delete process.env.MIGRATE_CODEC_KEYS;
  else process.env.MIGRATE_CODEC_KEYS = savedKeys;
  worker?.shutdown();
  await running;
  await connection?.close();
  await closeClient?.();
});

describe('encrypted payloads', () => {
  it('input and result are ciphertext in the history; the client reads them back', async () => {
    const id = `codec-ok-${process.pid}`;
    const result = await client.workflow.execute('codecProbe', { taskQueue: queue, workflowId: id, args: [{ marker, fail: false }] });
    expect(result).toEqual({ echoed: marker });
    const bytes = await historyBytes(id);
    expect(bytes.includes(marker)).toBe(false);
    expect(bytes.includes('agent_lightning')).toBe(false);
    expect(bytes.includes('binary/encrypted')).toBe(true);
    expect(bytes.includes('json/plain')).toBe(false);
  });

  it('a failure message is encrypted too, and the client sees it decrypted', async () => {
    const id = `codec-fail-${process.pid}`;
    const err = await client.workflow.execute('codecProbe', { taskQueue: queue, workflowId: id, args: [{ marker, fail: true }] }).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(WorkflowFailedError);
    expect((err as WorkflowFailedError).cause?.message).toBe(`refused: ${marker}`);
    const bytes = await historyBytes(id);
    expect(bytes.includes(marker)).toBe(false);
    expect(bytes.includes('refused')).toBe(false);
    expect(bytes.includes('Encoded failure')).toBe(true);
  });

  it('the codec server decodes the stored input for the Web UI (CORS preflight included); without the right key it cannot', async () => {
    const id = `codec-ok-${process.pid}`;
    const history = await client.workflow.getHandle(id).fetchHistory();
    const stored = history.events![0]!.workflowExecutionStartedEventAttributes!.input!.payloads![0]!;
    const json = { payloads: [{ metadata: Object.fromEntries(Object.entries(stored.metadata!).map(([k, v]) => [k, Buffer.from(v).toString('base64')])), data: Buffer.from(stored.data!).toString('base64') }] };
    expect(Buffer.from(stored.metadata!['encryption-key-id']!).toString()).toBe('k2');

    const uiOrigin = 'http://127.0.0.204:8233';
    const server = createCodecServer({ codec: new AesGcmCodec(parseCodecKeys(KEYS)), corsOrigins: [uiOrigin] });
    await new Promise<void>((r) => server.listen(0, '127.0.0.204', r));
    const base = `http://127.0.0.204:${(server.address() as AddressInfo).port}`;
    try {
      const preflight = await fetch(`${base}/decode`, { method: 'OPTIONS', headers: { Origin: uiOrigin, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type,x-namespace' } });
      expect(preflight.status).toBe(204);
      expect(preflight.headers.get('access-control-allow-origin')).toBe(uiOrigin);
      expect(preflight.headers.get('access-control-allow-headers')).toMatch(/X-Namespace/i);
      const other = await fetch(`${base}/decode`, { method: 'OPTIONS', headers: { Origin: 'http://evil.example' } });
      expect(other.headers.get('access-control-allow-origin')).toBeNull();

      const decoded = await fetch(`${base}/decode`, { method: 'POST', headers: { Origin: uiOrigin, 'Content-Type': 'application/json', 'X-Namespace': 'default' }, body: JSON.stringify(json) });
      expect(decoded.status).toBe(200);
      const body = await decoded.json() as { payloads: { metadata: Record<string, string>; data: string }[] };
      expect(Buffer.from(body.payloads[0]!.metadata.encoding!, 'base64').toString()).toBe('json/plain');
      expect(JSON.parse(Buffer.from(body.payloads[0]!.data, 'base64').toString())).toEqual({ marker, fail: false });

      // /encode then /decode round-trips, as the temporal CLI's --codec-endpoint uses it.
      const plain = { payloads: [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('"hello"').toString('base64') }] };
      const enc = await (await fetch(`${base}/encode`, { method: 'POST', body: JSON.stringify(plain) })).json() as typeof plain;
      expect(Buffer.from(enc.payloads[0]!.metadata.encoding, 'base64').toString()).toBe('binary/encrypted');
      const dec = await (await fetch(`${base}/decode`, { method: 'POST', body: JSON.stringify(enc) })).json() as typeof plain;
      expect(dec).toEqual(plain);

      expect((await fetch(`${base}/decode`, { method: 'POST', body: '{"payloads": 3}' })).status).toBe(400);
    } finally {
      await new Promise((r) => server.close(r));
    }
    const stranger = createCodecServer({ codec: new AesGcmCodec(parseCodecKeys(`k2:${randomBytes(32).toString('base64')}`)), corsOrigins: [] });
    await new Promise<void>((r) => stranger.listen(0, '127.0.0.204', r));
    try {
      const res = await fetch(`http://127.0.0.204:${(stranger.address() as AddressInfo).port}/decode`, { method: 'POST', body: JSON.stringify(json) });
      expect(res.status).toBe(422);
      expect(JSON.stringify(await res.json())).not.toContain(marker);
    } finally {
      await new Promise((r) => stranger.close(r));
    }
  });

  it('migrate worker\'s orchestrator worker, with the keys set, bundles the workflows with the encoding failure converter and polls', async () => {
    const orchestrator = await createOrchestratorWorker({ connection, identity: `codec-orchestrator-${process.pid}` });
    const run = orchestrator.run();
    await new Promise((r) => setTimeout(r, 300));
    expect(orchestrator.getState()).toBe('RUNNING');
    orchestrator.shutdown();
    await run;
  });
});
