/**
 * What is wrong with an inventory: `Problem { path, message, fix }` and the error that carries a
 * list of them. Pure (no I/O), so the plan layer and workflow code can import it.
 */
import type { z } from 'zod';

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

type Issue = z.core.$ZodIssue;

const README_FIX = 'see the inventory format in the README';

/** zod's own English messages ("Invalid input", "Too small: …"): replaced by a sentence about the field. */
const isZodDefault = (message: string) => /^(Invalid|Too (big|small)|Unrecognized|Expected)/.test(message);

const KIND: Record<string, string> = {
  object: 'a map (name: value, …)',
  array: 'a list ([a, b] or "- item" lines)',
  string: 'a string',
  number: 'a number',
  int: 'a whole number',
  boolean: 'true or false',
  record: 'a map (name: value, …)',
};
const kind = (t: string) => KIND[t] ?? t;
const receivedOf = (i: Issue) => /received (\w+)/.exec(i.message)?.[1];

/** What a union accepts, when every branch failed on the value's type itself. */
function unionTypes(issue: Issue): string[] | undefined {
  if (issue.code !== 'invalid_union') return undefined;
  const out: string[] = [];
  for (const branch of issue.errors) {
    const only = branch.length === 1 ? branch[0]! : undefined;
    if (!only || only.path.length > 0) return undefined;
    if (only.code === 'invalid_type') out.push(only.expected);
    else if (only.code === 'invalid_value') out.push(only.values.map((v) => JSON.stringify(v)).join(' or '));
    else {
      const inner = unionTypes(only);
      if (!inner) return undefined;
      out.push(...inner);
    }
  }
  return [...new Set(out)];
}

/** The branch of a union that got furthest: its type matched, and it has the fewest problems. */
function bestBranch(issue: Issue & { code: 'invalid_union' }): Issue[] | undefined {
  // A branch whose type did not even match (a string given where a map is expected) got nowhere.
  const typeMismatch = (b: Issue[]) => b.some((i) => i.path.length === 0 && (i.code === 'invalid_type' || unionTypes(i) !== undefined));
  const ranked = [...issue.errors].filter((b) => b.length > 0).sort((a, b) => Number(typeMismatch(a)) - Number(typeMismatch(b)) || a.length - b.length);
  return ranked[0];
}

function issueProblems(issue: Issue, prefix: readonly PropertyKey[]): Problem[] {
  const at = [...prefix, ...issue.path];
  const path = pathToString(at);
  const last = String(at.at(-1) ?? 'it');
  const custom = !isZodDefault(issue.message);
  switch (issue.code) {
    case 'unrecognized_keys':
      return issue.keys.map((key) => ({
        path: path ? `${path}.${key}` : key,
        message: `unknown field "${key}"`,
        fix: 'remove it or check its spelling against the inventory format in the README',
      }));
    case 'invalid_union': {
      const types = unionTypes(issue);
      if (types) {
        const got = receivedOf(issue.errors[0]![0]!);
        const fix = custom ? `correct it as the message says (${README_FIX})` : `write ${types.map(kind).join(', or ')} here (${README_FIX})`;
        return [{ path, message: custom ? issue.message : `expected ${types.map(kind).join(', or ')}${got ? `, got ${got}` : ''}`, fix }];
      }
      const best = bestBranch(issue);
      return best ? best.flatMap((sub) => issueProblems(sub, at)) : [{ path, message: 'this value matches none of the accepted forms', fix: README_FIX }];
    }
    case 'invalid_type': {
      const got = receivedOf(issue);
      if (got === 'undefined') return [{ path, message: 'is required', fix: `add \`${last}:\` (${README_FIX})` }];
      return [{ path, message: custom ? issue.message : `expected ${kind(issue.expected)}${got ? `, got ${got}` : ''}`, fix: `write ${kind(issue.expected)} here (${README_FIX})` }];
    }
    case 'invalid_value': {
      const values = issue.values.map((v) => JSON.stringify(v)).join(', ');
      return [{ path, message: custom ? issue.message : `must be one of ${values}`, fix: `write one of: ${values}` }];
    }
    case 'invalid_format':
      if (issue.format === 'starts_with') {
        const prefix = (issue as { prefix?: string }).prefix ?? '';
        return [{ path, message: custom ? issue.message : `must start with "${prefix}"`, fix: `write it starting with "${prefix}"` }];
      }
      return [{ path, message: custom ? issue.message : `is not a valid ${issue.format}`, fix: custom ? `change it: it ${issue.message}` : `write a valid ${issue.format}${issue.format === 'regex' ? ` matching ${(issue as { pattern?: string }).pattern}` : ''}` }];
    case 'too_small': {
      const min = String(issue.minimum);
      const what = issue.origin === 'array' ? `needs at least ${min} entr${min === '1' ? 'y' : 'ies'}` : issue.origin === 'string' ? `needs at least ${min} character(s)` : `must be ${issue.inclusive ? 'at least' : 'more than'} ${min}`;
      return [{ path, message: custom ? issue.message : what, fix: issue.origin === 'array' ? `add at least ${min} entr${min === '1' ? 'y' : 'ies'}` : issue.origin === 'string' ? 'write a value, or remove the field' : `write a number ${issue.inclusive ? '≥' : '>'} ${min}` }];
    }
    case 'too_big': {
      const max = String(issue.maximum);
      return [{ path, message: custom ? issue.message : `must be ${issue.inclusive ? 'at most' : 'less than'} ${max}`, fix: issue.origin === 'number' ? `write a number ${issue.inclusive ? '≤' : '<'} ${max}` : `shorten it to at most ${max}` }];
    }
    case 'invalid_key': {
      const inner = issue.issues.map((i) => i.message).join('; ');
      return [{ path, message: `invalid name "${last}": ${inner}`, fix: `rename "${last}": it ${inner}` }];
    }
    case 'custom': {
      const fix = (issue.params as { fix?: string } | undefined)?.fix;
      return [{ path, message: issue.message, fix: fix ?? `correct it as the message says (${README_FIX})` }];
    }
    default:
      return [{ path, message: custom ? issue.message : `is not valid here (${issue.message})`, fix: README_FIX }];
  }
}

/** zod's issues → problems that name the field and say how to fix it (never a bare "Invalid input"). */
export function zodProblems(error: z.ZodError): Problem[] {
  return error.issues.flatMap((issue) => issueProblems(issue, []));
}
