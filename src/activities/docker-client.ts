/** A dockerode client for a host's declared endpoint (unix socket, or tcp with TLS). */
import { readFileSync } from 'node:fs';
import Dockerode from 'dockerode';
import type { Host } from '../inventory/schema.js';

export function dockerClient(endpoint: Host['docker']): Dockerode {
  if ('socket' in endpoint) return new Dockerode({ socketPath: endpoint.socket });
  const url = new URL(endpoint.host);
  const tls = endpoint.tls;
  return new Dockerode({
    host: url.hostname,
    port: Number(url.port),
    protocol: tls ? 'https' : 'http',
    ...(tls ? { ca: readFileSync(tls.ca), cert: readFileSync(tls.cert), key: readFileSync(tls.key) } : {}),
  });
}
