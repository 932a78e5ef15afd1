/**
 * Debian's headless Chromium driven through the DevTools protocol over a pipe
 * (`--remote-debugging-pipe`: commands on fd 3, replies and events on fd 4, each message JSON ended
 * by a NUL byte), so no WebSocket and no dependency is needed. Unlike `--dump-dom` with a virtual
 * time budget, this works on pages that never go idle (the Web UI long-polls a running workflow's
 * history): the test navigates, then reads the rendered page until what it waits for is there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';

interface Pending {
  resolve(result: Record<string, unknown>): void;
  reject(err: Error): void;
  method: string;
}

export interface Browser {
  /** Open a new tab at `url` (in a fresh context: no storage shared with other tabs). */
  open(url: string): Promise<Tab>;
  close(): Promise<void>;
}

export interface Tab {
  navigate(url: string): Promise<void>;
  /** Evaluate an expression in the page and return its value (JSON-serialisable). */
  evaluate<T>(expression: string): Promise<T>;
  /**
   * The page's rendered text: `innerText` (what a person sees, not hidden markup) of the page and of
   * its same-origin frames (the Temporal UI renders a workflow's summary and details in iframes).
   */
  text(): Promise<string>;
  /**
   * Read the page's text until `ready(text)` holds; returns that text. Throws after `timeoutMs`
   * with the last text seen (a deadline for a loaded machine, not a timing assertion). A page that
   * shows an error page (`reloadIf`, default: the Temporal UI's "Uh oh" page, rendered when its
   * server is not ready yet) is reloaded, at most every 3 s; one that gives no text for 20 s too.
   */
  waitForText(ready: (text: string) => boolean, what: string, options?: { timeoutMs?: number; reloadIf?: (text: string) => boolean }): Promise<string>;
  /** A PNG of the page (full page height) written to `file`; returns its size in bytes. */
  screenshot(file: string): Promise<number>;
  close(): Promise<void>;
}

/** The text a person sees: the page's, then each same-origin frame's in document order. */
const PAGE_TEXT = `(() => {
  const parts = [document.body ? document.body.innerText : ''];
  for (const frame of document.querySelectorAll('iframe')) {
    try { if (frame.contentDocument && frame.contentDocument.body) parts.push(frame.contentDocument.body.innerText); } catch { /* another origin */ }
  }
  return parts.join('\\n').replace(/\\n{3,}/g, '\\n\\n');
})()`;

const NOISY_EVENTS = /^(Runtime\.consoleAPICalled|Page\.lifecycleEvent)$/;

function withDeadline<T>(promise: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`no answer within ${ms / 1000} s`)), ms); });
  return Promise.race([promise, late]).finally(() => clearTimeout(timer));
}

export async function launchChromium(options: { width?: number; height?: number } = {}): Promise<Browser> {
  const width = options.width ?? 1400;
  const height = options.height ?? 1000;
  const profile = await mkdtemp(path.join(tmpdir(), 'migrate-chromium-'));
  const child: ChildProcess = spawn('chromium', [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
    '--disable-extensions', '--disable-background-networking', '--disable-sync', '--mute-audio',
    // A page in the background must keep rendering and running its timers.
    '--disable-background-timer-throttling', '--disable-renderer-backgrounding', '--disable-backgrounding-occluded-windows',
    `--window-size=${width},${height}`, `--user-data-dir=${profile}`, '--remote-debugging-pipe', 'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (c: Buffer) => { stderr = (stderr + c.toString()).slice(-4000); });
  const toBrowser = child.stdio[3] as Writable;
  const fromBrowser = child.stdio[4] as Readable;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));

  let nextId = 1;
  const events = new Map<string, string[]>();
  const pending = new Map<number, Pending>();
  let closed: Error | undefined;
  const failAll = (err: Error) => {
    closed = err;
    for (const p of pending.values()) p.reject(err);
    pending.clear();
  };
  void exited.then(() => failAll(new Error(`chromium exited (code ${child.exitCode}): ${stderr.slice(-1500)}`)));
  child.once('error', (err) => failAll(new Error(`chromium could not start (${err.message}): install Debian's chromium package (scripts/setup.sh does)`)));
  toBrowser.on('error', () => undefined); // a write after exit: reported by failAll

  let buffered = Buffer.alloc(0);
  fromBrowser.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    for (let end = buffered.indexOf(0); end >= 0; end = buffered.indexOf(0)) {
      const message = JSON.parse(buffered.subarray(0, end).toString('utf8')) as { id?: number; method?: string; sessionId?: string; result?: Record<string, unknown>; error?: { message: string } };
      buffered = buffered.subarray(end + 1);
      if (message.id === undefined) { // an event: the last few per tab are kept for error messages
        if (message.sessionId && message.method && !NOISY_EVENTS.test(message.method)) {
          const list = events.get(message.sessionId) ?? [];
          list.push(message.method);
          events.set(message.sessionId, list.slice(-15));
        }
        continue;
      }
      const p = pending.get(message.id);
      if (!p) continue;
      pending.delete(message.id);
      if (message.error) p.reject(new Error(`${p.method}: ${message.error.message}`));
      else p.resolve(message.result ?? {});
    }
  });

  const send = (method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> => {
    if (closed) return Promise.reject(closed);
    const id = nextId++;
    return new Promise((resolve, reject) => {
      pending.set(id, { resolve, reject, method });
      toBrowser.write(`${JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) })}\0`);
    });
  };

  const browser: Browser = {
    async open(url) {
      const { browserContextId } = await send('Target.createBrowserContext') as { browserContextId: string };
      const { targetId } = await send('Target.createTarget', { url: 'about:blank', browserContextId }) as { targetId: string };
      const { sessionId } = await send('Target.attachToTarget', { targetId, flatten: true }) as { sessionId: string };
      const on = (method: string, params: Record<string, unknown> = {}) => send(method, params, sessionId);
      await on('Page.enable');
      await on('Runtime.enable');
      await on('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
      const tab: Tab = {
        async navigate(to) {
          const r = await withDeadline(on('Page.navigate', { url: to }), 60_000).catch((err: Error) => { throw new Error(`chromium could not open ${to}: ${err.message}`); }) as { errorText?: string };
          if (r.errorText) throw new Error(`chromium could not open ${to}: ${r.errorText}`);
        },
        async evaluate<T>(expression: string) {
          const r = await on('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }) as { result: { value?: T }; exceptionDetails?: { text: string } };
          if (r.exceptionDetails) throw new Error(`evaluating ${expression}: ${r.exceptionDetails.text}`);
          return r.result.value as T;
        },
        text: () => tab.evaluate<string>(PAGE_TEXT),
        async waitForText(ready, what, { timeoutMs = 120_000, reloadIf = (t: string) => t.includes('Uh oh. There\'s an error') } = {}) {
          const started = Date.now();
          const deadline = started + timeoutMs;
          let last = '';
          let problem = 'none';
          let lastRead = started; // when the page last gave text
          let reloaded = started;
          const reloads: string[] = [];
          const reload = async (why: string) => {
            reloaded = Date.now();
            reloads.push(`${why} at ${((reloaded - started) / 1000).toFixed(0)} s`);
            await withDeadline(on('Page.reload', { ignoreCache: true }), 15_000).catch(() => undefined);
          };
          for (;;) {
            // A navigation in progress has no context to evaluate in, and a busy renderer may not answer for a while: read again.
            try {
              const text = await withDeadline(tab.text(), 15_000);
              if (text.trim()) { last = text; lastRead = Date.now(); } else problem = 'the page is blank';
            } catch (err) {
              problem = (err as Error).message;
            }
            if (ready(last)) return last;
            // The UI's error page, or a page that shows nothing for 20 s (its app did not start on a loaded machine): reload it.
            if (reloadIf(last) && Date.now() - reloaded > 3000) await reload('error page');
            else if (Date.now() - lastRead > 20_000 && Date.now() - reloaded > 20_000) await reload(`no text (${problem})`);
            if (Date.now() > deadline) {
              throw new Error(`the page never showed ${what} within ${timeoutMs / 1000} s (last read problem: ${problem}; reloads: ${reloads.join(', ') || 'none'}; recent events: ${events.get(sessionId)?.join(' ') ?? 'none'}); its text was:\n${last.slice(0, 3000)}`);
            }
            await new Promise((r) => setTimeout(r, 500));
          }
        },
        async screenshot(file) {
          const { data } = await on('Page.captureScreenshot', { format: 'png', captureBeyondViewport: true }) as { data: string };
          const png = Buffer.from(data, 'base64');
          await writeFile(file, png);
          return png.length;
        },
        async close() {
          await send('Target.closeTarget', { targetId }).catch(() => undefined);
          await send('Target.disposeBrowserContext', { browserContextId }).catch(() => undefined);
        },
      };
      await tab.navigate(url);
      return tab;
    },
    async close() {
      if (child.exitCode === null && child.signalCode === null) {
        await send('Browser.close').catch(() => undefined);
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      await rm(profile, { recursive: true, force: true });
    },
  };
  // The first command answers once the browser is up (or fails if it could not start).
  await send('Browser.getVersion');
  return browser;
}
