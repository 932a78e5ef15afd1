/** Container names are for people, identity is the labels: `migrate plan` refuses names that would read as one. */
import { describe, expect, it } from 'vitest';
import { InventoryError, parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';
import { containerName, previousName } from '../../src/plan/queues.js';

const unit = (host: string) => ({ image: 'x:1', placement: { host } });

function problems(doc: unknown) {
  try {
    buildPlan(parseInventory(doc));
    return [];
  } catch (err) {
    if (err instanceof InventoryError) return err.problems;
    throw err;
  }
}

describe('ambiguous container names', () => {
  it('refuses a unit whose name reads as another unit\'s kept container (api and api.prev)', () => {
    const found = problems({ version: 1, project: 'p', hosts: { h: {} }, services: { api: unit('h'), 'api.prev': unit('h') } });
    expect(found).toContainEqual(expect.objectContaining({ path: 'services.api.prev', message: expect.stringMatching(/ends in "\.prev"/), fix: expect.stringMatching(/rename/) }));
  });

  it('refuses hosts and units whose names run into each other (h1 + x-y, h1-x + y)', () => {
    const found = problems({ version: 1, project: 'p', hosts: { h1: {}, 'h1-x': {} }, services: { 'x-y': unit('h1'), y: unit('h1-x') } });
    expect(found).toHaveLength(1);
    expect(found[0]).toMatchObject({ message: expect.stringMatching(/read as the same container name "h1-x-y"/), fix: expect.stringMatching(/rename one/) });
  });

  it('accepts the same unit name on two hosts, and the names the tool gives cannot collide', () => {
    expect(problems({ version: 1, project: 'p', hosts: { a: {}, b: {} }, services: { api: unit('a') }, agents: {} })).toEqual([]);
    // "_" cannot occur in project or host names: the first two "_" always split project, host and unit.
    expect(containerName('p', 'h1', 'x-y')).not.toBe(containerName('p', 'h1-x', 'y'));
    expect(previousName(containerName('p', 'h', 'api'))).toBe('p_h_api.prev');
  });
});
