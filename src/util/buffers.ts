/**
 * Buffers that live as long as a connection. Buffer.from() and Buffer.allocUnsafe() put small buffers in Node's shared
 * 8 KiB pool, where one long-lived slice (a connection ID, a key, a secret) keeps its whole slab alive although the
 * rest of it held packets long gone: with many connections, most of those slabs are kept for a few bytes each.
 * These allocate an ArrayBuffer of their own instead (for the few buffers per connection kept after the handshake;
 * transient ones belong in the pool).
 */

/** A copy of `b` in a buffer of its own. */
export function ownCopy(b: Uint8Array): Buffer {
  const c = Buffer.allocUnsafeSlow(b.length);
  c.set(b);
  return c;
}

/** An uninitialised buffer of `size` bytes of its own. */
export function ownBuffer(size: number): Buffer {
  return Buffer.allocUnsafeSlow(size);
}
