import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  HUFFMAN_CODES,
  HUFFMAN_LENGTHS,
  huffmanDecode,
  huffmanDecodeLatin1,
  huffmanEncode,
  huffmanEncodedLength,
} from '../../src/h3/qpack/huffman.js';
import { ByteCursor, INCOMPLETE, prefixIntLength, readPrefixInt, writePrefixInt } from '../../src/h3/qpack/primitives.js';
import { DecodeError } from '../../src/util/varint.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** RFC 7541 Appendix C.4 (requests) and C.6 (responses): every Huffman-coded string literal. */
const VECTORS: [string, string][] = [
  ['www.example.com', 'f1e3 c2e5 f23a 6ba0 ab90 f4ff'],
  ['no-cache', 'a8eb 1064 9cbf'],
  ['custom-key', '25a8 49e9 5ba9 7d7f'],
  ['custom-value', '25a8 49e9 5bb8 e8b4 bf'],
  ['302', '6402'],
  ['private', 'aec3 771a 4b'],
  ['Mon, 21 Oct 2013 20:13:21 GMT', 'd07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff'],
  ['https://www.example.com', '9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3'],
  ['307', '640e ff'],
  ['Mon, 21 Oct 2013 20:13:22 GMT', 'd07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff'],
  ['gzip', '9bd9 ab'],
  [
    'foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1',
    '94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f 9587 3160 65c0 03ed 4ee5 b106 3d50 07',
  ],
];

test('RFC 7541 C.4/C.6 Huffman strings encode and decode exactly', () => {
  for (const [plain, coded] of VECTORS) {
    const want = hex(coded);
    assert.equal(huffmanEncode(Buffer.from(plain, 'latin1')).toString('hex'), want.toString('hex'), plain);
    assert.equal(huffmanEncodedLength(Buffer.from(plain, 'latin1')), want.length, plain);
    assert.equal(huffmanDecode(want).toString('latin1'), plain);
    assert.equal(huffmanDecodeLatin1(want, 0, want.length), plain);
  }
});

test('derived canonical codes match the RFC 7541 Appendix B hex column (spot checks) and form a complete code', () => {
  const rows: [number, number, number][] = [
    [0, 0x1ff8, 13],
    [1, 0x7fffd8, 23],
    [9, 0xffffea, 24],
    [10, 0x3ffffffc, 30],
    [32, 0x14, 6],
    [48, 0x0, 5],
    [58, 0x5c, 7],
    [92, 0x7fff0, 19],
    [127, 0xffffffc, 28],
    [128, 0xfffe6, 20],
    [199, 0x1ffffec, 25],
    [203, 0x7ffffde, 27],
    [230, 0x1fffe8, 21],
    [255, 0x3ffffee, 26],
    [256, 0x3fffffff, 30],
  ];
  for (const [sym, code, len] of rows) {
    assert.equal(HUFFMAN_LENGTHS[sym], len, `length of ${sym}`);
    assert.equal(HUFFMAN_CODES[sym], code, `code of ${sym}`);
  }
  let kraft = 0;
  for (let s = 0; s <= 256; s++) kraft += 2 ** (30 - HUFFMAN_LENGTHS[s]);
  assert.equal(kraft, 2 ** 30);
});

test('random byte strings round trip (seeded)', () => {
  let seed = 12345;
  const rnd = (n: number): number => {
    seed = (seed * 1103515245 + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  for (let iter = 0; iter < 500; iter++) {
    const len = rnd(iter < 450 ? 40 : 3000);
    const b = Buffer.alloc(len);
    for (let i = 0; i < len; i++) b[i] = rnd(256);
    const enc = huffmanEncode(b);
    assert.equal(enc.length, huffmanEncodedLength(b));
    assert.deepEqual(huffmanDecode(enc), b);
  }
  // Every single symbol, including the 30-bit ones.
  for (let s = 0; s < 256; s++) {
    const b = Buffer.from([s, s, s]);
    assert.deepEqual(huffmanDecode(huffmanEncode(b)), b);
  }
});

test('invalid padding and EOS are rejected', () => {
  // '0' is 00000; pad with zeros instead of ones.
  assert.throws(() => huffmanDecode(Buffer.from([0x00])), DecodeError);
  // 'a' (00011) + padding 111 is fine; 'a' + 000 is not.
  assert.equal(huffmanDecode(Buffer.from([0x1f])).toString(), 'a');
  assert.throws(() => huffmanDecode(Buffer.from([0x18])), DecodeError);
  // A whole byte of ones is padding longer than 7 bits.
  assert.throws(() => huffmanDecode(Buffer.from([0xff])), DecodeError);
  assert.throws(() => huffmanDecode(Buffer.concat([hex('f1e3 c2e5 f23a 6ba0 ab90 f4ff'), Buffer.from([0xff])])), DecodeError);
  // EOS (30 ones) inside the string.
  assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xfc])), DecodeError);
  assert.throws(() => huffmanDecode(Buffer.from([0xff, 0xff, 0xff, 0xff])), DecodeError);
  // Empty input decodes to empty.
  assert.equal(huffmanDecode(Buffer.alloc(0)).length, 0);
});

test('decoded output is bounded', () => {
  const enc = huffmanEncode(Buffer.from('a'.repeat(100)));
  assert.equal(huffmanDecode(enc, 100).length, 100);
  assert.throws(() => huffmanDecode(enc, 99), /too long/);
});

test('RFC 7541 C.1 prefixed integer examples', () => {
  const cases: [number, number, string][] = [
    [10, 5, '0a'],
    [1337, 5, '1f9a0a'],
    [42, 8, '2a'],
  ];
  for (const [v, prefix, want] of cases) {
    const buf = Buffer.alloc(8);
    const end = writePrefixInt(buf, 0, prefix, 0, v);
    assert.equal(buf.subarray(0, end).toString('hex'), want);
    assert.equal(prefixIntLength(prefix, v), end);
    const cur = new ByteCursor(buf, 0, end);
    assert.equal(readPrefixInt(cur, prefix), v);
    assert.equal(cur.pos, end);
    // Flags above the prefix are ignored by the reader.
    const flagged = Buffer.from(buf.subarray(0, end));
    if (prefix < 8) flagged[0] |= 0xe0 & ~((1 << prefix) - 1);
    assert.equal(readPrefixInt(new ByteCursor(flagged, 0, end), prefix), v);
    // Truncated input is reported as incomplete without moving.
    if (end > 1) {
      const c2 = new ByteCursor(buf, 0, end - 1);
      assert.equal(readPrefixInt(c2, prefix), INCOMPLETE);
      assert.equal(c2.pos, 0);
    }
  }
  // 62-bit values that do not fit a JS number exactly are rejected rather than misread.
  const big = Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
  assert.throws(() => readPrefixInt(new ByteCursor(big, 0, big.length), 8), DecodeError);
  // Round trip near 2^53.
  const buf = Buffer.alloc(16);
  const end = writePrefixInt(buf, 0, 6, 0, Number.MAX_SAFE_INTEGER - 5);
  assert.equal(readPrefixInt(new ByteCursor(buf, 0, end), 6), Number.MAX_SAFE_INTEGER - 5);
});
