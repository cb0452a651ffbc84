/**
 * QUIC packet headers (RFC 9000 §17): parsing long headers (§17.2: Initial §17.2.2, 0-RTT §17.2.3, Handshake
 * §17.2.4, Retry §17.2.5), Version Negotiation (§17.2.1) and short headers (§17.3.1), and writing them.
 * Header protection and sealing live in protection.ts, packet number arithmetic in pn.ts; both are re-exported here.
 * The Long Packet Type bits differ per version (RFC 9369 §3.2): PacketType is the v1 numbering, version.ts maps it.
 */
import { DecodeError, Reader, writeVarint } from '../../util/varint.js';
import { QUIC_V1 } from '../types.js';
import { QUIC_V2, VERSION_1, VERSION_2, decodeLongHeaderType, versionParams, type QuicVersionParams } from '../version.js';
import { retryIntegrityTag, RETRY_TAG_LENGTH } from '../crypto/retry.js';
import { randomFillSync } from 'node:crypto';

export { decodePacketNumber, packetNumberLength } from './pn.js';
export { removeHeaderProtection, applyHeaderProtection, sealPacket, openPayload } from './protection.js';
export type { UnprotectedHeader, PacketSpan } from './protection.js';

export const enum PacketType {
  Initial = 0,
  ZeroRtt = 1,
  Handshake = 2,
  Retry = 3,
  OneRtt = 4,
  VersionNegotiation = 5,
}

export interface PacketHeader {
  type: PacketType;
  /** Long header version; 0 for Version Negotiation; QUIC_V1 for short headers (they carry no version). */
  version: number;
  dcid: Buffer;
  /** Empty for short headers. */
  scid: Buffer;
  /** Initial token or Retry token; empty otherwise. */
  token: Buffer;
  /** Offset of the first byte of this packet in the datagram. */
  start: number;
  /**
   * Offset of the (protected) packet number. For packets without one (Version Negotiation, Retry, unknown
   * versions) it equals `end`.
   */
  pnOffset: number;
  /** End of this packet: pnOffset + Length for long headers, the datagram end otherwise. */
  end: number;
  /** Version Negotiation only. */
  supportedVersions?: number[];
}

/** Largest connection ID allowed in QUIC v1 (RFC 9000 §17.2). */
export const MAX_CID_LENGTH = 20;
const EMPTY = Buffer.alloc(0);

export function isLongHeader(firstByte: number): boolean {
  return (firstByte & 0x80) !== 0;
}

/** The version field of a long header packet at offset, or undefined for short headers / too short input. */
export function peekLongHeaderVersion(dgram: Buffer, offset = 0): number | undefined {
  if (offset + 5 > dgram.length || !isLongHeader(dgram[offset])) return undefined;
  return dgram.readUInt32BE(offset + 1);
}

/**
 * Parses the header of the packet starting at offset. Short headers use shortDcidLength (our CID length).
 * Throws DecodeError on malformed or truncated input. For a long header with a version other than 1 only the
 * version-invariant fields (RFC 8999) are parsed: the result has that version, the type bits read as in v1,
 * pnOffset = end = datagram end, so the endpoint can answer with Version Negotiation. `parseV2`: parse QUIC v2
 * (RFC 9369) long headers fully too, with v2's type bits mapped to PacketType; off by default (v2 is not negotiated
 * yet, so the endpoint and connections treat it as an unknown version).
 */
export function parseHeader(dgram: Buffer, offset: number, shortDcidLength: number, parseV2 = false): PacketHeader {
  if (offset >= dgram.length) throw new DecodeError('empty packet');
  const first = dgram[offset];
  if (!isLongHeader(first)) return parseShort(dgram, offset, first, shortDcidLength);

  const r = new Reader(dgram, offset + 1);
  const version = r.u32();
  const params: QuicVersionParams | null = version === QUIC_V1 ? VERSION_1 : parseV2 && version === QUIC_V2 ? VERSION_2 : null;
  // Connection IDs may be up to 255 bytes in other versions (RFC 8999 §5.1); v1 and v2 cap them at 20.
  const maxCid = params !== null ? MAX_CID_LENGTH : 255;
  const dcidLen = r.u8();
  if (dcidLen > maxCid) throw new DecodeError(`DCID length ${dcidLen} too long`);
  const dcid = r.bytes(dcidLen);
  const scidLen = r.u8();
  if (scidLen > maxCid) throw new DecodeError(`SCID length ${scidLen} too long`);
  const scid = r.bytes(scidLen);

  if (version === 0) {
    const rest = dgram.length - r.pos;
    if (rest === 0 || rest % 4 !== 0) throw new DecodeError('malformed Version Negotiation version list');
    const supportedVersions: number[] = [];
    while (!r.atEnd()) supportedVersions.push(r.u32());
    const end = dgram.length;
    return { type: PacketType.VersionNegotiation, version, dcid, scid, token: EMPTY, start: offset, pnOffset: end, end, supportedVersions };
  }
  if (params === null) {
    const end = dgram.length;
    return { type: ((first >>> 4) & 0x03) as PacketType, version, dcid, scid, token: EMPTY, start: offset, pnOffset: end, end };
  }
  const type = decodeLongHeaderType(first, params) as PacketType;
  if ((first & 0x40) === 0) throw new DecodeError('fixed bit is 0');

  if (type === PacketType.Retry) {
    const tokenLen = dgram.length - r.pos - RETRY_TAG_LENGTH;
    // A Retry with an empty token must be discarded (RFC 9000 §17.2.5.2); treat it as malformed.
    if (tokenLen <= 0) throw new DecodeError('Retry packet without token or tag');
    const token = r.bytes(tokenLen);
    const end = dgram.length;
    return { type, version, dcid, scid, token, start: offset, pnOffset: end, end };
  }
  let token: Buffer = EMPTY;
  if (type === PacketType.Initial) token = r.bytes(r.varint());
  const length = r.varint();
  const pnOffset = r.pos;
  if (length < 1) throw new DecodeError('long header Length too small');
  if (length > dgram.length - pnOffset) throw new DecodeError('long header Length past the datagram');
  return { type, version, dcid, scid, token, start: offset, pnOffset, end: pnOffset + length };
}

function parseShort(dgram: Buffer, offset: number, first: number, dcidLength: number): PacketHeader {
  if ((first & 0x40) === 0) throw new DecodeError('fixed bit is 0');
  const pnOffset = offset + 1 + dcidLength;
  // At least one packet number byte must follow the DCID.
  if (pnOffset >= dgram.length) throw new DecodeError('short header truncated');
  return {
    type: PacketType.OneRtt,
    version: QUIC_V1,
    dcid: dgram.subarray(offset + 1, pnOffset),
    scid: EMPTY,
    token: EMPTY,
    start: offset,
    pnOffset,
    end: dgram.length,
  };
}

/**
 * parseHeader for a packet known to have a short header at `offset`, written into `out` instead of a new object. No
 * view of the destination connection ID is made (`out.dcid` is set empty): the caller routed the datagram by it, and
 * a short-header packet runs to the end of the datagram, so no coalesced packet follows to compare it with. Throws
 * DecodeError as parseHeader does.
 */
export function parseShortHeaderInto(dgram: Buffer, offset: number, dcidLength: number, out: PacketHeader): PacketHeader {
  const first = dgram[offset];
  if ((first & 0x40) === 0) throw new DecodeError('fixed bit is 0');
  const pnOffset = offset + 1 + dcidLength;
  if (pnOffset >= dgram.length) throw new DecodeError('short header truncated');
  out.type = PacketType.OneRtt;
  out.version = QUIC_V1;
  out.dcid = EMPTY;
  out.scid = EMPTY;
  out.token = EMPTY;
  out.start = offset;
  out.pnOffset = pnOffset;
  out.end = dgram.length;
  return out;
}

function writePn(buf: Buffer, off: number, pn: number, pnLength: number): number {
  // Low pnLength bytes of pn, big-endian (pn % 2^32 keeps this exact above 2^32).
  let v = pn >>> 0 === pn ? pn : pn % 0x100000000;
  for (let i = pnLength - 1; i >= 0; i--) {
    buf[off + i] = v & 0xff;
    v >>>= 8;
  }
  return off + pnLength;
}

function checkPnLength(pnLength: number): void {
  if (pnLength < 1 || pnLength > 4 || !Number.isInteger(pnLength)) throw new RangeError(`bad packet number length ${pnLength}`);
}

/**
 * Writes an Initial, 0-RTT or Handshake header with the (unprotected) packet number. payloadLength counts the bytes
 * after the packet number including the 16-byte AEAD tag. The Length field is always a 2-byte varint, so
 * pnLength + payloadLength must be below 16384. token is only written for Initial packets (null = empty). The type
 * bits are QUIC v2's (RFC 9369 §3.2) when version is QUIC_V2, v1's for every other version.
 */
export function writeLongHeader(
  buf: Buffer,
  off: number,
  type: PacketType,
  version: number,
  dcid: Buffer,
  scid: Buffer,
  token: Buffer | null,
  payloadLength: number,
  pn: number,
  pnLength: number,
): { pnOffset: number; headerEnd: number } {
  checkPnLength(pnLength);
  if (type !== PacketType.Initial && type !== PacketType.ZeroRtt && type !== PacketType.Handshake) {
    throw new RangeError('writeLongHeader writes Initial, 0-RTT and Handshake packets only');
  }
  if (dcid.length > MAX_CID_LENGTH || scid.length > MAX_CID_LENGTH) throw new RangeError('connection ID too long');
  const length = pnLength + payloadLength;
  if (length >= 0x4000) throw new RangeError('long header payload too large for a 2-byte Length');
  let p = off;
  buf[p++] = 0xc0 | ((version === QUIC_V2 ? VERSION_2.typeBits[type] : type) << 4) | (pnLength - 1);
  buf.writeUInt32BE(version >>> 0, p);
  p += 4;
  buf[p++] = dcid.length;
  p += dcid.copy(buf, p);
  buf[p++] = scid.length;
  p += scid.copy(buf, p);
  if (type === PacketType.Initial) {
    const t = token ?? EMPTY;
    p = writeVarint(buf, p, t.length);
    p += t.copy(buf, p);
  }
  buf[p++] = 0x40 | (length >>> 8);
  buf[p++] = length & 0xff;
  const pnOffset = p;
  return { pnOffset, headerEnd: writePn(buf, p, pn, pnLength) };
}

/** Writes a 1-RTT short header (RFC 9000 §17.3.1) with the (unprotected) packet number. */
export function writeShortHeader(
  buf: Buffer,
  off: number,
  dcid: Buffer,
  pn: number,
  pnLength: number,
  keyPhase: 0 | 1,
  spinBit = false,
): { pnOffset: number; headerEnd: number } {
  checkPnLength(pnLength);
  buf[off] = 0x40 | (spinBit ? 0x20 : 0) | (keyPhase << 2) | (pnLength - 1);
  const pnOffset = off + 1 + dcid.copy(buf, off + 1);
  return { pnOffset, headerEnd: writePn(buf, pnOffset, pn, pnLength) };
}

/**
 * Builds a Version Negotiation packet (RFC 9000 §17.2.1). To answer a client, pass dcid = the client's SCID and
 * scid = the client's DCID. The unused bits are random with 0x40 set (so it looks like it has a fixed bit).
 */
export function buildVersionNegotiation(dcid: Buffer, scid: Buffer, versions: number[]): Buffer {
  if (dcid.length > 255 || scid.length > 255) throw new RangeError('connection ID too long');
  const out = Buffer.allocUnsafe(7 + dcid.length + scid.length + 4 * versions.length);
  randomFillSync(out, 0, 1);
  out[0] = 0xc0 | (out[0] & 0x3f);
  out.writeUInt32BE(0, 1);
  let p = 5;
  out[p++] = dcid.length;
  p += dcid.copy(out, p);
  out[p++] = scid.length;
  p += scid.copy(out, p);
  for (const v of versions) {
    out.writeUInt32BE(v >>> 0, p);
    p += 4;
  }
  return out;
}

/**
 * Builds a Retry packet (RFC 9000 §17.2.5) with its integrity tag (RFC 9001 §5.8). dcid is the client's SCID,
 * scid the server's new CID, originalDcid the DCID of the client's Initial. The four unused bits are set to 1, as in
 * the RFC 9001 A.4 example. For QUIC_V2 the type bits, key and nonce are v2's (RFC 9369 §3.2, §3.3.3); every other
 * version gets v1's.
 */
export function buildRetry(version: number, dcid: Buffer, scid: Buffer, token: Buffer, originalDcid: Buffer): Buffer {
  if (dcid.length > MAX_CID_LENGTH || scid.length > MAX_CID_LENGTH) throw new RangeError('connection ID too long');
  if (token.length === 0) throw new RangeError('Retry token must not be empty');
  const bodyLen = 7 + dcid.length + scid.length + token.length;
  const out = Buffer.allocUnsafe(bodyLen + RETRY_TAG_LENGTH);
  const params = versionParams(version) ?? VERSION_1;
  out[0] = 0xc0 | (params.typeBits[PacketType.Retry] << 4) | 0x0f;
  out.writeUInt32BE(version >>> 0, 1);
  let p = 5;
  out[p++] = dcid.length;
  p += dcid.copy(out, p);
  out[p++] = scid.length;
  p += scid.copy(out, p);
  token.copy(out, p);
  retryIntegrityTag(originalDcid, out.subarray(0, bodyLen), params).copy(out, bodyLen);
  return out;
}
