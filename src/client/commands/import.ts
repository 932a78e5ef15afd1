/**
 * `migrate import compose FILE… [--host NAME]… [-o inventory.yaml] [--project NAME] [--json]`:
 * write an inventory from compose files, one file per host. Reads and writes files; the mapping
 * itself is src/import/compose.ts (pure).
 *
 * Exit codes: 0 written and it plans; 2 bad input (a file unreadable or not YAML, a duplicate key:
 * nothing written), or written but `migrate plan` would still refuse it (the problems are listed).
 */
import { access, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { Command } from 'commander';
import { z } from 'zod';
import { InventoryError, formatProblem, type Problem } from '../../inventory/load.js';
import { HOST_NAME_RE } from '../../inventory/schema.js';
import { importCompose, type ComposeSource } from '../../import/compose.js';
import { KIND_ORDER, noteWhere, type ImportNote, type NoteKind } from '../../import/notes.js';
import { BadInput } from '../../ops/errors.js';
import { action, collect, parseOptions, printJson } from '../common.js';

const importOptions = z.object({
  host: z.array(z.string().regex(HOST_NAME_RE, { message: 'must be lowercase letters, digits and "-", starting with a letter (it becomes the task queue host-<name>)' })).default([]),
  output: z.string().min(1).optional(),
  project: z.string().regex(/^[a-z][a-z0-9-]{0,30}$/, { message: 'must be lowercase letters, digits and "-", starting with a letter' }).optional(),
  json: z.boolean().default(false),
  force: z.boolean().default(false),
});

const HEADINGS: Record<NoteKind, string> = {
  mistake: 'mistakes in the compose files',
  todo: 'to fill in: compose does not say',
  changed: 'changed on the way',
  unmappable: 'left out: the inventory has no place for these',
  info: 'how the inventory differs from compose here',
};

const MARK: Record<NoteKind, string> = { mistake: '✗', todo: '!', changed: '~', unmappable: '-', info: '·' };

function formatNote(n: ImportNote): string {
  return `  ${MARK[n.kind]} ${noteWhere(n)}: ${n.message}${n.fix ? `\n      fix: ${n.fix}` : ''}`;
}

export function registerImport(program: Command): void {
  const cmd = program.command('import').description('write an inventory from files in another format');
  cmd
    .command('compose')
    .description('write an inventory from docker-compose files, one file per host (file 1 → host 1)')
    .argument('<files...>', 'compose files')
    .option('--host <name>', 'the host of the file in the same position (repeat; default: from the file name, e.g. docker-compose.pc2.yml → pc2, else main)', collect)
    .option('-o, --output <file>', 'write the inventory here (default: print it)')
    .option('--project <name>', 'the inventory\'s project (default: the compose name:, else the folder\'s name)')
    .option('--force', 'overwrite the output file')
    .option('--json', 'machine-readable output')
    .action(action(async (files: string[], raw: unknown) => {
      const opts = parseOptions(importOptions, raw);
      if (opts.host.length > files.length) {
        throw new BadInput('more --host than files', [{ path: '--host', message: `${opts.host.length} hosts for ${files.length} file(s)`, fix: 'give one --host per compose file, in the same order' }]);
      }
      const outDir = path.resolve(opts.output ? path.dirname(opts.output) : '.');
      if (opts.output && !opts.force && await access(opts.output).then(() => true, () => false)) {
        throw new BadInput(`${opts.output} exists: nothing was written`, [{ path: '--output', message: 'would overwrite an existing file', fix: 'pass --force, or write to another file' }]);
      }

      const sources: ComposeSource[] = [];
      const unreadable: Problem[] = [];
      for (const [i, file] of files.entries()) {
        try {
          const text = await readFile(file, 'utf8');
          sources.push({ file, text, host: opts.host[i], baseDir: path.relative(outDir, path.dirname(path.resolve(file))) || '.' });
        } catch (err) {
          unreadable.push({ path: file, message: `cannot read it: ${(err as Error).message}`, fix: 'pass an existing compose file' });
        }
      }
      if (unreadable.length) throw new BadInput('cannot read the compose files: nothing was written', unreadable);

      let result;
      try {
        result = importCompose(sources, {
          project: opts.project,
          fallbackProject: path.basename(path.dirname(path.resolve(files[0]!))),
          output: opts.output,
        });
      } catch (err) {
        if (err instanceof InventoryError) throw new BadInput('the compose files cannot be read as YAML: nothing was written', err.problems);
        throw err;
      }

      if (opts.output) await writeFile(opts.output, result.yaml);
      const ok = result.problems.length === 0;
      if (opts.json) {
        printJson({ ok, output: opts.output, project: result.project, hosts: result.hosts, secrets: result.secrets, notes: result.notes, problems: result.problems, ...(opts.output ? {} : { inventory: result.inventory }) });
        return ok ? 0 : 2;
      }
      if (!opts.output) process.stdout.write(result.yaml);
      const err = (s: string) => process.stderr.write(`${s}\n`);
      err(`${opts.output ? `wrote ${opts.output}` : 'the inventory is above'}: project ${result.project}, ${result.hosts.map((h) => `${h.file} → host ${h.host}`).join(', ')}`);
      for (const kind of KIND_ORDER) {
        const notes = result.notes.filter((n) => n.kind === kind);
        if (notes.length === 0) continue;
        err(`\n${HEADINGS[kind]} (${notes.length}):`);
        for (const n of notes) err(formatNote(n));
      }
      if (result.secrets.length) {
        err(`\nsecrets: the compose files wrote ${result.secrets.length} secret(s) literally; export each in the environment of the named hosts' workers before deploying:`);
        for (const s of result.secrets) err(`  ${s.name}  (on ${s.hosts.join(', ')}; for ${s.usedBy.join(', ')})`);
      }
      if (ok) {
        err(`\nit plans: check it with \`migrate plan -i ${opts.output ?? 'FILE'}\``);
        return 0;
      }
      err(`\n\`migrate plan\` would refuse it (${result.problems.length} problem${result.problems.length === 1 ? '' : 's'}): fix these in the compose files and import again, or in the written inventory:`);
      for (const p of result.problems) err(formatProblem(p));
      return 2;
    }));
}
