import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Cubic, CUBIC_ALPHA } from '../../src/quic/recovery/cubic.js';
import { congestionControlFactory } from '../../src/quic/recovery/congestion.js';
import { NewReno } from '../../src/quic/recovery/new-reno.js';

const pkt = (timeSent: number, size = 1200) => ({ size, timeSent });
const many = (n: number, timeSent: number) => Array.from({ length: n }, () => pkt(timeSent));
/** Sends `n` full-size packets at `timeSent` and returns them (to acknowledge or lose later). */
const send = (cc: Cubic, n: number, timeSent: number) => {
  for (let i = 0; i < n; i++) cc.onPacketSent(1200, timeSent);
  return many(n, timeSent);
};
const near = (actual: number, expected: number, what: string, eps = 0.01) =>
  assert.ok(Math.abs(actual - expected) <= eps, `${what}: ${actual}, expected ${expected}`);

/**
 * A controller whose window reached 120,000 bytes (100 datagrams) and then lost a packet at t = 500 ms: W_max =
 * 120,000, cwnd = ssthresh = 84,000; 70 full datagrams in flight (sent at 600 ms) so the window counts as used.
 */
function afterLoss(rtt = 100) {
  const cc = new Cubic(1200, { smoothed: rtt });
  cc.cwnd = 120000;
  cc.onPacketSent(1200, 400);
  cc.onPacketsLost([pkt(400)], 500);
  const flight = send(cc, 70, 600);
  return { cc, flight };
}

test('cubic: initial and minimum windows and slow start as in RFC 9002 §7.2, §7.3.1', () => {
  const a = new Cubic();
  assert.equal(a.cwnd, 12000);
  assert.equal(a.minWindow, 2400);
  assert.equal(a.ssthresh, Infinity);
  assert.equal(new Cubic(1500).cwnd, 14720);
  const cc = new Cubic();
  cc.onPacketsAcked(send(cc, 10, 0), 100);
  assert.equal(cc.cwnd, 24000);
  assert.equal(cc.bytesInFlight, 0);
  assert.equal(cc.canSend(24000), true);
  assert.equal(cc.canSend(24001), false);
});

test('cubic: a loss multiplies the window by 0.7 once per recovery period; fast convergence lowers W_max', () => {
  const cc = new Cubic();
  cc.cwnd = 100000;
  for (let i = 0; i < 10; i++) cc.onPacketSent(1200, 10 * i);
  cc.onPacketsLost([pkt(10)], 100);
  assert.equal(cc.cwnd, 70000);
  assert.equal(cc.ssthresh, 70000);
  assert.equal(cc.wMax, 100000);
  assert.equal(cc.cwndPrior, 100000);
  assert.equal(cc.inRecovery(100), true);
  assert.equal(cc.inRecovery(101), false);
  // Losses and acks of packets sent before the period began: no further reduction, no growth.
  cc.onPacketsLost([pkt(50), pkt(90)], 150);
  assert.equal(cc.cwnd, 70000);
  cc.onPacketsAcked([pkt(60)], 160);
  assert.equal(cc.cwnd, 70000);
  // A packet sent after the period began starts a new one. The window (70,000) is below W_max (100,000): fast
  // convergence sets W_max to 70,000 * (1 + 0.7) / 2 = 59,500.
  cc.onPacketSent(1200, 200);
  cc.onPacketsLost([pkt(200)], 300);
  assert.equal(cc.cwnd, 49000);
  assert.equal(cc.ssthresh, 49000);
  assert.equal(cc.wMax, 59500);
  assert.equal(cc.cwndPrior, 70000);
  // Never below the minimum window.
  cc.cwnd = 3000;
  cc.onPacketsLost([pkt(301)], 400);
  assert.equal(cc.cwnd, 2400);
  assert.equal(cc.bytesInFlight, (11 - 6) * 1200); // 11 sent, 5 lost, 1 acked
});

test('cubic: K from W_max and the curve W_cubic(t) = C * (t - K)^3 + W_max at several t (RFC 9438 §4.2)', () => {
  const { cc, flight } = afterLoss();
  cc.onPacketsAcked(flight.slice(0, 1), 1000); // the first acknowledgement in congestion avoidance starts the epoch
  assert.equal(cc.epochStart, 1000);
  // K = cbrt((W_max - cwnd_epoch) / C) in segments: cbrt((100 - 70) / 0.4) = cbrt(75) = 4.2171633 s.
  near(cc.k, 4.2171633, 'K', 1e-6);
  near(cc.wCubic(0), 84000, 'W_cubic(0) = cwnd_epoch');
  // 0.4 * 1200 * (1 - 4.2171633)^3 + 120000 = 120000 - 480 * 33.2985 = 104,016.92
  near(cc.wCubic(1), 104016.92, 'W_cubic(1 s)');
  near(cc.wCubic(cc.k), 120000, 'W_cubic(K) = W_max');
  near(cc.wCubic(cc.k + 2), 123840, 'W_cubic(K + 2 s) = W_max + 480 * 8');
  near(cc.wCubic(10), 212824.80, 'W_cubic(10 s)');
  // Slow start that ends without a loss: W_max is the window itself, K = 0.
  const ss = new Cubic(1200, { smoothed: 100 });
  ss.ssthresh = 12000;
  ss.onPacketsAcked(send(ss, 10, 0), 10);
  assert.equal(ss.k, 0);
  assert.equal(ss.wMax, 12000);
});

test('cubic: Reno-friendly region: W_est grows by alpha_cubic segments per window acknowledged (RFC 9438 §4.3)', () => {
  const { cc, flight } = afterLoss();
  // The whole window acknowledged at t = 0, where W_cubic(0) = 84,000 < W_est.
  cc.onPacketsAcked(flight, 1000);
  near(CUBIC_ALPHA, 0.5294118, 'alpha_cubic = 3 * 0.3 / 1.7', 1e-6);
  near(cc.wEst, 84000 + 0.5294118 * 1200, 'W_est', 0.001);
  near(cc.cwnd, 84635.29, 'cwnd = W_est');
  // Once W_est reaches cwnd_prior, it grows by a whole segment per window (alpha 1).
  const fast = new Cubic(1200, { smoothed: 100 });
  fast.cwnd = 12000;
  fast.onPacketSent(1200, 0);
  fast.onPacketsLost([pkt(0)], 1); // cwnd 8,400, cwnd_prior 12,000
  fast.wMax = 8400; // a flat curve: K = 0, W_cubic(t) = 8,400 + C * S * t^3 stays below W_est near t = 0
  fast.onPacketsAcked(send(fast, 7, 2), 3);
  near(fast.wEst, 8400 + CUBIC_ALPHA * 1200, 'W_est below cwnd_prior');
  fast.wEst = 12000;
  const before = fast.cwnd;
  fast.onPacketsAcked(send(fast, 7, 4), 4);
  near(fast.wEst, 12000 + (1200 * 8400) / before, 'W_est with alpha 1');
  near(fast.cwnd, fast.wEst, 'cwnd = W_est');
});

test('cubic: concave and convex growth toward W_cubic(t + RTT), at most 1.5 cwnd (RFC 9438 §4.4, §4.5)', () => {
  const { cc, flight } = afterLoss(100);
  cc.onPacketsAcked(flight.slice(0, 1), 1000); // t = 0: Reno-friendly, cwnd = W_est = 84,009.0756
  near(cc.cwnd, 84009.0756, 'cwnd at t = 0');
  // t = 1 s: W_cubic(1) = 104,016.92 > W_est = 84,018.15; target W_cubic(1.1) = 105,461.49;
  // cwnd += (105,461.49 - 84,009.08) * 1200 / 84,009.08 = 306.43.
  cc.onPacketsAcked(flight.slice(1, 2), 2000);
  near(cc.wEst, 84018.1503, 'W_est at t = 1 s');
  near(cc.cwnd, 84315.5056, 'cwnd at t = 1 s');
  // t = 10 s: W_cubic(10.1) is far above 1.5 cwnd, so the target is 1.5 cwnd: growth = half the acknowledged bytes.
  const before = cc.cwnd;
  cc.onPacketsAcked(flight.slice(2, 3), 11000);
  near(cc.cwnd, before + 600, 'cwnd at t = 10 s');
});

test('cubic: a window the sender does not fill does not grow, and app-limited time stops the clock (RFC 9002 §7.8)', () => {
  const { cc, flight } = afterLoss();
  cc.onPacketsAcked(flight.slice(0, 35), 1000);
  const cwnd = cc.cwnd;
  cc.onPacketsAcked(flight.slice(35), 1010); // the flight drains: this round still counts (the window was full)
  assert.ok(cc.cwnd > cwnd);
  // From here on the sender keeps one packet in flight: 1,200 + 3 * 1,200 is far below ~84,000. The first such round
  // still counts the full one before it; then the window stays.
  cc.onPacketsAcked(send(cc, 1, 1015), 1020);
  const grown = cc.cwnd;
  for (let i = 0; i < 20; i++) cc.onPacketsAcked(send(cc, 1, 1020 + 100 * i), 1050 + 100 * i);
  assert.equal(cc.cwnd, grown);
  // The epoch start moved with the idle time, so t did not advance while the sender was limited.
  assert.ok(cc.epochStart > 1000 + 1900, `epoch start ${cc.epochStart}`);
  // appLimited forces it too.
  cc.appLimited = true;
  cc.onPacketsAcked(send(cc, 80, 3100), 3200);
  assert.equal(cc.cwnd, grown);
  assert.equal(cc.bytesInFlight, 0);
});

test('cubic: persistent congestion collapses to the minimum window; slow start then a new epoch toward W_max', () => {
  const { cc, flight } = afterLoss();
  cc.onPacketsAcked(flight, 1000);
  cc.onPacketSent(1200, 1100);
  cc.onPacketsLost([pkt(1100)], 1200); // fast convergence: W_max = 84,635 * 0.85 = 71,940; cwnd = ssthresh = 59,244
  assert.ok(cc.inRecovery(1150));
  cc.onPersistentCongestion();
  assert.equal(cc.cwnd, 2400);
  assert.equal(cc.inRecovery(1150), false);
  assert.equal(cc.epochStart, -Infinity);
  cc.onPacketsAcked(send(cc, 2, 1300), 1400); // slow start again
  assert.equal(cc.cwnd, 4800);
  // Slow start up to ssthresh, then the first congestion avoidance ack starts an epoch with K from W_max.
  near(cc.wMax, 84635.29 * 0.85, 'W_max');
  let now = 1500;
  while (cc.epochStart === -Infinity) {
    const round = send(cc, Math.ceil(cc.cwnd / 1200), now);
    now += 100;
    for (const p of round) cc.onPacketsAcked([p], now);
  }
  assert.ok(cc.cwnd >= cc.ssthresh && cc.cwnd < cc.ssthresh + 2400, `cwnd ${cc.cwnd}`);
  // K = cbrt((W_max - cwnd_epoch) / (C * S)), cwnd_epoch within a datagram of ssthresh.
  assert.ok(cc.k > Math.cbrt((71940 - 59244 - 2400) / 480) && cc.k < Math.cbrt((71940 - 59244) / 480), `K ${cc.k}`);
});

test('cubic: discarded bytes leave the window untouched; the names pick the algorithm', () => {
  const cc = new Cubic();
  cc.onPacketSent(1200, 0);
  cc.onPacketDiscarded(1200);
  assert.equal(cc.bytesInFlight, 0);
  assert.equal(cc.cwnd, 12000);
  const rtt = { smoothed: 10 };
  assert.ok(congestionControlFactory('cubic')(1200, rtt) instanceof Cubic);
  assert.ok(congestionControlFactory('newreno')(1200, rtt) instanceof NewReno);
});
