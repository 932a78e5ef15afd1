/**
 * Cross-host service discovery. Pure, no I/O.
 *
 * On one host a unit reaches its dependency by name through the host's project network. A dependency
 * placed on another host is *cross-host*: the name is resolved instead to that host's address through
 * an extra-hosts entry (`/etc/hosts` in the container, Docker's `HostConfig.ExtraHosts`), and the
 * request goes to the port the dependency publishes there. No overlay network, no Swarm. So a
 * cross-host dependency must publish a port on an address other hosts can reach: the plan refuses one
 * that publishes none, with the fix.
 *
 * Loopback host addresses (the one-engine mode of inventory/local.yaml) give no entry: 127.x inside a
 * container is the container itself, so the entry would only hide the failure.
 */
import type { Problem } from '../inventory/problems.js';
import { hashSpec, type Plan, type UnitSpec } from './plan.js';

export interface ExtraHost {
  name: string;
  address: string;
}

export interface CrossHostLink {
  unit: string;
  host: string;
  dependency: string;
  dependencyHost: string;
  /** Where the dependency answers from the unit's host; absent when it cannot be reached there. */
  address?: string;
  /** Its published ports (host port → container port). */
  ports: { published: number; target: number }[];
}

export interface CrossHostResult {
  links: CrossHostLink[];
  /** Per unit name, the extra-hosts entries it needs (units without any are absent). */
  extraHosts: Record<string, ExtraHost[]>;
  problems: Problem[];
  warnings: Problem[];
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address === 'localhost';
}

function unitPath(unit: Pick<UnitSpec, 'kind' | 'name'>): string {
  return `${unit.kind === 'service' ? 'services' : 'agents'}.${unit.name}`;
}

/** Every dependency between units on different hosts, the entries that resolve them, and what is wrong. */
export function crossHostLinks(plan: Pick<Plan, 'units'> & { hosts: Pick<Plan['hosts'][number], 'name' | 'address'>[] }): CrossHostResult {
  const hostAddress = new Map(plan.hosts.map((h) => [h.name, h.address]));
  // Maps, and own keys only: a unit may be called "constructor" or "toString".
  const units = new Map(Object.entries(plan.units));
  const entriesOf = new Map<string, ExtraHost[]>();
  const result: CrossHostResult = { links: [], extraHosts: {}, problems: [], warnings: [] };
  for (const unit of units.values()) {
    for (const depName of Object.keys(unit.dependsOn)) {
      const dep = units.get(depName);
      if (!dep || dep.host === unit.host) continue;
      const path = `${unitPath(unit)}.depends_on.${depName}`;
      // A port bound to loopback cannot be reached from another host, except in the one-engine mode
      // where every host is a loopback address (there, nothing crosses by name anyway).
      const oneMachine = isLoopback(hostAddress.get(dep.host) ?? '');
      const reachable = dep.ports.filter((p) => p.protocol === 'tcp' && (oneMachine || !isLoopback(p.hostIp)));
      const link: CrossHostLink = {
        unit: unit.name,
        host: unit.host,
        dependency: dep.name,
        dependencyHost: dep.host,
        ports: reachable.map((p) => ({ published: p.published, target: p.target })),
      };
      result.links.push(link);
      if (reachable.length === 0) {
        result.problems.push({
          path,
          message: `cross-host dependency: "${depName}" runs on ${dep.host}, ${unit.name} on ${unit.host}, and ${depName} publishes no ${dep.ports.length ? 'TCP port another host can reach (loopback only)' : 'port'}, so ${unit.host} cannot reach it`,
          fix: `publish its port on ${dep.host} (${unitPath(dep)}.ports: ["PORT:PORT"], the same number on both sides so "${depName}:PORT" works from ${unit.host}), or place both on one host (placement: { host: ${dep.host} })`,
        });
        continue;
      }
      const first = reachable[0]!;
      const address = first.hostIp === '0.0.0.0' ? hostAddress.get(dep.host) : first.hostIp;
      if (!address || isLoopback(address)) continue;
      link.address = address;
      const entries = entriesOf.get(unit.name) ?? [];
      entriesOf.set(unit.name, entries);
      if (!entries.some((e) => e.name === depName)) entries.push({ name: depName, address });
      for (const p of reachable.filter((p) => p.published !== p.target)) {
        result.warnings.push({
          path,
          message: `"${depName}" on ${dep.host} publishes container port ${p.target} as ${p.published}: from ${unit.host} it answers at ${depName}:${p.published}, not ${depName}:${p.target}`,
          fix: `publish it as "${p.target}:${p.target}", or point ${unit.name} at ${depName}:${p.published}`,
        });
      }
    }
  }
  result.extraHosts = Object.fromEntries(entriesOf);
  return result;
}

/** Docker's `HostConfig.ExtraHosts` form: `name:address`. */
export function extraHostsOption(entries: ExtraHost[]): string[] {
  return entries.map((e) => `${e.name}:${e.address}`);
}

/**
 * For buildPlan: give every unit with a cross-host dependency its `extraHosts` (re-hashing it, so a
 * moved dependency replaces the container), add the warnings, and return the problems.
 */
export function applyCrossHostLinks(units: Record<string, UnitSpec>, hosts: Record<string, { address: string }>, warnings: Problem[]): Problem[] {
  const result = crossHostLinks({ units, hosts: Object.entries(hosts).map(([name, h]) => ({ name, address: h.address })) });
  for (const [name, entries] of Object.entries(result.extraHosts)) {
    if (!Object.hasOwn(units, name)) continue;
    const { specHash: _old, ...unit } = units[name]!;
    const withHosts = { ...unit, extraHosts: extraHostsOption(entries) };
    units[name] = { ...withHosts, specHash: hashSpec(withHosts) };
  }
  warnings.push(...result.warnings);
  return result.problems;
}

/** One line per cross-host dependency, for `migrate plan` (src/plan/format.ts may print these). */
export function describeCrossHostLinks(links: CrossHostLink[]): string[] {
  return links.map((l) => {
    const ports = l.ports.map((p) => (p.published === p.target ? String(p.published) : `${p.published}→${p.target}`)).join(', ');
    const where = l.address
      ? `as ${l.dependency} → ${l.address} (port ${ports})`
      : l.ports.length ? 'not by name: its host address is loopback (one-engine mode)' : 'unreachable: it publishes no port';
    return `${l.unit} (${l.host}) → ${l.dependency} (${l.dependencyHost}): ${where}`;
  });
}
