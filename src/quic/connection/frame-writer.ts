/**
 * Writes frames into the payload of the packet being built and records what each carried. One writer per connection,
 * re-pointed at every packet (`reset`): building a packet creates no closures.
 */
import { frameLength, writeFrame, type Frame } from '../frame/frames.js';
import type { SentFrame } from './retransmits.js';

const EMPTY = Buffer.alloc(0);

export class FrameWriter {
  buf: Buffer = EMPTY;
  /** Where the next frame goes, and the end of the room for frames. */
  off = 0;
  end = 0;
  /** What this packet carries (the list the loss detector keeps for it). */
  sent: SentFrame[] = [];

  reset(buf: Buffer, off: number, end: number, sent: SentFrame[]): void {
    this.buf = buf;
    this.off = off;
    this.end = end;
    this.sent = sent;
  }

  get room(): number {
    return this.end - this.off;
  }

  /** Writes `f` if it fits and records `rec` (when not null). False when it does not fit. */
  put(f: Frame, rec: SentFrame | null): boolean {
    if (frameLength(f) > this.end - this.off) return false;
    this.off = writeFrame(this.buf, this.off, f);
    if (rec) this.sent.push(rec);
    return true;
  }

  /** A one-byte PING (0x01), if there is room; recorded as `ping`. */
  ping(): boolean {
    if (this.end - this.off < 1) return false;
    this.buf[this.off++] = 0x01;
    this.sent.push(PING);
    return true;
  }
}

/** Records of frames with no fields are shared. */
export const PING: SentFrame = { k: 'ping' };
