/**
 * Reading an inventory: YAML text → zod-validated `Inventory`, or a list of problems, each naming
 * the field (as a path) and the fix. Several files merge like `docker compose -f a.yml -f b.yml`:
 * later files override earlier ones, maps merge key by key, lists are replaced.
 */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import type { z } from 'zod';
import { inventorySchema, type Inventory } from './schema.js';

export interface Problem {
  /** Where: a dotted path into the inventory, e.g. `agents.VisionProcessingAgent.gpu.min_vram_gb`. */
  path: string;
  message: string;
  /** What to do about it, when the message alone does not say. */
  fix?: string;
}

export class InventoryError extends Error {
  constructor(
    public readonly problems: Problem[],
    public readonly source = 'inventory',
  ) {
    super(`${source} is invalid:\n${problems.map(formatProblem).join('\n')}`);
    this.name = 'InventoryError';
  }
}

export function formatProblem(p: Problem): string {
  return `  ✗ ${p.path || '(root)'}: ${p.message}${p.fix ? `\n      fix: ${p.fix}` : ''}`;
}

export function pathToString(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

/** Parse YAML text strictly (duplicate keys are errors: seed 000 declares `networks:` twice). */
export function parseYaml(text: string, source: string): unknown {
  const doc = parseDocument(text, { uniqueKeys: true, merge: true });
  if (doc.errors.length > 0) {
    throw new InventoryError(
      doc.errors.map((e) => {
        const line = e.linePos?.[0];
        const where = line ? `${source}:${line.line}:${line.col}` : source;
        const dup = e.code === 'DUPLICATE_KEY';
        return {
          path: where,
          message: dup ? `duplicate key: ${e.message.split('\n')[0]}` : e.message.split('\n')[0] ?? e.message,
          fix: dup ? 'each name may appear once in a map: merge or rename the two entries' : 'fix the YAML syntax',
        };
      }),
      source,
    );
  }
  return doc.toJS();
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** compose-style override: maps merge recursively, everything else is replaced. */
export function mergeOverride(base: unknown, override: unknown): unknown {
  if (isPlainObject(base) && isPlainObject(override)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(override)) out[k] = k in base ? mergeOverride(base[k], v) : v;
    return out;
  }
  return override;
}

export function zodProblems(error: z.ZodError): Problem[] {
  const problems: Problem[] = [];
  for (const issue of error.issues) {
    const path = pathToString(issue.path);
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) {
        problems.push({
          path: path ? `${path}.${key}` : key,
          message: `unknown field "${key}"`,
          fix: 'remove it or check its spelling against the inventory format in the README',
        });
      }
    } else if (issue.code === 'invalid_union') {
      // Report the branch that got furthest rather than "invalid input".
      const branches = (issue as unknown as { errors: z.core.$ZodIssue[][] }).errors ?? [];
      const best = branches.reduce<z.core.$ZodIssue[] | undefined>((acc, b) => (!acc || b.length < acc.length ? b : acc), undefined);
      if (best && best.length > 0) {
        for (const sub of best) {
          const subPath = pathToString([...issue.path, ...sub.path]);
          problems.push({ path: subPath, message: sub.code === 'unrecognized_keys' ? `unknown field(s) ${(sub as { keys: string[] }).keys.join(', ')}` : sub.message });
        }
      } else {
        problems.push({ path, message: issue.message });
      }
    } else if (issue.code === 'invalid_key') {
      problems.push({ path, message: `invalid name: ${issue.issues.map((i) => i.message).join('; ')}` });
    } else {
      problems.push({ path, message: issue.message });
    }
  }
  return problems;
}

/** compose's extension fields (`x-anything:`) hold anchors for reuse; they are not part of the model. */
export function stripExtensions(doc: unknown): unknown {
  if (!isPlainObject(doc)) return doc;
  const drop = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([k]) => !k.startsWith('x-')));
  const out = drop(doc);
  for (const section of ['services', 'agents']) {
    const units = out[section];
    if (isPlainObject(units)) out[section] = Object.fromEntries(Object.entries(units).map(([k, v]) => [k, isPlainObject(v) ? drop(v) : v]));
  }
  return out;
}

/** Validate an already-parsed document; throws InventoryError listing every problem. */
export function parseInventory(doc: unknown, source = 'inventory'): Inventory {
  const result = inventorySchema.safeParse(stripExtensions(doc));
  if (!result.success) throw new InventoryError(zodProblems(result.error), source);
  return result.data;
}

export async function loadInventoryFiles(files: string[]): Promise<{ inventory: Inventory; raw: unknown }> {
  let merged: unknown = undefined;
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (err) {
      throw new InventoryError([{ path: file, message: `cannot read the inventory: ${(err as Error).message}`, fix: 'pass an existing file with --inventory FILE' }], file);
    }
    const doc = parseYaml(text, file);
    merged = merged === undefined ? doc : mergeOverride(merged, doc);
  }
  return { inventory: parseInventory(merged, files.join(' + ')), raw: merged };
}
