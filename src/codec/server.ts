/**
 * Temporal's remote codec server protocol, for the Web UI (`--ui-codec-endpoint`, or the UI's
 * "codec server" setting) and the `temporal` CLI (`--codec-endpoint`): `POST /encode` and
 * `POST /decode` take and return `{"payloads": [{"metadata": {"k": base64}, "data": base64}]}`.
 * CORS lets the UI's origin call it from the browser (preflight answered, `X-Namespace` and
 * `Authorization` headers allowed). Bodies are capped; nothing is logged but the request line.
 */
import http from 'node:http';
import type { Payload, PayloadCodec } from '@temporalio/common';

interface JsonPayload {
  metadata?: Record<string, string>;
  data?: string;
}

const MAX_BODY = 8 * 1024 * 1024;

const fromJson = (p: JsonPayload): Payload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, new Uint8Array(Buffer.from(v, 'base64'))])),
  data: new Uint8Array(Buffer.from(p.data ?? '', 'base64')),
});

const toJson = (p: Payload): JsonPayload => ({
  metadata: Object.fromEntries(Object.entries(p.metadata ?? {}).map(([k, v]) => [k, Buffer.from(v ?? new Uint8Array()).toString('base64')])),
  data: Buffer.from(p.data ?? new Uint8Array()).toString('base64'),
});

function isPayloadList(body: unknown): body is { payloads: JsonPayload[] } {
  if (!body || typeof body !== 'object' || !Array.isArray((body as { payloads?: unknown }).payloads)) return false;
  return (body as { payloads: unknown[] }).payloads.every((p) => {
    if (!p || typeof p !== 'object') return false;
    const { data, metadata } = p as { data?: unknown; metadata?: unknown };
    if (data !== undefined && typeof data !== 'string') return false;
    if (metadata === undefined) return true;
    return Boolean(metadata) && typeof metadata === 'object' && Object.values(metadata as object).every((v) => typeof v === 'string');
  });
}

export interface CodecServerOptions {
  codec: PayloadCodec;
  /** Origins allowed to call from a browser (the Web UI's, e.g. http://127.0.0.1:8233); `*` for any. */
  corsOrigins: string[];
}

export function createCodecServer(opts: CodecServerOptions): http.Server {
  return http.createServer((req, res) => {
    const origin = req.headers.origin;
    if (origin && (opts.corsOrigins.includes(origin) || opts.corsOrigins.includes('*'))) {
      res.setHeader('Access-Control-Allow-Origin', origin);
      res.setHeader('Vary', 'Origin');
      res.setHeader('Access-Control-Allow-Credentials', 'true');
      res.setHeader('Access-Control-Allow-Methods', 'POST, OPTIONS');
      res.setHeader('Access-Control-Allow-Headers', 'Content-Type, X-Namespace, Authorization');
      res.setHeader('Access-Control-Max-Age', '600');
    }
    const send = (status: number, body?: unknown) => {
      res.writeHead(status, body === undefined ? {} : { 'Content-Type': 'application/json' });
      res.end(body === undefined ? undefined : JSON.stringify(body));
    };
    const url = new URL(req.url ?? '/', 'http://codec');
    const op = url.pathname.replace(/\/+$/, '').split('/').pop();
    if (req.method === 'OPTIONS') return send(204);
    if (req.method !== 'POST' || (op !== 'encode' && op !== 'decode')) return send(404, { error: 'POST /encode or POST /decode' });
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > MAX_BODY) { send(413, { error: 'body too large' }); req.destroy(); } else chunks.push(c);
    });
    req.on('end', () => {
      if (res.headersSent) return;
      let body: unknown;
      try {
        body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        return send(400, { error: 'the body is not JSON: send {"payloads": [...]}' });
      }
      if (!isPayloadList(body)) return send(400, { error: 'send {"payloads": [{"metadata": {...}, "data": "base64"}]}' });
      const payloads = body.payloads.map(fromJson);
      (op === 'encode' ? opts.codec.encode(payloads) : opts.codec.decode(payloads))
        .then((out) => send(200, { payloads: out.map(toJson) }))
        .catch((err: Error) => send(422, { error: err.message }));
    });
  });
}
