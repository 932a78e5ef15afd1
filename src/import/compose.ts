/**
 * compose files in → an inventory out (`migrate import compose`).
 *
 * One compose file per host: the file's services are placed on that host. Every service field is
 * mapped (service.ts), mapped with a note, or left out with the reason; literal secrets become
 * `{ from_env: NAME }` references and are listed for the operator. The result is then checked the
 * way `migrate plan` checks an inventory, and what still stands in the way is returned with fixes.
 *
 * Pure: compose texts in, inventory + YAML + notes out. Reading and writing files is the CLI's job.
 */
import { Document, isMap, isScalar, isSeq, LineCounter, parseDocument, visit, type Node } from 'yaml';
import { InventoryError, parseInventory, pathToString, type Problem } from '../inventory/load.js';
import { HOST_NAME_RE, NAME_RE } from '../inventory/schema.js';
import { buildPlan } from '../plan/plan.js';
import { closest } from '../plan/graph.js';
import { networkName } from '../plan/queues.js';
import { KIND_ORDER, noteWhere, type ImportNote, type NoteKind, type SecretToExport } from './notes.js';
import { mapService, type MappedService } from './service.js';

export interface ComposeSource {
  /** The file's name as the operator wrote it (used in notes). */
  file: string;
  text: string;
  /** The host this file's services run on (default: from the file's name, else `main`). */
  host?: string;
  /** The compose file's folder, relative to the inventory's folder (rebases `./…` paths). Default: the same folder. */
  baseDir?: string;
}

export interface ImportOptions {
  /** The inventory's project; default: the compose `name:`, else `fallbackProject`, else `app`. */
  project?: string;
  fallbackProject?: string;
  /** The inventory file's name, for the header comment. */
  output?: string;
}

export interface ImportResult {
  project: string;
  hosts: { file: string; host: string }[];
  inventory: Record<string, unknown>;
  yaml: string;
  notes: ImportNote[];
  secrets: SecretToExport[];
  /** What `migrate plan` would still refuse in the written inventory; empty: it plans. */
  problems: Problem[];
}

type Key = string | number;

const TOP_LEVEL = ['version', 'name', 'services', 'networks', 'volumes', 'secrets', 'configs', 'include'];
/** File-name words that name a variant of the stack, not a machine. */
const NOT_A_HOST = new Set(['complete', 'prod', 'production', 'dev', 'development', 'override', 'local', 'base', 'staging', 'test', 'ci', 'default']);

/** `docker-compose.mainpc.yml` → `mainpc`; `docker-compose.yml` → undefined. */
export function hostFromFileName(file: string): string | undefined {
  const base = file.split(/[\\/]/).pop()!.replace(/\.ya?ml$/i, '').replace(/^(docker-)?compose([._-]|$)/i, '');
  const name = base.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '').slice(0, 31);
  return name && !NOT_A_HOST.has(name) && HOST_NAME_RE.test(name) ? name : undefined;
}

function projectName(raw: string): string {
  const name = raw.toLowerCase().replace(/[^a-z0-9-]+/g, '-').replace(/^[^a-z]+/, '').replace(/-+$/, '').slice(0, 31);
  return name || 'app';
}

const isPlainMap = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

interface Parsed {
  source: ComposeSource;
  doc: Document;
  lines: LineCounter;
  js: Record<string, unknown>;
}

/** Parse strictly; a duplicate key or a syntax error is bad input, reported with its line and a fix. */
function parseCompose(source: ComposeSource): Parsed | Problem[] {
  const lines = new LineCounter();
  const doc = parseDocument(source.text, { uniqueKeys: true, merge: true, lineCounter: lines });
  if (doc.errors.length > 0) {
    const textLines = source.text.split('\n');
    return doc.errors.map((e) => {
      const pos = e.linePos?.[0];
      const where = pos ? `${source.file}:${pos.line}` : source.file;
      if (e.code !== 'DUPLICATE_KEY' || !pos) return { path: where, message: e.message.split('\n')[0] ?? e.message, fix: 'fix the YAML syntax at that line' };
      const lineText = textLines[pos.line - 1] ?? '';
      const key = /^\s*(?:-\s+)?("[^"]*"|'[^']*'|[^:#]+?)\s*:/.exec(lineText)?.[1]?.replace(/^["']|["']$/g, '') ?? '?';
      const indent = /^\s*/.exec(lineText)![0].length;
      const first = textLines.slice(0, pos.line - 1).findIndex((l) => new RegExp(`^\\s{${indent}}${key.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*:`).test(l));
      return {
        path: where,
        message: `duplicate key "${key}"${first >= 0 ? ` (first at line ${first + 1})` : ''}: compose keeps only one of the two, silently`,
        fix: `merge the two \`${key}:\` maps into one${first >= 0 ? ` (lines ${first + 1} and ${pos.line})` : ''}, or rename one`,
      };
    });
  }
  const js: unknown = doc.toJS();
  if (!isPlainMap(js)) return [{ path: source.file, message: 'is not a compose file: expected a map with `services:`', fix: 'pass a docker-compose YAML file' }];
  return { source, doc, lines, js };
}

/** 1-based line of a path in the document: the key's line, else the nearest ancestor's. */
function lineOf(p: Parsed, path: Key[]): number | undefined {
  let node: unknown = p.doc.contents;
  let line: number | undefined;
  const lineAt = (n: unknown) => {
    const range = (n as Node | null)?.range;
    return range ? p.lines.linePos(range[0]).line : undefined;
  };
  for (const key of path) {
    if (isMap(node)) {
      const pair = node.items.find((it) => isScalar(it.key) && String(it.key.value) === String(key));
      if (!pair) break;
      line = lineAt(pair.key) ?? line;
      node = pair.value;
    } else if (isSeq(node) && typeof key === 'number') {
      const item = node.items[key];
      if (!item) break;
      line = lineAt(item) ?? line;
      node = item;
    } else break;
  }
  return line;
}

export function importCompose(sources: ComposeSource[], options: ImportOptions = {}): ImportResult {
  // --- Parse every file; any that cannot be read is bad input ---------------------------------
  const parsed: Parsed[] = [];
  const parseProblems: Problem[] = [];
  for (const s of sources) {
    const r = parseCompose(s);
    if (Array.isArray(r)) parseProblems.push(...r);
    else parsed.push(r);
  }
  if (parseProblems.length) throw new InventoryError(parseProblems, sources.map((s) => s.file).join(' + '));
  if (options.project !== undefined && !/^[a-z][a-z0-9-]{0,30}$/.test(options.project)) {
    throw new InventoryError([{ path: '--project', message: `"${options.project}" is not a project name`, fix: 'use lowercase letters, digits and "-", starting with a letter' }]);
  }

  const notes: ImportNote[] = [];
  const noteIn = (p: Parsed, kind: NoteKind, path: Key[], message: string, fix?: string) =>
    notes.push({ kind, file: p.source.file, line: lineOf(p, path), path: pathToString(path), message, ...(fix ? { fix } : {}) });

  const composeName = parsed.map((p) => p.js.name).find((n): n is string => typeof n === 'string');
  const project = options.project ?? projectName(composeName ?? options.fallbackProject ?? 'app');
  if (!options.project) {
    notes.push({ kind: 'info', file: parsed[0]?.source.file ?? '', path: composeName ? 'name' : '', message: `project "${project}" ${composeName ? 'from the compose name' : options.fallbackProject ? 'from the folder\'s name' : 'by default'}: it prefixes every container, network and volume`, fix: 'choose it with --project NAME' });
  }

  // --- Hosts: one per file ----------------------------------------------------------------------
  const hostOf = parsed.map((p) => p.source.host ?? hostFromFileName(p.source.file) ?? 'main');
  const hosts: Record<string, Record<string, unknown>> = {};
  const units: Record<string, Record<string, unknown>> = {};
  const unitOrigin = new Map<string, { host: string; file: string }>();
  const secrets = new Map<string, SecretToExport & { value: string }>();
  const gpuUnits = new Map<string, string[]>();

  parsed.forEach((p, fileIndex) => {
    const host = hostOf[fileIndex]!;
    const { file } = p.source;
    if (!p.source.host) noteIn(p, 'info', [], `its services run on host "${host}" (${hostFromFileName(file) ? 'from the file\'s name' : 'the default'})`, 'choose the host with --host NAME (one per file, in order)');
    hosts[host] ??= { docker: { socket: '/var/run/docker.sock' } };

    // Top level
    let servicesPath: Key[] = ['services'];
    let services: Record<string, unknown> = isPlainMap(p.js.services) ? p.js.services : {};
    const strays = Object.keys(p.js).filter((k) => !TOP_LEVEL.includes(k) && !k.startsWith('x-'));
    if (p.js.services === undefined && strays.length > 0 && strays.every((k) => isPlainMap(p.js[k]))) {
      servicesPath = [];
      services = Object.fromEntries(strays.map((k) => [k, p.js[k]]));
      noteIn(p, 'mistake', [strays[0]!], `the file has no \`services:\` key: its top-level entries (${strays.join(', ')}) look like services, a fragment meant to be added under \`services:\`; compose would refuse the file. Imported as services`, 'indent them under `services:`');
    } else {
      for (const k of strays) noteIn(p, 'mistake', [k], `"${k}" is not a top-level compose key: left out`, 'remove it, or move it under services: if it is a service');
    }
    if (p.js.services !== undefined && !isPlainMap(p.js.services)) noteIn(p, 'mistake', ['services'], 'services must be a map');
    if (p.js.version !== undefined) noteIn(p, 'info', ['version'], 'the compose version is obsolete and not needed: the inventory has its own `version: 1`');
    for (const k of ['secrets', 'configs']) if (p.js[k] !== undefined) noteIn(p, 'unmappable', [k], `top-level ${k} are left out: pass secrets as { from_env } / { from_file } references and files with volumes`);
    if (p.js.include !== undefined) noteIn(p, 'unmappable', ['include'], 'include is not followed', 'pass the included files as more FILE arguments, with the same --host');

    const declaredNetworks = isPlainMap(p.js.networks) ? new Set(Object.keys(p.js.networks)) : undefined;
    const declaredVolumes = new Set(isPlainMap(p.js.volumes) ? Object.keys(p.js.volumes) : []);
    const networkNames = [...declaredNetworks ?? []];
    if (declaredNetworks || Object.values(services).some((s) => isPlainMap(s) && s.networks !== undefined)) {
      noteIn(p, 'info', declaredNetworks ? ['networks'] : [], `the inventory gives each host one network, ${networkName(project, host)}, on which every unit reaches the others by unit name${networkNames.length ? `: the networks ${networkNames.join(', ')} are not kept, so units compose kept apart can reach each other on ${host}` : ''}. Units on other hosts are reached at their host's address and published port`);
      for (const [n, spec] of Object.entries(isPlainMap(p.js.networks) ? p.js.networks : {})) {
        if (isPlainMap(spec)) for (const k of Object.keys(spec)) if (k !== 'driver' || spec[k] !== 'bridge') noteIn(p, 'unmappable', ['networks', n, k], `networks.${n}.${k} is left out: the host's network is a plain bridge`);
      }
    }
    for (const [v, spec] of Object.entries(isPlainMap(p.js.volumes) ? p.js.volumes : {})) {
      if (isPlainMap(spec)) for (const k of Object.keys(spec)) noteIn(p, 'unmappable', ['volumes', v, k], `volumes.${v}.${k} is left out: named volumes are local, created on the unit's host as ${project}-${host}-${v}`);
    }

    // Services
    const rename = new Map<string, string>();
    const mapped: [string, MappedService, Key[]][] = [];
    for (const [composeName, raw] of Object.entries(services)) {
      const base = [...servicesPath, composeName];
      let name = NAME_RE.test(composeName) ? composeName : `s-${composeName.replace(/[^A-Za-z0-9_.-]+/g, '-')}`.slice(0, 63);
      if (name !== composeName) noteIn(p, 'changed', base, `the service name "${composeName}" is written as "${name}" (a unit name starts with a letter)`);
      const earlier = unitOrigin.get(name);
      if (earlier && earlier.host !== host) {
        const renamed = `${name}-${host}`;
        noteIn(p, 'changed', base, `"${name}" is also a service on ${earlier.host} (${earlier.file}): the inventory has one namespace, so this one is "${renamed}"; on ${host}'s network the others reach it as "${renamed}"`, `rename it in the inventory if another name suits better, and update what connects to "${name}" on ${host}`);
        name = renamed;
      } else if (earlier) {
        noteIn(p, 'changed', base, `replaces the definition of "${name}" from ${earlier.file}, whole (compose would merge the two field by field)`, 'merge the two definitions by hand if both matter');
      }
      rename.set(composeName, name);
      if (!isPlainMap(raw)) {
        noteIn(p, 'mistake', base, 'a service must be a map of fields: left out');
        continue;
      }
      const m = mapService(raw, {
        name,
        host,
        base: pathToString(base),
        networks: declaredNetworks,
        volumes: declaredVolumes,
        note: (kind, rel, message, fix) => noteIn(p, kind, [...base, ...rel], message, fix),
        rebase: (path) => rebase(p.source.baseDir, path),
        secret: (envKey, value, usedBy, rel) => {
          const where = [...base, ...rel];
          const exported = registerSecret(secrets, { project, service: name, host, envKey, value, usedBy, from: `${file}:${lineOf(p, where) ?? ''} ${pathToString(where)}` });
          noteIn(p, 'changed', where, `a literal secret: written as { from_env: ${exported} }, which the worker reads on ${host} (the value is not copied into the inventory)`, `export ${exported} in the environment of ${host}'s worker`);
          return exported;
        },
      });
      unitOrigin.set(name, { host, file });
      units[name] = m.unit;
      mapped.push([name, m, base]);
      if (m.usesGpu) gpuUnits.set(host, [...gpuUnits.get(host) ?? [], name]);
    }
    if (Object.keys(services).length === 0) noteIn(p, 'mistake', ['services'], 'no services found');
    else noteIn(p, 'info', servicesPath.length ? ['services'] : [], `${mapped.length} service(s) placed on ${host}: ${mapped.map(([n]) => n).join(', ')}`);

    // depends_on, by the names of this file (a service of another file is another host's unit)
    const short: string[] = [];
    for (const [name, m, base] of mapped) {
      if (m.shortDependsOn) short.push(name);
      const deps: Record<string, { condition: string }> = {};
      for (const [dep, cond] of Object.entries(m.dependsOn)) {
        const target = rename.get(dep) ?? (units[dep] || sources.length > 1 ? dep : undefined);
        if (!rename.has(dep)) {
          const hint = closest(dep, rename.keys());
          noteIn(p, units[dep] ? 'info' : 'mistake', [...base, 'depends_on'], units[dep]
            ? `depends on "${dep}", a service of another file (host ${unitOrigin.get(dep)?.host}): compose alone would refuse this file; the inventory waits for it across hosts`
            : `depends on "${dep}", which no file declares${hint ? ` (did you mean "${hint}"?)` : ''}`,
          units[dep] ? undefined : hint ? `write "${hint}"` : `declare "${dep}" or remove the dependency`);
        }
        deps[target ?? dep] = cond;
      }
      if (Object.keys(deps).length) insertAfter(units[name]!, 'healthcheck', 'depends_on', deps);
    }
    if (short.length) {
      noteIn(p, 'changed', [...servicesPath, short[0]!, 'depends_on'], `compose's short depends_on waits only for the container to start: written as { condition: service_started } to keep that meaning (the inventory's short form would wait until healthy), for ${short.join(', ')}`,
        'write condition: service_healthy where a service needs its dependency to be ready');
    }
    const gpus = gpuUnits.get(host);
    if (gpus) {
      hosts[host] = { ...hosts[host], gpus: [], gpu_runtime: 'nvidia' };
      noteIn(p, 'todo', [], `${gpus.join(', ')} reserve${gpus.length === 1 ? 's' : ''} a GPU, but compose does not say which GPUs ${host} has: gpu_runtime: nvidia is set, the GPU list is empty`,
        `declare them: hosts.${host}.gpus: [{ model: RTX 4090, vram_gb: 24 }] (your model and memory)`);
    }
    noteIn(p, 'info', [], `host ${host}: its worker reaches Docker at /var/run/docker.sock and publishes ports on 127.0.0.1 (compose publishes on every interface)`,
      `set hosts.${host}.address to the address other machines reach, and hosts.${host}.docker: { host: tcp://…:2376, tls: … } for a remote engine`);
  });

  const inventory: Record<string, unknown> = { version: 1, project, hosts, services: units };

  let problems: Problem[] = [];
  try {
    buildPlan(parseInventory(inventory, 'the imported inventory'));
  } catch (err) {
    if (!(err instanceof InventoryError)) throw err;
    problems = err.problems;
  }

  const fileIndex = new Map(parsed.map((p, i) => [p.source.file, i]));
  notes.sort((a, b) => KIND_ORDER.indexOf(a.kind) - KIND_ORDER.indexOf(b.kind) || fileIndex.get(a.file)! - fileIndex.get(b.file)! || (a.line ?? 0) - (b.line ?? 0));
  const secretList = [...secrets.values()].map(({ value: _value, ...s }) => s);
  const hostList = parsed.map((p, i) => ({ file: p.source.file, host: hostOf[i]! }));
  return { project, hosts: hostList, inventory, yaml: toYaml(inventory, hostList, notes, secretList, problems, options.output), notes, secrets: secretList, problems };
}

/** `./x` in a compose file in `baseDir` → the same path, relative to the inventory's folder. */
function rebase(baseDir: string | undefined, path: string): string {
  if (path.startsWith('/') || !baseDir || baseDir === '.') return path;
  const parts = `${baseDir}/${path}`.split('/');
  const out: string[] = [];
  for (const part of parts) {
    if (part === '..' && out.length > 0 && out.at(-1) !== '..') out.pop();
    else if (part !== '.' && part !== '') out.push(part);
  }
  const joined = out.join('/') || '.';
  return baseDir.startsWith('/') ? `/${joined}` : joined.startsWith('..') || joined === '.' ? joined : `./${joined}`;
}

function registerSecret(
  secrets: Map<string, SecretToExport & { value: string }>,
  s: { project: string; service: string; host: string; envKey: string; value: string; usedBy: string; from: string },
): string {
  const up = (x: string) => x.toUpperCase().replace(/[^A-Z0-9]+/g, '_').replace(/^_+|_+$/g, '');
  const base = `${up(s.project)}_${up(s.envKey)}`;
  const candidates = [base, `${up(s.project)}_${up(s.service)}_${up(s.envKey)}`, `${up(s.project)}_${up(s.service)}_${up(s.host)}_${up(s.envKey)}`];
  for (let i = 2; candidates.length < 50; i++) candidates.push(`${base}_${i}`);
  const name = candidates.find((c) => !secrets.has(c) || secrets.get(c)!.value === s.value)!;
  const entry = secrets.get(name) ?? { name, value: s.value, hosts: [], usedBy: [], from: [] };
  if (!entry.hosts.includes(s.host)) entry.hosts.push(s.host);
  entry.usedBy.push(s.usedBy);
  entry.from.push(s.from);
  secrets.set(name, entry);
  return name;
}

/** Keep the inventory's field order readable: depends_on after the health check. */
function insertAfter(obj: Record<string, unknown>, after: string, key: string, value: unknown): void {
  const entries = Object.entries(obj).filter(([k]) => k !== key);
  const i = entries.findIndex(([k]) => k === after);
  const at = i >= 0 ? i + 1 : entries.findIndex(([k]) => k === 'placement');
  entries.splice(at >= 0 ? at : entries.length, 0, [key, value]);
  for (const k of Object.keys(obj)) delete obj[k];
  Object.assign(obj, Object.fromEntries(entries));
}

function toYaml(inventory: Record<string, unknown>, hosts: { file: string; host: string }[], notes: ImportNote[], secrets: SecretToExport[], problems: Problem[], output?: string): string {
  const doc = new Document(inventory);
  // Short lists and small maps of scalars on one line, as the README writes them.
  visit(doc, {
    Scalar(_, node) {
      // "8051:8051" is a string in YAML 1.2 but a number to YAML 1.1 readers: quote it for people and old tools.
      if (typeof node.value === 'string' && /^[\d.:]+(\/udp)?$/.test(node.value)) node.type = 'QUOTE_DOUBLE';
    },
    Seq(_, node) {
      if (node.items.every((i) => isScalar(i)) && node.items.length > 0) node.flow = true;
    },
    Map(_, node) {
      if (node.items.length > 0 && node.items.length <= 3 && node.items.every((i) => isScalar(i.value) || (isSeq(i.value) && i.value.items.length === 0))) node.flow = true;
    },
  });
  const header = [
    ` Written by \`migrate import compose\` from ${hosts.map((h) => `${h.file} (host ${h.host})`).join(', ')}.`,
    ` Check it with \`migrate plan -i ${output ?? 'THIS_FILE'}\`.`,
  ];
  if (problems.length) {
    header.push('', ` \`migrate plan\` refuses it until these are fixed (${problems.length}):`);
    for (const p of problems) header.push(`   ${p.path}: ${p.message}`, ...(p.fix ? [`     fix: ${p.fix}`] : []));
  }
  if (secrets.length) {
    header.push('', ' Secrets: the compose files wrote these literally; export each in the environment of the named hosts\' workers:');
    for (const s of secrets) header.push(`   ${s.name}  (on ${s.hosts.join(', ')}: ${s.usedBy.join(', ')})`);
  }
  const worth = notes.filter((n) => n.kind !== 'info');
  if (worth.length) {
    header.push('', ' What the import changed or left out (all notes: `migrate import compose --json`):');
    for (const n of worth) header.push(`   [${n.kind}] ${noteWhere(n)}: ${n.message}`);
  }
  doc.commentBefore = header.join('\n');
  return doc.toString({ lineWidth: 0, flowCollectionPadding: true });
}
