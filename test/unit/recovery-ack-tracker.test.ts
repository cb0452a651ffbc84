import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AckTracker, MAX_ACK_RANGES } from '../../src/quic/recovery/ack-tracker.js';

test('ack tracker: ranges after reordering and duplicates', () => {
  const t = new AckTracker(2, 25);
  for (const pn of [0, 1, 2, 5, 6, 4, 9, 1, 5]) {
    if (!t.isDuplicate(pn)) t.onPacketReceived(pn, true, 0);
  }
  assert.equal(t.largestReceived, 9);
  assert.deepEqual(t.buildAck(0, 3)?.ranges, [
    [9, 9],
    [4, 6],
    [0, 2],
  ]);
  assert.equal(t.isDuplicate(5), true);
  assert.equal(t.isDuplicate(0), true);
  assert.equal(t.isDuplicate(3), false);
  assert.equal(t.isDuplicate(7), false);
  assert.equal(t.isDuplicate(10), false);
  // Filling the holes merges ranges.
  t.onPacketReceived(3, true, 0);
  t.onPacketReceived(8, true, 0);
  t.onPacketReceived(7, true, 0);
  assert.deepEqual(t.buildAck(0, 3)?.ranges, [[0, 9]]);
  // Duplicate delivery changes nothing.
  t.onPacketReceived(4, true, 0);
  assert.deepEqual(t.buildAck(0, 3)?.ranges, [[0, 9]]);
});

test('ack tracker: nothing received means no ACK', () => {
  const t = new AckTracker(2, 25);
  assert.equal(t.buildAck(0, 3), null);
  assert.equal(t.ackDeadline(), null);
  assert.equal(t.largestReceived, -1);
});

test('ack tracker: Application Data delays the first ack-eliciting packet up to max_ack_delay', () => {
  const t = new AckTracker(2, 25);
  t.onPacketReceived(0, true, 100);
  assert.equal(t.ackDeadline(), 125);
  assert.equal(t.needsAck(110), false);
  assert.equal(t.needsAck(125), true);
});

test('ack tracker: every second ack-eliciting packet is acknowledged immediately', () => {
  const t = new AckTracker(2, 25);
  t.onPacketReceived(0, true, 100);
  t.onPacketReceived(1, true, 105);
  assert.equal(t.ackDeadline(), 105);
  assert.equal(t.needsAck(105), true);
  t.onAckSent();
  assert.equal(t.ackDeadline(), null);
  assert.equal(t.needsAck(1000), false);
  t.onPacketReceived(2, true, 110);
  assert.equal(t.ackDeadline(), 135);
  t.onPacketReceived(3, true, 111);
  assert.equal(t.ackDeadline(), 111);
});

test('ack tracker: a gap or a late packet triggers an immediate ACK', () => {
  const t = new AckTracker(2, 25);
  t.onPacketReceived(0, true, 0);
  t.onPacketReceived(1, true, 1);
  t.onAckSent();
  t.onPacketReceived(3, true, 10); // 2 is missing
  assert.equal(t.ackDeadline(), 10);
  t.onAckSent();
  t.onPacketReceived(2, true, 20); // arrives late
  assert.equal(t.ackDeadline(), 20);
  t.onAckSent();
  t.onPacketReceived(4, true, 30); // in order again: delayed
  assert.equal(t.ackDeadline(), 55);
});

test('ack tracker: non-ack-eliciting packets are recorded but do not arm an ACK', () => {
  const t = new AckTracker(2, 25);
  t.onPacketReceived(0, false, 0);
  t.onPacketReceived(1, false, 0);
  t.onPacketReceived(5, false, 0);
  assert.equal(t.ackDeadline(), null);
  assert.deepEqual(t.buildAck(0, 3)?.ranges, [
    [5, 5],
    [0, 1],
  ]);
});

test('ack tracker: Initial and Handshake acknowledge ack-eliciting packets immediately', () => {
  for (const space of [0, 1] as const) {
    const t = new AckTracker(space, 25);
    t.onPacketReceived(0, true, 42);
    assert.equal(t.ackDeadline(), 42);
    assert.equal(t.needsAck(42), true);
  }
});

test('ack tracker: ACK Delay is the time since the largest was received, in exponent units', () => {
  const t = new AckTracker(2, 25);
  t.onPacketReceived(0, true, 10);
  t.onPacketReceived(3, true, 11);
  t.onPacketReceived(2, true, 12); // not the largest: does not move the reference time
  const ack = t.buildAck(14, 3);
  assert.ok(ack);
  assert.equal(ack.ackDelay, Math.floor(3000 / 8));
  assert.equal(t.buildAck(11, 0)?.ackDelay, 0);
});

test('ack tracker: ack of our ACK prunes ranges and rejects older packets', () => {
  const t = new AckTracker(2, 25);
  for (const pn of [0, 1, 2, 4, 5, 6, 9]) t.onPacketReceived(pn, true, 0);
  t.onAckOfAckReceived(5);
  assert.deepEqual(t.buildAck(0, 3)?.ranges, [
    [9, 9],
    [6, 6],
  ]);
  assert.equal(t.isDuplicate(3), true); // below what the peer knows we acked: no longer accepted
  assert.equal(t.isDuplicate(7), false);
  t.onAckOfAckReceived(2); // older information changes nothing
  assert.equal(t.rangeCount, 2);
  t.onAckOfAckReceived(9);
  assert.equal(t.buildAck(0, 3), null);
  assert.equal(t.isDuplicate(9), true);
  t.onPacketReceived(10, true, 0);
  assert.deepEqual(t.buildAck(0, 3)?.ranges, [[10, 10]]);
});

test('ack tracker: the number of ranges stays bounded', () => {
  const t = new AckTracker(2, 25);
  for (let pn = 0; pn < 400; pn += 2) t.onPacketReceived(pn, true, 0);
  assert.ok(t.rangeCount <= MAX_ACK_RANGES);
  const ack = t.buildAck(0, 3);
  assert.ok(ack);
  assert.ok(ack.ranges.length <= MAX_ACK_RANGES);
  assert.deepEqual(ack.ranges[0], [398, 398]);
  // Descending and non-overlapping.
  for (let i = 1; i < ack.ranges.length; i++) assert.ok(ack.ranges[i][1] < ack.ranges[i - 1][0] - 1);
  assert.equal(t.isDuplicate(0), true); // forgotten ranges count as duplicates
});
