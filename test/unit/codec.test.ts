/** The AES-256-GCM payload codec and its keys: round trip, key ids, rotation, tampering. */
import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import { AesGcmCodec, ENCRYPTED_ENCODING, KEY_ID_METADATA, PayloadDecryptionError } from '../../src/codec/aes-gcm.js';
import { CodecKeyError, loadCodecKeys, parseCodecKeys } from '../../src/codec/keys.js';

const b64 = () => randomBytes(32).toString('base64');
const str = (b?: Uint8Array | null) => Buffer.from(b ?? []).toString();
const value = { inventory: { services: { postgres: { environment: { POSTGRES_DB: 'plaintext-marker-db' } } } } };
const payload = (): Payload => defaultPayloadConverter.toPayload(value);

describe('AesGcmCodec', () => {
  const k1 = b64();
  const k2 = b64();

  it('round-trips a payload; the sealed one carries the encoding and key id, and no plaintext', async () => {
    const codec = new AesGcmCodec(parseCodecKeys(`k1:${k1}`));
    const [sealed] = await codec.encode([payload()]);
    expect(str(sealed!.metadata!.encoding)).toBe(ENCRYPTED_ENCODING);
    expect(str(sealed!.metadata![KEY_ID_METADATA])).toBe('k1');
    expect(str(sealed!.data)).not.toContain('plaintext-marker-db');
    expect(str(sealed!.data)).not.toContain('json/plain');
    const [opened] = await codec.decode([sealed!]);
    expect(defaultPayloadConverter.fromPayload(opened!)).toEqual(value);
    expect(str(opened!.metadata!.encoding)).toBe('json/plain');
  });

  it('uses a fresh nonce each time: the same value seals differently', async () => {
    const codec = new AesGcmCodec(parseCodecKeys(`k1:${k1}`));
    const [a, b] = await codec.encode([payload(), payload()]);
    expect(Buffer.from(a!.data!).equals(Buffer.from(b!.data!))).toBe(false);
  });

  it('rotation: the first key encrypts, every key decrypts; a dropped key is named', async () => {
    const old = new AesGcmCodec(parseCodecKeys(`k1:${k1}`));
    const rotated = new AesGcmCodec(parseCodecKeys(`k2:${k2},k1:${k1}`));
    const [byOld] = await old.encode([payload()]);
    const [byNew] = await rotated.encode([payload()]);
    expect(str(byNew!.metadata![KEY_ID_METADATA])).toBe('k2');
    expect(defaultPayloadConverter.fromPayload((await rotated.decode([byOld!]))[0]!)).toEqual(value);
    await expect(old.decode([byNew!])).rejects.toThrow(/key "k2", which is not among the configured keys \(k1\)/);
  });

  it('tampering is detected: a flipped bit, a truncated payload, another key under the same id', async () => {
    const codec = new AesGcmCodec(parseCodecKeys(`k1:${k1}`));
    const [sealed] = await codec.encode([payload()]);
    const flipped = Buffer.from(sealed!.data!);
    flipped[20] = flipped[20]! ^ 1;
    await expect(codec.decode([{ ...sealed!, data: flipped }])).rejects.toThrow(PayloadDecryptionError);
    await expect(codec.decode([{ ...sealed!, data: sealed!.data!.subarray(0, 20) }])).rejects.toThrow(/too short/);
    const impostor = new AesGcmCodec(parseCodecKeys(`k1:${b64()}`));
    await expect(impostor.decode([sealed!])).rejects.toThrow(/authentication check/);
  });

  it('a payload it did not seal passes through (histories from before encryption)', async () => {
    const codec = new AesGcmCodec(parseCodecKeys(`k1:${k1}`));
    const plain = payload();
    expect(await codec.decode([plain])).toEqual([plain]);
  });
});

describe('codec keys', () => {
  const k = b64();
  it('reads id:key lists and both JSON forms, in order', () => {
    expect(parseCodecKeys(`a:${k}, b:${k}`).map((x) => x.id)).toEqual(['a', 'b']);
    expect(parseCodecKeys(JSON.stringify([{ id: 'z', key: k }, { id: 'a', key: k }])).map((x) => x.id)).toEqual(['z', 'a']);
    expect(parseCodecKeys(JSON.stringify({ new: k, old: k })).map((x) => x.id)).toEqual(['new', 'old']);
  });

  it('refuses short keys, bad ids, duplicates, numeric ids in an object, and never prints the key', () => {
    const short = randomBytes(16).toString('base64');
    for (const bad of [`a:${short}`, `../x:${k}`, `a:${k},a:${k}`, JSON.stringify({ 2: k, 1: k }), 'nokey', '{bad json', '']) {
      let message = '';
      try { parseCodecKeys(bad); } catch (err) { expect(err).toBeInstanceOf(CodecKeyError); message = (err as Error).message; }
      expect(message, bad).not.toBe('');
      expect(message).not.toContain(k);
    }
  });

  it('is off with neither variable; MIGRATE_CODEC_KEYS wins over the file', () => {
    expect(loadCodecKeys({})).toBeUndefined();
    expect(loadCodecKeys({ MIGRATE_CODEC_KEYS: `env:${k}`, MIGRATE_CODEC_KEYS_FILE: '/nonexistent' })![0]!.id).toBe('env');
    expect(() => loadCodecKeys({ MIGRATE_CODEC_KEYS_FILE: '/nonexistent' })).toThrow(/cannot read \/nonexistent/);
  });
});
