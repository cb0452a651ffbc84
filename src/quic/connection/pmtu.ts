/**
 * Path MTU discovery (RFC 9000 §14.3, DPLPMTUD as in RFC 8899): the datagram size starts at the QUIC minimum and
 * grows as probes of larger sizes are acknowledged; a size whose probe is lost three times in a row ends the search.
 * The probes themselves are built by the connection (PING + PADDING in one 1-RTT packet, not counted in flight).
 */
import type { CongestionController } from '../recovery/congestion.js';
import type { Pacer } from '../recovery/pacer.js';

/** Datagram sizes tried, in order, below the ceiling (which is tried last). */
const PMTU_STEPS = [1452, 4096, 8192, 16384];
/** RFC 8899 MAX_PROBES. */
const MAX_PROBES = 3;

export class PathMtu {
  /** The datagram size in use. */
  size: number;
  /** Sizes still to try, ascending (made when the search starts). */
  private candidates: number[] | null = null;
  /** The size of the probe in flight, or 0. */
  private probing = 0;
  private failures = 0;

  constructor(
    initial: number,
    /** Told of every increase, so that window and pacing arithmetic use the new size. */
    private readonly cc: CongestionController,
    private readonly pacer: Pacer,
  ) {
    this.size = initial;
  }

  /** The size to probe next, or 0 when none is due; `ceiling` is the smaller of our and the peer's maximum. */
  probeDue(ceiling: number): number {
    if (this.probing) return 0;
    if (this.candidates === null) {
      this.candidates = PMTU_STEPS.filter((s) => s > this.size && s < ceiling);
      if (ceiling > this.size) this.candidates.push(ceiling);
    }
    return this.candidates.length > 0 ? this.candidates[0] : 0;
  }

  onProbeSent(size: number): void {
    this.probing = size;
  }

  onProbeAcked(size: number): void {
    if (size !== this.probing) return;
    this.probing = 0;
    this.failures = 0;
    this.candidates!.shift();
    if (size > this.size) {
      this.size = size;
      this.cc.setMaxDatagramSize(size);
      this.pacer.maxDatagramSize = size;
    }
  }

  onProbeLost(size: number): void {
    if (size !== this.probing) return;
    this.probing = 0;
    // MAX_PROBES losses in a row: this size does not pass; stop searching.
    if (++this.failures >= MAX_PROBES) this.candidates = [];
  }
}
