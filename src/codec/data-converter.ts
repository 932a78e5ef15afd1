/**
 * The data converter of clients and workers: payloads encrypted (and failure messages encoded)
 * when codec keys are configured (MIGRATE_CODEC_KEYS or MIGRATE_CODEC_KEYS_FILE), the SDK's default
 * otherwise. Every client and worker of one deployment must have the same keys.
 */
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DataConverter } from '@temporalio/common';
import { AesGcmCodec } from './aes-gcm.js';
import { loadCodecKeys, type CodecKey } from './keys.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The file with the `failureConverter` export (CommonJS: see the file). */
export const FAILURE_CONVERTER_PATH = path.resolve(here, 'failure-converter.cjs');

/** A data converter for these keys (or the configured ones); undefined when encryption is off. */
export function codecDataConverter(keys: CodecKey[] | undefined = loadCodecKeys()): DataConverter | undefined {
  if (!keys) return undefined;
  return { payloadCodecs: [new AesGcmCodec(keys)], failureConverterPath: FAILURE_CONVERTER_PATH };
}
