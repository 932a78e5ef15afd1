/**
 * A real TLS-terminating proxy (Debian's haproxy, `mode tcp`) in front of the run's Temporal dev server, with
 * certificates made by openssl in a temp folder: a CA, a server certificate for the proxy's address
 * (and the name `temporal.test`), and a client certificate. The proxy requires a client certificate
 * signed by the CA (mTLS); it passes the bytes on, so gRPC's HTTP/2 goes through untouched. It
 * announces ALPN `h2`: the worker's Rust TLS stack refuses a server that does not (stunnel cannot,
 * hence haproxy).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export interface TlsProxy {
  /** HOST:PORT the proxy listens on (TLS). */
  address: string;
  dir: string;
  ca: string;
  clientCert: string;
  clientKey: string;
  /** A certificate and key from another CA: refused by the proxy. */
  strangerCert: string;
  strangerKey: string;
  stop(): Promise<void>;
}

function openssl(dir: string, ...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

function makeCa(dir: string, name: string): void {
  openssl(dir, 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.crt`);
}

function makeSigned(dir: string, ca: string, name: string, ext: string): void {
  openssl(dir, 'req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}.key`, '-out', `${name}.csr`);
  writeFileSync(path.join(dir, `${name}.ext`), ext);
  openssl(dir, 'x509', '-req', '-in', `${name}.csr`, '-CA', `${ca}.crt`, '-CAkey', `${ca}.key`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.crt`);
}

async function waitForPort(host: string, port: number, child: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`haproxy exited (${child.exitCode}): ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect({ host, port }, () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`haproxy did not listen on ${host}:${port}: ${stderr()}`);
}

export async function startTlsProxy(opts: { listenHost: string; listenPort: number; target: string }): Promise<TlsProxy> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'migrate-tls-'));
  makeCa(dir, 'ca');
  makeSigned(dir, 'ca', 'server', `subjectAltName=IP:${opts.listenHost},DNS:temporal.test\nextendedKeyUsage=serverAuth\n`);
  makeSigned(dir, 'ca', 'client', 'extendedKeyUsage=clientAuth\n');
  makeCa(dir, 'otherca');
  makeSigned(dir, 'otherca', 'stranger', 'extendedKeyUsage=clientAuth\n');
  writeFileSync(path.join(dir, 'server.pem'), readFileSync(path.join(dir, 'server.crt'), 'utf8') + readFileSync(path.join(dir, 'server.key'), 'utf8'));
  const conf = path.join(dir, 'haproxy.cfg');
  writeFileSync(conf, [
    'global',
    '  log stderr format raw local0 info',
    'defaults',
    '  mode tcp',
    '  log global',
    '  timeout connect 5s',
    '  timeout client 1h',
    '  timeout server 1h',
    'frontend temporal_tls',
    `  bind ${opts.listenHost}:${opts.listenPort} ssl crt ${path.join(dir, 'server.pem')} ca-file ${path.join(dir, 'ca.crt')} verify required alpn h2`,
    '  default_backend temporal',
    'backend temporal',
    `  server dev ${opts.target}`,
    '',
  ].join('\n'));
  const bin = ['haproxy', '/usr/sbin/haproxy'].find((b) => { try { execFileSync(b, ['-v'], { stdio: 'ignore' }); return true; } catch { return false; } });
  if (!bin) throw new Error('haproxy is not installed: apt-get install haproxy (scripts/setup.sh does)');
  const child = spawn(bin, ['-db', '-f', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4000); });
  await waitForPort(opts.listenHost, opts.listenPort, child, () => err);
  return {
    address: `${opts.listenHost}:${opts.listenPort}`,
    dir,
    ca: path.join(dir, 'ca.crt'),
    clientCert: path.join(dir, 'client.crt'),
    clientKey: path.join(dir, 'client.key'),
    strangerCert: path.join(dir, 'stranger.crt'),
    strangerKey: path.join(dir, 'stranger.key'),
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
