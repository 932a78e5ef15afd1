/**
 * Where each unit of a lost host goes (pure: no I/O). The inventory's `failover: { to: [...] }` lists
 * the candidate hosts in order; the first one that is up and where the unit plans — placement, GPU
 * and VRAM, ports — takes it. The unit's spec on that host is the plan's own (its ports bound to that
 * host's address, its GPUs chosen there), from the inventory with the unit placed there: moves made
 * earlier in the list count, so two moved units never clash.
 */
import type { Inventory } from '../inventory/schema.js';
import { InventoryError } from '../inventory/problems.js';
import { buildPlan, type PlanOptions, type UnitSpec } from './plan.js';

export interface FailoverMove {
  unit: string;
  from: string;
  to: string;
  /** The unit as it runs on `to`. */
  spec: UnitSpec;
  /** Its spec on `from`, for the way back (failback). */
  home: UnitSpec;
  /** Holds data: waits for an operator's approval, then its latest verified backup is restored. */
  stateful: boolean;
  backup?: string;
}

export interface FailoverPlan {
  lostHost: string;
  moves: FailoverMove[];
  /** Units of the lost host that stay down, and why. */
  stays: { unit: string; reason: string }[];
}

const declared = (inv: Inventory, unit: string) => inv.services[unit] ?? inv.agents[unit];

function placedOn(inv: Inventory, unit: string, host: string): Inventory {
  const where = inv.services[unit] ? 'services' : 'agents';
  return { ...inv, [where]: { ...inv[where], [unit]: { ...declared(inv, unit)!, placement: { host } } } };
}

export function planFailover(inv: Inventory, lostHost: string, upHosts: string[], options: PlanOptions = {}): FailoverPlan {
  const plan = buildPlan(inv, options);
  const onLost = Object.values(plan.units).filter((u) => u.host === lostHost).sort((a, b) => a.name.localeCompare(b.name));
  const moves: FailoverMove[] = [];
  const stays: FailoverPlan['stays'] = [];
  let working = inv;
  for (const home of onLost) {
    const policy = declared(inv, home.name)?.failover;
    if (!policy) {
      stays.push({ unit: home.name, reason: 'no failover policy (failover: { to: [...] })' });
      continue;
    }
    const refused: string[] = [];
    let move: FailoverMove | undefined;
    for (const to of policy.to) {
      if (to === lostHost) continue;
      if (!upHosts.includes(to)) {
        refused.push(`${to} is not up`);
        continue;
      }
      const candidate = placedOn(working, home.name, to);
      try {
        const spec = buildPlan(candidate, options).units[home.name]!;
        move = { unit: home.name, from: lostHost, to, spec, home, stateful: policy.stateful, ...(policy.backup ? { backup: policy.backup } : {}) };
        working = candidate;
        break;
      } catch (err) {
        const why = err instanceof InventoryError ? err.problems.map((p) => p.message).join('; ') : (err as Error).message;
        refused.push(`${to}: ${why}`);
      }
    }
    if (move) moves.push(move);
    else stays.push({ unit: home.name, reason: `no failover host takes it (${refused.join('; ') || 'none listed'})` });
  }
  return { lostHost, moves, stays };
}
