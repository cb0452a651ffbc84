/** QUIC variable-length integers (RFC 9000 §16). Numbers are used up to 2^53-1, which covers every value we handle. */

export const VARINT_MAX = 2 ** 62 - 1;

export class DecodeError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DecodeError';
  }
}

/** Number of bytes needed to encode v. */
export function varintLength(v: number): number {
  if (v < 0x40) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x40000000) return 4;
  if (v <= VARINT_MAX) return 8;
  throw new RangeError(`varint out of range: ${v}`);
}

/** Writes v at off; returns the new offset. */
export function writeVarint(buf: Uint8Array, off: number, v: number): number {
  if (v < 0x40) {
    buf[off] = v;
    return off + 1;
  }
  if (v < 0x4000) {
    buf[off] = 0x40 | (v >>> 8);
    buf[off + 1] = v & 0xff;
    return off + 2;
  }
  if (v < 0x40000000) {
    buf[off] = 0x80 | (v >>> 24);
    buf[off + 1] = (v >>> 16) & 0xff;
    buf[off + 2] = (v >>> 8) & 0xff;
    buf[off + 3] = v & 0xff;
    return off + 4;
  }
  if (v > VARINT_MAX || !Number.isInteger(v) || v < 0) throw new RangeError(`varint out of range: ${v}`);
  const hi = Math.floor(v / 0x100000000);
  const lo = v >>> 0;
  buf[off] = 0xc0 | (hi >>> 24);
  buf[off + 1] = (hi >>> 16) & 0xff;
  buf[off + 2] = (hi >>> 8) & 0xff;
  buf[off + 3] = hi & 0xff;
  buf[off + 4] = lo >>> 24;
  buf[off + 5] = (lo >>> 16) & 0xff;
  buf[off + 6] = (lo >>> 8) & 0xff;
  buf[off + 7] = lo & 0xff;
  return off + 8;
}

export function encodeVarint(v: number): Buffer {
  const b = Buffer.allocUnsafe(varintLength(v));
  writeVarint(b, 0, v);
  return b;
}

/**
 * A cursor over a byte buffer. Reads throw DecodeError when the buffer is too short,
 * which callers map to the protocol's encoding error.
 */
export class Reader {
  pos: number;
  end: number;
  constructor(
    public buf: Buffer,
    start = 0,
    end = buf.length,
  ) {
    this.pos = start;
    this.end = end;
  }

  /** Points this reader at another buffer (a per-packet parse reuses one reader instead of allocating it). */
  reset(buf: Buffer, start = 0, end = buf.length): this {
    this.buf = buf;
    this.pos = start;
    this.end = end;
    return this;
  }

  get remaining(): number {
    return this.end - this.pos;
  }

  atEnd(): boolean {
    return this.pos >= this.end;
  }

  u8(): number {
    if (this.pos >= this.end) throw new DecodeError('truncated (u8)');
    return this.buf[this.pos++];
  }

  u16(): number {
    if (this.pos + 2 > this.end) throw new DecodeError('truncated (u16)');
    const v = (this.buf[this.pos] << 8) | this.buf[this.pos + 1];
    this.pos += 2;
    return v;
  }

  u24(): number {
    if (this.pos + 3 > this.end) throw new DecodeError('truncated (u24)');
    const v = (this.buf[this.pos] << 16) | (this.buf[this.pos + 1] << 8) | this.buf[this.pos + 2];
    this.pos += 3;
    return v;
  }

  u32(): number {
    if (this.pos + 4 > this.end) throw new DecodeError('truncated (u32)');
    const v = this.buf.readUInt32BE(this.pos);
    this.pos += 4;
    return v;
  }

  varint(): number {
    if (this.pos >= this.end) throw new DecodeError('truncated (varint)');
    const first = this.buf[this.pos];
    const len = 1 << (first >>> 6);
    if (this.pos + len > this.end) throw new DecodeError('truncated (varint)');
    let v = first & 0x3f;
    if (len === 8) {
      // Up to 62 bits: keep it exact up to 2^53 and saturate beyond (such values are never legal sizes for us).
      const hi = ((first & 0x3f) << 24) | (this.buf[this.pos + 1] << 16) | (this.buf[this.pos + 2] << 8) | this.buf[this.pos + 3];
      const lo = this.buf.readUInt32BE(this.pos + 4);
      v = (hi >>> 0) * 0x100000000 + lo;
    } else {
      for (let i = 1; i < len; i++) v = v * 256 + this.buf[this.pos + i];
    }
    this.pos += len;
    return v;
  }

  bytes(n: number): Buffer {
    if (n < 0 || this.pos + n > this.end) throw new DecodeError(`truncated (need ${n} bytes)`);
    const b = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return b;
  }

  rest(): Buffer {
    const b = this.buf.subarray(this.pos, this.end);
    this.pos = this.end;
    return b;
  }
}

/** A growable byte writer for building handshake messages and frames off the hot path. */
export class Writer {
  private buf: Buffer;
  pos = 0;
  constructor(initial = 256) {
    this.buf = Buffer.allocUnsafe(initial);
  }

  private ensure(n: number): void {
    if (this.pos + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.pos + n) size *= 2;
    const nb = Buffer.allocUnsafe(size);
    this.buf.copy(nb, 0, 0, this.pos);
    this.buf = nb;
  }

  u8(v: number): this {
    this.ensure(1);
    this.buf[this.pos++] = v;
    return this;
  }

  u16(v: number): this {
    this.ensure(2);
    this.buf[this.pos++] = v >>> 8;
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  u24(v: number): this {
    this.ensure(3);
    this.buf[this.pos++] = (v >>> 16) & 0xff;
    this.buf[this.pos++] = (v >>> 8) & 0xff;
    this.buf[this.pos++] = v & 0xff;
    return this;
  }

  u32(v: number): this {
    this.ensure(4);
    this.buf.writeUInt32BE(v >>> 0, this.pos);
    this.pos += 4;
    return this;
  }

  varint(v: number): this {
    this.ensure(8);
    this.pos = writeVarint(this.buf, this.pos, v);
    return this;
  }

  bytes(b: Uint8Array): this {
    this.ensure(b.length);
    this.buf.set(b, this.pos);
    this.pos += b.length;
    return this;
  }

  /** Writes a length-prefixed block: lenBytes is 1, 2 or 3, or 'varint'. */
  vec(lenBytes: 1 | 2 | 3 | 'varint', body: (w: this) => void): this {
    if (lenBytes === 'varint') {
      const inner = new Writer();
      body(inner as this);
      const b = inner.finish();
      return this.varint(b.length).bytes(b);
    }
    const at = this.pos;
    this.ensure(lenBytes);
    this.pos += lenBytes;
    body(this);
    const len = this.pos - at - lenBytes;
    if (lenBytes === 1) this.buf[at] = len;
    else if (lenBytes === 2) this.buf.writeUInt16BE(len, at);
    else this.buf.writeUIntBE(len, at, 3);
    return this;
  }

  finish(): Buffer {
    return this.buf.subarray(0, this.pos);
  }
}
