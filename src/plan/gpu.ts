/**
 * GPU memory that adds up: which GPU(s) of which host each GPU unit gets, so that on every GPU the
 * summed `min_vram_gb` of the units placed on it fits its memory. Pure and deterministic.
 *
 * - Biggest needs first (by `min_vram_gb`, then by count; declaration order breaks ties): a small
 *   need placed early cannot take the room a big one needed.
 * - Best fit: each need goes to the smallest GPU(s) that still have room (then the fullest of
 *   those), so big GPUs stay free for big needs. Hosts are compared the same way (their chosen
 *   GPUs' total memory, then what those would have left); the inventory's host order breaks ties.
 * - `count: N` takes N GPUs of one host; `count: all` takes every GPU of its host, each with room.
 * - A need that fits nowhere is a problem naming each GPU it could have used, what is already
 *   placed on it and what is free.
 *
 * GPU indexes are positions in the host's declared `gpus` list: declare them in `nvidia-smi`'s
 * order, since the container is given those device ids.
 */
import type { Problem } from '../inventory/problems.js';

export interface GpuHost {
  name: string;
  gpus: { model: string; vramGb: number }[];
}

export interface GpuNeed {
  unit: string;
  /** The unit's path in the inventory (`services.x`), for problems. */
  path: string;
  count: number | 'all';
  minVramGb: number;
  /** The hosts its placement allows, in the inventory's host order. */
  hosts: string[];
}

export interface GpuAssignment {
  host: string;
  indexes: number[];
}

export interface GpuPacking {
  assigned: Map<string, GpuAssignment>;
  problems: Problem[];
}

interface GpuState {
  host: string;
  index: number;
  model: string;
  vramGb: number;
  placed: { unit: string; gb: number }[];
  free: number;
}

const gb = (n: number) => `${Math.round(n * 100) / 100} GB`;
const countOf = (need: GpuNeed, gpus: number) => (need.count === 'all' ? gpus : need.count);

/** The GPUs a need would take on one host (fewest free first), or undefined if it has no room there. */
function bestOnHost(gpus: GpuState[], need: GpuNeed): GpuState[] | undefined {
  const k = countOf(need, gpus.length);
  if (k === 0) return undefined;
  const roomy = gpus.filter((g) => g.free >= need.minVramGb).sort((a, b) => a.vramGb - b.vramGb || a.free - b.free || a.index - b.index);
  return roomy.length >= k ? roomy.slice(0, k) : undefined;
}

/** Whether the host could ever meet the need (its GPUs empty). */
function couldMeet(gpus: GpuState[], need: GpuNeed): boolean {
  const k = countOf(need, gpus.length);
  return k > 0 && gpus.filter((g) => g.vramGb >= need.minVramGb).length >= k;
}

export function describeGpu(g: GpuState): string {
  const placed = g.placed.length ? g.placed.map((p) => `${p.unit} ${gb(p.gb)}`).join(' + ') : 'nothing placed';
  return `${g.host} GPU ${g.index} (${g.model}, ${gb(g.vramGb)}): ${placed}, ${gb(g.free)} free`;
}

export function packGpus(hosts: GpuHost[], needs: GpuNeed[]): GpuPacking {
  const byHost = new Map(hosts.map((h) => [h.name, h.gpus.map((g, index): GpuState => ({ host: h.name, index, model: g.model, vramGb: g.vramGb, placed: [], free: g.vramGb }))]));
  const hostOrder = new Map(hosts.map((h, i) => [h.name, i]));
  const assigned = new Map<string, GpuAssignment>();
  const problems: Problem[] = [];
  const sizeOf = (n: GpuNeed) => (n.count === 'all' ? Number.MAX_SAFE_INTEGER : n.count);
  // Stable sort: declaration order breaks ties.
  const order = needs.map((n, i) => ({ n, i })).sort((a, b) => b.n.minVramGb - a.n.minVramGb || sizeOf(b.n) - sizeOf(a.n) || a.i - b.i).map((x) => x.n);

  for (const need of order) {
    let best: { host: string; gpus: GpuState[]; size: number; left: number } | undefined;
    for (const host of need.hosts) {
      const chosen = bestOnHost(byHost.get(host) ?? [], need);
      if (!chosen) continue;
      const size = chosen.reduce((s, g) => s + g.vramGb, 0);
      const left = chosen.reduce((s, g) => s + g.free - need.minVramGb, 0);
      const better = !best || size < best.size || (size === best.size && (left < best.left || (left === best.left && hostOrder.get(host)! < hostOrder.get(best.host)!)));
      if (better) best = { host, gpus: chosen, size, left };
    }
    if (best) {
      for (const g of best.gpus) {
        g.placed.push({ unit: need.unit, gb: need.minVramGb });
        g.free -= need.minVramGb;
      }
      assigned.set(need.unit, { host: best.host, indexes: best.gpus.map((g) => g.index).sort((a, b) => a - b) });
      continue;
    }
    problems.push(fitsNowhere(need, need.hosts.flatMap((h) => byHost.get(h) ?? []), need.hosts.some((h) => couldMeet(byHost.get(h) ?? [], need))));
  }
  return { assigned, problems };
}

function fitsNowhere(need: GpuNeed, gpus: GpuState[], onlyTaken: boolean): Problem {
  const wants = need.count === 'all' ? 'all the GPUs of its host (at least one)' : `${need.count} GPU(s) of one host`;
  const where = gpus.length ? gpus.map(describeGpu).join('; ') : `${need.hosts.join(', ')} declare${need.hosts.length === 1 ? 's' : ''} no GPU`;
  if (onlyTaken) {
    return {
      path: `${need.path}.gpu`,
      message: `needs ${wants} with ${gb(need.minVramGb)} free each, but the units placed first (biggest needs first) leave no room: ${where}`,
      fix: 'lower gpu.min_vram_gb here or on a unit already placed, move one of them to another host (placement), or declare another GPU',
    };
  }
  return {
    path: `${need.path}.gpu`,
    message: `needs ${wants} with ${gb(need.minVramGb)} each, more than any of its possible GPUs has even when empty: ${where}`,
    fix: 'lower gpu.min_vram_gb or gpu.count, place it on a host with such a GPU, or declare that GPU on its host',
  };
}
