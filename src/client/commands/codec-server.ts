/** `migrate codec-server`: decrypts payloads for the Web UI and the `temporal` CLI (keys from MIGRATE_CODEC_KEYS(_FILE)). */
import type { Command } from 'commander';
import { z } from 'zod';
import { AesGcmCodec } from '../../codec/aes-gcm.js';
import { CodecKeyError, loadCodecKeys } from '../../codec/keys.js';
import { createCodecServer } from '../../codec/server.js';
import { BadInput } from '../../ops/errors.js';
import { action, collect, parseOptions } from '../common.js';

const codecServerOptions = z.object({
  port: z.coerce.number().int().min(1).max(65535).default(8888),
  host: z.string().min(1).default('127.0.0.1'),
  corsOrigin: z.array(z.string().regex(/^(\*|https?:\/\/[^\s/]+)$/, { message: 'must be an origin like http://127.0.0.1:8233 (scheme, host, port; no path)' })).default(['http://127.0.0.1:8233', 'http://localhost:8233']),
});

export function registerCodecServer(program: Command): void {
  program
    .command('codec-server')
    .description('serve POST /encode and /decode for the Temporal Web UI (--ui-codec-endpoint) and temporal CLI (--codec-endpoint)')
    .option('--port <port>', 'port to listen on (default 8888)')
    .option('--host <address>', 'address to listen on (default 127.0.0.1)')
    .option('--cors-origin <origin>', 'Web UI origin allowed to call it (repeatable; default http://127.0.0.1:8233 and http://localhost:8233)', collect)
    .action(action(async (raw: unknown) => {
      const opts = parseOptions(codecServerOptions, raw);
      let keys;
      try {
        keys = loadCodecKeys();
      } catch (err) {
        if (err instanceof CodecKeyError) throw new BadInput('invalid codec keys', [{ path: 'MIGRATE_CODEC_KEYS', message: err.message, fix: 'give id:base64key,… (openssl rand -base64 32)' }]);
        throw err;
      }
      if (!keys) throw new BadInput('no codec keys', [{ path: 'MIGRATE_CODEC_KEYS', message: 'neither MIGRATE_CODEC_KEYS nor MIGRATE_CODEC_KEYS_FILE is set', fix: 'set the same keys the workers and clients use' }]);
      const server = createCodecServer({ codec: new AesGcmCodec(keys), corsOrigins: opts.corsOrigin });
      await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(opts.port, opts.host, resolve); });
      process.stderr.write(`codec server on http://${opts.host}:${opts.port} (keys ${keys.map((k) => k.id).join(', ')}; CORS for ${opts.corsOrigin.join(', ')})\n`);
      await new Promise<void>((resolve) => {
        const stop = () => server.close(() => resolve());
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
    }));
}
