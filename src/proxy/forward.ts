/**
 * Forwarding one request stream to its upstream and the answer back, the same for HTTP/3 streams and for the TCP
 * listener's HTTP/2 and HTTP/1.1 requests. Errors stay on that stream: no route 404, upstream unreachable 502,
 * timeout 504; a client that cancels aborts the upstream request; bodies stream both ways with backpressure.
 */
import type { Readable, Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import type { Router } from './routes.js';
import type { RouteConfig, TimeoutsConfig } from './config.js';
import { upstreamRequestHeaders, downstreamResponseHeaders, type FieldList } from './headers.js';
import { UpstreamCancel, UpstreamError, type UpstreamPool } from './upstream.js';
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

/**
 * Copies `src` into `dst` with backpressure, leaving `dst` open (trailers and end come after), and calls `count` with
 * each chunk's size. Not stream.pipeline (it aborts an internal AbortController on every completion, and the
 * DOMException it builds was the largest single cost of a small proxied request) and not pipe() (a dozen closures and
 * listeners per call): one 'data' handler writes, pauses on a full destination and resumes on 'drain'.
 */
function pump(src: Readable, dst: Writable, count: (n: number) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let settled = false;
    const done = (err: Error | null): void => {
      if (settled) return;
      settled = true;
      src.off('data', onData);
      src.off('end', onEnd);
      src.off('error', done);
      src.off('close', onSrcClose);
      dst.off('drain', onDrain);
      dst.off('error', done);
      dst.off('close', onDstClose);
      if (err) reject(err);
      else resolve();
    };
    let waiting = false;
    const onData = (chunk: Buffer): void => {
      count(chunk.length);
      if (!dst.write(chunk) && !waiting) {
        waiting = true;
        src.pause();
        dst.once('drain', onDrain);
      }
    };
    const onDrain = (): void => {
      waiting = false;
      src.resume();
    };
    const onEnd = (): void => done(null);
    const onSrcClose = (): void => {
      if (!src.readableEnded) done(new Error('upstream body closed before its end'));
    };
    const onDstClose = (): void => {
      if (!src.readableEnded) done(new Error('client stream closed'));
    };
    src.on('data', onData);
    src.once('end', onEnd);
    src.once('error', done);
    src.once('close', onSrcClose);
    dst.once('error', done);
    dst.once('close', onDstClose);
  });
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
  private cancelReason(ex: Exchange): string {
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

  async handle(ex: Exchange): Promise<void> {
    const state = this.state;
    const t0 = performance.now();
    let status = 0;
    let bytesIn = 0;
    let bytesOut = 0;
    let routeName: string | null = null;
    let upstream: string | null = null;
    let error: string | null = null;
    const countOut = (n: number): void => {
      bytesOut += n;
    };
    const countIn = (n: number): void => {
      bytesIn += n;
    };
    try {
      const m = state.router.match({ method: ex.method, authority: ex.authority, path: ex.path });
      if (!m) {
        status = 404;
        error = 'no route';
        if (ex.traceRoute) ex.traceRoute(null, null);
        bytesOut = jsonError(ex, 404, { error: 'no route', path: ex.path });
        return;
      }
      routeName = m.route.name;
      const pool = state.pools.get(m.route.name);
      if (!pool) throw new Error(`no upstream pool for route ${m.route.name}`);
      const abort = new UpstreamCancel();
      ex.onClientAbort(() => abort.abort(new Error('client cancelled the stream')));
      const headers = upstreamRequestHeaders(ex.fields, {
        authority: ex.authority,
        clientAddress: ex.client.address,
        rules: m.route.headers,
      });
      const hasBody = !METHODS_WITHOUT_BODY.has(ex.method) || ex.fields.some(([n]) => n === 'content-length' || n === 'content-type');
      let res;
      try {
        res = await pool.request(
          { method: ex.method, path: m.forwardPath, headers, body: hasBody ? ex.body : null, onBodyData: countIn, signal: abort },
          state.timeouts,
        );
      } catch (err) {
        if (abort.aborted) {
          error = this.cancelReason(ex);
          status = 499;
          return;
        }
        const ue = err instanceof UpstreamError ? err : null;
        status = ue?.status ?? 502;
        upstream = ue?.upstream ?? null;
        if (ex.traceRoute) ex.traceRoute(m.route.name, upstream);
        error = `${ue?.kind ?? 'error'}: ${(err as Error).message}`;
        bytesOut = jsonError(ex, status, {
          error: status === 504 ? 'upstream timeout' : status === 408 ? 'request body timeout' : 'upstream unavailable',
          route: m.route.name,
          detail: (err as Error).message,
        });
        return;
      }
      upstream = res.upstream;
      if (ex.traceRoute) ex.traceRoute(m.route.name, upstream);
      status = res.statusCode;
      ex.respond(res.statusCode, downstreamResponseHeaders(res.headers));
      try {
        await pump(res.body, ex.out, countOut);
        const trailers = await res.trailers;
        const t = Object.entries(trailers ?? {}).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)] as [string, string]);
        if (t.length) ex.addTrailers(t);
        ex.out.end();
      } catch (err) {
        // A client stream that is gone (whether or not its abort event came first) is a client cancel: stop the
        // upstream request; otherwise the upstream failed mid-body and the client's stream is reset.
        const clientGone = abort.aborted || ex.clientGone();
        error = clientGone ? this.cancelReason(ex) : `upstream body: ${(err as Error).message}`;
        if (clientGone) abort.abort(new Error('client cancelled the stream'));
        else ex.reset();
        // The rest of the upstream body is not wanted either way: destroying it ends the upstream request (and
        // releases its outstanding count in the pool).
        res.body.destroy();
      }
    } catch (err) {
      error = (err as Error).message;
      if (!status) status = 500;
      if (!ex.headersSent) bytesOut = jsonError(ex, 500, { error: 'internal error' });
      else ex.reset();
    } finally {
      this.log?.logStream({
        connectionId: ex.connectionId,
        streamId: ex.streamId ?? -1,
        client: hostPort(ex.client.address, ex.client.port),
        protocol: ex.protocol,
        method: ex.method,
        authority: ex.authority,
        path: ex.path,
        route: routeName,
        upstream,
        status,
        bytesIn,
        bytesOut,
        durationMs: Math.round((performance.now() - t0) * 1000) / 1000,
        error,
      });
    }
  }
}
