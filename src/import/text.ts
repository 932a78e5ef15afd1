/**
 * Small text helpers for reading compose files: compose's word splitting of a string `command`,
 * shell quoting for the commands the importer writes, and compose's `${VAR}` interpolation.
 *
 * Pure: no I/O.
 */

/**
 * Split a string the way compose splits a string `command:` (POSIX shlex): whitespace separates
 * words, single quotes are literal, double quotes allow `\"` and `\\`, a backslash outside quotes
 * escapes the next character. Returns undefined for an unterminated quote.
 */
export function splitWords(text: string): string[] | undefined {
  const words: string[] = [];
  let word = '';
  let inWord = false;
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < text.length; i++) {
    const c = text[i]!;
    if (quote === "'") {
      if (c === "'") quote = undefined;
      else word += c;
    } else if (quote === '"') {
      if (c === '"') quote = undefined;
      else if (c === '\\' && (text[i + 1] === '"' || text[i + 1] === '\\' || text[i + 1] === '$')) word += text[++i];
      else word += c;
    } else if (/\s/.test(c)) {
      if (inWord) words.push(word);
      word = '';
      inWord = false;
    } else {
      inWord = true;
      if (c === "'" || c === '"') quote = c;
      else if (c === '\\' && i + 1 < text.length) word += text[++i];
      else word += c;
    }
  }
  if (quote) return undefined;
  if (inWord) words.push(word);
  return words;
}

/** Quote one word for /bin/sh, only when it needs it. */
export function shellQuote(word: string): string {
  if (word !== '' && /^[A-Za-z0-9_./:=,+@%-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** A reference to a whole value, as compose writes it: `$VAR`, `${VAR}`, `${VAR:-default}`, `${VAR:?message}`. */
export interface VarRef {
  name: string;
  /** `${VAR:-default}` / `${VAR-default}`. */
  fallback?: string;
}

const WHOLE_REF_RE = /^\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*)|:?\?[^}]*)?\})$/;

/** The variable when a value is nothing but one `${VAR}` reference. */
export function wholeVarRef(value: string): VarRef | undefined {
  const m = WHOLE_REF_RE.exec(value);
  if (!m) return undefined;
  return { name: (m[1] ?? m[2])!, fallback: m[3] ? m[4] : undefined };
}

const REF_RE = /\$\$|\$(?:([A-Za-z_][A-Za-z0-9_]*)|\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?-)([^}]*)|(:?\?)[^}]*)?\})/g;

/**
 * compose interpolates `${VAR}` from the shell (or `.env`) when it reads the file; the inventory is
 * taken literally. `$$` becomes `$`; `${VAR:-default}` becomes its default; a reference with no
 * default is left as written and named in `unresolved`.
 */
export function interpolate(value: string): { value: string; defaulted: string[]; unresolved: string[] } {
  const defaulted: string[] = [];
  const unresolved: string[] = [];
  const out = value.replace(REF_RE, (whole, bare: string | undefined, braced: string | undefined, op: string | undefined, fallback: string | undefined) => {
    if (whole === '$$') return '$';
    const name = (bare ?? braced)!;
    if (op !== undefined) {
      defaulted.push(name);
      return fallback ?? '';
    }
    unresolved.push(name);
    return whole;
  });
  return { value: out, defaulted, unresolved };
}
