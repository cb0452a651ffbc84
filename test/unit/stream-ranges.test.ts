import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RangeSet } from '../../src/quic/stream/ranges.js';
import { prng } from '../util/prng.js';

function list(r: RangeSet): [number, number][] {
  return [...r];
}

test('RangeSet: empty set', () => {
  const r = new RangeSet();
  assert.equal(r.size, 0);
  assert.equal(r.first(), undefined);
  assert.equal(r.has(0), false);
  assert.equal(r.containsRange(0, 0), true);
  assert.equal(r.containsRange(0, 1), false);
  assert.equal(r.remove(0, 10), 0);
  assert.deepEqual(r.gaps(2, 5), [[2, 5]]);
});

test('RangeSet: empty and inverted adds are ignored', () => {
  const r = new RangeSet();
  assert.equal(r.add(5, 5), 0);
  assert.equal(r.add(7, 3), 0);
  assert.equal(r.size, 0);
});

test('RangeSet: touching ranges merge, disjoint stay sorted', () => {
  const r = new RangeSet();
  r.add(10, 20);
  r.add(0, 5);
  r.add(30, 40);
  assert.deepEqual(list(r), [[0, 5], [10, 20], [30, 40]]);
  assert.equal(r.add(5, 10), 5); // touches both sides: fills the hole exactly
  assert.deepEqual(list(r), [[0, 20], [30, 40]]);
  assert.equal(r.add(20, 30), 10);
  assert.deepEqual(list(r), [[0, 40]]);
  assert.equal(r.size, 1);
});

test('RangeSet: add spanning several ranges reports only new positions', () => {
  const r = new RangeSet();
  r.add(2, 4);
  r.add(6, 8);
  r.add(10, 12);
  assert.equal(r.add(0, 20), 20 - 6);
  assert.deepEqual(list(r), [[0, 20]]);
  assert.equal(r.add(3, 9), 0); // duplicate
  assert.equal(r.add(15, 25), 5); // overlap at the end
  assert.deepEqual(list(r), [[0, 25]]);
});

test('RangeSet: has is half-open', () => {
  const r = new RangeSet();
  r.add(3, 6);
  assert.equal(r.has(2), false);
  assert.equal(r.has(3), true);
  assert.equal(r.has(5), true);
  assert.equal(r.has(6), false);
});

test('RangeSet: remove splits, trims and deletes', () => {
  const r = new RangeSet();
  r.add(0, 100);
  assert.equal(r.remove(40, 60), 20);
  assert.deepEqual(list(r), [[0, 40], [60, 100]]);
  assert.equal(r.remove(0, 10), 10); // trim front
  assert.equal(r.remove(90, 200), 10); // trim back, past the end
  assert.deepEqual(list(r), [[10, 40], [60, 90]]);
  assert.equal(r.remove(40, 60), 0); // exactly the hole
  assert.equal(r.remove(35, 65), 10); // across the hole
  assert.deepEqual(list(r), [[10, 35], [65, 90]]);
  assert.equal(r.remove(0, 1000), 50);
  assert.equal(r.size, 0);
});

test('RangeSet: containsRange and gaps', () => {
  const r = new RangeSet();
  r.add(0, 10);
  r.add(20, 30);
  assert.equal(r.containsRange(0, 10), true);
  assert.equal(r.containsRange(2, 8), true);
  assert.equal(r.containsRange(5, 15), false);
  assert.equal(r.containsRange(9, 21), false);
  assert.equal(r.containsRange(25, 25), true);
  assert.deepEqual(r.gaps(0, 40), [[10, 20], [30, 40]]);
  assert.deepEqual(r.gaps(5, 25), [[10, 20]]);
  assert.deepEqual(r.gaps(2, 8), []);
  assert.deepEqual(r.gaps(12, 18), [[12, 18]]);
  assert.deepEqual(r.first(), [0, 10]);
  assert.deepEqual(r.last(), [20, 30]);
  r.clear();
  assert.equal(r.size, 0);
});

test('RangeSet: values beyond 2^32 work', () => {
  const r = new RangeSet();
  const big = 2 ** 40;
  r.add(big, big + 10);
  r.add(big + 10, big + 20);
  assert.deepEqual(list(r), [[big, big + 20]]);
  assert.equal(r.has(big + 19), true);
});

test('RangeSet: randomized against a bitmap model (seeded)', () => {
  const rnd = prng(1234);
  const N = 200;
  const r = new RangeSet();
  const bits = new Uint8Array(N);
  for (let step = 0; step < 5000; step++) {
    const a = Math.floor(rnd() * N);
    const b = Math.min(N, a + Math.floor(rnd() * 30));
    let changed = 0;
    if (rnd() < 0.6) {
      for (let i = a; i < b; i++) {
        if (!bits[i]) {
          bits[i] = 1;
          changed++;
        }
      }
      assert.equal(r.add(a, b), changed);
    } else {
      for (let i = a; i < b; i++) {
        if (bits[i]) {
          bits[i] = 0;
          changed++;
        }
      }
      assert.equal(r.remove(a, b), changed);
    }
    // Rebuild the expected merged list from the bitmap.
    const want: [number, number][] = [];
    for (let i = 0; i < N; i++) {
      if (!bits[i]) continue;
      if (want.length && want[want.length - 1][1] === i) want[want.length - 1][1] = i + 1;
      else want.push([i, i + 1]);
    }
    assert.deepEqual(list(r), want);
    const p = Math.floor(rnd() * N);
    assert.equal(r.has(p), bits[p] === 1);
    assert.equal(r.totalLength, bits.reduce((s, v) => s + v, 0));
  }
});
