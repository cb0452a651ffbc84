/**
 * QPACK encoder (RFC 9204 §2.1, §3, §4.3 encoder instructions out, §4.4 decoder instructions in, §4.5 field lines).
 * Sans-I/O: encode() returns the field section for a HEADERS frame; the encoder-stream bytes it needs are queued for
 * takeEncoderStreamData(), and the peer's decoder-stream bytes come back through onDecoderStreamData().
 *
 * Strategy (single pass, Base = Insert Count when the section starts, post-base indices for entries inserted while
 * encoding it):
 *  - exact static match -> indexed static;
 *  - exact dynamic match that may be referenced -> indexed dynamic;
 *  - otherwise, if the field is worth keeping and fits without evicting anything still needed, insert it and
 *    reference it when this stream may block; else a literal with a static or dynamic name reference, or a
 *    literal name.
 * An entry may be referenced if it is acknowledged (below the Known Received Count), or if this section may block:
 * the stream already has a blocking section, or fewer streams than the peer's SETTINGS_QPACK_BLOCKED_STREAMS do.
 * An entry may be evicted only when acknowledged and not referenced by an unacknowledged section (§2.1.1).
 * Credentials (authorization, cookies) are never inserted and are sent as never-indexed literals (§7.1.3).
 */

import { DecodeError } from '../../util/varint.js';
import { QpackError, QpackErrorCode, type Header } from './errors.js';
import { ByteCursor, ByteSink, INCOMPLETE, prefixIntLength, readPrefixInt, writePrefixInt } from './primitives.js';
import { staticFindExact, staticFindName } from './static-table.js';

export interface QpackEncoderOptions {
  /** Largest dynamic table we are willing to use (capped by the peer's setting). Default 4096. */
  maxTableCapacity?: number;
  /** Huffman-code strings when that is shorter. Default true. */
  huffman?: boolean;
}

interface DynamicName {
  /** Newest absolute index with this name. */
  latest: number;
  /** value -> newest absolute index with this name and value. */
  byValue: Map<string, number>;
}

interface Outstanding {
  /** Required Insert Count of the section. */
  ric: number;
  /** Lowest absolute index it references. */
  minRef: number;
}

const ENTRY_OVERHEAD = 32;
const DEC_ERR = QpackErrorCode.QPACK_DECODER_STREAM_ERROR;

/** Sent as never-indexed literals and never inserted. */
const SENSITIVE = new Set(['authorization', 'proxy-authorization', 'cookie', 'set-cookie']);
/** Values that change with nearly every message: not worth a table entry. */
const NOT_WORTH_INSERTING = new Set([
  ':path',
  'content-length',
  'date',
  'etag',
  'last-modified',
  'if-modified-since',
  'if-none-match',
  'expires',
  'age',
  'content-range',
  'range',
]);

function isLatin1(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0xff) return false;
  return true;
}

export class QpackEncoder {
  private readonly wantCapacity: number;
  private readonly huffman: boolean;
  private settingsApplied = false;
  private peerMaxEntries = 0;
  private blockedStreamsLimit = 0;
  private capacity = 0;

  // Dynamic table: ring indexed by absolute index modulo ringSize.
  private ringSize = 1;
  private names: string[] = [''];
  private values: string[] = [''];
  private size = 0;
  private insertCount = 0;
  private dropped = 0;
  private knownReceived = 0;
  private readonly byName = new Map<string, DynamicName>();

  /** Unacknowledged sections that reference the dynamic table, per stream, oldest first. */
  private readonly outstanding = new Map<number, Outstanding[]>();
  private readonly encoderStream = new ByteSink(256);
  private readonly lines = new ByteSink(512);
  private decoderPending: Buffer | null = null;

  constructor(opts: QpackEncoderOptions = {}) {
    this.wantCapacity = opts.maxTableCapacity ?? 4096;
    this.huffman = opts.huffman ?? true;
  }

  /** Peer's SETTINGS_QPACK_MAX_TABLE_CAPACITY and SETTINGS_QPACK_BLOCKED_STREAMS. Until called, no dynamic table. */
  applyPeerSettings(maxTableCapacity: number, blockedStreams: number): void {
    if (this.settingsApplied) throw new Error('QPACK peer settings applied twice');
    this.settingsApplied = true;
    this.peerMaxEntries = Math.floor(maxTableCapacity / ENTRY_OVERHEAD);
    this.blockedStreamsLimit = blockedStreams;
    const cap = Math.min(this.wantCapacity, maxTableCapacity);
    if (cap < ENTRY_OVERHEAD) return; // no entry would fit: stay silent on the encoder stream
    this.capacity = cap;
    // The ring's arrays are made by the first insertion: a connection that never inserts (most) holds none.
    this.ringSize = Math.floor(cap / ENTRY_OVERHEAD);
    this.encoderStream.int(5, 0x20, cap); // Set Dynamic Table Capacity
  }

  /** Current dynamic table capacity (0 when the dynamic table is not used). */
  get tableCapacity(): number {
    return this.capacity;
  }

  get totalInserts(): number {
    return this.insertCount;
  }

  get knownReceivedCount(): number {
    return this.knownReceived;
  }

  /** Streams whose unacknowledged sections may block the peer's decoder. */
  get blockingStreamCount(): number {
    let n = 0;
    for (const list of this.outstanding.values()) if (this.listBlocks(list)) n++;
    return n;
  }

  /** Encodes a field section for streamId (see the file comment for the strategy). */
  encode(streamId: number, headers: Header[]): Buffer {
    const lines = this.lines;
    lines.pos = 0;
    const base = this.insertCount;
    const dynamicOn = this.capacity > 0;
    let mayBlock = false;
    let protectBelow = Infinity;
    if (dynamicOn) {
      const mine = this.outstanding.get(streamId);
      mayBlock =
        this.blockedStreamsLimit > 0 &&
        ((mine !== undefined && this.listBlocks(mine)) || this.blockingStreamCount < this.blockedStreamsLimit);
      protectBelow = this.minOutstandingRef();
    }
    let ric = 0;
    let minRef = Infinity;

    for (let i = 0; i < headers.length; i++) {
      const name = headers[i][0];
      const value = headers[i][1];
      if (SENSITIVE.has(name)) {
        const s = staticFindName(name);
        if (s >= 0) {
          lines.int(4, 0x70, s); // literal, N=1, static name
        } else {
          lines.string(4, 0x30, name, this.huffman); // literal name, N=1
        }
        lines.string(8, 0, value, this.huffman);
        continue;
      }
      const s = staticFindExact(name, value);
      if (s >= 0) {
        lines.int(6, 0xc0, s);
        continue;
      }
      let dn: DynamicName | undefined;
      if (dynamicOn) {
        dn = this.byName.get(name);
        let abs = dn?.byValue.get(value) ?? -1;
        if (abs < 0 && this.worthInserting(name, value)) {
          abs = this.tryInsert(name, value, Math.min(protectBelow, minRef));
          dn = this.byName.get(name);
        }
        if (abs >= 0 && this.mayReference(abs, mayBlock)) {
          if (abs + 1 > ric) ric = abs + 1;
          if (abs < minRef) minRef = abs;
          if (abs < base) lines.int(6, 0x80, base - 1 - abs);
          else lines.int(4, 0x10, abs - base);
          continue;
        }
      }
      const sn = staticFindName(name);
      if (sn >= 0) {
        lines.int(4, 0x50, sn);
      } else if (dn !== undefined && this.mayReference(dn.latest, mayBlock)) {
        const abs = dn.latest;
        if (abs + 1 > ric) ric = abs + 1;
        if (abs < minRef) minRef = abs;
        if (abs < base) lines.int(4, 0x40, base - 1 - abs);
        else lines.int(3, 0x00, abs - base);
      } else {
        lines.string(4, 0x20, name, this.huffman);
      }
      lines.string(8, 0, value, this.huffman);
    }

    if (ric > 0) {
      let list = this.outstanding.get(streamId);
      if (!list) {
        list = [];
        this.outstanding.set(streamId, list);
      }
      list.push({ ric, minRef });
    }

    // Field section prefix (§4.5.1): Encoded Required Insert Count, then sign + Delta Base.
    let encRic = 0;
    let signFlag = 0;
    let delta = 0;
    if (ric > 0) {
      encRic = (ric % (2 * this.peerMaxEntries)) + 1;
      if (base >= ric) delta = base - ric;
      else {
        signFlag = 0x80;
        delta = ric - base - 1;
      }
    }
    const prefixLen = prefixIntLength(8, encRic) + prefixIntLength(7, delta);
    const out = Buffer.allocUnsafe(prefixLen + lines.pos);
    let off = writePrefixInt(out, 0, 8, 0, encRic);
    off = writePrefixInt(out, off, 7, signFlag, delta);
    lines.buf.copy(out, off, 0, lines.pos);
    return out;
  }

  takeEncoderStreamData(): Buffer | null {
    return this.encoderStream.take();
  }

  /**
   * Bytes from the peer's decoder stream: Section Acknowledgment, Stream Cancellation, Insert Count Increment.
   * Partial instructions are kept. Throws QpackError(QPACK_DECODER_STREAM_ERROR) on invalid ones.
   */
  onDecoderStreamData(data: Buffer): void {
    let buf = data;
    if (this.decoderPending) {
      buf = Buffer.concat([this.decoderPending, data]);
      this.decoderPending = null;
    }
    const cur = new ByteCursor(buf, 0, buf.length);
    try {
      while (cur.pos < cur.end) {
        const first = buf[cur.pos];
        if (first & 0x80) {
          const id = readPrefixInt(cur, 7);
          if (id === INCOMPLETE) break;
          this.onSectionAck(id);
        } else if (first & 0x40) {
          const id = readPrefixInt(cur, 6);
          if (id === INCOMPLETE) break;
          this.outstanding.delete(id); // Stream Cancellation
        } else {
          const inc = readPrefixInt(cur, 6);
          if (inc === INCOMPLETE) break;
          if (inc === 0) throw new QpackError(DEC_ERR, 'Insert Count Increment of 0');
          if (this.knownReceived + inc > this.insertCount) {
            throw new QpackError(DEC_ERR, 'Insert Count Increment beyond the entries inserted');
          }
          this.knownReceived += inc;
        }
      }
    } catch (e) {
      if (e instanceof DecodeError) throw new QpackError(DEC_ERR, `decoder stream: ${e.message}`);
      throw e;
    }
    if (cur.pos < cur.end) this.decoderPending = Buffer.from(buf.subarray(cur.pos));
  }

  private onSectionAck(streamId: number): void {
    const list = this.outstanding.get(streamId);
    if (!list || list.length === 0) {
      throw new QpackError(DEC_ERR, `Section Acknowledgment for stream ${streamId} with nothing outstanding`);
    }
    const o = list.shift() as Outstanding;
    if (list.length === 0) this.outstanding.delete(streamId);
    if (o.ric > this.knownReceived) this.knownReceived = o.ric;
  }

  private listBlocks(list: Outstanding[]): boolean {
    for (let i = 0; i < list.length; i++) if (list[i].ric > this.knownReceived) return true;
    return false;
  }

  private minOutstandingRef(): number {
    let min = Infinity;
    for (const list of this.outstanding.values()) {
      for (let i = 0; i < list.length; i++) if (list[i].minRef < min) min = list[i].minRef;
    }
    return min;
  }

  private mayReference(abs: number, mayBlock: boolean): boolean {
    return abs >= this.dropped && (abs < this.knownReceived || mayBlock);
  }

  private worthInserting(name: string, value: string): boolean {
    if (NOT_WORTH_INSERTING.has(name)) return false;
    return (name.length + value.length + ENTRY_OVERHEAD) * 2 <= this.capacity;
  }

  /**
   * Inserts [name, value] if room can be made by evicting only evictable entries (acknowledged and below
   * protectBelow, the lowest index an unacknowledged or in-progress section references). Returns the new absolute
   * index, or -1 when it cannot insert.
   */
  private tryInsert(name: string, value: string, protectBelow: number): number {
    const size = name.length + value.length + ENTRY_OVERHEAD;
    if (size > this.capacity) return -1;
    if (!isLatin1(name) || !isLatin1(value)) {
      throw new TypeError('QPACK strings must be latin1 (one octet per char)');
    }
    const evictLimit = Math.min(this.knownReceived, protectBelow);
    let d = this.dropped;
    let free = this.capacity - this.size;
    while (free < size) {
      if (d >= evictLimit || d >= this.insertCount) return -1;
      const slot = d % this.ringSize;
      free += this.names[slot].length + this.values[slot].length + ENTRY_OVERHEAD;
      d++;
    }
    const es = this.encoderStream;
    const sn = staticFindName(name);
    const dn = this.byName.get(name);
    if (sn >= 0) {
      es.int(6, 0xc0, sn); // Insert With Name Reference, static
    } else if (dn !== undefined && dn.latest >= d) {
      es.int(6, 0x80, this.insertCount - 1 - dn.latest); // Insert With Name Reference, dynamic (survives eviction)
    } else {
      es.string(6, 0x40, name, this.huffman); // Insert With Literal Name
    }
    es.string(8, 0, value, this.huffman);
    while (this.dropped < d) this.evictOldest();
    if (this.names.length !== this.ringSize) {
      // First insertion (the table is empty): the ring's arrays, sized once for the capacity.
      this.names = new Array<string>(this.ringSize).fill('');
      this.values = new Array<string>(this.ringSize).fill('');
    }
    const abs = this.insertCount++;
    const slot = abs % this.ringSize;
    this.names[slot] = name;
    this.values[slot] = value;
    this.size += size;
    let e = this.byName.get(name);
    if (!e) {
      e = { latest: abs, byValue: new Map() };
      this.byName.set(name, e);
    }
    e.latest = abs;
    e.byValue.set(value, abs);
    return abs;
  }

  private evictOldest(): void {
    const abs = this.dropped++;
    const slot = abs % this.ringSize;
    const name = this.names[slot];
    const value = this.values[slot];
    this.size -= name.length + value.length + ENTRY_OVERHEAD;
    const e = this.byName.get(name);
    if (e) {
      // If the newest entry with this name goes, every older one went before it.
      if (e.latest === abs) this.byName.delete(name);
      else if (e.byValue.get(value) === abs) e.byValue.delete(value);
    }
    this.names[slot] = '';
    this.values[slot] = '';
  }
}
