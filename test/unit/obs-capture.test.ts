/**
 * The capture library's pure parts (src/obs/capture-report.ts, src/obs/capture.ts): HTTP/3 frame and stream type
 * names with 62-bit types kept exact (RFC 9114 §7.2.8 reserved types go up to 2^62 - 2), reading tshark's integer
 * fields, pairing tshark's http3 layers with STREAM frames by position and by content, the report line, and counting
 * the packets of a pcapng. No tshark needed: the JSON is written the way tshark 4.0 writes it (decimal strings).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { analyseTsharkJson, formatReport, h3FrameName, h3StreamTypeName, tsharkUint, type Json } from '../../src/obs/capture-report.js';
import { capturerArgs, countPcapngPackets } from '../../src/obs/capture.js';

/** The largest reserved frame type, 0x1f * N + 0x21 = 2^62 - 2. As a Number it is 2^62, which is not reserved. */
const GREASE_MAX = 0x3ffffffffffffffen;

test('h3FrameName: registered types, reserved (GREASE) types up to 2^62 - 2 exactly, others in hex', () => {
  assert.equal(h3FrameName(0x0n), 'DATA');
  assert.equal(h3FrameName(0x1n), 'HEADERS');
  assert.equal(h3FrameName(0x4n), 'SETTINGS');
  assert.equal(h3FrameName(0x7), 'GOAWAY', 'a number is accepted too');
  assert.equal(h3FrameName(0xf0700n), 'PRIORITY_UPDATE');
  assert.equal(h3FrameName(0x21n), 'GREASE');
  assert.equal(h3FrameName(0x40n), 'GREASE');
  assert.equal(h3FrameName(0x22n), '0x22');
  assert.equal((GREASE_MAX - 0x21n) % 0x1fn, 0n);
  assert.equal(BigInt(Number(GREASE_MAX)), 1n << 62n, 'a Number would lose the low bits');
  assert.equal(h3FrameName(GREASE_MAX), 'GREASE');
  assert.equal(h3FrameName(GREASE_MAX - 0x1fn), 'GREASE');
  assert.equal(h3FrameName(GREASE_MAX - 1n), '0x3ffffffffffffffd');
  assert.equal(h3FrameName(GREASE_MAX + 1n), '0x3fffffffffffffff');
  assert.equal(h3StreamTypeName(0n), 'control');
  assert.equal(h3StreamTypeName(3n), 'qpack-dec');
  assert.equal(h3StreamTypeName(GREASE_MAX), '0x3ffffffffffffffe');
});

test('tsharkUint: decimal and 0x strings exactly, safe numbers; anything else is null', () => {
  assert.equal(tsharkUint('4611686018427387902'), GREASE_MAX);
  assert.equal(tsharkUint('0x3ffffffffffffffe'), GREASE_MAX);
  assert.equal(tsharkUint('33'), 33n);
  assert.equal(tsharkUint(7), 7n);
  for (const bad of ['', ' 1', '-1', '1.5', 'GREASE', null, true, 2 ** 60, undefined]) assert.equal(tsharkUint(bad as Json | undefined), null, String(bad));
});

/** One datagram as tshark's JSON: QUIC packets with their frames, and the http3 layers. */
const datagram = (quic: Json, http3?: Json): Json => ({ _source: { layers: http3 === undefined ? { quic } : { quic, http3 } } });
const streamFrame = (sid: number, data: string, offset = 0): Json => ({
  'quic.frame_type': offset > 0 ? '14' : '10',
  'quic.stream.stream_id': String(sid),
  ...(offset > 0 ? { 'quic.stream.offset': String(offset) } : {}),
  'quic.stream_data': data.match(/../g)!.join(':'),
});

test('position pairing: a 62-bit GREASE frame type is named GREASE, the next type is not', () => {
  const rep = analyseTsharkJson([
    datagram({ 'quic.frame': [{ 'quic.frame_type': '10', 'quic.stream.stream_id': '3' }] }, { 'http3.stream_type': '0', 'http3.frame_type': ['4', '4611686018427387902', '4611686018427387903'] }),
  ]);
  assert.deepEqual(rep.http3Frames.get(3), ['SETTINGS', 'GREASE', '0x3fffffffffffffff']);
  assert.equal(rep.http3StreamTypes.get(3), 'control');
  assert.equal(rep.unpaired, 0);
});

test('content pairing: layers matched to the STREAM frames whose bytes they start with, 62-bit types compared exactly', () => {
  // Control stream 3: stream type 0, SETTINGS (empty), then a GREASE frame of type 2^62 - 2 with an 8-byte varint.
  const control = streamFrame(3, '00' + '0400' + 'fffffffffffffffe' + '00');
  // Request stream 0: HEADERS of 2 bytes, then a STREAM frame with the continuation of a DATA frame.
  const headers = streamFrame(0, '0102aabb' + '00' + '4064' + 'cc');
  const continuation = streamFrame(0, 'dddddd', 7);
  const rep = analyseTsharkJson(
    [
      datagram({ 'quic.frame': [control] }, { 'http3.stream_type': '0', 'http3.frame_type': '4', 'http3.frame_length': '0' }),
      // Layers are a subsequence: the continuation frame has none.
      datagram({ 'quic.frame': [headers, continuation] }, { 'http3.frame_type': ['1', '0'], 'http3.frame_length': ['2', '100'] }),
      // A layer for a uni stream that is not at offset 0 with a type-led frame: a bare GREASE frame, exact.
      datagram({ 'quic.frame': [streamFrame(7, 'fffffffffffffffe' + '00', 5)] }, { 'http3.frame_type': '4611686018427387902', 'http3.frame_length': '0' }),
      // Type 2^62 - 1 in the bytes but 2^62 - 2 in the layer: equal as Numbers, different as bigints, so not paired.
      datagram({ 'quic.frame': [streamFrame(11, 'ffffffffffffffff' + '00', 9)] }, { 'http3.frame_type': '4611686018427387902', 'http3.frame_length': '0' }),
      { _source: { layers: { quic: [{ 'quic.remaining_payload': 'aa:bb' }] } } },
    ],
    'content',
  );
  assert.deepEqual(rep.http3Frames.get(3), ['SETTINGS']);
  assert.equal(rep.http3StreamTypes.get(3), 'control');
  assert.deepEqual(rep.http3Frames.get(0), ['HEADERS', 'DATA']);
  assert.deepEqual(rep.http3Frames.get(7), ['GREASE']);
  assert.equal(rep.http3Frames.has(11), false);
  assert.equal(rep.unpaired, 1, 'the datagram whose type differs only below 2^53 precision');
  assert.equal(rep.packets, 5);
  assert.equal(rep.quicPackets, 5);
  assert.equal(rep.undecrypted, 1);
  assert.equal(formatReport(rep), 'packets=5 quic=5 undecrypted=1 kp1=0 0:[HEADERS,DATA] 3(control):[SETTINGS] 7:[GREASE]');
});

test('key phase 1 packets and undecryptable long-header packets are counted', () => {
  const rep = analyseTsharkJson([
    datagram([{ 'quic.short': { 'quic.key_phase': 'True' } }, { 'quic.short': { 'quic.key_phase': '0' } }]),
    datagram({ 'quic.long.packet_type': '0', 'quic.decryption_failed': { 'x': '' } }),
  ]);
  assert.equal(rep.quicPackets, 3);
  assert.equal(rep.keyPhase1Packets, 1);
  assert.equal(rep.undecrypted, 1);
  assert.equal(rep.http3Frames.size, 0);
});

test('countPcapngPackets: enhanced and simple packet blocks of both byte orders; a malformed file throws', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-pcapng-'));
  try {
    const block = (type: number, body: Buffer, le: boolean): Buffer => {
      const len = 12 + body.length;
      const b = Buffer.alloc(len);
      if (le) {
        b.writeUInt32LE(type, 0);
        b.writeUInt32LE(len, 4);
        b.writeUInt32LE(len, len - 4);
      } else {
        b.writeUInt32BE(type, 0);
        b.writeUInt32BE(len, 4);
        b.writeUInt32BE(len, len - 4);
      }
      body.copy(b, 8);
      return b;
    };
    const shb = (le: boolean): Buffer => {
      const body = Buffer.alloc(16);
      if (le) body.writeUInt32LE(0x1a2b3c4d, 0);
      else body.writeUInt32BE(0x1a2b3c4d, 0);
      body.fill(0xff, 8);
      return block(0x0a0d0d0a, body, le);
    };
    const idb = (le: boolean): Buffer => block(1, Buffer.alloc(8), le);
    const epb = (le: boolean): Buffer => block(6, Buffer.alloc(24), le);
    const spb = (le: boolean): Buffer => block(3, Buffer.alloc(8), le);
    const file = join(dir, 'x.pcapng');
    writeFileSync(file, Buffer.concat([shb(true), idb(true), epb(true), epb(true), spb(true), shb(false), idb(false), epb(false)]));
    assert.equal(countPcapngPackets(file), 4);
    writeFileSync(file, Buffer.alloc(0));
    assert.equal(countPcapngPackets(file), 0);
    writeFileSync(file, Buffer.concat([shb(true), block(6, Buffer.alloc(2), true)]));
    assert.throws(() => countPcapngPackets(file), /bad pcapng block length 14/);
    writeFileSync(file, Buffer.from('not a capture at all'));
    assert.throws(() => countPcapngPackets(file), /pcapng/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('capturerArgs: quiet, interface lo by default, one UDP port (both address families), to the file', () => {
  assert.deepEqual(capturerArgs(4433, '/tmp/x.pcapng'), ['-q', '-i', 'lo', '-f', 'udp port 4433', '-w', '/tmp/x.pcapng']);
  assert.deepEqual(capturerArgs(5, 'f', 'eth9').slice(0, 3), ['-q', '-i', 'eth9']);
});
