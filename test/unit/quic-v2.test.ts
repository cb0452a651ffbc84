/**
 * QUIC v2 packet protection (RFC 9369) against every vector of RFC 9369 Appendix A, computed by the versioned
 * functions (initial.ts, keys.ts, retry.ts, header.ts with version.ts's descriptors) and compared byte for byte; the
 * long header type bits of both versions; and RFC 9001's v1 vectors through the same functions with VERSION_1 given
 * explicitly. v2 is packet protection only: parseHeader still treats v2 as an unknown version unless asked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { initialKeys, initialSecret, initialSecrets, clientInitialKeys, serverInitialKeys } from '../../src/quic/crypto/initial.js';
import { deriveKeyMaterial, deriveKeys, nextGenerationKeys } from '../../src/quic/crypto/keys.js';
import { retryIntegrityTag, verifyRetryIntegrity } from '../../src/quic/crypto/retry.js';
import { TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256 } from '../../src/quic/crypto/suites.js';
import {
  buildRetry,
  openPayload,
  PacketType,
  parseHeader,
  removeHeaderProtection,
  sealPacket,
  writeLongHeader,
  writeShortHeader,
} from '../../src/quic/packet/header.js';
import {
  decodeLongHeaderType,
  encodeLongHeaderType,
  QUIC_V1,
  QUIC_V2,
  requireVersionParams,
  VERSION_1,
  VERSION_2,
  versionParams,
  type QuicVersionParams,
} from '../../src/quic/version.js';
import { CHACHA_PACKET, CHACHA_SECRET, CLIENT_CRYPTO_FRAME, CLIENT_PROTECTED, DCID, RETRY_PACKET, SERVER_PAYLOAD, SERVER_PROTECTED, hex } from '../util/rfc9001.js';
import { V2_CHACHA_PACKET, V2_CLIENT_PROTECTED, V2_RETRY_PACKET, V2_SERVER_PROTECTED } from '../util/rfc9369.js';

const SERVER_SCID = hex('f067a5502a4262b5');

test('RFC 9369 §3: the v2 descriptor (version, salt, labels, Retry key and nonce)', () => {
  assert.equal(QUIC_V2, 0x6b3343cf);
  assert.equal(VERSION_2.version, QUIC_V2);
  assert.equal(VERSION_2.initialSalt.toString('hex'), '0dede3def700a6db819381be6e269dcbf9bd2ed9');
  assert.deepEqual({ ...VERSION_2.labels }, { key: 'quicv2 key', iv: 'quicv2 iv', hp: 'quicv2 hp', ku: 'quicv2 ku' });
  assert.equal(VERSION_2.retryKey.toString('hex'), '8fb4b01b56ac48e260fbcbcead7ccc92');
  assert.equal(VERSION_2.retryNonce.toString('hex'), 'd86969bc2d7c6d9990efb04a');
  // §3.3.3: the key and nonce are HKDF-Expand-Label of the published retry secret with the v2 labels.
  const retrySecret = hex('c4dd2484d681aefa4ff4d69c2c20299984a765a5d3c31982f38fc74162155e9f');
  const m = deriveKeyMaterial(TLS_AES_128_GCM_SHA256, retrySecret, VERSION_2.labels);
  assert.equal(m.key.toString('hex'), VERSION_2.retryKey.toString('hex'));
  assert.equal(m.iv.toString('hex'), VERSION_2.retryNonce.toString('hex'));
  assert.equal(versionParams(QUIC_V1), VERSION_1);
  assert.equal(versionParams(QUIC_V2), VERSION_2);
  assert.equal(versionParams(0xff00001d), undefined);
  assert.throws(() => requireVersionParams(0x709a50c4), /QUIC version 0x709a50c4/);
});

test('RFC 9369 A.1: initial secret, client and server secrets, keys, ivs and header protection keys', () => {
  assert.equal(initialSecret(DCID, VERSION_2).toString('hex'), '2062e8b3cd8d52092614b8071d0aa1fb7c2e3ac193f78b280e72d8f5751f6aba');
  const s = initialSecrets(DCID, VERSION_2);
  assert.equal(s.client.toString('hex'), '14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b');
  assert.equal(s.server.toString('hex'), '0263db1782731bf4588e7e4d93b7463907cb8cd8200b5da55a8bd488eafc37c1');
  const c = deriveKeyMaterial(TLS_AES_128_GCM_SHA256, s.client, VERSION_2.labels);
  assert.equal(c.key.toString('hex'), '8b1a0bc121284290a29e0971b5cd045d');
  assert.equal(c.iv.toString('hex'), '91f73e2351d8fa91660e909f');
  assert.equal(c.hpKey.toString('hex'), '45b95e15235d6f45a6b19cbcb0294ba9');
  const sv = deriveKeyMaterial(TLS_AES_128_GCM_SHA256, s.server, VERSION_2.labels);
  assert.equal(sv.key.toString('hex'), '82db637861d55e1d011f19ea71d5d2a7');
  assert.equal(sv.iv.toString('hex'), 'dd13c276499c0249d3310652');
  assert.equal(sv.hpKey.toString('hex'), 'edf6d05c83121201b436e16877593c3a');
  // The header protection keys of the derived DirectionKeys give the A.2/A.3 masks.
  const k = initialKeys(DCID, VERSION_2);
  assert.equal(k.client.hp.mask(hex('ffe67b6abcdb4298b485dd04de806071')).subarray(0, 5).toString('hex'), '94a0c95e80');
  assert.equal(k.server.hp.mask(hex('6f05d8a4398c47089698baeea26b91eb')).subarray(0, 5).toString('hex'), '4dd92e91ea');
  // The server's split derivation (clientInitialKeys then serverInitialKeys) gives the same secrets.
  const first = clientInitialKeys(DCID, VERSION_2);
  assert.equal(first.keys.secret.toString('hex'), s.client.toString('hex'));
  assert.equal(serverInitialKeys(first.initial, VERSION_2).secret.toString('hex'), s.server.toString('hex'));
  // v1 and v2 keys differ: a v1 key must never open a v2 packet.
  assert.notEqual(initialSecrets(DCID).client.toString('hex'), s.client.toString('hex'));
});

test('RFC 9369 A.2: client Initial is built and protected to the exact bytes, and unprotects back', () => {
  const keys = initialKeys(DCID, VERSION_2).client;
  const buf = Buffer.alloc(1200);
  const h = writeLongHeader(buf, 0, PacketType.Initial, QUIC_V2, DCID, Buffer.alloc(0), null, 1162 + 16, 2, 4);
  assert.equal(buf.subarray(0, h.headerEnd).toString('hex'), 'd36b3343cf088394c8f03e5157080000449e00000002');
  CLIENT_CRYPTO_FRAME.copy(buf, h.headerEnd); // PADDING to 1162 bytes
  assert.equal(sealPacket(buf, 0, h.pnOffset, 4, h.headerEnd + 1162, 2, keys), 1200);
  assert.equal(buf.toString('hex'), V2_CLIENT_PROTECTED.toString('hex'));

  const dgram = Buffer.from(V2_CLIENT_PROTECTED);
  const ph = parseHeader(dgram, 0, 8, true);
  assert.equal(ph.type, PacketType.Initial);
  assert.equal(ph.version, QUIC_V2);
  assert.deepEqual(ph.dcid, DCID);
  assert.equal(ph.end, 1200);
  const u = removeHeaderProtection(dgram, ph, keys.hp, -1);
  assert.deepEqual({ pn: u.pn, pnLength: u.pnLength, headerEnd: u.headerEnd, firstByte: u.firstByte }, { pn: 2, pnLength: 4, headerEnd: 22, firstByte: 0xd3 });
  const plain = openPayload(dgram, ph, u, keys.aead);
  const expected = Buffer.alloc(1162);
  CLIENT_CRYPTO_FRAME.copy(expected);
  assert.equal(plain?.toString('hex'), expected.toString('hex'));

  // The v1 Initial keys for the same DCID do not open it.
  const wrong = Buffer.from(V2_CLIENT_PROTECTED);
  const wh = parseHeader(wrong, 0, 8, true);
  const v1 = initialKeys(DCID).client;
  const wu = removeHeaderProtection(wrong, wh, v1.hp, -1);
  assert.equal(openPayload(wrong, wh, wu, v1.aead), null);
});

test('RFC 9369 A.3: server Initial is built and protected to the exact bytes, and unprotects back', () => {
  const keys = initialKeys(DCID, VERSION_2).server;
  const buf = Buffer.alloc(V2_SERVER_PROTECTED.length);
  const h = writeLongHeader(buf, 0, PacketType.Initial, QUIC_V2, Buffer.alloc(0), SERVER_SCID, null, SERVER_PAYLOAD.length + 16, 1, 2);
  assert.equal(buf.subarray(0, h.headerEnd).toString('hex'), 'd16b3343cf0008f067a5502a4262b50040750001');
  SERVER_PAYLOAD.copy(buf, h.headerEnd);
  assert.equal(sealPacket(buf, 0, h.pnOffset, 2, h.headerEnd + SERVER_PAYLOAD.length, 1, keys), buf.length);
  assert.equal(buf.toString('hex'), V2_SERVER_PROTECTED.toString('hex'));

  const dgram = Buffer.from(V2_SERVER_PROTECTED);
  const ph = parseHeader(dgram, 0, 0, true);
  assert.equal(ph.type, PacketType.Initial);
  assert.deepEqual(ph.scid, SERVER_SCID);
  const u = removeHeaderProtection(dgram, ph, keys.hp, 0);
  assert.equal(u.pn, 1);
  assert.equal(dgram.subarray(0, u.headerEnd).toString('hex'), 'd16b3343cf0008f067a5502a4262b50040750001');
  assert.equal(openPayload(dgram, ph, u, keys.aead)?.toString('hex'), SERVER_PAYLOAD.toString('hex'));
});

test('RFC 9369 A.4: Retry is built to the exact bytes; its tag verifies only with v2 and the right original DCID', () => {
  const built = buildRetry(QUIC_V2, Buffer.alloc(0), SERVER_SCID, Buffer.from('token'), DCID);
  assert.equal(built.toString('hex'), V2_RETRY_PACKET.toString('hex'));
  const body = V2_RETRY_PACKET.subarray(0, V2_RETRY_PACKET.length - 16);
  assert.equal(retryIntegrityTag(DCID, body, VERSION_2).toString('hex'), 'c8646ce8bfe33952d955543665dcc7b6');
  assert.equal(verifyRetryIntegrity(DCID, V2_RETRY_PACKET, VERSION_2), true);
  assert.equal(verifyRetryIntegrity(DCID, V2_RETRY_PACKET), false, 'the v1 key must not verify a v2 Retry');
  assert.equal(verifyRetryIntegrity(DCID, RETRY_PACKET, VERSION_2), false, 'the v2 key must not verify a v1 Retry');
  assert.equal(verifyRetryIntegrity(hex('8394c8f03e515709'), V2_RETRY_PACKET, VERSION_2), false);
  for (const i of [0, 4, V2_RETRY_PACKET.length - 17, V2_RETRY_PACKET.length - 1]) {
    const t = Buffer.from(V2_RETRY_PACKET);
    t[i] ^= 0x01;
    assert.equal(verifyRetryIntegrity(DCID, t, VERSION_2), false, `flip at ${i}`);
  }
  // Parsed as v2, the type bits 0b00 are a Retry with the token before the tag.
  const ph = parseHeader(Buffer.from(V2_RETRY_PACKET), 0, 8, true);
  assert.equal(ph.type, PacketType.Retry);
  assert.equal(ph.token.toString(), 'token');
  assert.deepEqual(ph.scid, SERVER_SCID);
});

test('RFC 9369 A.5: ChaCha20-Poly1305 key material, key update secret and the short header packet', () => {
  const m = deriveKeyMaterial(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET, VERSION_2.labels);
  assert.equal(m.key.toString('hex'), '3bfcddd72bcf02541d7fa0dd1f5f9eeea817e09a6963a0e6c7df0f9a1bab90f2');
  assert.equal(m.iv.toString('hex'), 'a6b5bc6ab7dafce30ffff5dd');
  assert.equal(m.hpKey.toString('hex'), 'd659760d2ba434a226fd37b35c69e2da8211d10c4f12538787d65645d5d1b8e2');
  const keys = deriveKeys(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET, VERSION_2.labels);
  const next = nextGenerationKeys(keys, VERSION_2.labels);
  assert.equal(next.secret.toString('hex'), 'c69374c49e3d2a9466fa689e49d476db5d0dfbc87d32ceeaa6343fd0ae4c7d88');
  assert.equal(next.hp, keys.hp, 'key update keeps the header protection key');
  assert.equal(keys.hp.mask(hex('e7b6b932bc27d786f4bc2bb20f2162ba')).subarray(0, 5).toString('hex'), '97580e32bf');

  const pn = 654360564;
  const buf = Buffer.alloc(21);
  const h = writeShortHeader(buf, 0, Buffer.alloc(0), pn, 3, 0);
  assert.equal(buf.subarray(0, h.headerEnd).toString('hex'), '4200bff4');
  buf[h.headerEnd] = 0x01; // PING
  assert.equal(sealPacket(buf, 0, h.pnOffset, 3, h.headerEnd + 1, pn, keys), 21);
  assert.equal(buf.toString('hex'), V2_CHACHA_PACKET);
  assert.equal(buf.subarray(4).toString('hex'), '0ae7b6b932bc27d786f4bc2bb20f2162ba');

  const dgram = hex(V2_CHACHA_PACKET);
  const ph = parseHeader(dgram, 0, 0, true);
  assert.equal(ph.type, PacketType.OneRtt);
  const u = removeHeaderProtection(dgram, ph, keys.hp, pn - 1);
  assert.equal(u.pn, pn);
  assert.equal(openPayload(dgram, ph, u, keys.aead)?.toString('hex'), '01');
});

test('long header types: encode/decode round trip for v1 and v2, and the RFC 9369 §3.2 bit values', () => {
  const types = [PacketType.Initial, PacketType.ZeroRtt, PacketType.Handshake, PacketType.Retry];
  const v2Bits = [0b01, 0b10, 0b11, 0b00];
  for (const v of [VERSION_1, VERSION_2]) {
    const seen = new Set<number>();
    for (const [i, t] of types.entries()) {
      const bits = encodeLongHeaderType(t, v);
      assert.equal(bits, (v === VERSION_1 ? t : v2Bits[i]) << 4, `${v.name} type ${t}`);
      seen.add(bits);
      // Decoding ignores every bit but the two type bits.
      for (const other of [0xc0, 0xcf, 0xff & ~0x30]) assert.equal(decodeLongHeaderType((other & ~0x30) | bits, v), t);
    }
    assert.equal(seen.size, 4, `${v.name}: four distinct encodings`);
  }
  assert.throws(() => encodeLongHeaderType(4), /not a long header packet type: 4/);
  assert.throws(() => encodeLongHeaderType(-1, VERSION_2), /not a long header packet type/);

  // Through writeLongHeader and parseHeader: each type written for each version parses back to the same type.
  for (const [version, v] of [[QUIC_V1, VERSION_1], [QUIC_V2, VERSION_2]] as [number, QuicVersionParams][]) {
    for (const t of [PacketType.Initial, PacketType.ZeroRtt, PacketType.Handshake]) {
      const buf = Buffer.alloc(64);
      const w = writeLongHeader(buf, 0, t, version, hex('0102030405060708'), hex('aabb'), null, 30, 7, 1);
      assert.equal(buf[0] & 0x30, encodeLongHeaderType(t, v));
      const h = parseHeader(buf.subarray(0, w.headerEnd + 30), 0, 8, true);
      assert.deepEqual({ type: h.type, version: h.version, pnOffset: h.pnOffset }, { type: t, version, pnOffset: w.pnOffset });
    }
  }
});

test('v2 is not parsed unless asked: parseHeader by default returns only the invariant fields (as for any unknown version)', () => {
  const dgram = Buffer.from(V2_CLIENT_PROTECTED);
  const h = parseHeader(dgram, 0, 8);
  assert.equal(h.version, QUIC_V2);
  assert.deepEqual(h.dcid, DCID);
  assert.equal(h.pnOffset, dgram.length);
  assert.equal(h.end, dgram.length);
  // v1 packets parse the same with and without parseV2.
  assert.deepEqual(parseHeader(Buffer.from(CLIENT_PROTECTED), 0, 8, true), parseHeader(Buffer.from(CLIENT_PROTECTED), 0, 8));
});

test('RFC 9001 A.1-A.5 still hold through the versioned functions with VERSION_1 given explicitly', () => {
  const s = initialSecrets(DCID, VERSION_1);
  assert.equal(s.client.toString('hex'), 'c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea');
  assert.equal(s.server.toString('hex'), '3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b');
  const c = deriveKeyMaterial(TLS_AES_128_GCM_SHA256, s.client, VERSION_1.labels);
  assert.equal(c.key.toString('hex'), '1f369613dd76d5467730efcbe3b1a22d');
  assert.equal(c.iv.toString('hex'), 'fa044b2f42a3fd3b46fb255c');
  assert.equal(c.hpKey.toString('hex'), '9f50449e04a0e810283a1e9933adedd2');

  // A.2: client Initial.
  const ck = initialKeys(DCID, VERSION_1).client;
  const buf = Buffer.alloc(1200);
  const h = writeLongHeader(buf, 0, PacketType.Initial, QUIC_V1, DCID, Buffer.alloc(0), null, 1162 + 16, 2, 4);
  CLIENT_CRYPTO_FRAME.copy(buf, h.headerEnd);
  sealPacket(buf, 0, h.pnOffset, 4, h.headerEnd + 1162, 2, ck);
  assert.equal(buf.toString('hex'), CLIENT_PROTECTED.toString('hex'));

  // A.3: server Initial, from the server's split derivation.
  const sk = serverInitialKeys(clientInitialKeys(DCID, VERSION_1).initial, VERSION_1);
  const sb = Buffer.alloc(SERVER_PROTECTED.length);
  const sh = writeLongHeader(sb, 0, PacketType.Initial, QUIC_V1, Buffer.alloc(0), SERVER_SCID, null, SERVER_PAYLOAD.length + 16, 1, 2);
  SERVER_PAYLOAD.copy(sb, sh.headerEnd);
  sealPacket(sb, 0, sh.pnOffset, 2, sh.headerEnd + SERVER_PAYLOAD.length, 1, sk);
  assert.equal(sb.toString('hex'), SERVER_PROTECTED.toString('hex'));

  // A.4: Retry.
  assert.equal(buildRetry(QUIC_V1, Buffer.alloc(0), SERVER_SCID, Buffer.from('token'), DCID).toString('hex'), RETRY_PACKET.toString('hex'));
  assert.equal(verifyRetryIntegrity(DCID, RETRY_PACKET, VERSION_1), true);

  // A.5: ChaCha20-Poly1305 short header packet and the key update secret.
  const keys = deriveKeys(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET, VERSION_1.labels);
  assert.equal(nextGenerationKeys(keys, VERSION_1.labels).secret.toString('hex'), '1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9');
  const pb = Buffer.alloc(21);
  const ph = writeShortHeader(pb, 0, Buffer.alloc(0), 654360564, 3, 0);
  pb[ph.headerEnd] = 0x01;
  sealPacket(pb, 0, ph.pnOffset, 3, ph.headerEnd + 1, 654360564, keys);
  assert.equal(pb.toString('hex'), CHACHA_PACKET);
});
