/**
 * What the connection does with packets declared lost, and with the loss detection timer (RFC 9002 §6): the loss
 * detector (recovery/loss.ts) decides which packets are lost, tells the congestion controller and tests for
 * persistent congestion; here each lost packet's contents go back to be sent again (RFC 9000 §13.3): stream and
 * CRYPTO ranges to their send buffers, control frames merged into the pending Retransmits, a PMTU probe's size to
 * path MTU discovery. On a probe timeout it arms the PTO probes (the next packets of that space bypass the congestion
 * window) and requeues what the oldest unacknowledged packets carried, so the probes repeat data (RFC 9002 §6.2.4).
 */
import { Level, type Role } from '../types.js';
import type { ConnectionStats } from '../connection-types.js';
import type { LossDetector, PnSpace, SentPacket } from '../recovery/loss.js';
import type { ConnectionTracer } from '../tracer.js';
import type { Retransmits, SentPacketContents } from './retransmits.js';
import type { Streams } from './streams.js';
import type { ConnectionIds } from './cids.js';
import type { PathMtu } from './pmtu.js';
import type { Space } from './space.js';

export class LossHandler {
  /** PTO probes still to send per space (RFC 9002 §6.2.4). */
  private readonly probes = [0, 0, 0];

  constructor(
    private readonly role: Role,
    private readonly spaces: readonly Space[],
    private readonly loss: LossDetector<SentPacketContents>,
    private readonly pending: Retransmits,
    private readonly streams: Streams,
    private readonly cids: ConnectionIds,
    private readonly pmtu: PathMtu,
    private readonly stats: ConnectionStats,
    private readonly trace: ConnectionTracer | null,
  ) {}

  /** Some PTO probe is due: the congestion window and the pacer do not hold the next datagram back. */
  get probing(): boolean {
    const p = this.probes;
    return p[0] + p[1] + p[2] > 0;
  }

  probeDue(space: Level): boolean {
    return this.probes[space] > 0;
  }

  /** An ack-eliciting packet of `space` was sent: one probe fewer is due there. */
  onAckElicitingSent(space: Level): void {
    if (this.probes[space] > 0) this.probes[space]--;
  }

  /** An ACK acknowledged something new: the probes are no longer needed. */
  onNewlyAcked(): void {
    this.probes[0] = this.probes[1] = this.probes[2] = 0;
  }

  /** The keys of `space` are gone: nothing more is sent there. */
  onSpaceDiscarded(space: Level): void {
    this.probes[space] = 0;
  }

  /** Packets the loss detector declared lost (by an ACK or the timer): each one's contents are sent again. */
  onPacketsLost(lost: readonly SentPacket<SentPacketContents>[], now: number): void {
    for (const p of lost) {
      this.stats.packetsLost++;
      if (this.trace) this.trace.packetLost(p.space, p.pn, p.info.pmtuProbe > 0, now);
      this.requeue(p);
    }
  }

  /**
   * The loss detection timer fired (RFC 9002 A.9): time-threshold losses, or a probe timeout. `handshakeDone`: the
   * TLS handshake is complete (a client's anti-deadlock probe before that resends its handshake data).
   */
  onTimeout(now: number, handshakeConfirmed: boolean, peerAddressValidated: boolean, handshakeDone: boolean): void {
    const hasHandshakeKeys = !!this.spaces[Level.Handshake].write;
    const r = this.loss.onLossTimeout(now, handshakeConfirmed, peerAddressValidated, hasHandshakeKeys);
    this.onPacketsLost(r.lost, now);
    if (this.trace) this.trace.metrics(now);
    if (!r.probe) return;
    this.probes[r.probe.space] = r.probe.count;
    // Probe with data that is still unacknowledged: the oldest in-flight packets of that space.
    let n = 0;
    for (const p of this.loss.unackedPackets(r.probe.space)) {
      if (n++ >= 2) break;
      this.requeue(p);
    }
    if (this.role === 'client' && !handshakeDone && r.probe.space !== Level.OneRtt) {
      // Client anti-deadlock probe: resend what we have for the handshake.
      const sp = this.spaces[r.probe.space];
      if (sp.write && sp.cryptoSend.highestSent > 0) sp.cryptoSend.onLost(0, sp.cryptoSend.highestSent, false);
    }
  }

  /** Puts what a lost (or probed) packet carried back in the send queues. */
  private requeue(p: SentPacket<SentPacketContents>): void {
    const c = p.info;
    if (c.crypto !== null) {
      const sp = this.spaces[p.space as PnSpace];
      if (!sp.discarded) for (const r of c.crypto) sp.cryptoSend.onLost(r.offset, r.len, false);
    }
    if (c.retransmits !== null) this.pending.mergeLost(c.retransmits, this.streams, this.cids);
    if (c.streamId >= 0) this.streams.onStreamLost(c.streamId, c.streamOffset, c.streamLen, c.streamFin);
    if (c.stream !== null) for (const r of c.stream) this.streams.onStreamLost(r.id, r.offset, r.len, r.fin);
    if (c.pmtuProbe > 0) this.pmtu.onProbeLost(c.pmtuProbe);
  }
}
