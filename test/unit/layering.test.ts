/** The pure layers stay pure: src/plan and src/inventory/problems.ts import no I/O module. */
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';

const importsOf = (file: string) => [...readFileSync(file, 'utf8').matchAll(/^import .* from '([^']+)';$/gm)].map((m) => m[1]!);

describe('layering', () => {
  it('the plan layer imports the pure problem module, never inventory/load.ts', () => {
    for (const f of readdirSync('src/plan')) {
      const imports = importsOf(`src/plan/${f}`);
      expect(imports, f).not.toContain('../inventory/load.js');
      expect(imports.filter((i) => /^node:(fs|net|child_process|http)/.test(i)), f).toEqual([]);
    }
  });

  it('inventory/problems.ts does no I/O', () => {
    expect(importsOf('src/inventory/problems.ts').filter((i) => i.startsWith('node:') || i === 'yaml')).toEqual([]);
  });
});
