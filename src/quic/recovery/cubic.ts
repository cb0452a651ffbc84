/**
 * CUBIC (RFC 9438) on the RFC 9002 frame: slow start and recovery periods as in RFC 9002 §7.3 (one window
 * reduction per period, §7.3.2), persistent congestion collapsing to the minimum window (§7.6.2), and no growth
 * while the sender does not fill the window (§7.8); window.ts has what it shares with new-reno.ts. In congestion
 * avoidance the window follows W_cubic(t) = C * (t - K)^3 + W_max (§4.2), or the Reno-friendly estimate W_est when
 * that is larger (§4.3); a loss multiplies the window by beta_cubic = 0.7 (§4.6) and, with fast convergence (§4.7),
 * lowers W_max further when the window had not regained the previous W_max. Sizes are bytes, times milliseconds; the
 * RFC's formulas count segments and seconds, so the curve here is C * S * (t - K)^3 + W_max with S the maximum
 * datagram size.
 */
import type { CongestionController, CongestionPacket, RttView } from './congestion.js';
import { WindowController } from './window.js';

/** C (RFC 9438 §5.1): segments per second cubed. */
export const CUBIC_C = 0.4;
/** beta_cubic (RFC 9438 §4.6, §5.1). */
export const CUBIC_BETA = 0.7;
/** alpha_cubic = 3 * (1 - beta) / (1 + beta) (RFC 9438 §4.3): W_est's growth per window acknowledged, in segments. */
export const CUBIC_ALPHA = (3 * (1 - CUBIC_BETA)) / (1 + CUBIC_BETA);

/** Without an RTT estimate (unit tests), the target looks this far ahead: RFC 9002's initial RTT. */
const DEFAULT_RTT: RttView = { smoothed: 333 };

export class Cubic extends WindowController {
  /** W_max (§4.2): the window just before the last reduction, lowered by fast convergence (§4.7); bytes. */
  wMax = 0;
  /** cwnd_prior (§4.6): the window just before the last reduction. */
  cwndPrior = 0;
  /** K (§4.2), seconds: when the curve, started at the beginning of the epoch, reaches W_max. */
  k = 0;
  /** W_est (§4.3), bytes. */
  wEst = 0;
  /** Start of the current congestion avoidance epoch (§4.2: t counts from here), ms; -Infinity: none started. */
  epochStart = -Infinity;
  /** When the last acknowledgement was processed: app-limited time is taken out of t. */
  private lastAck = -Infinity;

  constructor(
    maxDatagramSize = 1200,
    private readonly rtt: RttView = DEFAULT_RTT,
  ) {
    super(maxDatagramSize);
  }

  override setMaxDatagramSize(bytes: number): void {
    super.setMaxDatagramSize(bytes);
    // The curve's K was computed in segments of the old size: start a new epoch from the current window.
    this.epochStart = -Infinity;
  }

  /** W_cubic(t) (§4.2) in bytes, `t` in seconds since the start of the epoch. */
  wCubic(t: number): number {
    const d = t - this.k;
    return CUBIC_C * this.maxDatagramSize * d * d * d + this.wMax;
  }

  onPacketsAcked(packets: readonly CongestionPacket[], now: number): void {
    const grow = this.windowUsed();
    let lastSent = -Infinity;
    let avoidanceBytes = 0;
    for (let i = 0; i < packets.length; i++) {
      const p = packets[i];
      this.release(p.size);
      if (p.timeSent > lastSent) lastSent = p.timeSent;
      if (!grow || this.inRecovery(p.timeSent)) continue;
      if (this.cwnd < this.ssthresh) this.cwnd += p.size; // slow start (RFC 9002 §7.3.1)
      else avoidanceBytes += p.size;
    }
    if (!grow && this.epochStart > -Infinity && this.lastAck > -Infinity) {
      // RFC 9438 §5.8: the window does not grow while the application limits the sender, and that time does not
      // count in t either: the curve resumes where it stopped rather than jumping ahead.
      this.epochStart += now - this.lastAck;
    }
    if (avoidanceBytes > 0) this.congestionAvoidance(avoidanceBytes, now);
    this.lastAck = now;
    this.endRound(lastSent, now);
  }

  /** RFC 9438 §4.2-§4.5: growth for `acked` bytes acknowledged in congestion avoidance. */
  private congestionAvoidance(acked: number, now: number): void {
    const s = this.maxDatagramSize;
    if (this.epochStart === -Infinity) {
      // A new epoch: after a reduction, or after slow start ended without one (then W_max is the current window).
      this.epochStart = now;
      if (this.wMax < this.cwnd) {
        this.wMax = this.cwnd;
        this.k = 0;
      } else {
        this.k = Math.cbrt((this.wMax - this.cwnd) / (CUBIC_C * s));
      }
      this.wEst = this.cwnd;
    }
    // W_est (§4.3): alpha_cubic segments per window acknowledged; once it reaches cwnd_prior, Reno's 1 (SHOULD).
    const alpha = this.wEst >= this.cwndPrior ? 1 : CUBIC_ALPHA;
    this.wEst += (alpha * acked * s) / this.cwnd;
    const t = (now - this.epochStart) / 1000;
    if (this.wCubic(t) < this.wEst) {
      // Reno-friendly region (§4.3).
      if (this.wEst > this.cwnd) this.cwnd = this.wEst;
      return;
    }
    // Concave and convex regions (§4.4, §4.5): the target one RTT ahead, kept within [cwnd, 1.5 * cwnd].
    let target = this.wCubic(t + this.rtt.smoothed / 1000);
    if (target < this.cwnd) target = this.cwnd;
    else if (target > 1.5 * this.cwnd) target = 1.5 * this.cwnd;
    this.cwnd += ((target - this.cwnd) * acked) / this.cwnd;
  }

  override onPersistentCongestion(): void {
    super.onPersistentCongestion();
    this.epochStart = -Infinity;
  }

  /** RFC 9438 §4.6-§4.7: the reduction when a recovery period starts. */
  protected reduce(): void {
    const cwnd = this.cwnd;
    // Fast convergence (§4.7): a window that did not regain the previous W_max releases bandwidth to newer flows.
    this.wMax = cwnd < this.wMax ? (cwnd * (1 + CUBIC_BETA)) / 2 : cwnd;
    this.cwndPrior = cwnd;
    this.ssthresh = Math.max(Math.floor(cwnd * CUBIC_BETA), this.minWindow);
    this.cwnd = this.ssthresh;
    this.epochStart = -Infinity;
  }
}

/** A CongestionControllerFactory for CUBIC that reads the connection's RTT estimate. */
export function cubic(maxDatagramSize: number, rtt?: RttView): CongestionController {
  return new Cubic(maxDatagramSize, rtt);
}
