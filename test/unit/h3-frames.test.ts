/** HTTP/3 frame codec and incremental reader (RFC 9114 §7): round trips, 1-byte chunks, limits and errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  FrameReader,
  FrameType,
  SettingId,
  decodePriorityUpdate,
  decodeSettings,
  decodeVarintPayload,
  encodeFrame,
  encodeFrameHeader,
  encodeSettingsFrame,
  encodeVarintFrame,
  greaseValue,
  isGrease,
  type FrameEvent,
} from '../../src/h3/frames.js';
import { H3Error, H3ErrorCode as E } from '../../src/h3/errors.js';

function drain(r: FrameReader): FrameEvent[] {
  const out: FrameEvent[] = [];
  for (let e = r.next(); e; e = r.next()) out.push(e);
  return out;
}

/** Feeds bytes in chunks of `size` and returns the frames, DATA pieces joined per frame. */
function parse(bytes: Buffer, size: number): { type: number; payload: Buffer }[] {
  const r = new FrameReader();
  const frames: { type: number; payload: Buffer }[] = [];
  let data: Buffer[] | null = null;
  const handle = (e: FrameEvent): void => {
    if (e.kind === 'data') {
      (data ??= []).push(Buffer.from(e.chunk));
      if (e.last) {
        frames.push({ type: FrameType.DATA, payload: Buffer.concat(data) });
        data = null;
      }
    } else if (e.kind === 'frame') frames.push({ type: e.type, payload: Buffer.from(e.payload) });
  };
  for (let i = 0; i < bytes.length; i += size) {
    r.push(bytes.subarray(i, i + size));
    drain(r).forEach(handle);
  }
  r.finish();
  return frames;
}

function expectH3(fn: () => unknown, code: number, scope?: 'connection' | 'stream'): void {
  assert.throws(fn, (e: unknown) => {
    assert.ok(e instanceof H3Error, `expected H3Error, got ${String(e)}`);
    assert.equal(e.code, code, e.message);
    if (scope) assert.equal(e.scope, scope);
    return true;
  });
}

const SAMPLE = Buffer.concat([
  encodeSettingsFrame([
    [SettingId.QPACK_MAX_TABLE_CAPACITY, 4096],
    [SettingId.QPACK_BLOCKED_STREAMS, 16],
    [SettingId.MAX_FIELD_SECTION_SIZE, 65536],
    [greaseValue(3), 7],
  ]),
  encodeFrame(FrameType.HEADERS, Buffer.from('header-block')),
  encodeFrame(0x21, Buffer.from('grease payload')), // unknown/GREASE: skipped
  encodeFrame(FrameType.DATA, Buffer.alloc(300, 7)),
  encodeFrame(FrameType.DATA, Buffer.alloc(0)),
  encodeVarintFrame(FrameType.GOAWAY, 1_000_000),
  encodeFrame(FrameType.HEADERS, Buffer.alloc(0)),
]);

test('frames round trip whole and in 1-, 2-, 3- and 7-byte chunks', () => {
  for (const size of [SAMPLE.length, 1, 2, 3, 7]) {
    const f = parse(SAMPLE, size);
    assert.deepEqual(
      f.map((x) => x.type),
      [FrameType.SETTINGS, FrameType.HEADERS, FrameType.DATA, FrameType.DATA, FrameType.GOAWAY, FrameType.HEADERS],
    );
    const s = decodeSettings(f[0].payload);
    assert.equal(s.get(SettingId.QPACK_MAX_TABLE_CAPACITY), 4096);
    assert.equal(s.get(SettingId.QPACK_BLOCKED_STREAMS), 16);
    assert.equal(s.get(SettingId.MAX_FIELD_SECTION_SIZE), 65536);
    assert.equal(s.get(greaseValue(3)), 7);
    assert.equal(f[1].payload.toString(), 'header-block');
    assert.deepEqual(f[2].payload, Buffer.alloc(300, 7));
    assert.equal(f[3].payload.length, 0);
    assert.equal(decodeVarintPayload(f[4].payload, 'GOAWAY'), 1_000_000);
    assert.equal(f[5].payload.length, 0);
  }
});

test('DATA payload is handed out as it arrives, not buffered whole', () => {
  const r = new FrameReader();
  const payload = Buffer.alloc(100_000, 1);
  r.push(encodeFrameHeader(FrameType.DATA, payload.length));
  r.push(payload.subarray(0, 1000));
  const e1 = r.next();
  assert.ok(e1 && e1.kind === 'data');
  assert.equal(e1.chunk.length, 1000);
  assert.equal(e1.last, false);
  assert.equal(r.next(), null);
  r.push(payload.subarray(1000));
  const e2 = r.next();
  assert.ok(e2 && e2.kind === 'data');
  assert.equal(e2.chunk.length, 99_000);
  assert.equal(e2.last, true);
  assert.ok(r.atFrameBoundary);
});

test('unknown frame types are reported once and skipped without being buffered', () => {
  const r = new FrameReader({ maxFramePayload: () => 10 });
  r.push(encodeFrameHeader(greaseValue(1000), 1_000_000)); // far over any buffering limit
  const e = r.next();
  assert.deepEqual(e, { kind: 'unknown', type: greaseValue(1000) });
  r.push(Buffer.alloc(999_999));
  assert.equal(r.next(), null);
  r.push(Buffer.concat([Buffer.alloc(1), encodeFrame(FrameType.HEADERS, Buffer.from('x'))]));
  const h = r.next();
  assert.ok(h && h.kind === 'frame' && h.type === FrameType.HEADERS);
});

test('HTTP/2 frame types 0x2, 0x6, 0x8, 0x9 are H3_FRAME_UNEXPECTED', () => {
  for (const t of [0x2, 0x6, 0x8, 0x9]) {
    const r = new FrameReader();
    r.push(encodeFrame(t, Buffer.alloc(4)));
    expectH3(() => r.next(), E.H3_FRAME_UNEXPECTED, 'connection');
  }
});

test('a known non-DATA frame over the limit is H3_EXCESSIVE_LOAD before its payload arrives', () => {
  const r = new FrameReader({ maxFramePayload: (t) => (t === FrameType.HEADERS ? 100 : 64 * 1024) });
  r.push(encodeFrameHeader(FrameType.HEADERS, 101));
  expectH3(() => r.next(), E.H3_EXCESSIVE_LOAD);
  const ok = new FrameReader({ maxFramePayload: () => 100 });
  ok.push(encodeFrame(FrameType.HEADERS, Buffer.alloc(100)));
  assert.equal(ok.next()?.kind, 'frame');
});

test('stream ending inside a frame (header or payload) is H3_FRAME_ERROR', () => {
  const full = encodeFrame(FrameType.HEADERS, Buffer.from('abcdef'));
  for (let cut = 1; cut < full.length; cut++) {
    const r = new FrameReader();
    r.push(full.subarray(0, cut));
    drain(r);
    expectH3(() => r.finish(), E.H3_FRAME_ERROR);
  }
  const r = new FrameReader();
  r.push(full);
  drain(r);
  r.finish();
  // A DATA frame cut short.
  const d = new FrameReader();
  d.push(encodeFrameHeader(FrameType.DATA, 10));
  d.push(Buffer.alloc(5));
  drain(d);
  expectH3(() => d.finish(), E.H3_FRAME_ERROR);
});

test('SETTINGS: a setting cut off inside the frame is H3_FRAME_ERROR', () => {
  // id 6 then a 2-byte varint value of which only one byte is inside the frame
  expectH3(() => decodeSettings(Buffer.from([0x06, 0x40])), E.H3_FRAME_ERROR);
  expectH3(() => decodeSettings(Buffer.from([0x06])), E.H3_FRAME_ERROR);
  // The same through the reader: the frame length covers 2 bytes, the value's second byte lies outside it.
  const r = new FrameReader();
  r.push(Buffer.from([0x04, 0x02, 0x06, 0x40, 0x00]));
  const f = r.next();
  assert.ok(f && f.kind === 'frame');
  expectH3(() => decodeSettings(f.payload), E.H3_FRAME_ERROR);
});

test('SETTINGS: HTTP/2 identifiers 0x2-0x5 and duplicates are H3_SETTINGS_ERROR; GREASE and unknown accepted', () => {
  for (const id of [2, 3, 4, 5]) expectH3(() => decodeSettings(Buffer.from([id, 0])), E.H3_SETTINGS_ERROR);
  expectH3(() => decodeSettings(Buffer.from([6, 1, 6, 2])), E.H3_SETTINGS_ERROR);
  const s = decodeSettings(Buffer.from([0x40, 0x21, 0x05, 0x08, 0x01]));
  assert.equal(s.get(0x21), 5);
  assert.equal(s.get(0x08), 1);
  assert.equal(decodeSettings(Buffer.alloc(0)).size, 0);
});

test('single-varint frames: short or extra bytes are H3_FRAME_ERROR', () => {
  expectH3(() => decodeVarintPayload(Buffer.alloc(0), 'GOAWAY'), E.H3_FRAME_ERROR);
  expectH3(() => decodeVarintPayload(Buffer.from([0x40]), 'GOAWAY'), E.H3_FRAME_ERROR);
  expectH3(() => decodeVarintPayload(Buffer.from([4, 0]), 'GOAWAY'), E.H3_FRAME_ERROR);
  assert.equal(decodeVarintPayload(Buffer.from([0x44, 0x00]), 'MAX_PUSH_ID'), 0x400);
});

test('PRIORITY_UPDATE payload and GREASE identifiers', () => {
  const p = decodePriorityUpdate(Buffer.concat([Buffer.from([0x04]), Buffer.from('u=3, i')]));
  assert.deepEqual(p, { elementId: 4, value: 'u=3, i' });
  expectH3(() => decodePriorityUpdate(Buffer.alloc(0)), E.H3_FRAME_ERROR);
  assert.ok(isGrease(0x21) && isGrease(0x40) && isGrease(greaseValue(12345)));
  assert.ok(!isGrease(0x20) && !isGrease(0x22) && !isGrease(0));
});

test('frame header encoding uses minimal varints, including 8-byte types', () => {
  assert.deepEqual(encodeFrameHeader(0, 0), Buffer.from([0, 0]));
  assert.deepEqual(encodeFrameHeader(FrameType.PRIORITY_UPDATE_REQUEST, 63), Buffer.from([0x80, 0x0f, 0x07, 0x00, 0x3f]));
  const r = new FrameReader();
  r.push(encodeFrame(FrameType.PRIORITY_UPDATE_REQUEST, Buffer.from([0, 0x75])));
  const f = r.next();
  assert.ok(f && f.kind === 'frame');
  assert.equal(f.type, FrameType.PRIORITY_UPDATE_REQUEST);
});
