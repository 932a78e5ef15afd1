/**
 * A worker's metrics endpoint: `GET /metrics` on HOST:PORT answers the tool's own metrics
 * (registry.ts) followed by the Temporal SDK's, which the SDK's runtime exports on a loopback port
 * of its own (`sdkPort`): one scrape target per worker process.
 */
import http from 'node:http';
import net from 'node:net';
import type { HostContext } from '../activities/context.js';
import { createBackupStoreActivities } from '../activities/backup-store.js';
import { metricsText } from './registry.js';
import { observeBackup, setHostLost } from './migrate.js';

/** `HOST:PORT` (IPv6 as `[::1]:9464`) → parts, or a sentence saying what is wrong. */
export function parseBind(bind: string): { host: string; port: number } | { problem: string } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(bind);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port < 1 || port > 65535) return { problem: `"${bind}" is not HOST:PORT (for example 127.0.0.1:9464 or [::1]:9464)` };
  return { host: m[1] ?? m[2]!, port };
}

/** A free TCP port on loopback, for the SDK's own exporter. */
export function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

export interface MetricsServer {
  url: string;
  close(): Promise<void>;
}

export async function serveMetrics(bind: string, options: { sdkPort?: number } = {}): Promise<MetricsServer> {
  const parsed = parseBind(bind);
  if ('problem' in parsed) throw new Error(parsed.problem);
  const server = http.createServer((req, res) => {
    if (req.method !== 'GET' || !req.url?.startsWith('/metrics')) {
      res.writeHead(404).end('see /metrics\n');
      return;
    }
    void (async () => {
      let sdk = '';
      if (options.sdkPort) {
        sdk = await fetch(`http://127.0.0.1:${options.sdkPort}/metrics`, { signal: AbortSignal.timeout(2000) })
          .then((r) => r.text())
          .catch(() => ''); // the SDK's exporter not up yet: the tool's metrics still answer
      }
      res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(metricsText() + sdk);
    })();
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (err) => reject(new Error(`cannot serve metrics on ${bind}: ${err.message}`)));
    server.listen(parsed.port, parsed.host, resolve);
  });
  const { port } = server.address() as net.AddressInfo;
  const host = parsed.host.includes(':') ? `[${parsed.host}]` : parsed.host;
  return {
    url: `http://${host}:${port}/metrics`,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}

/**
 * What a worker knows at start: its hosts are present (host-lost 0), and the newest verified backup
 * per component is read from each host's backup store, so a restarted worker does not forget it.
 */
export async function seedWorkerMetrics(contexts: HostContext[], backupDirectory?: string): Promise<void> {
  for (const ctx of contexts) {
    setHostLost(ctx.host, false);
    const backups = await createBackupStoreActivities(ctx).listBackups(backupDirectory).catch(() => []);
    for (const b of backups) if (b.status === 'verified') observeBackup(b, { count: false });
  }
}
