/**
 * Poll `fn` until it returns a value (not undefined) and return it; a throw counts as "not yet" and
 * is quoted if the deadline passes. For conditions the world reaches on its own time (a host judged
 * lost, a metric scraped), not a timed assertion: the deadline is a generous cap.
 */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000, intervalMs = 200): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs / 1000} s${last ? ` (${(last as Error).message ?? String(last)})` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/**
 * `work`'s outcome, or, if it has not settled within `timeoutMs`, a failure with the words `late()`
 * gives (what the world looks like then). The timer is cleared either way: nothing fires after.
 */
export async function within<T>(work: Promise<T>, timeoutMs: number, late: () => Promise<string>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => { late().then((m) => reject(new Error(m)), reject); }, timeoutMs);
  });
  try {
    return await Promise.race([work, deadline]);
  } finally {
    clearTimeout(timer);
  }
}
