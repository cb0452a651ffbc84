/**
 * QPACK decoder (RFC 9204 §2.2, §3, §4.3 encoder instructions in, §4.4 decoder instructions out, §4.5 field
 * lines). Sans-I/O: the HTTP/3 layer feeds the peer's encoder-stream bytes and each HEADERS frame payload, and sends
 * what takeDecoderStreamData() returns on our decoder stream.
 *
 * Limits against decompression bombs: decoded field section size (RFC 9114 §4.2.2 accounting), Huffman output, the
 * number of blocked streams and the bytes they hold, and a dynamic table capacity no larger than what we advertised.
 */

import { DecodeError } from '../../util/varint.js';
import { QpackError, QpackErrorCode, QpackFieldSectionTooLargeError, type Header } from './errors.js';
import {
  ByteCursor,
  ByteSink,
  INCOMPLETE,
  minDecodedLength,
  readPrefixInt,
  readStringBody,
  readStringHeader,
  type StringHeader,
} from './primitives.js';
import { STATIC_TABLE, STATIC_TABLE_SIZE } from './static-table.js';

export interface QpackDecoderOptions {
  /** SETTINGS_QPACK_MAX_TABLE_CAPACITY we advertise. */
  maxTableCapacity: number;
  /** SETTINGS_QPACK_BLOCKED_STREAMS we advertise. */
  maxBlockedStreams: number;
  /** Local limit on the decoded size of one field section (sum of name + value + 32). Default 64 KiB. */
  maxFieldSectionSize?: number;
  /** Total encoded bytes kept for blocked streams. Default 1 MiB. */
  maxBlockedBytes?: number;
}

interface BlockedSection {
  ric: number;
  bytes: Buffer;
}

const ENTRY_OVERHEAD = 32;
const FAILED = QpackErrorCode.QPACK_DECOMPRESSION_FAILED;
const ENC_ERR = QpackErrorCode.QPACK_ENCODER_STREAM_ERROR;

export class QpackDecoder {
  readonly maxTableCapacity: number;
  readonly maxBlockedStreams: number;
  readonly maxFieldSectionSize: number;
  readonly maxBlockedBytes: number;
  private readonly maxEntries: number;

  // Dynamic table as a ring indexed by absolute index modulo ringSize. It holds floor(capacity / 32) entries and
  // grows when the encoder raises the capacity, so advertising a large maximum costs nothing until it is used.
  private ringSize = 1;
  private names: string[] = [''];
  private values: string[] = [''];
  private capacity = 0;
  private size = 0;
  /** Total number of insertions (the Insert Count). */
  private insertCount = 0;
  /** Absolute index of the oldest entry still in the table. */
  private dropped = 0;
  /** What the encoder knows we received: Section Acknowledgments and Insert Count Increments sent so far. */
  private acknowledged = 0;

  private encoderPending: Buffer | null = null;
  private readonly blocked = new Map<number, BlockedSection>();
  /** Sections that were blocked and can now be decoded, waiting for decode()/resume(). */
  private readonly ready = new Map<number, BlockedSection>();
  private blockedBytes = 0;
  private readonly out = new ByteSink(64);
  private readonly str: StringHeader = { huffman: false, length: 0 };

  constructor(opts: QpackDecoderOptions) {
    this.maxTableCapacity = opts.maxTableCapacity;
    this.maxBlockedStreams = opts.maxBlockedStreams;
    this.maxFieldSectionSize = opts.maxFieldSectionSize ?? 64 * 1024;
    this.maxBlockedBytes = opts.maxBlockedBytes ?? 1024 * 1024;
    this.maxEntries = Math.floor(this.maxTableCapacity / ENTRY_OVERHEAD);
  }

  /** Number of insertions so far (for tests and diagnostics). */
  get totalInserts(): number {
    return this.insertCount;
  }

  get tableSize(): number {
    return this.size;
  }

  get blockedStreamCount(): number {
    return this.blocked.size;
  }

  // ---------------------------------------------------------------- encoder stream (RFC 9204 §4.3)

  /**
   * Bytes from the peer's encoder stream. Partial instructions are kept for the next call. Returns the ids of
   * streams whose blocked field section can now be decoded (call decode() again or resume()).
   */
  onEncoderStreamData(data: Buffer): number[] {
    let buf = data;
    if (this.encoderPending) {
      buf = Buffer.concat([this.encoderPending, data]);
      this.encoderPending = null;
    }
    const cur = new ByteCursor(buf, 0, buf.length);
    const before = this.insertCount;
    try {
      while (cur.pos < cur.end) {
        const start = cur.pos;
        if (!this.encoderInstruction(cur)) {
          cur.pos = start;
          break;
        }
      }
    } catch (e) {
      if (e instanceof QpackError) throw e;
      if (e instanceof DecodeError) throw new QpackError(ENC_ERR, `encoder stream: ${e.message}`);
      throw e;
    }
    if (cur.pos < cur.end) this.encoderPending = Buffer.from(buf.subarray(cur.pos));
    if (this.insertCount === before || this.blocked.size === 0) return [];
    const unblocked: number[] = [];
    for (const [id, b] of this.blocked) {
      if (b.ric <= this.insertCount) {
        unblocked.push(id);
        this.blocked.delete(id);
        this.ready.set(id, b);
      }
    }
    return unblocked;
  }

  /** Parses one instruction; returns false (without side effects) when it is incomplete. */
  private encoderInstruction(cur: ByteCursor): boolean {
    const first = cur.buf[cur.pos];
    if (first & 0x80) {
      // Insert With Name Reference: 1 T index(6) | value string(8)
      const isStatic = (first & 0x40) !== 0;
      const idx = readPrefixInt(cur, 6);
      if (idx === INCOMPLETE) return false;
      let name: string;
      if (isStatic) {
        if (idx >= STATIC_TABLE_SIZE) throw new QpackError(ENC_ERR, `static index ${idx} out of range`);
        name = STATIC_TABLE[idx][0];
      } else {
        name = this.names[this.relativeToRing(idx)];
      }
      const value = this.readInsertString(cur, 8, name.length);
      if (value === undefined) return false;
      this.insert(name, value);
      return true;
    }
    if (first & 0x40) {
      // Insert With Literal Name: 01 H len(5) name | value string(8)
      if (!readStringHeader(cur, 6, this.str)) return false;
      this.checkInsertLength(this.str, 0);
      if (cur.end - cur.pos < this.str.length) return false;
      const name = readStringBody(cur, this.str, this.capacity);
      const value = this.readInsertString(cur, 8, name.length);
      if (value === undefined) return false;
      this.insert(name, value);
      return true;
    }
    if (first & 0x20) {
      // Set Dynamic Table Capacity: 001 capacity(5)
      const cap = readPrefixInt(cur, 5);
      if (cap === INCOMPLETE) return false;
      if (cap > this.maxTableCapacity) {
        throw new QpackError(ENC_ERR, `capacity ${cap} above our maximum ${this.maxTableCapacity}`);
      }
      this.capacity = cap;
      this.evictTo(cap);
      this.growRing(Math.floor(cap / ENTRY_OVERHEAD));
      return true;
    }
    // Duplicate: 000 index(5)
    const idx = readPrefixInt(cur, 5);
    if (idx === INCOMPLETE) return false;
    const slot = this.relativeToRing(idx);
    this.insert(this.names[slot], this.values[slot]);
    return true;
  }

  /** Ring slot of an encoder-stream relative index (0 = newest). */
  private relativeToRing(rel: number): number {
    if (rel >= this.insertCount - this.dropped) {
      throw new QpackError(ENC_ERR, `relative index ${rel} outside the dynamic table`);
    }
    return (this.insertCount - 1 - rel) % this.ringSize;
  }

  /** Rejects a string that cannot fit in the table whatever it decodes to, before waiting for or decoding it. */
  private checkInsertLength(h: StringHeader, otherLen: number): void {
    if (minDecodedLength(h) + otherLen + ENTRY_OVERHEAD > this.capacity) {
      throw new QpackError(ENC_ERR, `entry larger than the table capacity ${this.capacity}`);
    }
  }

  private readInsertString(cur: ByteCursor, prefixBits: number, nameLen: number): string | undefined {
    if (!readStringHeader(cur, prefixBits, this.str)) return undefined;
    this.checkInsertLength(this.str, nameLen);
    if (cur.end - cur.pos < this.str.length) return undefined;
    return readStringBody(cur, this.str, this.capacity);
  }

  private insert(name: string, value: string): void {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.capacity) throw new QpackError(ENC_ERR, `entry of ${size} bytes above capacity ${this.capacity}`);
    // name/value are already copied out, so evicting the entry they came from is safe (RFC 9204 §3.2.2).
    this.evictTo(this.capacity - size);
    if (this.names.length !== this.ringSize) {
      // The ring of an empty table is made by its first insertion (growRing left it unallocated).
      this.names = new Array<string>(this.ringSize).fill('');
      this.values = new Array<string>(this.ringSize).fill('');
    }
    const slot = this.insertCount % this.ringSize;
    this.names[slot] = name;
    this.values[slot] = value;
    this.insertCount++;
    this.size += size;
  }

  private growRing(entries: number): void {
    if (entries <= this.ringSize) return;
    if (this.insertCount === this.dropped) {
      // Empty table: nothing to copy, and nothing to allocate until an entry is inserted (an encoder that sets a
      // capacity and never inserts costs no ring).
      this.ringSize = entries;
      return;
    }
    const names = new Array<string>(entries).fill('');
    const values = new Array<string>(entries).fill('');
    for (let abs = this.dropped; abs < this.insertCount; abs++) {
      names[abs % entries] = this.names[abs % this.ringSize];
      values[abs % entries] = this.values[abs % this.ringSize];
    }
    this.names = names;
    this.values = values;
    this.ringSize = entries;
  }

  private evictTo(limit: number): void {
    while (this.size > limit) {
      const slot = this.dropped % this.ringSize;
      this.size -= this.names[slot].length + this.values[slot].length + ENTRY_OVERHEAD;
      this.names[slot] = '';
      this.values[slot] = '';
      this.dropped++;
    }
  }

  // ---------------------------------------------------------------- field sections (RFC 9204 §4.5)

  /**
   * Decodes the field section of a HEADERS frame on streamId. Returns 'blocked' when it needs inserts not yet
   * received; the bytes are kept (copied) and the stream id comes back from onEncoderStreamData() once decodable.
   * Then call decode(streamId, sameBytes) or resume(streamId).
   */
  decode(streamId: number, fieldSection: Buffer): Header[] | 'blocked' {
    const ready = this.ready.get(streamId);
    if (ready) {
      this.ready.delete(streamId);
      this.blockedBytes -= ready.bytes.length;
    } else {
      const b = this.blocked.get(streamId);
      if (b) {
        if (b.ric > this.insertCount) return 'blocked';
        this.blocked.delete(streamId);
        this.blockedBytes -= b.bytes.length;
      }
    }
    return this.decodeSection(streamId, fieldSection);
  }

  /** Decodes the section kept for a stream that onEncoderStreamData() reported as unblocked. */
  resume(streamId: number): Header[] | 'blocked' {
    const b = this.ready.get(streamId) ?? this.blocked.get(streamId);
    if (!b) throw new Error(`no blocked field section for stream ${streamId}`);
    return this.decode(streamId, b.bytes);
  }

  private decodeSection(streamId: number, fs: Buffer): Header[] | 'blocked' {
    const cur = new ByteCursor(fs, 0, fs.length);
    let ric: number;
    let base: number;
    try {
      const enc = readPrefixInt(cur, 8);
      if (enc === INCOMPLETE || cur.pos >= cur.end) throw new QpackError(FAILED, 'truncated field section prefix');
      ric = this.requiredInsertCount(enc);
      const negative = (fs[cur.pos] & 0x80) !== 0;
      const delta = readPrefixInt(cur, 7);
      if (delta === INCOMPLETE) throw new QpackError(FAILED, 'truncated field section prefix');
      if (negative) {
        if (delta + 1 > ric) throw new QpackError(FAILED, 'negative Base');
        base = ric - delta - 1;
      } else {
        base = ric + delta;
      }
    } catch (e) {
      throw asFailed(e);
    }

    if (ric > this.insertCount) {
      if (this.blocked.size >= this.maxBlockedStreams) {
        throw new QpackError(FAILED, `more than ${this.maxBlockedStreams} blocked streams`);
      }
      if (this.blockedBytes + fs.length > this.maxBlockedBytes) {
        throw new QpackError(FAILED, `blocked field sections exceed ${this.maxBlockedBytes} bytes`);
      }
      this.blocked.set(streamId, { ric, bytes: Buffer.from(fs) });
      this.blockedBytes += fs.length;
      return 'blocked';
    }

    const headers = this.decodeLines(streamId, cur, ric, base);
    if (ric > 0) {
      this.out.int(7, 0x80, streamId); // Section Acknowledgment
      if (ric > this.acknowledged) this.acknowledged = ric;
    }
    return headers;
  }

  /** RFC 9204 §4.5.1.1. */
  private requiredInsertCount(encoded: number): number {
    if (encoded === 0) return 0;
    const fullRange = 2 * this.maxEntries;
    if (encoded > fullRange) throw new QpackError(FAILED, 'invalid Required Insert Count');
    const maxValue = this.insertCount + this.maxEntries;
    const maxWrapped = Math.floor(maxValue / fullRange) * fullRange;
    let ric = maxWrapped + encoded - 1;
    if (ric > maxValue) {
      if (ric <= fullRange) throw new QpackError(FAILED, 'invalid Required Insert Count');
      ric -= fullRange;
    }
    if (ric === 0) throw new QpackError(FAILED, 'invalid Required Insert Count');
    return ric;
  }

  private decodeLines(streamId: number, cur: ByteCursor, ric: number, base: number): Header[] {
    const headers: Header[] = [];
    let budget = this.maxFieldSectionSize;
    try {
      while (cur.pos < cur.end) {
        const first = cur.buf[cur.pos];
        let name: string;
        let value: string;
        if (first & 0x80) {
          // Indexed Field Line: 1 T index(6)
          const idx = mustInt(readPrefixInt(cur, 6));
          if (first & 0x40) {
            if (idx >= STATIC_TABLE_SIZE) throw new QpackError(FAILED, `static index ${idx} out of range`);
            [name, value] = STATIC_TABLE[idx];
          } else {
            const slot = this.fieldSlot(base - 1 - idx, ric);
            name = this.names[slot];
            value = this.values[slot];
          }
        } else if (first & 0x40) {
          // Literal Field Line With Name Reference: 01 N T index(4) | value string(8)
          const idx = mustInt(readPrefixInt(cur, 4));
          if (first & 0x10) {
            if (idx >= STATIC_TABLE_SIZE) throw new QpackError(FAILED, `static index ${idx} out of range`);
            name = STATIC_TABLE[idx][0];
          } else {
            name = this.names[this.fieldSlot(base - 1 - idx, ric)];
          }
          value = this.readFieldString(streamId, cur, 8, budget - name.length - ENTRY_OVERHEAD);
        } else if (first & 0x20) {
          // Literal Field Line With Literal Name: 001 N H len(3) name | value string(8)
          name = this.readFieldString(streamId, cur, 4, budget - ENTRY_OVERHEAD);
          value = this.readFieldString(streamId, cur, 8, budget - name.length - ENTRY_OVERHEAD);
        } else if (first & 0x10) {
          // Indexed Field Line With Post-Base Index: 0001 index(4)
          const idx = mustInt(readPrefixInt(cur, 4));
          const slot = this.fieldSlot(base + idx, ric);
          name = this.names[slot];
          value = this.values[slot];
        } else {
          // Literal Field Line With Post-Base Name Reference: 0000 N index(3) | value string(8)
          const idx = mustInt(readPrefixInt(cur, 3));
          name = this.names[this.fieldSlot(base + idx, ric)];
          value = this.readFieldString(streamId, cur, 8, budget - name.length - ENTRY_OVERHEAD);
        }
        budget -= name.length + value.length + ENTRY_OVERHEAD;
        if (budget < 0) throw new QpackFieldSectionTooLargeError(streamId, this.maxFieldSectionSize);
        headers.push([name, value]);
      }
    } catch (e) {
      throw asFailed(e);
    }
    return headers;
  }

  /** Ring slot of a field-line reference, checked against the table and the Required Insert Count (§2.2.3). */
  private fieldSlot(abs: number, ric: number): number {
    if (abs < this.dropped || abs >= ric) {
      throw new QpackError(FAILED, `dynamic reference ${abs} outside the table or beyond Required Insert Count`);
    }
    return abs % this.ringSize;
  }

  /** Reads a string whose decoded length must stay within `room`, rejecting it before decoding when it cannot. */
  private readFieldString(streamId: number, cur: ByteCursor, prefixBits: number, room: number): string {
    const h = this.str;
    if (!readStringHeader(cur, prefixBits, h)) throw new QpackError(FAILED, 'truncated field line');
    if (minDecodedLength(h) > room) throw new QpackFieldSectionTooLargeError(streamId, this.maxFieldSectionSize);
    if (cur.end - cur.pos < h.length) throw new QpackError(FAILED, 'truncated field line');
    try {
      return readStringBody(cur, h, Math.max(0, room));
    } catch (e) {
      // A Huffman string that decodes longer than the room left is a size problem, not corruption.
      if (e instanceof DecodeError && e.message.includes('too long')) {
        throw new QpackFieldSectionTooLargeError(streamId, this.maxFieldSectionSize);
      }
      throw e;
    }
  }

  // ---------------------------------------------------------------- decoder stream (RFC 9204 §4.4)

  /**
   * The stream was reset or abandoned before all its field sections were decoded. Drops any blocked section and
   * queues a Stream Cancellation (omitted when our maximum table capacity is 0, as §2.2.2.2 allows): we cannot know
   * whether a section we never saw referenced the table.
   */
  cancelStream(streamId: number): void {
    const b = this.blocked.get(streamId) ?? this.ready.get(streamId);
    if (b) {
      this.blocked.delete(streamId);
      this.ready.delete(streamId);
      this.blockedBytes -= b.bytes.length;
    }
    if (this.maxTableCapacity > 0) this.out.int(6, 0x40, streamId);
  }

  /** Decoder-stream bytes to send: Section Acknowledgments, Stream Cancellations, then an Insert Count Increment
   *  covering inserts not yet acknowledged. */
  takeDecoderStreamData(): Buffer | null {
    if (this.insertCount > this.acknowledged) {
      this.out.int(6, 0x00, this.insertCount - this.acknowledged);
      this.acknowledged = this.insertCount;
    }
    return this.out.take();
  }
}

function mustInt(v: number): number {
  if (v === INCOMPLETE) throw new QpackError(FAILED, 'truncated field line');
  return v;
}

function asFailed(e: unknown): unknown {
  if (e instanceof QpackError) return e;
  if (e instanceof DecodeError) return new QpackError(FAILED, `field section: ${e.message}`);
  return e;
}
