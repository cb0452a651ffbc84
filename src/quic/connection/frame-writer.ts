/**
 * Writes frames into the payload of the packet being built and records what it carries (SentPacketContents). One
 * writer per connection, re-pointed at every packet (`reset`): building a packet creates no closures.
 */
import { frameLength, writeFrame, type Frame } from '../frame/frames.js';
import { Retransmits, SentPacketContents } from './retransmits.js';

const EMPTY = Buffer.alloc(0);

export class FrameWriter {
  buf: Buffer = EMPTY;
  /** Where the next frame goes, and the end of the room for frames. */
  off = 0;
  end = 0;
  /** What this packet carries (the record the loss detector keeps for it). */
  contents = new SentPacketContents();
  /** Something ack-eliciting was written into this packet. */
  eliciting = false;

  reset(buf: Buffer, off: number, end: number, contents: SentPacketContents): void {
    this.buf = buf;
    this.off = off;
    this.end = end;
    this.contents = contents;
    this.eliciting = false;
  }

  get room(): number {
    return this.end - this.off;
  }

  /** Writes `f` if it fits, recording nothing (ACK; PATH_RESPONSE marks `eliciting` itself). False when it does not fit. */
  put(f: Frame): boolean {
    if (frameLength(f) > this.end - this.off) return false;
    this.off = writeFrame(this.buf, this.off, f);
    return true;
  }

  /**
   * Writes the control frame `f` if it fits and returns this packet's Retransmits, in which the caller marks it;
   * null when it does not fit.
   */
  control(f: Frame): Retransmits | null {
    if (frameLength(f) > this.end - this.off) return null;
    this.off = writeFrame(this.buf, this.off, f);
    this.eliciting = true;
    return (this.contents.retransmits ??= new Retransmits());
  }

  /** A one-byte PING (0x01), if there is room (ack-eliciting, not repeated when lost). */
  ping(): boolean {
    if (this.end - this.off < 1) return false;
    this.buf[this.off++] = 0x01;
    this.eliciting = true;
    return true;
  }

  /** Records the STREAM frame just written by the caller. */
  sentStream(id: number, offset: number, len: number, fin: boolean): void {
    const c = this.contents;
    if (c.streamId < 0) {
      c.streamId = id;
      c.streamOffset = offset;
      c.streamLen = len;
      c.streamFin = fin;
    } else (c.stream ??= []).push({ id, offset, len, fin });
    this.eliciting = true;
  }

  /** Records the CRYPTO frame just written by the caller. */
  sentCrypto(offset: number, len: number): void {
    (this.contents.crypto ??= []).push({ id: -1, offset, len, fin: false });
    this.eliciting = true;
  }
}
