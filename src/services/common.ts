/**
 * Shared plumbing for the three backend services (plain HTTP/1.1 on node:http, keep-alive on): a small path/method
 * router, JSON responses, bounded body reading (413), the `x-service` header on every response, an optional
 * response delay for proxy-timeout tests, abort counting and a bounded graceful close.
 *
 * HTTP semantics follow RFC 9110: 404 for an unknown path, 405 with `allow` (§15.5.6), 413 for a body over the
 * limit (§15.5.14); HEAD is accepted wherever GET is (node:http leaves the body out).
 */
import http from 'node:http';

export type ServiceName = 'video' | 'text' | 'control';
export const SERVICE_NAMES: readonly ServiceName[] = ['video', 'text', 'control'];

/** One structured log event; the default logger writes it to stderr as a JSON line. */
export interface ServiceLogEvent {
  service: ServiceName;
  event: string;
  /** Severity (default "info", "error" for event "error"). */
  level?: 'debug' | 'info' | 'warn' | 'error';
  [key: string]: unknown;
}

export interface ServiceOptions {
  /**
   * Slow mode for proxy-timeout tests: hold every response's headers back this many milliseconds, on every path
   * except `GET /healthz` (so a proxy's health checks still see the service as up). Default 0.
   */
  delayMs?: number;
  /** Where log events go. Default: one JSON line per event on stderr. */
  log?: (event: ServiceLogEvent) => void;
  /** How long `close()` lets in-flight requests finish before dropping their connections. Default 5000 ms. */
  closeTimeoutMs?: number;
  /** Text service: the largest `POST /text` body in bytes; a larger one is answered 413. Default 10 MiB (10485760). */
  maxBodyBytes?: number;
}

export interface ServiceStats {
  /** Requests received (every path and method). */
  requests: number;
  /** Requests whose client went away before the response was complete (reset mid-upload, left a live stream). */
  aborted: number;
  /** Requests received and not yet finished or aborted. */
  inFlight: number;
  /** Live streams whose timer is running (video only; always 0 elsewhere). */
  liveStreams: number;
}

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, url: URL) => void | Promise<void>;
/** Handlers by method for one exact path. A GET handler also answers HEAD. */
export type Routes = Record<string, Partial<Record<'GET' | 'POST' | 'PUT' | 'DELETE', Handler>>>;

/**
 * One JSON line on stderr per event: time, level ("info" unless the event says otherwise; "error" for event "error"),
 * then the event's fields. `qsr up` passes these on as records of its own log at that level.
 */
const defaultLog = (e: ServiceLogEvent): void => {
  const level = e.level ?? (e.event === 'error' ? 'error' : 'info');
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level, ...e })}\n`);
};

/** Send a JSON body with content-length (works for HEAD too: node:http omits the body). */
export function sendJson(res: http.ServerResponse, status: number, body: unknown, headers: http.OutgoingHttpHeaders = {}): void {
  const text = Buffer.from(`${JSON.stringify(body)}\n`, 'utf8');
  res.writeHead(status, { ...headers, 'content-type': 'application/json; charset=utf-8', 'content-length': text.length });
  res.end(text);
}

/**
 * Read the whole request body, at most `limit` bytes. Over the limit (by content-length up front, or while
 * reading a chunked body) it answers 413 itself, closes the connection after the response, and resolves undefined.
 */
export function readBody(req: http.IncomingMessage, res: http.ServerResponse, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve, reject) => {
    const tooLarge = (): void => {
      // The rest of the body is discarded; the connection cannot be reused for the next request.
      sendJson(res, 413, { error: `request body is larger than the limit of ${limit} bytes`, limit }, { connection: 'close' });
      req.resume();
      resolve(undefined);
    };
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) {
      tooLarge();
      return;
    }
    const chunks: Buffer[] = [];
    let total = 0;
    const onData = (chunk: Buffer): void => {
      total += chunk.length;
      if (total > limit) {
        req.off('data', onData);
        req.off('end', onEnd);
        chunks.length = 0;
        tooLarge();
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = (): void => resolve(Buffer.concat(chunks, total));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', reject);
  });
}

/**
 * An http.Server for one service. `close()` is graceful and bounded: it stops accepting, lets in-flight requests
 * finish (live streams are cut through `onClose` hooks), closes idle keep-alive connections as they
 * become idle, and after `closeTimeoutMs` drops whatever is left.
 */
export class ServiceServer extends http.Server {
  readonly stats: ServiceStats = { requests: 0, aborted: 0, inFlight: 0, liveStreams: 0 };
  readonly startedAt = Date.now();
  readonly log: (event: ServiceLogEvent) => void;
  private closing = false;
  private closed = false;
  private readonly closeHooks = new Set<() => void>();
  /** Responses this server cut on purpose (see cut()): logged as cut, not as client aborts. */
  private readonly cutByUs = new WeakSet<http.ServerResponse>();
  private readonly pending = new Set<http.ServerResponse>();

  constructor(
    readonly service: ServiceName,
    private readonly routes: Routes,
    private readonly options: ServiceOptions = {},
  ) {
    super({ keepAlive: true, requestTimeout: 0 });
    this.keepAliveTimeout = 30_000;
    this.headersTimeout = 30_000;
    const log = options.log ?? defaultLog;
    this.log = (e) => {
      try {
        log(e);
      } catch {
        // a logger must never break a request
      }
    };
    this.once('close', () => (this.closed = true));
    this.on('request', (req: http.IncomingMessage, res: http.ServerResponse) => this.dispatch(req, res));
  }

  /** Register something to stop when the server closes (e.g. a live stream); returns the unregister function. */
  onClose(stop: () => void): () => void {
    this.closeHooks.add(stop);
    return () => this.closeHooks.delete(stop);
  }

  /**
   * Ends a response before its end without the clean end of message (no last chunk, the connection closed), so that
   * the client or a proxy sees it incomplete rather than complete: what a live stream gets when the server shuts down.
   */
  cut(res: http.ServerResponse): void {
    this.cutByUs.add(res);
    res.destroy();
  }

  get isClosing(): boolean {
    return this.closing;
  }

  override close(callback?: (err?: Error) => void): this {
    if (this.closing) {
      if (callback) {
        if (this.closed) queueMicrotask(() => callback());
        else this.once('close', () => callback());
      }
      return this;
    }
    this.closing = true;
    super.close(callback);
    for (const res of this.pending) if (!res.headersSent) res.setHeader('connection', 'close');
    for (const stop of [...this.closeHooks]) stop();
    this.closeIdleConnections();
    const timer = setTimeout(() => this.closeAllConnections(), this.options.closeTimeoutMs ?? 5000);
    timer.unref();
    this.once('close', () => clearTimeout(timer));
    return this;
  }

  /** close() as a promise. */
  shutdown(): Promise<void> {
    return new Promise((resolve) => this.close(() => resolve()));
  }

  private dispatch(req: http.IncomingMessage, res: http.ServerResponse): void {
    this.stats.requests++;
    this.stats.inFlight++;
    this.pending.add(res);
    res.setHeader('x-service', this.service);
    if (this.closing) res.setHeader('connection', 'close');
    let delayTimer: NodeJS.Timeout | undefined;
    res.once('close', () => {
      this.stats.inFlight--;
      this.pending.delete(res);
      if (delayTimer) clearTimeout(delayTimer);
      if (this.cutByUs.has(res)) this.log({ service: this.service, event: 'cut', method: req.method, path: req.url, reason: 'server shutting down' });
      else if (!res.writableFinished) {
        this.stats.aborted++;
        this.log({ service: this.service, event: 'aborted', level: 'warn', method: req.method, path: req.url });
      }
      // While closing, a keep-alive connection that just went idle should go too.
      if (this.closing) setImmediate(() => this.closeIdleConnections());
    });

    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://service.invalid');
    } catch {
      sendJson(res, 400, { error: 'bad request target', path: req.url });
      return;
    }
    const delay = this.options.delayMs ?? 0;
    if (delay > 0 && !(url.pathname === '/healthz' && (req.method === 'GET' || req.method === 'HEAD'))) {
      delayTimer = setTimeout(() => {
        delayTimer = undefined;
        this.route(req, res, url);
      }, delay);
      return;
    }
    this.route(req, res, url);
  }

  private route(req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
    if (url.pathname === '/healthz') {
      if (req.method === 'GET' || req.method === 'HEAD') sendJson(res, 200, { ok: true, service: this.service });
      else this.methodNotAllowed(req, res, 'GET, HEAD');
      return;
    }
    const methods = this.routes[url.pathname];
    if (!methods) {
      req.resume();
      sendJson(res, 404, { error: 'not found', path: url.pathname, service: this.service });
      return;
    }
    const method = req.method === 'HEAD' ? 'GET' : req.method;
    const handler = methods[method as keyof typeof methods];
    if (!handler) {
      const allow = Object.keys(methods).flatMap((m) => (m === 'GET' ? ['GET', 'HEAD'] : [m]));
      this.methodNotAllowed(req, res, allow.join(', '));
      return;
    }
    const fail = (err: unknown): void => {
      this.log({ service: this.service, event: 'error', path: url.pathname, error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) sendJson(res, 500, { error: 'internal error' }, { connection: 'close' });
      else res.destroy();
    };
    try {
      const result = handler(req, res, url);
      if (result) result.catch(fail);
    } catch (err) {
      fail(err);
    }
  }

  private methodNotAllowed(req: http.IncomingMessage, res: http.ServerResponse, allow: string): void {
    req.resume();
    sendJson(res, 405, { error: `method ${req.method} not allowed`, allow }, { allow });
  }
}
