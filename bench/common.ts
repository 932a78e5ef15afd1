/** What the benches share: the workflow bundle made once per run, and a project's containers removed after it. */
import { writeFile } from 'node:fs/promises';
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
