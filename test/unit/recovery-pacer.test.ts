import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Pacer } from '../../src/quic/recovery/pacer.js';

/** Sends `n` packets as early as the pacer allows starting at `start`; returns the send times. */
function drive(p: Pacer, n: number, cwnd: number, srtt: number, start: number): number[] {
  const times: number[] = [];
  let now = start;
  for (let i = 0; i < n; i++) {
    const t = p.nextSendTime(1200, cwnd, srtt, now);
    if (t > now) now = t;
    p.onPacketSent(1200, now);
    times.push(now);
  }
  return times;
}

test('pacer: spreads a congestion window over the smoothed RTT after a 10-packet burst', () => {
  const p = new Pacer(1200);
  const cwnd = 100 * 1200;
  const srtt = 100;
  const times = drive(p, 100, cwnd, srtt, 0);
  // Burst of 10 at once, then one datagram every 1200 / (1.25 * cwnd / srtt) = 0.8 ms.
  for (let i = 0; i < 10; i++) assert.equal(times[i], 0);
  for (let i = 11; i < 100; i++) assert.ok(Math.abs(times[i] - times[i - 1] - 0.8) < 1e-9, `gap ${i}`);
  const last = times[99];
  assert.ok(Math.abs(last - 72) < 1e-6, `last ${last}`);
  assert.ok(last < srtt && last > srtt / 2);
});

test('pacer: idle time refills at most one burst', () => {
  const p = new Pacer(1200);
  drive(p, 50, 120000, 100, 0);
  const times = drive(p, 20, 120000, 100, 10_000);
  assert.equal(times.filter((t) => t === 10_000).length, 10);
  assert.ok(times[19] > 10_000);
});

test('pacer: the burst never exceeds a small congestion window', () => {
  const p = new Pacer(1200);
  const times = drive(p, 4, 2400, 50, 0);
  assert.equal(times[0], 0);
  assert.equal(times[1], 0);
  assert.ok(times[2] > 0);
  // rate = 1.25 * 2400 / 50 = 60 bytes/ms: 20 ms per datagram.
  assert.ok(Math.abs(times[3] - times[2] - 20) < 1e-9);
});

test('pacer: without an RTT estimate it does not delay', () => {
  const p = new Pacer(1200);
  assert.equal(p.nextSendTime(1200, 12000, 0, 5), 5);
});
