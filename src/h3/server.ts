/**
 * The HTTP/3 server (RFC 9114) with a Node API modelled on node:http2's compatibility API: a 'request' event with
 * (req, res), the request body as a Readable and the response body as a Writable, both with backpressure from
 * QUIC flow control. close() is graceful (§5.2): GOAWAY to every session, in-flight requests finish (bounded by
 * drainMs), then the connections close with H3_NO_ERROR.
 */
import { EventEmitter } from 'node:events';
import type { KeyObject } from 'node:crypto';
import { Writable } from 'node:stream';
import { UdpEndpoint, type QuicConnection } from '../io/udp.js';
import type { IoRuntime } from '../io/runtime.js';
import type { Address, ConnectionConfig } from '../quic/connection-types.js';
import type { TraceFactory } from '../quic/trace.js';
import { H3ErrorCode as E, type H3Error } from './errors.js';
import { H3RequestStream, IncomingBody } from './request-stream.js';
import { Http3Session } from './session.js';
import { checkField, toHeaderList, toRecord, type HeaderList } from './validate.js';

export type { HeaderList };

export interface Http3ServerOptions {
  listen: Address[];
  certChain: Buffer[];
  privateKey: KeyObject;
  keyLog?: (line: string) => void;
  /** Traces every connection (QUIC and HTTP/3 events, e.g. to qlog files: src/obs/qlog.ts qlogTracer). */
  trace?: TraceFactory;
  quic?: Partial<ConnectionConfig>;
  maxFieldSectionSize?: number;
  qpackMaxTableCapacity?: number;
  qpackBlockedStreams?: number;
  /** Sockets and clock (default: node:dgram and real timers). */
  runtime?: IoRuntime;
}

/** An incoming request: its head as properties, its body as the Readable itself. */
export class Http3Request extends IncomingBody {
  readonly method: string;
  readonly path: string;
  readonly authority: string;
  readonly scheme: string;
  readonly rawHeaders: HeaderList;
  readonly streamId: number;
  readonly session: Http3Session;
  readonly remoteAddress: Address;

  constructor(s: H3RequestStream, session: Http3Session) {
    super(s);
    const r = s.request!;
    this.method = r.method;
    this.path = r.path;
    this.authority = r.authority;
    this.scheme = r.scheme;
    this.rawHeaders = s.rawHeaders!;
    this.fields = r.fields;
    this.streamId = s.id;
    this.session = session;
    this.remoteAddress = session.quic.remoteAddress;
  }

  private readonly fields: HeaderList;
  private record: Record<string, string> | null = null;

  /** The request fields as a record (repeated fields joined, see toRecord); built on first use (a proxy never asks). */
  get headers(): Record<string, string> {
    return (this.record ??= toRecord(this.fields));
  }
}

/** The response: respond() sends the header section, the Writable side is the body, end() sends trailers and FIN. */
export class Http3Response extends Writable {
  private trailers: HeaderList | null = null;
  private sent = false;

  constructor(readonly stream: H3RequestStream) {
    super({ highWaterMark: 64 * 1024 });
  }

  get headersSent(): boolean {
    return this.sent;
  }

  /** Sends the response header section. 1xx statuses are interim and may precede the final one. */
  respond(status: number, headers?: HeaderList | Record<string, string | number | string[]>): void {
    if (this.sent) throw new Error('response headers already sent');
    if (!Number.isInteger(status) || status < 100 || status > 599 || status === 101) throw new RangeError(`invalid status ${status}`);
    const list = toHeaderList(headers, [[':status', String(status)]]);
    for (let i = 1; i < list.length; i++) checkField(list[i][0], list[i][1]);
    if (status >= 200) this.sent = true;
    this.stream.sendHeaders(list);
  }

  /** Trailers sent after the last DATA frame (§4.1). */
  addTrailers(headers: HeaderList | Record<string, string>): void {
    const list = toHeaderList(headers);
    for (const [n, v] of list) checkField(n, v);
    this.trailers = [...(this.trailers ?? []), ...list];
  }

  /** Aborts the response stream (RESET_STREAM + STOP_SENDING). */
  reset(code: number = E.H3_REQUEST_CANCELLED): void {
    this.stream.abort(code);
    this.destroy();
  }

  /**
   * end(body) sends the last DATA frame and FIN together: the body goes to the QUIC stream at once and FIN right
   * after it, in the same call. (Through the Writable, _final runs only on a later tick, after the write callback;
   * a response made while the driver is building packets, e.g. a 404 answered synchronously, then had its DATA
   * sent in one packet and a STREAM frame holding only FIN in the next.) Only when nothing else is queued.
   */
  override end(chunk?: unknown, encoding?: unknown, cb?: unknown): this {
    const body = typeof chunk === 'string' ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8') : chunk;
    if (Buffer.isBuffer(body) && !this.writableEnded && !this.destroyed && this.writableLength === 0 && !this.writableCorked) {
      try {
        if (!this.sent) this.respond(200);
      } catch (e) {
        this.destroy(e as Error);
        return this;
      }
      this.stream.writeData(body, () => {});
      const done = typeof encoding === 'function' ? encoding : cb;
      return super.end(done as (() => void) | undefined);
    }
    return super.end(chunk, encoding as BufferEncoding, cb as (() => void) | undefined);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    try {
      if (!this.sent) this.respond(200);
    } catch (e) {
      return cb(e as Error);
    }
    this.stream.writeData(chunk, cb);
  }

  override _final(cb: (err?: Error | null) => void): void {
    try {
      if (!this.sent) this.respond(200);
      this.stream.finish(this.trailers);
    } catch (e) {
      return cb(e as Error);
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    if (!this.writableFinished && !this.stream.closed && !this.stream.localDone) {
      this.stream.abort(err ? E.H3_INTERNAL_ERROR : E.H3_REQUEST_CANCELLED);
    }
    cb(err);
  }
}

/** A request stream the server reset with a stream error before it became a request (the 'streamError' event). */
export interface Http3StreamErrorInfo {
  session: Http3Session;
  streamId: number;
  /** The H3_* code the stream was reset with. */
  code: number;
  error: H3Error;
  remoteAddress: Address;
}

/**
 * Events: 'request' (Http3Request, Http3Response), 'session' (Http3Session), 'streamError' (Http3StreamErrorInfo: a
 * request stream reset with a stream error such as H3_EXCESSIVE_LOAD or H3_MESSAGE_ERROR before its request could
 * be emitted), 'drainDeadline', 'error'.
 */
export class Http3Server extends EventEmitter {
  private readonly sessions = new Set<Http3Session>();
  private closing: Promise<void> | null = null;

  private constructor(
    readonly endpoint: UdpEndpoint,
    private readonly opts: Http3ServerOptions,
  ) {
    super();
    endpoint.on('error', (e: Error) => {
      if (this.listenerCount('error')) this.emit('error', e);
    });
    endpoint.on('connection', (c: QuicConnection) => this.onConnection(c));
  }

  static async listen(opts: Http3ServerOptions, onRequest?: (req: Http3Request, res: Http3Response) => void): Promise<Http3Server> {
    const ep = await UdpEndpoint.open({
      bind: opts.listen,
      runtime: opts.runtime,
      server: { ...opts.quic, alpn: ['h3'], certChain: opts.certChain, privateKey: opts.privateKey, keyLog: opts.keyLog ?? opts.quic?.keyLog },
      trace: opts.trace,
    });
    const srv = new Http3Server(ep, opts);
    if (onRequest) srv.on('request', onRequest);
    return srv;
  }

  addresses(): Address[] {
    return this.endpoint.addresses();
  }

  private onConnection(c: QuicConnection): void {
    const session = new Http3Session(c, 'server', {
      maxFieldSectionSize: this.opts.maxFieldSectionSize,
      qpackMaxTableCapacity: this.opts.qpackMaxTableCapacity,
      qpackBlockedStreams: this.opts.qpackBlockedStreams,
    });
    this.sessions.add(session);
    session.createRequestBody = (s) => new Http3Request(s, session);
    session.on('request', (s: H3RequestStream) => this.onRequest(s));
    session.on('streamError', (s: H3RequestStream, err: H3Error) => {
      // A request already emitted learns of the error through its failure ('aborted' / 'error'); the others would
      // leave no trace.
      if (s.body === null) this.emit('streamError', { session, streamId: s.id, code: err.code, error: err, remoteAddress: session.quic.remoteAddress } satisfies Http3StreamErrorInfo);
    });
    session.on('close', () => this.sessions.delete(session));
    if (this.closing) session.goaway();
    this.emit('session', session);
  }

  private onRequest(s: H3RequestStream): void {
    const req = s.body as Http3Request;
    const res = new Http3Response(s);
    res.on('error', () => {});
    // A stream that fails (client cancel, reset, connection loss) ends the response: writers see 'close'/'error'.
    s.onFailure = (err) => {
      if (!res.destroyed && !res.writableFinished) res.destroy(err);
    };
    // A finished response no longer needs the rest of the request body (§4.1).
    res.on('finish', () => {
      if (!req.readableEnded && req.readableFlowing === null) s.discardIncoming();
    });
    if (!this.listenerCount('request')) {
      res.respond(404);
      res.end();
      return;
    }
    this.emit('request', req, res);
  }

  /**
   * Graceful close: GOAWAY to every session; each closes with H3_NO_ERROR once its requests are done or after
   * drainMs (default 5000), then the sockets close. Emits 'drainDeadline' once if the deadline cuts open requests.
   */
  close(opts: { drainMs?: number } = {}): Promise<void> {
    this.closing ??= this.shutdown(opts.drainMs ?? 5000);
    return this.closing;
  }

  private async shutdown(drainMs: number): Promise<void> {
    const waits: Promise<void>[] = [];
    const clock = this.endpoint.clock;
    const deadline = clock.now() + drainMs;
    let deadlineAnnounced = false;
    for (const s of this.sessions) {
      s.goaway();
      waits.push(
        new Promise<void>((resolve) => {
          let fired = false;
          const done = async (): Promise<void> => {
            if (fired) return;
            fired = true;
            clock.clearTimeout(timer);
            // Let the last response bytes be acknowledged before CONNECTION_CLOSE discards them.
            while (!s.closedError && !s.allSettled() && clock.now() < deadline) await new Promise<void>((r) => clock.setTimeout(r, 5));
            s.close(E.H3_NO_ERROR, 'server closing');
            resolve();
          };
          const timer = clock.setTimeout(() => {
            // Requests still open are about to be cut: say so once, before any stream fails.
            if (!deadlineAnnounced) {
              deadlineAnnounced = true;
              this.emit('drainDeadline');
            }
            void done();
          }, drainMs);
          if (s.activeStreams === 0 || s.closedError) done();
          else {
            s.once('drained', done);
            s.once('close', done);
          }
        }),
      );
    }
    await Promise.all(waits);
    await this.endpoint.close(E.H3_NO_ERROR, 'server closing', 1000);
  }
}
