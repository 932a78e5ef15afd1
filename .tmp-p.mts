import { loadInventoryFiles, InventoryError } from '/work/main/src/inventory/load.ts';
import { buildPlan } from '/work/main/src/plan/plan.ts';
import { formatPlan } from '/work/main/src/plan/format.ts';
try {
  const { inventory } = await loadInventoryFiles(process.argv.slice(2));
  console.log(formatPlan(buildPlan(inventory)));
} catch (e) { if (e instanceof InventoryError) console.log(e.message); else throw e; }
