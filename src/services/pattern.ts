/**
 * Deterministic download content for `GET /video/bytes?n=N`: anyone can regenerate it and check a download's
 * sha256 without a copy of the file.
 *
 * The content is a sequence of 64 KiB blocks. Block k is BASE_BLOCK with its first 8 bytes replaced by k as an
 * unsigned 64-bit little-endian integer; the stream is cut after N bytes. BASE_BLOCK is byte i = (i * 251 + (i >>> 8)
 * * 13 + 7) & 0xff. Stamping the block number makes a duplicated, dropped or reordered block change the hash, and the
 * base pattern does the same for anything smaller.
 */
import { createHash } from 'node:crypto';

export const PATTERN_BLOCK = 64 * 1024;

const BASE_BLOCK = (() => {
  const b = Buffer.allocUnsafe(PATTERN_BLOCK);
  for (let i = 0; i < PATTERN_BLOCK; i++) b[i] = (i * 251 + (i >>> 8) * 13 + 7) & 0xff;
  return b;
})();

/** Block `k` of the pattern, a fresh 64 KiB Buffer (the caller may hand it to a socket). */
export function patternBlock(k: number): Buffer {
  const b = Buffer.allocUnsafe(PATTERN_BLOCK);
  BASE_BLOCK.copy(b);
  b.writeBigUInt64LE(BigInt(k), 0);
  return b;
}

/** Bytes [offset, offset + length) of the pattern (for tests and clients that check as they go). */
export function patternBytes(offset: number, length: number): Buffer {
  const out = Buffer.allocUnsafe(length);
  let pos = 0;
  while (pos < length) {
    const at = offset + pos;
    const k = Math.floor(at / PATTERN_BLOCK);
    const from = at - k * PATTERN_BLOCK;
    const n = Math.min(PATTERN_BLOCK - from, length - pos);
    patternBlock(k).copy(out, pos, from, from + n);
    pos += n;
  }
  return out;
}

const shaCache = new Map<number, string>();

/** The sha256 (hex) of the first `n` bytes of the pattern; the last few answers are cached. */
export function patternSha256(n: number): string {
  const cached = shaCache.get(n);
  if (cached) return cached;
  const h = createHash('sha256');
  const block = Buffer.from(BASE_BLOCK);
  for (let k = 0, left = n; left > 0; k++, left -= PATTERN_BLOCK) {
    block.writeBigUInt64LE(BigInt(k), 0);
    h.update(left >= PATTERN_BLOCK ? block : block.subarray(0, left));
  }
  const hex = h.digest('hex');
  if (shaCache.size >= 16) shaCache.delete(shaCache.keys().next().value as number);
  shaCache.set(n, hex);
  return hex;
}
