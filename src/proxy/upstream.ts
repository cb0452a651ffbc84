/**
 * Upstream pools: the HTTP/1.1 backends of one route, load balancing between the healthy ones, active health
 * checks, and forwarding one request with streaming in both directions (undici, one keep-alive Pool per origin).
 *
 * Balancing: `round-robin` takes the healthy upstreams in turn; `least-outstanding` takes the healthy upstream
 * with the fewest requests in flight (a request counts until its response body ends, fails or is destroyed),
 * ties broken in turn.
 *
 * Health: every `intervalMs` (timers unref'd, one check in flight per upstream) GET <path>; a 2xx within
 * `timeoutMs` is a success. `unhealthyAfter` failures in a row take an upstream out, `healthyAfter` successes in a
 * row bring it back. Upstreams start healthy. Changes are emitted as 'health' events (and onHealthChange).
 *
 * Timeouts: `headersMs` counts from the moment the request body has been sent upstream completely (at once for a
 * request without a body), so an upload may take as long as it takes (what Envoy's route timeout does); a body
 * that stops moving is cut by `idleBodyMs` instead, in both directions: no request-body data for idleBodyMs ends
 * the request (408 when the client stopped sending, 504 when the upstream stopped reading), and undici's
 * bodyTimeout does the same for the response body.
 *
 * Errors: every failure is an UpstreamError with a kind and the status the client should get:
 * connect (refused/unreachable, 502), timeout (connect, headers or idle body, 504; a stalled request body from the
 * client, 408), reset (connection closed or broken mid-request, 502), aborted (our side cancelled, 502),
 * unavailable (no healthy upstream, 503).
 */
import { EventEmitter } from 'node:events';
import { Readable, Transform } from 'node:stream';
import { Pool, util as undiciUtil, type Dispatcher } from 'undici';
import type { BalancePolicy, HealthCheckConfig } from './config.js';
import type { UpstreamHeaders } from './headers.js';

export type UpstreamErrorKind = 'connect' | 'timeout' | 'reset' | 'aborted' | 'unavailable';

export class UpstreamError extends Error {
  constructor(
    readonly kind: UpstreamErrorKind,
    readonly status: 408 | 502 | 503 | 504,
    message: string,
    /** The upstream origin involved, null for 'unavailable'. */
    readonly upstream: string | null,
    /** The underlying error code (e.g. ECONNREFUSED, UND_ERR_HEADERS_TIMEOUT), when there was one. */
    readonly code: string | null = null,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'UpstreamError';
  }
}

/**
 * A cancellation signal for one upstream request. undici accepts an EventEmitter with `aborted` and an 'abort' event
 * as a signal, and one costs a fraction of an AbortController (whose AbortSignal is an EventTarget): this runs once
 * or twice per proxied request.
 */
export class UpstreamCancel extends EventEmitter {
  aborted = false;
  reason: unknown = undefined;

  abort(reason?: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason ?? new Error('aborted');
    this.emit('abort');
  }
}

/** Either kind of signal an upstream request takes. */
export type CancelSignal = AbortSignal | UpstreamCancel;

function onCancel(signal: CancelSignal, fn: () => void): () => void {
  if (signal instanceof UpstreamCancel) {
    signal.once('abort', fn);
    return () => signal.off('abort', fn);
  }
  signal.addEventListener('abort', fn, { once: true });
  return () => signal.removeEventListener('abort', fn);
}

export interface UpstreamTimeouts {
  connectMs: number;
  headersMs: number;
  idleBodyMs: number;
}

export interface UpstreamRequest {
  method: string;
  /** Path with query, as it should reach the upstream. */
  path: string;
  headers: UpstreamHeaders;
  /** Request body, piped with backpressure; null for none. Not destroyed by the pool (only unpiped) when the request fails. */
  body: Readable | null;
  /** Called with the size of every request body chunk on its way upstream. */
  onBodyData?: (bytes: number) => void;
  /** Aborting cancels the upstream request (before or after the response headers). */
  signal?: CancelSignal;
}

export interface UpstreamResponse {
  /** The origin that answered. */
  upstream: string;
  statusCode: number;
  headers: Record<string, string | string[] | undefined>;
  /** Response body (a Readable with text() and dump()). Consume or destroy it: the request counts as outstanding
   * until it ends, fails or closes. */
  body: UpstreamBody;
  /** Trailers once the body has ended ({} when none); rejects with an UpstreamError when the body fails. */
  trailers: Promise<Record<string, string>>;
}

/**
 * Receives one upstream response (UpstreamPool.dispatch). Exactly one of onEnd / onError ends it; onError may come
 * before or after onResponse.
 */
export interface UpstreamSink {
  /** The final response head (interim 1xx responses are skipped); `rawHeaders` are name, value, ... as received. */
  onResponse(upstream: string, statusCode: number, rawHeaders: Buffer[]): void;
  /** A piece of the response body; false pauses the upstream connection until UpstreamCall.resume(). */
  onBody(chunk: Buffer): boolean;
  /** The body ended; `rawTrailers` like rawHeaders (empty when there were none). */
  onEnd(rawTrailers: Buffer[]): void;
  /** The request failed; after onResponse, the UpstreamError's `cause` is what the body failed with. */
  onError(err: UpstreamError): void;
}

export interface HealthChange {
  route: string;
  upstream: string;
  healthy: boolean;
  /** Why: the failing check ("status 500", "ECONNREFUSED", ...) or "check passed". */
  reason: string;
}

export interface UpstreamHealth {
  upstream: string;
  healthy: boolean;
  outstanding: number;
  consecutiveFailures: number;
  consecutiveSuccesses: number;
  lastError: string | null;
}

export interface UpstreamPoolOptions {
  /** Route name (for events and messages). */
  name: string;
  /** Origins "http://host:port". */
  upstreams: readonly string[];
  balance: BalancePolicy;
  timeouts: UpstreamTimeouts;
  /** null: no health checks, every upstream is always healthy. */
  healthCheck: HealthCheckConfig | null;
  onHealthChange?: (change: HealthChange) => void;
  /** Keep-alive time for idle upstream connections (default 4000 ms). */
  keepAliveTimeoutMs?: number;
  /** Connection limit per origin (default: unlimited). */
  connectionsPerOrigin?: number;
}

interface Upstream {
  origin: string;
  pool: Pool;
  healthy: boolean;
  outstanding: number;
  fails: number;
  oks: number;
  lastError: string | null;
  timer: NodeJS.Timeout | null;
  check: AbortController | null;
}

const CONNECT_CODES = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EAI_AGAIN', 'EADDRNOTAVAIL', 'EADDRINUSE', 'ECONNABORTED']);
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT', 'ETIMEDOUT']);

function errorCode(err: unknown): string | null {
  if (err instanceof AggregateError && err.errors.length > 0) return errorCode(err.errors[0]);
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : null;
}

/** Maps any failure of an upstream request (or of its response body) to an UpstreamError. */
export function toUpstreamError(err: unknown, upstream: string, signal?: CancelSignal): UpstreamError {
  if (err instanceof UpstreamError) return err;
  const code = errorCode(err);
  const detail = err instanceof Error ? err.message : String(err);
  if (signal?.aborted || code === 'UND_ERR_ABORTED' || (err as Error | null)?.name === 'AbortError') {
    return new UpstreamError('aborted', 502, `request to ${upstream} aborted`, upstream, code, { cause: err });
  }
  if (code !== null && TIMEOUT_CODES.has(code)) {
    const phase = code === 'UND_ERR_CONNECT_TIMEOUT' ? 'connect' : code === 'UND_ERR_HEADERS_TIMEOUT' ? 'response headers' : code === 'UND_ERR_BODY_TIMEOUT' ? 'response body' : 'response';
    return new UpstreamError('timeout', 504, `${upstream}: timed out waiting for ${phase}`, upstream, code, { cause: err });
  }
  if (code !== null && CONNECT_CODES.has(code)) {
    return new UpstreamError('connect', 502, `${upstream}: cannot connect (${code})`, upstream, code, { cause: err });
  }
  return new UpstreamError('reset', 502, `${upstream}: connection failed mid-request (${code ?? detail})`, upstream, code, { cause: err });
}

export class UpstreamPool extends EventEmitter {
  readonly name: string;
  private readonly upstreams: Upstream[];
  private readonly balance: BalancePolicy;
  private readonly timeouts: UpstreamTimeouts;
  private readonly healthCheck: HealthCheckConfig | null;
  private readonly onHealthChange: ((change: HealthChange) => void) | undefined;
  private next = 0;
  private running = false;

  constructor(options: UpstreamPoolOptions) {
    super();
    if (options.upstreams.length === 0) throw new Error(`route ${options.name}: no upstreams`);
    this.name = options.name;
    this.balance = options.balance;
    this.timeouts = { ...options.timeouts };
    this.healthCheck = options.healthCheck;
    this.onHealthChange = options.onHealthChange;
    this.upstreams = [...new Set(options.upstreams)].map((origin) => ({
      origin,
      pool: new Pool(origin, {
        connect: { timeout: options.timeouts.connectMs },
        headersTimeout: options.timeouts.headersMs,
        bodyTimeout: options.timeouts.idleBodyMs,
        keepAliveTimeout: options.keepAliveTimeoutMs ?? 4000,
        connections: options.connectionsPerOrigin ?? null,
        pipelining: 1,
      }),
      healthy: true,
      outstanding: 0,
      fails: 0,
      oks: 0,
      lastError: null,
      timer: null,
      check: null,
    }));
  }

  /** The origin the next request would go to, or null when none is healthy. Advances the rotation. */
  pick(): string | null {
    return this.pickUpstream()?.origin ?? null;
  }

  private pickUpstream(): Upstream | null {
    const ups = this.upstreams;
    const n = ups.length;
    let best: Upstream | null = null;
    let bestIdx = -1;
    for (let i = 0; i < n; i++) {
      const idx = (this.next + i) % n;
      const u = ups[idx]!;
      if (!u.healthy) continue;
      if (this.balance === 'round-robin') {
        best = u;
        bestIdx = idx;
        break;
      }
      if (best === null || u.outstanding < best.outstanding) {
        best = u;
        bestIdx = idx;
      }
    }
    if (best !== null) this.next = (bestIdx + 1) % n;
    return best;
  }

  /**
   * Sends a request to `upstream` (an origin of this pool) or to the one pick() chooses. Resolves when the
   * response headers arrive; rejects with an UpstreamError. (An adapter on dispatch(): the response body as a
   * Readable and the trailers as a promise.)
   */
  request(req: UpstreamRequest, timeouts: Partial<UpstreamTimeouts> = {}, upstream?: string): Promise<UpstreamResponse> {
    return new Promise<UpstreamResponse>((resolve, reject) => {
      const a = new ResponseAdapter(resolve, reject);
      try {
        a.call = this.dispatch(req, a, timeouts, upstream);
      } catch (err) {
        reject(err);
      }
    });
  }

  /**
   * Sends a request and delivers its response to `sink` (see UpstreamSink): the path the forwarder takes, with no
   * Readable, promise or closure per request. Throws (synchronously) an UpstreamError when no upstream is healthy or
   * the signal was already aborted, and an Error for an `upstream` that is not one of this pool's; everything else
   * reaches sink.onError.
   */
  dispatch(req: UpstreamRequest, sink: UpstreamSink, timeouts: Partial<UpstreamTimeouts> = {}, upstream?: string): UpstreamCall {
    const u = upstream === undefined ? this.pickUpstream() : this.upstreams.find((x) => x.origin === upstream);
    if (u === undefined) throw new Error(`route ${this.name}: ${upstream} is not one of its upstreams`);
    if (u === null) throw new UpstreamError('unavailable', 503, `route ${this.name}: no healthy upstream`, null);
    if (req.signal?.aborted) throw new UpstreamError('aborted', 502, `request to ${u.origin} aborted`, u.origin);
    const call = new UpstreamCall(u, sink, req, timeouts.headersMs ?? this.timeouts.headersMs, timeouts.idleBodyMs ?? this.timeouts.idleBodyMs);
    u.pool.dispatch(
      {
        origin: u.origin,
        method: req.method as 'GET',
        path: req.path,
        headers: req.headers,
        body: call.body,
        // Ours is the headers timeout (undici's would count the time spent sending the body).
        headersTimeout: 0,
        bodyTimeout: call.idleMs,
      },
      call,
    );
    return call;
  }

  /** Snapshot of every upstream's state. */
  health(): UpstreamHealth[] {
    return this.upstreams.map((u) => ({
      upstream: u.origin,
      healthy: u.healthy,
      outstanding: u.outstanding,
      consecutiveFailures: u.fails,
      consecutiveSuccesses: u.oks,
      lastError: u.lastError,
    }));
  }

  /** Starts health checks (the first runs at once). No-op without a healthCheck configuration. */
  start(): void {
    if (this.running || this.healthCheck === null) return;
    this.running = true;
    for (const u of this.upstreams) void this.runCheck(u);
  }

  /** Stops health checks, cancelling any in flight. */
  stop(): void {
    this.running = false;
    for (const u of this.upstreams) {
      if (u.timer) clearTimeout(u.timer);
      u.timer = null;
      u.check?.abort();
      u.check = null;
    }
  }

  /** Stops checks and closes the connection pools, waiting for requests in flight. */
  async close(): Promise<void> {
    this.stop();
    await Promise.all(this.upstreams.map((u) => u.pool.close()));
  }

  /** Stops checks and destroys the connection pools, failing requests in flight. */
  async destroy(): Promise<void> {
    this.stop();
    await Promise.all(this.upstreams.map((u) => u.pool.destroy()));
  }

  private async runCheck(u: Upstream): Promise<void> {
    const hc = this.healthCheck!;
    const ac = new AbortController();
    u.check = ac;
    const timer = setTimeout(() => ac.abort(), hc.timeoutMs);
    timer.unref();
    let failure: string | null = null;
    try {
      const res = await u.pool.request({
        method: 'GET',
        path: hc.path,
        headers: { 'user-agent': 'quic-stream-router health check' },
        signal: ac.signal,
        headersTimeout: hc.timeoutMs,
        bodyTimeout: hc.timeoutMs,
      });
      await res.body.dump();
      if (res.statusCode < 200 || res.statusCode > 299) failure = `status ${res.statusCode}`;
    } catch (err) {
      failure = ac.signal.aborted ? 'timeout' : (errorCode(err) ?? (err instanceof Error ? err.message : String(err)));
    } finally {
      clearTimeout(timer);
      if (u.check === ac) u.check = null;
    }
    if (!this.running) return;
    this.record(u, failure);
    u.timer = setTimeout(() => void this.runCheck(u), hc.intervalMs);
    u.timer.unref();
  }

  private record(u: Upstream, failure: string | null): void {
    const hc = this.healthCheck!;
    if (failure === null) {
      u.oks++;
      u.fails = 0;
      if (!u.healthy && u.oks >= hc.healthyAfter) this.change(u, true, 'check passed');
    } else {
      u.fails++;
      u.oks = 0;
      u.lastError = failure;
      if (u.healthy && u.fails >= hc.unhealthyAfter) this.change(u, false, failure);
    }
  }

  private change(u: Upstream, healthy: boolean, reason: string): void {
    u.healthy = healthy;
    const change: HealthChange = { route: this.name, upstream: u.origin, healthy, reason };
    this.onHealthChange?.(change);
    this.emit('health', change);
  }
}

/** The headers timer (our own: see UpstreamPool.request): fires when the response head is overdue. */
function onHeadersTimeout(call: UpstreamCall): void {
  call.timedOut(
    new UpstreamError('timeout', 504, `${call.upstream}: timed out waiting for response headers (${call.headersMs} ms after the request was sent)`, call.upstream, 'UND_ERR_HEADERS_TIMEOUT'),
    'response headers timeout',
  );
}

function onIdleCheck(call: UpstreamCall): void {
  call.checkIdle();
}

/**
 * One request in flight: undici's dispatch handler (its callback API: onConnect, onHeaders, onData, onComplete,
 * onError) with our timers and the pool's outstanding count around it, delivering to an UpstreamSink.
 */
export class UpstreamCall implements Dispatcher.DispatchHandler {
  readonly upstream: string;
  /** The request body on its way upstream (counted and watched for idleness), or null. */
  readonly body: Transform | null = null;
  readonly idleMs: number;
  private abortFn: ((err?: Error) => void) | null = null;
  /** Why the request is being cancelled, before undici gave us its abort function. */
  private reason: Error | null = null;
  private resumeFn: (() => void) | null = null;
  /** onComplete or onError came: nothing more is delivered. */
  private finished = false;
  /** The response head came or the request failed: our timers stop. */
  private settled = false;
  private released = false;
  /** Cancelled through abort() (or the request's signal) rather than by one of our timers. */
  private abortedByCaller = false;
  /** Set when one of our own timers ended the request: the error the sink gets. */
  private timeoutError: UpstreamError | null = null;
  private headersTimer: NodeJS.Timeout | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private lastData = 0;
  private readonly signal: CancelSignal | undefined;
  private unlink: (() => void) | null = null;
  private detachBody: (() => void) | null = null;

  constructor(
    private readonly u: Upstream,
    private readonly sink: UpstreamSink,
    req: UpstreamRequest,
    readonly headersMs: number,
    idleMs: number,
  ) {
    this.upstream = u.origin;
    this.idleMs = idleMs;
    this.signal = req.signal;
    u.outstanding++;
    const signal = req.signal;
    if (signal) this.unlink = onCancel(signal, () => this.abort(signal.reason));
    if (req.body) this.body = this.countBody(req.body, req.onBodyData);
    else this.armHeadersTimer();
  }

  /** Resumes a response body paused by UpstreamSink.onBody returning false. */
  resume(): void {
    this.resumeFn?.();
  }

  /** Cancels the request (before or after its response head): the sink gets onError with kind 'aborted'. */
  abort(reason?: unknown): void {
    if (this.finished) return;
    this.abortedByCaller = true;
    this.cancel(reason instanceof Error ? reason : new Error('aborted'));
  }

  /** One of our timers ended the request. */
  timedOut(err: UpstreamError, why: string): void {
    if (this.finished || this.settled) return;
    this.timeoutError = err;
    this.cancel(new Error(why));
  }

  private cancel(err: Error): void {
    if (this.reason === null) this.reason = err;
    if (this.abortFn !== null) this.abortFn(err);
  }

  private armHeadersTimer(): void {
    if (this.settled || this.headersTimer !== null) return;
    this.headersTimer = setTimeout(onHeadersTimeout, this.headersMs, this);
  }

  private settle(): void {
    this.settled = true;
    if (this.headersTimer !== null) clearTimeout(this.headersTimer);
    if (this.idleTimer !== null) clearTimeout(this.idleTimer);
    this.headersTimer = null;
    this.idleTimer = null;
  }

  private release(): void {
    if (this.released) return;
    this.released = true;
    this.u.outstanding--;
    this.unlink?.();
    this.unlink = null;
  }

  /**
   * Counts the body on its way upstream and notes when it last moved (a 'data' listener on the body itself would
   * start it flowing before undici reads it). Its 'end' means undici has taken all of it: the headers timer starts.
   */
  private countBody(src: Readable, onData: ((bytes: number) => void) | undefined): Transform {
    this.lastData = Date.now();
    const counted = new Transform({
      transform: (chunk: Buffer, _enc, cb) => {
        this.lastData = Date.now();
        onData?.(chunk.length);
        cb(null, chunk);
      },
    });
    const onGone = (): void => {
      if (!src.readableEnded) counted.destroy(new Error('the client aborted the request body'));
    };
    // Stays for good: an error the client's body emits later (after we let go of it) must not go unhandled.
    src.on('error', (err: Error) => void counted.destroy(err));
    src.once('aborted', onGone);
    src.once('close', onGone);
    this.detachBody = () => {
      src.off('aborted', onGone);
      src.off('close', onGone);
      src.unpipe(counted);
    };
    counted.once('end', () => {
      this.detachBody?.();
      if (this.idleTimer !== null) clearTimeout(this.idleTimer);
      this.idleTimer = null;
      this.armHeadersTimer();
    });
    this.idleTimer = setTimeout(onIdleCheck, this.idleMs, this);
    src.pipe(counted);
    return counted;
  }

  /** The request body's idle timer. */
  checkIdle(): void {
    this.idleTimer = null;
    const counted = this.body!;
    if (this.settled || counted.readableEnded) return;
    const quiet = Date.now() - this.lastData;
    if (quiet < this.idleMs) {
      this.idleTimer = setTimeout(onIdleCheck, this.idleMs - quiet, this);
      return;
    }
    // Data waiting in our buffer: the upstream stopped reading; an empty buffer: the client stopped sending.
    const upstreamStalled = counted.writableNeedDrain || counted.readableLength >= counted.readableHighWaterMark;
    const u = this.upstream;
    this.timedOut(
      upstreamStalled
        ? new UpstreamError('timeout', 504, `${u}: stopped reading the request body (no progress for ${this.idleMs} ms)`, u, null)
        : new UpstreamError('timeout', 408, `request body: no data from the client for ${this.idleMs} ms`, u, null),
      'request body idle timeout',
    );
  }

  // undici's handler callbacks

  onConnect(abort: (err?: Error) => void): void {
    if (this.reason !== null) abort(this.reason);
    else this.abortFn = abort;
  }

  onHeaders(statusCode: number, rawHeaders: Buffer[], resume: () => void): boolean {
    if (statusCode < 200) return true; // interim (1xx): the final response follows
    this.settle();
    this.resumeFn = resume;
    this.sink.onResponse(this.upstream, statusCode, rawHeaders);
    return true;
  }

  onData(chunk: Buffer): boolean {
    return this.sink.onBody(chunk);
  }

  onComplete(trailers: string[] | Buffer[] | null): void {
    if (this.finished) return;
    this.finished = true;
    this.release();
    this.sink.onEnd((trailers as Buffer[] | null) ?? []);
  }

  onError(err: Error): void {
    if (this.finished) return;
    this.finished = true;
    const beforeHead = !this.settled;
    this.settle();
    this.release();
    let e: UpstreamError;
    if (beforeHead) {
      // A request body that is still flowing has nowhere to go now (the client's body itself is left to the caller).
      this.detachBody?.();
      const b = this.body;
      if (b !== null && !b.destroyed) b.destroy();
      const te = this.timeoutError;
      if (te !== null) e = new UpstreamError(te.kind, te.status, te.message, te.upstream, te.code, { cause: err });
      else e = this.abortedByCaller ? abortedError(this.upstream, err) : toUpstreamError(err, this.upstream, this.signal);
    } else {
      e = this.abortedByCaller ? abortedError(this.upstream, err) : toUpstreamError(err, this.upstream, this.signal);
    }
    this.sink.onError(e);
  }
}

function abortedError(upstream: string, cause: unknown): UpstreamError {
  return new UpstreamError('aborted', 502, `request to ${upstream} aborted`, upstream, errorCode(cause), { cause });
}

/** A response body as a Readable (UpstreamPool.request), with undici-like text() and dump(). */
export class UpstreamBody extends Readable {
  constructor(private readonly adapter: ResponseAdapter) {
    super({ highWaterMark: 64 * 1024 });
  }

  override _read(): void {
    this.adapter.call?.resume();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.adapter.bodyDestroyed(err);
    cb(err);
  }

  /** The whole body as UTF-8 text. */
  async text(): Promise<string> {
    const parts: Buffer[] = [];
    for await (const c of this) parts.push(c as Buffer);
    return Buffer.concat(parts).toString('utf8');
  }

  /** Reads the body to its end, discarding it. */
  async dump(): Promise<void> {
    for await (const _ of this) void _;
  }
}

/** UpstreamPool.request's sink: the response as a promise of head + Readable body + trailers promise. */
class ResponseAdapter implements UpstreamSink {
  call: UpstreamCall | null = null;
  private body: UpstreamBody | null = null;
  private upstream = '';
  private ended = false;
  private resolveTrailers: ((t: Record<string, string>) => void) | null = null;
  private rejectTrailers: ((e: UpstreamError) => void) | null = null;

  constructor(
    private readonly resolve: (r: UpstreamResponse) => void,
    private readonly reject: (e: unknown) => void,
  ) {}

  onResponse(upstream: string, statusCode: number, rawHeaders: Buffer[]): void {
    this.upstream = upstream;
    const body = new UpstreamBody(this);
    this.body = body;
    const trailers = new Promise<Record<string, string>>((res, rej) => {
      this.resolveTrailers = res;
      this.rejectTrailers = rej;
    });
    trailers.catch(() => undefined); // settled for whoever awaits it; never an unhandled rejection
    this.resolve({ upstream, statusCode, headers: undiciUtil.parseHeaders(rawHeaders) as Record<string, string | string[]>, body, trailers });
  }

  onBody(chunk: Buffer): boolean {
    const b = this.body!;
    return b.destroyed ? false : b.push(chunk);
  }

  onEnd(rawTrailers: Buffer[]): void {
    this.ended = true;
    this.resolveTrailers!(undiciUtil.parseHeaders(rawTrailers) as Record<string, string>);
    this.body!.push(null);
  }

  onError(err: UpstreamError): void {
    const b = this.body;
    if (b === null) {
      this.reject(err);
      return;
    }
    this.rejectTrailers!(err);
    // The body fails with what undici reported (the trailers promise has the mapped error).
    if (!b.destroyed) b.destroy(err.cause instanceof Error ? err.cause : err);
  }

  /** The consumer destroyed the body (or it failed): an unfinished upstream request is cancelled. */
  bodyDestroyed(err: Error | null): void {
    if (this.ended) return;
    this.rejectTrailers?.(new UpstreamError('aborted', 502, `response body from ${this.upstream} closed before its end`, this.upstream));
    this.call?.abort(err ?? new Error('response body destroyed'));
  }
}
