import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FrameType,
  describeFrame,
  frameLength,
  frameTypeCode,
  isAckEliciting,
  isFrameAllowedIn,
  isProbing,
  parseFrames,
  streamFrameOverhead,
  writeFrame,
  writeStreamFrameHeader,
  FrameScratch,
  type Frame,
  type PacketKind,
} from '../../src/quic/frame/frames.js';
import { TransportError, TransportErrorCode } from '../../src/quic/errors.js';

const KINDS: PacketKind[] = ['initial', 'handshake', '0rtt', '1rtt'];
const FEE = TransportErrorCode.FRAME_ENCODING_ERROR;
const PV = TransportErrorCode.PROTOCOL_VIOLATION;

/** Varint length boundaries, plus the largest value a JS number holds exactly. */
const BOUNDARIES = [0, 1, 63, 64, 16383, 16384, 2 ** 30 - 1, 2 ** 30, Number.MAX_SAFE_INTEGER];

function encode(frames: Frame[]): Buffer {
  const total = frames.reduce((n, f) => n + frameLength(f), 0);
  const buf = Buffer.alloc(total);
  let off = 0;
  for (const f of frames) off = writeFrame(buf, off, f);
  assert.equal(off, total);
  return buf;
}

function expectError(payload: Buffer, kind: PacketKind, code: number, frameType: number): void {
  assert.throws(
    () => parseFrames(payload, kind),
    (e: unknown) => {
      assert.ok(e instanceof TransportError, `expected TransportError, got ${String(e)}`);
      assert.equal(e.code, code, e.message);
      assert.equal(e.frameType, frameType, e.message);
      return true;
    },
  );
}

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const bytes = (n: number, fill = 0xab): Buffer => Buffer.alloc(n, fill);

/** One sample of every frame variant, with the numeric fields set to v (kept legal). */
function samples(v: number): Frame[] {
  const small = Math.min(v, 2 ** 60);
  return [
    { type: 'ping' },
    { type: 'ack', ranges: [[v, v]], ackDelay: v },
    { type: 'ack', ranges: [[Math.max(0, v - 1), v]], ackDelay: 0, ecn: { ect0: v, ect1: 0, ce: v } },
    { type: 'reset_stream', streamId: v, errorCode: v, finalSize: v },
    { type: 'stop_sending', streamId: v, errorCode: v },
    { type: 'crypto', offset: v, data: bytes(5) },
    { type: 'new_token', token: bytes(1 + (v % 40)) },
    { type: 'stream', streamId: v, offset: v, data: bytes(3), fin: v % 2 === 0 },
    { type: 'stream', streamId: v, offset: 0, data: Buffer.alloc(0), fin: true },
    { type: 'max_data', max: v },
    { type: 'max_stream_data', streamId: v, max: v },
    { type: 'max_streams', bidi: true, max: small },
    { type: 'max_streams', bidi: false, max: small },
    { type: 'data_blocked', limit: v },
    { type: 'stream_data_blocked', streamId: v, limit: v },
    { type: 'streams_blocked', bidi: true, limit: small },
    { type: 'streams_blocked', bidi: false, limit: small },
    { type: 'new_connection_id', seq: v, retirePriorTo: v, cid: bytes(1 + (v % 20), 0x11), resetToken: bytes(16, 0x22) },
    { type: 'retire_connection_id', seq: v },
    { type: 'path_challenge', data: hex('0102030405060708') },
    { type: 'path_response', data: hex('f1f2f3f4f5f6f7f8') },
    { type: 'connection_close', application: false, errorCode: v, frameType: v, reason: 'bad ✓ frame' },
    { type: 'connection_close', application: true, errorCode: v, frameType: 0, reason: '' },
    { type: 'handshake_done' },
  ];
}

test('frames: every frame type round trips at each varint boundary, frameLength = bytes written', () => {
  for (const v of [...BOUNDARIES, 2 ** 60]) {
    for (const f of samples(v)) {
      const len = frameLength(f);
      const buf = Buffer.alloc(len + 7, 0xee);
      const end = writeFrame(buf, 3, f);
      assert.equal(end, 3 + len, `${describeFrame(f)}: frameLength vs written`);
      assert.equal(buf[3 + len], 0xee, 'wrote past frameLength');
      assert.equal(buf[3] & 0x3f, frameTypeCode(f) & 0x3f);
      const parsed = parseFrames(buf.subarray(3, end), '1rtt');
      assert.deepEqual(parsed, [f], describeFrame(f));
    }
  }
});

test('frames: ACK with several ranges round trips, in descending order', () => {
  const f: Frame = {
    type: 'ack',
    ranges: [
      [100, 120],
      [90, 98],
      [50, 50],
      [0, 48],
    ],
    ackDelay: 1234,
  };
  const buf = encode([f]);
  // type, largest 120, delay 1234, count 3, first 20, gap 0 (99 missing), len 8, gap 38, len 0, gap 0, len 48
  assert.deepEqual(buf, hex('02 4078 44d2 03 14 00 08 26 00 00 30'));
  assert.deepEqual(parseFrames(buf, '1rtt'), [f]);
});

test('frames: PADDING runs become one frame and round trip by length', () => {
  const buf = encode([{ type: 'ping' }, { type: 'padding', length: 10 }, { type: 'ping' }]);
  assert.deepEqual(buf, hex('01 00000000000000000000 01'));
  assert.deepEqual(parseFrames(buf, 'initial'), [{ type: 'ping' }, { type: 'padding', length: 10 }, { type: 'ping' }]);
  assert.deepEqual(parseFrames(Buffer.alloc(1200), 'initial'), [{ type: 'padding', length: 1200 }]);
});

test('frames: RFC 9001 A.2 client Initial payload is one CRYPTO frame of 241 bytes plus 917 bytes of PADDING', () => {
  const crypto = hex(`
    060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868
    04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578
    616d706c652e636f6dff01000100000a00080006001d00170018001000070005
    04616c706e000500050100000000003300260024001d00209370b2c9caa47fba
    baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400
    0d0010000e0403050306030203080408050806002d00020101001c0002400100
    3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000
    75300901100f088394c8f03e51570806048000ffff`);
  const payload = Buffer.concat([crypto, Buffer.alloc(917)]);
  assert.equal(payload.length, 1162);
  const frames = parseFrames(payload, 'initial');
  assert.equal(frames.length, 2);
  const [c, p] = frames;
  assert.ok(c.type === 'crypto');
  assert.equal(c.offset, 0);
  assert.equal(c.data.length, 241);
  assert.equal(c.data[0], 0x01, 'ClientHello handshake type');
  assert.deepEqual(p, { type: 'padding', length: 917 });
  // Re-encoding gives the same bytes (our encoder picks the same minimal varints as the RFC's client).
  assert.deepEqual(encode(frames), payload);
});

test('frames: RFC 9001 A.3 server Initial payload is ACK(0) then CRYPTO(ServerHello, 90 bytes)', () => {
  const payload = hex(`
    02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739
    88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94
    0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00
    020304`);
  const frames = parseFrames(payload, 'initial');
  assert.equal(frames.length, 2);
  assert.deepEqual(frames[0], { type: 'ack', ranges: [[0, 0]], ackDelay: 0 });
  const c = frames[1];
  assert.ok(c.type === 'crypto');
  assert.equal(c.offset, 0);
  assert.equal(c.data.length, 90);
  assert.equal(c.data[0], 0x02, 'ServerHello handshake type');
  assert.deepEqual(encode(frames), payload);
});

test('frames: RFC 9001 A.5 short-header payload 01 is a single PING', () => {
  assert.deepEqual(parseFrames(hex('01'), '1rtt'), [{ type: 'ping' }]);
});

test('frames: a coalesced sequence of frames parses in order', () => {
  const seq: Frame[] = [
    { type: 'ack', ranges: [[5, 9], [1, 2]], ackDelay: 17, ecn: { ect0: 3, ect1: 0, ce: 1 } },
    { type: 'max_data', max: 1_000_000 },
    { type: 'stream', streamId: 4, offset: 0, data: Buffer.from('GET /'), fin: false },
    { type: 'stream', streamId: 4, offset: 5, data: Buffer.from(' HTTP'), fin: true },
    { type: 'new_connection_id', seq: 1, retirePriorTo: 0, cid: bytes(8, 7), resetToken: bytes(16, 9) },
    { type: 'ping' },
    { type: 'handshake_done' },
    { type: 'padding', length: 4 },
  ];
  assert.deepEqual(parseFrames(encode(seq), '1rtt'), seq);
});

test('frames: STREAM without LEN bit runs to the end of the packet; OFF bit absent means offset 0', () => {
  // 0x09 = STREAM|FIN, no OFF, no LEN
  const frames = parseFrames(hex('01 09 04 68656c6c6f'), '1rtt');
  assert.deepEqual(frames, [
    { type: 'ping' },
    { type: 'stream', streamId: 4, offset: 0, data: Buffer.from('hello'), fin: true },
  ]);
  // 0x0c = STREAM|OFF, no LEN, no FIN
  assert.deepEqual(parseFrames(hex('0c 00 4100 6869'), '0rtt'), [
    { type: 'stream', streamId: 0, offset: 256, data: Buffer.from('hi'), fin: false },
  ]);
});

test('frames: writeStreamFrameHeader sets LEN always, OFF only for offset > 0, and matches streamFrameOverhead', () => {
  const cases: [number, number, number, boolean, number][] = [
    [0, 0, 10, false, 0x0a],
    [4, 0, 10, true, 0x0b],
    [8, 1, 10, false, 0x0e],
    [2 ** 40, 2 ** 50, 16384, true, 0x0f],
  ];
  for (const [id, offset, len, fin, typeByte] of cases) {
    const buf = Buffer.alloc(64 + len);
    const hdrEnd = writeStreamFrameHeader(buf, 0, id, offset, len, fin);
    assert.equal(hdrEnd, streamFrameOverhead(id, offset, len));
    assert.equal(buf[0], typeByte);
    buf.fill(0x5a, hdrEnd, hdrEnd + len);
    const data = bytes(len, 0x5a);
    const viaWriteFrame = encode([{ type: 'stream', streamId: id, offset, data, fin }]);
    assert.deepEqual(buf.subarray(0, hdrEnd + len), viaWriteFrame);
  }
});

test('frames: parsing a 1200-byte payload with ACK + STREAM keeps data as a view of the payload (no copy)', () => {
  const payload = Buffer.alloc(1300).subarray(50, 1250); // a view at a non-zero offset, like a decrypted datagram
  let off = writeFrame(payload, 0, { type: 'ack', ranges: [[0, 41]], ackDelay: 3 });
  const dataLen = 1200 - off - streamFrameOverhead(0, 5000, 1100);
  off = writeStreamFrameHeader(payload, off, 0, 5000, dataLen, false);
  const dataStart = off;
  payload.fill(0x77, dataStart, dataStart + dataLen);
  assert.equal(dataStart + dataLen, 1200);
  const frames = parseFrames(payload, '1rtt');
  assert.equal(frames.length, 2);
  const s = frames[1];
  assert.ok(s.type === 'stream');
  assert.equal(s.data.length, dataLen);
  assert.equal(s.data.buffer, payload.buffer, 'same ArrayBuffer');
  assert.equal(s.data.byteOffset, payload.byteOffset + dataStart);
  payload[dataStart] = 0x01;
  assert.equal(s.data[0], 0x01, 'data aliases the payload');
});

test('frames: non-minimal frame type encodings are accepted', () => {
  assert.deepEqual(parseFrames(hex('4001 80000001 c00000000000001e'), '1rtt'), [
    { type: 'ping' },
    { type: 'ping' },
    { type: 'handshake_done' },
  ]);
});

// ---- rejections: FRAME_ENCODING_ERROR with the offending type ----

test('frames reject: unknown frame type', () => {
  expectError(hex('01 1f'), '1rtt', FEE, 0x1f);
  expectError(hex('4030'), '1rtt', FEE, 0x30); // DATAGRAM (RFC 9221) is not negotiated here
});

test('frames reject: truncated frame (varint cut short)', () => {
  expectError(hex('10 40'), '1rtt', FEE, FrameType.MAX_DATA);
});

test('frames reject: truncated frame (field missing)', () => {
  expectError(hex('04 01 02'), '1rtt', FEE, FrameType.RESET_STREAM);
});

test('frames reject: truncated frame type', () => {
  expectError(hex('01 40'), '1rtt', FEE, 0);
});

test('frames reject: CRYPTO length overruns the packet', () => {
  expectError(hex('06 00 05 01020304'), 'initial', FEE, FrameType.CRYPTO);
});

test('frames reject: STREAM length overruns the packet', () => {
  expectError(hex('0a 00 10 0102'), '1rtt', FEE, 0x0a);
});

test('frames reject: PATH_CHALLENGE shorter than 8 bytes', () => {
  expectError(hex('1a 01020304050607'), '1rtt', FEE, FrameType.PATH_CHALLENGE);
});

test('frames reject: STREAM offset + length > 2^62-1 (and accept exactly 2^62-1)', () => {
  const max = 'ffffffffffffffff'; // 2^62-1
  const maxMinus1 = 'fffffffffffffffe';
  // OFF|LEN: offset 2^62-1, one byte of data -> end 2^62
  expectError(hex(`0e 00 ${max} 01 aa`), '1rtt', FEE, 0x0e);
  // offset 2^62-2 + 1 byte ends exactly at 2^62-1: legal
  assert.equal(parseFrames(hex(`0e 00 ${maxMinus1} 01 aa`), '1rtt').length, 1);
  // offset 2^62-1 with no data: legal
  assert.equal(parseFrames(hex(`0e 00 ${max} 00`), '1rtt').length, 1);
  // without LEN: data runs to the end of the packet
  expectError(hex(`0d 00 ${max} aabb`), '1rtt', FEE, 0x0d);
});

test('frames reject: CRYPTO offset + length > 2^62-1', () => {
  expectError(hex('06 fffffffffffffffe 02 aabb'), 'handshake', FEE, FrameType.CRYPTO);
  assert.equal(parseFrames(hex('06 fffffffffffffffe 01 aa'), 'handshake').length, 1);
});

test('frames reject: ACK first range below packet number 0', () => {
  // largest 5, first range 6
  expectError(hex('02 05 00 00 06'), '1rtt', FEE, FrameType.ACK);
});

test('frames reject: ACK gap below packet number 0', () => {
  // largest 5, first 2 -> smallest 3; gap 2 -> next largest would be 3-2-2 = -1
  expectError(hex('02 05 00 01 02 02 00'), '1rtt', FEE, FrameType.ACK);
  // gap 1 -> next largest 0, range 0: legal
  assert.deepEqual(parseFrames(hex('02 05 00 01 02 01 00'), '1rtt'), [
    { type: 'ack', ranges: [[3, 5], [0, 0]], ackDelay: 0 },
  ]);
});

test('frames reject: ACK range below packet number 0', () => {
  // next largest 0, range length 1 -> smallest -1
  expectError(hex('03 05 00 01 02 01 01 00 00 00'), '1rtt', FEE, FrameType.ACK_ECN);
});

test('frames reject: ACK range count larger than the frame can hold', () => {
  expectError(hex('02 05 00 8fffffff 00'), '1rtt', FEE, FrameType.ACK);
});

test('frames reject: NEW_CONNECTION_ID with a zero-length connection ID', () => {
  expectError(hex(`18 01 00 00 ${'22'.repeat(16)}`), '1rtt', FEE, FrameType.NEW_CONNECTION_ID);
});

test('frames reject: NEW_CONNECTION_ID with a connection ID longer than 20 bytes', () => {
  expectError(hex(`18 01 00 15 ${'11'.repeat(21)} ${'22'.repeat(16)}`), '1rtt', FEE, FrameType.NEW_CONNECTION_ID);
  // 20 bytes is fine
  assert.equal(parseFrames(hex(`18 01 00 14 ${'11'.repeat(20)} ${'22'.repeat(16)}`), '1rtt').length, 1);
});

test('frames reject: NEW_CONNECTION_ID with retire_prior_to greater than the sequence number', () => {
  expectError(hex(`18 01 02 08 ${'11'.repeat(8)} ${'22'.repeat(16)}`), '1rtt', FEE, FrameType.NEW_CONNECTION_ID);
});

test('frames reject: NEW_CONNECTION_ID with a truncated reset token', () => {
  expectError(hex(`18 01 00 08 ${'11'.repeat(8)} ${'22'.repeat(15)}`), '1rtt', FEE, FrameType.NEW_CONNECTION_ID);
});

test('frames reject: empty NEW_TOKEN', () => {
  expectError(hex('07 00'), '1rtt', FEE, FrameType.NEW_TOKEN);
});

test('frames reject: MAX_STREAMS above 2^60 (2^60 itself is fine)', () => {
  // 2^60 + 1 as an 8-byte varint: 0xd0000000_00000001 (rounds to 2^60 as a double)
  expectError(hex('12 d000000000000001'), '1rtt', FEE, FrameType.MAX_STREAMS_BIDI);
  expectError(hex('13 ffffffffffffffff'), '1rtt', FEE, FrameType.MAX_STREAMS_UNI);
  assert.deepEqual(parseFrames(hex('13 d000000000000000'), '1rtt'), [{ type: 'max_streams', bidi: false, max: 2 ** 60 }]);
});

test('frames reject: STREAMS_BLOCKED above 2^60', () => {
  expectError(hex('16 d000000000000001'), '1rtt', FEE, FrameType.STREAMS_BLOCKED_BIDI);
  expectError(hex('17 d000000000000100'), '1rtt', FEE, FrameType.STREAMS_BLOCKED_UNI);
});

test('frames reject: a packet with no frames is a PROTOCOL_VIOLATION', () => {
  for (const kind of KINDS) expectError(Buffer.alloc(0), kind, PV, 0);
});

// ---- RFC 9000 §12.4 Table 3 (with §12.5 for 0-RTT) ----

/** Allowed packet kinds per type, transcribed from RFC 9000 Table 3 ("IH01"), with §12.5 applied to 0x19. */
const TABLE3: [code: number, pkts: string, sample: string][] = [
  [0x00, 'IH01', '00'],
  [0x01, 'IH01', '01'],
  [0x02, 'IH_1', '02 00 00 00 00'],
  [0x03, 'IH_1', '03 00 00 00 00 00 00 00'],
  [0x04, '__01', '04 00 00 00'],
  [0x05, '__01', '05 00 00'],
  [0x06, 'IH_1', '06 00 01 aa'],
  [0x07, '___1', '07 01 aa'],
  [0x08, '__01', '08 00'],
  [0x09, '__01', '09 00'],
  [0x0a, '__01', '0a 00 00'],
  [0x0b, '__01', '0b 00 00'],
  [0x0c, '__01', '0c 00 00'],
  [0x0d, '__01', '0d 00 00'],
  [0x0e, '__01', '0e 00 00 00'],
  [0x0f, '__01', '0f 00 00 00'],
  [0x10, '__01', '10 00'],
  [0x11, '__01', '11 00 00'],
  [0x12, '__01', '12 00'],
  [0x13, '__01', '13 00'],
  [0x14, '__01', '14 00'],
  [0x15, '__01', '15 00 00'],
  [0x16, '__01', '16 00'],
  [0x17, '__01', '17 00'],
  [0x18, '__01', `18 00 00 01 aa ${'00'.repeat(16)}`],
  [0x19, '___1', '19 00'], // Table 3 says __01; §12.5 forbids it in 0-RTT
  [0x1a, '__01', '1a 0000000000000000'],
  [0x1b, '___1', '1b 0000000000000000'],
  [0x1c, 'IH01', '1c 00 00 00'],
  [0x1d, '__01', '1d 00 00'],
  [0x1e, '___1', '1e'],
];
const KIND_LETTER: Record<PacketKind, [index: number, letter: string]> = {
  initial: [0, 'I'],
  handshake: [1, 'H'],
  '0rtt': [2, '0'],
  '1rtt': [3, '1'],
};

test('frames: Table 3 — every frame type is accepted exactly in the packet kinds that allow it', () => {
  for (const [code, pkts, sample] of TABLE3) {
    for (const kind of KINDS) {
      const [i, letter] = KIND_LETTER[kind];
      const allowed = pkts[i] === letter;
      assert.equal(isFrameAllowedIn(code, kind), allowed, `0x${code.toString(16)} in ${kind}`);
      const payload = hex(sample);
      if (allowed) {
        const frames = parseFrames(payload, kind);
        assert.equal(frames.length, 1, `0x${code.toString(16)} in ${kind}`);
      } else {
        expectError(payload, kind, PV, code);
      }
    }
  }
});

test('frames: a forbidden frame after allowed ones still fails the packet with PROTOCOL_VIOLATION', () => {
  // Initial: PING, PADDING, then a STREAM frame
  expectError(hex('01 0000 08 00'), 'initial', PV, 0x08);
  // Handshake: HANDSHAKE_DONE
  expectError(hex('1e'), 'handshake', PV, FrameType.HANDSHAKE_DONE);
  // 0-RTT: ACK
  expectError(hex('02 00 00 00 00'), '0rtt', PV, FrameType.ACK);
});

// ---- writer guards and helpers ----

test('frames: writeFrame refuses malformed ACK ranges, CIDs and tokens', () => {
  const buf = Buffer.alloc(64);
  assert.throws(() => frameLength({ type: 'ack', ranges: [], ackDelay: 0 }), RangeError);
  assert.throws(() => writeFrame(buf, 0, { type: 'ack', ranges: [[3, 5], [4, 4]], ackDelay: 0 }), RangeError);
  assert.throws(() => writeFrame(buf, 0, { type: 'ack', ranges: [[3, 5], [0, 2]], ackDelay: 0 }), RangeError); // adjacent
  assert.throws(() => writeFrame(buf, 0, { type: 'ack', ranges: [[6, 5]], ackDelay: 0 }), RangeError);
  assert.throws(
    () => writeFrame(buf, 0, { type: 'new_connection_id', seq: 0, retirePriorTo: 0, cid: Buffer.alloc(0), resetToken: bytes(16) }),
    RangeError,
  );
  assert.throws(
    () => writeFrame(buf, 0, { type: 'new_connection_id', seq: 0, retirePriorTo: 0, cid: bytes(4), resetToken: bytes(15) }),
    RangeError,
  );
  assert.throws(() => writeFrame(buf, 0, { type: 'path_challenge', data: bytes(7) }), RangeError);
});

test('frames: isAckEliciting, isProbing and frameTypeCode', () => {
  const all = samples(7);
  all.push({ type: 'padding', length: 3 });
  for (const f of all) {
    const expectEliciting = !['padding', 'ack', 'connection_close'].includes(f.type);
    assert.equal(isAckEliciting(f), expectEliciting, f.type);
    const expectProbing = ['path_challenge', 'path_response', 'new_connection_id', 'padding'].includes(f.type);
    assert.equal(isProbing(f), expectProbing, f.type);
    assert.ok(describeFrame(f).length > 0);
  }
  assert.equal(frameTypeCode({ type: 'ack', ranges: [[0, 0]], ackDelay: 0 }), 0x02);
  assert.equal(frameTypeCode({ type: 'ack', ranges: [[0, 0]], ackDelay: 0, ecn: { ect0: 0, ect1: 0, ce: 0 } }), 0x03);
  assert.equal(frameTypeCode({ type: 'stream', streamId: 0, offset: 0, data: bytes(1), fin: false }), 0x0a);
  assert.equal(frameTypeCode({ type: 'stream', streamId: 0, offset: 9, data: bytes(1), fin: true }), 0x0f);
  assert.equal(frameTypeCode({ type: 'max_streams', bidi: false, max: 1 }), 0x13);
  assert.equal(frameTypeCode({ type: 'streams_blocked', bidi: true, limit: 1 }), 0x16);
  assert.equal(
    frameTypeCode({ type: 'connection_close', application: true, errorCode: 0, frameType: 0, reason: '' }),
    0x1d,
  );
  assert.equal(describeFrame({ type: 'ack', ranges: [[5, 9], [1, 1]], ackDelay: 2 }), 'ACK [5-9,1] delay=2');
  assert.equal(
    describeFrame({ type: 'stream', streamId: 4, offset: 10, data: bytes(3), fin: true }),
    'STREAM id=4 off=10 len=3 fin',
  );
});

test('frames: one FrameScratch (its reader and frame objects reused) parses packet after packet as fresh parses do, also after a truncated one', () => {
  const scratch = new FrameScratch();
  const packets = [
    encode([{ type: 'stream', streamId: 4, offset: 1000, data: bytes(700, 1), fin: false }]),
    encode([{ type: 'ack', ranges: [[9, 12], [1, 3]], ackDelay: 5 }, { type: 'stream', streamId: 8, offset: 0, data: bytes(20, 2), fin: true }]),
    encode([{ type: 'max_stream_data', streamId: 4, max: 1 << 20 }, { type: 'ping' }, { type: 'padding', length: 30 }]),
  ];
  const truncated = packets[0]!.subarray(0, 40);
  for (let round = 0; round < 2; round++) {
    for (const p of packets) {
      // A payload that is a view into a larger buffer (as a decrypted packet is): the reader must use its bounds.
      const host = Buffer.concat([bytes(7, 0xee), p, bytes(9, 0xee)]);
      const view = host.subarray(7, 7 + p.length);
      const reused = parseFrames(view, '1rtt', scratch).map((f) => ({ ...f }));
      assert.deepEqual(reused, parseFrames(p, '1rtt'));
    }
    assert.throws(() => parseFrames(truncated, '1rtt', scratch), (e: unknown) => e instanceof TransportError && e.code === FEE);
  }
});
