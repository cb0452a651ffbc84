/**
 * One HTTP/3 request stream (RFC 9114 §4.1, §6.1): HEADERS, DATA*, optional trailing HEADERS, in both directions.
 *
 * Incoming frames are taken from the QuicStream only when needed: before the header section arrives, and then only
 * while the body Readable wants data, so a slow consumer holds back QUIC flow control. Small DATA payloads read in
 * one pass are passed on as one chunk (up to BODY_COALESCE bytes): a peer that sends small DATA frames (browsers down
 * to one per packet) then costs the body's consumer, e.g. an upstream socket, one write per pass rather than one per
 * frame; larger pieces are passed on as they are. A HEADERS frame that QPACK cannot decode yet (blocked stream, RFC 9204 §2.1.2) parks the stream
 * until the encoder stream delivers the inserts.
 *
 * Errors: a malformed message (§4.1.2) or content-length mismatch is a stream error H3_MESSAGE_ERROR: the stream
 * is reset and stopped (RESET_STREAM + STOP_SENDING) and nothing else is affected. An invalid frame sequence
 * (§4.1: DATA before HEADERS, anything after trailers) and frames not allowed on request streams are connection
 * errors, handed to the session.
 */
import { Readable } from 'node:stream';
import type { QuicStream } from '../io/stream.js';
import { StreamResetError } from '../io/stream.js';
import { encodeFrame, encodeFrameHeader, FrameReader, FrameType, type FrameEvent } from './frames.js';
import { H3Error, H3ErrorCode as E, H3RequestRejectedError, H3StreamError } from './errors.js';
import {
  validateRequest,
  validateResponse,
  validateTrailers,
  type HeaderList,
  type RequestHead,
  type ResponseHead,
} from './validate.js';
import { frameEvent, headersFrame, skippedFrame, type H3Trace } from './trace.js';

/**
 * What a request stream needs of its HTTP/3 session: field sections through the session's QPACK state, connection
 * errors, and the end of the stream. Http3Session implements it; the narrow interface keeps this file independent of
 * session.ts (which creates the streams).
 */
export interface RequestStreamSession {
  readonly role: 'client' | 'server';
  readonly maxFieldSectionSize: number;
  /** The connection is closed or closing: input is no longer processed. */
  readonly isClosing: boolean;
  encodeFieldSection(streamId: number, fields: HeaderList): Buffer;
  decodeFieldSection(streamId: number, payload: Buffer): HeaderList | 'blocked';
  resumeFieldSection(streamId: number): HeaderList | 'blocked';
  cancelFieldSections(streamId: number): void;
  connectionError(e: Error): void;
  /** We reset the stream with a stream error (the session emits 'streamError'). */
  onStreamError(r: H3RequestStream, e: H3Error): void;
  onStreamDone(r: H3RequestStream): void;
  /** The connection's trace sink (qlog), or undefined: nothing traced. */
  readonly trace: H3Trace | undefined;
}

/** A message body arriving on a request stream. `trailers` is set when the body ends. */
export class IncomingBody extends Readable {
  trailers: HeaderList | null = null;
  constructor(readonly h3: H3RequestStream) {
    super({ highWaterMark: 64 * 1024 });
  }
  override _read(): void {
    this.h3.onBodyRead();
  }
  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    this.h3.onBodyDestroyed();
    cb(err);
  }
}

type Phase = 'head' | 'body' | 'after-trailers';

/** DATA payload bytes gathered before they are pushed to the body as one chunk (the body's high-water mark). */
const BODY_COALESCE = 64 * 1024;
/**
 * Only pieces smaller than this are gathered. Measured with quic-go's ~7 KB DATA frames (64 MB upload through the
 * router): joining them cut the upstream writes from 9,090 to 1,750 but not the CPU per packet (the copy and its
 * allocation cost what the writes saved); one-packet DATA frames (browsers) are where joining pays.
 */
const COALESCE_BELOW = 4096;
/** DATA payloads up to this size are written together with their frame header (one copy, one stream write). */
const JOIN_DATA_BELOW = 2048;

export class H3RequestStream {
  readonly id: number;
  private readonly reader: FrameReader;
  private phase: Phase = 'head';
  private blocked = false;
  private pumping = false;
  private wantBody = true;
  private quicEnded = false;
  private expectedLength: number | null = null;
  private received = 0;
  /** The stream was aborted or failed (no further processing). */
  closed = false;
  /** Our FIN was written. */
  localDone = false;
  /** The peer's message was fully received. */
  remoteDone = false;
  private doneReported = false;
  /** The connection's trace sink (qlog), or undefined. */
  private readonly trace: H3Trace | undefined;
  /** Traced only: inside a DATA frame whose frame_parsed was logged; the payload length of the HEADERS being decoded. */
  private dataOpen = false;
  private headersLength = 0;
  /** DATA payloads parsed in this pass and not yet pushed to the body (views into the stream's chunks). */
  private readonly pendingData: Buffer[] = [];
  private pendingBytes = 0;

  /** Set for responses that carry no content (HEAD, 204, 304): content-length is not checked against DATA. */
  noBodyExpected = false;
  request: RequestHead | null = null;
  response: ResponseHead | null = null;
  /** Raw header section as received (pseudo-headers included). */
  rawHeaders: HeaderList | null = null;
  body: IncomingBody | null = null;

  /** Called once the (final) header section arrived and validated; must return the body object to feed. */
  onHead: (s: H3RequestStream) => IncomingBody = (s) => new IncomingBody(s);
  /** Called once when the stream fails (peer reset, our abort, stream or connection error). */
  onFailure: (err: Error) => void = () => {};
  /** Called when the peer asked us to stop sending. */
  onStopped: (code: number) => void = () => {};

  constructor(
    readonly session: RequestStreamSession,
    readonly quic: QuicStream,
  ) {
    this.id = quic.id;
    this.trace = session.trace;
    // Any destroy of the QuicStream that we did not code explicitly resets with H3_REQUEST_CANCELLED, not 0.
    quic.abortCode = E.H3_REQUEST_CANCELLED;
    const limit = Math.max(session.maxFieldSectionSize, 16 * 1024);
    this.reader = new FrameReader({ maxFramePayload: (t) => (t === FrameType.HEADERS ? limit : 16 * 1024) });
    quic.on('readable', () => this.pump());
    quic.on('end', () => {
      this.quicEnded = true;
      this.pump();
    });
    quic.on('finish', () => {
      this.localDone = true;
      this.checkDone();
    });
    quic.on('error', (err: Error) => this.onQuicError(err));
    quic.on('stopSending', (code: number) => this.onPeerStopSending(code));
  }

  // -------------------------------------------------------------------------------------------- receiving

  pump(): void {
    if (this.pumping) return;
    this.pumping = true;
    try {
      this.readFrames();
      this.flushData();
    } catch (e) {
      this.pendingData.length = 0;
      this.pendingBytes = 0;
      this.fail(e);
    } finally {
      this.pumping = false;
    }
  }

  private readFrames(): void {
    while (!this.closed && !this.blocked && !this.closedReading) {
      if (this.phase === 'body' && !this.wantBody) return;
      if (this.session.isClosing) return;
      const ev = this.reader.next();
      if (ev === null) {
        const chunk = this.quic.read() as Buffer | null;
        if (chunk) {
          this.reader.push(chunk);
          continue;
        }
        if (this.quicEnded) {
          this.flushData();
          this.onFin();
        }
        return;
      }
      this.onFrame(ev);
    }
  }

  /** Pushes the DATA payloads gathered so far to the body, as one chunk. */
  private flushData(): void {
    const parts = this.pendingData;
    const n = parts.length;
    if (n === 0) return;
    const chunk = n === 1 ? parts[0] : Buffer.concat(parts, this.pendingBytes);
    parts.length = 0;
    this.pendingBytes = 0;
    const b = this.body;
    if (b && !b.destroyed) this.wantBody = b.push(chunk);
  }

  /** The QPACK encoder stream delivered what a blocked header section needed. */
  unblock(): void {
    if (!this.blocked || this.closed) return;
    try {
      const fields = this.session.resumeFieldSection(this.id);
      if (fields === 'blocked') return;
      this.blocked = false;
      this.onFieldSection(fields);
    } catch (e) {
      this.fail(e);
      return;
    }
    this.pump();
  }

  private onFrame(ev: FrameEvent): void {
    if (ev.kind === 'unknown') {
      // §9: unknown frame types are ignored
      if (this.trace) this.trace(frameEvent('http:frame_parsed', this.id, this.reader.frameLength, skippedFrame(ev.type, this.reader.frameLength)));
      return;
    }
    if (ev.kind === 'data') {
      if (this.trace) this.traceData(ev.last);
      // §4.1: DATA before HEADERS or after trailers is an invalid frame sequence.
      if (this.phase !== 'body') throw new H3Error(E.H3_FRAME_UNEXPECTED, `DATA frame ${this.phase === 'head' ? 'before HEADERS' : 'after trailers'} on stream ${this.id}`);
      if (ev.chunk.length === 0) return;
      this.received += ev.chunk.length;
      if (this.expectedLength !== null && !this.noBodyExpected && this.received > this.expectedLength) {
        throw new H3Error(E.H3_MESSAGE_ERROR, `more DATA than content-length ${this.expectedLength}`, 'stream');
      }
      if (ev.chunk.length >= COALESCE_BELOW) {
        // A large piece goes on as it is: joining pieces this size costs about what the writes it saves do.
        this.flushData();
        const b = this.body;
        if (b && !b.destroyed) this.wantBody = b.push(ev.chunk);
        return;
      }
      this.pendingData.push(ev.chunk);
      this.pendingBytes += ev.chunk.length;
      if (this.pendingBytes >= BODY_COALESCE) this.flushData();
      return;
    }
    // Trailers (and errors) come after the data before them.
    this.flushData();
    switch (ev.type) {
      case FrameType.HEADERS: {
        if (this.phase === 'after-trailers') throw new H3Error(E.H3_FRAME_UNEXPECTED, `HEADERS after trailers on stream ${this.id}`);
        if (this.trace) this.headersLength = ev.payload.length;
        const fields = this.session.decodeFieldSection(this.id, ev.payload);
        if (fields === 'blocked') {
          this.blocked = true;
          return;
        }
        this.onFieldSection(fields);
        return;
      }
      case FrameType.PUSH_PROMISE:
        // §7.2.5: only servers send it; we never sent MAX_PUSH_ID, so any push ID exceeds the maximum.
        if (this.session.role === 'server') throw new H3Error(E.H3_FRAME_UNEXPECTED, 'PUSH_PROMISE from a client');
        throw new H3Error(E.H3_ID_ERROR, 'PUSH_PROMISE without MAX_PUSH_ID');
      default:
        // SETTINGS, GOAWAY, MAX_PUSH_ID, CANCEL_PUSH (§7.2) and PRIORITY_UPDATE (RFC 9218 §7) belong on the control stream.
        throw new H3Error(E.H3_FRAME_UNEXPECTED, `frame type 0x${ev.type.toString(16)} on request stream ${this.id}`);
    }
  }

  /** frame_parsed once per DATA frame, at its first piece (the reader hands out a DATA payload in pieces). */
  private traceData(last: boolean): void {
    if (!this.dataOpen) this.trace!(frameEvent('http:frame_parsed', this.id, this.reader.frameLength, { frame_type: 'data' }));
    this.dataOpen = !last;
  }

  private onFieldSection(fields: HeaderList): void {
    if (this.trace) this.trace(frameEvent('http:frame_parsed', this.id, this.headersLength, headersFrame(fields)));
    if (this.phase === 'body') {
      this.body!.trailers = validateTrailers(fields);
      this.phase = 'after-trailers';
      return;
    }
    if (this.session.role === 'server') {
      this.request = validateRequest(fields);
      this.expectedLength = this.request.contentLength;
    } else {
      const r = validateResponse(fields);
      if (r.status < 200) return; // interim response (§4.1): the final one follows
      this.response = r;
      this.expectedLength = r.contentLength;
      if (r.status === 204 || r.status === 304) this.noBodyExpected = true;
    }
    this.rawHeaders = fields;
    this.phase = 'body';
    this.body = this.onHead(this);
  }

  private onFin(): void {
    this.reader.finish(); // a truncated last frame is H3_FRAME_ERROR (§7.1)
    if (this.phase === 'head') {
      // §4.1.2: a request stream that ends without a complete request.
      throw new H3Error(
        this.session.role === 'server' ? E.H3_REQUEST_INCOMPLETE : E.H3_MESSAGE_ERROR,
        `stream ${this.id} ended without a header section`,
        'stream',
      );
    }
    if (this.expectedLength !== null && !this.noBodyExpected && this.received !== this.expectedLength) {
      throw new H3Error(E.H3_MESSAGE_ERROR, `content-length ${this.expectedLength} but ${this.received} bytes of DATA`, 'stream');
    }
    this.remoteDone = true;
    this.closedReading = true;
    this.body!.push(null);
    this.checkDone();
  }

  private closedReading = false;

  /**
   * We answered without needing the rest of the peer's message: ask it to stop with H3_NO_ERROR (§4.1) and end our
   * interest in the body (destroyed without an error).
   */
  discardIncoming(): void {
    if (this.remoteDone || this.closed) return;
    this.remoteDone = true;
    this.closedReading = true;
    this.session.cancelFieldSections(this.id);
    this.quic.stopSending(E.H3_NO_ERROR);
    const b = this.body;
    if (b && !b.destroyed) b.destroy();
    this.checkDone();
  }

  onBodyRead(): void {
    this.wantBody = true;
    this.pump();
  }

  onBodyDestroyed(): void {
    // The application abandoned the body before its end: cancel the request (RFC 9114 §4.1.1).
    if (!this.remoteDone && !this.closed) this.abort(E.H3_REQUEST_CANCELLED);
  }

  // -------------------------------------------------------------------------------------------- sending

  /** Sends a header section (or trailers); throws if the peer's MAX_FIELD_SECTION_SIZE would be exceeded. */
  sendHeaders(fields: HeaderList): void {
    if (this.closed) return;
    const block = this.session.encodeFieldSection(this.id, fields);
    this.quic.write(encodeFrame(FrameType.HEADERS, block));
    if (this.trace) this.trace(frameEvent('http:frame_created', this.id, block.length, headersFrame(fields)));
  }

  /** Sends one DATA frame; cb runs once the QUIC stream accepted it (backpressure). */
  writeData(chunk: Buffer, cb: (err?: Error | null) => void): void {
    if (this.closed || this.localDone || this.quic.stopSendingCode !== null) return cb();
    if (chunk.length === 0) return cb();
    if (this.trace) this.trace(frameEvent('http:frame_created', this.id, chunk.length, { frame_type: 'data' }));
    if (chunk.length <= JOIN_DATA_BELOW) {
      // A small payload goes with its frame header in one write: a copy of a few hundred bytes costs less than a
      // second write through the stream (a small response is mostly this).
      this.quic.write(encodeFrame(FrameType.DATA, chunk), (err) => cb(this.closed ? null : err));
      return;
    }
    this.quic.write(encodeFrameHeader(FrameType.DATA, chunk.length));
    this.quic.write(chunk, (err) => cb(this.closed ? null : err));
  }

  /** Sends trailers (if any) and FIN. */
  finish(trailers?: HeaderList | null): void {
    if (this.closed || this.quic.writableEnded || this.quic.stopSendingCode !== null) return;
    if (trailers && trailers.length) this.sendHeaders(trailers);
    this.quic.end();
  }

  // -------------------------------------------------------------------------------------------- errors and end

  /** Aborts the stream with a stream error: RESET_STREAM + STOP_SENDING with `code` (§8). */
  abort(code: number, err: Error = new H3StreamError(this.id, code, 'aborted locally')): void {
    if (this.closed) return;
    this.closed = true;
    if (!this.remoteDone) this.session.cancelFieldSections(this.id);
    this.quic.abortCode = code;
    if (!this.quic.destroyed) this.quic.destroy();
    this.failBody(err);
    this.report();
  }

  private fail(e: unknown): void {
    if (e instanceof H3Error && e.scope === 'stream') {
      this.abort(e.code, e);
      // A stream error of ours (malformed message, header section over the limit, ...): the session tells whoever
      // keeps records (a request already handed to the application learns it through its failure as well).
      this.session.onStreamError(this, e);
      return;
    }
    if (e instanceof H3Error) {
      this.session.connectionError(e);
      return;
    }
    this.session.connectionError(e instanceof Error ? e : new Error(String(e)));
  }

  private onQuicError(err: Error): void {
    if (this.closed) return;
    if (err instanceof StreamResetError) {
      if (!this.remoteDone) this.session.cancelFieldSections(this.id);
      const code = err.errorCode;
      // §4.1.1 and §5.2: H3_REQUEST_REJECTED means the server did not process the request.
      const e = this.session.role === 'client' && code === E.H3_REQUEST_REJECTED ? new H3RequestRejectedError(this.id, 'H3_REQUEST_REJECTED') : new H3StreamError(this.id, code, 'reset by peer');
      this.closed = true;
      this.failBody(e);
      this.report();
      return;
    }
    this.closed = true;
    this.failBody(err);
    this.report();
  }

  private onPeerStopSending(code: number): void {
    // The transport answers STOP_SENDING with RESET_STREAM itself (RFC 9000 §3.5). With H3_NO_ERROR the peer
    // only declines the rest of our message (§4.1): the response can still complete.
    this.localDone = true;
    this.onStopped(code);
    // Any other code cancels our side (§4.1.1): also after the peer's message was complete, e.g. a client that
    // cancels while the response is still streaming.
    if (code !== E.H3_NO_ERROR) {
      const e = this.session.role === 'client' && code === E.H3_REQUEST_REJECTED ? new H3RequestRejectedError(this.id, 'H3_REQUEST_REJECTED') : new H3StreamError(this.id, code, 'stopped by peer');
      this.abort(code === E.H3_REQUEST_REJECTED ? E.H3_REQUEST_CANCELLED : code, e);
      return;
    }
    this.checkDone();
  }

  /** The connection went away. */
  onConnectionClosed(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    this.failBody(err);
    this.report();
  }

  /**
   * Ends the body early: 'aborted' (err), then destroyed with err when someone listens for 'error' (as node:http
   * does for an aborted IncomingMessage), else without it, so an unwatched body cannot crash the process.
   */
  private failBody(err: Error): void {
    const b = this.body;
    if (b && !b.readableEnded && !b.destroyed) {
      b.emit('aborted', err);
      b.destroy(b.listenerCount('error') > 0 ? err : undefined);
    }
    this.onFailure(err);
  }

  private checkDone(): void {
    if (this.localDone && this.remoteDone) {
      this.closed = true;
      this.report();
    }
  }

  private report(): void {
    if (this.doneReported) return;
    this.doneReported = true;
    this.session.onStreamDone(this);
  }
}
