/**
 * The endpoint's deadline heap (src/quic/deadline-heap.ts): against a plain model under random insert / move /
 * delete, the earliest deadline and its item are always right, every item is there at most once, and a deleted item
 * leaves no entry (the index empties with the heap).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DeadlineHeap } from '../../src/quic/deadline-heap.js';
import { prng } from '../util/prng.js';

/** Internals read for the checks only. */
type Inner = { items: number[]; times: number[]; index: Map<number, number> };

function checkInvariants(h: DeadlineHeap<number>): void {
  const { items, times, index } = h as unknown as Inner;
  assert.equal(index.size, items.length, 'one index entry per heap slot');
  assert.equal(times.length, items.length);
  for (let i = 0; i < items.length; i++) {
    assert.equal(index.get(items[i]), i, `slot ${i} is indexed at its position`);
    if (i > 0) assert.ok(times[(i - 1) >> 1] <= times[i], `heap order at slot ${i}`);
  }
}

test('deadline heap: random insert/move/delete agree with a model; the earliest item is always on top', () => {
  const rand = prng(1234);
  const h = new DeadlineHeap<number>();
  const model = new Map<number, number>();
  for (let step = 0; step < 20_000; step++) {
    const item = Math.floor(rand() * 300);
    const r = rand();
    if (r < 0.6) {
      // Deadlines with ties, and moves both ways (a far one to near and back: the endpoint's busy connection).
      const at = rand() < 0.2 ? 1000 : Math.floor(rand() * 2000);
      h.set(item, at);
      model.set(item, at);
    } else {
      h.delete(item);
      model.delete(item);
    }
    assert.equal(h.size, model.size);
    assert.equal(h.has(item), model.has(item));
    assert.equal(h.timeOf(item), model.get(item));
    const min = Math.min(...model.values());
    assert.equal(h.peekTime(), model.size ? min : Infinity);
    if (model.size) assert.equal(model.get(h.peekItem()!), min, 'the top item has the earliest deadline');
    else assert.equal(h.peekItem(), undefined);
    if (step % 500 === 0) checkInvariants(h);
  }
  checkInvariants(h);
  // Draining in order: deadlines come out sorted, and nothing is left behind.
  let last = -Infinity;
  while (h.size) {
    const t = h.peekTime();
    assert.ok(t >= last, 'popped in deadline order');
    last = t;
    h.delete(h.peekItem()!);
  }
  assert.equal((h as unknown as Inner).index.size, 0, 'no entry left once every item is deleted');
  assert.equal(h.peekTime(), Infinity);
});

test('deadline heap: one item moving between the top and the bottom of 10,000 keeps the order of all', () => {
  const h = new DeadlineHeap<number>();
  for (let i = 0; i < 10_000; i++) h.set(i, 600_000 + i);
  for (let k = 0; k < 50; k++) {
    h.set(-1, k % 2 ? 5 : 700_000);
    assert.equal(h.peekItem(), k % 2 ? -1 : 0);
    assert.equal(h.peekTime(), k % 2 ? 5 : 600_000);
  }
  checkInvariants(h);
  h.delete(-1);
  h.delete(0);
  assert.equal(h.peekItem(), 1);
  checkInvariants(h);
});
