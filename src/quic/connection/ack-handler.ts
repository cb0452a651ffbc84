/**
 * ACK frames received (RFC 9000 §19.3, RFC 9002 §5–§7): the ranges are checked against what was sent, the loss
 * detector finds the newly acknowledged packets, takes the RTT sample and tells the congestion controller (and
 * declares the packets the ACK shows lost, which go to the loss handler); then each acknowledged packet's contents are
 * released: stream data to the streams module, CRYPTO data to its send buffer, the ACK it carried to the ACK tracker
 * (ack of ack), a RESET_STREAM to its stream, a PMTU probe to path MTU discovery, the packet number to key update.
 * The rest of an acknowledged packet's record (its control frames) is simply dropped.
 */
import { Level } from '../types.js';
import { TransportError, TransportErrorCode as E } from '../errors.js';
import type { LossDetector, PnSpace, SentPacket } from '../recovery/loss.js';
import type { ConnectionTracer } from '../tracer.js';
import type { SentPacketContents } from './retransmits.js';
import type { Streams } from './streams.js';
import type { KeyUpdate } from './key-update.js';
import type { PathMtu } from './pmtu.js';
import type { LossHandler } from './loss-handler.js';
import type { Space } from './space.js';

export class AckHandler {
  /** Microseconds per unit of the peer's ACK Delay field: 2^ack_delay_exponent (RFC 9000 §18.2), 8 by default. */
  ackDelayUnit = 8;

  constructor(
    private readonly spaces: readonly Space[],
    private readonly loss: LossDetector<SentPacketContents>,
    private readonly losses: LossHandler,
    private readonly streams: Streams,
    private readonly keyUpdate: KeyUpdate,
    private readonly pmtu: PathMtu,
    private readonly trace: ConnectionTracer | null,
  ) {}

  /** An ACK frame of packets of `level`; `rawDelay` is its ACK Delay field. */
  onAck(ranges: [number, number][], rawDelay: number, level: Level, now: number, handshakeConfirmed: boolean): void {
    const largest = ranges[0][1];
    if (largest >= this.spaces[level].nextPn)
      throw new TransportError(E.PROTOCOL_VIOLATION, `ACK of packet ${largest} that was never sent`, 0x02);
    const delayMs = level === Level.OneRtt ? (rawDelay * this.ackDelayUnit) / 1000 : 0;
    const { acked, lost } = this.loss.onAckReceived(level as PnSpace, ranges, delayMs, now, handshakeConfirmed);
    for (const p of acked) this.onPacketAcked(p);
    this.losses.onPacketsLost(lost, now);
    if (acked.length) this.losses.onNewlyAcked();
    if (this.trace) this.trace.metrics(now);
  }

  private onPacketAcked(p: SentPacket<SentPacketContents>): void {
    const c = p.info;
    const space = this.spaces[p.space];
    if (p.space === Level.OneRtt) this.keyUpdate.onPacketAcked(p.pn);
    if (c.ackLargest >= 0) space.acks.onAckOfAckReceived(c.ackLargest);
    if (c.crypto !== null) for (const r of c.crypto) space.cryptoSend.onAck(r.offset, r.len, false);
    if (c.retransmits !== null) for (const id of c.retransmits.resets) this.streams.onResetAcked(id);
    if (c.pmtuProbe > 0) this.pmtu.onProbeAcked(c.pmtuProbe);
    if (c.streamId >= 0) this.streams.onStreamAcked(c.streamId, c.streamOffset, c.streamLen, c.streamFin);
    if (c.stream !== null) for (const r of c.stream) this.streams.onStreamAcked(r.id, r.offset, r.len, r.fin);
  }
}
