/**
 * HPACK Huffman code (RFC 7541 §5.2 and Appendix B), used unchanged by QPACK (RFC 9204 §4.1.2).
 *
 * The Appendix B code is canonical: codes of equal length are consecutive and increase with the symbol value, and
 * each length's first code follows the previous length's last one. So the table is kept as its 257 code lengths
 * (transcribed from the appendix) and the codes are derived from them; the tests check derived codes against the
 * appendix's hex column and the Appendix C examples.
 *
 * Decoding walks a precomputed 4-bit state machine: one state per internal node of the code tree (256 of them),
 * 16 transitions each. Since the shortest code has 5 bits, a nibble completes at most one symbol.
 */

import { DecodeError } from '../../util/varint.js';

// prettier-ignore
const CODE_LENGTHS: readonly number[] = [
  // 0..31: control characters
  13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
  28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
  // 32..47: ' ' ! " # $ % & ' ( ) * + , - . /
  6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
  // 48..63: 0-9 : ; < = > ?
  5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
  // 64..79: @ A-O
  13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
  // 80..95: P-Z [ \ ] ^ _
  7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
  // 96..111: ` a-o
  15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
  // 112..127: p-z { | } ~ DEL
  6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
  // 128..255
  20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
  24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
  22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
  21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
  26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
  19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
  20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
  26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
  // 256: EOS
  30,
];

const EOS = 256;

/** Code of each symbol, right-aligned (LSB), and its length in bits. */
export const HUFFMAN_CODES = new Uint32Array(257);
export const HUFFMAN_LENGTHS = Uint8Array.from(CODE_LENGTHS);

function buildCanonicalCodes(): void {
  let code = 0;
  let prevLen = 0;
  for (let len = 1; len <= 30; len++) {
    for (let sym = 0; sym <= EOS; sym++) {
      if (HUFFMAN_LENGTHS[sym] !== len) continue;
      code = prevLen === 0 ? 0 : code * 2 ** (len - prevLen);
      prevLen = len;
      HUFFMAN_CODES[sym] = code;
      code++;
    }
  }
}
buildCanonicalCodes();

// ---- decode state machine ----

const F_EMIT = 0x100;
const F_FAIL = 0x200;
/** DECODE[state * 16 + nibble] = nextState | F_EMIT? | F_FAIL? | symbol << 10 */
const DECODE = new Int32Array(256 * 16);
/** 1 when stopping in this state is valid padding: the path from the root is all 1 bits and at most 7 long. */
const ACCEPT = new Uint8Array(256);

function buildDecoder(): void {
  // Binary tree: node 0 is the root; child[2n] = left (0 bit), child[2n+1] = right (1 bit); leaf[n] = symbol or -1.
  const child = new Int32Array(2 * 513).fill(-1);
  const leaf = new Int32Array(513).fill(-1);
  let nodes = 1;
  for (let sym = 0; sym <= EOS; sym++) {
    const len = HUFFMAN_LENGTHS[sym];
    const code = HUFFMAN_CODES[sym];
    let n = 0;
    for (let i = len - 1; i >= 0; i--) {
      const bit = (code >>> i) & 1;
      let next = child[2 * n + bit];
      if (next < 0) {
        next = nodes++;
        child[2 * n + bit] = next;
      }
      n = next;
    }
    leaf[n] = sym;
  }
  // Number the internal nodes as states; remember each one's depth and whether its path is all ones.
  const stateOf = new Int32Array(nodes).fill(-1);
  const nodeOf: number[] = [];
  const depth = new Int32Array(nodes);
  const allOnes = new Uint8Array(nodes);
  allOnes[0] = 1;
  const queue = [0];
  while (queue.length > 0) {
    const n = queue.shift() as number;
    if (leaf[n] >= 0) continue;
    stateOf[n] = nodeOf.length;
    nodeOf.push(n);
    for (let bit = 0; bit < 2; bit++) {
      const c = child[2 * n + bit];
      if (c < 0) throw new Error('huffman table is not a complete code');
      depth[c] = depth[n] + 1;
      allOnes[c] = allOnes[n] & bit;
      queue.push(c);
    }
  }
  if (nodeOf.length !== 256) throw new Error('huffman table: unexpected tree shape');
  for (let s = 0; s < 256; s++) {
    const start = nodeOf[s];
    ACCEPT[s] = allOnes[start] && depth[start] <= 7 ? 1 : 0;
    for (let nib = 0; nib < 16; nib++) {
      let n = start;
      let entry = 0;
      for (let i = 3; i >= 0; i--) {
        n = child[2 * n + ((nib >>> i) & 1)];
        const sym = leaf[n];
        if (sym >= 0) {
          if (sym === EOS) {
            entry |= F_FAIL;
            break;
          }
          entry |= F_EMIT | (sym << 10);
          n = 0;
        }
      }
      DECODE[s * 16 + nib] = (entry & F_FAIL) !== 0 ? F_FAIL : entry | stateOf[n];
    }
  }
}
buildDecoder();

// ---- encoding ----

/** Bytes needed to Huffman-code s. */
export function huffmanEncodedLength(s: Uint8Array): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) bits += HUFFMAN_LENGTHS[s[i]];
  return (bits + 7) >>> 3;
}

/** Bytes needed to Huffman-code a latin1 string; -1 if it holds a char above 0xff. */
export function huffmanEncodedLengthLatin1(s: string): number {
  let bits = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c > 0xff) return -1;
    bits += HUFFMAN_LENGTHS[c];
  }
  return (bits + 7) >>> 3;
}

/**
 * Writes the code of each symbol produced by `at(i)` for i < n into out at off; returns the new offset.
 * The caller has checked the room (huffmanEncodedLength). The accumulator keeps < 8 pending bits, and codes longer
 * than 24 bits are fed and flushed in two parts, so it never needs more than 31 bits.
 */
function encodeInto(n: number, at: (i: number) => number, out: Uint8Array, off: number): number {
  let acc = 0;
  let pending = 0;
  for (let i = 0; i < n; i++) {
    const sym = at(i);
    let code = HUFFMAN_CODES[sym];
    let len = HUFFMAN_LENGTHS[sym];
    if (len > 24) {
      const hiLen = len - 24;
      acc = (acc << hiLen) | (code >>> 24);
      pending += hiLen;
      while (pending >= 8) {
        pending -= 8;
        out[off++] = (acc >>> pending) & 0xff;
      }
      acc &= (1 << pending) - 1;
      code &= 0xffffff;
      len = 24;
    }
    acc = (acc << len) | code;
    pending += len;
    while (pending >= 8) {
      pending -= 8;
      out[off++] = (acc >>> pending) & 0xff;
    }
    acc &= (1 << pending) - 1;
  }
  if (pending > 0) {
    // Pad with the most significant bits of EOS (all ones).
    out[off++] = ((acc << (8 - pending)) | (0xff >>> pending)) & 0xff;
  }
  return off;
}

/** Huffman-codes a latin1 string into out at off; returns the new offset. Chars must be <= 0xff. */
export function huffmanEncodeLatin1Into(s: string, out: Uint8Array, off: number): number {
  return encodeInto(s.length, (i) => s.charCodeAt(i), out, off);
}

export function huffmanEncodeInto(s: Uint8Array, out: Uint8Array, off: number): number {
  return encodeInto(s.length, (i) => s[i], out, off);
}

export function huffmanEncode(s: Buffer): Buffer {
  const out = Buffer.allocUnsafe(huffmanEncodedLength(s));
  huffmanEncodeInto(s, out, 0);
  return out;
}

// ---- decoding ----

let scratch = Buffer.allocUnsafe(4096);

/**
 * Decodes src[start, end) into the shared scratch buffer and returns the decoded length. Throws DecodeError on EOS,
 * on padding longer than 7 bits or not all ones, and when the output would exceed maxOut bytes.
 */
function decodeToScratch(src: Uint8Array, start: number, end: number, maxOut: number): number {
  // Every symbol takes at least 5 bits, so the output is at most 8/5 of the input.
  const bound = Math.floor(((end - start) * 8) / 5);
  if (scratch.length < bound) scratch = Buffer.allocUnsafe(Math.max(bound, scratch.length * 2));
  const out = scratch;
  let o = 0;
  let state = 0;
  for (let i = start; i < end; i++) {
    const byte = src[i];
    let e = DECODE[(state << 4) | (byte >>> 4)];
    if (e & F_FAIL) throw new DecodeError('huffman: EOS in string');
    if (e & F_EMIT) {
      if (o >= maxOut) throw new DecodeError('huffman: decoded string too long');
      out[o++] = e >>> 10;
    }
    state = e & 0xff;
    e = DECODE[(state << 4) | (byte & 0x0f)];
    if (e & F_FAIL) throw new DecodeError('huffman: EOS in string');
    if (e & F_EMIT) {
      if (o >= maxOut) throw new DecodeError('huffman: decoded string too long');
      out[o++] = e >>> 10;
    }
    state = e & 0xff;
  }
  if (!ACCEPT[state]) throw new DecodeError('huffman: invalid padding');
  return o;
}

/** Decodes a Huffman-coded string. Throws DecodeError on EOS, bad padding, or output longer than maxOut. */
export function huffmanDecode(b: Uint8Array, maxOut = Infinity): Buffer {
  const n = decodeToScratch(b, 0, b.length, maxOut);
  return Buffer.from(scratch.subarray(0, n));
}

/** Decodes src[start, end) to a latin1 string (one char per octet) without an intermediate Buffer. */
export function huffmanDecodeLatin1(src: Uint8Array, start: number, end: number, maxOut = Infinity): string {
  const n = decodeToScratch(src, start, end, maxOut);
  return scratch.toString('latin1', 0, n);
}
