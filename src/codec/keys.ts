/**
 * The payload codec's keys: from `MIGRATE_CODEC_KEYS` or the file `MIGRATE_CODEC_KEYS_FILE`, as
 * `id:base64key,id2:base64key2` or JSON (`[{"id":"k2","key":"base64"}, …]` or `{"k2":"base64", …}`).
 * Each key is 32 bytes (AES-256). The first one encrypts; every one decrypts, so a key is rotated by
 * putting the new one first and keeping the old ones until no history needs them.
 */
import { readFileSync } from 'node:fs';

export interface CodecKey {
  id: string;
  key: Buffer;
}

export class CodecKeyError extends Error {}

const ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

function toKey(id: unknown, b64: unknown, where: string): CodecKey {
  if (typeof id !== 'string' || !ID_RE.test(id)) throw new CodecKeyError(`${where}: the key id ${JSON.stringify(id)} must be letters, digits, "_", "." or "-" (at most 64)`);
  if (typeof b64 !== 'string' || !/^[A-Za-z0-9+/]+={0,2}$/.test(b64.trim())) throw new CodecKeyError(`${where}: key ${id} is not base64 (make one with: openssl rand -base64 32)`);
  const key = Buffer.from(b64.trim(), 'base64');
  if (key.length !== 32) throw new CodecKeyError(`${where}: key ${id} is ${key.length} bytes; AES-256 needs 32 (openssl rand -base64 32)`);
  return { id, key };
}

/** Parse the keys' text (either form); throws CodecKeyError naming what is wrong, never the key. */
export function parseCodecKeys(text: string, where = 'MIGRATE_CODEC_KEYS'): CodecKey[] {
  const trimmed = text.trim();
  let keys: CodecKey[];
  if (trimmed.startsWith('[') || trimmed.startsWith('{')) {
    let json: unknown;
    try {
      json = JSON.parse(trimmed);
    } catch {
      throw new CodecKeyError(`${where}: not valid JSON`);
    }
    if (Array.isArray(json)) {
      keys = json.map((entry, i) => toKey((entry as { id?: unknown })?.id, (entry as { key?: unknown })?.key, `${where}[${i}]`));
    } else {
      const entries = Object.entries(json as Record<string, unknown>);
      // Integer-like keys of a JSON object are reordered by JavaScript: the first would not be the first.
      if (entries.some(([id]) => /^\d+$/.test(id))) throw new CodecKeyError(`${where}: numeric key ids lose their order in a JSON object; use the list form [{"id":…,"key":…}] or id:key,…`);
      keys = entries.map(([id, key]) => toKey(id, key, where));
    }
  } else {
    keys = trimmed.split(',').map((s) => s.trim()).filter(Boolean).map((pair) => {
      const at = pair.indexOf(':');
      if (at < 1) throw new CodecKeyError(`${where}: "${pair.slice(0, 16)}…" is not id:base64key`);
      return toKey(pair.slice(0, at), pair.slice(at + 1), where);
    });
  }
  if (keys.length === 0) throw new CodecKeyError(`${where}: no key given`);
  const seen = new Set<string>();
  for (const k of keys) {
    if (seen.has(k.id)) throw new CodecKeyError(`${where}: key id ${k.id} appears twice`);
    seen.add(k.id);
  }
  return keys;
}

/** The configured keys, or undefined when encryption is off (neither variable set). */
export function loadCodecKeys(env: Record<string, string | undefined> = process.env): CodecKey[] | undefined {
  if (env.MIGRATE_CODEC_KEYS) return parseCodecKeys(env.MIGRATE_CODEC_KEYS);
  const file = env.MIGRATE_CODEC_KEYS_FILE;
  if (!file) return undefined;
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new CodecKeyError(`MIGRATE_CODEC_KEYS_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`);
  }
  return parseCodecKeys(text, file);
}
