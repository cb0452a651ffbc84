/** Packet header codec (RFC 9000 §17) and packet number encoding/decoding (RFC 9000 Appendix A.2/A.3). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DecodeError } from '../../src/util/varint.js';
import { verifyRetryIntegrity } from '../../src/quic/crypto/retry.js';
import {
  buildRetry,
  buildVersionNegotiation,
  decodePacketNumber,
  isLongHeader,
  packetNumberLength,
  PacketType,
  parseHeader,
  peekLongHeaderVersion,
  writeLongHeader,
  writeShortHeader,
} from '../../src/quic/packet/header.js';

function hex(s: string): Buffer {
  return Buffer.from(s, 'hex');
}
const EMPTY = Buffer.alloc(0);

/** Writes a long header packet with a zero payload of payloadLength (incl. tag) bytes; returns the datagram. */
function longPacket(type: PacketType, dcid: Buffer, scid: Buffer, token: Buffer | null, payloadLength: number, pn = 5, pnLength = 2): Buffer {
  const buf = Buffer.alloc(200 + payloadLength);
  const h = writeLongHeader(buf, 0, type, 1, dcid, scid, token, payloadLength, pn, pnLength);
  return buf.subarray(0, h.headerEnd + payloadLength);
}

test('Initial with token: write then parse', () => {
  const dcid = hex('0011223344556677889900112233');
  const scid = hex('a1a2a3a4');
  const token = Buffer.alloc(70, 0x5a); // 70 > 63: the token length takes a 2-byte varint
  const buf = Buffer.alloc(400);
  const w = writeLongHeader(buf, 0, PacketType.Initial, 1, dcid, scid, token, 100, 0x1234, 2);
  // 1 + 4 + 1 + 14 + 1 + 4 + 2 (token length) + 70 + 2 (Length)
  assert.equal(w.pnOffset, 99);
  assert.equal(w.headerEnd, 101);
  assert.equal(buf[0], 0xc1);
  assert.equal(buf.readUInt16BE(w.pnOffset - 2), 0x4000 | 102);
  assert.equal(buf.readUInt16BE(w.pnOffset), 0x1234);
  const dgram = buf.subarray(0, w.headerEnd + 100);
  const h = parseHeader(dgram, 0, 8);
  assert.equal(h.type, PacketType.Initial);
  assert.equal(h.version, 1);
  assert.deepEqual(h.dcid, dcid);
  assert.deepEqual(h.scid, scid);
  assert.deepEqual(h.token, token);
  assert.equal(h.start, 0);
  assert.equal(h.pnOffset, 99);
  assert.equal(h.end, dgram.length);
  assert.equal(h.supportedVersions, undefined);
});

test('Handshake and 0-RTT: write then parse; token is ignored for them', () => {
  for (const type of [PacketType.Handshake, PacketType.ZeroRtt]) {
    const p = longPacket(type, hex('0102'), hex('030405'), Buffer.from('ignored'), 40, 300, 3);
    const h = parseHeader(p, 0, 2);
    assert.equal(h.type, type);
    assert.deepEqual(h.dcid, hex('0102'));
    assert.deepEqual(h.scid, hex('030405'));
    assert.equal(h.token.length, 0);
    assert.equal(h.pnOffset, 1 + 4 + 1 + 2 + 1 + 3 + 2);
    assert.equal(h.end, p.length);
    assert.equal(p[0] & 0x03, 2); // pnLength - 1
    assert.equal(p.readUIntBE(h.pnOffset, 3), 300);
  }
});

test('coalesced datagram: Initial, Handshake, then a short header packet', () => {
  const a = longPacket(PacketType.Initial, hex('aabbccddeeff0011'), hex('01'), hex('beef'), 50);
  const b = longPacket(PacketType.Handshake, hex('aabbccddeeff0011'), hex('01'), null, 30);
  const sbuf = Buffer.alloc(60);
  const s = writeShortHeader(sbuf, 0, hex('aabbccddeeff0011'), 9, 1, 1, true);
  const short = sbuf.subarray(0, s.headerEnd + 25);
  const dgram = Buffer.concat([a, b, short]);
  const h1 = parseHeader(dgram, 0, 8);
  assert.equal(h1.type, PacketType.Initial);
  assert.deepEqual(h1.token, hex('beef'));
  assert.equal(h1.end, a.length);
  const h2 = parseHeader(dgram, h1.end, 8);
  assert.equal(h2.type, PacketType.Handshake);
  assert.equal(h2.start, a.length);
  assert.equal(h2.end, a.length + b.length);
  const h3 = parseHeader(dgram, h2.end, 8);
  assert.equal(h3.type, PacketType.OneRtt);
  assert.equal(h3.start, a.length + b.length);
  assert.deepEqual(h3.dcid, hex('aabbccddeeff0011'));
  assert.equal(h3.pnOffset, h3.start + 9);
  assert.equal(h3.end, dgram.length);
  assert.equal(h3.scid.length, 0);
});

test('short header: first byte carries spin, key phase and pn length', () => {
  const buf = Buffer.alloc(32);
  let w = writeShortHeader(buf, 0, hex('0102030405'), 0x0a0b0c, 3, 1, true);
  assert.equal(buf[0], 0x40 | 0x20 | 0x04 | 0x02);
  assert.equal(w.pnOffset, 6);
  assert.equal(w.headerEnd, 9);
  assert.equal(buf.readUIntBE(6, 3), 0x0a0b0c);
  w = writeShortHeader(buf, 0, EMPTY, 2 ** 40 + 0x01020304, 4, 0);
  assert.equal(buf[0], 0x43);
  assert.equal(buf.readUInt32BE(1), 0x01020304, 'the 4 low bytes of a pn above 2^32');
  assert.equal(isLongHeader(buf[0]), false);
});

test('Retry: parse the RFC 9001 A.4 packet and round-trip buildRetry', () => {
  const rfc = hex('ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba');
  const h = parseHeader(rfc, 0, 0);
  assert.equal(h.type, PacketType.Retry);
  assert.equal(h.version, 1);
  assert.equal(h.dcid.length, 0);
  assert.deepEqual(h.scid, hex('f067a5502a4262b5'));
  assert.equal(h.token.toString(), 'token');
  assert.equal(h.end, rfc.length);

  const odcid = hex('1122334455667788');
  const r = buildRetry(1, hex('c1c2c3c4'), hex('5151515151515151'), Buffer.from('a-longer-retry-token'), odcid);
  assert.equal(r[0] & 0xf0, 0xf0);
  const p = parseHeader(r, 0, 0);
  assert.equal(p.type, PacketType.Retry);
  assert.deepEqual(p.dcid, hex('c1c2c3c4'));
  assert.deepEqual(p.scid, hex('5151515151515151'));
  assert.equal(p.token.toString(), 'a-longer-retry-token');
  assert.equal(verifyRetryIntegrity(odcid, r), true);
  assert.equal(verifyRetryIntegrity(hex('1122334455667789'), r), false);
});

test('Version Negotiation: build, parse, and echo of connection IDs', () => {
  const clientDcid = hex('8394c8f03e515708');
  const clientScid = hex('0a0b');
  const vn = buildVersionNegotiation(clientScid, clientDcid, [1, 0x6b3343cf]);
  assert.equal(vn[0] & 0xc0, 0xc0);
  assert.equal(vn.readUInt32BE(1), 0);
  assert.equal(vn.length, 7 + 2 + 8 + 8);
  assert.equal(peekLongHeaderVersion(vn), 0);
  const h = parseHeader(vn, 0, 0);
  assert.equal(h.type, PacketType.VersionNegotiation);
  assert.equal(h.version, 0);
  assert.deepEqual(h.dcid, clientScid);
  assert.deepEqual(h.scid, clientDcid);
  assert.deepEqual(h.supportedVersions, [1, 0x6b3343cf]);
  assert.equal(h.end, vn.length);
  // VN ignores the fixed bit.
  const noFixed = Buffer.from(vn);
  noFixed[0] = 0x80;
  assert.equal(parseHeader(noFixed, 0, 0).type, PacketType.VersionNegotiation);
  // Malformed version lists.
  assert.throws(() => parseHeader(vn.subarray(0, vn.length - 1), 0, 0), DecodeError);
  assert.throws(() => parseHeader(vn.subarray(0, 7 + 2 + 8), 0, 0), DecodeError);
});

test('unknown version: invariant fields are parsed so the endpoint can send Version Negotiation', () => {
  const dcid = Buffer.alloc(21, 0x33); // longer than v1 allows, legal for other versions (RFC 8999)
  const scid = hex('7777');
  const p = Buffer.concat([hex('c01a2a3a4a'), Buffer.from([dcid.length]), dcid, Buffer.from([scid.length]), scid, Buffer.alloc(1200, 0)]);
  assert.equal(peekLongHeaderVersion(p), 0x1a2a3a4a);
  const h = parseHeader(p, 0, 8);
  assert.equal(h.version, 0x1a2a3a4a);
  assert.deepEqual(h.dcid, dcid);
  assert.deepEqual(h.scid, scid);
  assert.equal(h.end, p.length);
  assert.equal(h.pnOffset, p.length);
  assert.equal(peekLongHeaderVersion(hex('40aabb')), undefined);
  assert.equal(peekLongHeaderVersion(hex('c00000')), undefined);
});

test('every truncation of a valid Initial throws DecodeError', () => {
  const p = longPacket(PacketType.Initial, hex('0102030405060708'), hex('0909'), Buffer.alloc(80, 1), 60);
  parseHeader(p, 0, 8);
  for (let n = 0; n < p.length; n++) assert.throws(() => parseHeader(p.subarray(0, n), 0, 8), DecodeError, `cut at ${n}`);
  // Parsing at an offset at or past the end also throws.
  assert.throws(() => parseHeader(p, p.length, 8), DecodeError);
});

test('malformed headers throw DecodeError', () => {
  const good = longPacket(PacketType.Handshake, hex('01'), hex('02'), null, 30);
  // Fixed bit 0 on a v1 long header and on a short header.
  const noFixed = Buffer.from(good);
  noFixed[0] &= ~0x40;
  assert.throws(() => parseHeader(noFixed, 0, 1), DecodeError);
  assert.throws(() => parseHeader(hex('0001020304050607080910'), 0, 4), DecodeError);
  // Connection IDs over 20 bytes in v1.
  const longDcid = Buffer.concat([hex('e000000001'), Buffer.from([21]), Buffer.alloc(21), hex('00'), hex('4020'), Buffer.alloc(32)]);
  assert.throws(() => parseHeader(longDcid, 0, 8), DecodeError);
  const longScid = Buffer.concat([hex('e00000000100'), Buffer.from([21]), Buffer.alloc(21), hex('4020'), Buffer.alloc(32)]);
  assert.throws(() => parseHeader(longScid, 0, 8), DecodeError);
  // A 20-byte CID is fine.
  const cid20 = Buffer.concat([hex('e000000001'), Buffer.from([20]), Buffer.alloc(20), hex('00'), hex('4020'), Buffer.alloc(32)]);
  assert.equal(parseHeader(cid20, 0, 8).dcid.length, 20);
  // Length past the datagram; zero Length.
  const tooLong = Buffer.from(good);
  tooLong.writeUInt16BE(0x4000 | 200, 1 + 4 + 1 + 1 + 1 + 1);
  assert.throws(() => parseHeader(tooLong, 0, 1), DecodeError);
  const zeroLen = Buffer.from(good);
  zeroLen.writeUInt16BE(0x4000, 9);
  assert.throws(() => parseHeader(zeroLen, 0, 1), DecodeError);
  // Initial whose token length runs past the datagram.
  assert.throws(() => parseHeader(hex('c0000000010000' + '4400' + '00'), 0, 0), DecodeError);
  // Retry without a token, or too short for its tag.
  assert.throws(() => parseHeader(Buffer.concat([hex('f0000000010000'), Buffer.alloc(16)]), 0, 0), DecodeError);
  assert.throws(() => parseHeader(hex('f00000000100000102'), 0, 0), DecodeError);
  // Short header with nothing after the DCID.
  assert.throws(() => parseHeader(hex('40010203'), 0, 3), DecodeError);
  assert.throws(() => parseHeader(hex('4001'), 0, 3), DecodeError);
});

test('writers reject out-of-range arguments', () => {
  const buf = Buffer.alloc(20000);
  assert.throws(() => writeLongHeader(buf, 0, PacketType.Initial, 1, EMPTY, EMPTY, null, 16383, 0, 1), RangeError);
  assert.throws(() => writeLongHeader(buf, 0, PacketType.Retry, 1, EMPTY, EMPTY, null, 20, 0, 1), RangeError);
  assert.throws(() => writeLongHeader(buf, 0, PacketType.Handshake, 1, Buffer.alloc(21), EMPTY, null, 20, 0, 1), RangeError);
  assert.throws(() => writeShortHeader(buf, 0, EMPTY, 0, 5, 0), RangeError);
  assert.throws(() => buildRetry(1, EMPTY, hex('01'), EMPTY, hex('02')), RangeError);
  // The largest Length that still fits the 2-byte varint.
  const w = writeLongHeader(buf, 0, PacketType.Initial, 1, EMPTY, EMPTY, null, 16383 - 4, 0, 4);
  assert.equal(buf.readUInt16BE(w.pnOffset - 2), 0x7fff);
});

test('decodePacketNumber: RFC 9000 A.3 example and window edges', () => {
  assert.equal(decodePacketNumber(0xa82f30ea, 0x9b32, 2), 0xa82f9b32);
  assert.equal(decodePacketNumber(-1, 0, 1), 0);
  assert.equal(decodePacketNumber(-1, 2, 4), 2);
  assert.equal(decodePacketNumber(0xff, 0x00, 1), 0x100, 'wraps forward');
  assert.equal(decodePacketNumber(0x100, 0xff, 1), 0xff, 'a slightly older packet');
  assert.equal(decodePacketNumber(0x17f, 0x00, 1), 0x200, 'candidate at expected - hwin moves up a window');
  assert.equal(decodePacketNumber(0x17f, 0x01, 1), 0x101);
  assert.equal(decodePacketNumber(2 ** 40 + 0xfffe, 0x0001, 2), 2 ** 40 + 0x10001, 'exact above 2^32');
  assert.equal(decodePacketNumber(2 ** 40 + 0x10002, 0xffff, 2), 2 ** 40 + 0xffff);
});

test('packetNumberLength: RFC 9000 A.2 examples, and every choice decodes back', () => {
  assert.equal(packetNumberLength(0xac5c02, 0xabe8b3), 2);
  assert.equal(packetNumberLength(0xace8fe, 0xabe8b3), 3);
  assert.equal(packetNumberLength(0, -1), 1);
  assert.equal(packetNumberLength(127, -1), 1);
  assert.equal(packetNumberLength(128, -1), 2);
  assert.equal(packetNumberLength(2 ** 31 + 10, 2), 4);
  // Deterministic pseudo-random sweep: truncating with the chosen length and decoding against the peer's worst-case
  // largest received (largest acked) recovers the packet number.
  let x = 12345;
  const rnd = (n: number): number => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return x % n;
  };
  for (let i = 0; i < 5000; i++) {
    const largestAcked = i % 10 === 0 ? -1 : rnd(2 ** 30);
    const pn = largestAcked + 1 + rnd([100, 40000, 9000000][i % 3]);
    const len = packetNumberLength(pn, largestAcked);
    const truncated = pn % 2 ** (8 * len);
    assert.equal(decodePacketNumber(largestAcked, truncated, len), pn, `pn ${pn} acked ${largestAcked} len ${len}`);
  }
});
