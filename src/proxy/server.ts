/**
 * The stream router: an HTTP/3 server on UDP and an HTTPS server (HTTP/2 + HTTP/1.1, advertising Alt-Svc h3) on
 * TCP, both feeding the Forwarder. Holds the routing state built from a Config and swaps it on reload.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureServer, type Http2SecureServer, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Http3Server, type Http3Request, type Http3Response, type Http3StreamErrorInfo } from '../h3/server.js';
import { H3ErrorCode } from '../h3/errors.js';
import { loadPemChain, loadPrivateKey } from '../quic/tls/pem.js';
import { suiteByName } from '../quic/crypto/suites.js';
import { congestionControlFactory } from '../quic/recovery/congestion.js';
import { keyLogSink } from '../obs/keylog.js';
import { qlogTracer } from '../obs/qlog.js';
import type { TraceFactory } from '../quic/trace.js';
import { ensureDevCert } from '../io/devcert.js';
import type { IoRuntime } from '../io/runtime.js';
import type { Config } from './config.js';
import { Router } from './routes.js';
import { UpstreamPool } from './upstream.js';
import { Forwarder, routeChosenEvent, type Exchange, type ForwardState } from './forward.js';
import type { AccessLog } from './access-log.js';
import { DroppedInitialsLog } from './drop-log.js';

export interface ProxyLog {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error(fields: Record<string, unknown>, msg: string): void;
}

export interface ProxyInfo {
  udp: { address: string; port: number }[];
  tcp: { address: string; port: number }[];
  certPath: string;
  spkiSha256: string | null;
  keylog: string | null;
  /** The qlog directory in use (qlog: or QLOGDIR), or null. */
  qlog: string | null;
}

function buildState(config: Config, log: ProxyLog): ForwardState {
  const pools = new Map<string, UpstreamPool>();
  for (const r of config.routes) {
    const pool = new UpstreamPool({
      name: r.name,
      upstreams: r.upstreams,
      balance: r.balance,
      healthCheck: config.healthCheck,
      timeouts: config.timeouts,
      onHealthChange: (ch) =>
        (ch.healthy ? log.info : log.warn).call(
          log,
          { route: ch.route, upstream: ch.upstream, healthy: ch.healthy, reason: ch.reason },
          `upstream ${ch.upstream} of route ${ch.route} is ${ch.healthy ? 'healthy again' : 'unhealthy'} (${ch.reason})`,
        ),
    });
    pool.start();
    pools.set(r.name, pool);
  }
  return { router: new Router(config.routes), pools, timeouts: config.timeouts };
}

/** Connection IDs in hex, per connection (one per request stream would be a string conversion per request). */
const connectionIds = new WeakMap<object, string>();

/**
 * An HTTP/3 request stream as the forwarder sees it. A class, not an object literal: a literal with a getter costs a
 * runtime call per request to define the accessor.
 */
class H3Exchange implements Exchange {
  readonly protocol = 'h3' as const;
  readonly method: string;
  readonly authority: string;
  readonly path: string;
  readonly fields: [string, string][];
  readonly client: { address: string; port: number };
  readonly connectionId: string;
  readonly streamId: number;
  readonly traceRoute: ((route: string | null, upstream: string | null) => void) | undefined;
  private failed: Error | null = null;

  constructor(
    readonly body: Http3Request,
    readonly out: Http3Response,
  ) {
    const req = body;
    const quic = req.session.quic;
    const conn = quic.conn;
    this.method = req.method;
    this.authority = req.authority;
    this.path = req.path;
    const raw = req.rawHeaders;
    const fields: [string, string][] = [];
    for (let i = 0; i < raw.length; i++) if (raw[i][0].charCodeAt(0) !== 0x3a /* ':' */) fields.push(raw[i]);
    this.fields = fields;
    this.client = req.remoteAddress;
    let id = connectionIds.get(conn);
    if (id === undefined) connectionIds.set(conn, (id = conn.originalDcid.toString('hex')));
    this.connectionId = id;
    this.streamId = req.streamId;
    const trace = quic.trace;
    this.traceRoute = trace ? (route, upstream) => trace(routeChosenEvent(quic.now(), req.streamId, route, upstream)) : undefined;
  }

  respond(status: number, headers: [string, string][]): void {
    this.out.respond(status, headers);
  }

  get headersSent(): boolean {
    return this.out.headersSent;
  }

  addTrailers(t: [string, string][]): void {
    this.out.addTrailers(t);
  }

  reset(): void {
    this.out.reset(H3ErrorCode.H3_INTERNAL_ERROR);
  }

  onClientAbort(cb: () => void): void {
    const res = this.out;
    let done = false;
    const once = (err?: unknown): void => {
      if (this.failed === null && err instanceof Error) this.failed = err;
      if (!done && !res.writableFinished) {
        done = true;
        cb();
      }
    };
    this.body.once('aborted', once);
    res.once('error', once);
    res.once('close', () => {
      if (!res.writableFinished) once();
    });
  }

  clientGone(): boolean {
    return this.out.destroyed && !this.out.writableFinished;
  }

  /** The error the stream failed with (its reset code, the connection close or idle timeout), once it failed. */
  failure(): Error | null {
    return this.failed;
  }
}

function tcpExchange(
  req: Http2ServerRequest | IncomingMessage,
  res: Http2ServerResponse | ServerResponse,
  altSvc: string,
  connIds: WeakMap<object, string>,
): Exchange {
  const h2 = 'stream' in req && (req as Http2ServerRequest).stream !== undefined;
  const fields: [string, string][] = [];
  const raw = req.rawHeaders;
  for (let i = 0; i + 1 < raw.length; i += 2) if (!raw[i].startsWith(':')) fields.push([raw[i].toLowerCase(), raw[i + 1]]);
  const authority = (req.headers[':authority'] as string | undefined) ?? req.headers.host ?? '';
  const sock = req.socket;
  // One id per TCP connection: for HTTP/2 the session (req.socket is a new proxy object for every stream), for
  // HTTP/1.1 the socket.
  const conn: object = h2 ? (req as Http2ServerRequest).stream.session ?? sock : sock;
  let id = connIds.get(conn);
  if (!id) {
    id = `tcp-${randomBytes(8).toString('hex')}`;
    connIds.set(conn, id);
  }
  const r = res as ServerResponse;
  return {
    protocol: h2 ? 'h2' : 'http/1.1',
    method: req.method ?? 'GET',
    authority,
    path: req.url ?? '/',
    fields,
    body: req,
    client: { address: sock.remoteAddress ?? '', port: sock.remotePort ?? 0 },
    connectionId: id,
    streamId: h2 ? ((req as Http2ServerRequest).stream.id ?? null) : null,
    respond: (status, headers) => {
      const h: Record<string, string | string[]> = {};
      for (const [n, v] of headers) {
        const cur = h[n];
        h[n] = cur === undefined ? v : Array.isArray(cur) ? [...cur, v] : [cur, v];
      }
      h['alt-svc'] = altSvc;
      r.writeHead(status, h);
    },
    get headersSent() {
      return r.headersSent;
    },
    out: r,
    addTrailers: (t) => r.addTrailers(Object.fromEntries(t)),
    reset: () => {
      if (h2) (req as Http2ServerRequest).stream.close(0x2 /* INTERNAL_ERROR */);
      else sock.destroy();
    },
    onClientAbort: (cb) => {
      r.once('close', () => {
        if (!r.writableFinished) cb();
      });
      if (h2) (req as Http2ServerRequest).stream.once('aborted', cb);
    },
    clientGone: () =>
      h2 ? (req as Http2ServerRequest).stream.destroyed && !r.writableFinished : sock.destroyed || (r.destroyed && !r.writableFinished),
  };
}

export class ProxyServer {
  private h3: Http3Server | null = null;
  private readonly tcp: Http2SecureServer[] = [];
  private state: ForwardState;
  private readonly forwarder: Forwarder;
  private info: ProxyInfo | null = null;
  private readonly tcpConnIds = new WeakMap<object, string>();
  private droppedInitials: DroppedInitialsLog | null = null;
  /** qlog files for HTTP/3 connections (qlog: or QLOGDIR); replaced on reload, used by connections accepted after. */
  private qlog: TraceFactory | undefined;

  constructor(
    private config: Config,
    private readonly log: ProxyLog,
    accessLog: AccessLog | null,
  ) {
    this.state = buildState(config, log);
    this.forwarder = new Forwarder(this.state, accessLog);
  }

  /**
   * Binds UDP (HTTP/3) and TCP (HTTPS with Alt-Svc) on every listen address. `runtime`: the HTTP/3 side's sockets and
   * clock (default node:dgram and real timers; tests use a simulated network).
   */
  async start(opts: { runtime?: IoRuntime } = {}): Promise<ProxyInfo> {
    const c = this.config;
    let certPath: string;
    let keyPath: string;
    let spki: string | null = null;
    if (c.tls) {
      certPath = c.tls.cert;
      keyPath = c.tls.key;
    } else {
      const dev = await ensureDevCert(join(c.dataDir, 'certs'));
      certPath = dev.certPath;
      keyPath = dev.keyPath;
      spki = dev.spkiSha256;
    }
    const certPem = readFileSync(certPath, 'utf8');
    const keyPem = readFileSync(keyPath, 'utf8');
    const listen = c.listen.map((l) => ({ address: l.host === 'localhost' ? '127.0.0.1' : l.host, port: l.port }));
    this.qlog = qlogTracer(c.qlog);
    this.h3 = await Http3Server.listen({
      listen,
      trace: (role, odcid) => this.qlog?.(role, odcid),
      certChain: loadPemChain(certPem),
      privateKey: loadPrivateKey(keyPem),
      keyLog: c.keylog ? keyLogSink(c.keylog) : keyLogSink(null),
      quic: {
        maxIdleTimeout: c.quic.maxIdleTimeoutMs,
        onePacketPerDatagram: c.quic.onePacketPerDatagram,
        congestionControl: congestionControlFactory(c.quic.congestionControl),
        ...(c.quic.ciphers ? { cipherSuites: c.quic.ciphers.map((n) => suiteByName(n)!) } : {}),
      },
      runtime: opts.runtime,
    });
    this.h3.on('request', (req: Http3Request, res: Http3Response) => void this.forwarder.handle(new H3Exchange(req, res)));
    this.h3.on('streamError', (e: Http3StreamErrorInfo) =>
      this.forwarder.logStreamError({ connectionId: e.session.quic.conn.originalDcid.toString('hex'), streamId: e.streamId, client: e.remoteAddress, error: e.error }),
    );
    const quic = this.h3.endpoint.endpoint;
    this.droppedInitials = new DroppedInitialsLog(() => quic.stats.undecryptableInitials, this.log);
    this.droppedInitials.start();
    const udp = this.h3.addresses();
    const altSvc = `h3=":${udp[0].port}"; ma=86400`;
    const tcp: { address: string; port: number }[] = [];
    for (const [i, l] of listen.entries()) {
      const srv = createSecureServer({ cert: certPem, key: keyPem, allowHTTP1: true });
      srv.on('request', (req: Http2ServerRequest, res: Http2ServerResponse) =>
        void this.forwarder.handle(tcpExchange(req, res, altSvc, this.tcpConnIds)),
      );
      srv.on('sessionError', () => {});
      await new Promise<void>((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(l.port === 0 ? udp[i].port : l.port, l.address, () => {
          srv.off('error', reject);
          resolve();
        });
      });
      const a = srv.address();
      if (a && typeof a === 'object') tcp.push({ address: a.address, port: a.port });
      this.tcp.push(srv);
    }
    this.info = { udp, tcp, certPath, spkiSha256: spki, keylog: c.keylog, qlog: c.qlog ?? (process.env.QLOGDIR || null) };
    return this.info;
  }

  get config_(): Config {
    return this.config;
  }

  /**
   * Applies a new configuration: routes, upstreams, timeouts and health checks change at once for new requests;
   * open connections and in-flight streams are untouched. Listen addresses and certificates need a restart.
   */
  reload(next: Config): void {
    const old = this.state;
    const changedListen = JSON.stringify(next.listen) !== JSON.stringify(this.config.listen) || JSON.stringify(next.tls) !== JSON.stringify(this.config.tls);
    if (changedListen) this.log.warn({}, 'listen addresses or TLS files changed: they take effect after a restart');
    this.state = buildState(next, this.log);
    this.forwarder.setState(this.state);
    if (next.qlog !== this.config.qlog) {
      try {
        this.qlog = qlogTracer(next.qlog);
      } catch (err) {
        this.log.error({ qlog: next.qlog, error: (err as Error).message }, 'qlog directory unusable; qlog unchanged');
      }
    }
    this.config = next;
    // Old pools finish their in-flight requests; their health checks stop now.
    for (const p of old.pools.values()) p.stop();
  }

  /** GOAWAY to HTTP/3 clients; in-flight streams finish within drainMs; then everything closes. */
  async close(drainMs = this.config.timeouts.drainMs): Promise<void> {
    this.droppedInitials?.stop();
    for (const s of this.tcp) s.close();
    // Streams cut at the deadline are logged as cut by the shutdown, not as client cancels.
    this.h3?.once('drainDeadline', () => this.forwarder.markDrainDeadline());
    await this.h3?.close({ drainMs });
    for (const p of this.state.pools.values()) await p.close();
  }
}
