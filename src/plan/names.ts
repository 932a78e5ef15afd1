/**
 * Container names are for people, identity is the labels; still, no two units may read as the
 * same container. Pure.
 *
 * The tool names a container `<project>_<host>_<unit>` (project and host names cannot contain "_")
 * and keeps a retired one as `….prev`. Refused here:
 *   - a unit whose name ends in `.prev`: it would read as another unit's kept container;
 *   - two placed units whose names join to the same words with "-" (`h1` + `x-y` and `h1-x` + `y`):
 *     a person reading `docker ps` could not tell them apart (and the tool's earlier names,
 *     `<project>-<host>-<unit>`, would collide).
 */
import type { Problem } from '../inventory/problems.js';
import { PREVIOUS_SUFFIX } from './queues.js';

export interface PlacedName {
  unit: string;
  host: string;
  /** The unit's path in the inventory (`agents.X`, `services.Y`). */
  path: string;
}

export function ambiguousNames(placed: PlacedName[]): Problem[] {
  const problems: Problem[] = [];
  for (const p of placed) {
    if (p.unit.toLowerCase().endsWith(PREVIOUS_SUFFIX)) {
      problems.push({ path: p.path, message: `the name ends in "${PREVIOUS_SUFFIX}", which marks a container kept for rollback: it would read as ${p.unit.slice(0, -PREVIOUS_SUFFIX.length)}'s kept container`, fix: `rename the unit (e.g. ${p.unit.slice(0, -PREVIOUS_SUFFIX.length)}-previous)` });
    }
  }
  const seen = new Map<string, PlacedName>();
  for (const p of [...placed].sort((a, b) => a.path.localeCompare(b.path))) {
    const read = `${p.host}-${p.unit}`.toLowerCase();
    const other = seen.get(read);
    if (other) {
      problems.push({
        path: p.path,
        message: `${p.unit} on ${p.host} and ${other.unit} on ${other.host} (${other.path}) read as the same container name "${read}"`,
        fix: 'rename one of the units (or the host) so that host and unit names do not run into each other',
      });
    } else seen.set(read, p);
  }
  return problems;
}
