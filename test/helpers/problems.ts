import { InventoryError, parseInventory } from '../../src/inventory/load.js';
import { buildPlan } from '../../src/plan/plan.js';

/** The problems an inventory has, whether the schema or the planner finds them; none: []. */
export function problems(doc: unknown): { path: string; message: string; fix?: string }[] {
  try {
    buildPlan(parseInventory(doc));
  } catch (err) {
    if (err instanceof InventoryError) return err.problems;
    throw err;
  }
  return [];
}
