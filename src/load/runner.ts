/**
 * The load of one process: its share of the connections, each with `streams` request loops (one request in flight
 * per loop, the next sent as soon as the previous response has been read to its end), on the HTTP/3 client
 * library (src/h3/client.ts). Requests without a body or with one held in memory go through the client's lean path
 * (src/h3/lean-request.ts: validated and encoded once, no stream objects or Promises per request, responses counted
 * straight off the connection); a body streamed from a file, and a run with --qlog (whose HTTP/3 frame events the
 * lean path does not write), use Http3Client.request(). A connection the server closes or sends GOAWAY on is replaced by a new one (up to
 * three failed attempts in a row, then its loops stop); requests on it that fail are counted by kind.
 *
 *   const r = new ShareRunner(plan, share);
 *   await r.connect();   // every connection's handshake (times recorded)
 *   await r.run();       // the measured phase; r.stop() ends it early (in-flight requests finish)
 *   r.stats              // LoadStats
 *   await r.close();
 */
import { setMaxListeners } from 'node:events';
import { createReadStream, readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Http3Client, type Http3ClientOptions, type PreparedRequest } from '../h3/client.js';
import type { LeanExchange, LeanOutcome } from '../h3/lean-request.js';
import { keyLogSink } from '../obs/keylog.js';
import { qlogTracer } from '../obs/qlog.js';
import { suiteByName, type CipherSuite } from '../quic/crypto/suites.js';
import { loadPemChain } from '../quic/tls/pem.js';
import { BODY_IN_MEMORY_LIMIT, type LoadPlan } from './options.js';
import type { Progress } from './report.js';
import { LoadStats, errorKind } from './stats.js';

/** This process's part of the run. */
export interface Share {
  connections: number;
  /** Requests to send (null: until the plan's duration has passed). */
  requests: number | null;
}

const MAX_CONNECT_FAILURES = 3;
const RECONNECT_PAUSE_MS = 100;
const SWEEP_MS = 100;

/** The client options every connection of the plan uses (certificates, key log and qlog loaded in this process). */
export function clientOptions(plan: LoadPlan): Http3ClientOptions {
  const quic: Http3ClientOptions['quic'] = {};
  if (plan.ciphers) quic.cipherSuites = plan.ciphers.map((n) => suiteByName(n)).filter((s): s is CipherSuite => s !== undefined);
  if (plan.maxData !== null) quic.initialMaxData = plan.maxData;
  if (plan.maxStreamData !== null) quic.initialMaxStreamDataBidiLocal = plan.maxStreamData;
  return {
    ca: plan.caFile ? loadPemChain(readFileSync(plan.caFile, 'utf8')) : undefined,
    insecure: plan.insecure,
    // The URL host even when it is an IP literal, so that the certificate's IP SANs are checked.
    serverName: plan.serverName ?? plan.host,
    keyLog: keyLogSink(plan.keylog),
    trace: qlogTracer(plan.qlog),
    handshakeTimeout: plan.handshakeTimeoutMs,
    quic,
  };
}

/** A request body for each request: the same Buffer every time, or a fresh file stream for a large file. */
function bodySource(plan: LoadPlan): { next: () => Buffer | Readable | undefined; size: number; buffer: Buffer | null; streamed: boolean } {
  const b = plan.body;
  if (b === null) return { next: () => undefined, size: 0, buffer: null, streamed: false };
  if ('text' in b) {
    const buf = Buffer.from(b.text);
    return { next: () => buf, size: buf.length, buffer: buf, streamed: false };
  }
  if (b.size <= BODY_IN_MEMORY_LIMIT) {
    const buf = readFileSync(b.file);
    return { next: () => buf, size: buf.length, buffer: buf, streamed: false };
  }
  return { next: () => createReadStream(b.file, { highWaterMark: 256 * 1024 }), size: b.size, buffer: null, streamed: true };
}

/** Reads a response body to its end, counting bytes; rejects when it fails or closes early. */
function drain(body: Readable, onBytes: (n: number) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    body.on('data', (chunk: Buffer) => onBytes(chunk.length));
    body.once('end', resolve);
    body.once('error', reject);
    body.once('close', () => {
      if (!body.readableEnded) reject(new Error('response body closed before its end'));
    });
  });
}

const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** One client connection in use, and how many requests are on it (a retired one closes when that reaches 0). */
interface Live {
  client: Http3Client;
  inflight: number;
  retired: boolean;
  /** Stops using it (new requests go to a new connection); it closes when its last request is done. */
  retire: () => void;
}

class LoadConnection {
  live: Live | null = null;
  dead = false;
  private connecting: Promise<Live | null> | null = null;
  private failures = 0;

  constructor(private readonly runner: ShareRunner) {}

  /** The connection to send on: the current one, or a new one (null once it gave up). */
  get(): Live | null | Promise<Live | null> {
    if (this.live) return this.live;
    if (this.dead) return null;
    this.connecting ??= this.open().finally(() => (this.connecting = null));
    return this.connecting;
  }

  private async open(): Promise<Live | null> {
    const r = this.runner;
    while (!this.dead) {
      const t0 = performance.now();
      try {
        const client = await Http3Client.connect(r.plan.origin + '/', r.clientOptions);
        r.stats.handshakeDone(performance.now() - t0);
        this.failures = 0;
        const live: Live = { client, inflight: 0, retired: false, retire: () => {} };
        const retire = (): void => {
          if (this.live === live) this.live = null;
          live.retired = true;
          r.release(live);
        };
        live.retire = retire;
        client.on('goaway', retire);
        client.on('close', retire);
        this.live = live;
        r.opened.add(live);
        return live;
      } catch (e) {
        r.stats.handshakeFailed(errorKind(e));
        r.lastConnectError = (e as Error).message;
        if (++this.failures >= MAX_CONNECT_FAILURES || r.stopping || !r.started) {
          this.dead = true;
          return null;
        }
        await pause(RECONNECT_PAUSE_MS);
      }
    }
    return null;
  }
}

/**
 * The requests started within one SWEEP_MS window share one AbortController, aborted when the window's oldest
 * request reaches the timeout (so a request gives up between --timeout and --timeout + SWEEP_MS after it started).
 * One controller per request was a few percent of the generator's CPU at small requests.
 */
interface TimeoutWindow {
  ctrl: AbortController;
  expires: number;
  timedOut: boolean;
}

const TIMED_OUT = new Error('timeout');

export class ShareRunner {
  readonly stats = new LoadStats();
  readonly clientOptions: Http3ClientOptions;
  /** Every connection opened (to close them all at the end). */
  readonly opened = new Set<Live>();
  lastConnectError: string | null = null;
  stopping = false;
  started = false;
  private readonly conns: LoadConnection[] = [];
  private readonly body: ReturnType<typeof bodySource>;
  /** Oldest first. */
  private readonly windows: TimeoutWindow[] = [];
  private remaining: number | null;
  private endAt = Infinity;
  private t0 = 0;
  private cpu0: NodeJS.CpuUsage = { user: 0, system: 0 };

  constructor(
    readonly plan: LoadPlan,
    readonly share: Share,
  ) {
    this.clientOptions = clientOptions(plan);
    this.body = bodySource(plan);
    this.remaining = share.requests;
    for (let i = 0; i < share.connections; i++) this.conns.push(new LoadConnection(this));
  }

  /** Makes every connection (once each); resolves with how many are up. */
  async connect(): Promise<number> {
    await Promise.all(this.conns.map((c) => c.get()));
    return this.conns.filter((c) => c.live).length;
  }

  /** The measured phase: resolves when the share is done (or the duration passed, or stop() was called). */
  async run(): Promise<void> {
    this.started = true;
    this.t0 = performance.now();
    this.cpu0 = process.cpuUsage();
    if (this.plan.durationMs !== null) this.endAt = this.t0 + this.plan.durationMs;
    const loops: Promise<void>[] = [];
    const lean = !this.body.streamed && !this.plan.qlog;
    for (const c of this.conns) {
      if (c.dead) continue;
      for (let i = 0; i < this.plan.streams; i++) loops.push(lean ? this.leanLoop(c) : this.loop(c));
    }
    const sweep = setInterval(() => {
      const now = performance.now();
      while (this.windows.length > 0 && this.windows[0].expires <= now) {
        const w = this.windows.shift() as TimeoutWindow;
        w.timedOut = true;
        w.ctrl.abort();
      }
      // Lean requests in flight, oldest first: abort those past the timeout.
      const limit = now - this.plan.timeoutMs;
      for (const x of this.leanInflight) {
        if (x.startedAt > limit) break;
        x.abort(TIMED_OUT);
      }
    }, SWEEP_MS);
    try {
      await Promise.all(loops);
    } finally {
      clearInterval(sweep);
    }
    this.stats.elapsedMs = performance.now() - this.t0;
    const cpu = process.cpuUsage(this.cpu0);
    this.stats.cpuMs = (cpu.user + cpu.system) / 1000;
    this.stats.cpuMaxMs = this.stats.cpuMs;
    if (this.remaining !== null) this.stats.notSent += this.remaining;
    this.remaining = 0;
  }

  /** Stop sending new requests; the ones in flight finish. */
  stop(): void {
    this.stopping = true;
  }

  progress(): Progress {
    const s = this.stats;
    return { elapsedMs: this.started ? performance.now() - this.t0 : 0, ok: s.ok, failed: s.failed, bytesUp: s.bytesUp, bytesDown: s.bytesDown };
  }

  /** Closes every connection (bounded). */
  async close(): Promise<void> {
    const all = [...this.opened].map((l) => l.client.close().catch(() => undefined));
    this.opened.clear();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([Promise.all(all), new Promise((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }

  /** A retired connection closes when its last request is done. */
  release(live: Live): void {
    if (live.retired && live.inflight === 0 && this.opened.delete(live)) void live.client.close().catch(() => undefined);
  }

  /** The timeout window a request starting now belongs to. */
  private window(now: number): TimeoutWindow {
    const last = this.windows.at(-1);
    if (last && !last.timedOut && now < last.expires && now < last.expires - this.plan.timeoutMs + SWEEP_MS) return last;
    const w: TimeoutWindow = { ctrl: new AbortController(), expires: now + this.plan.timeoutMs, timedOut: false };
    setMaxListeners(0, w.ctrl.signal); // one listener per request in the window
    this.windows.push(w);
    return w;
  }

  private take(): boolean {
    if (this.stopping) return false;
    if (this.remaining !== null) {
      if (this.remaining === 0) return false;
      this.remaining--;
      return true;
    }
    return performance.now() < this.endAt;
  }

  private async loop(conn: LoadConnection): Promise<void> {
    while (this.take()) {
      const got = conn.get();
      const live = got instanceof Promise ? await got : got;
      if (!live) {
        if (this.remaining !== null) this.remaining++; // not sent: counted at the end
        return;
      }
      await this.one(live);
    }
  }

  /** Lean requests in flight, in the order they started (for the timeout sweep). */
  private readonly leanInflight = new Set<LeanExchange>();

  /** The request every lean loop sends (prepared once, on the first connection: every connection has the same origin). */
  private prepared: PreparedRequest | null = null;

  /**
   * One lean request loop: callbacks instead of an async loop, so that a request costs no Promise. Ends (resolves)
   * when take() says no more, or when its connection gave up.
   */
  private leanLoop(conn: LoadConnection): Promise<void> {
    return new Promise<void>((resolve) => {
      const stats = this.stats;
      const size = this.body.size;
      const next = (): void => {
        for (;;) {
          if (!this.take()) return resolve();
          const got = conn.get();
          if (got instanceof Promise) {
            void got.then((live) => (live ? send(live) : notSent()));
            return;
          }
          if (!got) return notSent();
          if (got.client.lean.unusable) {
            // GOAWAY or closing, and its event has not retired it yet: give the request back, use another.
            if (this.remaining !== null) this.remaining++;
            got.retire();
            continue;
          }
          send(got);
          return;
        }
      };
      const notSent = (): void => {
        if (this.remaining !== null) this.remaining++; // not sent: counted at the end
        resolve();
      };
      const inflight = this.leanInflight;
      const send = (live: Live): void => {
        const t0 = performance.now();
        live.inflight++;
        this.prepared ??= live.client.prepare(this.plan.path, { method: this.plan.method, headers: this.plan.headers, body: this.body.buffer ?? undefined });
        const x = live.client.lean.send(this.prepared, (o: LeanOutcome) => {
          inflight.delete(x);
          if (o.error === null) {
            stats.bytesDown += o.bytesDown;
            stats.bytesUp += size;
            stats.response(o.status, performance.now() - t0);
          } else stats.failure(o.error === TIMED_OUT ? 'timeout' : errorKind(o.error));
          live.inflight--;
          this.release(live);
          next();
        });
        x.startedAt = t0;
        inflight.add(x);
      };
      next();
    });
  }

  private async one(live: Live): Promise<void> {
    const stats = this.stats;
    const t0 = performance.now();
    const w = this.window(t0);
    live.inflight++;
    try {
      const res = await live.client.request(this.plan.path, { method: this.plan.method, headers: this.plan.headers, body: this.body.next(), signal: w.ctrl.signal });
      await drain(res.body, (n) => (stats.bytesDown += n));
      stats.bytesUp += this.body.size;
      stats.response(res.status, performance.now() - t0);
    } catch (e) {
      stats.failure(w.timedOut ? 'timeout' : errorKind(e));
    } finally {
      live.inflight--;
      this.release(live);
    }
  }
}
