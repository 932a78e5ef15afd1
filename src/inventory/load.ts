/**
 * Reading an inventory: YAML text → zod-validated `Inventory`, or a list of problems, each naming
 * the field (as a path) and the fix. Several files merge like `docker compose -f a.yml -f b.yml`:
 * later files override earlier ones, maps merge key by key, lists are replaced.
 */
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { isAlias, isMap, isNode, isScalar, isSeq, LineCounter, parseDocument, visit, type Document } from 'yaml';
import { inventorySchema, type Inventory } from './schema.js';
import { InventoryError, zodProblems, type Problem } from './problems.js';

// The problem types live in the pure ./problems.js; re-exported for existing importers.
export { InventoryError, formatProblem, pathToString, zodProblems, type Problem } from './problems.js';

/** Inventories are small: anything bigger is a wrong file, read no further. */
export const MAX_INVENTORY_BYTES = 4 * 1024 * 1024;

/** YAML aliases expanded at most this many times (a "billion laughs" document is refused). */
const MAX_ALIAS_COUNT = 1000;

const at = (source: string, lines: LineCounter, offset: number | undefined) => {
  if (offset === undefined) return source;
  const { line, col } = lines.linePos(offset);
  return `${source}:${line}:${col}`;
};

/**
 * What the YAML parser lets through but an inventory must not have, found in one linear walk:
 * duplicate keys (seed 000 declares `networks:` twice), `__proto__` keys, aliases to anchors not
 * yet defined, and merge keys (`<<`) whose source is not a map. Each with file and line.
 */
function structureProblems(doc: Document, source: string, lines: LineCounter): Problem[] {
  const problems: Problem[] = [];
  const anchors = new Map<string, unknown>();
  const problem = (node: unknown, message: string, fix: string) =>
    problems.push({ path: at(source, lines, isNode(node) ? node.range?.[0] : undefined), message, fix });
  // Depth first, in document order (an anchor counts only after it), with an explicit stack.
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isAlias(node)) {
      if (!anchors.has(node.source)) problem(node, `the alias *${node.source} refers to no anchor defined before it`, `define &${node.source} earlier in the same file (anchors do not cross files), or fix the name`);
      continue;
    }
    if (!isMap(node) && !isSeq(node) && !isScalar(node)) continue;
    if (node.anchor) anchors.set(node.anchor, node);
    if (isSeq(node)) {
      for (let i = node.items.length - 1; i >= 0; i--) stack.push(node.items[i]);
      continue;
    }
    if (!isMap(node)) continue;
    const seen = new Set<string>();
    for (const pair of node.items) {
      // With merge: true the parser reads a `<<` key as Symbol('<<').
      const raw = isScalar(pair.key) ? pair.key.value : undefined;
      const key = typeof raw === 'symbol' ? raw.description : raw === undefined || raw === null ? undefined : String(raw);
      if (key === '<<') {
        for (const src of isSeq(pair.value) ? pair.value.items : [pair.value]) {
          if (isAlias(src) && !anchors.has(src.source)) continue; // reported as an unknown alias
          if (!isMap(isAlias(src) ? anchors.get(src.source) : src)) problem(isNode(src) ? src : pair.key, 'a merge key (<<) needs a map or an alias of a map', 'merge a map anchor, e.g. `<<: *defaults` where `x-defaults: &defaults { … }`');
        }
      } else if (key !== undefined) {
        if (key === '__proto__') problem(pair.key, '"__proto__" cannot be a name here', 'rename it');
        if (seen.has(key)) problem(pair.key, `duplicate key "${key}"`, 'each name may appear once in a map: merge or rename the two entries');
        seen.add(key);
      }
    }
    for (let i = node.items.length - 1; i >= 0; i--) stack.push(node.items[i]!.value, node.items[i]!.key);
  }
  return problems;
}

/** Parse YAML text strictly: syntax errors, duplicate keys, bad aliases and merges, each with file and line. */
export function parseYaml(text: string, source: string): unknown {
  const lines = new LineCounter();
  // uniqueKeys: false — the parser's own check compares every key with every other (O(n²));
  // structureProblems does it with a set.
  const doc = parseDocument(text, { uniqueKeys: false, merge: true, lineCounter: lines, prettyErrors: false });
  if (doc.errors.length > 0) {
    const seen = new Set<string>();
    const problems: Problem[] = [];
    for (const e of doc.errors) {
      const deep = /call stack/i.test(e.message);
      const p = {
        path: at(source, lines, e.pos[0]),
        message: deep ? 'the YAML nests too deeply to be read' : e.message.split('\n')[0] ?? e.message,
        fix: deep ? 'nest fewer lists and maps inside each other' : 'fix the YAML syntax at that line',
      };
      if (seen.has(`${p.path} ${p.message}`)) continue;
      seen.add(`${p.path} ${p.message}`);
      problems.push(p);
    }
    throw new InventoryError(problems.slice(0, 20), source);
  }
  const problems = structureProblems(doc, source, lines);
  if (problems.length > 0) throw new InventoryError(problems, source);
  try {
    return doc.toJS({ maxAliasCount: MAX_ALIAS_COUNT });
  } catch (err) {
    const message = (err as Error).message;
    // Whatever the walk above did not foresee (an alias expanded too often): named by its first alias.
    let first: number | undefined;
    visit(doc, { Alias(_k, node) { first ??= node.range?.[0]; return visit.BREAK; } });
    throw new InventoryError([{ path: at(source, lines, first), message: `the YAML cannot be read: ${message.split('\n')[0]}`, fix: 'expand fewer aliases, or write the values out' }], source);
  }
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** compose-style override: maps merge recursively, everything else is replaced. */
export function mergeOverride(base: unknown, override: unknown): unknown {
  if (isPlainObject(base) && isPlainObject(override)) {
    const out: Record<string, unknown> = { ...base };
    for (const [k, v] of Object.entries(override)) out[k] = Object.hasOwn(base, k) ? mergeOverride(base[k], v) : v;
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

/**
 * The text of one inventory file: a regular file of at most MAX_INVENTORY_BYTES. A device
 * (/dev/urandom), a FIFO or a folder is refused at once, without reading from it.
 */
export async function readInventoryFile(file: string): Promise<string> {
  const refuse = (message: string, fix: string) => new InventoryError([{ path: file, message, fix }], file);
  let fh;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer.
    fh = await open(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw refuse(`cannot read the inventory: ${(err as Error).message}`, 'pass an existing file with --inventory FILE');
  }
  try {
    const st = await fh.stat();
    if (!st.isFile()) {
      const what = st.isDirectory() ? 'a folder' : st.isFIFO() ? 'a FIFO' : st.isCharacterDevice() || st.isBlockDevice() ? 'a device' : st.isSocket() ? 'a socket' : 'not a regular file';
      throw refuse(`is ${what}, not an inventory file`, 'pass a YAML file with --inventory FILE');
    }
    if (st.size > MAX_INVENTORY_BYTES) {
      throw refuse(`is ${st.size} bytes: an inventory is at most ${MAX_INVENTORY_BYTES} bytes (4 MiB)`, 'pass the inventory itself, not another file; split a huge inventory, or trim it');
    }
    // Read at most one byte more than the cap: a file that grows while read is refused too.
    const buf = Buffer.alloc(MAX_INVENTORY_BYTES + 1);
    let length = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, length, buf.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MAX_INVENTORY_BYTES) throw refuse(`grew past ${MAX_INVENTORY_BYTES} bytes while it was read`, 'pass a file that is not being written');
    }
    const text = buf.subarray(0, length).toString('utf8');
    if (text.includes('\u0000')) throw refuse('holds NUL bytes: it is not a YAML text file', 'pass the YAML inventory');
    return text;
  } finally {
    await fh.close();
  }
}

export async function loadInventoryFiles(files: string[]): Promise<{ inventory: Inventory; raw: unknown }> {
  let merged: unknown = undefined;
  for (const file of files) {
    const doc = parseYaml(await readInventoryFile(file), file);
    if (doc === null || doc === undefined) continue; // an empty override changes nothing
    if (!isPlainObject(doc)) {
      throw new InventoryError([{ path: file, message: `the file holds ${Array.isArray(doc) ? 'a list' : `the value ${JSON.stringify(doc)}`}, not a map of inventory sections`, fix: 'write a YAML map: version: 1, project: …, hosts: …' }], file);
    }
    merged = merged === undefined ? doc : mergeOverride(merged, doc);
  }
  if (merged === undefined) throw new InventoryError([{ path: files.join(' + ') || '(no file)', message: 'the inventory is empty', fix: 'write version: 1, project: NAME and hosts: { … } in it' }], files.join(' + '));
  return { inventory: parseInventory(merged, files.join(' + ')), raw: merged };
}
