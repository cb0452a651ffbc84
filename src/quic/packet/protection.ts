/**
 * Applying and removing packet protection on whole packets in a datagram buffer: header protection
 * (RFC 9001 §5.4.1, sample location §5.4.2) and AEAD sealing in place (§5.3).
 *
 * Layout of a protected packet:  [start .. pnOffset) header | [pnOffset .. +pnLength) packet number |
 * payload | 16-byte tag. The AAD is the unprotected header up to and including the packet number. The header
 * protection sample is the 16 bytes at pnOffset + 4, so pnLength + payload must be at least 4 bytes; senders pad
 * with PADDING frames when it is not.
 */
import { DecodeError } from '../../util/varint.js';
import { AEAD_TAG_LENGTH, HP_SAMPLE_LENGTH, type DirectionKeys, type HeaderProtector, type PacketAead } from '../crypto/keys.js';
import { decodePacketNumber } from './pn.js';

/**
 * Where a packet lies in its datagram: all that protection needs of a parsed header. PacketHeader (header.ts) has
 * these fields; this narrow view keeps protection.ts independent of the header parser (which re-exports it).
 */
export interface PacketSpan {
  /** Offset of the first byte of the packet. */
  start: number;
  /** Offset of the (protected) packet number. */
  pnOffset: number;
  /** End of the packet. */
  end: number;
}

export interface UnprotectedHeader {
  /** Full (decoded) packet number. */
  pn: number;
  pnLength: number;
  /** Key Phase bit of a short header; 0 for long headers. */
  keyPhase: 0 | 1;
  /** Offset just after the packet number: the AEAD payload runs from here to PacketSpan.end. */
  headerEnd: number;
  /** The unprotected first byte (reserved bits still to be checked by the caller after decryption). */
  firstByte: number;
}

/** The bits of the first byte covered by header protection: 4 for long headers, 5 for short headers. */
function firstByteMask(firstByte: number): number {
  return (firstByte & 0x80) !== 0 ? 0x0f : 0x1f;
}

/**
 * Removes header protection in place (first byte and packet number) and decodes the packet number against
 * largestPn (-1 when none). Throws DecodeError when the packet is too short to hold a sample. Reserved bits are not
 * checked here: a nonzero value is a PROTOCOL_VIOLATION only once the packet has authenticated. `out`: an object to
 * fill and return instead of a new one (the receive path reuses one).
 */
export function removeHeaderProtection(
  dgram: Buffer,
  h: PacketSpan,
  hp: HeaderProtector,
  largestPn: number,
  premask: Buffer | null = null,
  premaskOffset = 0,
  out: UnprotectedHeader | null = null,
): UnprotectedHeader {
  const sampleOffset = h.pnOffset + 4;
  if (sampleOffset + HP_SAMPLE_LENGTH > h.end) throw new DecodeError('packet too short for a header protection sample');
  // `premask`: the mask already computed for this packet's sample (batched by the caller), at premaskOffset.
  let mask: Buffer;
  let m = 0;
  if (premask !== null) {
    mask = premask;
    m = premaskOffset;
  } else {
    mask = hp.maskAt(dgram, sampleOffset);
  }
  const first = dgram[h.start] ^ (mask[m] & firstByteMask(dgram[h.start]));
  dgram[h.start] = first;
  const pnLength = (first & 0x03) + 1;
  const p = h.pnOffset;
  let truncated = 0;
  for (let i = 0; i < pnLength; i++) {
    const b = dgram[p + i] ^ mask[m + 1 + i];
    dgram[p + i] = b;
    truncated = truncated * 256 + b;
  }
  const pn = decodePacketNumber(largestPn, truncated, pnLength);
  const keyPhase: 0 | 1 = (first & 0x80) === 0 ? (((first >>> 2) & 1) as 0 | 1) : 0;
  if (out === null) return { pn, pnLength, keyPhase, headerEnd: p + pnLength, firstByte: first };
  out.pn = pn;
  out.pnLength = pnLength;
  out.keyPhase = keyPhase;
  out.headerEnd = p + pnLength;
  out.firstByte = first;
  return out;
}

/** Applies header protection in place to a packet whose payload is already sealed. */
export function applyHeaderProtection(buf: Buffer, start: number, pnOffset: number, pnLength: number, hp: HeaderProtector): void {
  const sampleOffset = pnOffset + 4;
  if (sampleOffset + HP_SAMPLE_LENGTH > buf.length) throw new RangeError('packet too short for a header protection sample');
  const mask = hp.maskAt(buf, sampleOffset);
  buf[start] ^= mask[0] & firstByteMask(buf[start]);
  for (let i = 0; i < pnLength; i++) buf[pnOffset + i] ^= mask[1 + i];
}

/**
 * Seals a packet written in buf (header at start, packet number at pnOffset, plaintext payload up to payloadEnd):
 * AEAD in place with AAD = buf[start, pnOffset + pnLength), tag at payloadEnd, then header protection. Returns the
 * packet end (payloadEnd + 16). The caller guarantees pnLength + payload >= 4 bytes (pad with PADDING frames) and
 * room for the tag; both are asserted. For long headers the Length field must already count the tag.
 */
export function sealPacket(
  buf: Buffer,
  start: number,
  pnOffset: number,
  pnLength: number,
  payloadEnd: number,
  pn: number,
  keys: DirectionKeys,
): number {
  if (payloadEnd - pnOffset < 4) throw new RangeError('packet number + payload must be at least 4 bytes (add PADDING)');
  const end = keys.aead.sealInPlace(pn, buf, start, pnOffset + pnLength, payloadEnd);
  applyHeaderProtection(buf, start, pnOffset, pnLength, keys.hp);
  return end;
}

/**
 * Decrypts the payload of a packet whose header protection was removed. Returns the plaintext frames, or null
 * when authentication fails. The datagram is left as it was (see PacketAead.openInPlace for the in-place form).
 */
export function openPayload(dgram: Buffer, h: PacketSpan, u: UnprotectedHeader, aead: PacketAead): Buffer | null {
  if (h.end - u.headerEnd < AEAD_TAG_LENGTH) return null;
  return aead.open(u.pn, dgram.subarray(h.start, u.headerEnd), dgram.subarray(u.headerEnd, h.end));
}
