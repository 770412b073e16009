// Just enough of the Chrome DevTools Protocol to drive headless Chromium from a test: one page,
// real mouse clicks (Input.dispatchMouseEvent at an element's centre), evaluation in the page or
// in one of its frames, and everything the browser logged (CSP violations arrive as Log entries
// from the `security` source, script errors as exceptions). Talks over --remote-debugging-pipe
// (file descriptors 3 and 4, NUL-separated JSON), so no port and no WebSocket are needed.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';

interface Message {
  id?: number;
  method?: string;
  params?: Record<string, unknown>;
  result?: Record<string, unknown>;
  error?: { message: string };
  sessionId?: string;
}

/** What the browser said while the page ran: log entries, console calls and uncaught exceptions, as text. */
export interface Logged {
  source: string;
  level: string;
  text: string;
}

export class Browser {
  private readonly proc: ChildProcess;
  private readonly profile: string;
  private readonly out: Writable;
  private buf = '';
  private next = 0;
  private readonly pending = new Map<number, { resolve: (m: Message) => void; reject: (e: Error) => void }>();
  private waiters: { match: (m: Message) => boolean; resolve: (m: Message) => void }[] = [];
  private session = '';
  /** Everything logged since the page was opened. */
  readonly logged: Logged[] = [];

  private constructor(width: number, height: number) {
    this.profile = mkdtempSync(join(tmpdir(), 'cm-cdp-'));
    this.proc = spawn(
      'chromium',
      ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--window-size=${width},${height}`, `--user-data-dir=${this.profile}`, '--remote-debugging-pipe', 'about:blank'],
      { stdio: ['ignore', 'ignore', 'ignore', 'pipe', 'pipe'] },
    );
    this.out = this.proc.stdio[3] as Writable;
    (this.proc.stdio[4] as Readable).on('data', (d: Buffer) => this.read(d.toString()));
    this.proc.on('exit', () => {
      for (const p of this.pending.values()) p.reject(new Error('chromium exited'));
      this.pending.clear();
    });
  }

  static async open(width = 1400, height = 900): Promise<Browser> {
    const b = new Browser(width, height);
    const { targetId } = (await b.send('Target.createTarget', { url: 'about:blank' }, false)) as { targetId: string };
    const { sessionId } = (await b.send('Target.attachToTarget', { targetId, flatten: true }, false)) as { sessionId: string };
    b.session = sessionId;
    for (const domain of ['Page', 'Runtime', 'Log']) await b.send(`${domain}.enable`);
    await b.send('Emulation.setDeviceMetricsOverride', { width, height, deviceScaleFactor: 1, mobile: false });
    return b;
  }

  private read(chunk: string): void {
    this.buf += chunk;
    for (let i = this.buf.indexOf('\0'); i >= 0; i = this.buf.indexOf('\0')) {
      const m = JSON.parse(this.buf.slice(0, i)) as Message;
      this.buf = this.buf.slice(i + 1);
      if (m.id !== undefined) {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        if (m.error) p?.reject(new Error(`CDP: ${m.error.message}`));
        else p?.resolve(m);
        continue;
      }
      this.record(m);
      this.waiters = this.waiters.filter((w) => (w.match(m) ? (w.resolve(m), false) : true));
    }
  }

  private record(m: Message): void {
    const p = m.params ?? {};
    if (m.method === 'Log.entryAdded') {
      const e = p.entry as { source: string; level: string; text: string };
      this.logged.push({ source: e.source, level: e.level, text: e.text });
    } else if (m.method === 'Runtime.consoleAPICalled') {
      const args = (p.args as { value?: unknown; description?: string }[]).map((a) => String(a.value ?? a.description ?? ''));
      this.logged.push({ source: 'console', level: String(p.type), text: args.join(' ') });
    } else if (m.method === 'Runtime.exceptionThrown') {
      const d = p.exceptionDetails as { text: string; exception?: { description?: string } };
      this.logged.push({ source: 'exception', level: 'error', text: `${d.text} ${d.exception?.description ?? ''}` });
    }
  }

  send(method: string, params: Record<string, unknown> = {}, inSession = true): Promise<Record<string, unknown>> {
    const id = ++this.next;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: (m) => resolve(m.result ?? {}), reject });
      this.out.write(`${JSON.stringify({ id, method, params, ...(inSession ? { sessionId: this.session } : {}) })}\0`);
    });
  }

  private event(method: string, timeoutMs: number): Promise<Message> {
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no ${method} within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({ match: (m) => m.method === method, resolve: (m) => (clearTimeout(t), resolve(m)) });
    });
  }

  /** Navigates and waits for the load event; returns how long that took (ms). */
  async goto(url: string, timeoutMs = 60_000): Promise<number> {
    const t0 = performance.now();
    const loaded = this.event('Page.loadEventFired', timeoutMs);
    await this.send('Page.navigate', { url });
    await loaded;
    return performance.now() - t0;
  }

  /** Evaluates an expression in the page (or in a frame's isolated world) and returns its JSON value. */
  async eval<T>(expression: string, frameId?: string): Promise<T> {
    let contextId: number | undefined;
    if (frameId) contextId = ((await this.send('Page.createIsolatedWorld', { frameId, worldName: 'cm-test' })) as { executionContextId: number }).executionContextId;
    const r = (await this.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true, ...(contextId ? { contextId } : {}) })) as {
      result: { value: T };
      exceptionDetails?: { text: string; exception?: { description?: string } };
    };
    if (r.exceptionDetails) throw new Error(`evaluate ${expression.slice(0, 80)}: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text}`);
    return r.result.value;
  }

  /** Scrolls the first element matching `selector` into view and clicks its centre with the mouse. */
  async click(selector: string): Promise<void> {
    const box = await this.eval<{ x: number; y: number } | null>(
      `(()=>{const e=document.querySelector(${JSON.stringify(selector)});if(!e)return null;e.scrollIntoView({block:'center'});const r=e.getBoundingClientRect();return {x:r.left+r.width/2,y:r.top+r.height/2}})()`,
    );
    if (!box) throw new Error(`click: nothing matches ${selector}`);
    for (const type of ['mouseMoved', 'mousePressed', 'mouseReleased'])
      await this.send('Input.dispatchMouseEvent', { type, x: box.x, y: box.y, button: type === 'mouseMoved' ? 'none' : 'left', clickCount: 1 });
  }

  async key(key: string): Promise<void> {
    for (const type of ['keyDown', 'keyUp']) await this.send('Input.dispatchKeyEvent', { type, key, code: key, windowsVirtualKeyCode: key === 'Escape' ? 27 : 0 });
  }

  /** The page's child frames: id and URL. */
  async frames(): Promise<{ id: string; url: string }[]> {
    const { frameTree } = (await this.send('Page.getFrameTree')) as { frameTree: { childFrames?: { frame: { id: string; url: string; urlFragment?: string } }[] } };
    return (frameTree.childFrames ?? []).map((c) => ({ id: c.frame.id, url: c.frame.url + (c.frame.urlFragment ?? '') }));
  }

  /** Polls `probe` until it returns a truthy value (or throws after `timeoutMs`). */
  async until<T>(what: string, probe: () => Promise<T>, timeoutMs = 20_000): Promise<NonNullable<T>> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const v = await probe().catch(() => undefined);
      if (v) return v as NonNullable<T>;
      if (performance.now() > end) throw new Error(`timed out waiting for ${what}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** What the browser reported about the Content-Security-Policy: violations, refused loads. */
  cspViolations(): Logged[] {
    return this.logged.filter((l) => /Content Security Policy|Content-Security-Policy|Refused to/i.test(l.text));
  }

  /** Errors of any kind (CSP violations, exceptions, failed loads). */
  errors(): Logged[] {
    return this.logged.filter((l) => l.level === 'error');
  }

  async close(): Promise<void> {
    if (this.proc.exitCode === null) {
      const exited = new Promise((r) => this.proc.once('exit', r));
      // Browser.close lets Chromium end its own renderer and GPU processes; SIGTERM if it does not.
      await Promise.race([this.send('Browser.close', {}, false).catch(() => undefined), new Promise((r) => setTimeout(r, 5000))]);
      const t = setTimeout(() => this.proc.kill(), 5000);
      await exited;
      clearTimeout(t);
    }
    rmSync(this.profile, { recursive: true, force: true });
  }
}
