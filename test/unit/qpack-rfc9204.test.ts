import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QpackDecoder } from '../../src/h3/qpack/decoder.js';
import { QpackEncoder } from '../../src/h3/qpack/encoder.js';
import { QpackError, QpackErrorCode } from '../../src/h3/qpack/errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const takeHex = (d: QpackDecoder): string | null => d.takeDecoderStreamData()?.toString('hex') ?? null;

// RFC 9204 Appendix B: the examples use SETTINGS_QPACK_MAX_TABLE_CAPACITY = 220 (MaxEntries = 6).
const B1_STREAM0 = '0000 510b 2f69 6e64 6578 2e68 746d 6c';
const B2_ENCODER = '3fbd01 c00f 7777 772e 6578 616d 706c 652e 636f 6d c10c 2f73 616d 706c 652f 7061 7468';
const B2_STREAM4 = '0381 10 11';
const B3_ENCODER = '4a63 7573 746f 6d2d 6b65 790c 6375 7374 6f6d 2d76 616c 7565';
const B4_ENCODER = '02';
const B4_STREAM8 = '0500 80 c1 81';
const B5_ENCODER = '810d 6375 7374 6f6d 2d76 616c 7565 32';

function newDecoder(): QpackDecoder {
  return new QpackDecoder({ maxTableCapacity: 220, maxBlockedStreams: 16 });
}

test('RFC 9204 B.1-B.5 in order, with the stream cancellation of B.4', () => {
  const d = newDecoder();
  // B.1 Literal Field Line With Name Reference
  assert.deepEqual(d.decode(0, hex(B1_STREAM0)), [[':path', '/index.html']]);
  assert.equal(takeHex(d), null, 'no acknowledgment for a section without dynamic references');

  // B.2 Dynamic Table
  assert.deepEqual(d.onEncoderStreamData(hex(B2_ENCODER)), []);
  assert.equal(d.tableSize, 106);
  assert.deepEqual(d.decode(4, hex(B2_STREAM4)), [
    [':authority', 'www.example.com'],
    [':path', '/sample/path'],
  ]);
  assert.equal(takeHex(d), '84', 'Section Acknowledgment (stream=4)');

  // B.3 Speculative Insert
  d.onEncoderStreamData(hex(B3_ENCODER));
  assert.equal(d.tableSize, 160);
  assert.equal(takeHex(d), '01', 'Insert Count Increment (1)');

  // B.4 Duplicate Instruction, Stream Cancellation: the encoder stream packet is delayed.
  assert.equal(d.decode(8, hex(B4_STREAM8)), 'blocked');
  assert.equal(d.blockedStreamCount, 1);
  d.cancelStream(8);
  assert.equal(d.blockedStreamCount, 0);
  assert.equal(takeHex(d), '48', 'Stream Cancellation (Stream=8)');
  assert.deepEqual(d.onEncoderStreamData(hex(B4_ENCODER)), [], 'a cancelled stream is not reported as unblocked');
  assert.equal(d.tableSize, 217);
  assert.equal(d.totalInserts, 4);

  // B.5 Dynamic Table Insert, Eviction
  d.onEncoderStreamData(hex(B5_ENCODER));
  assert.equal(d.tableSize, 215);
  assert.equal(d.totalInserts, 5);
  // Check the table contents (abs 1..4) with a section of our own: RIC = 5 -> encoded 6, Base = 5.
  assert.deepEqual(d.decode(12, hex('0600 80 81 82 83')), [
    ['custom-key', 'custom-value2'],
    [':authority', 'www.example.com'],
    ['custom-key', 'custom-value'],
    [':path', '/sample/path'],
  ]);
  // Absolute index 0 was evicted.
  assert.throws(
    () => d.decode(16, hex('0600 84')),
    (e: unknown) => e instanceof QpackError && e.code === QpackErrorCode.QPACK_DECOMPRESSION_FAILED,
  );
});

test('RFC 9204 B.4 variant: the blocked section decodes once the Duplicate arrives', () => {
  const d = newDecoder();
  d.onEncoderStreamData(hex(B2_ENCODER));
  d.decode(4, hex(B2_STREAM4));
  d.onEncoderStreamData(hex(B3_ENCODER));
  assert.equal(takeHex(d), '8401');
  const section = hex(B4_STREAM8);
  assert.equal(d.decode(8, section), 'blocked');
  assert.equal(d.decode(8, section), 'blocked', 'asking again while still blocked');
  assert.equal(takeHex(d), null);
  assert.deepEqual(d.onEncoderStreamData(hex(B4_ENCODER)), [8]);
  const want = [
    [':authority', 'www.example.com'],
    [':path', '/'],
    ['custom-key', 'custom-value'],
  ];
  assert.deepEqual(d.decode(8, section), want);
  assert.equal(takeHex(d), '88', 'Section Acknowledgment (stream=8) covers the duplicate');
});

test('RFC 9204 B.2 fed one byte at a time (partial encoder instructions are buffered)', () => {
  const d = newDecoder();
  const enc = hex(B2_ENCODER + B3_ENCODER);
  for (let i = 0; i < enc.length; i++) d.onEncoderStreamData(enc.subarray(i, i + 1));
  assert.equal(d.totalInserts, 3);
  assert.equal(d.tableSize, 160);
  assert.deepEqual(d.decode(4, hex(B2_STREAM4)), [
    [':authority', 'www.example.com'],
    [':path', '/sample/path'],
  ]);
  assert.equal(takeHex(d), '8401');
});

test('resume() decodes the kept bytes of an unblocked stream', () => {
  const d = newDecoder();
  assert.equal(d.decode(4, hex(B2_STREAM4)), 'blocked');
  assert.deepEqual(d.onEncoderStreamData(hex(B2_ENCODER)), [4]);
  assert.deepEqual(d.resume(4), [
    [':authority', 'www.example.com'],
    [':path', '/sample/path'],
  ]);
  assert.equal(takeHex(d), '84');
});

test('our encoder produces the RFC B.2 encoder-stream bytes and accepts the RFC acknowledgment', () => {
  const e = new QpackEncoder({ maxTableCapacity: 220, huffman: false });
  e.applyPeerSettings(220, 16);
  const section = e.encode(4, [[':authority', 'www.example.com']]);
  assert.equal(
    e.takeEncoderStreamData()?.toString('hex'),
    hex('3fbd01 c00f 7777 772e 6578 616d 706c 652e 636f 6d').toString('hex'),
  );
  // RIC = 1 (encoded 2), Base = 0 -> sign 1, delta 0; one post-base indexed line.
  assert.equal(section.toString('hex'), '028010');
  assert.equal(e.blockingStreamCount, 1);
  e.onDecoderStreamData(hex('84'));
  assert.equal(e.knownReceivedCount, 1);
  assert.equal(e.blockingStreamCount, 0);
  // Now acknowledged: a new section references it with a plain (pre-base) index.
  assert.equal(e.encode(8, [[':authority', 'www.example.com']]).toString('hex'), '020080');
  assert.equal(e.takeEncoderStreamData(), null);
  // And the decoder of the RFC examples decodes both.
  const d = newDecoder();
  d.onEncoderStreamData(hex('3fbd01 c00f 7777 772e 6578 616d 706c 652e 636f 6d'));
  assert.deepEqual(d.decode(4, hex('028010')), [[':authority', 'www.example.com']]);
  assert.deepEqual(d.decode(8, hex('020080')), [[':authority', 'www.example.com']]);
});

test('entries survive the encoder raising the table capacity', () => {
  const d = new QpackDecoder({ maxTableCapacity: 4096, maxBlockedStreams: 0 });
  // Capacity 64, insert x=y, capacity 4096, insert x=z.
  d.onEncoderStreamData(hex('3f21 4178 0179 3fe11f 4178 017a'));
  assert.equal(d.tableSize, 68);
  // RIC 2 (MaxEntries 128 -> encoded 3), Base 2.
  assert.deepEqual(d.decode(0, hex('0300 80 81')), [
    ['x', 'z'],
    ['x', 'y'],
  ]);
  // Lowering the capacity evicts from the oldest end.
  d.onEncoderStreamData(hex('3f03')); // capacity 34
  assert.equal(d.tableSize, 34);
  assert.throws(() => d.decode(4, hex('0300 81')), QpackError);
  assert.deepEqual(d.decode(8, hex('0300 80')), [['x', 'z']]);
});
