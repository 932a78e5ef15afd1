/** Reading a secret on the worker host. The inventory (and so every workflow input) holds only the reference. */
import { readFile } from 'node:fs/promises';
import { ApplicationFailure } from '@temporalio/common';
import type { SecretRef } from '../inventory/schema.js';

export async function readSecret(ref: SecretRef | undefined, what: string): Promise<string | undefined> {
  if (!ref) return undefined;
  if ('from_env' in ref) {
    const value = process.env[ref.from_env];
    if (value === undefined) throw ApplicationFailure.nonRetryable(`${what}: the environment variable ${ref.from_env} is not set on this worker`, 'SecretMissing');
    return value;
  }
  try {
    return (await readFile(ref.from_file, 'utf8')).replace(/\r?\n$/, '');
  } catch (err) {
    throw ApplicationFailure.nonRetryable(`${what}: cannot read ${ref.from_file} on this worker (${(err as Error).message})`, 'SecretMissing');
  }
}
