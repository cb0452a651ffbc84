/**
 * The receiving part of a QUIC stream (RFC 9000 §2.2 reassembly, §3.2 states, §3.5 STOP_SENDING, §4.1-4.2 stream-level
 * flow control and credit updates, §4.5 final size).
 *
 * Data is copied on arrival (so callers may hand us views into a packet buffer they reuse) unless the caller says the
 * buffer is its own and the data fills most of it (a decrypted packet: keeping the view saves a copy per packet
 * without pinning much more than the data). Only the bytes not already received are kept: duplicates and overlaps are dropped before storage, so nothing is delivered twice.
 * Stored pieces are disjoint, sorted by offset, and all lie at or above the read offset.
 *
 * Flow-control accounting: onData/onReset return how far the highest received offset grew (feed it to
 * ConnectionFlowControl.onDataReceived); drainConsumed() returns the bytes released since the last call — read by the
 * application, discarded after STOP_SENDING, or abandoned by a reset (feed it to ConnectionFlowControl.onDataConsumed).
 */
import { TransportError, TransportErrorCode } from '../errors.js';
import { RangeSet } from './ranges.js';
import { CREDIT_REMAINING } from './flow.js';

export type RecvState = 'recv' | 'size_known' | 'data_recvd' | 'data_read' | 'reset_recvd' | 'reset_read';

const STREAM_FRAME = 0x08;
const RESET_STREAM_FRAME = 0x04;

export class RecvStream {
  state: RecvState = 'recv';
  /** Application error code of the peer's RESET_STREAM, once one arrived. */
  resetCode: number | null = null;
  /** STOP_SENDING error code to (re)send. The caller clears it (sets null) when it puts the frame in a packet. */
  pendingStopSending: number | null = null;

  private limit: number;
  private windowBytes: number;
  private highest = 0;
  private finalSizeValue: number | null = null;
  private readOffset = 0;
  /** Flow-control bytes released (read, discarded or abandoned): an offset, never decreasing. */
  private consumed = 0;
  private consumedReported = 0;
  private readonly received = new RangeSet();
  private segOffs: number[] = [];
  private segBufs: (Buffer | undefined)[] = [];
  private head = 0;
  private discarding = false;
  private stopCode: number | null = null;

  constructor(
    readonly id: number,
    initialMaxStreamData: number,
  ) {
    this.limit = initialMaxStreamData;
    this.windowBytes = initialMaxStreamData;
  }

  /** Flow-control bytes released so far (read, discarded or abandoned). */
  get consumedBytes(): number {
    return this.consumed;
  }

  /** Our current advertised limit (the value of the latest MAX_STREAM_DATA, or the initial one). */
  get currentLimit(): number {
    return this.limit;
  }

  get finalSize(): number | null {
    return this.finalSizeValue;
  }

  get highestReceived(): number {
    return this.highest;
  }

  /** Offset of the next byte the application will read. */
  get readPosition(): number {
    return this.readOffset;
  }

  private isReset(): boolean {
    return this.state === 'reset_recvd' || this.state === 'reset_read';
  }

  /** Checks a frame's end offset (and FIN) against the known final size and our limit (RFC 9000 §4.5, §4.1). */
  private check(end: number, fin: boolean, frameType: number): void {
    const fs = this.finalSizeValue;
    if (fs !== null) {
      if (end > fs) {
        throw new TransportError(TransportErrorCode.FINAL_SIZE_ERROR, `stream ${this.id}: data past final size ${fs}`, frameType);
      }
      if (fin && end !== fs) {
        throw new TransportError(TransportErrorCode.FINAL_SIZE_ERROR, `stream ${this.id}: final size changed ${fs} -> ${end}`, frameType);
      }
    } else if (fin && end < this.highest) {
      throw new TransportError(
        TransportErrorCode.FINAL_SIZE_ERROR,
        `stream ${this.id}: final size ${end} below received offset ${this.highest}`,
        frameType,
      );
    }
    if (end > this.limit) {
      throw new TransportError(TransportErrorCode.FLOW_CONTROL_ERROR, `stream ${this.id}: ${end} exceeds limit ${this.limit}`, frameType);
    }
  }

  /**
   * A STREAM frame's data at `offset`. `owned`: the caller will never modify or reuse `data`'s memory, so a view of it
   * may be kept. Returns the growth of the highest received offset.
   */
  onData(offset: number, data: Buffer, fin: boolean, owned = false): number {
    const end = offset + data.length;
    this.check(end, fin, STREAM_FRAME);
    if (this.isReset()) return 0; // end <= final size == highest: nothing grows
    const growth = end > this.highest ? end - this.highest : 0;
    this.highest += growth;
    if (fin && this.finalSizeValue === null) {
      this.finalSizeValue = end;
      if (this.state === 'recv') this.state = 'size_known';
    }
    if (data.length > 0 && (this.state === 'recv' || this.state === 'size_known')) {
      if (this.discarding) {
        this.received.add(offset, end);
        this.consumed = this.highest;
      } else {
        this.store(offset, data, owned);
      }
    }
    if (this.state === 'size_known' && this.received.containsRange(0, this.finalSizeValue as number)) {
      this.state = 'data_recvd';
    }
    return growth;
  }

  private store(offset: number, data: Buffer, owned: boolean): void {
    const end = offset + data.length;
    const lastEnd = this.received.lastEnd();
    if (lastEnd === undefined || offset >= lastEnd) {
      // In order or beyond everything: one new piece, appended.
      const keep = owned && data.length * 2 >= data.buffer.byteLength;
      this.insertSegment(offset, keep ? data : Buffer.from(data));
    } else {
      for (const [s, e] of this.received.gaps(offset, end)) {
        this.insertSegment(s, Buffer.from(data.subarray(s - offset, e - offset)));
      }
    }
    this.received.add(offset, end);
  }

  private insertSegment(off: number, buf: Buffer): void {
    const offs = this.segOffs;
    const n = offs.length;
    if (n === this.head || off > offs[n - 1]) {
      offs.push(off);
      this.segBufs.push(buf);
      return;
    }
    let lo = this.head;
    let hi = n;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (offs[mid] < off) lo = mid + 1;
      else hi = mid;
    }
    offs.splice(lo, 0, off);
    this.segBufs.splice(lo, 0, buf);
  }

  private dropSegments(): void {
    this.segOffs = [];
    this.segBufs = [];
    this.head = 0;
  }

  /** The peer's RESET_STREAM. Returns the growth of the highest received offset (to the final size). */
  onReset(errorCode: number, finalSize: number): number {
    if (this.finalSizeValue !== null && finalSize !== this.finalSizeValue) {
      throw new TransportError(
        TransportErrorCode.FINAL_SIZE_ERROR,
        `stream ${this.id}: reset final size ${finalSize} != ${this.finalSizeValue}`,
        RESET_STREAM_FRAME,
      );
    }
    this.check(finalSize, true, RESET_STREAM_FRAME);
    const growth = finalSize - this.highest;
    this.highest = finalSize;
    this.finalSizeValue = finalSize;
    // All data already here (or read): keep delivering it; a repeated reset changes nothing (RFC 9000 §3.2).
    if (this.state !== 'recv' && this.state !== 'size_known') return growth;
    this.state = 'reset_recvd';
    this.resetCode = errorCode;
    this.pendingStopSending = null;
    this.dropSegments();
    this.consumed = finalSize; // unread bytes are released to connection flow control
    return growth;
  }

  /** Contiguous bytes ready for read(). */
  get readableBytes(): number {
    if (this.discarding || this.isReset()) return 0;
    if (this.received.firstStart() !== 0) return 0;
    return (this.received.firstEnd() as number) - this.readOffset;
  }

  /**
   * Reads up to maxBytes in-order bytes; null when none are ready. A view of a stored piece when one suffices, else a
   * copy joining pieces. After a reset, the first call moves the stream to 'reset_read' (the application has seen it).
   */
  read(maxBytes = Infinity): Buffer | null {
    const n = this.readLimit(maxBytes);
    if (n <= 0) return null;
    const first = this.segBufs[this.head] as Buffer;
    let out: Buffer;
    if (first.length >= n) {
      out = this.take(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let pos = 0;
      while (pos < n) {
        const piece = this.take(n - pos);
        piece.copy(out, pos);
        pos += piece.length;
      }
    }
    return out;
  }

  /** Like read() but never copies: returns at most one stored piece (or its front). */
  readChunk(maxBytes = Infinity): Buffer | null {
    const n = this.readLimit(maxBytes);
    return n > 0 ? this.take(n) : null;
  }

  /** Bytes a read of up to maxBytes returns now (0 for none), with the reset_read / data_read transitions of a read. */
  private readLimit(maxBytes: number): number {
    if (this.isReset()) {
      this.state = 'reset_read';
      return 0;
    }
    const n = Math.min(maxBytes, this.readableBytes);
    if (n <= 0) this.maybeRead();
    return n;
  }

  /** Removes up to n bytes from the front piece (which starts at readOffset). */
  private take(n: number): Buffer {
    const h = this.head;
    const buf = this.segBufs[h] as Buffer;
    let out: Buffer;
    if (buf.length <= n) {
      out = buf;
      this.segBufs[h] = undefined;
      this.head++;
      if (this.head === this.segOffs.length) {
        // Everything received has been read: empty arrays, not a queue of freed slots (idle streams keep none).
        this.segOffs = [];
        this.segBufs = [];
        this.head = 0;
      } else if (this.head > 1024 && this.head * 2 > this.segOffs.length) {
        this.segOffs = this.segOffs.slice(this.head);
        this.segBufs = this.segBufs.slice(this.head);
        this.head = 0;
      }
    } else {
      out = buf.subarray(0, n);
      this.segBufs[h] = buf.subarray(n);
      this.segOffs[h] += n;
    }
    this.readOffset += out.length;
    if (this.readOffset > this.consumed) this.consumed = this.readOffset;
    this.maybeRead();
    return out;
  }

  private maybeRead(): void {
    if (this.state === 'data_recvd' && this.readOffset === this.finalSizeValue) this.state = 'data_read';
  }

  /** FIN received and every byte read. */
  get finished(): boolean {
    return (
      (this.state === 'data_recvd' || this.state === 'data_read') && !this.discarding && this.readOffset === this.finalSizeValue
    );
  }

  /**
   * New MAX_STREAM_DATA to advertise once a quarter of the window was consumed since the last one (flow.ts
   * CREDIT_REMAINING), else null. Not needed once the final size is known (RFC 9000 §3.2). Call
   * markMaxStreamDataSent(v) when sending it.
   */
  maxStreamDataUpdate(): number | null {
    if (this.state !== 'recv') return null;
    if (this.limit - this.consumed >= this.windowBytes * CREDIT_REMAINING) return null;
    return this.consumed + this.windowBytes;
  }

  markMaxStreamDataSent(v: number): void {
    if (v > this.limit) this.limit = v;
  }

  /** The receive window future credit updates extend by. */
  get window(): number {
    return this.windowBytes;
  }

  /** Changes the receive window used for future credit updates (auto-tuning is the caller's choice). */
  setWindow(bytes: number): void {
    this.windowBytes = bytes;
  }

  /** Flow-control bytes released since the last call; pass to ConnectionFlowControl.onDataConsumed. */
  drainConsumed(): number {
    const d = this.consumed - this.consumedReported;
    this.consumedReported = this.consumed;
    return d;
  }

  /**
   * The application wants no more data: queue STOP_SENDING (while the peer may still be sending, RFC 9000 §3.5), drop
   * what is buffered and discard what still arrives; all of it still counts for flow control and is released at once.
   */
  stopSending(errorCode: number): void {
    if (this.isReset() || this.discarding) return;
    this.discarding = true;
    if (this.state === 'recv' || this.state === 'size_known') {
      this.stopCode = errorCode;
      this.pendingStopSending = errorCode;
    }
    this.dropSegments();
    if (this.highest > this.consumed) this.consumed = this.highest;
  }

  /** The packet carrying our STOP_SENDING was lost: queue it again if the peer may still be sending. */
  onStopSendingLost(): void {
    if (this.stopCode !== null && (this.state === 'recv' || this.state === 'size_known')) {
      this.pendingStopSending = this.stopCode;
    }
  }
}
