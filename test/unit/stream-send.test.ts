import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SendStream } from '../../src/quic/stream/send.js';

const BIG = 1 << 30;

function bytes(n: number, seed = 0): Buffer {
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed) & 0xff;
  return b;
}

test('send: chunks respect packet size, stream limit and connection credit', () => {
  const s = new SendStream(0, 2500);
  const data = bytes(4000);
  s.write(data);
  assert.equal(s.state, 'ready');
  assert.equal(s.unsentBytes, 4000);

  const c1 = s.nextChunk(1000, BIG);
  assert.ok(c1);
  assert.deepEqual([c1.offset, c1.data.length, c1.fin, c1.isNew], [0, 1000, false, 1000]);
  assert.equal(s.state, 'send');
  assert.ok(c1.data.equals(data.subarray(0, 1000)));
  assert.equal(c1.data.buffer, data.buffer, 'a view, not a copy');

  const c2 = s.nextChunk(1000, 300); // connection credit limits
  assert.deepEqual([c2?.offset, c2?.data.length, c2?.isNew], [1000, 300, 300]);

  const c3 = s.nextChunk(5000, BIG); // stream limit 2500 limits
  assert.deepEqual([c3?.offset, c3?.data.length], [1300, 1200]);
  assert.equal(s.highestSent, 2500);

  assert.equal(s.nextChunk(1000, BIG), null, 'blocked by stream flow control');
  assert.equal(s.hasSendable(BIG), false);
  assert.equal(s.blockedLimit(), 2500);
  s.markBlockedSent(2500);
  assert.equal(s.blockedLimit(), null, 'reported once per limit');

  s.setMaxStreamData(2000); // never decreases
  assert.equal(s.nextChunk(1000, BIG), null);
  s.setMaxStreamData(10_000);
  assert.equal(s.hasSendable(0), false, 'no connection credit');
  assert.equal(s.nextChunk(1000, 0), null);
  assert.equal(s.hasSendable(1), true);
  const c4 = s.nextChunk(5000, BIG);
  assert.deepEqual([c4?.offset, c4?.data.length, c4?.fin], [2500, 1500, false]);
  assert.equal(s.unsentBytes, 0);
  assert.equal(s.bufferedBytes, 4000);
});

test('send: chunk spanning several written buffers joins them', () => {
  const s = new SendStream(0, BIG);
  s.write(Buffer.from('abc'));
  s.write(Buffer.from('defg'));
  s.write(Buffer.from('hi'));
  const c = s.nextChunk(100, BIG);
  assert.equal(c?.data.toString(), 'abcdefghi');
  s.onLost(0, 9, false);
  const r = s.nextChunk(4, BIG);
  assert.equal(r?.data.toString(), 'abcd');
  assert.equal(r?.isNew, 0);
  assert.equal(s.nextChunk(100, BIG)?.data.toString(), 'efghi');
});

test('send: lost data is retransmitted before new data, without flow-control cost', () => {
  const s = new SendStream(4, 3000);
  const data = bytes(5000);
  s.write(data);
  s.nextChunk(1000, BIG); // [0,1000)
  s.nextChunk(1000, BIG); // [1000,2000)
  s.onLost(0, 1000, false);
  const r = s.nextChunk(600, 0); // retransmission needs no connection credit
  assert.deepEqual([r?.offset, r?.data.length, r?.isNew], [0, 600, 0]);
  assert.ok(r?.data.equals(data.subarray(0, 600)));
  const r2 = s.nextChunk(1000, BIG);
  assert.deepEqual([r2?.offset, r2?.data.length, r2?.isNew], [600, 400, 0]);
  const n = s.nextChunk(1000, BIG);
  assert.deepEqual([n?.offset, n?.data.length, n?.isNew], [2000, 1000, 1000]);
});

test('send: lost bytes already acknowledged are not retransmitted', () => {
  const s = new SendStream(0, BIG);
  s.write(bytes(3000));
  s.nextChunk(1000, BIG);
  s.nextChunk(1000, BIG);
  s.nextChunk(1000, BIG);
  // The first packet is lost, but a retransmission... here: part of [0,1000) was acked by a later copy.
  s.onAck(500, 500, false);
  s.onLost(0, 1000, false);
  const r = s.nextChunk(2000, BIG);
  assert.deepEqual([r?.offset, r?.data.length], [0, 500]);
  // Lost then acked before retransmission: nothing to resend.
  s.onLost(1000, 1000, false);
  s.onAck(1000, 1000, false);
  assert.equal(s.nextChunk(2000, BIG), null);
});

test('send: out-of-order acks free data only when the prefix fills; FIN ack completes', () => {
  const s = new SendStream(0, BIG);
  s.write(bytes(1000));
  s.write(bytes(1000, 1));
  s.write(bytes(1000, 2));
  s.end();
  const chunks = [s.nextChunk(1000, BIG), s.nextChunk(1000, BIG), s.nextChunk(1000, BIG)];
  assert.deepEqual(
    chunks.map((c) => [c?.offset, c?.fin]),
    [
      [0, false],
      [1000, false],
      [2000, true],
    ],
  );
  assert.equal(s.state, 'data_sent');
  s.onAck(2000, 1000, true);
  assert.equal(s.bufferedBytes, 2000);
  assert.equal(s.state, 'data_sent');
  s.onAck(1000, 1000, false);
  assert.equal(s.bufferedBytes, 1000);
  assert.equal(s.state, 'data_sent');
  s.onAck(1000, 1000, false); // duplicate ack
  assert.equal(s.bufferedBytes, 1000);
  s.onAck(0, 1000, false);
  assert.equal(s.bufferedBytes, 0);
  assert.equal(s.state, 'data_recvd');
  assert.equal(s.hasSendable(BIG), false);
  s.onLost(0, 1000, false); // late loss report after completion: ignored
  assert.equal(s.nextChunk(1000, BIG), null);
});

test('send: FIN-only chunk after all data sent, and its retransmission', () => {
  const s = new SendStream(0, BIG);
  s.write(bytes(100));
  const c = s.nextChunk(1000, BIG);
  assert.equal(c?.fin, false);
  assert.equal(s.hasSendable(BIG), false);
  s.end();
  assert.ok(s.finalSizeKnown);
  assert.equal(s.hasSendable(0), true, 'FIN needs no credit');
  const f = s.nextChunk(0, 0);
  assert.deepEqual([f?.offset, f?.data.length, f?.fin, f?.isNew], [100, 0, true, 0]);
  assert.equal(s.state, 'data_sent');
  assert.equal(s.nextChunk(1000, BIG), null);
  s.onLost(100, 0, true);
  const f2 = s.nextChunk(1000, BIG);
  assert.deepEqual([f2?.offset, f2?.data.length, f2?.fin], [100, 0, true]);
  s.onAck(0, 100, false);
  assert.equal(s.state, 'data_sent');
  s.onAck(100, 0, true);
  assert.equal(s.state, 'data_recvd');
});

test('send: empty stream sends a FIN-only chunk at offset 0', () => {
  const s = new SendStream(2, 0);
  s.end();
  const f = s.nextChunk(10, 0);
  assert.deepEqual([f?.offset, f?.data.length, f?.fin], [0, 0, true]);
  s.onAck(0, 0, true);
  assert.equal(s.state, 'data_recvd');
});

test('send: retransmitting the last range carries the lost FIN', () => {
  const s = new SendStream(0, BIG);
  s.write(bytes(500));
  s.end();
  const c = s.nextChunk(1000, BIG);
  assert.equal(c?.fin, true);
  s.onLost(0, 500, true);
  const r1 = s.nextChunk(300, BIG);
  assert.deepEqual([r1?.offset, r1?.data.length, r1?.fin], [0, 300, false]);
  const r2 = s.nextChunk(300, BIG);
  assert.deepEqual([r2?.offset, r2?.data.length, r2?.fin], [300, 200, true]);
  assert.equal(s.nextChunk(300, BIG), null, 'FIN not sent again on its own');
});

test('send: reset drops data and produces RESET_STREAM with final size = highest sent', () => {
  const s = new SendStream(8, BIG);
  s.write(bytes(5000));
  s.nextChunk(1200, BIG);
  s.nextChunk(1200, BIG);
  s.onLost(0, 1200, false);
  s.reset(0x10c);
  assert.equal(s.state, 'reset_sent');
  assert.deepEqual(s.pendingReset, { errorCode: 0x10c, finalSize: 2400 });
  assert.ok(s.finalSizeKnown);
  assert.equal(s.bufferedBytes, 0);
  assert.equal(s.unsentBytes, 0);
  assert.equal(s.hasSendable(BIG), false, 'no retransmission after reset');
  assert.equal(s.nextChunk(1200, BIG), null);
  s.write(bytes(10)); // ignored
  assert.equal(s.unsentBytes, 0);

  s.pendingReset = null; // caller sent it
  s.onResetLost();
  assert.deepEqual(s.pendingReset, { errorCode: 0x10c, finalSize: 2400 });
  s.pendingReset = null;
  s.reset(7); // second reset: no change
  assert.equal(s.pendingReset, null);
  s.onResetAcked();
  assert.equal(s.state, 'reset_recvd');
  s.onResetLost();
  assert.equal(s.pendingReset, null, 'acked reset is not resent');
});

test('send: STOP_SENDING triggers RESET_STREAM with the peer code', () => {
  const s = new SendStream(1, BIG);
  s.write(bytes(100));
  s.nextChunk(60, BIG);
  s.onStopSending(0x42);
  assert.equal(s.state, 'reset_sent');
  assert.equal(s.stopSendingCode, 0x42);
  assert.deepEqual(s.pendingReset, { errorCode: 0x42, finalSize: 60 });

  const untouched = new SendStream(5, BIG);
  untouched.onStopSending(3);
  assert.deepEqual(untouched.pendingReset, { errorCode: 3, finalSize: 0 });

  // After all data is acknowledged there is nothing to reset.
  const done = new SendStream(9, BIG);
  done.end();
  done.nextChunk(10, BIG);
  done.onAck(0, 0, true);
  done.onStopSending(3);
  assert.equal(done.state, 'data_recvd');
  assert.equal(done.pendingReset, null);
});

test('send: 64 MB transfer with loss and reordered acks stays fast and frees memory', () => {
  const total = 64 * 1024 * 1024;
  const piece = 16 * 1024;
  const s = new SendStream(0, total);
  for (let off = 0; off < total; off += piece) s.write(Buffer.alloc(piece, off / piece));
  s.end();
  // Send packets of 1200 bytes; ack them in windows of 64, acking in reverse within each window and
  // declaring every 50th packet lost (retransmitted, then acked).
  let inflight: { offset: number; len: number; fin: boolean }[] = [];
  let packets = 0;
  let maxUnreleased = 0;
  const lostOnce = new Set<number>();
  while (s.state !== 'data_recvd') {
    const c = s.nextChunk(1200, total);
    if (c) {
      packets++;
      inflight.push({ offset: c.offset, len: c.data.length, fin: c.fin });
      assert.equal(c.data[0], Math.floor(c.offset / piece) & 0xff);
    }
    if (inflight.length >= 64 || !c) {
      for (let i = inflight.length - 1; i >= 0; i--) {
        const p = inflight[i];
        if ((p.offset / 1200) % 50 === 7 && !lostOnce.has(p.offset)) {
          lostOnce.add(p.offset);
          s.onLost(p.offset, p.len, p.fin);
        } else {
          s.onAck(p.offset, p.len, p.fin);
        }
      }
      inflight = [];
      // Held buffers beyond what is still unsent = memory pinned by unacknowledged data.
      maxUnreleased = Math.max(maxUnreleased, s.retainedBytes - s.unsentBytes);
    }
    assert.ok(packets < 100_000, 'terminates');
  }
  assert.equal(s.bufferedBytes, 0);
  assert.ok(lostOnce.size > 1000);
  assert.equal(packets, Math.ceil(total / 1200) + lostOnce.size);
  // The acked prefix is released as it grows: never much more than two ack windows stay pinned.
  assert.equal(s.retainedBytes, 0);
  assert.ok(maxUnreleased <= 2 * 64 * 1200 + piece, `max unreleased ${maxUnreleased}`);
});
