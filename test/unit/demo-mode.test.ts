/** Which mode `migrate demo` runs in, and the line that says why. */
import { describe, expect, it } from 'vitest';
import { demoMode } from '../../src/client/commands/demo.js';
import { isolatedHostsUnsupported } from '../../src/dev/isolated-hosts.js';

const unsupported = await isolatedHostsUnsupported();

describe('demo mode', () => {
  it('is isolated hosts by default where they can run, else one engine with the reason', async () => {
    const { mode, why } = await demoMode(false);
    if (unsupported) expect({ mode, why }).toEqual({ mode: 'one-engine', why: `every host a loopback address on this machine's Docker engine; isolated hosts cannot run here: ${unsupported}` });
    else expect({ mode, why }).toEqual({ mode: 'isolated-hosts', why: 'every host its own network namespace, Docker engine and `migrate worker` process (--one-engine for one engine)' });
  });

  it('is one engine when asked, and says so', async () => {
    expect(await demoMode(true)).toEqual({ mode: 'one-engine', why: 'as asked (--one-engine): every host a loopback address on this machine\'s Docker engine' });
  });
});
