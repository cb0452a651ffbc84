import { test } from 'node:test';
import assert from 'node:assert/strict';
import { encodeVarint, Reader, varintLength, DecodeError } from '../../src/util/varint.js';

test('varint: RFC 9000 Appendix A.1 examples decode', () => {
  const cases: [string, number][] = [
    ['c2197c5eff14e88c', Number(151288809941952652n)],
    ['9d7f3e7d', 494878333],
    ['7bbd', 15293],
    ['25', 37],
    ['4025', 37],
  ];
  for (const [hex, v] of cases) {
    const r = new Reader(Buffer.from(hex, 'hex'));
    assert.equal(r.varint(), v, hex);
    assert.ok(r.atEnd());
  }
});

test('varint: round trips at every length boundary', () => {
  for (const v of [0, 63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30, 2 ** 40 + 5, Number.MAX_SAFE_INTEGER]) {
    const b = encodeVarint(v);
    assert.equal(b.length, varintLength(v));
    assert.equal(new Reader(b).varint(), v);
  }
});

test('varint: truncated input throws DecodeError', () => {
  assert.throws(() => new Reader(Buffer.from('9d7f3e', 'hex')).varint(), DecodeError);
  assert.throws(() => new Reader(Buffer.alloc(0)).varint(), DecodeError);
});
