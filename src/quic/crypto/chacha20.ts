/**
 * The ChaCha20 block function (RFC 8439 §2.3) in JavaScript, for QUIC ChaCha20 header protection (RFC 9001 §5.4.4):
 * a mask is the first 5 bytes of one keystream block, with the 32-bit block counter and the 96-bit nonce taken from
 * the packet's 16-byte sample. One block in JavaScript costs a fraction of creating a node:crypto cipher per sample,
 * and less than a call into libsodium (bench/crypto.ts measures all three). Payload encryption stays native.
 */

/** "expand 32-byte k" as four little-endian words (RFC 8439 §2.3). */
const C0 = 0x61707865;
const C1 = 0x3320646e;
const C2 = 0x79622d32;
const C3 = 0x6b206574;

/** The 32-byte key as eight little-endian words. */
export function chachaKeyWords(key: Uint8Array): Uint32Array {
  if (key.length !== 32) throw new RangeError('ChaCha20 key must be 32 bytes');
  const w = new Uint32Array(8);
  for (let i = 0; i < 8; i++) w[i] = le32(key, i * 4);
  return w;
}

function le32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

/**
 * Writes the 16 words of ChaCha20 block (key k, block counter, nonce words n0..n2) into out: 20 rounds as 10 double
 * rounds of column then diagonal quarter rounds, then the input words added (RFC 8439 §2.3.1).
 */
export function chacha20Block(k: Uint32Array, counter: number, n0: number, n1: number, n2: number, out: Uint32Array): void {
  const k0 = k[0]! | 0, k1 = k[1]! | 0, k2 = k[2]! | 0, k3 = k[3]! | 0, k4 = k[4]! | 0, k5 = k[5]! | 0, k6 = k[6]! | 0, k7 = k[7]! | 0;
  let x0 = C0, x1 = C1, x2 = C2, x3 = C3;
  let x4 = k0, x5 = k1, x6 = k2, x7 = k3, x8 = k4, x9 = k5, x10 = k6, x11 = k7;
  let x12 = counter | 0, x13 = n0 | 0, x14 = n1 | 0, x15 = n2 | 0;
  for (let i = 0; i < 10; i++) {
    // Columns: (0,4,8,12) (1,5,9,13) (2,6,10,14) (3,7,11,15).
    x0 = (x0 + x4) | 0; x12 ^= x0; x12 = (x12 << 16) | (x12 >>> 16);
    x8 = (x8 + x12) | 0; x4 ^= x8; x4 = (x4 << 12) | (x4 >>> 20);
    x0 = (x0 + x4) | 0; x12 ^= x0; x12 = (x12 << 8) | (x12 >>> 24);
    x8 = (x8 + x12) | 0; x4 ^= x8; x4 = (x4 << 7) | (x4 >>> 25);
    x1 = (x1 + x5) | 0; x13 ^= x1; x13 = (x13 << 16) | (x13 >>> 16);
    x9 = (x9 + x13) | 0; x5 ^= x9; x5 = (x5 << 12) | (x5 >>> 20);
    x1 = (x1 + x5) | 0; x13 ^= x1; x13 = (x13 << 8) | (x13 >>> 24);
    x9 = (x9 + x13) | 0; x5 ^= x9; x5 = (x5 << 7) | (x5 >>> 25);
    x2 = (x2 + x6) | 0; x14 ^= x2; x14 = (x14 << 16) | (x14 >>> 16);
    x10 = (x10 + x14) | 0; x6 ^= x10; x6 = (x6 << 12) | (x6 >>> 20);
    x2 = (x2 + x6) | 0; x14 ^= x2; x14 = (x14 << 8) | (x14 >>> 24);
    x10 = (x10 + x14) | 0; x6 ^= x10; x6 = (x6 << 7) | (x6 >>> 25);
    x3 = (x3 + x7) | 0; x15 ^= x3; x15 = (x15 << 16) | (x15 >>> 16);
    x11 = (x11 + x15) | 0; x7 ^= x11; x7 = (x7 << 12) | (x7 >>> 20);
    x3 = (x3 + x7) | 0; x15 ^= x3; x15 = (x15 << 8) | (x15 >>> 24);
    x11 = (x11 + x15) | 0; x7 ^= x11; x7 = (x7 << 7) | (x7 >>> 25);
    // Diagonals: (0,5,10,15) (1,6,11,12) (2,7,8,13) (3,4,9,14).
    x0 = (x0 + x5) | 0; x15 ^= x0; x15 = (x15 << 16) | (x15 >>> 16);
    x10 = (x10 + x15) | 0; x5 ^= x10; x5 = (x5 << 12) | (x5 >>> 20);
    x0 = (x0 + x5) | 0; x15 ^= x0; x15 = (x15 << 8) | (x15 >>> 24);
    x10 = (x10 + x15) | 0; x5 ^= x10; x5 = (x5 << 7) | (x5 >>> 25);
    x1 = (x1 + x6) | 0; x12 ^= x1; x12 = (x12 << 16) | (x12 >>> 16);
    x11 = (x11 + x12) | 0; x6 ^= x11; x6 = (x6 << 12) | (x6 >>> 20);
    x1 = (x1 + x6) | 0; x12 ^= x1; x12 = (x12 << 8) | (x12 >>> 24);
    x11 = (x11 + x12) | 0; x6 ^= x11; x6 = (x6 << 7) | (x6 >>> 25);
    x2 = (x2 + x7) | 0; x13 ^= x2; x13 = (x13 << 16) | (x13 >>> 16);
    x8 = (x8 + x13) | 0; x7 ^= x8; x7 = (x7 << 12) | (x7 >>> 20);
    x2 = (x2 + x7) | 0; x13 ^= x2; x13 = (x13 << 8) | (x13 >>> 24);
    x8 = (x8 + x13) | 0; x7 ^= x8; x7 = (x7 << 7) | (x7 >>> 25);
    x3 = (x3 + x4) | 0; x14 ^= x3; x14 = (x14 << 16) | (x14 >>> 16);
    x9 = (x9 + x14) | 0; x4 ^= x9; x4 = (x4 << 12) | (x4 >>> 20);
    x3 = (x3 + x4) | 0; x14 ^= x3; x14 = (x14 << 8) | (x14 >>> 24);
    x9 = (x9 + x14) | 0; x4 ^= x9; x4 = (x4 << 7) | (x4 >>> 25);
  }
  out[0] = x0 + C0; out[1] = x1 + C1; out[2] = x2 + C2; out[3] = x3 + C3;
  out[4] = x4 + k0; out[5] = x5 + k1; out[6] = x6 + k2; out[7] = x7 + k3;
  out[8] = x8 + k4; out[9] = x9 + k5; out[10] = x10 + k6; out[11] = x11 + k7;
  out[12] = x12 + (counter | 0); out[13] = x13 + (n0 | 0); out[14] = x14 + (n1 | 0); out[15] = x15 + (n2 | 0);
}

/**
 * The header protection mask for the 16-byte sample at sample[at..at+16) (RFC 9001 §5.4.4: counter = first 4 bytes
 * little-endian, nonce = the other 12) into mask[mo..mo+5). `block` is a 16-word scratch array.
 */
export function chachaHpMask(k: Uint32Array, sample: Uint8Array, at: number, block: Uint32Array, mask: Uint8Array, mo: number): void {
  chacha20Block(k, le32(sample, at), le32(sample, at + 4), le32(sample, at + 8), le32(sample, at + 12), block);
  const w0 = block[0]!;
  mask[mo] = w0;
  mask[mo + 1] = w0 >>> 8;
  mask[mo + 2] = w0 >>> 16;
  mask[mo + 3] = w0 >>> 24;
  mask[mo + 4] = block[1]!;
}
