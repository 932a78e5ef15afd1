/**
 * A PayloadCodec that encrypts every payload with AES-256-GCM: the whole payload (its metadata and
 * data, as protobuf bytes) is sealed under a fresh 12-byte nonce; the result's metadata says
 * `encoding: binary/encrypted` and which key sealed it (`encryption-key-id`), so keys can rotate.
 * Data = nonce ‖ ciphertext ‖ 16-byte tag; a tampered payload fails to decode.
 */
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { METADATA_ENCODING_KEY, type Payload, type PayloadCodec } from '@temporalio/common';
// CommonJS package: under Node's own ESM loader (bin/migrate.mjs) only its default export is named.
import proto from '@temporalio/proto';
import type { CodecKey } from './keys.js';

export const ENCRYPTED_ENCODING = 'binary/encrypted';
export const KEY_ID_METADATA = 'encryption-key-id';
const { Payload: PayloadProto } = proto.temporal.api.common.v1;
const NONCE_BYTES = 12;
const TAG_BYTES = 16;

const text = (s: string) => new TextEncoder().encode(s);
const str = (b: Uint8Array | null | undefined) => (b ? new TextDecoder().decode(b) : undefined);

export class PayloadDecryptionError extends Error {}

export class AesGcmCodec implements PayloadCodec {
  private readonly byId: Map<string, Buffer>;
  private readonly current: CodecKey;

  constructor(keys: CodecKey[]) {
    if (keys.length === 0) throw new Error('AesGcmCodec needs at least one key');
    this.current = keys[0]!;
    this.byId = new Map(keys.map((k) => [k.id, k.key]));
  }

  async encode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.seal(p));
  }

  async decode(payloads: Payload[]): Promise<Payload[]> {
    return payloads.map((p) => this.open(p));
  }

  seal(payload: Payload): Payload {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', this.current.key, nonce);
    const plain = PayloadProto.encode(payload).finish();
    const sealed = Buffer.concat([nonce, cipher.update(plain), cipher.final(), cipher.getAuthTag()]);
    return {
      metadata: { [METADATA_ENCODING_KEY]: text(ENCRYPTED_ENCODING), [KEY_ID_METADATA]: text(this.current.id) },
      data: new Uint8Array(sealed),
    };
  }

  /** Payloads this codec did not seal pass through (histories from before encryption was turned on). */
  open(payload: Payload): Payload {
    if (str(payload.metadata?.[METADATA_ENCODING_KEY]) !== ENCRYPTED_ENCODING) return payload;
    const id = str(payload.metadata?.[KEY_ID_METADATA]);
    const key = id === undefined ? undefined : this.byId.get(id);
    if (!key) throw new PayloadDecryptionError(`payload sealed with key "${id ?? '(none)'}", which is not among the configured keys (${[...this.byId.keys()].join(', ')}): add it to MIGRATE_CODEC_KEYS`);
    const data = Buffer.from(payload.data ?? new Uint8Array());
    if (data.length < NONCE_BYTES + TAG_BYTES) throw new PayloadDecryptionError('encrypted payload too short: it was truncated or tampered with');
    const decipher = createDecipheriv('aes-256-gcm', key, data.subarray(0, NONCE_BYTES));
    decipher.setAuthTag(data.subarray(data.length - TAG_BYTES));
    let plain: Buffer;
    try {
      plain = Buffer.concat([decipher.update(data.subarray(NONCE_BYTES, data.length - TAG_BYTES)), decipher.final()]);
    } catch {
      throw new PayloadDecryptionError(`encrypted payload (key ${id}) fails its authentication check: it was tampered with, or sealed by another key under the same id`);
    }
    const decoded = PayloadProto.decode(plain);
    return { metadata: decoded.metadata, data: decoded.data };
  }
}
