/**
 * NewReno (RFC 9002 §7, Appendix B): slow start, recovery period with a single window reduction per period (§7.3.2),
 * congestion avoidance, persistent congestion (§7.6.2) and underutilisation (§7.8: the window grows only while the
 * sender fills it). What it shares with CUBIC is in window.ts.
 */
import type { CongestionController, CongestionPacket } from './congestion.js';
import { WindowController } from './window.js';

/** kLossReductionFactor (RFC 9002 §7.3.2). */
const LOSS_REDUCTION_FACTOR = 0.5;

export class NewReno extends WindowController {
  /** Bytes acknowledged in congestion avoidance not yet turned into window growth. */
  private avoidanceAcked = 0;

  constructor(maxDatagramSize = 1200) {
    super(maxDatagramSize);
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
    this.endRound(lastSent, now);
  }

  override onPersistentCongestion(): void {
    super.onPersistentCongestion();
    this.avoidanceAcked = 0;
  }

  protected reduce(): void {
    this.ssthresh = Math.floor(this.cwnd * LOSS_REDUCTION_FACTOR);
    this.cwnd = Math.max(this.ssthresh, this.minWindow);
    this.avoidanceAcked = 0;
  }
}

/** The default CongestionControllerFactory. */
export function newReno(maxDatagramSize: number): CongestionController {
  return new NewReno(maxDatagramSize);
}
