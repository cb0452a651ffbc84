import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QpackDecoder } from '../../src/h3/qpack/decoder.js';
import { QpackEncoder } from '../../src/h3/qpack/encoder.js';
import { QpackError, QpackErrorCode, QpackFieldSectionTooLargeError } from '../../src/h3/qpack/errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const { QPACK_DECOMPRESSION_FAILED: FAILED, QPACK_ENCODER_STREAM_ERROR: ENC, QPACK_DECODER_STREAM_ERROR: DEC } =
  QpackErrorCode;

function isQpack(code: number, tooLarge = false) {
  return (e: unknown): boolean => {
    assert.ok(e instanceof QpackError, `expected QpackError, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    assert.equal(e instanceof QpackFieldSectionTooLargeError, tooLarge, e.message);
    return true;
  };
}

const dec = (maxTableCapacity = 220, maxBlockedStreams = 4, maxFieldSectionSize?: number): QpackDecoder =>
  new QpackDecoder({ maxTableCapacity, maxBlockedStreams, maxFieldSectionSize });

// ------------------------------------------------------------------ field sections

test('static index past the table is QPACK_DECOMPRESSION_FAILED', () => {
  assert.deepEqual(dec().decode(0, hex('0000 ff23')), [['x-frame-options', 'sameorigin']]); // index 98
  assert.throws(() => dec().decode(0, hex('0000 ff24')), isQpack(FAILED)); // indexed, static 99
  assert.throws(() => dec().decode(0, hex('0000 5f54 00')), isQpack(FAILED)); // literal, static name 99
});

test('invalid Required Insert Count, Base and references are QPACK_DECOMPRESSION_FAILED', () => {
  // MaxEntries = 6, FullRange = 12: encoded 13 is invalid.
  assert.throws(() => dec().decode(0, hex('0d00')), isQpack(FAILED));
  // Encoded RIC 1 with Insert Count 0 decodes to RIC 0, which must be encoded as 0.
  assert.throws(() => dec().decode(0, hex('0100')), isQpack(FAILED));
  // Any RIC with a zero-capacity decoder (MaxEntries 0).
  assert.throws(() => dec(0).decode(0, hex('0100')), isQpack(FAILED));
  // Negative Base: RIC 1, sign bit, delta 1 -> Base = -1.
  const d = dec();
  d.onEncoderStreamData(hex('3fbd01 c00f 7777 772e 6578 616d 706c 652e 636f 6d')); // one entry
  assert.throws(() => d.decode(0, hex('0281')), isQpack(FAILED));
  // Reference at or beyond the Required Insert Count: RIC 1, Base 1, post-base index 0 = abs 1.
  assert.throws(() => d.decode(0, hex('0200 10')), isQpack(FAILED));
  // Relative index 1 from Base 1 = abs -1.
  assert.throws(() => d.decode(0, hex('0200 81')), isQpack(FAILED));
  // Dynamic reference in a section that declares RIC 0.
  assert.throws(() => d.decode(0, hex('0000 80')), isQpack(FAILED));
  // Truncated prefix / line.
  assert.throws(() => d.decode(0, hex('02')), isQpack(FAILED));
  assert.throws(() => d.decode(0, hex('0000 5103 2f61')), isQpack(FAILED));
  // Valid reference still works.
  assert.deepEqual(d.decode(0, hex('0200 80')), [[':authority', 'www.example.com']]);
});

test('bad Huffman in a field section is QPACK_DECOMPRESSION_FAILED', () => {
  assert.throws(() => dec().decode(0, hex('0000 5181 00')), isQpack(FAILED)); // zero padding
  assert.throws(() => dec().decode(0, hex('0000 5184 ffff ffff')), isQpack(FAILED)); // EOS
});

test('too many blocked streams and too many blocked bytes are QPACK_DECOMPRESSION_FAILED', () => {
  const d = dec(220, 2);
  assert.equal(d.decode(0, hex('0200 80')), 'blocked');
  assert.equal(d.decode(4, hex('0200 80')), 'blocked');
  assert.throws(() => d.decode(8, hex('0200 80')), isQpack(FAILED));
  assert.throws(() => dec(220, 0).decode(0, hex('0200 80')), isQpack(FAILED));
  const small = new QpackDecoder({ maxTableCapacity: 220, maxBlockedStreams: 10, maxBlockedBytes: 10 });
  assert.equal(small.decode(0, hex('0200 80 80 80')), 'blocked');
  assert.throws(() => small.decode(4, hex('0200 80 80 80 80 80 80 80')), isQpack(FAILED));
});

test('a huge literal beyond maxFieldSectionSize is rejected before it is read', () => {
  const d = dec(220, 4, 1000);
  // Literal with static name ':authority', value length 1,000,000 declared; only 3 bytes of it present.
  const len = 1_000_000 - 127;
  const lenBytes: number[] = [];
  for (let v = len; ; v = Math.floor(v / 128)) {
    if (v < 128) {
      lenBytes.push(v);
      break;
    }
    lenBytes.push((v % 128) | 0x80);
  }
  const section = Buffer.from([0x00, 0x00, 0x50, 0x7f, ...lenBytes, 0x61, 0x62, 0x63]);
  let caught: unknown;
  try {
    d.decode(0, section);
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof QpackFieldSectionTooLargeError);
  assert.equal(caught.fieldSectionTooLarge, true);
  assert.equal(caught.code, FAILED);
  assert.equal(caught.streamId, 0);
  // Huffman-coded: 400 x 'a' (00011) take 250 bytes: they fit in 1000 but not in 300. Eight symbols = 5 bytes.
  const body = Buffer.alloc(250);
  for (let i = 0; i < 250; i += 5) body.set([0x18, 0xc6, 0x31, 0x8c, 0x63], i);
  const huff = Buffer.concat([Buffer.from([0x00, 0x00, 0x50, 0xff, 250 - 127]), body]);
  const ok = dec(220, 4, 1000).decode(0, huff);
  assert.ok(ok !== 'blocked');
  assert.equal(ok[0][1], 'a'.repeat(400));
  assert.throws(() => dec(220, 4, 300).decode(0, huff), isQpack(FAILED, true));
  // Many small lines adding up past the limit (RFC 9114 §4.2.2 accounting: name + value + 32 each).
  const many = Buffer.concat([hex('0000'), Buffer.alloc(40, 0xd1)]); // 40 x ':method GET' = 40 * 42 bytes
  assert.equal((dec(220, 4, 40 * 42).decode(0, many) as unknown[]).length, 40);
  assert.throws(() => dec(220, 4, 40 * 42 - 1).decode(0, many), isQpack(FAILED, true));
  // The decoder is still usable afterwards.
  assert.deepEqual(d.decode(4, hex('0000 d1')), [[':method', 'GET']]);
});

// ------------------------------------------------------------------ encoder stream (decoder side)

test('invalid encoder-stream instructions are QPACK_ENCODER_STREAM_ERROR', () => {
  // Capacity above what we advertised (220 -> 221 = 0x3f 0xbe 0x01).
  assert.throws(() => dec().onEncoderStreamData(hex('3fbe01')), isQpack(ENC));
  // Insert with a name reference to a missing dynamic entry.
  assert.throws(() => dec().onEncoderStreamData(hex('3fbd01 8001 61')), isQpack(ENC));
  // Insert with a static name reference past the table.
  assert.throws(() => dec().onEncoderStreamData(hex('3fbd01 ff24 0161')), isQpack(ENC));
  // Duplicate of a missing entry.
  assert.throws(() => dec().onEncoderStreamData(hex('3fbd01 00')), isQpack(ENC));
  // Insert before any capacity was set (capacity 0: no entry fits).
  assert.throws(() => dec().onEncoderStreamData(hex('c0 0161')), isQpack(ENC));
  // Entry larger than the capacity: capacity 40, ':authority' (10) + 'www.example.com' (15) + 32 = 57.
  assert.throws(() => dec().onEncoderStreamData(hex('3f09 c00f 7777 772e 6578 616d 706c 652e 636f 6d')), isQpack(ENC));
  // ...rejected from its length alone, before the value bytes arrive.
  assert.throws(() => dec().onEncoderStreamData(hex('3f09 c07f 05')), isQpack(ENC));
  // Bad Huffman in an inserted value.
  assert.throws(() => dec().onEncoderStreamData(hex('3fbd01 c081 00')), isQpack(ENC));
});

// ------------------------------------------------------------------ decoder stream (encoder side)

function encoderWithOneInsert(): QpackEncoder {
  const e = new QpackEncoder({ maxTableCapacity: 4096 });
  e.applyPeerSettings(4096, 10);
  e.encode(0, [['user-agent', 'test-agent']]);
  assert.equal(e.totalInserts, 1);
  return e;
}

test('invalid decoder-stream instructions are QPACK_DECODER_STREAM_ERROR', () => {
  // Section Acknowledgment for a stream with nothing outstanding.
  assert.throws(() => encoderWithOneInsert().onDecoderStreamData(hex('84')), isQpack(DEC));
  const e = encoderWithOneInsert();
  e.onDecoderStreamData(hex('80'));
  assert.throws(() => e.onDecoderStreamData(hex('80')), isQpack(DEC), 'acknowledged twice');
  // Insert Count Increment of 0, and beyond the inserts made.
  assert.throws(() => encoderWithOneInsert().onDecoderStreamData(hex('00')), isQpack(DEC));
  assert.throws(() => encoderWithOneInsert().onDecoderStreamData(hex('02')), isQpack(DEC));
  const e2 = encoderWithOneInsert();
  e2.onDecoderStreamData(hex('01'));
  assert.throws(() => e2.onDecoderStreamData(hex('01')), isQpack(DEC));
  // Stream Cancellation for an unknown stream is harmless.
  encoderWithOneInsert().onDecoderStreamData(hex('4c'));
});

test('partial decoder-stream instructions are buffered', () => {
  const e = new QpackEncoder();
  e.applyPeerSettings(4096, 10);
  e.encode(200, [['user-agent', 'x']]); // stream 200 needs a 2-byte Section Acknowledgment
  assert.equal(e.blockingStreamCount, 1);
  const ack = Buffer.from([0xff, 200 - 127]);
  e.onDecoderStreamData(ack.subarray(0, 1));
  assert.equal(e.blockingStreamCount, 1);
  e.onDecoderStreamData(ack.subarray(1));
  assert.equal(e.blockingStreamCount, 0);
  assert.equal(e.knownReceivedCount, 1);
});

test('encoder rejects non-latin1 strings', () => {
  const e = new QpackEncoder();
  assert.throws(() => e.encode(0, [['x-name', 'snow\u2603man']]), TypeError);
});
