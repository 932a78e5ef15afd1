/**
 * A client sending requests to a stub's published port, one after another, until stopped: the
 * versions that answered, in order, and every failed request (the traffic tests' zero-failure check).
 */
export function hammer(address: string, port: number) {
  let stop = false;
  const seen: string[] = [];
  const failures: string[] = [];
  const loop = (async () => {
    while (!stop) {
      try {
        const res = await fetch(`http://${address}:${port}/work`, { signal: AbortSignal.timeout(10_000) });
        const body = (await res.json()) as { version: string };
        if (res.ok) seen.push(body.version);
        else failures.push(`HTTP ${res.status}`);
      } catch (err) {
        failures.push(String((err as Error & { cause?: Error }).cause?.message ?? (err as Error).message));
      }
    }
  })();
  return {
    seen, failures,
    /** Wait until `n` more answers came. */
    async more(n: number) { const target = seen.length + failures.length + n; while (seen.length + failures.length < target) await new Promise((r) => setTimeout(r, 20)); },
    async stop() { stop = true; await loop; },
  };
}
