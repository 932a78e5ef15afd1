/** What the benches share: the workflow bundle made once per run, a project's containers removed after it, the machine's CPU time. */
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type Dockerode from 'dockerode';
import { LABELS } from '../src/plan/queues.js';
import { workflowBundle } from '../src/workers/workers.js';

/** Bundle the workflows once into `dir` and point MIGRATE_WORKFLOW_BUNDLE at it, so every worker the bench starts reuses it. */
export async function prebundleWorkflows(dir: string): Promise<void> {
  if (process.env.MIGRATE_WORKFLOW_BUNDLE) return;
  const bundle = await workflowBundle();
  if (!('code' in bundle)) return;
  const file = path.join(dir, 'bundle.js');
  await writeFile(file, bundle.code);
  process.env.MIGRATE_WORKFLOW_BUNDLE = file;
}

/** Remove every container and network of `project` on this engine, 20 containers at a time. */
export async function removeProject(docker: Dockerode, project: string): Promise<void> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
  for (let i = 0; i < list.length; i += 20) await Promise.all(list.slice(i, i + 20).map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
  for (const n of await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } })) await docker.getNetwork(n.Id).remove().catch(() => undefined);
}

/** The machine's busy CPU time (every core, every process), in seconds, from /proc/stat. */
export async function machineCpuSeconds(): Promise<number> {
  const [, ...ticks] = (await readFile('/proc/stat', 'utf8')).split('\n')[0]!.trim().split(/\s+/).map(Number);
  return (ticks.reduce((a, b) => a + b, 0) - ticks[3]! - ticks[4]!) / 100; // all but idle and iowait
}

/** A process's CPU time (user + system), in seconds, from /proc. */
export async function processCpuSeconds(pid?: number): Promise<number> {
  if (!pid) return NaN;
  const fields = (await readFile(`/proc/${pid}/stat`, 'utf8')).split(') ')[1]!.split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime (after pid and comm), in clock ticks
}
