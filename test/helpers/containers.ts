/** What the engine holds for a test's project: one stub container, the project's set, and their removal. */
import Dockerode from 'dockerode';
import { LABELS } from '../../src/plan/queues.js';

const docker = new Dockerode();

/** A stub container's id, state and the version it runs (its AGENT_VERSION); undefined when absent. */
export async function inspectStub(name: string) {
  try {
    const c = await docker.getContainer(name).inspect();
    return { id: c.Id, running: c.State.Running, version: c.Config.Env.find((e) => e.startsWith('AGENT_VERSION='))?.split('=')[1] };
  } catch {
    return undefined;
  }
}

/** The project's containers: name → id, state and spec, for "exactly as before". */
export async function projectSnapshot(project: string): Promise<Record<string, string>> {
  const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
  return Object.fromEntries(list.map((c) => [c.Names[0]!.slice(1), `${c.Id} ${c.State} ${c.Labels[LABELS.specHash]}`]).sort());
}

/** Remove every container and network of these projects. */
export async function removeProjects(projects: string[]): Promise<void> {
  for (const project of projects) {
    const list = await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } });
    await Promise.all(list.map((c) => docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined)));
    const nets = await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } });
    await Promise.all(nets.map((n) => docker.getNetwork(n.Id).remove().catch(() => undefined)));
  }
}
