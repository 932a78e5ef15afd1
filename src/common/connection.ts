/**
 * How the CLI and the workers reach Temporal: address, namespace, TLS (server CA, client certificate
 * and key for mTLS, server name override) and an API key, from flags first and then from the same
 * environment variables the `temporal` CLI reads (`temporal options` lists them):
 *
 *   TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS,
 *   TEMPORAL_TLS_SERVER_CA_CERT_PATH / _DATA, TEMPORAL_TLS_CLIENT_CERT_PATH / _DATA,
 *   TEMPORAL_TLS_CLIENT_KEY_PATH / _DATA, TEMPORAL_TLS_SERVER_NAME
 *
 * One decision, one place: `connectionOptions` builds what both `Connection.connect` (client) and
 * `NativeConnection.connect` (worker) take. TLS is on when any TLS setting or an API key is given,
 * as with the `temporal` CLI. Files are read here, once; a missing file is bad input naming the flag.
 */
import { readFileSync } from 'node:fs';
import type { TLSConfig } from '@temporalio/client';
import type { Problem } from '../inventory/problems.js';

/** What a command's flags say (all optional: the environment fills in the rest). */
export interface ConnectionFlags {
  address?: string;
  namespace?: string;
  tls?: boolean;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsServerName?: string;
  apiKey?: string;
}

export interface TemporalConnection {
  address: string;
  namespace: string;
  /** Absent: plain gRPC (the dev server). */
  tls?: TLSConfig;
  apiKey?: string;
  /** For messages: how the connection is secured, with no secret in it. */
  describe: string;
}

/** The settings are not usable: each problem names the flag (and the variable) and a fix. */
export class ConnectionConfigError extends Error {
  constructor(readonly problems: Problem[]) {
    super(`invalid connection settings: ${problems.map((p) => `${p.path}: ${p.message}`).join('; ')}`);
  }
}

export const DEFAULT_ADDRESS = '127.0.0.1:7233';
const ADDRESS_RE = /^(\[[0-9A-Fa-f:.]+\]|[^\s:[\]]+):\d{1,5}$/;

/** The port of HOST:PORT is 1 to 65535. */
const validPort = (address: string) => {
  const port = Number(address.slice(address.lastIndexOf(':') + 1));
  return port >= 1 && port <= 65535;
};

type Env = Record<string, string | undefined>;

const nonEmpty = (v: string | undefined) => (v === undefined || v === '' ? undefined : v);
const truthy = (v: string | undefined) => v !== undefined && /^(1|true|yes|on)$/i.test(v);

/**
 * Build the connection settings from flags and the environment (flags win). Reads the PEM files
 * named; throws ConnectionConfigError (bad input) when a setting is unusable.
 */
export function connectionOptions(flags: ConnectionFlags, env: Env = process.env): TemporalConnection {
  const problems: Problem[] = [];
  const address = nonEmpty(flags.address) ?? nonEmpty(env.TEMPORAL_ADDRESS) ?? DEFAULT_ADDRESS;
  if (!ADDRESS_RE.test(address) || !validPort(address)) {
    problems.push({ path: '--address', message: `"${address}" is not HOST:PORT (a port from 1 to 65535)${flags.address ? '' : ' (from $TEMPORAL_ADDRESS)'}`, fix: 'write HOST:PORT, e.g. 127.0.0.1:7233 or temporal.example.com:7233' });
  }
  const namespace = nonEmpty(flags.namespace) ?? nonEmpty(env.TEMPORAL_NAMESPACE) ?? 'default';
  const apiKey = nonEmpty(flags.apiKey) ?? nonEmpty(env.TEMPORAL_API_KEY);

  /** A PEM from the flag's file, else the variable's file, else the variable's inline data. */
  const pem = (flag: string, value: string | undefined, pathVar: string, dataVar: string): Buffer | undefined => {
    const file = nonEmpty(value) ?? nonEmpty(env[pathVar]);
    if (file) {
      try {
        return readFileSync(file);
      } catch (err) {
        problems.push({ path: flag, message: `cannot read ${file}${value ? '' : ` (from $${pathVar})`}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, fix: `give a readable PEM file: ${flag} FILE or $${pathVar}` });
        return undefined;
      }
    }
    const data = nonEmpty(env[dataVar]);
    return data === undefined ? undefined : Buffer.from(data);
  };
  const ca = pem('--tls-ca', flags.tlsCa, 'TEMPORAL_TLS_SERVER_CA_CERT_PATH', 'TEMPORAL_TLS_SERVER_CA_CERT_DATA');
  const crt = pem('--tls-cert', flags.tlsCert, 'TEMPORAL_TLS_CLIENT_CERT_PATH', 'TEMPORAL_TLS_CLIENT_CERT_DATA');
  const key = pem('--tls-key', flags.tlsKey, 'TEMPORAL_TLS_CLIENT_KEY_PATH', 'TEMPORAL_TLS_CLIENT_KEY_DATA');
  const serverName = nonEmpty(flags.tlsServerName) ?? nonEmpty(env.TEMPORAL_TLS_SERVER_NAME);
  if (Boolean(crt) !== Boolean(key) && !problems.some((p) => p.path === '--tls-cert' || p.path === '--tls-key')) {
    problems.push({
      path: crt ? '--tls-key' : '--tls-cert',
      message: `a client ${crt ? 'certificate' : 'key'} is given without its ${crt ? 'key' : 'certificate'}`,
      fix: 'mTLS needs both: --tls-cert FILE --tls-key FILE (or $TEMPORAL_TLS_CLIENT_CERT_PATH and $TEMPORAL_TLS_CLIENT_KEY_PATH)',
    });
  }
  if (truthy(env.TEMPORAL_TLS_DISABLE_HOST_VERIFICATION)) {
    problems.push({ path: 'TEMPORAL_TLS_DISABLE_HOST_VERIFICATION', message: 'host-name verification cannot be turned off here', fix: 'unset it; give the name the server\'s certificate carries with --tls-server-name NAME (or $TEMPORAL_TLS_SERVER_NAME)' });
  }
  if (problems.length > 0) throw new ConnectionConfigError(problems);

  const wantTls = flags.tls === true || truthy(env.TEMPORAL_TLS) || Boolean(ca || crt || serverName || apiKey);
  const explicitlyOff = flags.tls === false || (env.TEMPORAL_TLS !== undefined && /^(0|false|no|off)$/i.test(env.TEMPORAL_TLS));
  const tls: TLSConfig | undefined = wantTls && !explicitlyOff
    ? {
      ...(ca ? { serverRootCACertificate: ca } : {}),
      ...(crt && key ? { clientCertPair: { crt, key } } : {}),
      ...(serverName ? { serverNameOverride: serverName } : {}),
    }
    : undefined;
  const describe = [
    address,
    `namespace ${namespace}`,
    tls ? `TLS${tls.clientCertPair ? ' with a client certificate' : ''}${tls.serverRootCACertificate ? ', own CA' : ''}${serverName ? `, server name ${serverName}` : ''}` : 'no TLS',
    ...(apiKey ? ['API key'] : []),
  ].join(', ');
  return { address, namespace, tls, apiKey, describe };
}

/** The fields `Connection.connect` and `NativeConnection.connect` share. */
export function sdkConnectOptions(c: TemporalConnection): { address: string; tls?: TLSConfig; apiKey?: string } {
  return { address: c.address, ...(c.tls ? { tls: c.tls } : {}), ...(c.apiKey ? { apiKey: c.apiKey } : {}) };
}
