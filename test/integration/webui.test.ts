/**
 * The Temporal Web UI, seen by a person: a dev server of its own with the UI on (the run's is
 * headless), a real `migrateBatch` of two stub agents run by in-process workers against it, then
 * Debian's headless Chromium opens the batch's page and the test reads the rendered DOM for what an
 * operator sees: the static summary on the batch's page, and the batch found by the workflow list
 * filtered on its search attributes. The current details are shown by the UI only while a workflow
 * runs, and Chromium's --virtual-time-budget never settles on a running workflow's page (the UI
 * long-polls its history): they are checked through the UI's own metadata query instead. A
 * screenshot is saved as .tmp/webui-batch.png (and the DOM as .tmp/webui-batch.html) for review.
 */
import { spawnSync } from 'node:child_process';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import Dockerode from 'dockerode';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { LABELS } from '../../src/plan/queues.js';
import { STUB_IMAGE } from '../../src/dev/stub-image.js';
import { startDevServer, type DevServer } from '../../src/dev/temporal-server.js';
import { startBatch } from '../../src/ops/index.js';
import { startWorld, type TestWorld } from '../helpers/temporal.js';

const docker = new Dockerode();
const project = `webui${process.pid}`;
const batch = `ui${process.pid}-batch`;
let server: DevServer | undefined;
let world: TestWorld | undefined;

afterAll(async () => {
  await world?.close();
  await server?.stop();
  for (const c of await docker.listContainers({ all: true, filters: { label: [`${LABELS.project}=${project}`] } })) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
  for (const n of await docker.listNetworks({ filters: { label: [`${LABELS.project}=${project}`] } })) await docker.getNetwork(n.Id).remove().catch(() => undefined);
});

function chromium(args: string[]): string {
  const r = spawnSync('chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--virtual-time-budget=15000', ...args], { encoding: 'utf8', timeout: 90_000, maxBuffer: 64 * 1024 * 1024 });
  if (r.status !== 0) throw new Error(`chromium exited ${r.status}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** The DOM's visible text, roughly: tags dropped, entities of interest decoded, spaces collapsed. */
const textOf = (dom: string) => dom.replace(/<script[\s\S]*?<\/script>/g, ' ').replace(/<style[\s\S]*?<\/style>/g, ' ').replace(/<[^>]+>/g, ' ')
  .replace(/&amp;/g, '&').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/\s+/g, ' ');

describe('the Web UI shows a batch to an operator (real dev server with UI, real batch, headless Chromium)', () => {
  it('the batch page shows its static summary; the list filtered by its search attributes finds it; its details answer the UI\'s metadata query; a screenshot is saved', async () => {
    expect(spawnSync('chromium', ['--version']).status, 'Debian\'s chromium package is missing: run scripts/setup.sh').toBe(0);
    server = await startDevServer({ ui: true });
    const inventory = parseInventory({
      version: 1,
      project,
      hosts: { pc2: { address: '127.0.0.160' } },
      agents: Object.fromEntries(['Alpha', 'Beta'].map((a, i) => [a, {
        placement: { host: 'pc2' }, image: `agentsys/${a.toLowerCase()}:2.0`, ports: [`${7760 + i}:8080`],
        healthcheck: { http: '/health', interval: '200ms', timeout: '1s', retries: 3, start_period: '1s' },
      }])),
      batches: [{ name: batch, agents: ['Alpha', 'Beta'], concurrency: 2, max_failures: 1 }],
    });
    world = await startWorld(inventory, { address: server.address });
    const plan = stubPlan(buildPlan(inventory), { image: STUB_IMAGE, version: '1' });
    const handle = await startBatch(world.client, plan, batch, { samples: 5, force: true, skipBackup: 'web UI test: no databases', autoConfirm: true });
    // Closed: Chromium's virtual time never settles on the page of a running workflow (the UI long-polls its history).
    const result = await handle.result();
    expect(result).toMatchObject({ outcome: 'migrated', status: 'confirmed' });
    const { currentDetails } = await handle.query<{ currentDetails: string }>('__temporal_workflow_metadata');

    const runId = (await handle.describe()).runId;
    const url = `${server.uiUrl}/namespaces/default/workflows/${encodeURIComponent(handle.workflowId)}/${runId}/history`;
    // The UI server comes up after the frontend answers: until then the app renders its error page.
    let dom = chromium(['--dump-dom', url]);
    for (let i = 0; i < 5 && dom.includes('Uh oh'); i++) {
      await new Promise((r) => setTimeout(r, 2000));
      dom = chromium(['--dump-dom', url]);
    }
    await mkdir(path.resolve('.tmp'), { recursive: true });
    await writeFile(path.resolve('.tmp/webui-batch.html'), dom);
    const text = textOf(dom);
    // The static summary, as the client set it at start.
    expect(text).toContain(`${batch}: 2 agent(s) on pc2`);
    expect(text).toContain('migrateBatch');
    // The current details: the UI shows them only while the workflow runs, which Chromium's virtual
    // time cannot render (see above); the workflow answers them to the UI's own metadata query.
    expect(currentDetails).toMatch(new RegExp(`^\\*\\*${batch}\\*\\* on pc2: confirmed`));
    // The search attributes, as a person uses them: the workflow list filtered by MigrateBatch and MigrateKind.
    const query = encodeURIComponent(`MigrateBatch="${batch}" AND MigrateKind="batch" AND MigratePhase="confirmed"`);
    const list = textOf(chromium(['--dump-dom', `${server.uiUrl}/namespaces/default/workflows?query=${query}`]));
    expect(list).toContain(handle.workflowId);
    expect(list).toContain('migrateBatch');
    expect(list).not.toContain(`${handle.workflowId}-Alpha`); // the agents' child workflows are not batches

    const dir = path.resolve('.tmp');
    await mkdir(dir, { recursive: true });
    const shot = path.join(dir, 'webui-batch.png');
    chromium([`--screenshot=${shot}`, '--window-size=1400,1000', url]);
    expect((await stat(shot)).size).toBeGreaterThan(20_000);
  });
});
