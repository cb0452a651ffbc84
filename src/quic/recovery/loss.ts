/**
 * Loss detection for all three packet number spaces (RFC 9002 §6, Appendix A): sent-packet bookkeeping,
 * acknowledgment processing with RTT sampling (§5.1), packet- and time-threshold loss (§6.1), the probe timeout with
 * exponential backoff and the client anti-deadlock rule (§6.2, A.8, A.9), persistent congestion (§7.6) and discarding
 * a space with its keys (§6.4). Sans-I/O: the caller asks `timerDeadline` when to wake up and calls `onLossTimeout`.
 *
 * Bookkeeping is a per-space array ordered by packet number with a moving head; acknowledged and lost slots are
 * cleared in place and the dead prefix is compacted away, so each packet costs O(1) amortised plus an O(log n)
 * binary search per ACK range.
 */
import type { CongestionController } from './congestion.js';
import { GRANULARITY_MS, type RttEstimator } from './rtt.js';
import type { PnSpace } from './ack-tracker.js';

export type { PnSpace } from './ack-tracker.js';

export interface SentPacket<T> {
  pn: number;
  space: PnSpace;
  timeSent: number;
  size: number;
  ackEliciting: boolean;
  inFlight: boolean;
  info: T;
}

export interface LossDetectorOptions {
  /** The peer's max_ack_delay in ms (its transport parameter, 25 by default). */
  maxAckDelay: () => number;
  isServer: boolean;
}

export interface AckResult<T> {
  /** Newly acknowledged packets, ascending packet number (when ranges are given descending). */
  acked: SentPacket<T>[];
  /** Packets newly declared lost, ascending packet number. */
  lost: SentPacket<T>[];
}

export interface TimeoutResult<T> {
  lost: SentPacket<T>[];
  /** Probe packets to send now (ack-eliciting, bypassing the congestion window), or null. */
  probe: { space: PnSpace; count: 1 | 2 } | null;
}

/** kPacketThreshold (RFC 9002 §6.1.1). */
export const PACKET_THRESHOLD = 3;
/** kTimeThreshold (RFC 9002 §6.1.2). */
export const TIME_THRESHOLD = 9 / 8;
/** kPersistentCongestionThreshold (RFC 9002 §7.6.1). */
export const PERSISTENT_CONGESTION_THRESHOLD = 3;

/** Slot states once a packet has left the outstanding set. */
const ACKED = 1;
const GONE = 2;
/** Compact a space's arrays when at least this many dead slots precede the head (and they are half the array). */
const COMPACT_MIN = 1024;

class SpaceState<T> {
  pns: number[] = [];
  pkts: (SentPacket<T> | undefined)[] = [];
  /** 0 while outstanding, ACKED or GONE after. */
  state: number[] = [];
  /** Index of the first outstanding slot (or pkts.length). */
  head = 0;
  largestSent = -1;
  largestAcked = -1;
  /** When the earliest not-yet-lost packet becomes lost by time threshold; Infinity when none. */
  lossTime = Infinity;
  lastAckElicitingTime = -Infinity;
  ackElicitingInFlight = 0;
}

export class LossDetector<T> {
  /** Number of PTOs fired since the last acknowledgment (or key discard). */
  ptoCount = 0;
  private inFlight = 0;
  private readonly spaces: [SpaceState<T>, SpaceState<T>, SpaceState<T>] = [
    new SpaceState<T>(),
    new SpaceState<T>(),
    new SpaceState<T>(),
  ];
  /** Time the first RTT sample was taken (persistent congestion only counts packets sent after it). */
  private firstRttSampleTime = Infinity;
  /** Client: a Handshake (or later) ACK proves the server validated our address (RFC 9002 A.8). */
  private receivedHandshakeAck = false;
  /** Start of the client anti-deadlock timer while nothing ack-eliciting is in flight (RFC 9002 A.8). */
  private antiDeadlockStart: number | null = null;
  /** Scratch output of `ptoTime`. */
  private ptoSpace: PnSpace = 0;

  constructor(
    readonly rtt: RttEstimator,
    readonly cc: CongestionController,
    private readonly opts: LossDetectorOptions,
  ) {}

  /** Bytes of in-flight packets not yet acknowledged, lost or discarded. */
  get bytesInFlight(): number {
    return this.inFlight;
  }

  largestSent(space: PnSpace): number {
    return this.spaces[space].largestSent;
  }

  /** Largest packet number the peer acknowledged in `space`, -1 if none. */
  largestAcked(space: PnSpace): number {
    return this.spaces[space].largestAcked;
  }

  /** Ack-eliciting in-flight packets outstanding in `space`, or in all spaces when omitted. */
  ackElicitingInFlight(space?: PnSpace): number {
    if (space !== undefined) return this.spaces[space].ackElicitingInFlight;
    const s = this.spaces;
    return s[0].ackElicitingInFlight + s[1].ackElicitingInFlight + s[2].ackElicitingInFlight;
  }

  /** Outstanding packets of `space`, oldest first (e.g. to choose what a PTO probe retransmits). */
  *unackedPackets(space: PnSpace): Iterable<SentPacket<T>> {
    const s = this.spaces[space];
    for (let i = s.head; i < s.pkts.length; i++) {
      const p = s.pkts[i];
      if (p !== undefined) yield p;
    }
  }

  /** Record a sent packet. Packet numbers must increase within a space. */
  onPacketSent(p: SentPacket<T>): void {
    const s = this.spaces[p.space];
    if (p.pn <= s.largestSent) throw new Error(`packet number ${p.pn} not above ${s.largestSent} in space ${p.space}`);
    s.pns.push(p.pn);
    s.pkts.push(p);
    s.state.push(0);
    s.largestSent = p.pn;
    if (p.inFlight) {
      this.inFlight += p.size;
      this.cc.onPacketSent(p.size, p.timeSent);
      if (p.ackEliciting) {
        s.lastAckElicitingTime = p.timeSent;
        s.ackElicitingInFlight++;
        this.antiDeadlockStart = null;
      }
    }
  }

  /**
   * Process an ACK frame of `space` (RFC 9002 A.7). `ranges` are [smallest, largest], descending; `ackDelayMs` is the
   * decoded ACK Delay (ignored for Initial, where acknowledgments are not delayed). The caller must already have
   * rejected ranges above `largestSent(space)` with PROTOCOL_VIOLATION.
   */
  onAckReceived(
    space: PnSpace,
    ranges: readonly (readonly [number, number])[],
    ackDelayMs: number,
    now: number,
    handshakeConfirmed: boolean,
  ): AckResult<T> {
    const s = this.spaces[space];
    const acked: SentPacket<T>[] = [];
    if (space !== 0 && !this.opts.isServer) this.receivedHandshakeAck = true;
    if (ranges.length === 0) return { acked, lost: [] };

    let largestInAck = -1;
    for (let r = 0; r < ranges.length; r++) if (ranges[r][1] > largestInAck) largestInAck = ranges[r][1];
    if (largestInAck > s.largestAcked) s.largestAcked = largestInAck;

    const pns = s.pns;
    const pkts = s.pkts;
    let largestNewly: SentPacket<T> | undefined;
    let anyEliciting = false;
    const ackedInFlight: SentPacket<T>[] = [];
    for (let r = ranges.length - 1; r >= 0; r--) {
      const lo = ranges[r][0];
      const hi = ranges[r][1];
      if (s.head >= pkts.length || hi < pns[s.head]) continue;
      for (let i = this.indexOf(s, lo); i < pkts.length && pns[i] <= hi; i++) {
        const p = pkts[i];
        if (p === undefined) continue;
        this.remove(s, i, ACKED);
        acked.push(p);
        if (p.inFlight) ackedInFlight.push(p);
        if (p.ackEliciting) anyEliciting = true;
        if (largestNewly === undefined || p.pn > largestNewly.pn) largestNewly = p;
      }
    }
    if (largestNewly === undefined) return { acked, lost: [] };
    this.advanceHead(s);

    // RTT sample (RFC 9002 §5.1): the largest acknowledged is newly acknowledged and something ack-eliciting is.
    if (largestNewly.pn === largestInAck && anyEliciting) {
      const first = !this.rtt.hasSample;
      const delay = space === 0 ? 0 : ackDelayMs;
      this.rtt.update(now - largestNewly.timeSent, delay, this.opts.maxAckDelay(), handshakeConfirmed);
      if (first) this.firstRttSampleTime = now;
    }

    const lost = this.detectLost(s, now, true);
    if (lost.length > 0) {
      this.reportLost(lost, now);
      if (this.persistentCongestion) {
        this.cc.onPersistentCongestion();
        this.rtt.min = this.rtt.latest; // RFC 9002 §5.2
      }
    }
    if (ackedInFlight.length > 0) this.cc.onPacketsAcked(ackedInFlight, now);

    if (this.peerValidated(false, handshakeConfirmed)) this.ptoCount = 0;
    this.antiDeadlockStart = null;
    return { acked, lost };
  }

  /**
   * When the caller should call `onLossTimeout` (RFC 9002 A.8): the earliest time-threshold loss time, else the PTO
   * deadline, else null. A server that is blocked by the anti-amplification limit should not arm this timer.
   * `peerAddressValidated` is OR-ed with what this object knows (server role, Handshake ACK received, confirmation).
   */
  timerDeadline(
    handshakeConfirmed: boolean,
    peerAddressValidated: boolean,
    hasHandshakeKeys: boolean,
    now: number,
  ): number | null {
    const loss = this.earliestLossTime();
    if (loss !== Infinity) return loss;
    if (this.ackElicitingInFlight() === 0 && this.peerValidated(peerAddressValidated, handshakeConfirmed)) {
      this.antiDeadlockStart = null;
      return null;
    }
    const t = this.ptoTime(handshakeConfirmed, hasHandshakeKeys, now);
    return t === Infinity ? null : t;
  }

  /**
   * The loss detection timer fired (RFC 9002 A.9). Does nothing if called before `timerDeadline`. Either declares
   * time-threshold losses, or asks for PTO probes: two in the PTO space, or one anti-deadlock packet (Handshake if
   * the client has Handshake keys, else a padded Initial). Increments `ptoCount` for probes.
   */
  onLossTimeout(
    now: number,
    handshakeConfirmed: boolean,
    peerAddressValidated: boolean,
    hasHandshakeKeys: boolean,
  ): TimeoutResult<T> {
    const deadline = this.timerDeadline(handshakeConfirmed, peerAddressValidated, hasHandshakeKeys, now);
    if (deadline === null || now < deadline) return { lost: [], probe: null };

    const loss = this.earliestLossTime();
    if (loss !== Infinity) {
      const s = this.spaces[this.lossSpace];
      const lost = this.detectLost(s, now, false);
      if (lost.length > 0) this.reportLost(lost, now);
      return { lost, probe: null };
    }

    let probe: { space: PnSpace; count: 1 | 2 };
    if (this.ackElicitingInFlight() === 0) {
      probe = { space: hasHandshakeKeys ? 1 : 0, count: 1 };
    } else {
      this.ptoTime(handshakeConfirmed, hasHandshakeKeys, now);
      probe = { space: this.ptoSpace, count: 2 };
    }
    this.ptoCount++;
    this.antiDeadlockStart = now;
    return { lost: [], probe };
  }

  /**
   * Keys of `space` were discarded (RFC 9002 §6.4): forget its packets without a congestion signal, release their
   * bytes in flight and reset the PTO backoff. Returns the packets that were outstanding.
   */
  discardSpace(space: PnSpace): SentPacket<T>[] {
    const s = this.spaces[space];
    const out: SentPacket<T>[] = [];
    let bytes = 0;
    for (let i = s.head; i < s.pkts.length; i++) {
      const p = s.pkts[i];
      if (p === undefined) continue;
      out.push(p);
      if (p.inFlight) bytes += p.size;
    }
    s.pns = [];
    s.pkts = [];
    s.state = [];
    s.head = 0;
    s.lossTime = Infinity;
    s.lastAckElicitingTime = -Infinity;
    s.ackElicitingInFlight = 0;
    this.inFlight -= bytes;
    if (bytes > 0) this.cc.onPacketDiscarded(bytes);
    this.ptoCount = 0;
    this.antiDeadlockStart = null;
    return out;
  }

  // ---- internals ----

  /** Set by `detectLost` when the ACK being processed establishes persistent congestion. */
  private persistentCongestion = false;
  /** Space of the earliest loss time, set by `earliestLossTime`. */
  private lossSpace: PnSpace = 0;

  private peerValidated(callerSays: boolean, handshakeConfirmed: boolean): boolean {
    return this.opts.isServer || callerSays || handshakeConfirmed || this.receivedHandshakeAck;
  }

  private earliestLossTime(): number {
    let t = Infinity;
    for (let sp = 0; sp < 3; sp++) {
      const lt = this.spaces[sp].lossTime;
      if (lt < t) {
        t = lt;
        this.lossSpace = sp as PnSpace;
      }
    }
    return t;
  }

  /** PTO deadline and (in `ptoSpace`) its space, per RFC 9002 A.8 GetPtoTimeAndSpace. */
  private ptoTime(handshakeConfirmed: boolean, hasHandshakeKeys: boolean, now: number): number {
    const backoff = 2 ** this.ptoCount;
    let duration = (this.rtt.smoothed + Math.max(4 * this.rtt.rttvar, GRANULARITY_MS)) * backoff;
    if (this.ackElicitingInFlight() === 0) {
      // Client anti-deadlock: counted from when the timer was (re)armed.
      if (this.antiDeadlockStart === null) this.antiDeadlockStart = now;
      this.ptoSpace = hasHandshakeKeys ? 1 : 0;
      return this.antiDeadlockStart + duration;
    }
    let t = Infinity;
    this.ptoSpace = 0;
    for (let sp = 0; sp < 3; sp++) {
      const s = this.spaces[sp];
      if (s.ackElicitingInFlight === 0) continue;
      if (sp === 2) {
        if (!handshakeConfirmed) break;
        duration += this.opts.maxAckDelay() * backoff;
      }
      const cand = s.lastAckElicitingTime + duration;
      if (cand < t) {
        t = cand;
        this.ptoSpace = sp as PnSpace;
      }
    }
    return t;
  }

  /**
   * RFC 9002 A.10 DetectAndRemoveLostPackets, plus the persistent congestion test of §7.6.2 over the packets
   * declared lost here (within this space: two lost ack-eliciting packets, both sent after the first RTT sample,
   * more than the persistent congestion duration apart, with nothing acknowledged in between).
   */
  private detectLost(s: SpaceState<T>, now: number, checkPersistent: boolean): SentPacket<T>[] {
    s.lossTime = Infinity;
    this.persistentCongestion = false;
    const lost: SentPacket<T>[] = [];
    const largest = s.largestAcked;
    if (largest < 0) return lost;
    const rtt = this.rtt;
    const lossDelay = Math.max(TIME_THRESHOLD * Math.max(rtt.latest, rtt.smoothed), GRANULARITY_MS);
    const pcDuration =
      checkPersistent && rtt.hasSample
        ? rtt.pto(this.opts.maxAckDelay(), true) * PERSISTENT_CONGESTION_THRESHOLD
        : Infinity;
    let runStart = NaN;
    const pns = s.pns;
    const pkts = s.pkts;
    for (let i = s.head; i < pkts.length && pns[i] <= largest; i++) {
      const p = pkts[i];
      if (p === undefined) {
        if (s.state[i] === ACKED) runStart = NaN;
        continue;
      }
      // Compare with the same expression that sets lossTime: `now - lossDelay` can round below timeSent when the
      // timer fires exactly at timeSent + lossDelay, and the timer would then fire again and again at the same time.
      if (p.timeSent + lossDelay <= now || largest >= p.pn + PACKET_THRESHOLD) {
        this.remove(s, i, GONE);
        lost.push(p);
        if (p.ackEliciting && p.timeSent > this.firstRttSampleTime) {
          if (Number.isNaN(runStart)) runStart = p.timeSent;
          else if (p.timeSent - runStart > pcDuration) this.persistentCongestion = true;
        }
      } else {
        const t = p.timeSent + lossDelay;
        if (t < s.lossTime) s.lossTime = t;
      }
    }
    this.advanceHead(s);
    return lost;
  }

  private reportLost(lost: SentPacket<T>[], now: number): void {
    let allInFlight = true;
    for (let i = 0; i < lost.length; i++) if (!lost[i].inFlight) allInFlight = false;
    const inFlight = allInFlight ? lost : lost.filter((p) => p.inFlight);
    if (inFlight.length > 0) this.cc.onPacketsLost(inFlight, now);
  }

  /** First index at or after the head whose packet number is >= pn. */
  private indexOf(s: SpaceState<T>, pn: number): number {
    let lo = s.head;
    let hi = s.pns.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (s.pns[mid] < pn) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  }

  private remove(s: SpaceState<T>, i: number, state: number): void {
    const p = s.pkts[i]!;
    s.pkts[i] = undefined;
    s.state[i] = state;
    if (p.inFlight) {
      this.inFlight -= p.size;
      if (p.ackEliciting) s.ackElicitingInFlight--;
    }
  }

  private advanceHead(s: SpaceState<T>): void {
    let h = s.head;
    const n = s.pkts.length;
    while (h < n && s.pkts[h] === undefined) h++;
    if (h >= COMPACT_MIN && h * 2 >= n) {
      s.pns.splice(0, h);
      s.pkts.splice(0, h);
      s.state.splice(0, h);
      h = 0;
    }
    s.head = h;
  }
}
