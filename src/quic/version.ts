/**
 * What differs between QUIC versions at the packet protection layer: QUIC v1 (RFC 9000/9001) and QUIC v2 (RFC 9369
 * §3). Everything here is per-version data; the functions that use it (crypto/initial.ts, crypto/keys.ts,
 * crypto/retry.ts, packet/header.ts) take a descriptor and default to v1.
 *
 * QUIC v2 is packet protection only so far: no connection, endpoint, version negotiation or transport parameter
 * offers or accepts it.
 */
import { QUIC_V1 } from './types.js';

export { QUIC_V1 };
/** The Version field of QUIC v2 long headers (RFC 9369 §3.1). */
export const QUIC_V2 = 0x6b3343cf;

/** The HKDF-Expand-Label labels of packet protection (RFC 9001 §5.1, §5.4, §6.1; RFC 9369 §3.3.2). */
export interface PacketLabels {
  key: string;
  iv: string;
  hp: string;
  ku: string;
}

/** Long header packet types, in the v1 numbering that PacketType (packet/header.ts) uses for Initial..Retry. */
export const LONG_INITIAL = 0;
export const LONG_ZERO_RTT = 1;
export const LONG_HANDSHAKE = 2;
export const LONG_RETRY = 3;

export interface QuicVersionParams {
  /** The 32-bit Version field. */
  version: number;
  name: string;
  /** initial_salt of the Initial secrets (RFC 9001 §5.2, RFC 9369 §3.3.1). */
  initialSalt: Buffer;
  labels: PacketLabels;
  /** AES-128-GCM key and nonce of the Retry Integrity Tag (RFC 9001 §5.8, RFC 9369 §3.3.3). */
  retryKey: Buffer;
  retryNonce: Buffer;
  /** The two Long Packet Type bits for LONG_INITIAL, LONG_ZERO_RTT, LONG_HANDSHAKE, LONG_RETRY (in that order). */
  typeBits: readonly [number, number, number, number];
  /** The inverse of typeBits: the long header type (v1 numbering) for each value of the two bits. */
  typeOfBits: readonly [number, number, number, number];
}

function inverse(bits: readonly [number, number, number, number]): [number, number, number, number] {
  const out: [number, number, number, number] = [0, 0, 0, 0];
  for (let t = 0; t < 4; t++) out[bits[t]] = t;
  return out;
}

const V1_BITS = [0b00, 0b01, 0b10, 0b11] as const;
/** RFC 9369 §3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00. */
const V2_BITS = [0b01, 0b10, 0b11, 0b00] as const;

export const VERSION_1: QuicVersionParams = Object.freeze({
  version: QUIC_V1,
  name: 'v1',
  initialSalt: Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex'),
  labels: Object.freeze({ key: 'quic key', iv: 'quic iv', hp: 'quic hp', ku: 'quic ku' }),
  retryKey: Buffer.from('be0c690b9f66575a1d766b54e368c84e', 'hex'),
  retryNonce: Buffer.from('461599d35d632bf2239825bb', 'hex'),
  typeBits: V1_BITS,
  typeOfBits: inverse(V1_BITS),
});

export const VERSION_2: QuicVersionParams = Object.freeze({
  version: QUIC_V2,
  name: 'v2',
  initialSalt: Buffer.from('0dede3def700a6db819381be6e269dcbf9bd2ed9', 'hex'),
  labels: Object.freeze({ key: 'quicv2 key', iv: 'quicv2 iv', hp: 'quicv2 hp', ku: 'quicv2 ku' }),
  retryKey: Buffer.from('8fb4b01b56ac48e260fbcbcead7ccc92', 'hex'),
  retryNonce: Buffer.from('d86969bc2d7c6d9990efb04a', 'hex'),
  typeBits: V2_BITS,
  typeOfBits: inverse(V2_BITS),
});

/** The descriptor of a version this layer can protect packets for, or undefined for any other version. */
export function versionParams(version: number): QuicVersionParams | undefined {
  if (version === QUIC_V1) return VERSION_1;
  if (version === QUIC_V2) return VERSION_2;
  return undefined;
}

/** The descriptor for `version`; throws RangeError naming the version when it is neither v1 nor v2. */
export function requireVersionParams(version: number): QuicVersionParams {
  const v = versionParams(version);
  if (v === undefined) throw new RangeError(`no packet protection for QUIC version 0x${(version >>> 0).toString(16).padStart(8, '0')}`);
  return v;
}

/** The first byte's Long Packet Type bits (already shifted to bits 4-5) for a long header type in v1 numbering. */
export function encodeLongHeaderType(type: number, v: QuicVersionParams = VERSION_1): number {
  if (type < 0 || type > 3 || !Number.isInteger(type)) throw new RangeError(`not a long header packet type: ${type}`);
  return v.typeBits[type] << 4;
}

/** The long header type (v1 numbering: 0 Initial, 1 0-RTT, 2 Handshake, 3 Retry) of a long header's first byte. */
export function decodeLongHeaderType(firstByte: number, v: QuicVersionParams = VERSION_1): number {
  return v.typeOfBits[(firstByte >>> 4) & 0x03];
}
