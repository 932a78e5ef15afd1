/**
 * The per-host traffic proxy (issue #13): HAProxy, from Debian's package, owns the published ports of
 * the units routed through it and splits each one's connections between two slots, `blue` and
 * `green` — the unit's running container and its new one, each reached on the loopback port its
 * container port got from the engine. Weights move traffic (25 → 50 → 75 → 100); weight 0 drains.
 *
 * This file builds the proxy's configuration and its runtime-API commands. Pure: no I/O.
 */

import type { UnitSpec } from './plan.js';

export type Slot = 'blue' | 'green';
export const SLOTS: readonly Slot[] = ['blue', 'green'];

/** One published port of a routed unit. */
export interface RoutedPort {
  hostIp: string;
  published: number;
  /** The container port (`8080/tcp` is looked up in each slot's ports). */
  target: number;
}

/** A container in a slot: the host port (on loopback) each of its container ports got, and its share of the traffic. */
export interface SlotRoute {
  /** The container (its id): when the engine starts it again, its ports change and the route follows. */
  id?: string;
  ports: Record<string, number>;
  /** The address its ports are published on (default 127.0.0.1). */
  address?: string;
  /** 0–256, HAProxy's weight: 0 drains. */
  weight: number;
}

export interface UnitRoute {
  unit: string;
  ports: RoutedPort[];
  blue?: SlotRoute;
  green?: SlotRoute;
}

/** HAProxy names: letters, digits, `-_.:` only; a unit's names cannot collide with another's. */
const ident = (s: string) => s.replace(/[^A-Za-z0-9_.:-]/g, '_');
export const backendName = (unit: string, p: Pick<RoutedPort, 'published'>) => `be_${ident(unit)}_${p.published}`;
const frontendName = (unit: string, p: Pick<RoutedPort, 'published'>) => `fe_${ident(unit)}_${p.published}`;

/** The abstract socket of the proxy's runtime API (shared by the worker and the proxy: same network namespace). */
export const runtimeSocket = (project: string, host: string) => `migrate-traffic-${ident(project)}-${ident(host)}`;

const bindAddress = (ip: string, port: number) => (ip.includes(':') ? `[${ip}]:${port}` : `${ip}:${port}`);

/** Where a slot's container answers for a container port, and its weight; a slot without a container is disabled. */
function server(slot: Slot, route: SlotRoute | undefined, p: RoutedPort): string {
  const port = route?.ports[`${p.target}/tcp`];
  // A slot with nothing in it points nowhere and takes no traffic (the runtime API fills it later).
  if (!route || !port) return `  server ${slot} 127.0.0.1:1 weight 0 disabled`;
  return `  server ${slot} ${bindAddress(route.address ?? '127.0.0.1', port)} weight ${route.weight}`;
}

/** The whole configuration for these units' routes (the proxy reloads it seamlessly). */
export function haproxyConfig(project: string, host: string, routes: UnitRoute[]): string {
  const lines = [
    'global',
    `  stats socket abns@${runtimeSocket(project, host)} level admin expose-fd listeners`,
    '  stats timeout 10s',
    '',
    'defaults',
    '  mode tcp',
    '  timeout connect 2s',
    '  timeout client 60s',
    '  timeout server 60s',
    // A connection refused by one slot (its container stopping) is retried on the other one.
    '  retries 3',
    '  option redispatch',
    '',
  ];
  for (const r of [...routes].sort((a, b) => a.unit.localeCompare(b.unit))) {
    for (const p of r.ports) {
      lines.push(
        `frontend ${frontendName(r.unit, p)}`,
        `  bind ${bindAddress(p.hostIp, p.published)}`,
        `  default_backend ${backendName(r.unit, p)}`,
        '',
        `backend ${backendName(r.unit, p)}`,
        '  balance roundrobin',
        ...SLOTS.map((s) => server(s, r[s], p)),
        '',
      );
    }
  }
  return lines.join('\n');
}

/** The runtime-API commands that put a unit's slots where `route` says (no reload: its frontends exist). */
export function routeCommands(route: UnitRoute): string[] {
  const out: string[] = [];
  for (const p of route.ports) {
    const be = backendName(route.unit, p);
    for (const slot of SLOTS) {
      const r = route[slot];
      const port = r?.ports[`${p.target}/tcp`];
      if (!r || !port) {
        out.push(`set weight ${be}/${slot} 0`, `set server ${be}/${slot} state maint`);
        continue;
      }
      out.push(`set server ${be}/${slot} addr ${r.address ?? '127.0.0.1'} port ${port}`, `set server ${be}/${slot} state ready`, `set weight ${be}/${slot} ${r.weight}`);
    }
  }
  return out;
}

/** Weights for `percent` of the traffic on `to`, the rest on the other slot. */
export function splitWeights(to: Slot, percent: number): Record<Slot, number> {
  const p = Math.max(0, Math.min(100, Math.round(percent)));
  return to === 'green' ? { blue: 100 - p, green: p } : { blue: p, green: 100 - p };
}

/**
 * Can the unit's new version be judged beside its running one? Not a one-shot job, not a GPU unit
 * (its GPUs hold one version), and its probe must answer on a port or inside the container.
 */
export function judgedBeside(unit: UnitSpec): boolean {
  return !unit.job && !unit.gpu && unit.probe.kind !== 'running' && unit.probe.kind !== 'docker';
}

/** The published TCP ports the host's traffic proxy owns for a routed unit. */
export function routedPorts(unit: UnitSpec): RoutedPort[] {
  return unit.ports.filter((p) => p.protocol === 'tcp').map((p) => ({ hostIp: p.hostIp, published: p.published, target: p.target }));
}

/**
 * Can the unit be routed through the host's traffic proxy (issue #13)? Judged beside, one container
 * (not a group), published TCP ports, and probed over the network (http/tcp).
 */
export function routable(unit: UnitSpec): boolean {
  return judgedBeside(unit) && !unit.members && (unit.probe.kind === 'http' || unit.probe.kind === 'tcp') && routedPorts(unit).length > 0 && unit.ports.every((p) => p.protocol === 'tcp');
}
