/**
 * NewReno (RFC 9002 §7, Appendix B): slow start, recovery period with a single window reduction per period (§7.3.2),
 * congestion avoidance, persistent congestion (§7.6.2) and underutilisation (§7.8: the window grows only while the sender fills it).
 */
import type { CongestionController, CongestionPacket } from './congestion.js';

/** kLossReductionFactor (RFC 9002 §7.3.2). */
const LOSS_REDUCTION_FACTOR = 0.5;

export class NewReno implements CongestionController {
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
  private recoveryStart = -Infinity;
  /** Bytes acknowledged in congestion avoidance not yet turned into window growth. */
  private avoidanceAcked = 0;
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

  constructor(public maxDatagramSize = 1200) {
    this.initialWindow = Math.min(10 * maxDatagramSize, Math.max(14720, 2 * maxDatagramSize));
    this.minWindow = 2 * maxDatagramSize;
    this.cwnd = this.initialWindow;
  }

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
  private windowUsed(): boolean {
    if (this.appLimited) return false;
    const peak = Math.max(this.peakInFlight, this.previousPeak);
    return this.cwnd < this.ssthresh ? 2 * peak >= this.cwnd : peak + 3 * this.maxDatagramSize >= this.cwnd;
  }

  onPacketsAcked(packets: readonly CongestionPacket[], now: number): void {
    const grow = this.windowUsed();
    let lastSent = -Infinity;
    for (let i = 0; i < packets.length; i++) {
      const p = packets[i];
      this.release(p.size);
      if (p.timeSent > lastSent) lastSent = p.timeSent;
      if (!grow || this.inRecovery(p.timeSent)) continue;
      if (this.cwnd < this.ssthresh) {
        this.cwnd += p.size; // slow start
      } else {
        // Congestion avoidance: one maximum datagram per window's worth of acknowledged bytes.
        this.avoidanceAcked += p.size;
        while (this.avoidanceAcked >= this.cwnd) {
          this.avoidanceAcked -= this.cwnd;
          this.cwnd += this.maxDatagramSize;
        }
      }
    }
    if (lastSent >= this.roundStart) {
      // A packet sent in the current round was acknowledged: a round trip has passed.
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
    if (packets.length > 0) this.onCongestionEvent(lastSent, now);
  }

  onPersistentCongestion(): void {
    this.cwnd = this.minWindow;
    this.recoveryStart = -Infinity;
    this.avoidanceAcked = 0;
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

  /** RFC 9002 §7.3.2: reduce once per recovery period, the period starting now. */
  private onCongestionEvent(sentTime: number, now: number): void {
    if (this.inRecovery(sentTime)) return;
    this.recoveryStart = now;
    this.ssthresh = Math.floor(this.cwnd * LOSS_REDUCTION_FACTOR);
    this.cwnd = Math.max(this.ssthresh, this.minWindow);
    this.avoidanceAcked = 0;
  }

  private release(bytes: number): void {
    this.bytesInFlight = this.bytesInFlight > bytes ? this.bytesInFlight - bytes : 0;
  }
}

/** The default CongestionControllerFactory. */
export function newReno(maxDatagramSize: number): CongestionController {
  return new NewReno(maxDatagramSize);
}
