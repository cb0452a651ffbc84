/**
 * The pooled random source (src/util/random.ts): ranges filled exactly, no value handed out twice across pool refills,
 * the direct path for large requests, bytes zeroed in the pool as they leave, randomBelow's range and rough uniformity,
 * and bad arguments refused.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBelow, randomBuffer, randomFill } from '../../src/util/random.js';

test('randomFill writes exactly the range asked for, and successive draws differ (across several pool refills)', () => {
  const seen = new Set<string>();
  for (let i = 0; i < 3000; i++) {
    // 3000 draws of 20 bytes: about 15 refills of the 4 KiB pool.
    const out = Buffer.alloc(40, 0xaa);
    randomFill(out, 10, 20);
    assert.ok(out.subarray(0, 10).every((b) => b === 0xaa) && out.subarray(30).every((b) => b === 0xaa), 'nothing outside the range');
    const v = out.subarray(10, 30).toString('hex');
    assert.ok(!seen.has(v), 'a 20-byte value came out twice');
    seen.add(v);
  }
  const all = Buffer.concat([...seen].map((h) => Buffer.from(h, 'hex')));
  const counts = new Array<number>(256).fill(0);
  for (const b of all) counts[b]!++;
  const mean = all.length / 256;
  assert.ok(counts.every((c) => c > mean * 0.7 && c < mean * 1.3), 'byte values roughly uniform');
});

test('randomBuffer: lengths 0, 1, 32, the pool boundary and the direct path (over 512 bytes)', () => {
  assert.equal(randomBuffer(0).length, 0);
  assert.equal(randomBuffer(1).length, 1);
  const a = randomBuffer(32);
  const b = randomBuffer(32);
  assert.equal(a.length, 32);
  assert.notDeepEqual(a, b);
  for (const n of [512, 513, 4096, 10000]) {
    const big = randomBuffer(n);
    assert.equal(big.length, n);
    assert.ok(new Set(big).size > 200, `${n} bytes are not random-looking`);
  }
});

test('randomBelow: always in range, every value reached, roughly uniform; bad n refused', () => {
  const counts = [0, 0, 0];
  for (let i = 0; i < 30000; i++) counts[randomBelow(3)]!++;
  assert.ok(counts.every((c) => c > 9000 && c < 11000), `counts ${counts.join(', ')}`);
  for (let i = 0; i < 2000; i++) {
    const v = randomBelow(2 ** 24);
    assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** 24);
  }
  assert.equal(randomBelow(1), 0);
  assert.ok(randomBelow(2 ** 32) < 2 ** 32);
  for (const bad of [0, -1, 1.5, 2 ** 32 + 1, Number.NaN]) assert.throws(() => randomBelow(bad), /randomBelow: n must be an integer/);
  assert.throws(() => randomFill(Buffer.alloc(4), 2, 3), /out of bounds/);
});
