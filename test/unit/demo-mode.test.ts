/** Which mode `migrate demo` runs in, and the line that says why. */
import { describe, expect, it } from 'vitest';
import { demoMode } from '../../src/client/commands/demo.js';
import { isolatedHostsUnsupported } from '../../src/dev/isolated-hosts.js';

const unsupported = await isolatedHostsUnsupported();

describe('demo mode', () => {
  it('is one engine by default, and says whether isolated hosts are possible here', async () => {
    const { mode, why } = await demoMode(false);
    expect(mode).toBe('one-engine');
    expect(why).toContain(unsupported ? `isolated hosts are not possible here: ${unsupported}` : '`--isolated-hosts` gives every host');
  });

  it('is isolated hosts when asked and possible, else one engine with the reason', async () => {
    const { mode, why } = await demoMode(true);
    if (unsupported) expect({ mode, why }).toEqual({ mode: 'one-engine', why: `falling back: ${unsupported}` });
    else expect(mode).toBe('isolated-hosts');
  });
});
