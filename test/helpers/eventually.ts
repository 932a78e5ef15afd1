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
