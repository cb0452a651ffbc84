// A small WebDriver BiDi client for Firefox (https://w3c.github.io/webdriver-bidi/), run as its own process:
//
//   node --experimental-websocket dist/tools/peers/firefox-bidi.js JOB.json
//
// Node 20 has a WebSocket client only behind --experimental-websocket, and a test process started by `node --test`
// does not have the flag, so tools/peers/firefox.ts starts this script as a child. It connects to the BiDi endpoint
// Firefox printed (ws://127.0.0.1:PORT; the session endpoint is /session), creates a session (session.new), loads the
// page (browsingContext.navigate, wait=complete) until the page itself arrived over HTTP/3, evaluates each job
// script in the page (script.evaluate with awaitPromise; a script returns a JSON string) and closes the browser
// (browser.close). Each step prints one JSON line on stdout, so a run that is cut short still tells how far it got.
// The job has a deadline; nothing here waits without a bound. Firefox itself is started and ended by firefox.ts.

import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BidiScript {
  name: string;
  /** A JavaScript expression evaluated in the page; it must evaluate to (a promise of) a JSON string. */
  expression: string;
  /** Per-script limit (ms). */
  timeoutMs: number;
}

export interface BidiJob {
  /** ws://127.0.0.1:PORT (as Firefox printed it); /session is appended. */
  wsUrl: string;
  /** The page every script runs in. */
  pageUrl: string;
  /**
   * Loads of pageUrl before giving up on HTTP/3: the first load of a fresh profile may go over h2 (or fail when the
   * server has no TCP listener) while the alt-svc store loads.
   */
  maxLoads: number;
  scripts: BidiScript[];
  /** Absolute deadline (Date.now() ms) for the whole job. */
  deadline: number;
}

/** One stdout line of the driver. */
export type BidiEvent =
  | { event: 'session'; browserVersion: string; ms: number }
  | { event: 'load'; attempt: number; url: string; ok: boolean; error?: string; protocol: string | null; entries: [string, string][]; ms: number }
  | { event: 'script'; name: string; ok: boolean; value?: unknown; error?: string; ms: number }
  | { event: 'closed'; ms: number }
  | { event: 'fatal'; error: string };

interface BidiMessage {
  id?: number;
  type?: string;
  method?: string;
  result?: Record<string, unknown>;
  error?: string;
  message?: string;
}

interface SocketLike {
  send(data: string): void;
  close(): void;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onopen: (() => void) | null;
  onerror: ((ev: unknown) => void) | null;
  onclose: (() => void) | null;
}

type SocketCtor = new (url: string) => SocketLike;

/** A BiDi command that failed (error response, closed socket or timeout). */
export class BidiError extends Error {}

/** Commands over one WebSocket, matched to their responses by id. */
class BidiConnection {
  private nextId = 0;
  private readonly pending = new Map<number, { resolve: (m: BidiMessage) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>();
  private closedWith: Error | null = null;

  private constructor(private readonly ws: SocketLike) {
    ws.onmessage = (ev) => {
      let m: BidiMessage;
      try {
        m = JSON.parse(String(ev.data)) as BidiMessage;
      } catch {
        return;
      }
      if (typeof m.id !== 'number') return; // an event: none subscribed, ignored
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      clearTimeout(p.timer);
      p.resolve(m);
    };
    ws.onclose = () => this.fail(new BidiError('WebSocket closed'));
    ws.onerror = () => this.fail(new BidiError('WebSocket error'));
  }

  static open(Ctor: SocketCtor, url: string, timeoutMs: number): Promise<BidiConnection> {
    return new Promise((resolveOpen, rejectOpen) => {
      const ws = new Ctor(url);
      const timer = setTimeout(() => {
        ws.close();
        rejectOpen(new BidiError(`no WebSocket connection to ${url} within ${timeoutMs} ms`));
      }, timeoutMs);
      ws.onopen = () => {
        clearTimeout(timer);
        resolveOpen(new BidiConnection(ws));
      };
      ws.onerror = () => {
        clearTimeout(timer);
        rejectOpen(new BidiError(`WebSocket connection to ${url} failed`));
      };
    });
  }

  private fail(e: Error): void {
    if (this.closedWith === null) this.closedWith = e;
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(e);
      this.pending.delete(id);
    }
  }

  /** Send a command; resolves with its result, rejects with the BiDi error (or a timeout). */
  send(method: string, params: Record<string, unknown>, timeoutMs: number): Promise<Record<string, unknown>> {
    if (this.closedWith !== null) return Promise.reject(this.closedWith);
    const id = ++this.nextId;
    return new Promise<BidiMessage>((res, rej) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        rej(new BidiError(`${method}: no answer within ${timeoutMs} ms`));
      }, Math.max(1, timeoutMs));
      this.pending.set(id, { resolve: res, reject: rej, timer });
      this.ws.send(JSON.stringify({ id, method, params }));
    }).then((m) => {
      if (m.type === 'error') throw new BidiError(`${method}: ${m.error ?? 'error'}: ${m.message ?? ''}`);
      return m.result ?? {};
    });
  }

  close(): void {
    this.fail(new BidiError('closed by the driver'));
    this.ws.close();
  }
}

/** Expression that lists [url, nextHopProtocol] for the navigation and every resource of the page. */
const ENTRIES_EXPR =
  "JSON.stringify(performance.getEntriesByType('navigation').map((e) => [e.name, e.nextHopProtocol])" +
  ".concat(performance.getEntriesByType('resource').map((e) => [e.name, e.nextHopProtocol])))";

/** The value of a script.evaluate result that must be a string, or throws with the exception text. */
function evaluatedString(r: Record<string, unknown>): string {
  if (r.type === 'exception') {
    const d = r.exceptionDetails as { text?: string } | undefined;
    throw new BidiError(`exception in the page: ${d?.text ?? JSON.stringify(r).slice(0, 500)}`);
  }
  const v = r.result as { type?: string; value?: unknown } | undefined;
  if (v?.type !== 'string' || typeof v.value !== 'string') {
    throw new BidiError(`the page script did not return a string but ${JSON.stringify(v).slice(0, 300)}`);
  }
  return v.value;
}

/** Run a job against a running Firefox; every step goes to `emit`. Resolves when done (never rejects). */
export async function runBidiJob(job: BidiJob, Ctor: SocketCtor, emit: (e: BidiEvent) => void): Promise<void> {
  const left = (): number => job.deadline - Date.now();
  const t0 = Date.now();
  let conn: BidiConnection | null = null;
  try {
    conn = await BidiConnection.open(Ctor, `${job.wsUrl.replace(/\/$/, '')}/session`, Math.min(10_000, left()));
    const session = await conn.send('session.new', { capabilities: { alwaysMatch: { acceptInsecureCerts: false } } }, Math.min(20_000, left()));
    const caps = (session.capabilities ?? {}) as { browserVersion?: string };
    emit({ event: 'session', browserVersion: String(caps.browserVersion), ms: Date.now() - t0 });
    const tree = await conn.send('browsingContext.getTree', {}, Math.min(10_000, left()));
    const contexts = tree.contexts as { context: string }[] | undefined;
    const context = contexts?.[0]?.context;
    if (context === undefined) throw new BidiError(`browsingContext.getTree returned no context: ${JSON.stringify(tree)}`);
    const evaluate = async (expression: string, timeoutMs: number): Promise<string> =>
      evaluatedString(
        await conn!.send(
          'script.evaluate',
          { expression, target: { context }, awaitPromise: true, resultOwnership: 'none' },
          Math.min(timeoutMs, left()),
        ),
      );

    let h3 = false;
    for (let attempt = 1; attempt <= job.maxLoads && !h3; attempt++) {
      const ts = Date.now();
      let error: string | undefined;
      try {
        await conn.send('browsingContext.navigate', { context, url: job.pageUrl, wait: 'complete' }, Math.min(30_000, left()));
      } catch (e) {
        error = (e as Error).message;
      }
      let entries: [string, string][] = [];
      try {
        entries = JSON.parse(await evaluate(ENTRIES_EXPR, 10_000)) as [string, string][];
      } catch (e) {
        error ??= (e as Error).message;
      }
      // The navigation entry comes first: the page document itself.
      const protocol = error === undefined ? (entries[0]?.[1] ?? null) : null;
      h3 = protocol === 'h3';
      const ev: BidiEvent = { event: 'load', attempt, url: job.pageUrl, ok: error === undefined, protocol, entries, ms: Date.now() - ts };
      if (error !== undefined) ev.error = error;
      emit(ev);
    }
    if (h3) {
      for (const s of job.scripts) {
        const ts = Date.now();
        try {
          const value = JSON.parse(await evaluate(s.expression, s.timeoutMs)) as unknown;
          emit({ event: 'script', name: s.name, ok: true, value, ms: Date.now() - ts });
        } catch (e) {
          emit({ event: 'script', name: s.name, ok: false, error: (e as Error).message, ms: Date.now() - ts });
        }
      }
    }
    const tc = Date.now();
    try {
      await conn.send('browser.close', {}, Math.min(10_000, Math.max(1, left())));
    } catch {
      // the socket closes as the browser goes away, sometimes before the answer
    }
    emit({ event: 'closed', ms: Date.now() - tc });
  } catch (e) {
    emit({ event: 'fatal', error: (e as Error).message });
  } finally {
    conn?.close();
  }
}

// Run as a program only when started directly with a job file (an importer, or a test run that loads every file, loads
// it with no arguments).
const invokedDirectly = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly && process.argv.length === 3) {
  const emit = (e: BidiEvent): void => void process.stdout.write(JSON.stringify(e) + '\n');
  const Ctor = (globalThis as { WebSocket?: SocketCtor }).WebSocket;
  if (Ctor === undefined) {
    emit({ event: 'fatal', error: 'no WebSocket in this Node: start it with --experimental-websocket (Node 20) or use Node >= 22' });
    process.exitCode = 2;
  } else {
    const job = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as BidiJob;
    // Whatever happens, this process ends by the deadline.
    const hard = setTimeout(() => {
      emit({ event: 'fatal', error: 'job deadline passed' });
      process.exit(3);
    }, Math.max(1, job.deadline - Date.now() + 2000));
    hard.unref();
    void runBidiJob(job, Ctor, emit).then(() => process.exit(0));
  }
}
