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
import type { BackupComponent } from './backups.js';

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
  /**
   * Stateful with a `backup`: that backup target as it reads on `to` (its host and, via docker-exec,
   * its container re-pointed at the moved unit), and the store's folder. The lost host's latest
   * verified backup is read from `<directory>/<from>/`: shared storage (or replicated) on real machines.
   */
  restore?: { directory?: string; component: BackupComponent };
  /**
   * Failback of a stateful unit with a `backup`: that backup target as it reads at home (`from`), where
   * the backup taken of the moved copy (on `to`, through `restore`) is restored.
   */
  back?: { directory?: string; component: BackupComponent };
}

export interface FailoverPlan {
  lostHost: string;
  moves: FailoverMove[];
  /** Units of the lost host that stay down, and why. */
  stays: { unit: string; reason: string }[];
}

const declared = (inv: Inventory, unit: string) => inv.services[unit] ?? inv.agents[unit];

/** The inventory with `unit` placed on `host`; the backup targets that reach it (docker-exec `unit:`) follow it there. */
function placedOn(inv: Inventory, unit: string, host: string): Inventory {
  const where = inv.services[unit] ? 'services' : 'agents';
  const follow = <T extends { unit?: string; host: string }>(targets: T[]): T[] => targets.map((t) => (t.unit === unit ? { ...t, host } : t));
  const backups = inv.backups && { ...inv.backups, postgres: follow(inv.backups.postgres), redis: follow(inv.backups.redis), influxdb: follow(inv.backups.influxdb) };
  return { ...inv, [where]: { ...inv[where], [unit]: { ...declared(inv, unit)!, placement: { host } } }, ...(backups ? { backups } : {}) };
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
        const placed = buildPlan(candidate, options);
        const spec = placed.units[home.name]!;
        let restore: FailoverMove['restore'];
        if (policy.stateful && policy.backup) {
          const component = placed.backups?.components.find((c) => c.name === policy.backup);
          if (!component) throw new Error(`its backup "${policy.backup}" is not among the inventory's backups`);
          restore = { ...(placed.backups!.directory ? { directory: placed.backups!.directory } : {}), component };
        }
        move = { unit: home.name, from: lostHost, to, spec, home, stateful: policy.stateful, ...(policy.backup ? { backup: policy.backup } : {}), ...(restore ? { restore } : {}) };
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

/**
 * The way back for a unit that a fence record says runs on `to` (failback): stateful or not from the
 * inventory's policy; a stateful unit with a `backup` gets that target both where it runs now
 * (`restore`, re-pointed at `to` as failover did) and at home (`back`), so its data can be carried back.
 * A target that no longer plans is left out: the workflow then refuses to move that unit back.
 */
export function planFailback(inv: Inventory, host: string, fence: { unit: string; to: string; spec: UnitSpec; home: UnitSpec }, options: PlanOptions = {}): FailoverMove {
  const policy = declared(inv, fence.unit)?.failover;
  const move: FailoverMove = { unit: fence.unit, from: host, to: fence.to, spec: fence.spec, home: fence.home, stateful: policy?.stateful ?? false };
  if (!policy?.stateful || !policy.backup) return move;
  move.backup = policy.backup;
  const target = (i: Inventory) => {
    try {
      const placed = buildPlan(i, options);
      const component = placed.backups?.components.find((c) => c.name === policy.backup);
      return component && { ...(placed.backups!.directory ? { directory: placed.backups!.directory } : {}), component };
    } catch {
      return undefined;
    }
  };
  const away = target(placedOn(inv, fence.unit, fence.to));
  const home = target(inv);
  if (away) move.restore = away;
  if (home) move.back = home;
  return move;
}
