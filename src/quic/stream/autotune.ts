/**
 * Receive-window auto-tuning (the approach of quic-go and Chromium; RFC 9000 §4.2 leaves the policy to us).
 *
 * A fixed window caps a connection at window / RTT. Each time we are about to extend the peer's credit we look
 * at the epoch since the previous extension: if the application consumed more than half the window in less than
 * a few round trips' worth of time for that fraction, the window is what limits the sender, so it doubles (up to
 * `max`). A slow reader never consumes fast, so its window, and the memory a peer can make us buffer, stays small.
 */
export class WindowTuner {
  private epochStart = -1;
  private epochOffset = 0;

  constructor(
    private window: number,
    private readonly max: number,
  ) {}

  get value(): number {
    return this.window;
  }

  /** Raises the window to at least `min` (never past max); true when it grew. */
  atLeast(min: number): boolean {
    const w = Math.min(Math.max(this.window, min), Math.max(this.max, this.window));
    if (w <= this.window) return false;
    this.window = w;
    return true;
  }

  /**
   * A credit update is about to go out: `consumed` bytes released so far, at `now` (ms), with smoothed RTT `srtt`
   * (ms; 0 when there is no sample yet). Returns the window to extend by.
   */
  onCreditUpdate(consumed: number, now: number, srtt: number): number {
    const inEpoch = consumed - this.epochOffset;
    // An epoch lasts until more than half a window was consumed (credit goes out in smaller steps than that).
    if (this.epochStart >= 0 && inEpoch <= this.window / 2) return this.window;
    if (this.epochStart >= 0 && srtt > 0 && this.window < this.max) {
      // The sender got through `fraction` of the window in `now - epochStart`: faster than 2 round trips per
      // window means the window, not the path, is what paces it.
      const fraction = inEpoch / this.window;
      if (now - this.epochStart < 4 * fraction * srtt) this.window = Math.min(this.window * 2, this.max);
    }
    this.epochStart = now;
    this.epochOffset = consumed;
    return this.window;
  }
}
