/**
 * Token-bucket pacer (RFC 9002 §7.7): spreads a congestion window over a smoothed RTT at rate
 * N * cwnd / smoothed_rtt with N = 1.25, allowing bursts of up to 10 datagrams (never more than the window).
 */

/** Pacing gain N (RFC 9002 §7.7). */
export const PACING_GAIN = 1.25;
/** Largest burst, in datagrams. */
export const MAX_BURST_PACKETS = 10;

export class Pacer {
  /** Available bytes; negative when a packet was sent on credit. */
  private tokens: number;
  private capacity: number;
  /** Bytes per ms, from the last `nextSendTime` call (0 = not pacing yet). */
  private rate = 0;
  private lastRefill = NaN;

  constructor(public maxDatagramSize: number) {
    this.capacity = MAX_BURST_PACKETS * maxDatagramSize;
    this.tokens = this.capacity;
  }

  /** Earliest time a packet of `bytes` may be sent; a value <= now means send now. */
  nextSendTime(bytes: number, cwnd: number, srtt: number, now: number): number {
    if (!(srtt > 0) || !(cwnd > 0)) return now;
    this.rate = (PACING_GAIN * cwnd) / srtt;
    this.capacity = Math.max(this.maxDatagramSize, Math.min(MAX_BURST_PACKETS * this.maxDatagramSize, cwnd));
    this.refill(now);
    if (this.tokens >= bytes) return now;
    return now + (bytes - this.tokens) / this.rate;
  }

  /** Spend tokens for a packet just sent. */
  onPacketSent(bytes: number, now: number): void {
    this.refill(now);
    this.tokens -= bytes;
  }

  private refill(now: number): void {
    if (Number.isNaN(this.lastRefill) || now < this.lastRefill) {
      this.lastRefill = now;
      if (this.tokens > this.capacity) this.tokens = this.capacity;
      return;
    }
    const t = this.tokens + (now - this.lastRefill) * this.rate;
    this.tokens = t > this.capacity ? this.capacity : t;
    this.lastRefill = now;
  }
}
