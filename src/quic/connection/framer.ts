/**
 * Chooses the frames of one packet (as quic-go's framer and packet packer do): an ACK when one is due, then, if the
 * congestion controller and pacer allow it, CRYPTO data, the pending control frames (HANDSHAKE_DONE, PATH_RESPONSE,
 * PING, then stream credit, connection IDs) and STREAM frames, a PING for a probe that found nothing else, and a
 * piggybacked ACK in whatever room is left (RFC 9000 §13.2, §12.4; RFC 9002 §6.2.4). It writes through the
 * connection's FrameWriter, so choosing frames creates no closures.
 */
import { Level, type Role } from '../types.js';
import { writeFrame, type Frame } from '../frame/frames.js';
import type { FrameWriter } from './frame-writer.js';
import type { Retransmits } from './retransmits.js';
import type { Streams } from './streams.js';
import type { ConnectionIds } from './cids.js';
import type { Space } from './space.js';

export class Framer {
  constructor(
    private readonly role: Role,
    /** Our ack_delay_exponent (the ACK Delay field's unit). */
    private readonly ackDelayExponent: number,
    private readonly pending: Retransmits,
    private readonly streams: Streams,
    private readonly cids: ConnectionIds,
  ) {}

  /**
   * Writes the frames for one packet of space `sp` with `w`. `probe`: a PTO probe is due in this space (it must be
   * ack-eliciting). Returns whether anything ack-eliciting was written.
   */
  fill(sp: Space, w: FrameWriter, congestionOk: boolean, probe: boolean, now: number): boolean {
    let eliciting = false;
    // ACK first, whenever one is due or we are sending anything else (piggybacked).
    const wantAck = sp.acks.needsAck(now);
    if (wantAck) this.writeAck(sp, w, now);

    if (congestionOk) {
      this.fillEliciting(sp, w, now);
      eliciting = w.eliciting; // only what fillEliciting writes is ack-eliciting
      if (probe && !eliciting && w.ping()) eliciting = true;
      if (!wantAck && eliciting && sp.acks.ackDeadline() !== null && w.room >= 16) {
        // Piggyback a pending ACK in whatever room the data left.
        this.writeAck(sp, w, now);
      }
    }
    return eliciting;
  }

  private writeAck(sp: Space, w: FrameWriter, now: number): void {
    // Built only when written: most packets of a bulk sender carry no ACK.
    const ack = sp.acks.largestReceived >= 0 ? sp.acks.buildAck(now, this.ackDelayExponent) : null;
    if (!ack) return;
    const f: Frame = { type: 'ack', ranges: ack.ranges, ackDelay: sp.level === Level.OneRtt ? ack.ackDelay : 0 };
    if (!w.put(f)) return;
    w.contents.ackLargest = ack.ranges[0][1];
    sp.acks.onAckSent();
  }

  private fillEliciting(sp: Space, w: FrameWriter, now: number): void {
    // CRYPTO
    while (w.room > 16) {
      const room = w.room - 1 - 8 - 4; // type + offset varint (<=8) + length varint (<=4)
      const ch = sp.cryptoSend.nextChunk(room, Number.MAX_SAFE_INTEGER);
      if (!ch || ch.data.length === 0) break;
      w.off = writeFrame(w.buf, w.off, { type: 'crypto', offset: ch.offset, data: ch.data });
      w.sentCrypto(ch.offset, ch.data.length);
    }
    const pending = this.pending;
    if (sp.level !== Level.OneRtt) {
      if (pending.ping && w.ping()) pending.ping = false;
      return;
    }
    if (pending.handshakeDone && this.role === 'server') {
      const r = w.control({ type: 'handshake_done' });
      if (r) {
        r.handshakeDone = true;
        pending.handshakeDone = false;
      }
    }
    while (pending.pathResponses.length) {
      if (!w.put({ type: 'path_response', data: pending.pathResponses[0] })) break;
      w.eliciting = true; // ack-eliciting but not repeated
      pending.pathResponses.shift();
    }
    if (pending.ping && w.ping()) pending.ping = false;
    this.streams.writeCreditFrames(w, now);
    this.cids.writeFrames(w);
    this.streams.writeStreamFrames(w);
  }
}
