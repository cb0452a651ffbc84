import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RttEstimator } from '../../src/quic/recovery/rtt.js';

test('rtt: initial state uses the 333 ms initial RTT (RFC 9002 §6.2.2)', () => {
  const r = new RttEstimator();
  assert.equal(r.hasSample, false);
  assert.equal(r.smoothed, 333);
  assert.equal(r.rttvar, 166.5);
  assert.equal(r.pto(25, false), 333 + 4 * 166.5);
  assert.equal(r.pto(25, true), 333 + 4 * 166.5 + 25);
  assert.equal(new RttEstimator(100).smoothed, 100);
});

test('rtt: first sample sets min, smoothed and rttvar, ignoring ack delay (RFC 9002 §5.3)', () => {
  const r = new RttEstimator();
  r.update(100, 50, 25, true);
  assert.equal(r.hasSample, true);
  assert.equal(r.latest, 100);
  assert.equal(r.min, 100);
  assert.equal(r.smoothed, 100);
  assert.equal(r.rttvar, 50);
});

test('rtt: ack delay is clamped to max_ack_delay once the handshake is confirmed', () => {
  const confirmed = new RttEstimator();
  confirmed.update(100, 0, 25, true);
  confirmed.update(130, 30, 25, true); // delay clamped to 25 -> adjusted 105
  assert.equal(confirmed.rttvar, 0.75 * 50 + 0.25 * 5);
  assert.equal(confirmed.smoothed, 0.875 * 100 + 0.125 * 105);
  assert.equal(confirmed.min, 100);

  const unconfirmed = new RttEstimator();
  unconfirmed.update(100, 0, 25, false);
  unconfirmed.update(130, 30, 25, false); // not clamped -> adjusted 100
  assert.equal(unconfirmed.rttvar, 0.75 * 50);
  assert.equal(unconfirmed.smoothed, 100);
});

test('rtt: ack delay is not subtracted when that would go below min_rtt', () => {
  const r = new RttEstimator();
  r.update(100, 0, 25, true);
  r.update(110, 20, 25, true); // 110 < 100 + 20: use 110 unadjusted
  assert.equal(r.smoothed, 0.875 * 100 + 0.125 * 110);
  assert.equal(r.rttvar, 0.75 * 50 + 0.25 * 10);
});

test('rtt: min_rtt tracks raw samples, never adjusted for ack delay', () => {
  const r = new RttEstimator();
  r.update(100, 0, 25, true);
  r.update(80, 10, 25, true);
  assert.equal(r.min, 80);
  assert.equal(r.latest, 80);
  r.update(90, 0, 25, true);
  assert.equal(r.min, 80);
});

test('rtt: PTO uses the 1 ms granularity floor when rttvar is tiny', () => {
  const r = new RttEstimator();
  r.update(10, 0, 25, true);
  for (let i = 0; i < 60; i++) r.update(10, 0, 25, true);
  assert.ok(r.rttvar * 4 < 1);
  assert.equal(r.pto(25, false), r.smoothed + 1);
  assert.equal(r.pto(25, true), r.smoothed + 1 + 25);
});
