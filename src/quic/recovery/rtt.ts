/**
 * RTT estimation (RFC 9002 §5): latest, minimum and smoothed RTT plus RTT variation, and the probe timeout
 * duration derived from them (§6.2.1). All times are milliseconds.
 */

/** Timer granularity (RFC 9002 §6.1.2, kGranularity). */
export const GRANULARITY_MS = 1;

/** Initial RTT used before the first sample (RFC 9002 §6.2.2). */
export const INITIAL_RTT_MS = 333;

export class RttEstimator {
  /** Most recent raw sample (RFC 9002 §5.1); 0 before the first sample. */
  latest = 0;
  /** Exponentially weighted moving average of ack-delay-adjusted samples (§5.3). */
  smoothed: number;
  /** Mean deviation of the samples (§5.3). */
  rttvar: number;
  /** Minimum raw sample seen, never adjusted for ack delay (§5.2); 0 before the first sample. */
  min = 0;
  /** True once at least one sample was taken. */
  hasSample = false;

  constructor(readonly initialRtt = INITIAL_RTT_MS) {
    this.smoothed = initialRtt;
    this.rttvar = initialRtt / 2;
  }

  /**
   * Feed one RTT sample (RFC 9002 §5.3). `ackDelay` is the peer's reported delay (ms, already decoded); after
   * handshake confirmation it is clamped to the peer's `maxAckDelay`. The delay is only subtracted when the result
   * would not fall below min_rtt.
   */
  update(latestRtt: number, ackDelay: number, maxAckDelay: number, handshakeConfirmed: boolean): void {
    this.latest = latestRtt;
    if (!this.hasSample) {
      this.hasSample = true;
      this.min = latestRtt;
      this.smoothed = latestRtt;
      this.rttvar = latestRtt / 2;
      return;
    }
    if (latestRtt < this.min) this.min = latestRtt;
    let delay = ackDelay > 0 ? ackDelay : 0;
    if (handshakeConfirmed && delay > maxAckDelay) delay = maxAckDelay;
    let adjusted = latestRtt;
    if (latestRtt >= this.min + delay) adjusted = latestRtt - delay;
    this.rttvar = 0.75 * this.rttvar + 0.25 * Math.abs(this.smoothed - adjusted);
    this.smoothed = 0.875 * this.smoothed + 0.125 * adjusted;
  }

  /** Probe timeout without backoff (RFC 9002 §6.2.1); `maxAckDelay` is added only when `includeAckDelay`. */
  pto(maxAckDelay: number, includeAckDelay: boolean): number {
    const v = this.smoothed + Math.max(4 * this.rttvar, GRANULARITY_MS);
    return includeAckDelay ? v + maxAckDelay : v;
  }
}
