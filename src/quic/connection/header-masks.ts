/**
 * Header protection masks computed ahead for a batch of datagrams (RFC 9001 §5.4): the datagrams that arrived in one
 * event-loop turn are announced before they are received, and the masks of all their 1-RTT packets come from one
 * cipher call instead of one per packet. Only short-header datagrams belong in a batch; a datagram not received in
 * the announced order just has its mask computed alone.
 */
import type { DirectionKeys } from '../crypto/keys.js';

export class HeaderMaskBatch {
  /** The masks, 16 bytes per announced datagram. */
  masks: Buffer | null = null;
  private dgrams: readonly Buffer[] | null = null;
  private next = 0;

  /** Announces `dgrams` (short-header packets under `hp`, with connection IDs of `cidLength`). */
  announce(dgrams: readonly Buffer[], hp: DirectionKeys['hp'], cidLength: number): void {
    // Short header: first byte, DCID, then the sample 4 bytes past the pn offset (a datagram too short for one gets an
    // unused mask: it is rejected before any mask is used).
    this.masks = hp.masksAt(dgrams, 1 + cidLength + 4);
    this.dgrams = dgrams;
    this.next = 0;
  }

  /** Drops the batch (no 1-RTT read keys, or too few datagrams to be worth it). */
  clear(): void {
    this.dgrams = null;
  }

  /** For a datagram being received: the offset of its mask in `masks` if it is the next one announced, else -1. */
  take(dgram: Buffer): number {
    const pd = this.dgrams;
    if (pd === null) return -1;
    const i = this.next;
    if (pd[i] !== dgram) return -1;
    this.next = i + 1;
    if (i + 1 === pd.length) this.dgrams = null;
    return i * 16;
  }
}
