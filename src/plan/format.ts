/** Human rendering of a plan. Pure: returns text. */
import type { Plan } from './plan.js';

/** host:port, with an IPv6 address in brackets ([::1]:80), as in a URL. */
export function hostPort(address: string, port: number): string {
  return `${address.includes(':') ? `[${address}]` : address}:${port}`;
}

function probeText(u: Plan['units'][string]): string {
  if (u.members) return `group of ${u.members.length}: ${u.members[0]!.probe.kind} ${u.members.map((m) => m.probe.port).join(', ')}`;
  const p = u.probe;
  switch (p.kind) {
    case 'http': return `http ${hostPort(p.address, p.port)}${p.path}`;
    case 'tcp': return `tcp ${hostPort(p.address, p.port)}`;
    case 'exec': return `exec ${p.command.join(' ')}`;
    case 'docker': return 'docker healthcheck';
    case 'running': return 'running';
  }
}

export function formatPlan(plan: Plan): string {
  const lines: string[] = [];
  lines.push(`Plan for project "${plan.project}"`, '');
  lines.push(`Hosts (${plan.hosts.length})`);
  for (const h of plan.hosts) {
    const gpus = h.gpus.length ? h.gpus.map((g) => `${g.model} ${g.vramGb} GB`).join(', ') : 'no GPU';
    const units = Object.values(plan.units).filter((u) => u.host === h.name);
    const agentUnits = units.filter((u) => u.kind === 'agent');
    const agents = agentUnits.reduce((n, u) => n + (u.members?.length ?? 1), 0);
    const groups = agentUnits.filter((u) => u.members).length;
    lines.push(`  ${h.name.padEnd(10)} queue ${h.queue.padEnd(14)} ${gpus.padEnd(18)} ${units.length - agentUnits.length} services, ${agents} agents${groups ? ` (${groups} groups)` : ''}  (ports on ${h.address})`);
  }
  lines.push('', 'Deploy order (a service starts as soon as everything it depends on is healthy)');
  plan.serviceWaves.forEach((wave, i) => {
    lines.push(`  wave ${i + 1}:`);
    for (const name of wave) {
      const u = plan.units[name]!;
      const deps = Object.keys(u.dependsOn).filter((d) => plan.units[d]?.kind === 'service');
      const gpu = u.gpu ? `  gpu ${u.gpu.count}×≥${u.gpu.minVramGb} GB` : '';
      lines.push(`    ${name.padEnd(22)} → ${u.host.padEnd(8)} ${probeText(u).padEnd(34)} ${deps.length ? `after ${deps.join(', ')}` : ''}${gpu}`);
    }
  });
  if (plan.batches.length) {
    lines.push('', `Agent batches (${plan.batches.length})`);
    for (const b of plan.batches) {
      const held = b.agents.reduce((n, a) => n + (plan.units[a]?.members?.length ?? 1), 0);
      lines.push(`  ${b.name}: ${held} agents${held !== b.agents.length ? ` in ${b.agents.length} units` : ''}, ${b.concurrency} at a time, whole batch rolls back after ${b.maxFailures + 1} failures${b.description ? ` — ${b.description}` : ''}`);
      for (const a of b.agents) {
        const u = plan.units[a]!;
        const gpu = u.gpu ? `  gpu ${u.gpu.count}×≥${u.gpu.minVramGb} GB` : '';
        lines.push(`    ${a.padEnd(28)} → ${u.host.padEnd(8)} ${probeText(u)}${gpu}`);
      }
    }
  }
  if (plan.warnings.length) {
    lines.push('', `Warnings (${plan.warnings.length})`);
    for (const w of plan.warnings) lines.push(`  ! ${w.path}: ${w.message}`);
  }
  return lines.join('\n');
}
