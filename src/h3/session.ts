/**
 * An HTTP/3 session over one QUIC connection (RFC 9114), client or server.
 *
 * - §6.2: our unidirectional streams: control (0x00, SETTINGS first, §6.2.1), QPACK encoder (0x02) and decoder
 *   (0x03) (RFC 9204 §4.2); the peer's are read by type. Unknown/reserved types are stopped with
 *   H3_STREAM_CREATION_ERROR and ignored (§6.2, §6.2.3); a second control/encoder/decoder stream is
 *   H3_STREAM_CREATION_ERROR (§6.2.1, RFC 9204 §4.2); a push stream from a client is H3_STREAM_CREATION_ERROR
 *   (§6.2.2); closing a critical stream is H3_CLOSED_CRITICAL_STREAM (§6.2.1, RFC 9204 §4.2).
 * - §7.2.4: SETTINGS first on the control stream (H3_MISSING_SETTINGS), once (H3_FRAME_UNEXPECTED), no HTTP/2
 *   settings (H3_SETTINGS_ERROR); the peer's QPACK settings go to our encoder and its MAX_FIELD_SECTION_SIZE
 *   bounds what we send (§4.2.2).
 * - §5.2, §7.2.6: GOAWAY both ways, with the id checks (H3_ID_ERROR).
 * - §6.1: request streams are client-initiated bidirectional streams (H3_STREAM_CREATION_ERROR otherwise).
 * - §8: connection errors close the QUIC connection with the HTTP/3 (or QPACK) code as an application error.
 * No server push: we never send MAX_PUSH_ID, so push IDs from a server are always an error (§4.6).
 */
import { EventEmitter } from 'node:events';
import { withoutStack, type QuicConnection } from '../io/udp.js';
import type { QuicStream } from '../io/stream.js';
import type { CloseInfo } from '../quic/connection-types.js';
import { QpackEncoder } from './qpack/encoder.js';
import { QpackDecoder } from './qpack/decoder.js';
import { QpackError, QpackFieldSectionTooLargeError, type Header } from './qpack/errors.js';
import {
  decodePriorityUpdate,
  decodeSettings,
  decodeVarintPayload,
  encodeSettingsFrame,
  encodeVarintFrame,
  FrameReader,
  FrameType,
  greaseValue,
  SettingId,
  type FrameEvent,
} from './frames.js';
import { H3ConnectionClosedError, H3Error, H3ErrorCode as E, H3RequestRejectedError } from './errors.js';
import { H3RequestStream, IncomingBody, type RequestStreamSession } from './request-stream.js';
import type { HeaderList } from './validate.js';
import { frameEvent, priorityUpdateFrame, settingsFrame, skippedFrame, streamTypeEvent, type H3Trace } from './trace.js';
import { varintLength } from '../util/varint.js';

export const UniStreamType = { CONTROL: 0x00, PUSH: 0x01, QPACK_ENCODER: 0x02, QPACK_DECODER: 0x03 } as const;

export interface Http3SessionOptions {
  /** SETTINGS_MAX_FIELD_SECTION_SIZE we advertise and enforce. Default 64 KiB. */
  maxFieldSectionSize?: number;
  /** SETTINGS_QPACK_MAX_TABLE_CAPACITY we advertise (our decoder) and the most our encoder uses. Default 4096. */
  qpackMaxTableCapacity?: number;
  /** SETTINGS_QPACK_BLOCKED_STREAMS we advertise. Default 16. */
  qpackBlockedStreams?: number;
}

/**
 * Events: 'request' (H3RequestStream, server: a validated request head), 'goaway' (id), 'settings'
 * (Map<number, number>), 'drained' (after GOAWAY, no request streams left), 'close' (H3ConnectionClosedError),
 * 'streamError' (H3RequestStream, H3Error: a request stream we reset with a stream error, §8).
 */
export class Http3Session extends EventEmitter implements RequestStreamSession {
  readonly encoder: QpackEncoder;
  readonly decoder: QpackDecoder;
  readonly maxFieldSectionSize: number;
  private readonly settings: [number, number][];
  /** The peer's SETTINGS once received. */
  peerSettings: Map<number, number> | null = null;
  /** The peer's SETTINGS_MAX_FIELD_SECTION_SIZE (unlimited until it says otherwise). */
  peerMaxFieldSectionSize = Infinity;

  private control: QuicStream | null = null;
  private encStream: QuicStream | null = null;
  private decStream: QuicStream | null = null;
  private readonly peerCritical = new Set<number>();
  private readonly requestStreams = new Map<number, H3RequestStream>();
  /** Finished request streams whose QUIC stream may still hold unacknowledged data. */
  private readonly unsettled = new Set<number>();
  /** unsettled is swept of streams the connection forgot once it reaches this size (so it never grows with every request). */
  private unsettledSweepAt = 64;

  /** GOAWAY id we sent / received (null: none). */
  goawaySent: number | null = null;
  goawayReceived: number | null = null;
  private pendingGoaway = false;
  /** Server: the next client request stream id not yet seen. */
  private nextRequestId = 0;
  private maxPushIdReceived = -1;
  /** Set once the connection is closed (or closing). */
  closedError: Error | null = null;
  /** We closed (or are closing) the connection: stop processing input. */
  private closing = false;
  /** The connection's trace sink (qlog), or undefined: nothing traced. */
  readonly trace: H3Trace | undefined;

  constructor(
    readonly quic: QuicConnection,
    readonly role: 'client' | 'server',
    opts: Http3SessionOptions = {},
  ) {
    super();
    const sink = quic.trace;
    this.trace = sink ? (e) => sink({ time: quic.now(), name: e.name, data: e.data }) : undefined;
    this.maxFieldSectionSize = opts.maxFieldSectionSize ?? 64 * 1024;
    const cap = opts.qpackMaxTableCapacity ?? 4096;
    const blocked = opts.qpackBlockedStreams ?? 16;
    this.encoder = new QpackEncoder({ maxTableCapacity: cap });
    this.decoder = new QpackDecoder({ maxTableCapacity: cap, maxBlockedStreams: blocked, maxFieldSectionSize: this.maxFieldSectionSize });
    this.settings = [
      [SettingId.QPACK_MAX_TABLE_CAPACITY, cap],
      [SettingId.QPACK_BLOCKED_STREAMS, blocked],
      [SettingId.MAX_FIELD_SECTION_SIZE, this.maxFieldSectionSize],
      // §7.2.4.1: a reserved setting exercises the peer's handling of unknown identifiers.
      [greaseValue(1 + Math.floor(Math.random() * 1000)), Math.floor(Math.random() * 1024)],
    ];
    quic.on('stream', (s: QuicStream) => this.onPeerStream(s));
    quic.on('close', (info: CloseInfo) => this.onQuicClose(info));
    if (quic.closeInfo) queueMicrotask(() => this.onQuicClose(quic.closeInfo!));
    else this.start();
  }

  /** The connection is closed or closing: input is no longer processed. */
  get isClosing(): boolean {
    return this.closing || this.closedError !== null;
  }

  /** Finished request streams still tracked until the connection forgets them (bounded: swept as it grows). */
  get unsettledStreams(): number {
    return this.unsettled.size;
  }

  /** Request streams still in progress. */
  get activeStreams(): number {
    return this.requestStreams.size;
  }

  /**
   * Opens our control and QPACK streams (§6.2.1, RFC 9204 §4.2) at the handshake's completion, synchronously in the
   * 'ready' event: the driver emits it while it handles that turn's datagrams and polls the connection right after,
   * so SETTINGS leaves in the packet that carries HANDSHAKE_DONE (a server) or the client's first 1-RTT packet,
   * not in a datagram of its own one event-loop turn later. A peer whose stream limit is below three (it must
   * allow them, §6.2) gets the rest once it raises the limit.
   */
  private start(): void {
    if (this.quic.established) this.openLocalStreams();
    else this.quic.once('ready', () => this.openLocalStreams());
  }

  private openLocalStreams(): void {
    if (this.isClosing || this.control) return;
    // The stream type and SETTINGS in one write.
    const settings = encodeSettingsFrame(this.settings);
    const first = Buffer.allocUnsafe(1 + settings.length);
    first[0] = UniStreamType.CONTROL;
    settings.copy(first, 1);
    try {
      this.control = this.openUni(this.quic.tryOpenStream(false), UniStreamType.CONTROL, first);
      if (this.control) this.encStream = this.openUni(this.quic.tryOpenStream(false), UniStreamType.QPACK_ENCODER);
      if (this.encStream) this.decStream = this.openUni(this.quic.tryOpenStream(false), UniStreamType.QPACK_DECODER);
    } catch {
      return; // the connection closed meanwhile: 'close' reports it
    }
    if (this.decStream) this.localStreamsOpen();
    else void this.openLocalStreamsLater(first);
  }

  /** The streams openLocalStreams could not open for lack of stream credit, as credit comes. */
  private async openLocalStreamsLater(first: Buffer): Promise<void> {
    try {
      this.control ??= this.openUni(await this.quic.openStream(false), UniStreamType.CONTROL, first);
      this.encStream ??= this.openUni(await this.quic.openStream(false), UniStreamType.QPACK_ENCODER);
      this.decStream ??= this.openUni(await this.quic.openStream(false), UniStreamType.QPACK_DECODER);
      this.localStreamsOpen();
    } catch {
      // The connection closed before our streams could open: 'close' reports it.
    }
  }

  /** Writes the stream type (and, for the control stream, SETTINGS: `first`) on a just opened stream; null stays null. */
  private openUni(s: QuicStream | null, type: number, first?: Buffer): QuicStream | null {
    if (s === null) return null;
    s.on('error', () => {});
    s.write(first ?? Buffer.from([type]));
    if (this.trace) {
      this.trace(streamTypeEvent('local', s.id, type));
      if (type === UniStreamType.CONTROL) this.trace(frameEvent('http:frame_created', s.id, settingsLength(this.settings), settingsFrame(this.settings)));
    }
    return s;
  }

  private localStreamsOpen(): void {
    this.flushQpack();
    if (this.pendingGoaway) this.goaway();
  }

  // ------------------------------------------------------------------------------------------------ peer streams

  private onPeerStream(s: QuicStream): void {
    if (this.closedError) {
      s.on('error', () => {});
      s.destroy();
      return;
    }
    if (s.bidirectional) this.onPeerRequestStream(s);
    else this.onPeerUniStream(s);
  }

  private onPeerRequestStream(s: QuicStream): void {
    s.on('error', () => {});
    if (this.role === 'client') {
      this.connectionError(new H3Error(E.H3_STREAM_CREATION_ERROR, 'server-initiated bidirectional stream (§6.1)'));
      return;
    }
    if (s.id >= this.nextRequestId) this.nextRequestId = s.id + 4;
    if (this.goawaySent !== null && s.id >= this.goawaySent) {
      // §5.2: requests at or after our GOAWAY id are not processed.
      s.abortCode = E.H3_REQUEST_REJECTED;
      s.destroy();
      return;
    }
    const r = new H3RequestStream(this, s);
    this.requestStreams.set(s.id, r);
    if (this.trace) this.trace(streamTypeEvent('remote', s.id, null));
    r.onHead = (st) => {
      const body = this.createRequestBody(st);
      st.body = body;
      this.emit('request', st);
      return body;
    };
    r.pump();
  }

  /**
   * A blocked header section of a stream that is not one of this session's request streams became decodable (the
   * client's lean requests, src/h3/lean-request.ts, decode through the session but keep their own streams).
   */
  onUnblocked: ((streamId: number) => void) | null = null;

  /** Server: builds the body object of a request (the server replaces this with its Http3Request). */
  createRequestBody: (s: H3RequestStream) => IncomingBody = (s) => new IncomingBody(s);

  private onPeerUniStream(s: QuicStream): void {
    s.on('error', () => {});
    let head: Buffer | null = null;
    let handler: ((chunk: Buffer) => void) | null = null;
    let critical = false;
    const onData = (chunk: Buffer): void => {
      if (this.closedError || this.closing) return;
      try {
        if (handler) return handler(chunk);
        head = head ? Buffer.concat([head, chunk]) : chunk;
        const need = 1 << (head[0] >>> 6);
        if (head.length < need) return;
        let type = head[0] & 0x3f;
        for (let i = 1; i < need; i++) type = type * 256 + head[i];
        const rest = head.subarray(need);
        head = null;
        const h = this.uniHandler(type, s);
        if (!h) return;
        critical = type !== UniStreamType.PUSH;
        handler = h;
        if (rest.length) h(rest);
      } catch (e) {
        this.connectionError(e instanceof Error ? e : new Error(String(e)));
      }
    };
    s.on('data', onData);
    const closedCritical = (): void => {
      if (critical && !this.closedError && !this.closing) this.connectionError(new H3Error(E.H3_CLOSED_CRITICAL_STREAM, `critical stream ${s.id} closed`));
    };
    s.on('end', closedCritical);
    s.on('reset', closedCritical);
  }

  /** The handler for a peer unidirectional stream of `type`, or null when the stream is ignored. */
  private uniHandler(type: number, s: QuicStream): ((chunk: Buffer) => void) | null {
    if (this.trace) this.trace(streamTypeEvent('remote', s.id, type));
    const once = (what: string): void => {
      if (this.peerCritical.has(type)) throw new H3Error(E.H3_STREAM_CREATION_ERROR, `second ${what} stream`);
      this.peerCritical.add(type);
    };
    switch (type) {
      case UniStreamType.CONTROL: {
        once('control');
        const reader = new FrameReader();
        return (chunk) => {
          reader.push(chunk);
          for (let ev = reader.next(); ev; ev = reader.next()) this.onControlFrame(ev, s.id, reader);
        };
      }
      case UniStreamType.QPACK_ENCODER:
        once('QPACK encoder');
        return (chunk) => {
          const unblocked = this.decoder.onEncoderStreamData(chunk);
          this.flushQpack();
          for (const id of unblocked) {
            const r = this.requestStreams.get(id);
            if (r) r.unblock();
            else this.onUnblocked?.(id);
          }
        };
      case UniStreamType.QPACK_DECODER:
        once('QPACK decoder');
        return (chunk) => {
          this.encoder.onDecoderStreamData(chunk);
          this.flushQpack();
        };
      case UniStreamType.PUSH:
        // §6.2.2: only servers push; a client that never sent MAX_PUSH_ID cannot accept any push ID (§4.6).
        if (this.role === 'server') throw new H3Error(E.H3_STREAM_CREATION_ERROR, 'push stream from a client');
        throw new H3Error(E.H3_ID_ERROR, 'push stream without MAX_PUSH_ID');
      default:
        // §6.2: unknown (including reserved, §6.2.3) stream types: abort reading and ignore.
        s.stopSending(E.H3_STREAM_CREATION_ERROR);
        s.resume();
        return null;
    }
  }

  private onControlFrame(ev: FrameEvent, streamId: number, reader: FrameReader): void {
    if (!this.peerSettings) {
      if (ev.kind !== 'frame' || ev.type !== FrameType.SETTINGS) {
        throw new H3Error(E.H3_MISSING_SETTINGS, 'first frame on the control stream is not SETTINGS');
      }
    }
    if (ev.kind === 'unknown') {
      if (this.trace) this.trace(frameEvent('http:frame_parsed', streamId, reader.frameLength, skippedFrame(ev.type, reader.frameLength)));
      return;
    }
    if (ev.kind === 'data') throw new H3Error(E.H3_FRAME_UNEXPECTED, 'DATA on the control stream');
    const p = ev.payload;
    switch (ev.type) {
      case FrameType.SETTINGS: {
        if (this.peerSettings) throw new H3Error(E.H3_FRAME_UNEXPECTED, 'second SETTINGS frame');
        const s = decodeSettings(p);
        if (this.trace) this.trace(frameEvent('http:frame_parsed', streamId, p.length, settingsFrame(s)));
        this.peerSettings = s;
        this.peerMaxFieldSectionSize = s.get(SettingId.MAX_FIELD_SECTION_SIZE) ?? Infinity;
        this.encoder.applyPeerSettings(s.get(SettingId.QPACK_MAX_TABLE_CAPACITY) ?? 0, s.get(SettingId.QPACK_BLOCKED_STREAMS) ?? 0);
        this.flushQpack();
        this.emit('settings', s);
        return;
      }
      case FrameType.GOAWAY: {
        const id = decodeVarintPayload(p, 'GOAWAY');
        if (this.trace) this.trace(frameEvent('http:frame_parsed', streamId, p.length, { frame_type: 'goaway', id }));
        this.onGoaway(id);
        return;
      }
      case FrameType.MAX_PUSH_ID: {
        // §7.2.7: only clients send it, and it must not decrease.
        if (this.role === 'client') throw new H3Error(E.H3_FRAME_UNEXPECTED, 'MAX_PUSH_ID from a server');
        const id = decodeVarintPayload(p, 'MAX_PUSH_ID');
        if (this.trace) this.trace(frameEvent('http:frame_parsed', streamId, p.length, { frame_type: 'max_push_id', push_id: id }));
        if (id < this.maxPushIdReceived) throw new H3Error(E.H3_ID_ERROR, 'MAX_PUSH_ID decreased');
        this.maxPushIdReceived = id;
        return;
      }
      case FrameType.CANCEL_PUSH: {
        // §7.2.3: accepted; we never push, so there is nothing to cancel (a server), and a client never gets pushes.
        const id = decodeVarintPayload(p, 'CANCEL_PUSH');
        if (this.trace) this.trace(frameEvent('http:frame_parsed', streamId, p.length, { frame_type: 'cancel_push', push_id: id }));
        return;
      }
      case FrameType.PRIORITY_UPDATE_REQUEST:
      case FrameType.PRIORITY_UPDATE_PUSH: {
        // RFC 9218 §7: client to server only; accepted and ignored (no prioritization yet).
        if (this.role === 'client') throw new H3Error(E.H3_FRAME_UNEXPECTED, 'PRIORITY_UPDATE from a server');
        const u = decodePriorityUpdate(p);
        if (this.trace) this.trace(frameEvent('http:frame_parsed', streamId, p.length, priorityUpdateFrame(ev.type, u.elementId, u.value)));
        return;
      }
      default:
        // HEADERS, PUSH_PROMISE (and DATA above) are not allowed on the control stream (§7.2.2, §7.2.5).
        throw new H3Error(E.H3_FRAME_UNEXPECTED, `frame type 0x${ev.type.toString(16)} on the control stream`);
    }
  }

  // ------------------------------------------------------------------------------------------------ GOAWAY

  private onGoaway(id: number): void {
    if (this.role === 'client' && id % 4 !== 0) {
      throw new H3Error(E.H3_ID_ERROR, `GOAWAY id ${id} is not a client-initiated bidirectional stream`);
    }
    if (this.goawayReceived !== null && id > this.goawayReceived) throw new H3Error(E.H3_ID_ERROR, 'GOAWAY id increased');
    this.goawayReceived = id;
    if (this.role === 'client') {
      // §5.2: requests on streams at or after the id were not processed and may be retried.
      for (const r of [...this.requestStreams.values()]) {
        if (r.id >= id) r.abort(E.H3_REQUEST_CANCELLED, new H3RequestRejectedError(r.id, `GOAWAY(${id})`));
      }
    }
    this.emit('goaway', id);
    this.checkDrained();
  }

  /**
   * Sends GOAWAY (§5.2): a server names the first request stream it will not process (every request it has seen
   * is still served); a client sends push ID 0 (it allowed no pushes). After it, a server rejects newer requests
   * with H3_REQUEST_REJECTED and a client opens none.
   */
  goaway(): void {
    if (this.closedError) return;
    const id = this.role === 'server' ? this.nextRequestId : 0;
    if (this.goawaySent !== null && id >= this.goawaySent) return;
    this.goawaySent = id;
    if (!this.control) {
      this.pendingGoaway = true;
      return;
    }
    this.pendingGoaway = false;
    this.control.write(encodeVarintFrame(FrameType.GOAWAY, id));
    if (this.trace) this.trace(frameEvent('http:frame_created', this.control.id, varintLength(id), { frame_type: 'goaway', id }));
    this.checkDrained();
  }

  /**
   * True when every finished request stream is also gone at the QUIC level (our data acknowledged, theirs read):
   * closing the connection before that would discard response bytes still in flight.
   */
  allSettled(): boolean {
    this.sweepUnsettled();
    return this.unsettled.size === 0 && this.requestStreams.size === 0;
  }

  private sweepUnsettled(): void {
    const conn = this.quic.conn;
    for (const id of this.unsettled) if (!conn.hasStream(id)) this.unsettled.delete(id);
  }

  private checkDrained(): void {
    if ((this.goawaySent !== null || this.goawayReceived !== null) && this.requestStreams.size === 0) this.emit('drained');
  }

  // ------------------------------------------------------------------------------------------------ request streams

  /** Client: opens a request stream, waiting for stream credit. Rejects after GOAWAY or close. */
  async openRequest(): Promise<H3RequestStream> {
    if (this.role !== 'client') throw new Error('only clients open request streams');
    this.assertCanRequest();
    const s = await this.quic.openStream(true);
    s.on('error', () => {});
    if (this.closedError || (this.goawayReceived !== null && s.id >= this.goawayReceived)) {
      s.abortCode = E.H3_REQUEST_CANCELLED;
      s.destroy();
      this.assertCanRequest();
      throw new H3RequestRejectedError(s.id, `GOAWAY(${this.goawayReceived})`);
    }
    const r = new H3RequestStream(this, s);
    this.requestStreams.set(s.id, r);
    if (this.trace) this.trace(streamTypeEvent('local', s.id, null));
    return r;
  }

  private assertCanRequest(): void {
    if (this.closedError) throw this.closedError;
    if (this.goawayReceived !== null || this.goawaySent !== null) {
      throw new Error(`HTTP/3 connection is going away (GOAWAY${this.goawayReceived !== null ? ` ${this.goawayReceived} received` : ' sent'}): no new requests`);
    }
  }

  /** A request stream was reset with a stream error of ours (§8): tell whoever keeps records. */
  onStreamError(r: H3RequestStream, e: H3Error): void {
    this.emit('streamError', r, e);
  }

  onStreamDone(r: H3RequestStream): void {
    if (this.requestStreams.get(r.id) === r) this.requestStreams.delete(r.id);
    const u = this.unsettled;
    u.add(r.id);
    if (u.size >= this.unsettledSweepAt) {
      this.sweepUnsettled();
      this.unsettledSweepAt = Math.max(64, 2 * u.size);
    }
    this.checkDrained();
  }

  // ------------------------------------------------------------------------------------------------ QPACK

  /** Encodes a header section for sending; refuses one larger than the peer's MAX_FIELD_SECTION_SIZE (§4.2.2). */
  encodeFieldSection(streamId: number, fields: HeaderList): Buffer {
    let size = 0;
    for (const [n, v] of fields) size += n.length + v.length + 32;
    if (size > this.peerMaxFieldSectionSize) {
      throw new Error(`header section of ${size} bytes exceeds the peer's SETTINGS_MAX_FIELD_SECTION_SIZE ${this.peerMaxFieldSectionSize}`);
    }
    const block = this.encoder.encode(streamId, fields as Header[]);
    this.flushQpack();
    return block;
  }

  /** Decodes a HEADERS payload; maps QPACK failures to HTTP/3 errors. */
  decodeFieldSection(streamId: number, payload: Buffer): HeaderList | 'blocked' {
    try {
      return this.decoder.decode(streamId, payload);
    } catch (e) {
      throw this.qpackFailure(e);
    } finally {
      this.flushQpack();
    }
  }

  resumeFieldSection(streamId: number): HeaderList | 'blocked' {
    try {
      return this.decoder.resume(streamId);
    } catch (e) {
      throw this.qpackFailure(e);
    } finally {
      this.flushQpack();
    }
  }

  private qpackFailure(e: unknown): unknown {
    // §4.2.2 lets an endpoint refuse a header section larger than its limit; it is this stream's problem, not a
    // broken peer, so a stream error H3_EXCESSIVE_LOAD (§8.1: "behavior that might be generating excessive load").
    if (e instanceof QpackFieldSectionTooLargeError) return new H3Error(E.H3_EXCESSIVE_LOAD, e.message, 'stream');
    // RFC 9204 §6: QPACK errors are connection errors with the QPACK codes.
    if (e instanceof QpackError) return new H3Error(e.code, e.message);
    return e;
  }

  /** The stream was abandoned before its header sections were all decoded (RFC 9204 §2.2.2.2). */
  cancelFieldSections(streamId: number): void {
    if (this.closedError) return;
    this.decoder.cancelStream(streamId);
    this.flushQpack();
  }

  private flushQpack(): void {
    if (this.encStream) {
      const d = this.encoder.takeEncoderStreamData();
      if (d) this.encStream.write(Buffer.from(d));
    }
    if (this.decStream) {
      const d = this.decoder.takeDecoderStreamData();
      if (d) this.decStream.write(Buffer.from(d));
    }
  }

  // ------------------------------------------------------------------------------------------------ closing

  /** Closes the connection with a connection error (§8): the H3/QPACK code as the application close code. */
  connectionError(e: Error): void {
    if (this.closedError || this.closing) return;
    this.closing = true;
    // QPACK errors on the encoder/decoder streams carry their own codes (RFC 9204 §6).
    const code = e instanceof H3Error || e instanceof QpackError ? e.code : E.H3_INTERNAL_ERROR;
    this.quic.close(code, e.message.slice(0, 200));
  }

  /** Closes the connection (H3_NO_ERROR by default). */
  close(code: number = E.H3_NO_ERROR, reason = ''): void {
    if (this.closedError || this.closing) return;
    this.closing = true;
    this.quic.close(code, reason);
  }

  private onQuicClose(info: CloseInfo): void {
    if (this.closedError) return;
    const err = withoutStack(() => new H3ConnectionClosedError(info.code, info.by, info.application, info.reason));
    this.closedError = err;
    for (const r of [...this.requestStreams.values()]) r.onConnectionClosed(err);
    this.requestStreams.clear();
    this.emit('close', err);
  }
}

/** The SETTINGS payload length (identifier/value varints). */
function settingsLength(settings: [number, number][]): number {
  let n = 0;
  for (const [id, v] of settings) n += varintLength(id) + varintLength(v);
  return n;
}
