import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RecvStream } from '../../src/quic/stream/recv.js';
import { TransportError, TransportErrorCode } from '../../src/quic/errors.js';
import { prng } from '../util/prng.js';

function isTransportError(code: number) {
  return (e: unknown): boolean => e instanceof TransportError && e.code === code;
}

function drain(r: RecvStream): Buffer {
  const parts: Buffer[] = [];
  for (let b = r.read(); b; b = r.read()) parts.push(b);
  return Buffer.concat(parts);
}

test('recv: in-order data is readable, FIN moves through size_known/data_recvd/data_read', () => {
  const r = new RecvStream(0, 1000);
  assert.equal(r.onData(0, Buffer.from('hello '), false), 6);
  assert.equal(r.state, 'recv');
  assert.equal(r.readableBytes, 6);
  assert.equal(r.onData(6, Buffer.from('world'), true), 5);
  assert.equal(r.state, 'data_recvd');
  assert.equal(r.finalSize, 11);
  assert.equal(r.finished, false);
  assert.equal(r.read(3)?.toString(), 'hel');
  assert.equal(r.read()?.toString(), 'lo world');
  assert.equal(r.state, 'data_read');
  assert.equal(r.finished, true);
  assert.equal(r.read(), null);
  assert.equal(r.drainConsumed(), 11);
  assert.equal(r.drainConsumed(), 0);
});

test('recv: data is copied on arrival', () => {
  const r = new RecvStream(0, 1000);
  const packet = Buffer.from('abcdef');
  r.onData(0, packet.subarray(0, 3), false);
  packet.fill(0x78); // the caller reuses its packet buffer
  assert.equal(r.read()?.toString(), 'abc');
});

test('recv: out-of-order, duplicate and overlapping frames deliver each byte once', () => {
  const r = new RecvStream(0, 1000);
  const src = Buffer.from('0123456789abcdefghij');
  assert.equal(r.onData(10, src.subarray(10, 15), false), 15);
  assert.equal(r.readableBytes, 0);
  assert.equal(r.read(), null);
  assert.equal(r.onData(10, src.subarray(10, 15), false), 0, 'duplicate: no growth');
  assert.equal(r.onData(5, src.subarray(5, 12), false), 0, 'overlap');
  assert.equal(r.onData(0, src.subarray(0, 3), false), 0);
  assert.equal(r.readableBytes, 3);
  assert.equal(r.onData(2, src.subarray(2, 20), true), 5);
  assert.equal(r.state, 'data_recvd');
  assert.equal(r.readableBytes, 20);
  assert.ok(drain(r).equals(src));
  assert.ok(r.finished);
  // Late duplicate after everything was read: harmless.
  assert.equal(r.onData(0, src.subarray(0, 20), true), 0);
  assert.equal(r.read(), null);
});

test('recv: randomized reordering, duplicates and overlaps (seeded) deliver the original bytes', () => {
  for (let seed = 1; seed <= 25; seed++) {
    const rnd = prng(seed);
    const total = 1 + Math.floor(rnd() * 20000);
    const src = Buffer.allocUnsafe(total);
    for (let i = 0; i < total; i++) src[i] = Math.floor(rnd() * 256);
    // Random frames covering everything, plus random duplicates/overlaps, shuffled.
    const frames: [number, number][] = [];
    for (let off = 0; off < total; ) {
      const len = Math.min(total - off, 1 + Math.floor(rnd() * 1500));
      frames.push([off, off + len]);
      off += len;
    }
    const extra = Math.floor(rnd() * frames.length);
    for (let i = 0; i < extra; i++) {
      const a = Math.floor(rnd() * total);
      frames.push([a, Math.min(total, a + Math.floor(rnd() * 3000))]);
    }
    for (let i = frames.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [frames[i], frames[j]] = [frames[j], frames[i]];
    }
    const r = new RecvStream(4, total);
    const out: Buffer[] = [];
    let growth = 0;
    for (const [a, b] of frames) {
      growth += r.onData(a, src.subarray(a, b), b === total);
      // Read at random moments, sometimes in small pieces, using both read APIs.
      if (rnd() < 0.3) {
        const chunk = rnd() < 0.5 ? r.read(1 + Math.floor(rnd() * 700)) : r.readChunk();
        if (chunk) out.push(chunk);
      }
    }
    assert.equal(growth, total, `seed ${seed}: growth sums to the final size`);
    assert.equal(r.state === 'data_recvd' || r.state === 'data_read', true);
    out.push(drain(r));
    const got = Buffer.concat(out);
    assert.equal(got.length, total, `seed ${seed}`);
    assert.ok(got.equals(src), `seed ${seed}: delivered bytes identical`);
    assert.ok(r.finished);
    assert.equal(r.drainConsumed(), total);
  }
});

test('recv: FLOW_CONTROL_ERROR past our limit (STREAM and RESET_STREAM)', () => {
  const r = new RecvStream(0, 100);
  r.onData(0, Buffer.alloc(100), false); // exactly at the limit is fine
  assert.throws(() => r.onData(100, Buffer.alloc(1), false), isTransportError(TransportErrorCode.FLOW_CONTROL_ERROR));
  assert.throws(() => new RecvStream(0, 100).onData(99, Buffer.alloc(2), false), isTransportError(0x03));
  assert.throws(() => new RecvStream(0, 100).onReset(0, 101), isTransportError(0x03));
  // An empty FIN frame past the limit also violates it (its offset is the final size).
  assert.throws(() => new RecvStream(0, 100).onData(150, Buffer.alloc(0), true), isTransportError(0x03));
});

test('recv: FINAL_SIZE_ERROR cases (RFC 9000 §4.5)', () => {
  const code = isTransportError(TransportErrorCode.FINAL_SIZE_ERROR);
  // Data beyond the final size.
  let r = new RecvStream(0, 1000);
  r.onData(0, Buffer.alloc(10), true);
  assert.throws(() => r.onData(10, Buffer.alloc(1), false), code);
  // A FIN changing the final size (larger or smaller).
  r = new RecvStream(0, 1000);
  r.onData(5, Buffer.alloc(5), true);
  assert.throws(() => r.onData(0, Buffer.alloc(8), true), code);
  assert.throws(() => r.onData(0, Buffer.alloc(12), true), code);
  r.onData(0, Buffer.alloc(10), true); // same final size: fine
  // A FIN below data already received.
  r = new RecvStream(0, 1000);
  r.onData(50, Buffer.alloc(10), false);
  assert.throws(() => r.onData(0, Buffer.alloc(20), true), code);
  // RESET_STREAM changing the final size, or below what was received.
  r = new RecvStream(0, 1000);
  r.onData(0, Buffer.alloc(10), true);
  assert.throws(() => r.onReset(1, 11), code);
  r = new RecvStream(0, 1000);
  r.onData(0, Buffer.alloc(30), false);
  assert.throws(() => r.onReset(1, 29), code);
  // Data past the final size carried by a reset.
  r = new RecvStream(0, 1000);
  r.onReset(1, 20);
  assert.throws(() => r.onData(15, Buffer.alloc(10), false), code);
  assert.throws(() => r.onReset(1, 21), code);
  r.onData(0, Buffer.alloc(20), true); // consistent late data: ignored
});

test('recv: RESET_STREAM accounting and states', () => {
  const r = new RecvStream(0, 1000);
  assert.equal(r.onData(0, Buffer.alloc(40), false), 40);
  r.read(10);
  assert.equal(r.drainConsumed(), 10);
  assert.equal(r.onReset(0x99, 100), 60, 'highest offset grows to the final size');
  assert.equal(r.state, 'reset_recvd');
  assert.equal(r.resetCode, 0x99);
  assert.equal(r.readableBytes, 0);
  assert.equal(r.drainConsumed(), 90, 'unread bytes released for connection flow control');
  assert.equal(r.onReset(0x99, 100), 0, 'duplicate reset');
  assert.equal(r.onData(50, Buffer.alloc(10), false), 0);
  assert.equal(r.read(), null);
  assert.equal(r.state, 'reset_read');
  assert.equal(r.maxStreamDataUpdate(), null);

  // Reset after all data arrived: data stays deliverable.
  const d = new RecvStream(0, 1000);
  d.onData(0, Buffer.from('xyz'), true);
  assert.equal(d.onReset(5, 3), 0);
  assert.equal(d.state, 'data_recvd');
  assert.equal(d.read()?.toString(), 'xyz');
});

test('recv: MAX_STREAM_DATA updates after reads', () => {
  const r = new RecvStream(0, 1000);
  assert.equal(r.maxStreamDataUpdate(), null);
  r.onData(0, Buffer.alloc(1000), false);
  assert.equal(r.maxStreamDataUpdate(), null, 'nothing consumed yet');
  r.read(250);
  assert.equal(r.maxStreamDataUpdate(), null, '750 of window left: a quarter consumed, not more');
  r.read(50);
  assert.equal(r.maxStreamDataUpdate(), 1300, 'consumed 300 + window 1000');
  r.markMaxStreamDataSent(1300);
  assert.equal(r.currentLimit, 1300);
  assert.equal(r.maxStreamDataUpdate(), null);
  r.onData(1000, Buffer.alloc(300), false); // now allowed
  assert.throws(() => r.onData(1300, Buffer.alloc(1), false), isTransportError(0x03));
  r.markMaxStreamDataSent(1200); // never decreases
  assert.equal(r.currentLimit, 1300);
  // Once the final size is known, no more credit is needed.
  r.onData(1300, Buffer.alloc(0), true);
  r.read();
  assert.equal(r.maxStreamDataUpdate(), null);
});

test('recv: STOP_SENDING discards data but keeps flow-control accounting', () => {
  const r = new RecvStream(0, 1000);
  r.onData(0, Buffer.alloc(100), false);
  r.stopSending(0x10);
  assert.equal(r.pendingStopSending, 0x10);
  assert.equal(r.readableBytes, 0);
  assert.equal(r.read(), null);
  assert.equal(r.drainConsumed(), 100);
  assert.equal(r.onData(300, Buffer.alloc(100), false), 300, 'still counted');
  assert.equal(r.drainConsumed(), 300, 'released at once (gap included: it counts against MAX_DATA too)');
  assert.throws(() => r.onData(900, Buffer.alloc(200), false), isTransportError(0x03), 'limits still enforced');
  r.pendingStopSending = null;
  r.onStopSendingLost();
  assert.equal(r.pendingStopSending, 0x10);
  assert.equal(r.onReset(0x10, 500), 100);
  assert.equal(r.pendingStopSending, null, 'no need to repeat after the reset');
  r.onStopSendingLost();
  assert.equal(r.pendingStopSending, null);
  assert.equal(r.drainConsumed(), 100);
});

test('recv: data the caller does not own is copied; an owned buffer mostly filled by the data is kept as a view', () => {
  // Not owned: the caller may reuse its buffer, so changing it afterwards must not change what is read.
  const r = new RecvStream(0, 10_000);
  const scratch = Buffer.from('abcdefgh');
  r.onData(0, scratch, false);
  scratch.fill(0x7a);
  assert.equal(r.read()?.toString(), 'abcdefgh');

  // Owned and filling its buffer (a decrypted packet's STREAM data): no copy.
  const packet = Buffer.alloc(1400, 0x41);
  const data = packet.subarray(12);
  const o = new RecvStream(4, 10_000);
  o.onData(0, data, false, true);
  const got = o.read()!;
  assert.equal(got.length, data.length);
  assert.equal(got.buffer, packet.buffer, 'the stored piece is a view of the packet');

  // Owned but a small part of a large buffer: copied, so the big buffer is not pinned by a few bytes.
  const big = Buffer.alloc(64 * 1024, 0x42);
  const s = new RecvStream(8, 10_000);
  s.onData(0, big.subarray(100, 110), false, true);
  const small = s.read()!;
  assert.equal(small.toString(), 'BBBBBBBBBB');
  assert.notEqual(small.buffer, big.buffer);
});
