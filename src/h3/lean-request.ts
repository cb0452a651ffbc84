/**
 * Lean client requests (RFC 9114 §4.1) for load generation: the same request sent many times, its response read,
 * counted and dropped. Unlike Http3Client.request() there is no Duplex per QUIC stream, no Readable per response
 * body, no Promise, no URL parsing or header validation per request: the request is validated and its HEADERS frame
 * encoded once (PreparedRequest), each send writes that frame (and the body, a Buffer shared by every request)
 * straight onto the sans-I/O connection, and the response's frames are parsed from the connection's receive buffer
 * as they arrive. What stays per request is what the protocol needs: a stream, the response's QPACK decoding (through
 * the session's decoder: the server may use its dynamic table, and blocked sections wait for the encoder stream),
 * the response head's validation, the content-length check, and the stream errors.
 *
 * The HEADERS frame uses only QPACK's static table and literals (Required Insert Count 0, RFC 9204 §4.5.1), so one
 * encoding serves every stream. The body is written in slices of at most LEAN_WRITE_SLICE while the stream's
 * buffered bytes stay under the connection's high-water mark, and resumed on stream_drain.
 *
 * Outcomes, once per request (LeanOutcome): a response read to its end (status, body bytes), or an error of the same
 * classes Http3Client.request() fails with (H3StreamError for a reset or STOP_SENDING, H3RequestRejectedError after
 * GOAWAY or H3_REQUEST_REJECTED, H3ConnectionClosedError, H3Error for a malformed response), or 'aborted' (abort()).
 */
import type { QuicConnection, StreamEventSink } from '../io/udp.js';
import type { Connection } from '../quic/connection.js';
import { STREAM_HIGH_WATER } from '../quic/connection/streams.js';
import { H3ConnectionClosedError, H3Error, H3ErrorCode as E, H3RequestRejectedError, H3StreamError } from './errors.js';
import { encodeFrame, encodeFrameHeader, FrameReader, FrameType } from './frames.js';
import { QpackEncoder } from './qpack/encoder.js';
import type { Header } from './qpack/errors.js';
import type { Http3Session } from './session.js';
import { validateRequest, validateResponse, validateTrailers, type HeaderList } from './validate.js';

/** Largest body piece handed to the connection in one write. */
const LEAN_WRITE_SLICE = 256 * 1024;

/** A request validated and encoded once, sent any number of times (on any connection to its origin). */
export class PreparedRequest {
  /** The HEADERS frame, followed by the DATA frame header when there is a body. */
  readonly head: Buffer;
  readonly body: Buffer | null;
  readonly method: string;

  constructor(fields: HeaderList, body: Buffer | null) {
    validateRequest(fields);
    // A static-only encoder (its peer settings never applied): the section references no dynamic entry.
    const block = new QpackEncoder().encode(0, fields as Header[]);
    const headers = encodeFrame(FrameType.HEADERS, block);
    this.head = body && body.length > 0 ? Buffer.concat([headers, encodeFrameHeader(FrameType.DATA, body.length)]) : headers;
    this.body = body && body.length > 0 ? body : null;
    this.method = fields.find(([n]) => n === ':method')?.[1] ?? 'GET';
  }
}

export type LeanOutcome = { status: number; bytesDown: number; error: null } | { status: number; bytesDown: number; error: Error };

/** Called once per request with its outcome. */
export type LeanDone = (o: LeanOutcome) => void;

const enum Phase {
  Head,
  Body,
  Trailers,
  Done,
}

/** One request in flight: the QuicConnection's event sink for its stream. */
export class LeanExchange implements StreamEventSink {
  private phase = Phase.Head;
  private readonly reader = new FrameReader();
  private status = 0;
  private expected: number | null = null;
  private received = 0;
  private noBody = false;
  /** Body bytes written so far (of prepared.body). */
  private sent = 0;
  private sendDone = false;
  private blocked = false;
  private finished = false;
  private pumping = false;

  /** The stream, once opened (-1 while the request waits for the peer's stream limit to rise). */
  id = -1;
  /** When the sender issued the request (its clock, e.g. performance.now()): for the sender's own timeouts. */
  startedAt = 0;

  constructor(
    private readonly owner: LeanRequests,
    private readonly req: PreparedRequest,
    private readonly done: LeanDone,
  ) {
    this.noBody = req.method === 'HEAD';
  }

  /** True once the outcome was reported. */
  get isFinished(): boolean {
    return this.finished;
  }

  /** Writes the request on stream `id` (called once, right after the stream was opened). */
  start(id: number): void {
    this.id = id;
    const c = this.owner.conn;
    if (this.req.body === null) {
      c.streamWrite(this.id, this.req.head, true);
      this.sendDone = true;
    } else {
      c.streamWrite(this.id, this.req.head);
      this.writeBody();
    }
    this.owner.quic.wake();
  }

  private writeBody(): void {
    const body = this.req.body!;
    const c = this.owner.conn;
    while (this.sent < body.length) {
      const n = Math.min(LEAN_WRITE_SLICE, body.length - this.sent);
      const last = this.sent + n === body.length;
      const buffered = c.streamWrite(this.id, body.subarray(this.sent, this.sent + n), last);
      this.sent += n;
      if (last) this.sendDone = true;
      else if (buffered > STREAM_HIGH_WATER) return; // resumed by onDrain
    }
  }

  onDrain(): void {
    if (this.finished || this.sendDone) return;
    this.writeBody();
    this.owner.quic.wake();
  }

  pump(): void {
    if (this.finished || this.pumping) return;
    this.pumping = true;
    const c = this.owner.conn;
    try {
      for (let b = c.streamRead(this.id); b !== null; b = c.streamRead(this.id)) this.reader.push(b);
      this.parse();
      if (!this.finished && !this.blocked && c.streamFinished(this.id)) this.onFin();
    } catch (e) {
      this.onError(e);
    } finally {
      this.pumping = false;
    }
    this.owner.quic.wake(); // credit updates for what was read
  }

  private parse(): void {
    const r = this.reader;
    while (!this.finished && !this.blocked) {
      const ev = r.next();
      if (ev === null) return;
      if (ev.kind === 'data') {
        if (this.phase !== Phase.Body) throw new H3Error(E.H3_FRAME_UNEXPECTED, `DATA frame ${this.phase === Phase.Head ? 'before HEADERS' : 'after trailers'} on stream ${this.id}`);
        this.received += ev.chunk.length;
        if (this.expected !== null && !this.noBody && this.received > this.expected) throw new H3Error(E.H3_MESSAGE_ERROR, `more DATA than content-length ${this.expected}`, 'stream');
      } else if (ev.kind === 'frame') {
        if (ev.type !== FrameType.HEADERS) {
          if (ev.type === FrameType.PUSH_PROMISE) throw new H3Error(E.H3_ID_ERROR, 'PUSH_PROMISE without MAX_PUSH_ID');
          throw new H3Error(E.H3_FRAME_UNEXPECTED, `frame type 0x${ev.type.toString(16)} on request stream ${this.id}`);
        }
        if (this.phase === Phase.Trailers) throw new H3Error(E.H3_FRAME_UNEXPECTED, `HEADERS after trailers on stream ${this.id}`);
        const fields = this.owner.session.decodeFieldSection(this.id, ev.payload);
        if (fields === 'blocked') {
          this.blocked = true;
          this.owner.blocked.set(this.id, this);
          return;
        }
        this.onFields(fields);
      }
      // 'unknown': §9, ignored.
    }
  }

  /** The encoder stream delivered what the blocked section needed. */
  unblock(): void {
    if (!this.blocked || this.finished) return;
    try {
      const fields = this.owner.session.resumeFieldSection(this.id);
      if (fields === 'blocked') return;
      this.blocked = false;
      this.owner.blocked.delete(this.id);
      this.onFields(fields);
    } catch (e) {
      this.onError(e);
      return;
    }
    this.pump();
  }

  private onFields(fields: HeaderList): void {
    if (this.phase === Phase.Body) {
      validateTrailers(fields);
      this.phase = Phase.Trailers;
      return;
    }
    const h = validateResponse(fields);
    if (h.status < 200) return; // interim response (§4.1): the final one follows
    this.status = h.status;
    this.expected = h.contentLength;
    if (h.status === 204 || h.status === 304) this.noBody = true;
    this.phase = Phase.Body;
  }

  private onFin(): void {
    this.reader.finish(); // a truncated last frame is H3_FRAME_ERROR (§7.1)
    if (this.phase === Phase.Head) throw new H3Error(E.H3_MESSAGE_ERROR, `stream ${this.id} ended without a header section`, 'stream');
    if (this.expected !== null && !this.noBody && this.received !== this.expected) {
      throw new H3Error(E.H3_MESSAGE_ERROR, `content-length ${this.expected} but ${this.received} bytes of DATA`, 'stream');
    }
    this.phase = Phase.Done;
    this.end(null);
  }

  private onError(e: unknown): void {
    if (this.finished) return;
    if (e instanceof H3Error && e.scope === 'stream') {
      this.cancel(e.code);
      this.end(e);
      return;
    }
    // A connection error: the session closes the connection; this request fails with the reason.
    const err = e instanceof Error ? e : new Error(String(e));
    this.owner.session.connectionError(err);
    this.cancel(E.H3_REQUEST_CANCELLED);
    this.end(err);
  }

  /** Resets our sending side (unless complete) and stops the peer's (unless complete) with `code`. */
  private cancel(code: number): void {
    const c = this.owner.conn;
    if (this.id < 0 || c.state === 'closed' || !c.hasStream(this.id)) return;
    if (this.phase !== Phase.Done) this.owner.session.cancelFieldSections(this.id);
    if (!this.sendDone) c.streamReset(this.id, code);
    if (this.phase !== Phase.Done) c.streamStopSending(this.id, code);
    this.owner.quic.wake();
  }

  /** Reports `err` for a request that never got a stream (or whose stream is gone). */
  fail(err: Error): void {
    this.end(err);
  }

  private end(err: Error | null): void {
    if (this.finished) return;
    this.finished = true;
    this.owner.forget(this);
    this.done(err === null ? { status: this.status, bytesDown: this.received, error: null } : { status: this.status, bytesDown: this.received, error: err });
  }

  /** Gives up on the request (e.g. a timeout): RESET_STREAM and STOP_SENDING with H3_REQUEST_CANCELLED. */
  abort(err: Error): void {
    if (this.finished) return;
    this.cancel(E.H3_REQUEST_CANCELLED);
    this.end(err);
  }

  /** After GOAWAY(id) for a stream at or above id (or one not opened yet): not processed by the server (§5.2). */
  reject(goawayId: number): void {
    if (this.finished) return;
    this.cancel(E.H3_REQUEST_CANCELLED);
    this.end(new H3RequestRejectedError(this.id, `GOAWAY(${goawayId})`));
  }

  onPeerReset(code: number): void {
    if (this.finished) return;
    this.cancel(E.H3_REQUEST_CANCELLED);
    this.end(code === E.H3_REQUEST_REJECTED ? new H3RequestRejectedError(this.id, 'H3_REQUEST_REJECTED') : new H3StreamError(this.id, code, 'reset by peer'));
  }

  onStopSending(code: number): void {
    if (this.finished) return;
    // The transport answers with RESET_STREAM itself (RFC 9000 §3.5). H3_NO_ERROR: the server declines the rest of
    // the body but the response can still complete (§4.1); any other code cancels the request (§4.1.1).
    this.sendDone = true;
    if (code === E.H3_NO_ERROR) return;
    this.cancel(code === E.H3_REQUEST_REJECTED ? E.H3_REQUEST_CANCELLED : code);
    this.end(code === E.H3_REQUEST_REJECTED ? new H3RequestRejectedError(this.id, 'H3_REQUEST_REJECTED') : new H3StreamError(this.id, code, 'stopped by peer'));
  }

  onConnectionClosed(): void {
    if (this.finished) return;
    const i = this.owner.quic.closeInfo;
    this.end(i ? new H3ConnectionClosedError(i.code, i.by, i.application, i.reason) : new Error('connection closed'));
  }
}

/**
 * The lean requests of one client connection. send() always takes the request: it starts at once, or when the
 * peer's stream limit rises (MAX_STREAMS), or fails (asynchronously) when the connection is going away or closed.
 */
export class LeanRequests {
  readonly conn: Connection;
  readonly inflight = new Map<number, LeanExchange>();
  /** Exchanges whose response header section waits for QPACK encoder-stream data. */
  readonly blocked = new Map<number, LeanExchange>();
  /** Requests waiting for stream credit, oldest first. */
  private waiting: LeanExchange[] = [];

  constructor(
    readonly quic: QuicConnection,
    readonly session: Http3Session,
  ) {
    this.conn = quic.conn;
    session.onUnblocked = (id) => this.blocked.get(id)?.unblock();
    session.on('goaway', (id: number) => {
      for (const x of [...this.inflight.values()]) if (x.id >= id) x.reject(id);
      this.failWaiting((x) => x.reject(id));
    });
    quic.on('streamsAvailable', () => this.openWaiting());
    // Streams already opened hear of the close from the QuicConnection; the waiting ones from here.
    quic.on('close', () => {
      const i = quic.closeInfo;
      const err = i ? new H3ConnectionClosedError(i.code, i.by, i.application, i.reason) : new Error('connection closed');
      this.failWaiting((x) => x.fail(err));
    });
  }

  /** No new request can be sent on this connection (GOAWAY either way, or closing/closed). */
  get unusable(): boolean {
    const s = this.session;
    return s.isClosing || s.goawayReceived !== null || s.goawaySent !== null;
  }

  /** Requests sent and not finished, and requests waiting for a stream. */
  get pending(): number {
    return this.inflight.size + this.waiting.length;
  }

  /** Takes a request; `done` is called once with its outcome (never synchronously from within send()). */
  send(req: PreparedRequest, done: LeanDone): LeanExchange {
    const x = new LeanExchange(this, req, done);
    if (this.unusable) {
      const s = this.session;
      const err = s.closedError ?? new H3RequestRejectedError(-1, s.goawayReceived !== null ? `GOAWAY(${s.goawayReceived})` : 'the connection is closing');
      queueMicrotask(() => x.fail(err));
    } else if (this.waiting.length > 0 || !this.open(x)) this.waiting.push(x);
    return x;
  }

  private open(x: LeanExchange): boolean {
    const id = this.conn.openStream(true);
    if (id === null) {
      this.quic.wake(); // STREAMS_BLOCKED
      return false;
    }
    this.quic.attachSink(id, x);
    this.inflight.set(id, x);
    x.start(id);
    return true;
  }

  private openWaiting(): void {
    const w = this.waiting;
    let i = 0;
    while (i < w.length && (w[i].isFinished || (!this.unusable && this.open(w[i])))) i++;
    if (i > 0) this.waiting = w.slice(i);
  }

  private failWaiting(f: (x: LeanExchange) => void): void {
    const w = this.waiting;
    this.waiting = [];
    for (const x of w) f(x);
  }

  forget(x: LeanExchange): void {
    if (x.id < 0) return; // a waiting one: skipped when streams become available
    this.inflight.delete(x.id);
    this.blocked.delete(x.id);
    this.quic.releaseSinkStream(x.id);
  }
}
