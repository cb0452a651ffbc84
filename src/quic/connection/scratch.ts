/**
 * The buffer datagrams are built in, and the frame writer that fills it: one of each for every connection of the
 * process. A datagram is built, sealed and handed out synchronously (nothing else runs meanwhile), so connections
 * need not own these between datagrams; owned per connection they were 16 KiB (a loopback datagram) of every idle
 * connection's memory, and a writer still pointing at its last datagram could hold another 16 KiB.
 *
 * The scratch is a slab of SLAB bytes that datagrams are built in one after another: datagramScratch() gives the slab
 * and the offset the next datagram starts at, and takeDatagram() hands the datagram out as a view of the slab (no
 * copy) and moves the offset past it. No part of a slab is written twice: once a datagram does not fit in what is
 * left, a new slab is made, and the old one lives as long as a datagram handed out of it is referenced (node:dgram
 * keeps the buffer until the send is done). So a datagram handed out is never overwritten, a poll with nothing to
 * send allocates nothing, and the cost of a buffer is one slab per SLAB / size datagrams instead of a copy each.
 */
import { FrameWriter } from './frame-writer.js';

/** Bytes per slab: 44 datagrams of quic-go's 1452 bytes, 4 of a 16 KiB loopback datagram. */
const SLAB = 64 * 1024;

let slab: Buffer | null = null;
/** Where the next datagram starts in `slab` (8-byte aligned). */
let next = 0;

/** The shared writer; every use starts with reset() onto the packet being built. */
export const sharedFrameWriter = new FrameWriter();

/**
 * The slab to build a datagram of up to `size` bytes in, from scratchOffset() on: valid until the next
 * takeDatagram() (and what it hands out stays valid after).
 */
export function datagramScratch(size: number): Buffer {
  let s = slab;
  if (s === null || s.length - next < size) {
    s = slab = Buffer.allocUnsafeSlow(Math.max(SLAB, size));
    next = 0;
  }
  return s;
}

/** Where in the buffer of the last datagramScratch() the datagram starts. */
export function scratchOffset(): number {
  return next;
}

/**
 * Bytes `start` to `end` of `buf` (the scratch, from scratchOffset(), or a buffer of the caller's) as a datagram the
 * caller owns: the scratch's bytes are never written again.
 */
export function takeDatagram(buf: Buffer, start: number, end: number): Buffer {
  if (buf === slab) next = (end + 7) & ~7;
  return buf.subarray(start, end);
}
