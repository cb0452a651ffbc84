/**
 * What NewReno (new-reno.ts) and CUBIC (cubic.ts) share on the RFC 9002 frame: bytes in flight, the initial and
 * minimum windows (§7.2), recovery periods with one reduction each (§7.3.2), persistent congestion collapsing to the
 * minimum window (§7.6.2), and the rule that a window the sender does not fill must not grow (§7.8). A subclass
 * says how the window grows on acknowledgements (onPacketsAcked, using windowUsed() and endRound()) and how it is
 * reduced when a recovery period starts (reduce()).
 */
import type { CongestionController, CongestionPacket } from './congestion.js';

export abstract class WindowController implements CongestionController {
  cwnd: number;
  bytesInFlight = 0;
  ssthresh = Infinity;
  /**
   * Forces the window not to grow (§7.8), whatever the bytes in flight say. Without it, the window grows only when the
   * sender used it: see `peakInFlight`.
   */
  appLimited = false;
  minWindow: number;
  readonly initialWindow: number;
  /** Start of the current recovery period; -Infinity when not in recovery. */
  protected recoveryStart = -Infinity;
  /**
   * The most bytes in flight in the current round trip and in the one before. RFC 9002 §7.8: a window the sender does
   * not fill must not grow (an application sending at 20 MB/s would otherwise push it to tens of megabytes, and a later
   * burst would go out unchecked). Like Linux's tcp_is_cwnd_limited: in slow start the window grows while the sender
   * filled at least half of it, in congestion avoidance while it came within three datagrams of it. A round ends when
   * a packet sent after its start is acknowledged; the previous round counts too, so the acknowledgements of a full
   * flight still grow the window as they drain it.
   */
  private peakInFlight = 0;
  private previousPeak = 0;
  private roundStart = -Infinity;

  constructor(public maxDatagramSize: number) {
    this.initialWindow = Math.min(10 * maxDatagramSize, Math.max(14720, 2 * maxDatagramSize));
    this.minWindow = 2 * maxDatagramSize;
    this.cwnd = this.initialWindow;
  }

  abstract onPacketsAcked(packets: readonly CongestionPacket[], now: number): void;

  /** A recovery period starts (§7.3.2): the algorithm's window reduction. */
  protected abstract reduce(): void;

  /** The path allows larger datagrams now (PMTU discovery, RFC 9000 §14.3): window arithmetic uses the new size. */
  setMaxDatagramSize(bytes: number): void {
    this.maxDatagramSize = bytes;
    this.minWindow = 2 * bytes;
    if (this.cwnd < this.minWindow) this.cwnd = this.minWindow;
  }

  onPacketSent(bytes: number, _now: number): void {
    this.bytesInFlight += bytes;
    if (this.bytesInFlight > this.peakInFlight) this.peakInFlight = this.bytesInFlight;
  }

  /** The sender used the window since the previous acknowledgement (§7.8). */
  protected windowUsed(): boolean {
    if (this.appLimited) return false;
    const peak = Math.max(this.peakInFlight, this.previousPeak);
    return this.cwnd < this.ssthresh ? 2 * peak >= this.cwnd : peak + 3 * this.maxDatagramSize >= this.cwnd;
  }

  /** After an acknowledgement whose newest packet was sent at `lastSent`: a round has passed if that was in this one. */
  protected endRound(lastSent: number, now: number): void {
    if (lastSent >= this.roundStart) {
      this.previousPeak = this.peakInFlight;
      this.peakInFlight = this.bytesInFlight;
      this.roundStart = now;
    }
  }

  onPacketsLost(packets: readonly CongestionPacket[], now: number): void {
    let lastSent = -Infinity;
    for (let i = 0; i < packets.length; i++) {
      const p = packets[i];
      this.release(p.size);
      if (p.timeSent > lastSent) lastSent = p.timeSent;
    }
    // §7.3.2: reduce once per recovery period, the period starting now.
    if (packets.length > 0 && !this.inRecovery(lastSent)) {
      this.recoveryStart = now;
      this.reduce();
    }
  }

  onPersistentCongestion(): void {
    this.cwnd = this.minWindow;
    this.recoveryStart = -Infinity;
  }

  onPacketDiscarded(bytes: number): void {
    this.release(bytes);
  }

  canSend(bytes: number): boolean {
    return this.bytesInFlight + bytes <= this.cwnd;
  }

  inRecovery(sentTime: number): boolean {
    return sentTime <= this.recoveryStart;
  }

  protected release(bytes: number): void {
    this.bytesInFlight = this.bytesInFlight > bytes ? this.bytesInFlight - bytes : 0;
  }
}
