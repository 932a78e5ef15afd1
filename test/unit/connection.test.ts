/** src/common/connection.ts: flags first, then the `temporal` CLI's environment variables; bad settings name the flag. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConnectionConfigError, connectionOptions } from '../../src/common/connection.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'conn-'));
const file = (name: string, text: string) => { const p = path.join(dir, name); writeFileSync(p, text); return p; };
const ca = file('ca.pem', 'CA');
const crt = file('crt.pem', 'CRT');
const key = file('key.pem', 'KEY');

describe('connectionOptions', () => {
  it('defaults to the local dev server, no TLS', () => {
    const c = connectionOptions({}, {});
    expect(c).toMatchObject({ address: '127.0.0.1:7233', namespace: 'default' });
    expect(c.tls).toBeUndefined();
    expect(c.apiKey).toBeUndefined();
  });

  it('reads the temporal CLI variables (paths), and TLS turns on by itself', () => {
    const c = connectionOptions({}, {
      TEMPORAL_ADDRESS: 'temporal.example.com:7233', TEMPORAL_NAMESPACE: 'prod',
      TEMPORAL_TLS_SERVER_CA_CERT_PATH: ca, TEMPORAL_TLS_CLIENT_CERT_PATH: crt, TEMPORAL_TLS_CLIENT_KEY_PATH: key,
      TEMPORAL_TLS_SERVER_NAME: 'frontend.internal',
    });
    expect(c.address).toBe('temporal.example.com:7233');
    expect(c.namespace).toBe('prod');
    expect(Buffer.from(c.tls!.serverRootCACertificate!).toString()).toBe('CA');
    expect(Buffer.from(c.tls!.clientCertPair!.crt).toString()).toBe('CRT');
    expect(Buffer.from(c.tls!.clientCertPair!.key).toString()).toBe('KEY');
    expect(c.tls!.serverNameOverride).toBe('frontend.internal');
    expect(c.describe).not.toContain('KEY');
  });

  it('reads inline data variables, and an API key alone means TLS with the system CAs', () => {
    const c = connectionOptions({}, { TEMPORAL_TLS_CLIENT_CERT_DATA: 'C', TEMPORAL_TLS_CLIENT_KEY_DATA: 'K' });
    expect(Buffer.from(c.tls!.clientCertPair!.crt).toString()).toBe('C');
    const k = connectionOptions({}, { TEMPORAL_API_KEY: 'sekrit' });
    expect(k.apiKey).toBe('sekrit');
    expect(k.tls).toEqual({});
    expect(k.describe).not.toContain('sekrit');
  });

  it('flags win over variables; --tls without files is TLS with the system CAs; TEMPORAL_TLS=false turns it off', () => {
    const c = connectionOptions({ address: '10.0.0.1:7233', namespace: 'ns', tls: true }, { TEMPORAL_ADDRESS: 'x:1', TEMPORAL_NAMESPACE: 'y' });
    expect(c).toMatchObject({ address: '10.0.0.1:7233', namespace: 'ns', tls: {} });
    expect(connectionOptions({}, { TEMPORAL_TLS: 'false', TEMPORAL_API_KEY: 'k' }).tls).toBeUndefined();
  });

  it('a certificate without its key, an unreadable file, a bad address: problems naming the flag', () => {
    const problems = (f: Parameters<typeof connectionOptions>[0], env: Record<string, string> = {}) => {
      try { connectionOptions(f, env); } catch (err) { return (err as ConnectionConfigError).problems; }
      throw new Error('accepted');
    };
    expect(problems({ tlsCert: crt })[0]).toMatchObject({ path: '--tls-key', fix: expect.stringContaining('--tls-key FILE') });
    expect(problems({ tlsCa: path.join(dir, 'missing.pem') })[0]).toMatchObject({ path: '--tls-ca', message: expect.stringContaining('ENOENT') });
    expect(problems({}, { TEMPORAL_TLS_CLIENT_KEY_PATH: path.join(dir, 'nope') })[0]!.message).toContain('$TEMPORAL_TLS_CLIENT_KEY_PATH');
    expect(problems({ address: 'no-port' })[0]!.path).toBe('--address');
    expect(problems({}, { TEMPORAL_TLS_DISABLE_HOST_VERIFICATION: 'true' })[0]!.fix).toContain('--tls-server-name');
  });
});
