/**
 * The sending part of a QUIC stream (RFC 9000 §2.2, §3.1 states, §3.5 STOP_SENDING → RESET_STREAM, §4.1 stream-level
 * flow control, §4.5 final size, §13.3 retransmission of STREAM / RESET_STREAM content).
 *
 * Bookkeeping, all in stream offsets:
 *   [0, ackedUpTo)          acknowledged contiguous prefix; its Buffers are released as soon as it grows
 *   `acked` (RangeSet)      every acknowledged byte (merged, so a few ranges even for huge transfers)
 *   `lost`  (RangeSet)      sent, declared lost and not acknowledged since: retransmitted before any new data
 *   [0, sentUpTo)           ever sent; new data starts at sentUpTo
 *   [0, writtenUpTo)        written by the application
 * Written Buffers sit in a queue (kept by reference, never copied on write) found by binary search on offset.
 * Nothing here is per packet, so acks, losses and chunking stay O(log n) in the amount of buffered data.
 */
import { RangeSet } from './ranges.js';

export type SendState = 'ready' | 'send' | 'data_sent' | 'data_recvd' | 'reset_sent' | 'reset_recvd';

export interface StreamChunk {
  offset: number;
  data: Buffer;
  fin: boolean;
}

const EMPTY = Buffer.alloc(0);

export class SendStream {
  state: SendState = 'ready';
  /** RESET_STREAM to (re)send. The caller clears it (sets null) when it puts the frame in a packet. */
  pendingReset: { errorCode: number; finalSize: number } | null = null;
  /** Error code of the peer's STOP_SENDING, if one arrived (for the application's information). */
  stopSendingCode: number | null = null;

  private resetInfo: { errorCode: number; finalSize: number } | null = null;
  private maxStreamData: number;
  private blockedSentFor = -1;

  // Queue of written buffers: bufs[k] holds bytes [offs[k], offs[k] + bufs[k].length). Entries before `head` are freed.
  private bufs: (Buffer | undefined)[] = [];
  private offs: number[] = [];
  private head = 0;

  private writtenUpTo = 0;
  private sentUpTo = 0;
  private ackedUpTo = 0;
  private readonly acked = new RangeSet();
  private readonly lost = new RangeSet();
  private ended = false;
  private finSent = false;
  private finLost = false;
  private finAcked = false;

  constructor(
    readonly id: number,
    peerMaxStreamData: number,
  ) {
    this.maxStreamData = peerMaxStreamData;
  }

  /** Queues data. The Buffer is kept by reference: the caller must not modify it afterwards. */
  write(data: Buffer): void {
    if (this.ended) throw new Error(`stream ${this.id}: write after end`);
    if (this.isReset() || data.length === 0) return;
    this.bufs.push(data);
    this.offs.push(this.writtenUpTo);
    this.writtenUpTo += data.length;
  }

  /** Marks the end of the stream: a FIN follows the data written so far. */
  end(): void {
    if (this.isReset()) return;
    this.ended = true;
  }

  /** Written but not yet acknowledged (what the application should count for backpressure). */
  get bufferedBytes(): number {
    if (this.isDone()) return 0;
    return this.writtenUpTo - this.acked.totalLength; // few ranges: acks merge into the prefix
  }

  /** Bytes of written Buffers still referenced (not yet released by acknowledgements). */
  get retainedBytes(): number {
    return this.head < this.offs.length ? this.writtenUpTo - this.offs[this.head] : 0;
  }

  /** Written but never sent. */
  get unsentBytes(): number {
    return this.isReset() ? 0 : this.writtenUpTo - this.sentUpTo;
  }

  get finalSizeKnown(): boolean {
    return this.ended || this.resetInfo !== null;
  }

  /** Highest offset sent so far (the final size a RESET_STREAM would carry). */
  get highestSent(): number {
    return this.sentUpTo;
  }

  /** The peer's current stream flow-control limit. */
  get peerMaxStreamData(): number {
    return this.maxStreamData;
  }

  private isReset(): boolean {
    return this.state === 'reset_sent' || this.state === 'reset_recvd';
  }

  private isDone(): boolean {
    return this.isReset() || this.state === 'data_recvd';
  }

  /** True when nextChunk(…, connCredit) would return something (given room in the packet). */
  hasSendable(connCredit: number): boolean {
    if (this.isDone()) return false;
    if (this.lost.size > 0 || this.finLost) return true;
    const avail = this.writtenUpTo - this.sentUpTo;
    if (avail > 0) return Math.min(connCredit, this.maxStreamData - this.sentUpTo) > 0;
    return this.ended && !this.finSent;
  }

  /** New data is waiting and the stream's own credit allows it: only the connection's credit can be short. */
  waitsOnConnectionCredit(): boolean {
    return !this.isDone() && this.writtenUpTo > this.sentUpTo && this.maxStreamData > this.sentUpTo;
  }

  nextChunk(maxDataLength: number, connCredit: number): (StreamChunk & { isNew: number }) | null {
    if (this.isDone()) return null;
    const finalSize = this.writtenUpTo; // meaningful only once ended

    // 1. Retransmissions first (RFC 9000 §13.3): already counted against flow control.
    if (this.lost.size > 0 && maxDataLength > 0) {
      const s = this.lost.firstStart() as number;
      const e = Math.min(this.lost.firstEnd() as number, s + maxDataLength);
      this.lost.remove(s, e);
      const fin = this.ended && e === finalSize && !this.finAcked;
      if (fin) {
        this.finLost = false;
        this.onSent(true);
      }
      return { offset: s, data: this.slice(s, e), fin, isNew: 0 };
    }
    if (this.lost.size === 0 && this.finLost) {
      this.finLost = false;
      return { offset: finalSize, data: EMPTY, fin: true, isNew: 0 };
    }
    if (this.lost.size > 0) return null; // no room for data

    // 2. New data, limited by the packet, stream credit and connection credit.
    const avail = this.writtenUpTo - this.sentUpTo;
    const n = Math.max(0, Math.min(maxDataLength, avail, this.maxStreamData - this.sentUpTo, connCredit));
    if (n > 0) {
      const s = this.sentUpTo;
      this.sentUpTo += n;
      const fin = this.ended && this.sentUpTo === this.writtenUpTo;
      this.onSent(fin);
      return { offset: s, data: this.slice(s, s + n), fin, isNew: n };
    }
    // 3. FIN-only frame: everything sent, FIN not yet.
    if (avail === 0 && this.ended && !this.finSent) {
      this.onSent(true);
      return { offset: this.sentUpTo, data: EMPTY, fin: true, isNew: 0 };
    }
    return null;
  }

  private onSent(fin: boolean): void {
    if (fin) {
      this.finSent = true;
      this.state = 'data_sent';
    } else if (this.state === 'ready') {
      this.state = 'send';
    }
  }

  /** Bytes [start, end) of written data; a view when they lie in one written Buffer, else a copy. */
  private slice(start: number, end: number): Buffer {
    let lo = this.head;
    let hi = this.offs.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >>> 1;
      if (this.offs[mid] <= start) lo = mid;
      else hi = mid - 1;
    }
    let buf = this.bufs[lo] as Buffer;
    let bufOff = this.offs[lo];
    if (end <= bufOff + buf.length) return buf.subarray(start - bufOff, end - bufOff);
    const out = Buffer.allocUnsafe(end - start);
    let pos = start;
    let k = lo;
    while (pos < end) {
      buf = this.bufs[k] as Buffer;
      bufOff = this.offs[k];
      const from = pos - bufOff;
      const to = Math.min(buf.length, end - bufOff);
      buf.copy(out, pos - start, from, to);
      pos += to - from;
      k++;
    }
    return out;
  }

  /** The peer acknowledged a STREAM frame carrying [offset, offset + length) (and the FIN when `fin`). */
  onAck(offset: number, length: number, fin: boolean): void {
    if (this.isDone()) return;
    const end = offset + length;
    if (length > 0) {
      this.acked.add(offset, end);
      this.lost.remove(offset, end);
      if (this.acked.firstStart() === 0) {
        const upTo = this.acked.firstEnd() as number;
        if (upTo > this.ackedUpTo) {
          this.ackedUpTo = upTo;
          this.freeAcked();
        }
      }
    }
    if (fin) {
      this.finAcked = true;
      this.finLost = false;
    }
    if (this.finAcked && this.ackedUpTo >= this.writtenUpTo) {
      this.state = 'data_recvd';
      this.releaseAll();
    }
  }

  /** Drops queued Buffers wholly below ackedUpTo. */
  private freeAcked(): void {
    const bufs = this.bufs;
    while (this.head < bufs.length) {
      const b = bufs[this.head] as Buffer;
      if (this.offs[this.head] + b.length > this.ackedUpTo) break;
      bufs[this.head] = undefined;
      this.head++;
    }
    if (this.head === bufs.length) {
      // Everything written is acknowledged: empty arrays instead of a queue of freed slots (an idle stream, such as
      // an HTTP/3 control stream, then keeps none).
      this.bufs = [];
      this.offs = [];
      this.head = 0;
    } else if (this.head > 1024 && this.head * 2 > bufs.length) {
      this.bufs = bufs.slice(this.head);
      this.offs = this.offs.slice(this.head);
      this.head = 0;
    }
  }

  private releaseAll(): void {
    this.bufs = [];
    this.offs = [];
    this.head = 0;
    this.lost.clear();
    this.acked.clear();
  }

  /** A packet carrying [offset, offset + length) (and the FIN when `fin`) was declared lost. */
  onLost(offset: number, length: number, fin: boolean): void {
    if (this.isDone()) return;
    const end = Math.min(offset + length, this.sentUpTo);
    if (end > offset) {
      if (this.acked.size === 0) this.lost.add(offset, end);
      else for (const [s, e] of this.acked.gaps(offset, end)) this.lost.add(s, e);
    }
    if (fin && this.finSent && !this.finAcked) this.finLost = true;
  }

  /** MAX_STREAM_DATA from the peer (RFC 9000 §4.1: never decreases). */
  setMaxStreamData(max: number): void {
    if (max > this.maxStreamData) this.maxStreamData = max;
  }

  /**
   * When new data waits on the stream's flow-control limit and STREAM_DATA_BLOCKED hasn't been reported for that limit,
   * the limit to report; else null. After sending the frame, call markBlockedSent(limit).
   */
  blockedLimit(): number | null {
    if (this.isDone()) return null;
    if (this.writtenUpTo > this.sentUpTo && this.sentUpTo >= this.maxStreamData && this.blockedSentFor !== this.maxStreamData) {
      return this.maxStreamData;
    }
    return null;
  }

  /** New data is waiting on the stream's own flow-control limit (reported or not). */
  blockedByStreamCredit(): boolean {
    return !this.isDone() && this.writtenUpTo > this.sentUpTo && this.sentUpTo >= this.maxStreamData;
  }

  markBlockedSent(limit: number): void {
    this.blockedSentFor = limit;
    if (this.state === 'ready') this.state = 'send';
  }

  /**
   * The application abandons the stream: drops buffered data and queues RESET_STREAM whose final size is the highest
   * offset sent (RFC 9000 §3.1, §4.5). No effect once all data is acknowledged or the stream is already reset.
   */
  reset(errorCode: number): void {
    if (this.isDone()) return;
    this.state = 'reset_sent';
    this.resetInfo = { errorCode, finalSize: this.sentUpTo };
    this.pendingReset = { ...this.resetInfo };
    this.writtenUpTo = this.sentUpTo;
    this.releaseAll();
    this.finLost = false;
  }

  /** The packet carrying our RESET_STREAM was lost: queue it again (same code and final size). */
  onResetLost(): void {
    if (this.state === 'reset_sent' && this.resetInfo) this.pendingReset = { ...this.resetInfo };
  }

  onResetAcked(): void {
    if (this.state === 'reset_sent') {
      this.state = 'reset_recvd';
      this.pendingReset = null;
    }
  }

  /** The peer's STOP_SENDING: answer with RESET_STREAM carrying its error code (RFC 9000 §3.5). */
  onStopSending(errorCode: number): void {
    if (this.stopSendingCode === null) this.stopSendingCode = errorCode;
    this.reset(errorCode);
  }
}
