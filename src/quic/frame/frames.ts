/**
 * QUIC v1 frame codec (RFC 9000 §19) and the per-packet-type frame rules (RFC 9000 §12.4 Table 3, §12.5).
 *
 * Parsing is zero-copy: every `data`/`token`/`cid` Buffer in a parsed frame is a subarray of the payload.
 * Encoding writes straight into a caller-supplied buffer (no Writer, no temporary Buffers), so the packet
 * builder can size frames with `frameLength` and then `writeFrame` them in place.
 *
 * Stream direction/state, flow control and ACK plausibility are the connection's job, not this module's.
 */

import { DecodeError, Reader, varintLength, writeVarint } from '../../util/varint.js';
import { TransportError, TransportErrorCode } from '../errors.js';

/** An inclusive range of packet numbers: [smallest, largest]. */
export type AckRange = [smallest: number, largest: number];

export type Frame =
  | { type: 'padding'; length: number }
  | { type: 'ping' }
  | {
      type: 'ack';
      /** Descending and non-adjacent: ranges[0] holds the largest acknowledged packet number. */
      ranges: AckRange[];
      /** The raw ACK Delay field, not scaled by ack_delay_exponent. */
      ackDelay: number;
      ecn?: { ect0: number; ect1: number; ce: number };
    }
  | { type: 'reset_stream'; streamId: number; errorCode: number; finalSize: number }
  | { type: 'stop_sending'; streamId: number; errorCode: number }
  | { type: 'crypto'; offset: number; data: Buffer }
  | { type: 'new_token'; token: Buffer }
  | { type: 'stream'; streamId: number; offset: number; data: Buffer; fin: boolean }
  | { type: 'max_data'; max: number }
  | { type: 'max_stream_data'; streamId: number; max: number }
  | { type: 'max_streams'; bidi: boolean; max: number }
  | { type: 'data_blocked'; limit: number }
  | { type: 'stream_data_blocked'; streamId: number; limit: number }
  | { type: 'streams_blocked'; bidi: boolean; limit: number }
  | { type: 'new_connection_id'; seq: number; retirePriorTo: number; cid: Buffer; resetToken: Buffer }
  | { type: 'retire_connection_id'; seq: number }
  | { type: 'path_challenge'; data: Buffer }
  | { type: 'path_response'; data: Buffer }
  | {
      type: 'connection_close';
      /** true for type 0x1d (application close), false for 0x1c (transport close). */
      application: boolean;
      errorCode: number;
      /** The frame type that triggered a transport close; 0 for application closes. */
      frameType: number;
      reason: string;
    }
  | { type: 'handshake_done' };

/** Frame type codes (RFC 9000 §19, Table 3). STREAM covers 0x08..0x0f via its OFF/LEN/FIN bits. */
export const FrameType = {
  PADDING: 0x00,
  PING: 0x01,
  ACK: 0x02,
  ACK_ECN: 0x03,
  RESET_STREAM: 0x04,
  STOP_SENDING: 0x05,
  CRYPTO: 0x06,
  NEW_TOKEN: 0x07,
  STREAM: 0x08,
  STREAM_MAX: 0x0f,
  MAX_DATA: 0x10,
  MAX_STREAM_DATA: 0x11,
  MAX_STREAMS_BIDI: 0x12,
  MAX_STREAMS_UNI: 0x13,
  DATA_BLOCKED: 0x14,
  STREAM_DATA_BLOCKED: 0x15,
  STREAMS_BLOCKED_BIDI: 0x16,
  STREAMS_BLOCKED_UNI: 0x17,
  NEW_CONNECTION_ID: 0x18,
  RETIRE_CONNECTION_ID: 0x19,
  PATH_CHALLENGE: 0x1a,
  PATH_RESPONSE: 0x1b,
  CONNECTION_CLOSE: 0x1c,
  CONNECTION_CLOSE_APP: 0x1d,
  HANDSHAKE_DONE: 0x1e,
} as const;

/** STREAM frame type bits (RFC 9000 §19.8). */
const STREAM_OFF = 0x04;
const STREAM_LEN = 0x02;
const STREAM_FIN = 0x01;

export type PacketKind = 'initial' | 'handshake' | '0rtt' | '1rtt';

const K_INITIAL = 1;
const K_HANDSHAKE = 2;
const K_0RTT = 4;
const K_1RTT = 8;
const IH01 = K_INITIAL | K_HANDSHAKE | K_0RTT | K_1RTT;
const IH_1 = K_INITIAL | K_HANDSHAKE | K_1RTT;
const __01 = K_0RTT | K_1RTT;
const ___1 = K_1RTT;

/**
 * Which packet kinds may carry each frame type, indexed by type code. This is Table 3 of RFC 9000 §12.4,
 * tightened by §12.5, which also rules RETIRE_CONNECTION_ID out of 0-RTT (Table 3 says __01 there).
 */
const ALLOWED_IN: Uint8Array = (() => {
  const t = new Uint8Array(0x1f);
  t[0x00] = IH01; // PADDING
  t[0x01] = IH01; // PING
  t[0x02] = IH_1; // ACK
  t[0x03] = IH_1; // ACK_ECN
  t[0x04] = __01; // RESET_STREAM
  t[0x05] = __01; // STOP_SENDING
  t[0x06] = IH_1; // CRYPTO
  t[0x07] = ___1; // NEW_TOKEN
  for (let s = 0x08; s <= 0x0f; s++) t[s] = __01; // STREAM
  for (let s = 0x10; s <= 0x18; s++) t[s] = __01; // MAX_*, *_BLOCKED, NEW_CONNECTION_ID
  t[0x19] = ___1; // RETIRE_CONNECTION_ID (§12.5)
  t[0x1a] = __01; // PATH_CHALLENGE
  t[0x1b] = ___1; // PATH_RESPONSE
  t[0x1c] = IH01; // CONNECTION_CLOSE (transport)
  t[0x1d] = __01; // CONNECTION_CLOSE (application)
  t[0x1e] = ___1; // HANDSHAKE_DONE
  return t;
})();

function kindBit(kind: PacketKind): number {
  switch (kind) {
    case 'initial':
      return K_INITIAL;
    case 'handshake':
      return K_HANDSHAKE;
    case '0rtt':
      return K_0RTT;
    case '1rtt':
      return K_1RTT;
  }
}

/** Whether a frame of type `typeCode` may appear in a packet of `kind` (RFC 9000 §12.4, §12.5). */
export function isFrameAllowedIn(typeCode: number, kind: PacketKind): boolean {
  return typeCode < ALLOWED_IN.length && (ALLOWED_IN[typeCode] & kindBit(kind)) !== 0;
}

const MAX_STREAMS_LIMIT = 2 ** 60;
/** 2^62-1 exactly (the double VARINT_MAX rounds up to 2^62). */
const MAX_OFFSET = 2n ** 62n - 1n;
const MAX_CID_LENGTH = 20;
const RESET_TOKEN_LENGTH = 16;
const PATH_DATA_LENGTH = 8;

function encodingError(frameType: number, message: string): TransportError {
  return new TransportError(TransportErrorCode.FRAME_ENCODING_ERROR, message, frameType);
}

/** Decodes the varint at `pos` exactly; used only on the rare path where a value exceeds 2^53. */
function exactVarint(buf: Buffer, pos: number): bigint {
  const len = 1 << (buf[pos] >>> 6);
  let v = BigInt(buf[pos] & 0x3f);
  for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(buf[pos + i]);
  return v;
}

/**
 * True when the varint read as `v` from `pos` is larger than `limit` (an exactly representable double).
 * Doubles round monotonically, so only v === limit is ambiguous and needs the exact value.
 */
function varintAbove(buf: Buffer, pos: number, v: number, limit: number): boolean {
  if (v !== limit) return v > limit;
  return exactVarint(buf, pos) > BigInt(limit);
}

/** RFC 9000 §19.6 / §19.8: offset + length must not exceed 2^62-1. `offPos` < 0 when there is no offset field. */
function checkEndOffset(buf: Buffer, offPos: number, offset: number, length: number, frameType: number): void {
  if (offset + length < 2 ** 53) return;
  const exactOffset = offPos < 0 ? 0n : exactVarint(buf, offPos);
  if (exactOffset + BigInt(length) > MAX_OFFSET) {
    throw encodingError(frameType, `offset ${exactOffset} + length ${length} exceeds 2^62-1`);
  }
}

type StreamFrame = Extract<Frame, { type: 'stream' }>;
type PaddingFrame = Extract<Frame, { type: 'padding' }>;

/** Pooled frame objects kept per kind, at most this many (a packet with more frames allocates the rest). */
const SCRATCH_POOL = 64;

/**
 * Storage that parseFrames reuses from one packet to the next: the frames array and the STREAM and PADDING frame
 * objects (what the packets of a bulk transfer carry), so that such a packet parses without allocating them. The
 * array parseFrames returns with a scratch, and the STREAM/PADDING objects in it, are valid until the scratch's next
 * parse; the data views and the other frames are new objects, as without a scratch. `busy` lets a caller that
 * handles the frames while it still iterates them detect a nested parse (which must then go without the scratch).
 */
export class FrameScratch {
  readonly frames: Frame[] = [];
  busy = false;
  /** The parse's reader, reset per packet (it keeps a reference to the last payload until the next parse). */
  readonly reader = new Reader(Buffer.alloc(0));
  private readonly streams: StreamFrame[] = [];
  private readonly paddings: PaddingFrame[] = [];
  private nStreams = 0;
  private nPaddings = 0;

  /**
   * Starts a parse: every pooled object is free again. The array keeps its length (setting it to 0 would free its
   * backing store, which the next push allocates again): parseFrames overwrites it by index and sets the length last.
   */
  reset(): Frame[] {
    this.nStreams = 0;
    this.nPaddings = 0;
    return this.frames;
  }

  stream(streamId: number, offset: number, data: Buffer, fin: boolean): StreamFrame {
    if (this.nStreams === this.streams.length) {
      const f: StreamFrame = { type: 'stream', streamId, offset, data, fin };
      if (this.nStreams < SCRATCH_POOL) {
        this.streams.push(f);
        this.nStreams++;
      }
      return f;
    }
    const f = this.streams[this.nStreams++];
    f.streamId = streamId;
    f.offset = offset;
    f.data = data;
    f.fin = fin;
    return f;
  }

  padding(length: number): PaddingFrame {
    if (this.nPaddings === this.paddings.length) {
      const f: PaddingFrame = { type: 'padding', length };
      if (this.nPaddings < SCRATCH_POOL) {
        this.paddings.push(f);
        this.nPaddings++;
      }
      return f;
    }
    const f = this.paddings[this.nPaddings++];
    f.length = length;
    return f;
  }
}

/**
 * Parses every frame of a decrypted packet payload. With `scratch`, the array and the STREAM/PADDING frame objects
 * come from it (FrameScratch: valid until its next parse); without, all are new.
 * Throws TransportError: FRAME_ENCODING_ERROR for malformed frames, PROTOCOL_VIOLATION for a frame that the
 * packet kind may not carry or for an empty payload. The error's frameType names the offending frame.
 */
export function parseFrames(payload: Buffer, kind: PacketKind, scratch: FrameScratch | null = null): Frame[] {
  if (payload.length === 0) {
    throw new TransportError(TransportErrorCode.PROTOCOL_VIOLATION, 'packet contains no frames', 0);
  }
  const bit = kindBit(kind);
  const r = scratch === null ? new Reader(payload) : scratch.reader.reset(payload);
  const frames: Frame[] = scratch === null ? [] : scratch.reset();
  let n = 0;
  while (r.pos < r.end) {
    const start = r.pos;
    let type: number;
    if (payload[start] < 0x40) {
      type = payload[start];
      r.pos++;
    } else {
      // A non-minimal (longer than needed) type encoding is accepted (RFC 9000 §12.4 makes rejecting it optional).
      try {
        type = r.varint();
      } catch {
        throw encodingError(0, 'truncated frame type');
      }
    }
    if (type >= ALLOWED_IN.length) throw encodingError(type, `unknown frame type 0x${type.toString(16)}`);
    if ((ALLOWED_IN[type] & bit) === 0) {
      throw new TransportError(
        TransportErrorCode.PROTOCOL_VIOLATION,
        `frame type 0x${type.toString(16)} is not allowed in ${kind} packets`,
        type,
      );
    }
    if (type === FrameType.PADDING) {
      let p = r.pos;
      while (p < r.end && payload[p] === 0) p++;
      r.pos = p;
      frames[n++] = scratch === null ? { type: 'padding', length: p - start } : scratch.padding(p - start);
      continue;
    }
    try {
      frames[n++] = parseFrameBody(r, type, scratch);
    } catch (e) {
      if (e instanceof DecodeError) throw encodingError(type, `frame 0x${type.toString(16)}: ${e.message}`);
      throw e;
    }
  }
  if (frames.length !== n) frames.length = n;
  return frames;
}

/** Parses the body of one frame whose type has already been read and checked. DecodeError means truncation. */
function parseFrameBody(r: Reader, type: number, scratch: FrameScratch | null): Frame {
  const buf = r.buf;
  if (type >= FrameType.STREAM && type <= FrameType.STREAM_MAX) {
    const streamId = r.varint();
    let offset = 0;
    let offPos = -1;
    if (type & STREAM_OFF) {
      offPos = r.pos;
      offset = r.varint();
    }
    const data = type & STREAM_LEN ? r.bytes(r.varint()) : r.rest();
    checkEndOffset(buf, offPos, offset, data.length, type);
    const fin = (type & STREAM_FIN) !== 0;
    return scratch === null ? { type: 'stream', streamId, offset, data, fin } : scratch.stream(streamId, offset, data, fin);
  }
  switch (type) {
    case FrameType.PING:
      return { type: 'ping' };
    case FrameType.ACK:
    case FrameType.ACK_ECN:
      return parseAck(r, type);
    case FrameType.RESET_STREAM:
      return { type: 'reset_stream', streamId: r.varint(), errorCode: r.varint(), finalSize: r.varint() };
    case FrameType.STOP_SENDING:
      return { type: 'stop_sending', streamId: r.varint(), errorCode: r.varint() };
    case FrameType.CRYPTO: {
      const offPos = r.pos;
      const offset = r.varint();
      const data = r.bytes(r.varint());
      checkEndOffset(buf, offPos, offset, data.length, type);
      return { type: 'crypto', offset, data };
    }
    case FrameType.NEW_TOKEN: {
      const token = r.bytes(r.varint());
      if (token.length === 0) throw encodingError(type, 'NEW_TOKEN with an empty token');
      return { type: 'new_token', token };
    }
    case FrameType.MAX_DATA:
      return { type: 'max_data', max: r.varint() };
    case FrameType.MAX_STREAM_DATA:
      return { type: 'max_stream_data', streamId: r.varint(), max: r.varint() };
    case FrameType.MAX_STREAMS_BIDI:
    case FrameType.MAX_STREAMS_UNI: {
      const at = r.pos;
      const max = r.varint();
      if (varintAbove(buf, at, max, MAX_STREAMS_LIMIT)) throw encodingError(type, 'MAX_STREAMS above 2^60');
      return { type: 'max_streams', bidi: type === FrameType.MAX_STREAMS_BIDI, max };
    }
    case FrameType.DATA_BLOCKED:
      return { type: 'data_blocked', limit: r.varint() };
    case FrameType.STREAM_DATA_BLOCKED:
      return { type: 'stream_data_blocked', streamId: r.varint(), limit: r.varint() };
    case FrameType.STREAMS_BLOCKED_BIDI:
    case FrameType.STREAMS_BLOCKED_UNI: {
      const at = r.pos;
      const limit = r.varint();
      if (varintAbove(buf, at, limit, MAX_STREAMS_LIMIT)) throw encodingError(type, 'STREAMS_BLOCKED above 2^60');
      return { type: 'streams_blocked', bidi: type === FrameType.STREAMS_BLOCKED_BIDI, limit };
    }
    case FrameType.NEW_CONNECTION_ID: {
      const seq = r.varint();
      const retirePriorTo = r.varint();
      const cidLen = r.u8();
      if (cidLen < 1 || cidLen > MAX_CID_LENGTH) {
        throw encodingError(type, `NEW_CONNECTION_ID with connection ID length ${cidLen}`);
      }
      const cid = r.bytes(cidLen);
      const resetToken = r.bytes(RESET_TOKEN_LENGTH);
      if (retirePriorTo > seq) {
        throw encodingError(type, `NEW_CONNECTION_ID retire_prior_to ${retirePriorTo} > sequence ${seq}`);
      }
      return { type: 'new_connection_id', seq, retirePriorTo, cid, resetToken };
    }
    case FrameType.RETIRE_CONNECTION_ID:
      return { type: 'retire_connection_id', seq: r.varint() };
    case FrameType.PATH_CHALLENGE:
      return { type: 'path_challenge', data: r.bytes(PATH_DATA_LENGTH) };
    case FrameType.PATH_RESPONSE:
      return { type: 'path_response', data: r.bytes(PATH_DATA_LENGTH) };
    case FrameType.CONNECTION_CLOSE:
    case FrameType.CONNECTION_CLOSE_APP: {
      const application = type === FrameType.CONNECTION_CLOSE_APP;
      const errorCode = r.varint();
      const frameType = application ? 0 : r.varint();
      const reason = r.bytes(r.varint()).toString('utf8');
      return { type: 'connection_close', application, errorCode, frameType, reason };
    }
    case FrameType.HANDSHAKE_DONE:
      return { type: 'handshake_done' };
    default:
      // Unreachable: every code below ALLOWED_IN.length is handled above.
      throw encodingError(type, `unknown frame type 0x${type.toString(16)}`);
  }
}

/** RFC 9000 §19.3: Largest Acknowledged, ACK Delay, Range Count, First Range, (Gap, Range)*, [ECN counts]. */
function parseAck(r: Reader, type: number): Frame {
  const largest = r.varint();
  const ackDelay = r.varint();
  const count = r.varint();
  const first = r.varint();
  if (first > largest) throw encodingError(type, `ACK first range ${first} exceeds largest ${largest}`);
  // Every further range takes at least two bytes: reject absurd counts before allocating for them.
  if (count > r.remaining / 2) throw encodingError(type, `ACK range count ${count} overruns the frame`);
  const ranges: AckRange[] = [[largest - first, largest]];
  let smallest = largest - first;
  for (let i = 0; i < count; i++) {
    const gap = r.varint();
    const len = r.varint();
    if (gap + 2 > smallest) throw encodingError(type, `ACK gap ${gap} goes below packet number 0`);
    const hi = smallest - gap - 2;
    if (len > hi) throw encodingError(type, `ACK range ${len} goes below packet number 0`);
    smallest = hi - len;
    ranges.push([smallest, hi]);
  }
  if (type === FrameType.ACK_ECN) {
    const ecn = { ect0: r.varint(), ect1: r.varint(), ce: r.varint() };
    return { type: 'ack', ranges, ackDelay, ecn };
  }
  return { type: 'ack', ranges, ackDelay };
}

/** The type code `writeFrame` uses for f (STREAM: LEN always set, OFF only when offset > 0). */
export function frameTypeCode(f: Frame): number {
  switch (f.type) {
    case 'padding':
      return FrameType.PADDING;
    case 'ping':
      return FrameType.PING;
    case 'ack':
      return f.ecn ? FrameType.ACK_ECN : FrameType.ACK;
    case 'reset_stream':
      return FrameType.RESET_STREAM;
    case 'stop_sending':
      return FrameType.STOP_SENDING;
    case 'crypto':
      return FrameType.CRYPTO;
    case 'new_token':
      return FrameType.NEW_TOKEN;
    case 'stream':
      return FrameType.STREAM | STREAM_LEN | (f.offset > 0 ? STREAM_OFF : 0) | (f.fin ? STREAM_FIN : 0);
    case 'max_data':
      return FrameType.MAX_DATA;
    case 'max_stream_data':
      return FrameType.MAX_STREAM_DATA;
    case 'max_streams':
      return f.bidi ? FrameType.MAX_STREAMS_BIDI : FrameType.MAX_STREAMS_UNI;
    case 'data_blocked':
      return FrameType.DATA_BLOCKED;
    case 'stream_data_blocked':
      return FrameType.STREAM_DATA_BLOCKED;
    case 'streams_blocked':
      return f.bidi ? FrameType.STREAMS_BLOCKED_BIDI : FrameType.STREAMS_BLOCKED_UNI;
    case 'new_connection_id':
      return FrameType.NEW_CONNECTION_ID;
    case 'retire_connection_id':
      return FrameType.RETIRE_CONNECTION_ID;
    case 'path_challenge':
      return FrameType.PATH_CHALLENGE;
    case 'path_response':
      return FrameType.PATH_RESPONSE;
    case 'connection_close':
      return f.application ? FrameType.CONNECTION_CLOSE_APP : FrameType.CONNECTION_CLOSE;
    case 'handshake_done':
      return FrameType.HANDSHAKE_DONE;
  }
}

/** Header size of a STREAM frame carrying `length` bytes, with the LEN bit set and OFF only when offset > 0. */
export function streamFrameOverhead(streamId: number, offset: number, length: number): number {
  return 1 + varintLength(streamId) + (offset > 0 ? varintLength(offset) : 0) + varintLength(length);
}

/**
 * Writes a STREAM frame header (type, stream ID, optional offset, length); the caller writes the `length`
 * data bytes at the returned offset.
 */
export function writeStreamFrameHeader(
  buf: Buffer,
  off: number,
  streamId: number,
  offset: number,
  length: number,
  fin: boolean,
): number {
  buf[off++] = FrameType.STREAM | STREAM_LEN | (offset > 0 ? STREAM_OFF : 0) | (fin ? STREAM_FIN : 0);
  off = writeVarint(buf, off, streamId);
  if (offset > 0) off = writeVarint(buf, off, offset);
  return writeVarint(buf, off, length);
}

function ackRangeError(i: number): RangeError {
  return new RangeError(`ACK ranges must be descending, non-adjacent and non-empty (range ${i})`);
}

function ackLength(ranges: AckRange[], ackDelay: number): number {
  if (ranges.length === 0) throw ackRangeError(0);
  const [s0, l0] = ranges[0];
  if (s0 > l0) throw ackRangeError(0);
  let n = varintLength(l0) + varintLength(ackDelay) + varintLength(ranges.length - 1) + varintLength(l0 - s0);
  let prevSmallest = s0;
  for (let i = 1; i < ranges.length; i++) {
    const [s, l] = ranges[i];
    const gap = prevSmallest - l - 2;
    if (gap < 0 || s > l) throw ackRangeError(i);
    n += varintLength(gap) + varintLength(l - s);
    prevSmallest = s;
  }
  return n;
}

function checkFixed(b: Buffer, want: number, what: string): void {
  if (b.length !== want) throw new RangeError(`${what} must be ${want} bytes, got ${b.length}`);
}

/** The exact number of bytes `writeFrame` writes for f. */
export function frameLength(f: Frame): number {
  switch (f.type) {
    case 'padding':
      return f.length;
    case 'ping':
    case 'handshake_done':
      return 1;
    case 'ack': {
      let n = 1 + ackLength(f.ranges, f.ackDelay);
      if (f.ecn) n += varintLength(f.ecn.ect0) + varintLength(f.ecn.ect1) + varintLength(f.ecn.ce);
      return n;
    }
    case 'reset_stream':
      return 1 + varintLength(f.streamId) + varintLength(f.errorCode) + varintLength(f.finalSize);
    case 'stop_sending':
      return 1 + varintLength(f.streamId) + varintLength(f.errorCode);
    case 'crypto':
      return 1 + varintLength(f.offset) + varintLength(f.data.length) + f.data.length;
    case 'new_token':
      return 1 + varintLength(f.token.length) + f.token.length;
    case 'stream':
      return streamFrameOverhead(f.streamId, f.offset, f.data.length) + f.data.length;
    case 'max_data':
      return 1 + varintLength(f.max);
    case 'max_stream_data':
      return 1 + varintLength(f.streamId) + varintLength(f.max);
    case 'max_streams':
      return 1 + varintLength(f.max);
    case 'data_blocked':
      return 1 + varintLength(f.limit);
    case 'stream_data_blocked':
      return 1 + varintLength(f.streamId) + varintLength(f.limit);
    case 'streams_blocked':
      return 1 + varintLength(f.limit);
    case 'new_connection_id':
      return 1 + varintLength(f.seq) + varintLength(f.retirePriorTo) + 1 + f.cid.length + RESET_TOKEN_LENGTH;
    case 'retire_connection_id':
      return 1 + varintLength(f.seq);
    case 'path_challenge':
    case 'path_response':
      return 1 + PATH_DATA_LENGTH;
    case 'connection_close': {
      const reasonLen = Buffer.byteLength(f.reason, 'utf8');
      return (
        1 +
        varintLength(f.errorCode) +
        (f.application ? 0 : varintLength(f.frameType)) +
        varintLength(reasonLen) +
        reasonLen
      );
    }
  }
}

/** Encodes f at buf[off]; returns the offset after it. The buffer must have frameLength(f) bytes free. */
export function writeFrame(buf: Buffer, off: number, f: Frame): number {
  switch (f.type) {
    case 'padding':
      buf.fill(0, off, off + f.length);
      return off + f.length;
    case 'ping':
      buf[off] = FrameType.PING;
      return off + 1;
    case 'handshake_done':
      buf[off] = FrameType.HANDSHAKE_DONE;
      return off + 1;
    case 'ack':
      return writeAck(buf, off, f.ranges, f.ackDelay, f.ecn);
    case 'reset_stream':
      buf[off++] = FrameType.RESET_STREAM;
      off = writeVarint(buf, off, f.streamId);
      off = writeVarint(buf, off, f.errorCode);
      return writeVarint(buf, off, f.finalSize);
    case 'stop_sending':
      buf[off++] = FrameType.STOP_SENDING;
      off = writeVarint(buf, off, f.streamId);
      return writeVarint(buf, off, f.errorCode);
    case 'crypto':
      buf[off++] = FrameType.CRYPTO;
      off = writeVarint(buf, off, f.offset);
      off = writeVarint(buf, off, f.data.length);
      return off + f.data.copy(buf, off);
    case 'new_token':
      buf[off++] = FrameType.NEW_TOKEN;
      off = writeVarint(buf, off, f.token.length);
      return off + f.token.copy(buf, off);
    case 'stream':
      off = writeStreamFrameHeader(buf, off, f.streamId, f.offset, f.data.length, f.fin);
      return off + f.data.copy(buf, off);
    case 'max_data':
      buf[off++] = FrameType.MAX_DATA;
      return writeVarint(buf, off, f.max);
    case 'max_stream_data':
      buf[off++] = FrameType.MAX_STREAM_DATA;
      off = writeVarint(buf, off, f.streamId);
      return writeVarint(buf, off, f.max);
    case 'max_streams':
      buf[off++] = f.bidi ? FrameType.MAX_STREAMS_BIDI : FrameType.MAX_STREAMS_UNI;
      return writeVarint(buf, off, f.max);
    case 'data_blocked':
      buf[off++] = FrameType.DATA_BLOCKED;
      return writeVarint(buf, off, f.limit);
    case 'stream_data_blocked':
      buf[off++] = FrameType.STREAM_DATA_BLOCKED;
      off = writeVarint(buf, off, f.streamId);
      return writeVarint(buf, off, f.limit);
    case 'streams_blocked':
      buf[off++] = f.bidi ? FrameType.STREAMS_BLOCKED_BIDI : FrameType.STREAMS_BLOCKED_UNI;
      return writeVarint(buf, off, f.limit);
    case 'new_connection_id':
      if (f.cid.length < 1 || f.cid.length > MAX_CID_LENGTH) {
        throw new RangeError(`connection ID length ${f.cid.length} not in 1..20`);
      }
      checkFixed(f.resetToken, RESET_TOKEN_LENGTH, 'stateless reset token');
      buf[off++] = FrameType.NEW_CONNECTION_ID;
      off = writeVarint(buf, off, f.seq);
      off = writeVarint(buf, off, f.retirePriorTo);
      buf[off++] = f.cid.length;
      off += f.cid.copy(buf, off);
      return off + f.resetToken.copy(buf, off);
    case 'retire_connection_id':
      buf[off++] = FrameType.RETIRE_CONNECTION_ID;
      return writeVarint(buf, off, f.seq);
    case 'path_challenge':
    case 'path_response':
      checkFixed(f.data, PATH_DATA_LENGTH, 'path challenge data');
      buf[off++] = f.type === 'path_challenge' ? FrameType.PATH_CHALLENGE : FrameType.PATH_RESPONSE;
      return off + f.data.copy(buf, off);
    case 'connection_close': {
      buf[off++] = f.application ? FrameType.CONNECTION_CLOSE_APP : FrameType.CONNECTION_CLOSE;
      off = writeVarint(buf, off, f.errorCode);
      if (!f.application) off = writeVarint(buf, off, f.frameType);
      const reasonLen = Buffer.byteLength(f.reason, 'utf8');
      off = writeVarint(buf, off, reasonLen);
      return off + buf.write(f.reason, off, reasonLen, 'utf8');
    }
  }
}

function writeAck(
  buf: Buffer,
  off: number,
  ranges: AckRange[],
  ackDelay: number,
  ecn: { ect0: number; ect1: number; ce: number } | undefined,
): number {
  if (ranges.length === 0) throw ackRangeError(0);
  const [s0, l0] = ranges[0];
  if (s0 > l0) throw ackRangeError(0);
  buf[off++] = ecn ? FrameType.ACK_ECN : FrameType.ACK;
  off = writeVarint(buf, off, l0);
  off = writeVarint(buf, off, ackDelay);
  off = writeVarint(buf, off, ranges.length - 1);
  off = writeVarint(buf, off, l0 - s0);
  let prevSmallest = s0;
  for (let i = 1; i < ranges.length; i++) {
    const [s, l] = ranges[i];
    const gap = prevSmallest - l - 2;
    if (gap < 0 || s > l) throw ackRangeError(i);
    off = writeVarint(buf, off, gap);
    off = writeVarint(buf, off, l - s);
    prevSmallest = s;
  }
  if (ecn) {
    off = writeVarint(buf, off, ecn.ect0);
    off = writeVarint(buf, off, ecn.ect1);
    off = writeVarint(buf, off, ecn.ce);
  }
  return off;
}

/** RFC 9000 §13.2: every frame except PADDING, ACK and CONNECTION_CLOSE elicits an acknowledgment. */
export function isAckEliciting(f: Frame): boolean {
  return f.type !== 'padding' && f.type !== 'ack' && f.type !== 'connection_close';
}

/** RFC 9000 §9.1: probing frames are PATH_CHALLENGE, PATH_RESPONSE, NEW_CONNECTION_ID and PADDING. */
export function isProbing(f: Frame): boolean {
  return (
    f.type === 'path_challenge' || f.type === 'path_response' || f.type === 'new_connection_id' || f.type === 'padding'
  );
}

/** A short human-readable description for logs and qlog. */
export function describeFrame(f: Frame): string {
  switch (f.type) {
    case 'padding':
      return `PADDING(${f.length})`;
    case 'ping':
      return 'PING';
    case 'ack': {
      const rs = f.ranges.map(([s, l]) => (s === l ? `${l}` : `${s}-${l}`)).join(',');
      const ecn = f.ecn ? ` ecn=${f.ecn.ect0}/${f.ecn.ect1}/${f.ecn.ce}` : '';
      return `ACK [${rs}] delay=${f.ackDelay}${ecn}`;
    }
    case 'reset_stream':
      return `RESET_STREAM id=${f.streamId} err=0x${f.errorCode.toString(16)} final=${f.finalSize}`;
    case 'stop_sending':
      return `STOP_SENDING id=${f.streamId} err=0x${f.errorCode.toString(16)}`;
    case 'crypto':
      return `CRYPTO off=${f.offset} len=${f.data.length}`;
    case 'new_token':
      return `NEW_TOKEN len=${f.token.length}`;
    case 'stream':
      return `STREAM id=${f.streamId} off=${f.offset} len=${f.data.length}${f.fin ? ' fin' : ''}`;
    case 'max_data':
      return `MAX_DATA ${f.max}`;
    case 'max_stream_data':
      return `MAX_STREAM_DATA id=${f.streamId} max=${f.max}`;
    case 'max_streams':
      return `MAX_STREAMS ${f.bidi ? 'bidi' : 'uni'} ${f.max}`;
    case 'data_blocked':
      return `DATA_BLOCKED ${f.limit}`;
    case 'stream_data_blocked':
      return `STREAM_DATA_BLOCKED id=${f.streamId} limit=${f.limit}`;
    case 'streams_blocked':
      return `STREAMS_BLOCKED ${f.bidi ? 'bidi' : 'uni'} ${f.limit}`;
    case 'new_connection_id':
      return `NEW_CONNECTION_ID seq=${f.seq} retire<${f.retirePriorTo} cid=${f.cid.toString('hex')}`;
    case 'retire_connection_id':
      return `RETIRE_CONNECTION_ID seq=${f.seq}`;
    case 'path_challenge':
      return `PATH_CHALLENGE ${f.data.toString('hex')}`;
    case 'path_response':
      return `PATH_RESPONSE ${f.data.toString('hex')}`;
    case 'connection_close':
      return f.application
        ? `CONNECTION_CLOSE app err=0x${f.errorCode.toString(16)} "${f.reason}"`
        : `CONNECTION_CLOSE err=0x${f.errorCode.toString(16)} frame=0x${f.frameType.toString(16)} "${f.reason}"`;
    case 'handshake_done':
      return 'HANDSHAKE_DONE';
  }
}
