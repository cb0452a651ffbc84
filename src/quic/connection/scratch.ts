/**
 * The buffer datagrams are built in, and the frame writer that fills it: one of each for every connection of the
 * process. A datagram is built, sealed and handed out synchronously (nothing else runs meanwhile), so connections
 * need not own these between datagrams; owned per connection they were 16 KiB (a loopback datagram) of every idle
 * connection's memory, and a writer still pointing at its last datagram could hold another 16 KiB.
 *
 * takeDatagram() gives the caller a buffer it may keep: a small datagram is copied out of the scratch (into Node's
 * pool, cheaply); a large one takes the scratch itself and a new one is made for the next datagram.
 */
import { FrameWriter } from './frame-writer.js';

/** Datagrams up to this size are copied out of the scratch buffer into Node's buffer pool. */
const SMALL_DATAGRAM = 2048;

let scratch: Buffer | null = null;

/** The shared writer; every use starts with reset() onto the packet being built. */
export const sharedFrameWriter = new FrameWriter();

/** A scratch buffer of at least `size` bytes, valid until the next takeDatagram(). */
export function datagramScratch(size: number): Buffer {
  let s = scratch;
  if (s === null || s.length < size) s = scratch = Buffer.allocUnsafeSlow(size);
  return s;
}

/** The first `len` bytes of `buf` (the scratch, or a buffer of the caller's) as a datagram the caller owns. */
export function takeDatagram(buf: Buffer, len: number): Buffer {
  if (buf !== scratch) return buf.subarray(0, len);
  if (len <= SMALL_DATAGRAM) {
    const out = Buffer.allocUnsafe(len);
    buf.copy(out, 0, 0, len);
    return out;
  }
  scratch = null;
  return buf.subarray(0, len);
}
