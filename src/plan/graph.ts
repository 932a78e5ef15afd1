/** Dependency-graph helpers: deterministic topological waves and cycle finding. Pure. */

export type Graph = Map<string, string[]>; // node → the nodes it depends on

/**
 * One cycle (as a closed path a → b → … → a) if the graph has any, else undefined.
 * Iterative depth-first search with an explicit stack: a 20,000-long chain does not overflow.
 */
export function findCycle(graph: Graph): string[] | undefined {
  const state = new Map<string, 'visiting' | 'done'>();
  const sortedDeps = (node: string) => [...(graph.get(node) ?? [])].filter((d) => graph.has(d)).sort();
  for (const root of [...graph.keys()].sort()) {
    if (state.has(root)) continue;
    // path[i] is a node being visited, frames[i] its dependencies and the next one to look at.
    const path: string[] = [root];
    const frames: { deps: string[]; next: number }[] = [{ deps: sortedDeps(root), next: 0 }];
    const onPath = new Map<string, number>([[root, 0]]);
    state.set(root, 'visiting');
    while (frames.length > 0) {
      const frame = frames[frames.length - 1]!;
      if (frame.next >= frame.deps.length) {
        const done = path.pop()!;
        frames.pop();
        onPath.delete(done);
        state.set(done, 'done');
        continue;
      }
      const dep = frame.deps[frame.next++]!;
      const s = state.get(dep);
      if (s === 'visiting') return [...path.slice(onPath.get(dep)), dep];
      if (s === undefined) {
        state.set(dep, 'visiting');
        onPath.set(dep, path.length);
        path.push(dep);
        frames.push({ deps: sortedDeps(dep), next: 0 });
      }
    }
  }
  return undefined;
}

/**
 * Kahn's algorithm in waves: wave 0 has no dependencies, wave k depends only on earlier waves.
 * Names are sorted within a wave so the plan is the same on every run. Assumes no cycle.
 * Linear in nodes and edges (plus the sorting of each wave).
 */
export function topologicalWaves(graph: Graph): string[][] {
  const waiting = new Map<string, number>();
  const dependentsOf = new Map<string, string[]>();
  for (const [n, deps] of graph) {
    const unique = [...new Set(deps.filter((d) => graph.has(d)))];
    waiting.set(n, unique.length);
    for (const d of unique) {
      const list = dependentsOf.get(d);
      if (list) list.push(n);
      else dependentsOf.set(d, [n]);
    }
  }
  const waves: string[][] = [];
  let ready = [...waiting].filter(([, k]) => k === 0).map(([n]) => n).sort();
  let placed = 0;
  while (ready.length > 0) {
    waves.push(ready);
    placed += ready.length;
    const next: string[] = [];
    for (const n of ready) {
      for (const m of dependentsOf.get(n) ?? []) {
        const left = waiting.get(m)! - 1;
        waiting.set(m, left);
        if (left === 0) next.push(m);
      }
    }
    ready = next.sort();
  }
  if (placed < graph.size) throw new Error('dependency cycle: call findCycle first');
  return waves;
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
