/**
 * The stub image that stands in for every service and agent on this machine (no registry can be
 * reached): FROM scratch on Debian's busybox-static, built locally through the Docker engine.
 */
import { access, copyFile } from 'node:fs/promises';
import { constants } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type Dockerode from 'dockerode';
import type { Plan, UnitSpec } from '../plan/plan.js';
import { stubPlan, type StubOptions } from '../plan/stub.js';
import { buildImage } from '../activities/docker.js';

export const STUB_IMAGE = 'agent-migrate/stub-agent:1';
const here = path.dirname(fileURLToPath(import.meta.url));
export const STUB_CONTEXT = path.resolve(here, '../../images/stub-agent');

/** Debian's busybox-static on this machine (or $BUSYBOX_PATH): the shell of every image built here. */
export async function findBusybox(): Promise<string> {
  for (const candidate of [process.env.BUSYBOX_PATH, '/bin/busybox', '/usr/bin/busybox'].filter(Boolean) as string[]) {
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch { /* next */ }
  }
  throw new Error('busybox was not found: install Debian\'s busybox-static (scripts/setup.sh does), or set BUSYBOX_PATH');
}

export async function ensureStubImage(docker: Dockerode, options: { rebuild?: boolean } = {}): Promise<string> {
  if (!options.rebuild) {
    try {
      await docker.getImage(STUB_IMAGE).inspect();
      return STUB_IMAGE;
    } catch { /* build it */ }
  }
  const target = path.join(STUB_CONTEXT, 'busybox');
  try {
    await access(target);
  } catch {
    await copyFile(await findBusybox(), target);
  }
  await buildImage(docker, STUB_CONTEXT, STUB_IMAGE);
  return STUB_IMAGE;
}

/** Where Debian's busybox-static lies on a host: the stub context's `busybox` is copied from the first found. */
export const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];

/**
 * The plan with the stub image standing in for every unit. Nothing is built here: each unit's worker
 * builds the stub on its own host's engine from the stub's folder when that engine lacks it (issue 11:
 * images live on the host that runs them, never on the client's engine).
 */
export function stubbedPlan(plan: Plan, options: Omit<StubOptions, 'image' | 'build'> = {}): Plan {
  const busybox = process.env.BUSYBOX_PATH ? [process.env.BUSYBOX_PATH] : [];
  return stubPlan(plan, { ...options, image: STUB_IMAGE, build: { context: STUB_CONTEXT, hostFiles: { busybox: [...busybox, ...BUSYBOX_CANDIDATES] } } });
}

/** One unit as `stubbedPlan` makes it: what a failover moves when the deploy ran with --stub. */
export function stubbedUnit(unit: UnitSpec): UnitSpec {
  return stubbedPlan({ units: { [unit.name]: unit } } as unknown as Plan).units[unit.name]!;
}
