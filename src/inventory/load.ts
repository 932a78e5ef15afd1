/**
 * Reading an inventory: YAML text → zod-validated `Inventory`, or a list of problems, each naming
 * the field (as a path) and the fix. Several files merge like `docker compose -f a.yml -f b.yml`:
 * later files override earlier ones, maps merge key by key, lists are replaced.
 */
import { readFile } from 'node:fs/promises';
import { parseDocument } from 'yaml';
import { inventorySchema, type Inventory } from './schema.js';
import { InventoryError, zodProblems } from './problems.js';

// The problem types live in the pure ./problems.js; re-exported for existing importers.
export { InventoryError, formatProblem, pathToString, zodProblems, type Problem } from './problems.js';

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
