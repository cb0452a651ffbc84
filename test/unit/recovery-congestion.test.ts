import { test } from 'node:test';
import assert from 'node:assert/strict';
import { NewReno } from '../../src/quic/recovery/new-reno.js';

const pkt = (timeSent: number, size = 1200) => ({ size, timeSent });
const many = (n: number, timeSent: number) => Array.from({ length: n }, () => pkt(timeSent));
/** Sends `n` full-size packets at `timeSent` and returns them (to acknowledge or lose later). */
const send = (cc: NewReno, n: number, timeSent: number) => {
  for (let i = 0; i < n; i++) cc.onPacketSent(1200, timeSent);
  return many(n, timeSent);
};

test('newreno: initial and minimum windows (RFC 9002 §7.2)', () => {
  const a = new NewReno();
  assert.equal(a.cwnd, 12000);
  assert.equal(a.minWindow, 2400);
  assert.equal(a.ssthresh, Infinity);
  const b = new NewReno(1500);
  assert.equal(b.cwnd, 14720);
  assert.equal(b.minWindow, 3000);
  const c = new NewReno(9000);
  assert.equal(c.cwnd, 18000);
});

test('newreno: slow start grows by the acknowledged bytes', () => {
  const cc = new NewReno();
  for (let i = 0; i < 10; i++) cc.onPacketSent(1200, 0);
  assert.equal(cc.bytesInFlight, 12000);
  assert.equal(cc.canSend(1), false);
  cc.onPacketsAcked(many(10, 0), 100);
  assert.equal(cc.bytesInFlight, 0);
  assert.equal(cc.cwnd, 24000);
  assert.equal(cc.canSend(24000), true);
  assert.equal(cc.canSend(24001), false);
});

test('newreno: window halves once per recovery period', () => {
  const cc = new NewReno();
  for (let i = 0; i < 10; i++) cc.onPacketSent(1200, 10 * i);
  cc.onPacketsLost([pkt(10)], 100);
  assert.equal(cc.cwnd, 6000);
  assert.equal(cc.ssthresh, 6000);
  assert.equal(cc.inRecovery(50), true);
  assert.equal(cc.inRecovery(100), true);
  assert.equal(cc.inRecovery(101), false);
  // More losses of packets sent before recovery started: no further reduction.
  cc.onPacketsLost([pkt(50), pkt(90)], 150);
  assert.equal(cc.cwnd, 6000);
  // Acks of packets sent before recovery do not grow the window.
  cc.onPacketsAcked([pkt(60)], 160);
  assert.equal(cc.cwnd, 6000);
  // A loss of a packet sent after recovery started begins a new period.
  cc.onPacketSent(1200, 200);
  cc.onPacketsLost([pkt(200)], 300);
  assert.equal(cc.cwnd, 3000);
  cc.onPacketsLost([pkt(250)], 400);
  assert.equal(cc.cwnd, 3000);
  cc.onPacketsLost([pkt(401)], 500);
  assert.equal(cc.cwnd, 2400); // never below the minimum window
  assert.equal(cc.bytesInFlight, (11 - 7) * 1200); // 11 sent, 6 lost, 1 acked
});

test('newreno: congestion avoidance grows about one datagram per window acknowledged', () => {
  const cc = new NewReno();
  cc.onPacketSent(1200, 0);
  cc.onPacketsLost([pkt(0)], 10); // cwnd = ssthresh = 6000
  assert.equal(cc.cwnd, 6000);
  const first = send(cc, 5, 20); // a full window in flight
  cc.onPacketsAcked(first.slice(0, 4), 30);
  assert.equal(cc.cwnd, 6000);
  cc.onPacketsAcked(first.slice(4), 30); // 5 * 1200 = one window
  assert.equal(cc.cwnd, 7200);
  const second = send(cc, 6, 40);
  cc.onPacketsAcked(second.slice(0, 5), 50);
  assert.equal(cc.cwnd, 7200);
  cc.onPacketsAcked(second.slice(5), 50); // 6 * 1200 = the new window
  assert.equal(cc.cwnd, 8400);
  // Over ten round trips of full windows the window grows by ten datagrams.
  for (let rtt = 0; rtt < 10; rtt++) cc.onPacketsAcked(send(cc, cc.cwnd / 1200, 100 + rtt), 100 + rtt);
  assert.equal(cc.cwnd, 8400 + 10 * 1200);
});

test('newreno: persistent congestion collapses to the minimum window and leaves recovery', () => {
  const cc = new NewReno();
  cc.onPacketsAcked(send(cc, 10, 0), 10);
  cc.onPacketSent(1200, 5);
  cc.onPacketsLost([pkt(5)], 20);
  assert.ok(cc.inRecovery(15));
  cc.onPersistentCongestion();
  assert.equal(cc.cwnd, 2400);
  assert.equal(cc.inRecovery(15), false);
  // Below ssthresh again: slow start.
  cc.onPacketsAcked(send(cc, 1, 30), 40);
  assert.equal(cc.cwnd, 3600);
});

test('newreno: discarded bytes leave the window untouched; app-limited acks do not grow it', () => {
  const cc = new NewReno();
  cc.onPacketSent(1200, 0);
  cc.onPacketSent(1200, 0);
  cc.onPacketDiscarded(2400);
  assert.equal(cc.bytesInFlight, 0);
  assert.equal(cc.cwnd, 12000);
  cc.appLimited = true;
  cc.onPacketSent(1200, 1);
  cc.onPacketsAcked([pkt(1)], 2);
  assert.equal(cc.cwnd, 12000);
  assert.equal(cc.bytesInFlight, 0);
});

test('newreno: a window the sender does not fill does not grow (RFC 9002 §7.8)', () => {
  // Slow start: a sender that keeps two packets in flight, round after round, never fills half of 12,000 bytes.
  const ss = new NewReno();
  for (let rtt = 0; rtt < 50; rtt++) ss.onPacketsAcked(send(ss, 2, rtt), rtt + 0.5);
  assert.equal(ss.cwnd, 12000);
  assert.equal(ss.bytesInFlight, 0);
  // Filling half the window is enough to grow it in slow start.
  ss.onPacketsAcked(send(ss, 5, 100), 101);
  assert.equal(ss.cwnd, 18000);

  // Congestion avoidance: the window grows only while the sender comes within three datagrams of it.
  const ca = new NewReno();
  ca.onPacketSent(1200, 0);
  ca.onPacketsLost([pkt(0)], 1); // cwnd = ssthresh = 6000
  for (let rtt = 0; rtt < 20; rtt++) ca.onPacketsAcked(send(ca, 1, 10 + rtt), 10.5 + rtt); // 1,200 + 3,600 < 6,000
  assert.equal(ca.cwnd, 6000);
  for (let rtt = 0; rtt < 5; rtt++) ca.onPacketsAcked(send(ca, 3, 40 + rtt), 40.5 + rtt); // 3,600 + 3,600 >= 6,000
  assert.equal(ca.cwnd, 8400); // 18,000 bytes acknowledged: 6,000 grow it to 7,200, 7,200 more to 8,400
  for (let rtt = 0; rtt < 20; rtt++) ca.onPacketsAcked(send(ca, 3, 50 + rtt), 50.5 + rtt); // 7,200 < 8,400: stops
  assert.equal(ca.cwnd, 8400);
});

test('newreno: a round trip that used the window still counts in the next; then growth stops', () => {
  const cc = new NewReno();
  const burst = send(cc, 10, 0); // the whole window
  cc.onPacketsAcked(burst.slice(0, 9), 1);
  cc.onPacketsAcked(burst.slice(9), 1.5); // the acknowledgements of one flight all count, in slow start
  assert.equal(cc.cwnd, 24000);
  cc.onPacketsAcked(send(cc, 1, 2), 3); // the previous round's 12,000 in flight still counts
  assert.equal(cc.cwnd, 25200);
  for (let rtt = 0; rtt < 10; rtt++) cc.onPacketsAcked(send(cc, 1, 4 + rtt), 4.5 + rtt); // 1,200 of 25,200: idle
  assert.equal(cc.cwnd, 25200);
});
