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
