/** The stub plan (pure): each unit carries where its own host builds the stub image, and nothing is built by the client. */
import { describe, expect, it } from 'vitest';
import { parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { stubPlan } from '../../src/plan/stub.js';
import { BUSYBOX_CANDIDATES, STUB_CONTEXT, STUB_IMAGE, stubbedPlan } from '../../src/dev/stub-image.js';

const plan = buildPlan(parseInventory({
  version: 1,
  project: 'stubs',
  hosts: { mainpc: {}, pc2: {} },
  services: {
    api: { image: 'agentsys/api:1', ports: ['8080:8080'], placement: { host: 'mainpc' } },
    web: { build: './web', ports: ['8081:8080'], depends_on: ['api'], placement: { host: 'pc2' } },
  },
}), { baseDir: '/srv/inv' });

describe('stub plans', () => {
  it('mark every unit with the stub folder, built on its host only when its engine lacks the image', () => {
    const stubbed = stubbedPlan(plan);
    for (const unit of Object.values(stubbed.units)) {
      expect(unit.image).toBe(STUB_IMAGE);
      expect(unit.build).toEqual({ context: STUB_CONTEXT, args: {}, ifMissing: true, hostFiles: { busybox: expect.arrayContaining(BUSYBOX_CANDIDATES) as string[] } });
    }
    // The unit's own build context (web's ./web) is replaced: the stub stands in for it.
    expect(plan.units.web!.build?.context).toBe('/srv/inv/web');
  });

  it('leave the build out when none is given (the image must be on every host), and the spec hash says which', () => {
    const bare = stubPlan(plan, { image: STUB_IMAGE });
    expect(bare.units.api!.build).toBeUndefined();
    expect(bare.units.api!.specHash).not.toBe(stubbedPlan(plan).units.api!.specHash);
  });
});
