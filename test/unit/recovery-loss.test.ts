import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LossDetector, type SentPacket } from '../../src/quic/recovery/loss.js';
import { NewReno } from '../../src/quic/recovery/new-reno.js';
import { RttEstimator } from '../../src/quic/recovery/rtt.js';

type Space = 0 | 1 | 2;

function setup(isServer = true, maxAckDelay = 25) {
  const rtt = new RttEstimator();
  const cc = new NewReno(1200);
  const ld = new LossDetector<string>(rtt, cc, { maxAckDelay: () => maxAckDelay, isServer });
  const send = (space: Space, pn: number, timeSent: number, opts: Partial<SentPacket<string>> = {}) =>
    ld.onPacketSent({ pn, space, timeSent, size: 1200, ackEliciting: true, inFlight: true, info: `p${pn}`, ...opts });
  return { rtt, cc, ld, send };
}

const pns = (ps: SentPacket<string>[]) => ps.map((p) => p.pn);

test('loss: packet threshold declares packets 3 below the largest acked lost, time threshold arms the timer', () => {
  const { ld, cc, rtt, send } = setup();
  for (let pn = 0; pn < 5; pn++) send(2, pn, 0);
  assert.equal(ld.bytesInFlight, 6000);
  assert.equal(cc.bytesInFlight, 6000);
  const r = ld.onAckReceived(2, [[3, 4]], 0, 100, true);
  assert.deepEqual(pns(r.acked), [3, 4]);
  assert.deepEqual(pns(r.lost), [0, 1]);
  assert.equal(rtt.latest, 100);
  assert.equal(ld.largestAcked(2), 4);
  assert.equal(ld.largestSent(2), 4);
  assert.equal(ld.bytesInFlight, 1200);
  assert.equal(cc.bytesInFlight, 1200);
  // pn 2 is only 2 below the largest: lost by time at timeSent + 9/8 * max(srtt, latest).
  const deadline = ld.timerDeadline(true, true, true, 100);
  assert.equal(deadline, 0 + (9 / 8) * 100);
  assert.deepEqual(ld.onLossTimeout(110, true, true, true), { lost: [], probe: null }); // too early
  const t = ld.onLossTimeout(112.5, true, true, true);
  assert.deepEqual(pns(t.lost), [2]);
  assert.equal(t.probe, null);
  assert.equal(ld.ptoCount, 0);
  assert.equal(ld.bytesInFlight, 0);
  assert.equal(cc.bytesInFlight, 0);
});

test('loss: time threshold declares an old packet lost on ACK of a newer one', () => {
  const { ld, send } = setup();
  send(2, 0, 0);
  send(2, 1, 50);
  const r = ld.onAckReceived(2, [[1, 1]], 0, 100, true); // rtt 50 -> loss delay 56.25, 0 <= 100 - 56.25
  assert.deepEqual(pns(r.acked), [1]);
  assert.deepEqual(pns(r.lost), [0]);
  assert.equal(r.lost[0].info, 'p0');
});

test('loss: RTT is sampled only when the largest acknowledged is newly acknowledged', () => {
  const { ld, rtt, send } = setup();
  send(2, 0, 0);
  send(2, 1, 1);
  send(2, 2, 2);
  ld.onAckReceived(2, [[2, 2]], 0, 100, true);
  assert.equal(rtt.latest, 98);
  const r = ld.onAckReceived(2, [[0, 2]], 0, 105, true);
  assert.deepEqual(pns(r.acked), [0, 1]);
  assert.equal(rtt.latest, 98);
  // Nothing newly acknowledged: no sample, nothing returned.
  const again = ld.onAckReceived(2, [[0, 2]], 0, 200, true);
  assert.equal(again.acked.length, 0);
  assert.equal(rtt.latest, 98);
});

test('loss: no RTT sample when only non-ack-eliciting packets are newly acknowledged', () => {
  const { ld, rtt, send } = setup();
  send(2, 0, 0, { ackEliciting: false, inFlight: false });
  const r = ld.onAckReceived(2, [[0, 0]], 0, 50, true);
  assert.deepEqual(pns(r.acked), [0]);
  assert.equal(rtt.hasSample, false);
});

test('loss: ack delay is subtracted for Handshake/AppData but ignored for Initial', () => {
  const a = setup();
  a.send(0, 0, 0);
  a.send(0, 1, 0);
  a.ld.onAckReceived(0, [[0, 0]], 0, 100, false);
  a.ld.onAckReceived(0, [[1, 1]], 20, 120, false);
  assert.equal(a.rtt.smoothed, 0.875 * 100 + 0.125 * 120);
  const b = setup();
  b.send(2, 0, 0);
  b.send(2, 1, 0);
  b.ld.onAckReceived(2, [[0, 0]], 0, 100, true);
  b.ld.onAckReceived(2, [[1, 1]], 20, 120, true);
  assert.equal(b.rtt.smoothed, 0.875 * 100 + 0.125 * 100);
});

test('loss: PTO deadline, exponential backoff and reset on ACK', () => {
  const { ld, send } = setup(true);
  send(0, 0, 0);
  // No RTT sample: 333 + 4 * 166.5 = 999, no max_ack_delay outside Application Data.
  assert.equal(ld.timerDeadline(false, true, false, 0), 999);
  assert.deepEqual(ld.onLossTimeout(998, false, true, false).probe, null);
  assert.deepEqual(ld.onLossTimeout(999, false, true, false).probe, { space: 0, count: 2 });
  assert.equal(ld.ptoCount, 1);
  assert.equal(ld.timerDeadline(false, true, false, 999), 1998);
  ld.onLossTimeout(1998, false, true, false);
  assert.equal(ld.ptoCount, 2);
  assert.equal(ld.timerDeadline(false, true, false, 1998), 3996);
  send(0, 1, 4000);
  ld.onAckReceived(0, [[1, 1]], 0, 4100, false);
  assert.equal(ld.ptoCount, 0);
});

test('loss: Application Data PTO adds max_ack_delay and waits for handshake confirmation', () => {
  const { ld, send } = setup(true, 25);
  send(2, 0, 10);
  assert.equal(ld.timerDeadline(false, true, true, 10), null);
  assert.equal(ld.timerDeadline(true, true, true, 10), 10 + 999 + 25);
  ld.onLossTimeout(1034, true, true, true);
  assert.equal(ld.ptoCount, 1);
  assert.equal(ld.timerDeadline(true, true, true, 1034), 10 + (999 + 25) * 2);
});

test('loss: probe space is the one with the earliest PTO', () => {
  const { ld, send } = setup(true);
  send(0, 0, 0);
  send(1, 0, 10);
  send(2, 0, 5);
  assert.deepEqual(ld.onLossTimeout(999, true, true, true).probe, { space: 0, count: 2 });
  ld.discardSpace(0);
  assert.equal(ld.ptoCount, 0);
  // Handshake at 10 + 999 beats Application Data at 5 + 999 + 25.
  assert.equal(ld.timerDeadline(true, true, true, 999), 1009);
  assert.deepEqual(ld.onLossTimeout(1009, true, true, true).probe, { space: 1, count: 2 });
  ld.discardSpace(1);
  assert.deepEqual(ld.onLossTimeout(1029, true, true, true).probe, { space: 2, count: 2 });
});

test('loss: client anti-deadlock probe when nothing is in flight and the address is not validated', () => {
  const { ld, send } = setup(false);
  send(0, 0, 0);
  ld.onAckReceived(0, [[0, 0]], 0, 100, false); // rtt 100: PTO 100 + 200
  assert.equal(ld.ackElicitingInFlight(), 0);
  const d = ld.timerDeadline(false, false, false, 100);
  assert.equal(d, 400);
  assert.deepEqual(ld.onLossTimeout(400, false, false, false).probe, { space: 0, count: 1 });
  assert.equal(ld.timerDeadline(false, false, true, 400), 400 + 600);
  assert.deepEqual(ld.onLossTimeout(1000, false, false, true).probe, { space: 1, count: 1 });
  // A Handshake ACK proves the server validated us: no timer without packets in flight.
  send(1, 0, 1000);
  ld.onAckReceived(1, [[0, 0]], 0, 1100, false);
  assert.equal(ld.timerDeadline(false, false, true, 1100), null);
});

test('loss: servers and validated clients arm no timer with nothing in flight', () => {
  assert.equal(setup(true).ld.timerDeadline(false, false, false, 0), null);
  assert.equal(setup(false).ld.timerDeadline(true, false, false, 0), null);
  assert.equal(setup(false).ld.timerDeadline(false, true, false, 0), null);
});

test('loss: discardSpace releases bytes in flight without a congestion signal', () => {
  const { ld, cc, send } = setup();
  send(0, 0, 0);
  send(0, 1, 1);
  send(0, 2, 2, { ackEliciting: false, inFlight: false, size: 50 });
  send(1, 0, 3);
  assert.equal(ld.timerDeadline(false, true, true, 3), 1 + 999);
  ld.onLossTimeout(1000, false, true, true);
  assert.equal(ld.ptoCount, 1);
  assert.equal(cc.bytesInFlight, 3600);
  const gone = ld.discardSpace(0);
  assert.deepEqual(pns(gone), [0, 1, 2]);
  assert.equal(ld.bytesInFlight, 1200);
  assert.equal(cc.bytesInFlight, 1200);
  assert.equal(cc.cwnd, cc.initialWindow);
  assert.equal(cc.ssthresh, Infinity);
  assert.equal(ld.ptoCount, 0);
  assert.deepEqual([...ld.unackedPackets(0)], []);
  assert.deepEqual(pns([...ld.unackedPackets(1)]), [0]);
});

test('loss: unackedPackets lists outstanding packets oldest first', () => {
  const { ld, send } = setup();
  for (let pn = 0; pn < 6; pn++) send(2, pn, 0);
  ld.onAckReceived(2, [[1, 2]], 0, 0.5, true);
  assert.deepEqual(pns([...ld.unackedPackets(2)]), [0, 3, 4, 5]);
});

test('loss: packet numbers must increase', () => {
  const { send } = setup();
  send(2, 5, 0);
  assert.throws(() => send(2, 5, 1));
  send(1, 0, 1); // spaces are independent
});

function persistentScenario(ackInBetween: boolean) {
  const { ld, cc, rtt, send } = setup(true, 25);
  send(2, 0, 0);
  ld.onAckReceived(2, [[0, 0]], 0, 100, true); // first RTT sample at t=100
  for (let pn = 1; pn <= 10; pn++) send(2, pn, 100 + pn * 120);
  send(2, 11, 1400);
  const ranges: [number, number][] = ackInBetween ? [[11, 11], [5, 5]] : [[11, 11]];
  const r = ld.onAckReceived(2, ranges, 0, 1500, true);
  return { r, cc, rtt };
}

test('loss: persistent congestion collapses cwnd to the minimum window', () => {
  const { r, cc, rtt } = persistentScenario(false);
  assert.deepEqual(pns(r.lost), [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
  // Lost span 1200 - 220 = 980 ms > 3 * (srtt + 4 * rttvar + max_ack_delay).
  assert.ok(980 > 3 * rtt.pto(25, true));
  // Collapsed to the minimum before the acknowledged pn 11 (sent after the collapse reset recovery) grew it.
  assert.equal(cc.cwnd, cc.minWindow + 1200);
  // The ack of pn 0 did not grow the initial window: one packet in flight of 12,000 bytes (RFC 9002 §7.8).
  assert.equal(cc.ssthresh, Math.floor(cc.initialWindow / 2));
  assert.equal(cc.bytesInFlight, 0);
  assert.equal(rtt.min, rtt.latest);
});

test('loss: an acknowledgment in the middle of the lost period prevents persistent congestion', () => {
  const { r, cc } = persistentScenario(true);
  assert.deepEqual(pns(r.lost), [1, 2, 3, 4, 6, 7, 8, 9, 10]);
  assert.equal(cc.cwnd, Math.floor(cc.initialWindow / 2)); // an ordinary congestion event (pn 0's ack did not grow it: §7.8)
});

test('loss: packets sent before the first RTT sample cannot establish persistent congestion', () => {
  const { ld, cc, send } = setup(true, 25);
  for (let pn = 0; pn <= 10; pn++) send(2, pn, pn * 300);
  ld.onAckReceived(2, [[10, 10]], 0, 3100, true);
  assert.equal(cc.cwnd, Math.floor(cc.initialWindow / 2));
});

test('loss: bookkeeping stays correct over a long transfer with reordering and loss', () => {
  const { ld, cc, send } = setup(true, 25);
  let now = 0;
  let next = 0;
  let ackedCount = 0;
  let lostCount = 0;
  const total = 200_000;
  while (next < total || ld.bytesInFlight > 0) {
    // Send a flight, then acknowledge it except every 1000th packet (a hole, lost by packet threshold).
    const first = next;
    for (let k = 0; k < 100 && next < total; k++) send(2, next++, now);
    now += 10;
    const ranges: [number, number][] = [];
    let hi = next - 1;
    for (let pn = next - 1; pn >= first; pn--) {
      if (pn % 1000 === 500) {
        if (hi > pn) ranges.push([pn + 1, hi]);
        hi = pn - 1;
      }
    }
    if (hi >= first) ranges.push([first, hi]);
    assert.ok(ranges.length > 0 && ranges.length <= 2);
    const r = ld.onAckReceived(2, ranges, 0, now, true);
    ackedCount += r.acked.length;
    lostCount += r.lost.length;
  }
  assert.equal(ackedCount + lostCount, total);
  assert.equal(lostCount, total / 1000);
  assert.equal(ld.bytesInFlight, 0);
  assert.equal(cc.bytesInFlight, 0);
  assert.deepEqual([...ld.unackedPackets(2)], []);
});
