import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WindowTuner } from '../../src/quic/stream/autotune.js';

test('WindowTuner: doubles when a window is consumed within a few round trips, up to the ceiling', () => {
  const t = new WindowTuner(100_000, 350_000);
  assert.equal(t.onCreditUpdate(0, 0, 10), 100_000, 'the first update only starts an epoch');
  // 60 % of the window in 5 ms with a 10 ms RTT (threshold 4 * 0.6 * 10 = 24 ms): grows.
  assert.equal(t.onCreditUpdate(60_000, 5, 10), 200_000);
  assert.equal(t.onCreditUpdate(180_000, 10, 10), 350_000, 'capped at the ceiling');
  assert.equal(t.onCreditUpdate(400_000, 11, 10), 350_000);
});

test('WindowTuner: stays when consumption is slow, when less than half a window was consumed, or with no RTT sample', () => {
  const t = new WindowTuner(100_000, 1_000_000);
  t.onCreditUpdate(0, 0, 10);
  assert.equal(t.onCreditUpdate(60_000, 100, 10), 100_000, '60 % in 100 ms at a 10 ms RTT is the reader, not the window');
  assert.equal(t.onCreditUpdate(100_000, 101, 10), 100_000, 'only 40 % of a window in this epoch');
  assert.equal(t.onCreditUpdate(200_000, 102, 0), 100_000, 'no RTT sample yet');
});

test('WindowTuner: an epoch runs across credit updates of a quarter window until half a window was consumed', () => {
  const t = new WindowTuner(100_000, 1_000_000);
  t.onCreditUpdate(0, 0, 10);
  assert.equal(t.onCreditUpdate(25_000, 1, 10), 100_000, 'a quarter: the epoch goes on');
  assert.equal(t.onCreditUpdate(50_000, 2, 10), 100_000, 'half, not more: the epoch goes on');
  // 60 % since the epoch began at 0 ms, in 3 ms with a 10 ms RTT: grows (it would not, had each update begun an epoch).
  assert.equal(t.onCreditUpdate(60_000, 3, 10), 200_000);
  assert.equal(t.onCreditUpdate(100_000, 4, 10), 200_000, 'a new epoch began at 60 000');
});

test('WindowTuner: atLeast raises the window but never past the ceiling, and never lowers it', () => {
  const t = new WindowTuner(100_000, 300_000);
  assert.equal(t.atLeast(50_000), false);
  assert.equal(t.atLeast(250_000), true);
  assert.equal(t.value, 250_000);
  assert.equal(t.atLeast(900_000), true);
  assert.equal(t.value, 300_000);
});
