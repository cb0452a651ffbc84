/**
 * QPACK wire primitives: prefixed integers (RFC 7541 §5.1, RFC 9204 §4.1.1) and N-bit-prefix string literals
 * (RFC 7541 §5.2, RFC 9204 §4.1.2), plus a growable byte sink for building instructions.
 *
 * Readers return INCOMPLETE (-1) / undefined when the input ends mid-value, so stream parsers can wait for more
 * bytes; they throw DecodeError for values that can never be valid (integers beyond 2^53, bad Huffman).
 */

import { DecodeError } from '../../util/varint.js';
import { huffmanDecodeLatin1, huffmanEncodedLengthLatin1, huffmanEncodeLatin1Into } from './huffman.js';

export const INCOMPLETE = -1;

/** A read position over buf[pos, end). */
export class ByteCursor {
  constructor(
    public buf: Buffer,
    public pos: number,
    public end: number,
  ) {}
}

/**
 * Reads a prefixed integer whose prefix occupies the low `prefixBits` bits of buf[cur.pos]. Advances cur.pos and
 * returns the value, or returns INCOMPLETE leaving cur.pos unchanged.
 */
export function readPrefixInt(cur: ByteCursor, prefixBits: number): number {
  const { buf, end } = cur;
  let p = cur.pos;
  if (p >= end) return INCOMPLETE;
  const max = (1 << prefixBits) - 1;
  let v = buf[p++] & max;
  if (v < max) {
    cur.pos = p;
    return v;
  }
  let mul = 1;
  for (;;) {
    if (p >= end) return INCOMPLETE;
    const b = buf[p++];
    v += (b & 0x7f) * mul;
    if ((b & 0x80) === 0) break;
    mul *= 128;
    // 2^62 needs at most 9 continuation bytes after a full prefix; stop well before losing precision.
    if (mul > 2 ** 49) throw new DecodeError('prefixed integer too large');
  }
  if (v > Number.MAX_SAFE_INTEGER) throw new DecodeError('prefixed integer too large');
  cur.pos = p;
  return v;
}

export function prefixIntLength(prefixBits: number, v: number): number {
  const max = (1 << prefixBits) - 1;
  if (v < max) return 1;
  v -= max;
  let n = 2;
  while (v >= 128) {
    v = Math.floor(v / 128);
    n++;
  }
  return n;
}

/** Writes v with a prefixBits-bit prefix; `flags` holds the bits above the prefix. Returns the new offset. */
export function writePrefixInt(buf: Uint8Array, off: number, prefixBits: number, flags: number, v: number): number {
  const max = (1 << prefixBits) - 1;
  if (v < max) {
    buf[off++] = flags | v;
    return off;
  }
  buf[off++] = flags | max;
  v -= max;
  while (v >= 128) {
    buf[off++] = (v % 128) | 0x80;
    v = Math.floor(v / 128);
  }
  buf[off++] = v;
  return off;
}

/** Header of a string literal: its Huffman flag and encoded length, or undefined-ish INCOMPLETE. */
export interface StringHeader {
  huffman: boolean;
  length: number;
}

/**
 * Reads the H flag and length of an N-bit-prefix string literal (H is bit `prefixBits - 1` of the first byte, the
 * length a (prefixBits-1)-bit prefix integer). Returns false (cur unchanged) when incomplete.
 */
export function readStringHeader(cur: ByteCursor, prefixBits: number, out: StringHeader): boolean {
  if (cur.pos >= cur.end) return false;
  const huffman = (cur.buf[cur.pos] & (1 << (prefixBits - 1))) !== 0;
  const len = readPrefixInt(cur, prefixBits - 1);
  if (len === INCOMPLETE) return false;
  out.huffman = huffman;
  out.length = len;
  return true;
}

/** Reads the body of a string whose header was read: the caller has checked that `length` bytes are present. */
export function readStringBody(cur: ByteCursor, h: StringHeader, maxDecoded: number): string {
  const start = cur.pos;
  const end = start + h.length;
  cur.pos = end;
  if (h.huffman) return huffmanDecodeLatin1(cur.buf, start, end, maxDecoded);
  if (h.length > maxDecoded) throw new DecodeError('string too long');
  return cur.buf.toString('latin1', start, end);
}

/** The smallest decoded length a string with this header can have (Huffman codes are at most 30 bits). */
export function minDecodedLength(h: StringHeader): number {
  return h.huffman ? Math.floor((h.length * 8) / 30) : h.length;
}

/** A growable output buffer. `take()` copies out what was written and resets it. */
export class ByteSink {
  buf: Buffer;
  pos = 0;
  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const nb = Buffer.allocUnsafe(size);
    this.buf.copy(nb, 0, 0, this.pos);
    this.buf = nb;
  }

  int(prefixBits: number, flags: number, v: number): void {
    this.ensure(10);
    this.pos = writePrefixInt(this.buf, this.pos, prefixBits, flags, v);
  }

  /**
   * Writes an N-bit-prefix string literal; `flags` holds the bits above the H bit. Uses Huffman when asked and
   * when it is shorter. Throws TypeError for chars above 0xff (values are latin1 "binary" strings).
   */
  string(prefixBits: number, flags: number, s: string, huffman: boolean): void {
    const hbit = 1 << (prefixBits - 1);
    const hlen = huffmanEncodedLengthLatin1(s);
    if (hlen < 0) throw new TypeError('QPACK strings must be latin1 (one octet per char)');
    if (huffman && hlen < s.length) {
      this.ensure(10 + hlen);
      this.pos = writePrefixInt(this.buf, this.pos, prefixBits - 1, flags | hbit, hlen);
      this.pos = huffmanEncodeLatin1Into(s, this.buf, this.pos);
    } else {
      this.ensure(10 + s.length);
      this.pos = writePrefixInt(this.buf, this.pos, prefixBits - 1, flags, s.length);
      this.pos += this.buf.write(s, this.pos, 'latin1');
    }
  }

  get length(): number {
    return this.pos;
  }

  take(): Buffer | null {
    if (this.pos === 0) return null;
    const out = Buffer.from(this.buf.subarray(0, this.pos));
    this.pos = 0;
    return out;
  }
}
