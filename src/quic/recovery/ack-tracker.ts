/**
 * Received packet numbers of one packet number space and when to acknowledge them (RFC 9000 §13.2):
 * duplicate detection (§12.3), ACK generation timing (§13.2.1, §13.2.2), ACK ranges (§13.2.3, §19.3) and
 * pruning of ranges once the peer has seen our ACK (§13.2.4).
 */

/** Packet number space: 0 Initial, 1 Handshake, 2 Application Data (same numbering as `Level`). */
export type PnSpace = 0 | 1 | 2;

/** Most ACK ranges remembered; older ranges are forgotten and their packets treated as duplicates. */
export const MAX_ACK_RANGES = 32;

/** Ack-eliciting packets received before an ACK is sent without waiting for max_ack_delay (§13.2.2). */
const ACK_ELICITING_THRESHOLD = 2;

export interface AckFrameData {
  /** Descending, each [smallest, largest] inclusive. */
  ranges: [number, number][];
  /** ACK Delay field value: microseconds shifted right by the ack delay exponent. */
  ackDelay: number;
}

export class AckTracker {
  /** Largest packet number received, -1 if none. */
  largestReceived = -1;
  /** Time the largest packet number was received (for the ACK Delay field). */
  private largestReceivedTime = 0;
  /** Received ranges in ascending order, inclusive bounds (parallel arrays). */
  private starts: number[] = [];
  private ends: number[] = [];
  /** Packets below this number are no longer tracked and are treated as duplicates. */
  private floor = 0;
  /** Ack-eliciting packets received since the last ACK was sent. */
  private unackedEliciting = 0;
  /** When an ACK must be sent, or null when none is owed. */
  private deadline: number | null = null;

  constructor(
    readonly space: PnSpace,
    /** Our own max_ack_delay in ms (the value we advertised). */
    readonly maxAckDelay: number,
  ) {}

  /** True if `pn` was already received (or is too old to tell): the packet must be dropped (RFC 9000 §12.3). */
  isDuplicate(pn: number): boolean {
    if (pn < this.floor) return true;
    for (let i = this.starts.length - 1; i >= 0; i--) {
      if (pn > this.ends[i]) return false;
      if (pn >= this.starts[i]) return true;
    }
    return false;
  }

  /**
   * Record a successfully processed packet. Duplicates are ignored. Ack-eliciting packets arm the ACK deadline:
   * immediately in Initial/Handshake, after every second one or on reordering in Application Data, otherwise
   * within max_ack_delay.
   */
  onPacketReceived(pn: number, ackEliciting: boolean, now: number): void {
    if (!this.insert(pn)) return;
    const prevLargest = this.largestReceived;
    const reordered = prevLargest >= 0 && (pn < prevLargest || pn > prevLargest + 1);
    if (pn > prevLargest) {
      this.largestReceived = pn;
      this.largestReceivedTime = now;
    }
    if (!ackEliciting) return;
    this.unackedEliciting++;
    let due: number;
    if (this.space !== 2 || reordered || this.unackedEliciting >= ACK_ELICITING_THRESHOLD) due = now;
    else due = now + this.maxAckDelay;
    if (this.deadline === null || due < this.deadline) this.deadline = due;
  }

  /** Time by which an ACK should be sent (<= now means immediately), null when no ACK is owed. */
  ackDeadline(): number | null {
    return this.deadline;
  }

  /** True when an ACK is owed and its deadline has passed. */
  needsAck(now: number): boolean {
    return this.deadline !== null && now >= this.deadline;
  }

  /** ACK frame contents for everything remembered, or null if nothing was received. */
  buildAck(now: number, ackDelayExponent: number): AckFrameData | null {
    const n = this.starts.length;
    if (n === 0) return null;
    const ranges: [number, number][] = new Array(n);
    for (let i = 0; i < n; i++) ranges[i] = [this.starts[n - 1 - i], this.ends[n - 1 - i]];
    const delayMs = now - this.largestReceivedTime;
    const ackDelay = delayMs > 0 ? Math.floor((delayMs * 1000) / 2 ** ackDelayExponent) : 0;
    return { ranges, ackDelay };
  }

  /** Call after an ACK frame built by `buildAck` was sent. */
  onAckSent(): void {
    this.unackedEliciting = 0;
    this.deadline = null;
  }

  /**
   * The peer acknowledged a packet carrying our ACK whose Largest Acknowledged was `largestAckedInOurAck`:
   * stop acknowledging (and stop accepting) packet numbers up to it (RFC 9000 §13.2.4).
   */
  onAckOfAckReceived(largestAckedInOurAck: number): void {
    const limit = largestAckedInOurAck + 1;
    if (limit <= this.floor) return;
    this.floor = limit;
    let drop = 0;
    while (drop < this.starts.length && this.ends[drop] < limit) drop++;
    if (drop > 0) {
      this.starts.splice(0, drop);
      this.ends.splice(0, drop);
    }
    if (this.starts.length > 0 && this.starts[0] < limit) this.starts[0] = limit;
  }

  /** Number of ranges currently remembered. */
  get rangeCount(): number {
    return this.starts.length;
  }

  /** Adds pn to the ranges; false if it was already there. */
  private insert(pn: number): boolean {
    if (pn < this.floor) return false;
    if (this.starts.length === 0) {
      // One-element arrays: a push onto an empty array reserves 17 slots, and most spaces need one range.
      this.starts = [pn];
      this.ends = [pn];
      return true;
    }
    const starts = this.starts;
    const ends = this.ends;
    let n = starts.length;
    // Fast paths: next in sequence, or a new range above everything.
    if (pn > ends[n - 1] + 1) {
      starts.push(pn);
      ends.push(pn);
      n++;
    } else if (pn === ends[n - 1] + 1) {
      ends[n - 1] = pn;
      return true;
    } else {
      // Find the last range starting at or below pn.
      let i = n - 1;
      while (i >= 0 && starts[i] > pn) i--;
      if (i >= 0 && pn <= ends[i]) return false;
      const joinsBelow = i >= 0 && ends[i] + 1 === pn;
      const joinsAbove = i + 1 < n && starts[i + 1] - 1 === pn;
      if (joinsBelow && joinsAbove) {
        ends[i] = ends[i + 1];
        starts.splice(i + 1, 1);
        ends.splice(i + 1, 1);
        n--;
      } else if (joinsBelow) {
        ends[i] = pn;
      } else if (joinsAbove) {
        starts[i + 1] = pn;
      } else {
        starts.splice(i + 1, 0, pn);
        ends.splice(i + 1, 0, pn);
        n++;
      }
    }
    if (n > MAX_ACK_RANGES) {
      // Forget the oldest range; its packets can no longer be told apart from duplicates.
      this.floor = ends[0] + 1;
      starts.shift();
      ends.shift();
    }
    return true;
  }
}
