/**
 * What `migrate import compose` tells the operator: one note per thing it changed, could not map,
 * found wrong in the compose file, or needs to be told. Pure: no I/O.
 */
import type { Problem } from '../inventory/load.js';

export type NoteKind =
  /** The compose file is wrong: compose itself would refuse it, or it is an evident mistake. */
  | 'mistake'
  /** The inventory needs something compose does not say (a GPU's model, an image): fill it in. */
  | 'todo'
  /** Mapped, but its form or meaning changed (a secret became a reference, a probe was added). */
  | 'changed'
  /** Left out: the inventory has no place for it. The reason says what that means. */
  | 'unmappable'
  /** How the inventory's model differs from compose's here; nothing to do unless it matters to you. */
  | 'info';

export interface ImportNote {
  kind: NoteKind;
  /** The compose file it comes from. */
  file: string;
  /** 1-based line in that file, when the thing is in it. */
  line?: number;
  /** Where in the compose file, e.g. `services.redis.networks[0]`. */
  path: string;
  message: string;
  fix?: string;
}

/** A literal secret that became a `{ from_env: NAME }` reference: the operator exports NAME. */
export interface SecretToExport {
  /** The variable the worker reads on its host. */
  name: string;
  /** The hosts whose workers need it. */
  hosts: string[];
  /** Where it is used in the inventory, e.g. `services.postgres.environment.POSTGRES_PASSWORD`. */
  usedBy: string[];
  /** Where the literal was in the compose files (file:line path). */
  from: string[];
}

export const KIND_ORDER: NoteKind[] = ['mistake', 'todo', 'changed', 'unmappable', 'info'];

export function noteWhere(n: Pick<ImportNote, 'file' | 'line' | 'path'>): string {
  return `${n.file}${n.line ? `:${n.line}` : ''}${n.path ? ` ${n.path}` : ''}`;
}

/** A note in the project's Problem shape, for the one error printer. */
export function noteProblem(n: ImportNote): Problem {
  return { path: noteWhere(n), message: n.message, fix: n.fix };
}
