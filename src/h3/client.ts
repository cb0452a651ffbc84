/**
 * The HTTP/3 client (RFC 9114): one QUIC connection, many concurrent requests (one bidirectional stream each,
 * §4.1, §6.1), request and response bodies streamed with backpressure. After the server's GOAWAY no new request
 * is started and requests the server did not process fail with a retryable H3RequestRejectedError (§5.2).
 * Aborting a request (AbortSignal, or destroying the response body) resets its stream with H3_REQUEST_CANCELLED.
 */
import { EventEmitter } from 'node:events';
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { Readable } from 'node:stream';
import { UdpEndpoint } from '../io/udp.js';
import type { IoRuntime } from '../io/runtime.js';
import type { ConnectionConfig } from '../quic/connection-types.js';
import { cryptoBackend } from '../quic/crypto/backend.js';
import { TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, type CipherSuite } from '../quic/crypto/suites.js';
import type { TraceFactory } from '../quic/trace.js';
import { H3ErrorCode as E } from './errors.js';
import { LeanRequests, PreparedRequest } from './lean-request.js';
import { IncomingBody, type H3RequestStream } from './request-stream.js';
import { Http3Session } from './session.js';
import { toHeaderList, validateRequest, validateTrailers, type HeaderList } from './validate.js';

export type { HeaderList };
export { PreparedRequest };

/**
 * The cipher suites our client offers, in order, when none are configured: ChaCha20-Poly1305 first while the
 * libsodium backend protects packets (src/quic/crypto/backend.ts: a third of node:crypto's CPU per packet), AES-128-GCM
 * first otherwise. A server that honours the client's preference (quic-go's does when the client puts ChaCha20
 * first) then picks the cheaper one for us. An explicit list (quic.cipherSuites, --ciphers) is offered as it is.
 */
export function clientCipherSuites(explicit?: readonly CipherSuite[]): CipherSuite[] {
  if (explicit && explicit.length > 0) return [...explicit];
  return cryptoBackend().name === 'sodium'
    ? [TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384]
    : [TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256];
}

export interface Http3ClientOptions {
  ca?: Buffer[];
  insecure?: boolean;
  serverName?: string;
  keyLog?: (l: string) => void;
  /** Traces the connection (QUIC and HTTP/3 events, e.g. to a qlog file: src/obs/qlog.ts qlogTracer). */
  trace?: TraceFactory;
  /**
   * Give up when the QUIC handshake has not completed after this many ms (default 10 000; 0: only the idle timeout).
   * connect() then rejects with a HandshakeError naming what happened.
   */
  handshakeTimeout?: number;
  quic?: Partial<ConnectionConfig>;
  /** Sockets and clock (default: node:dgram and real timers). */
  runtime?: IoRuntime;
}

export interface Http3RequestOptions {
  method?: string;
  headers?: HeaderList | Record<string, string>;
  body?: Buffer | string | Readable;
  trailers?: HeaderList;
  signal?: AbortSignal;
}

export interface Http3ClientResponse {
  status: number;
  headers: HeaderList;
  body: Readable & { trailers: HeaderList | null };
  streamId: number;
}

const DEFAULT_HANDSHAKE_TIMEOUT = 10_000;

class AbortError extends Error {
  readonly code = 'ABORT_ERR';
  constructor(reason?: unknown) {
    super('the request was aborted', { cause: reason });
    this.name = 'AbortError';
  }
}

/** Events: 'goaway' (id), 'close' (H3ConnectionClosedError). */
export class Http3Client extends EventEmitter {
  private constructor(
    readonly endpoint: UdpEndpoint,
    readonly session: Http3Session,
    private readonly base: URL,
  ) {
    super();
    session.on('goaway', (id: number) => this.emit('goaway', id));
    session.on('close', (err: Error) => this.emit('close', err));
  }

  /**
   * Connects to an https:// URL's host and port (default 443) and completes the handshake. Rejects with a
   * HandshakeError (src/io/udp.ts) when it cannot: no answer within `handshakeTimeout`, Version Negotiation, Retry
   * (not followed yet), a TLS alert or a certificate that does not verify.
   */
  static async connect(url: string, opts: Http3ClientOptions = {}): Promise<Http3Client> {
    const base = new URL(url);
    const host = base.hostname.replace(/^\[|\]$/g, '');
    const address = isIP(host) ? host : (await lookup(host)).address;
    const v6 = isIP(address) === 6;
    const loopback = address === '127.0.0.1' || address === '::1';
    const port = Number(base.port || 443);
    const ep = await UdpEndpoint.open({
      bind: [{ address: loopback ? address : v6 ? '::' : '0.0.0.0', port: 0 }],
      runtime: opts.runtime,
      trace: opts.trace,
      // One connection to one server per endpoint: a connected socket.
      connectTo: { address, port },
    });
    ep.on('error', () => {});
    const cfg: ConnectionConfig = {
      ...opts.quic,
      alpn: ['h3'],
      cipherSuites: clientCipherSuites(opts.quic?.cipherSuites),
      serverName: opts.serverName ?? (isIP(host) ? undefined : host),
      ca: opts.ca ?? opts.quic?.ca,
      insecure: opts.insecure ?? opts.quic?.insecure,
      keyLog: opts.keyLog ?? opts.quic?.keyLog,
      handshakeTimeout: opts.handshakeTimeout ?? opts.quic?.handshakeTimeout ?? DEFAULT_HANDSHAKE_TIMEOUT,
    };
    const conn = ep.connect(cfg, { address, port });
    // The session exists before the handshake completes: a server sends its control and QPACK streams in the same
    // flight, and they must not arrive before anyone listens for them.
    const session = new Http3Session(conn, 'client');
    try {
      await conn.ready;
    } catch (e) {
      await ep.close(0, '', 200);
      throw e;
    }
    return new Http3Client(ep, session, base);
  }

  private leanRequests: LeanRequests | null = null;

  /** The connection's lean request sender (src/h3/lean-request.ts), made on first use. */
  get lean(): LeanRequests {
    this.leanRequests ??= new LeanRequests(this.session.quic, this.session);
    return this.leanRequests;
  }

  /** The header section of a request to `pathOrUrl` (resolved against the origin): pseudo-headers, then `headers`. */
  private requestFields(pathOrUrl: string, method: string, headers: Http3RequestOptions['headers']): HeaderList {
    const u = new URL(pathOrUrl, this.base);
    return [[':method', method], [':scheme', 'https'], [':authority', u.host], [':path', `${u.pathname}${u.search}`], ...toHeaderList(headers)];
  }

  /**
   * Validates and encodes a request once, for sending it many times with `lean.send()` (a load generator's
   * requests: the response is counted, not handed out). The body, if any, is sent as it is with every request.
   */
  prepare(pathOrUrl: string, opts: { method?: string; headers?: HeaderList | Record<string, string>; body?: Buffer | string } = {}): PreparedRequest {
    const method = opts.method ?? 'GET';
    const fields = this.requestFields(pathOrUrl, method, opts.headers);
    const body = typeof opts.body === 'string' ? Buffer.from(opts.body) : (opts.body ?? null);
    if (body && !fields.some(([n]) => n === 'content-length')) fields.push(['content-length', String(body.length)]);
    return new PreparedRequest(fields, body);
  }

  /** Sends a request; resolves with the response head once it arrives (the body streams afterwards). */
  async request(pathOrUrl: string, opts: Http3RequestOptions = {}): Promise<Http3ClientResponse> {
    const method = opts.method ?? 'GET';
    const fields = this.requestFields(pathOrUrl, method, opts.headers);
    let body = opts.body;
    if (typeof body === 'string') body = Buffer.from(body);
    if (Buffer.isBuffer(body) && !fields.some(([n]) => n === 'content-length')) fields.push(['content-length', String(body.length)]);
    validateRequest(fields); // refuse to send a malformed request
    const trailers = opts.trailers ? validateTrailers(toHeaderList(opts.trailers)) : null;
    const signal = opts.signal;
    if (signal?.aborted) throw new AbortError(signal.reason);

    const s = await this.session.openRequest();
    if (signal?.aborted) {
      s.abort(E.H3_REQUEST_CANCELLED, new AbortError(signal.reason));
      throw new AbortError(signal.reason);
    }
    s.noBodyExpected = method === 'HEAD';
    return new Promise<Http3ClientResponse>((resolve, reject) => {
      let settled = false;
      const onAbort = (): void => s.abort(E.H3_REQUEST_CANCELLED, new AbortError(signal?.reason));
      signal?.addEventListener('abort', onAbort, { once: true });
      const cleanup = (): void => signal?.removeEventListener('abort', onAbort);
      s.onHead = (st) => {
        const b = new IncomingBody(st);
        b.once('close', cleanup);
        settled = true;
        const r = st.response!;
        resolve({ status: r.status, headers: st.rawHeaders!.slice(1).filter(([n]) => !n.startsWith(':')), body: b, streamId: st.id });
        return b;
      };
      s.onFailure = (err) => {
        if (settled) return;
        settled = true;
        cleanup();
        reject(err);
      };
      try {
        s.sendHeaders(fields);
      } catch (e) {
        s.abort(E.H3_REQUEST_CANCELLED, e as Error);
        return;
      }
      void this.sendBody(s, body, trailers);
    });
  }

  private async sendBody(s: H3RequestStream, body: Buffer | Readable | undefined, trailers: HeaderList | null): Promise<void> {
    const write = (chunk: Buffer): Promise<void> =>
      new Promise((res, rej) => s.writeData(chunk, (err) => (err ? rej(err) : res())));
    try {
      if (Buffer.isBuffer(body)) await write(body);
      else if (body) {
        for await (const chunk of body as AsyncIterable<Buffer | string>) {
          if (s.closed || s.localDone) break;
          await write(typeof chunk === 'string' ? Buffer.from(chunk) : chunk);
        }
      }
      s.finish(trailers);
    } catch (e) {
      s.abort(E.H3_REQUEST_CANCELLED, e as Error);
      if (body instanceof Readable) body.destroy();
    }
  }

  /** GOAWAY, then closes the connection with H3_NO_ERROR and the socket. */
  async close(): Promise<void> {
    this.session.goaway();
    this.session.close(E.H3_NO_ERROR, 'client closing');
    await this.endpoint.close(E.H3_NO_ERROR, 'client closing', 1000);
  }
}
