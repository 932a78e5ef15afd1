/** Dependency-graph helpers: deterministic topological waves and cycle finding. Pure. */

export type Graph = Map<string, string[]>; // node → the nodes it depends on

/** One cycle (as a closed path a → b → … → a) if the graph has any, else undefined. */
export function findCycle(graph: Graph): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string): string[] | undefined => {
    state.set(node, 'visiting');
    stack.push(node);
    for (const dep of [...(graph.get(node) ?? [])].sort()) {
      if (!graph.has(dep)) continue;
      const s = state.get(dep);
      if (s === 'visiting') return [...stack.slice(stack.indexOf(dep)), dep];
      if (s === undefined) {
        const found = visit(dep);
        if (found) return found;
      }
    }
    stack.pop();
    state.set(node, 'done');
    return undefined;
  };
  for (const node of [...graph.keys()].sort()) {
    if (state.get(node) === undefined) {
      const found = visit(node);
      if (found) return found;
    }
  }
  return undefined;
}

/**
 * Kahn's algorithm in waves: wave 0 has no dependencies, wave k depends only on earlier waves.
 * Names are sorted within a wave so the plan is the same on every run. Assumes no cycle.
 */
export function topologicalWaves(graph: Graph): string[][] {
  const remaining = new Map([...graph].map(([n, deps]) => [n, new Set(deps.filter((d) => graph.has(d)))]));
  const waves: string[][] = [];
  while (remaining.size > 0) {
    const ready = [...remaining].filter(([, deps]) => deps.size === 0).map(([n]) => n).sort();
    if (ready.length === 0) throw new Error('dependency cycle: call findCycle first');
    waves.push(ready);
    for (const n of ready) remaining.delete(n);
    for (const deps of remaining.values()) for (const n of ready) deps.delete(n);
  }
  return waves;
}

/** Every node that depends on `node`, directly or not. */
export function dependents(graph: Graph, node: string): Set<string> {
  const out = new Set<string>();
  const walk = (n: string) => {
    for (const [other, deps] of graph) {
      if (deps.includes(n) && !out.has(other)) {
        out.add(other);
        walk(other);
      }
    }
  };
  walk(node);
  return out;
}

/** Levenshtein distance, for "did you mean …?" hints. */
export function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    let prev = dp[0]!;
    dp[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = dp[j]!;
      dp[j] = Math.min(dp[j]! + 1, dp[j - 1]! + 1, prev + (a[i - 1]!.toLowerCase() === b[j - 1]!.toLowerCase() ? 0 : 1));
      prev = tmp;
    }
  }
  return dp[b.length]!;
}

export function closest(name: string, candidates: Iterable<string>): string | undefined {
  let best: string | undefined;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(name, c);
    if (d < bestD) {
      best = c;
      bestD = d;
    }
  }
  return best !== undefined && bestD <= Math.max(2, Math.floor(name.length / 3)) ? best : undefined;
}
