/** `migrate codec-server` as a user runs it: bad keys are exit 2; with keys it serves /decode until SIGTERM (exit 0). */
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';

function start(args: string[], env: Record<string, string>) {
  const child = spawn('./bin/migrate.mjs', ['codec-server', ...args], { env: { ...process.env, MIGRATE_CODEC_KEYS: '', MIGRATE_CODEC_KEYS_FILE: '', ...env, NO_COLOR: '1' } });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  return { child, exited, stderr: () => stderr };
}

describe('migrate codec-server', () => {
  it('exits 2 without keys, with a short key, or with a bad origin', async () => {
    for (const [args, env] of [[[], {}], [[], { MIGRATE_CODEC_KEYS: `a:${randomBytes(8).toString('base64')}` }], [['--cors-origin', 'http://x/path'], { MIGRATE_CODEC_KEYS: `a:${randomBytes(32).toString('base64')}` }]] as const) {
      const run = start([...args], { ...env });
      expect(await run.exited, run.stderr()).toBe(2);
      expect(run.stderr()).toMatch(/MIGRATE_CODEC_KEYS|--cors-origin/);
    }
  }, 120_000);

  it('serves /encode and /decode with the keys given, and stops on SIGTERM', async () => {
    const run = start(['--port', '18905', '--host', '127.0.0.205'], { MIGRATE_CODEC_KEYS: `k1:${randomBytes(32).toString('base64')}` });
    try {
      const deadline = Date.now() + 20_000;
      while (!run.stderr().includes('codec server on') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      expect(run.stderr()).toContain('codec server on http://127.0.0.205:18905 (keys k1');
      const plain = { payloads: [{ metadata: { encoding: Buffer.from('json/plain').toString('base64') }, data: Buffer.from('"x"').toString('base64') }] };
      const enc = await (await fetch('http://127.0.0.205:18905/encode', { method: 'POST', body: JSON.stringify(plain) })).json() as typeof plain;
      const dec = await (await fetch('http://127.0.0.205:18905/decode', { method: 'POST', body: JSON.stringify(enc) })).json();
      expect(dec).toEqual(plain);
    } finally {
      run.child.kill('SIGTERM');
    }
    expect(await run.exited).toBe(0);
  }, 60_000);
});
