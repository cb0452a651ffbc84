/**
 * HTTP/3 frames (RFC 9114 §7): types, settings identifiers (§7.2.4.1), encoders, and an incremental FrameReader.
 *
 * The reader takes stream bytes in chunks of any size and hands out one event at a time (pull: the caller can stop
 * taking frames, e.g. while a HEADERS frame waits for QPACK inserts). DATA payloads are handed out as they arrive,
 * never buffered whole; other known frames are buffered up to a per-type limit; unknown and reserved (GREASE,
 * §7.2.8) frame types are skipped without buffering (§9). HTTP/2 frame types that HTTP/3 reserves (§7.2.8:
 * 0x2 PRIORITY, 0x6 PING, 0x8 WINDOW_UPDATE, 0x9 CONTINUATION) are a connection error H3_FRAME_UNEXPECTED wherever
 * they appear (§7.2.8, §11.2.1).
 */
import { Reader, DecodeError, varintLength, writeVarint } from '../util/varint.js';
import { H3Error, H3ErrorCode as E } from './errors.js';

export const FrameType = {
  DATA: 0x0,
  HEADERS: 0x1,
  CANCEL_PUSH: 0x3,
  SETTINGS: 0x4,
  PUSH_PROMISE: 0x5,
  GOAWAY: 0x7,
  MAX_PUSH_ID: 0xd,
  /** RFC 9218 §7.1 */
  PRIORITY_UPDATE_REQUEST: 0xf0700,
  PRIORITY_UPDATE_PUSH: 0xf0701,
} as const;

/** HTTP/2 frame types with no HTTP/3 equivalent (§7.2.8): receiving one is H3_FRAME_UNEXPECTED. */
export const RESERVED_H2_FRAME_TYPES: ReadonlySet<number> = new Set([0x2, 0x6, 0x8, 0x9]);

const KNOWN_FRAME_TYPES: ReadonlySet<number> = new Set(Object.values(FrameType));

export const SettingId = {
  QPACK_MAX_TABLE_CAPACITY: 0x1,
  MAX_FIELD_SECTION_SIZE: 0x6,
  QPACK_BLOCKED_STREAMS: 0x7,
} as const;

/** HTTP/2 settings with no HTTP/3 equivalent (§7.2.4.1): receiving one is H3_SETTINGS_ERROR. */
export function isReservedH2Setting(id: number): boolean {
  return id >= 0x2 && id <= 0x5;
}

/** Reserved identifiers of the form 0x1f * N + 0x21 (§7.2.4.1, §7.2.8, §6.2.3): GREASE. */
export function isGrease(v: number): boolean {
  return v >= 0x21 && (v - 0x21) % 0x1f === 0;
}

/** A GREASE value 0x1f * n + 0x21 (n small, so it stays a 2- or 4-byte varint). */
export function greaseValue(n: number): number {
  return 0x1f * n + 0x21;
}

// ------------------------------------------------------------------------------------------------ encoders

/** The type and length of a frame (the payload follows). */
export function encodeFrameHeader(type: number, length: number): Buffer {
  const b = Buffer.allocUnsafe(varintLength(type) + varintLength(length));
  writeVarint(b, writeVarint(b, 0, type), length);
  return b;
}

export function encodeFrame(type: number, payload: Buffer): Buffer {
  const b = Buffer.allocUnsafe(varintLength(type) + varintLength(payload.length) + payload.length);
  const off = writeVarint(b, writeVarint(b, 0, type), payload.length);
  payload.copy(b, off);
  return b;
}

export function encodeSettingsFrame(settings: Iterable<[id: number, value: number]>): Buffer {
  const list = [...settings];
  let len = 0;
  for (const [id, v] of list) len += varintLength(id) + varintLength(v);
  const p = Buffer.allocUnsafe(len);
  let off = 0;
  for (const [id, v] of list) off = writeVarint(p, writeVarint(p, off, id), v);
  return encodeFrame(FrameType.SETTINGS, p);
}

/** GOAWAY, MAX_PUSH_ID and CANCEL_PUSH carry one varint. */
export function encodeVarintFrame(type: number, value: number): Buffer {
  const p = Buffer.allocUnsafe(varintLength(value));
  writeVarint(p, 0, value);
  return encodeFrame(type, p);
}

// ------------------------------------------------------------------------------------------------ payload decoders

/**
 * SETTINGS payload (§7.2.4): identifier/value pairs. A pair cut off by the end of the frame is H3_FRAME_ERROR
 * (§7.1); an identifier sent twice or an HTTP/2 identifier is H3_SETTINGS_ERROR (§7.2.4, §7.2.4.1).
 */
export function decodeSettings(payload: Buffer): Map<number, number> {
  const r = new Reader(payload);
  const out = new Map<number, number>();
  try {
    while (!r.atEnd()) {
      const id = r.varint();
      const value = r.varint();
      if (isReservedH2Setting(id)) throw new H3Error(E.H3_SETTINGS_ERROR, `HTTP/2 setting 0x${id.toString(16)} in SETTINGS`);
      if (out.has(id)) throw new H3Error(E.H3_SETTINGS_ERROR, `setting 0x${id.toString(16)} sent twice`);
      out.set(id, value);
    }
  } catch (e) {
    if (e instanceof DecodeError) throw new H3Error(E.H3_FRAME_ERROR, 'SETTINGS frame ends inside a setting');
    throw e;
  }
  return out;
}

/** The single varint of GOAWAY, MAX_PUSH_ID or CANCEL_PUSH; anything short or extra is H3_FRAME_ERROR (§7.1). */
export function decodeVarintPayload(payload: Buffer, what: string): number {
  const r = new Reader(payload);
  let v: number;
  try {
    v = r.varint();
  } catch {
    throw new H3Error(E.H3_FRAME_ERROR, `${what} frame too short`);
  }
  if (!r.atEnd()) throw new H3Error(E.H3_FRAME_ERROR, `${what} frame has extra bytes`);
  return v;
}

/** PRIORITY_UPDATE (RFC 9218 §7.1): prioritized element id, then a Priority Field Value (ASCII). */
export function decodePriorityUpdate(payload: Buffer): { elementId: number; value: string } {
  const r = new Reader(payload);
  try {
    const elementId = r.varint();
    return { elementId, value: r.rest().toString('latin1') };
  } catch {
    throw new H3Error(E.H3_FRAME_ERROR, 'PRIORITY_UPDATE frame too short');
  }
}

// ------------------------------------------------------------------------------------------------ incremental reader

export type FrameEvent =
  /** A piece of a DATA frame's payload; `last` on the piece that completes the frame (an empty DATA frame gives one empty piece). */
  | { kind: 'data'; chunk: Buffer; last: boolean }
  /** A complete frame of a known type other than DATA. */
  | { kind: 'frame'; type: number; payload: Buffer }
  /** An unknown or GREASE frame started; its payload is skipped. */
  | { kind: 'unknown'; type: number };

export interface FrameReaderOptions {
  /** Largest payload buffered for a known non-DATA frame type. Default 64 KiB. */
  maxFramePayload?: (type: number) => number;
}

const EMPTY = Buffer.alloc(0);
const DEFAULT_MAX_PAYLOAD = 64 * 1024;

const enum St {
  Type,
  Length,
  Data,
  Buffered,
  Skip,
}

export class FrameReader {
  private readonly q: Buffer[] = [];
  private qOff = 0;
  private avail = 0;
  private st = St.Type;
  private type = 0;
  private remaining = 0;
  private length = 0;
  // varint spanning chunks
  private readonly vbuf = Buffer.alloc(8);
  private vlen = 0;
  private vneed = 0;
  // a buffered frame assembled from several chunks
  private acc: Buffer | null = null;
  private accLen = 0;
  private readonly maxPayload: (type: number) => number;

  constructor(opts: FrameReaderOptions = {}) {
    this.maxPayload = opts.maxFramePayload ?? (() => DEFAULT_MAX_PAYLOAD);
  }

  /** Adds stream bytes (kept by reference, not copied). */
  push(chunk: Buffer): void {
    if (chunk.length === 0) return;
    this.q.push(chunk);
    this.avail += chunk.length;
  }

  /** Bytes pushed but not yet handed out. */
  get buffered(): number {
    return this.avail;
  }

  /** The payload length declared by the frame the last event belongs to (for traces: a DATA frame's size). */
  get frameLength(): number {
    return this.length;
  }

  /** True when positioned between frames. */
  get atFrameBoundary(): boolean {
    return this.st === St.Type && this.vlen === 0;
  }

  /** The stream ended cleanly: a truncated last frame is H3_FRAME_ERROR (§7.1). */
  finish(): void {
    if (!this.atFrameBoundary || this.avail > 0) throw new H3Error(E.H3_FRAME_ERROR, 'stream ended inside a frame');
  }

  /** The next event, or null when more bytes are needed. Throws H3Error on a protocol violation. */
  next(): FrameEvent | null {
    for (;;) {
      switch (this.st) {
        case St.Type: {
          const t = this.readVarint();
          if (t < 0) return null;
          if (RESERVED_H2_FRAME_TYPES.has(t)) {
            throw new H3Error(E.H3_FRAME_UNEXPECTED, `HTTP/2 frame type 0x${t.toString(16)} is reserved in HTTP/3`);
          }
          this.type = t;
          this.st = St.Length;
          break;
        }
        case St.Length: {
          const len = this.readVarint();
          if (len < 0) return null;
          this.remaining = len;
          this.length = len;
          const t = this.type;
          if (t === FrameType.DATA) {
            this.st = St.Data;
            if (len === 0) {
              this.st = St.Type;
              return { kind: 'data', chunk: EMPTY, last: true };
            }
          } else if (KNOWN_FRAME_TYPES.has(t)) {
            if (len > this.maxPayload(t)) {
              throw new H3Error(E.H3_EXCESSIVE_LOAD, `frame type 0x${t.toString(16)} of ${len} bytes is over our limit`, 'stream');
            }
            this.st = St.Buffered;
            this.acc = null;
            this.accLen = 0;
          } else {
            this.st = len === 0 ? St.Type : St.Skip;
            return { kind: 'unknown', type: t };
          }
          break;
        }
        case St.Data: {
          if (this.avail === 0) return null;
          const chunk = this.take(this.remaining);
          this.remaining -= chunk.length;
          const last = this.remaining === 0;
          if (last) this.st = St.Type;
          return { kind: 'data', chunk, last };
        }
        case St.Buffered: {
          const len = this.remaining;
          if (len === 0) {
            this.st = St.Type;
            return { kind: 'frame', type: this.type, payload: EMPTY };
          }
          if (this.acc === null && this.q.length && this.q[0].length - this.qOff >= len) {
            // The whole payload is in the current chunk: a view, no copy.
            const payload = this.take(len);
            this.st = St.Type;
            return { kind: 'frame', type: this.type, payload };
          }
          if (this.avail === 0) return null;
          if (this.acc === null) this.acc = Buffer.allocUnsafe(len);
          while (this.avail > 0 && this.accLen < len) {
            const piece = this.take(len - this.accLen);
            piece.copy(this.acc, this.accLen);
            this.accLen += piece.length;
          }
          if (this.accLen < len) return null;
          const payload = this.acc;
          this.acc = null;
          this.st = St.Type;
          return { kind: 'frame', type: this.type, payload };
        }
        case St.Skip: {
          while (this.avail > 0 && this.remaining > 0) this.remaining -= this.take(this.remaining).length;
          if (this.remaining > 0) return null;
          this.st = St.Type;
          break;
        }
      }
    }
  }

  /** Up to max bytes from the head chunk, as a view. */
  private take(max: number): Buffer {
    const c = this.q[0];
    const n = Math.min(max, c.length - this.qOff);
    const out = c.subarray(this.qOff, this.qOff + n);
    this.qOff += n;
    this.avail -= n;
    if (this.qOff >= c.length) {
      this.q.shift();
      this.qOff = 0;
    }
    return out;
  }

  /** A varint that may span chunks; -1 when incomplete. */
  private readVarint(): number {
    while (this.avail > 0) {
      const c = this.q[0];
      const b = c[this.qOff++];
      this.avail--;
      if (this.qOff >= c.length) {
        this.q.shift();
        this.qOff = 0;
      }
      if (this.vlen === 0) this.vneed = 1 << (b >>> 6);
      this.vbuf[this.vlen++] = b;
      if (this.vlen === this.vneed) {
        const v = new Reader(this.vbuf, 0, this.vlen).varint();
        this.vlen = 0;
        return v;
      }
    }
    return -1;
  }
}
