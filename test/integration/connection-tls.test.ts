/**
 * Connection security against a real TLS-terminating proxy (haproxy in tcp mode, client certificates required)
 * in front of the run's dev server. The CLI's own `connectClient` and a worker's NativeConnection,
 * both built by src/common/connection.ts, get through with the client certificate; without it, or
 * with a certificate from another CA, the proxy refuses them; a plain-gRPC client gets nowhere.
 */
import { afterAll, beforeAll, describe, expect, it, inject } from 'vitest';
import { NativeConnection, Worker } from '@temporalio/worker';
import { connectClient } from '../../src/client/common.js';
import { connectionOptions, sdkConnectOptions } from '../../src/common/connection.js';
import { quietRuntime } from '../../src/dev/environment.js';
import { startTlsProxy, type TlsProxy } from '../helpers/tls-proxy.js';

const HOST = '127.0.0.201';
const PORT = 17301;
let proxy: TlsProxy;

beforeAll(async () => {
  quietRuntime();
  proxy = await startTlsProxy({ listenHost: HOST, listenPort: PORT, target: inject('temporalAddress') });
});

afterAll(async () => {
  await proxy?.stop();
});

describe('Temporal through a TLS proxy that requires client certificates', () => {
  it('the CLI client with the CA, certificate and key lists and starts a workflow', async () => {
    const { client, close } = await connectClient({ address: proxy.address, tlsCa: proxy.ca, tlsCert: proxy.clientCert, tlsKey: proxy.clientKey });
    try {
      const id = `tls-check-${process.pid}`;
      const handle = await client.workflow.start('noSuchWorkflowType', { taskQueue: `tls-test-${process.pid}`, workflowId: id, args: [] });
      const listed: string[] = [];
      for await (const wf of client.workflow.list({ query: `WorkflowId = "${id}"` })) listed.push(wf.workflowId);
      // Visibility is eventually consistent; describe is not.
      expect((await handle.describe()).status.name).toBe('RUNNING');
      expect(listed.length <= 1).toBe(true);
      await handle.terminate('tls test done');
      expect((await handle.describe()).status.name).toBe('TERMINATED');
    } finally {
      await close();
    }
  });

  it('the environment variables of the temporal CLI are enough (server name override included)', async () => {
    const env = {
      TEMPORAL_ADDRESS: proxy.address,
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: proxy.ca,
      TEMPORAL_TLS_CLIENT_CERT_PATH: proxy.clientCert,
      TEMPORAL_TLS_CLIENT_KEY_PATH: proxy.clientKey,
      TEMPORAL_TLS_SERVER_NAME: 'temporal.test',
    };
    const target = connectionOptions({}, env);
    expect(target.tls?.serverNameOverride).toBe('temporal.test');
    // A worker's connection (the Rust core's TLS stack), then a worker polling through it.
    const connection = await NativeConnection.connect(sdkConnectOptions(target));
    try {
      const info = await connection.workflowService.getSystemInfo({});
      expect(info.serverVersion).toBeTruthy();
      const worker = await Worker.create({ connection, namespace: target.namespace, taskQueue: `tls-worker-${process.pid}`, activities: { async ping() { return 'pong'; } } });
      const running = worker.run();
      await new Promise((r) => setTimeout(r, 500));
      expect(worker.getState()).toBe('RUNNING');
      worker.shutdown();
      await running;
    } finally {
      await connection.close();
    }
  });

  it('a client without a client certificate is refused', async () => {
    await expect(connectClient({ address: proxy.address, tlsCa: proxy.ca })).rejects.toThrow(/cannot reach the Temporal server/);
  });

  it('a client certificate from another CA is refused', async () => {
    await expect(connectClient({ address: proxy.address, tlsCa: proxy.ca, tlsCert: proxy.strangerCert, tlsKey: proxy.strangerKey })).rejects.toThrow(/cannot reach the Temporal server/);
  });

  it('a worker without a client certificate is refused', async () => {
    // Connecting may succeed (TLS 1.3 checks the client certificate after the handshake): the first call may not.
    const attempt = async () => {
      const connection = await NativeConnection.connect(sdkConnectOptions(connectionOptions({ address: proxy.address, tlsCa: proxy.ca }, {})));
      try {
        await connection.workflowService.getSystemInfo({});
      } finally {
        await connection.close();
      }
    };
    await expect(attempt()).rejects.toThrow(/certificate|handshake|transport|connect|unavailable/i);
  });

  it('a client that does not trust the proxy\'s CA is refused, and plain gRPC gets nowhere', async () => {
    await expect(connectClient({ address: proxy.address, tls: true, tlsCert: proxy.clientCert, tlsKey: proxy.clientKey })).rejects.toThrow(/cannot reach/);
    await expect(connectClient({ address: proxy.address, tls: false })).rejects.toThrow(/cannot reach/);
  });
});
