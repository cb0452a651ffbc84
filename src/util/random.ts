/**
 * Random bytes from a pool. node:crypto's randomBytes / randomFillSync cost a native call and a job object per call
 * (1-2 µs however few bytes are asked for), and a new server connection draws about ten small values: its connection
 * IDs, the ServerHello random, an X25519 private key, a GREASE transport parameter. The pool is refilled from the
 * same CSPRNG (randomFillSync) 4 KiB at a time; bytes are handed out once each and zeroed in the pool as they leave.
 * Requests over 512 bytes go to randomFillSync directly.
 */
import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
const DIRECT = 512;
const pool = Buffer.allocUnsafeSlow(POOL_SIZE);
let at = POOL_SIZE;

/** Fills out[offset, offset + length) with random bytes. */
export function randomFill(out: Buffer, offset = 0, length = out.length - offset): Buffer {
  if (offset < 0 || length < 0 || offset + length > out.length) throw new RangeError('randomFill: range out of bounds');
  if (length > DIRECT) {
    randomFillSync(out, offset, length);
    return out;
  }
  if (at + length > POOL_SIZE) {
    randomFillSync(pool);
    at = 0;
  }
  pool.copy(out, offset, at, at + length);
  pool.fill(0, at, at + length);
  at += length;
  return out;
}

/** `n` random bytes (in Node's shared buffer pool: for values that are copied or do not outlive their connection). */
export function randomBuffer(n: number): Buffer {
  return randomFill(Buffer.allocUnsafe(n));
}

const word = Buffer.alloc(4);

/** A uniformly random integer in [0, n), n <= 2^32 (rejection sampling: no modulo bias). */
export function randomBelow(n: number): number {
  if (!Number.isInteger(n) || n < 1 || n > 0x100000000) throw new RangeError(`randomBelow: n must be an integer from 1 to 2^32, got ${n}`);
  const limit = 0x100000000 - (0x100000000 % n); // the largest multiple of n that fits
  for (;;) {
    randomFill(word);
    const v = word.readUInt32BE(0);
    if (v < limit) return v % n;
  }
}
