/**
 * Stand-ins: the same plan — hosts, placement, ports, dependency order, probe timings — with every
 * unit's image replaced by the locally built stub (no registry is reachable here). The stub answers
 * HTTP on each of the unit's container ports, so http and tcp probes keep their meaning; probes the
 * stub cannot pass (a command inside the container, a Docker healthcheck) become HTTP probes on the
 * unit's first published port. Secrets are dropped: the stub needs none. Pure.
 */
import { hashSpec, type Plan, type UnitBuild, type UnitSpec } from './plan.js';

export interface StubOptions {
  image: string;
  /** Reported by the stub at /health; a different version means a different container. */
  version?: string;
  /** Extra stub environment per unit (AGENT_MODE, AGENT_START_DELAY, AGENT_LATENCY_MS…). */
  env?: Record<string, Record<string, string>>;
  /**
   * Where each unit's host builds the stub image when its engine lacks it (the stub's folder, which
   * every host's checkout has). Without it the image must already be on every host.
   */
  build?: Pick<UnitBuild, 'context' | 'hostFiles'>;
}

export function stubUnit(unit: UnitSpec, options: StubOptions): UnitSpec {
  const ports = unit.ports.filter((p) => p.protocol === 'tcp');
  let probe = unit.probe;
  if (probe.kind === 'exec' || probe.kind === 'docker') {
    const first = ports[0];
    probe = first ? { kind: 'http', address: first.hostIp === '0.0.0.0' ? '127.0.0.1' : first.hostIp, port: first.published, path: '/health' } : { kind: 'running' };
  }
  const environment: Record<string, string> = {
    AGENT_PORTS: [...new Set(ports.map((p) => p.target))].join(' ') || '8080',
    AGENT_VERSION: options.version ?? '1',
    ...(options.env && Object.hasOwn(options.env, unit.name) ? options.env[unit.name] : {}),
  };
  const stub: Omit<UnitSpec, 'specHash'> = {
    ...unit,
    image: options.image,
    build: options.build ? { context: options.build.context, args: {}, ifMissing: true, hostFiles: options.build.hostFiles } : undefined,
    command: undefined,
    environment,
    dockerHealthcheck: undefined,
    probe,
  };
  return { ...stub, specHash: hashSpec(stub) };
}

export function stubPlan(plan: Plan, options: StubOptions): Plan {
  return { ...plan, units: Object.fromEntries(Object.entries(plan.units).map(([n, u]) => [n, stubUnit(u, options)])) };
}
