/**
 * Forwarding one request stream to its upstream and the answer back, the same for HTTP/3 streams and for the TCP
 * listener's HTTP/2 and HTTP/1.1 requests. Errors stay on that stream: no route 404, upstream unreachable 502,
 * timeout 504; a client that cancels aborts the upstream request; bodies stream both ways with backpressure.
 */
import type { Readable, Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Router } from './routes.js';
import type { RouteConfig, TimeoutsConfig } from './config.js';
import { util as undiciUtil } from 'undici';
import { upstreamRequestHeaders, downstreamResponseFields, type FieldList } from './headers.js';
import { UpstreamError, type UpstreamCall, type UpstreamPool, type UpstreamSink } from './upstream.js';
import type { AccessLog } from './access-log.js';
import { H3ConnectionClosedError, H3Error, H3ErrorCode, H3StreamError, h3ErrorName } from '../h3/errors.js';

/** One request as the forwarder sees it, whatever protocol it came in on. */
export interface Exchange {
  protocol: 'h3' | 'h2' | 'http/1.1';
  method: string;
  authority: string;
  /** :path with its query. */
  path: string;
  /** Request fields without pseudo-headers, lower-case names. */
  fields: FieldList;
  body: Readable;
  client: { address: string; port: number };
  connectionId: string;
  streamId: number | null;
  respond(status: number, headers: [string, string][]): void;
  readonly headersSent: boolean;
  /** The response body. */
  out: Writable;
  addTrailers(t: [string, string][]): void;
  /** Aborts the client's stream (used when the upstream fails mid-body). */
  reset(): void;
  /** Calls `cb` once if the client cancels before the exchange finished. */
  onClientAbort(cb: () => void): void;
  /** True when the client's stream is gone before the response finished. */
  clientGone(): boolean;
  /** What the client's side failed with, when the protocol layer said (a reset, a connection close, an idle timeout). */
  failure?(): Error | null;
  /** Set only when the connection is traced (qlog): records which route and upstream the stream went to. */
  traceRoute?: (route: string | null, upstream: string | null) => void;
}

/**
 * The router's qlog event, one per traced request stream: a custom "router" category, which the qlog main schema
 * allows alongside the protocol categories (tools show unknown events as they are). route null: no route matched;
 * upstream null: none was reached.
 */
export function routeChosenEvent(time: number, streamId: number, route: string | null, upstream: string | null) {
  return { time, name: 'router:route_chosen', data: { stream_id: streamId, route, upstream } };
}

/** What the forwarder needs from the running configuration (swapped atomically on reload). */
export interface ForwardState {
  router: Router<RouteConfig>;
  pools: Map<string, UpstreamPool>;
  timeouts: TimeoutsConfig;
}

/** The value of a single, well-formed content-length field in `fields`, else -1. */
function contentLength(fields: readonly (readonly [string, string])[]): number {
  let n = -1;
  for (let i = 0; i < fields.length; i++) {
    if (fields[i][0] !== 'content-length') continue;
    if (n !== -1) return -1;
    const v = fields[i][1];
    n = /^[0-9]{1,15}$/.test(v) ? Number(v) : -2;
  }
  return n < 0 ? -1 : n;
}

/** address:port, an IPv6 address in brackets (`[::1]:443`). */
export function hostPort(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

const METHODS_WITHOUT_BODY = new Set(['GET', 'HEAD', 'OPTIONS', 'DELETE', 'TRACE']);

function jsonError(ex: Exchange, status: number, body: Record<string, unknown>): number {
  const text = Buffer.from(JSON.stringify(body) + '\n');
  if (!ex.headersSent) {
    ex.respond(status, [
      ['content-type', 'application/json'],
      ['content-length', String(text.length)],
    ]);
    ex.out.end(ex.method === 'HEAD' ? undefined : text);
  } else ex.reset();
  // The request body is not needed any more.
  ex.body.resume();
  return text.length;
}

export class Forwarder {
  constructor(
    private state: ForwardState,
    private readonly log: AccessLog | null,
  ) {}

  /** Set once a shutdown's drain deadline passed: streams cut from then on are logged as such, not as client cancels. */
  private drainDeadlinePassed = false;

  /** Called by the server when the drain deadline of a graceful shutdown passes and remaining streams are cut. */
  markDrainDeadline(): void {
    this.drainDeadlinePassed = true;
  }

  /** Why a stream whose client side went away ended early, from what its protocol layer reported. */
  cancelReason(ex: Exchange): string {
    const f = ex.failure?.() ?? null;
    if (f instanceof H3ConnectionClosedError) {
      // The connection hit its idle timeout: the client vanished without closing (crashed, lost its network).
      if (f.by === 'idle') return 'connection idle timeout (the client stopped answering)';
      if (f.by === 'peer') return `client closed the connection (${f.application ? h3ErrorName(f.code) : `transport error 0x${f.code.toString(16)}`})`;
      if (this.drainDeadlinePassed) return 'cut at the drain deadline of a shutdown';
      return f.message;
    }
    if (this.drainDeadlinePassed) return 'cut at the drain deadline of a shutdown';
    // A stream error of ours on the request (e.g. more DATA than its content-length).
    if (f instanceof H3Error && f.scope === 'stream') return `stream error ${f.message}`;
    if (f instanceof H3StreamError && f.code !== H3ErrorCode.H3_REQUEST_CANCELLED) return `client cancelled (${h3ErrorName(f.code)})`;
    return 'client cancelled';
  }

  /** Writes the line of a request stream that the HTTP/3 layer reset with a stream error before it became a request. */
  logStreamError(e: { connectionId: string; streamId: number; client: { address: string; port: number }; error: Error }): void {
    this.log?.logStream({
      connectionId: e.connectionId,
      streamId: e.streamId,
      client: hostPort(e.client.address, e.client.port),
      protocol: 'h3',
      method: null,
      authority: null,
      path: null,
      route: null,
      upstream: null,
      status: null,
      bytesIn: 0,
      bytesOut: 0,
      durationMs: 0,
      error: `stream error ${e.error.message}`,
    });
  }

  /** Installs a new configuration; requests in flight keep the state they started with. */
  setState(state: ForwardState): void {
    this.state = state;
  }

  /**
   * Forwards one exchange. Synchronous up to the upstream request; the answer comes back through a ForwardCall (the
   * upstream's UpstreamSink), which writes it to the client and logs the stream when it ends.
   */
  handle(ex: Exchange): void {
    const state = this.state;
    const fc = new ForwardCall(this, ex, performance.now());
    try {
      const m = state.router.match({ method: ex.method, authority: ex.authority, path: ex.path });
      if (!m) {
        fc.status = 404;
        fc.error = 'no route';
        if (ex.traceRoute) ex.traceRoute(null, null);
        fc.bytesOut = jsonError(ex, 404, { error: 'no route', path: ex.path });
        fc.finish();
        return;
      }
      fc.routeName = m.route.name;
      const pool = state.pools.get(m.route.name);
      if (!pool) throw new Error(`no upstream pool for route ${m.route.name}`);
      ex.onClientAbort(() => fc.clientAborted());
      const headers = upstreamRequestHeaders(ex.fields, {
        authority: ex.authority,
        clientAddress: ex.client.address,
        rules: m.route.headers,
      });
      const hasBody = !METHODS_WITHOUT_BODY.has(ex.method) || ex.fields.some(([n]) => n === 'content-length' || n === 'content-type');
      const req = { method: ex.method, path: m.forwardPath, headers, body: hasBody ? ex.body : null, onBodyData: hasBody ? (n: number) => void (fc.bytesIn += n) : undefined };
      try {
        fc.call = pool.dispatch(req, fc, state.timeouts);
      } catch (err) {
        // No healthy upstream (or a request cancelled already): the same as a failure before the response head.
        if (!(err instanceof UpstreamError)) throw err;
        fc.onError(err);
      }
    } catch (err) {
      fc.internalError(err);
    }
  }

  /** The access log line of a finished exchange. */
  logExchange(fc: ForwardCall): void {
    const ex = fc.ex;
    this.log?.logStream({
      connectionId: ex.connectionId,
      streamId: ex.streamId ?? -1,
      client: hostPort(ex.client.address, ex.client.port),
      protocol: ex.protocol,
      method: ex.method,
      authority: ex.authority,
      path: ex.path,
      route: fc.routeName,
      upstream: fc.upstream,
      status: fc.status,
      bytesIn: fc.bytesIn,
      bytesOut: fc.bytesOut,
      durationMs: Math.round((performance.now() - fc.t0) * 1000) / 1000,
      error: fc.error,
    });
  }

}

/**
 * One exchange in flight: the upstream response's sink (head, body with backpressure, trailers, errors) and what its
 * access log line says. One object per request instead of closures, promises and a pipe.
 */
class ForwardCall implements UpstreamSink {
  status = 0;
  bytesIn = 0;
  bytesOut = 0;
  routeName: string | null = null;
  upstream: string | null = null;
  error: string | null = null;
  call: UpstreamCall | null = null;
  /** The client cancelled (its stream is gone before the response finished). */
  private aborted = false;
  /** The response head went to the client. */
  private responded = false;
  private waiting = false;
  private done = false;
  /** The response's content-length, when it has one (else -1). */
  private expected = -1;
  /**
   * The body's last piece by content-length, held back for onEnd, which undici calls right after it: end(chunk)
   * then sends the last DATA frame and FIN in one write (Http3Response.end) instead of a write and an end.
   */
  private held: Buffer | null = null;

  constructor(
    private readonly fwd: Forwarder,
    readonly ex: Exchange,
    readonly t0: number,
  ) {}

  clientAborted(): void {
    if (this.aborted || this.done) return;
    this.aborted = true;
    this.call?.abort(new Error('client cancelled the stream'));
  }

  onResponse(upstream: string, statusCode: number, rawHeaders: Buffer[]): void {
    if (this.done) return;
    const ex = this.ex;
    this.upstream = upstream;
    if (ex.traceRoute) ex.traceRoute(this.routeName, upstream);
    this.status = statusCode;
    this.responded = true;
    try {
      const fields = downstreamResponseFields(rawHeaders);
      this.expected = contentLength(fields);
      ex.respond(statusCode, fields);
    } catch (err) {
      this.internalError(err);
      this.call?.abort(err);
    }
  }

  onBody(chunk: Buffer): boolean {
    if (this.done) return false;
    const out = this.ex.out;
    if (this.held !== null) {
      // More than content-length said: undici fails the request; pass on what came.
      out.write(this.held);
      this.held = null;
    }
    this.bytesOut += chunk.length;
    if (this.bytesOut === this.expected && !this.waiting) {
      this.held = chunk;
      return true;
    }
    if (out.write(chunk)) return true;
    if (!this.waiting) {
      this.waiting = true;
      out.once('drain', () => {
        this.waiting = false;
        this.call?.resume();
      });
    }
    return false;
  }

  onEnd(rawTrailers: Buffer[]): void {
    if (this.done) return;
    try {
      if (rawTrailers.length > 0) {
        const trailers = undiciUtil.parseHeaders(rawTrailers) as Record<string, string | string[] | undefined>;
        const t = Object.entries(trailers).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)] as [string, string]);
        if (t.length) this.ex.addTrailers(t);
      }
      const last = this.held;
      this.held = null;
      if (last !== null) this.ex.out.end(last);
      else this.ex.out.end();
    } catch (err) {
      this.internalError(err);
      return;
    }
    this.finish();
  }

  onError(err: UpstreamError): void {
    if (this.done) return;
    const ex = this.ex;
    if (!this.responded) {
      if (this.aborted) {
        this.error = this.fwd.cancelReason(ex);
        this.status = 499;
        this.finish();
        return;
      }
      this.status = err.status;
      this.upstream = err.upstream;
      if (ex.traceRoute) ex.traceRoute(this.routeName, err.upstream);
      this.error = `${err.kind}: ${err.message}`;
      this.bytesOut = jsonError(ex, err.status, {
        error: err.status === 504 ? 'upstream timeout' : err.status === 408 ? 'request body timeout' : 'upstream unavailable',
        route: this.routeName,
        detail: err.message,
      });
      this.finish();
      return;
    }
    // A client stream that is gone (whether or not its abort event came first) is a client cancel; otherwise the
    // upstream failed mid-body and the client's stream is reset.
    const clientGone = this.aborted || ex.clientGone();
    const cause = err.cause instanceof Error ? err.cause : err;
    this.error = clientGone ? this.fwd.cancelReason(ex) : `upstream body: ${cause.message}`;
    if (!clientGone) ex.reset();
    this.finish();
  }

  /** Something of ours failed (not the upstream): 500 when the head has not gone out, else the stream is reset. */
  internalError(err: unknown): void {
    if (this.done) return;
    this.error = (err as Error).message;
    if (!this.status) this.status = 500;
    const ex = this.ex;
    if (!ex.headersSent) this.bytesOut = jsonError(ex, 500, { error: 'internal error' });
    else ex.reset();
    this.finish();
  }

  finish(): void {
    if (this.done) return;
    this.done = true;
    this.fwd.logExchange(this);
  }
}
