/** Test data and stream helpers shared by the sim and e2e tests. */
import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';
import { prng } from './prng.js';

/** `size` reproducible pseudo-random bytes for `seed`. */
export function randomData(seed: number, size: number): Buffer {
  const r = prng(seed);
  const b = Buffer.allocUnsafe(size + 3);
  for (let i = 0; i < size; i += 4) b.writeUInt32LE((r() * 2 ** 32) >>> 0, i);
  return b.subarray(0, size);
}

/** `b` in views of at most `n` bytes. */
export function* chunked(b: Buffer, n: number): Generator<Buffer> {
  for (let i = 0; i < b.length; i += n) yield b.subarray(i, i + n);
}

/** Everything a readable stream gives, concatenated. */
export async function readAll(r: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of r) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** Size and sha256 (hex) of everything a readable stream gives, without keeping it. */
export async function hashAll(r: Readable): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  for await (const c of r) {
    h.update(c as Buffer);
    bytes += (c as Buffer).length;
  }
  return { bytes, sha256: h.digest('hex') };
}
