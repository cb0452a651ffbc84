/**
 * Lays out the packets of one datagram and seals them (RFC 9000 §12.2 coalescing, §17 headers; RFC 9001 §5 packet
 * protection). A packet is begun (`begin`: header room reserved, the frame area returned), its frames are written by
 * the caller, and it is finished (`finish`: sample padding, room for the AEAD tag). Headers are written and packets
 * sealed only when the datagram is complete (`seal`), so that the last packet can still be padded (`padLast`). The
 * records of laid-out packets are pooled: building a datagram allocates nothing here.
 */
import { Level, QUIC_V1 } from '../types.js';
import type { DirectionKeys } from '../crypto/keys.js';
import { PacketType, writeLongHeader, writeShortHeader, sealPacket, packetNumberLength } from '../packet/header.js';
import type { Space } from './space.js';

export const AEAD_TAG = 16;
const EMPTY = Buffer.alloc(0);

interface Unsealed {
  start: number;
  pn: number;
  pnLen: number;
  headerLen: number;
  level: Level;
  payloadEnd: number;
  keys: DirectionKeys | null;
}

/** Tracing only: called for each packet after its header is written and before it is sealed (plaintext frames). */
export type OnPacketLaidOut = (buf: Buffer, start: number, headerLen: number, payloadEnd: number, level: Level, pn: number) => void;

export class PacketBuilder {
  constructor(private readonly onPacket: OnPacketLaidOut | null = null) {}

  private readonly pool: Unsealed[] = [];
  private count = 0;
  // The packet begun and not finished yet.
  private space: Space | null = null;
  private start = 0;
  private pnLen = 0;
  private headerLen = 0;
  /** The frame area of the packet begun: [payloadStart, payloadEnd). */
  payloadStart = 0;
  payloadEnd = 0;

  /**
   * Begins a packet at `off` for space `sp` (which has write keys) in at most `room` bytes, with connection IDs of
   * these lengths. False when fewer than 8 bytes of frames would fit. Frames go into [payloadStart, payloadEnd).
   */
  begin(off: number, sp: Space, room: number, dcidLen: number, scidLen: number, largestAcked: number): boolean {
    const pnLen = packetNumberLength(sp.nextPn, largestAcked);
    const headerLen =
      sp.level !== Level.OneRtt ? 1 + 4 + 1 + dcidLen + 1 + scidLen + (sp.level === Level.Initial ? 1 : 0) + 2 + pnLen : 1 + dcidLen + pnLen;
    const payloadStart = off + headerLen;
    const payloadEnd = off + room - AEAD_TAG;
    if (payloadEnd - payloadStart < 8) return false;
    this.space = sp;
    this.start = off;
    this.pnLen = pnLen;
    this.headerLen = headerLen;
    this.payloadStart = payloadStart;
    this.payloadEnd = payloadEnd;
    return true;
  }

  /**
   * Finishes the packet begun, its frames ending at `pEnd`: the packet number is taken. Returns the end of the packet
   * (tag included), or null when no frame was written (the packet is abandoned, its number not used).
   */
  finish(buf: Buffer, pEnd: number): number | null {
    const sp = this.space!;
    this.space = null;
    if (pEnd === this.payloadStart) return null;
    // The header-protection sample needs 4 bytes after the packet number start beyond pnLen (RFC 9001 §5.4.2).
    while (pEnd - this.payloadStart + this.pnLen < 4) buf[pEnd++] = 0;
    let p = this.pool[this.count];
    if (p === undefined) {
      p = { start: 0, pn: 0, pnLen: 0, headerLen: 0, level: Level.Initial, payloadEnd: 0, keys: null };
      this.pool.push(p);
    }
    this.count++;
    p.start = this.start;
    p.pn = sp.nextPn;
    p.pnLen = this.pnLen;
    p.headerLen = this.headerLen;
    p.level = sp.level;
    p.payloadEnd = pEnd;
    p.keys = sp.write;
    sp.nextPn++;
    return pEnd + AEAD_TAG;
  }

  /** Pads the last laid-out packet with PADDING frames so the datagram ends at `padTo`. Returns the new end. */
  padLast(buf: Buffer, padTo: number): number {
    const p = this.pool[this.count - 1];
    const newPayloadEnd = padTo - AEAD_TAG;
    if (newPayloadEnd > p.payloadEnd) {
      buf.fill(0, p.payloadEnd, newPayloadEnd);
      p.payloadEnd = newPayloadEnd;
    }
    return p.payloadEnd + AEAD_TAG;
  }

  /** Writes the headers of the laid-out packets and seals them; the builder is then empty. */
  seal(buf: Buffer, dcid: Buffer, scid: Buffer, keyPhase: 0 | 1): void {
    for (let i = 0; i < this.count; i++) {
      const p = this.pool[i];
      let pnOffset: number;
      if (p.level !== Level.OneRtt) {
        const type = p.level === Level.Initial ? PacketType.Initial : PacketType.Handshake;
        const payloadLength = p.payloadEnd - (p.start + p.headerLen) + AEAD_TAG; // after the packet number
        ({ pnOffset } = writeLongHeader(buf, p.start, type, QUIC_V1, dcid, scid, p.level === Level.Initial ? EMPTY : null, payloadLength, p.pn, p.pnLen));
      } else {
        ({ pnOffset } = writeShortHeader(buf, p.start, dcid, p.pn, p.pnLen, keyPhase));
      }
      if (this.onPacket) this.onPacket(buf, p.start, p.headerLen, p.payloadEnd, p.level, p.pn);
      sealPacket(buf, p.start, pnOffset, p.pnLen, p.payloadEnd, p.pn, p.keys!);
      p.keys = null;
    }
    this.count = 0;
  }
}
