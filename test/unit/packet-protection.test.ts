/**
 * Packet protection against the RFC 9001 Appendix A vectors (keys, client/server Initial, Retry, ChaCha20 short
 * header), plus AEAD failure handling, large packet numbers and key update, with the backend QSR_CRYPTO selects
 * (auto: sodium when it loads). crypto-backend.test.ts runs the vectors on each backend explicitly.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { DecodeError } from '../../src/util/varint.js';
import { INITIAL_SALT_V1, initialKeys, initialSecrets } from '../../src/quic/crypto/initial.js';
import {
  deriveKeyMaterial,
  deriveKeys,
  HeaderProtector,
  nextGenerationKeys,
  PacketAead,
  type DirectionKeys,
} from '../../src/quic/crypto/keys.js';
import { retryIntegrityTag, verifyRetryIntegrity } from '../../src/quic/crypto/retry.js';
import { ALL_SUITES, TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256 } from '../../src/quic/crypto/suites.js';
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
import { CHACHA_PACKET, CHACHA_SECRET, CLIENT_CRYPTO_FRAME, CLIENT_PROTECTED, DCID, RETRY_PACKET, SERVER_PAYLOAD, SERVER_PROTECTED, hex } from '../util/rfc9001.js';

test('RFC 9001 A.1: initial salt, secrets, keys, ivs and header protection keys', () => {
  assert.equal(INITIAL_SALT_V1.toString('hex'), '38762cf7f55934b34d179ae6a4c80cadccbb7f0a');
  const s = initialSecrets(DCID);
  assert.equal(s.client.toString('hex'), 'c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea');
  assert.equal(s.server.toString('hex'), '3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b');
  const c = deriveKeyMaterial(TLS_AES_128_GCM_SHA256, s.client);
  assert.equal(c.key.toString('hex'), '1f369613dd76d5467730efcbe3b1a22d');
  assert.equal(c.iv.toString('hex'), 'fa044b2f42a3fd3b46fb255c');
  assert.equal(c.hpKey.toString('hex'), '9f50449e04a0e810283a1e9933adedd2');
  const sv = deriveKeyMaterial(TLS_AES_128_GCM_SHA256, s.server);
  assert.equal(sv.key.toString('hex'), 'cf3a5331653c364c88f0f379b6067e37');
  assert.equal(sv.iv.toString('hex'), '0ac1493ca1905853b0bba03e');
  assert.equal(sv.hpKey.toString('hex'), 'c206b8d9b9f0f37644430b490eeaa314');
});

test('RFC 9001 A.2/A.3: header protection masks from the given samples', () => {
  const k = initialKeys(DCID);
  assert.equal(k.client.hp.mask(hex('d1b1c98dd7689fb8ec11d242b123dc9b')).subarray(0, 5).toString('hex'), '437b9aec36');
  assert.equal(k.server.hp.mask(hex('2cd0991cd25b0aac406a5816b6394100')).subarray(0, 5).toString('hex'), '2ec0d8356a');
  // The kept ECB cipher carries no state between blocks: the same sample gives the same mask again.
  assert.equal(k.client.hp.mask(hex('d1b1c98dd7689fb8ec11d242b123dc9b')).subarray(0, 5).toString('hex'), '437b9aec36');
});

test('RFC 9001 A.2: client Initial is built and protected to the exact bytes', () => {
  const keys = initialKeys(DCID).client;
  const payloadLength = 1162;
  const buf = Buffer.alloc(1200);
  const h = writeLongHeader(buf, 0, PacketType.Initial, 1, DCID, Buffer.alloc(0), null, payloadLength + 16, 2, 4);
  assert.equal(buf.subarray(0, h.headerEnd).toString('hex'), 'c300000001088394c8f03e5157080000449e00000002');
  assert.equal(h.pnOffset, 18);
  CLIENT_CRYPTO_FRAME.copy(buf, h.headerEnd); // the rest stays zero: PADDING frames
  const end = sealPacket(buf, 0, h.pnOffset, 4, h.headerEnd + payloadLength, 2, keys);
  assert.equal(end, 1200);
  assert.equal(buf.toString('hex'), CLIENT_PROTECTED.toString('hex'));
  assert.equal(keys.aead.packetsSealed, 1);
});

test('RFC 9001 A.2: the protected client Initial unprotects to the CRYPTO frame plus padding', () => {
  const keys = initialKeys(DCID).client;
  const dgram = Buffer.from(CLIENT_PROTECTED);
  const h = parseHeader(dgram, 0, 8);
  assert.equal(h.type, PacketType.Initial);
  const u = removeHeaderProtection(dgram, h, keys.hp, -1);
  assert.deepEqual({ pn: u.pn, pnLength: u.pnLength, headerEnd: u.headerEnd, firstByte: u.firstByte }, { pn: 2, pnLength: 4, headerEnd: 22, firstByte: 0xc3 });
  assert.equal(dgram.subarray(0, 22).toString('hex'), 'c300000001088394c8f03e5157080000449e00000002');
  const plain = openPayload(dgram, h, u, keys.aead);
  assert.ok(plain);
  const expected = Buffer.alloc(1162);
  CLIENT_CRYPTO_FRAME.copy(expected);
  assert.equal(plain.toString('hex'), expected.toString('hex'));
});

test('RFC 9001 A.3: server Initial is built and protected to the exact bytes, and unprotects back', () => {
  const keys = initialKeys(DCID).server;
  const scid = hex('f067a5502a4262b5');
  const buf = Buffer.alloc(SERVER_PROTECTED.length);
  const h = writeLongHeader(buf, 0, PacketType.Initial, 1, Buffer.alloc(0), scid, null, SERVER_PAYLOAD.length + 16, 1, 2);
  assert.equal(buf.subarray(0, h.headerEnd).toString('hex'), 'c1000000010008f067a5502a4262b50040750001');
  SERVER_PAYLOAD.copy(buf, h.headerEnd);
  const end = sealPacket(buf, 0, h.pnOffset, 2, h.headerEnd + SERVER_PAYLOAD.length, 1, keys);
  assert.equal(end, SERVER_PROTECTED.length);
  assert.equal(buf.toString('hex'), SERVER_PROTECTED.toString('hex'));

  const dgram = Buffer.from(SERVER_PROTECTED);
  const ph = parseHeader(dgram, 0, 0);
  assert.deepEqual(ph.scid, scid);
  assert.equal(ph.end, dgram.length);
  const u = removeHeaderProtection(dgram, ph, keys.hp, 0);
  assert.equal(u.pn, 1);
  assert.equal(u.pnLength, 2);
  assert.equal(dgram.subarray(0, u.headerEnd).toString('hex'), 'c1000000010008f067a5502a4262b50040750001');
  assert.equal(openPayload(dgram, ph, u, keys.aead)?.toString('hex'), SERVER_PAYLOAD.toString('hex'));
});

test('RFC 9001 A.4: Retry integrity tag', () => {
  const body = RETRY_PACKET.subarray(0, RETRY_PACKET.length - 16);
  assert.equal(retryIntegrityTag(DCID, body).toString('hex'), '04a265ba2eff4d829058fb3f0f2496ba');
  assert.equal(verifyRetryIntegrity(DCID, RETRY_PACKET), true);
  // buildRetry reproduces the sample packet exactly.
  const built = buildRetry(1, Buffer.alloc(0), hex('f067a5502a4262b5'), Buffer.from('token'), DCID);
  assert.equal(built.toString('hex'), RETRY_PACKET.toString('hex'));
  // A different original DCID or any flipped bit fails verification.
  assert.equal(verifyRetryIntegrity(hex('8394c8f03e515709'), RETRY_PACKET), false);
  for (const i of [0, 7, RETRY_PACKET.length - 17, RETRY_PACKET.length - 1]) {
    const t = Buffer.from(RETRY_PACKET);
    t[i] ^= 0x01;
    assert.equal(verifyRetryIntegrity(DCID, t), false, `flip at ${i}`);
  }
  assert.equal(verifyRetryIntegrity(DCID, RETRY_PACKET.subarray(0, 10)), false);
});

test('RFC 9001 A.5: ChaCha20-Poly1305 key material and key update secret', () => {
  const m = deriveKeyMaterial(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET);
  assert.equal(m.key.toString('hex'), 'c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8');
  assert.equal(m.iv.toString('hex'), 'e0459b3474bdd0e44a41c144');
  assert.equal(m.hpKey.toString('hex'), '25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4');
  const keys = deriveKeys(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET);
  assert.equal(nextGenerationKeys(keys).secret.toString('hex'), '1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9');
  assert.equal(keys.hp.mask(hex('5e5cd55c41f69080575d7999c25a5bfb')).subarray(0, 5).toString('hex'), 'aefefe7d03');
});

test('RFC 9001 A.5: ChaCha20-Poly1305 short header packet protects and unprotects to the exact bytes', () => {
  const keys = deriveKeys(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET);
  const pn = 654360564;
  const buf = Buffer.alloc(21);
  const h = writeShortHeader(buf, 0, Buffer.alloc(0), pn, 3, 0);
  assert.equal(buf.subarray(0, h.headerEnd).toString('hex'), '4200bff4');
  buf[h.headerEnd] = 0x01; // PING
  const end = sealPacket(buf, 0, h.pnOffset, 3, h.headerEnd + 1, pn, keys);
  assert.equal(end, 21);
  assert.equal(buf.toString('hex'), CHACHA_PACKET);

  const dgram = hex(CHACHA_PACKET);
  const ph = parseHeader(dgram, 0, 0);
  assert.equal(ph.type, PacketType.OneRtt);
  const u = removeHeaderProtection(dgram, ph, keys.hp, pn - 1);
  assert.equal(u.pn, pn);
  assert.equal(u.keyPhase, 0);
  assert.equal(dgram.subarray(0, u.headerEnd).toString('hex'), '4200bff4');
  assert.equal(openPayload(dgram, ph, u, keys.aead)?.toString('hex'), '01');
});

// ---- Behaviour beyond the vectors ----

function sealShort(keys: DirectionKeys, pn: number, payload: Buffer, keyPhase: 0 | 1 = 0): Buffer {
  const dcid = hex('0102030405060708');
  const buf = Buffer.alloc(1 + dcid.length + 4 + payload.length + 16);
  const h = writeShortHeader(buf, 0, dcid, pn, 4, keyPhase);
  payload.copy(buf, h.headerEnd);
  return buf.subarray(0, sealPacket(buf, 0, h.pnOffset, 4, h.headerEnd + payload.length, pn, keys));
}

function openShort(keys: DirectionKeys, packet: Buffer, largestPn: number): Buffer | null {
  const dgram = Buffer.from(packet);
  const h = parseHeader(dgram, 0, 8);
  const u = removeHeaderProtection(dgram, h, keys.hp, largestPn);
  return openPayload(dgram, h, u, keys.aead);
}

test('batched header protection masks equal one-at-a-time masks for every suite (RFC 9001 A.2 sample included)', () => {
  const k = initialKeys(DCID);
  const samples = Buffer.concat([hex('d1b1c98dd7689fb8ec11d242b123dc9b'), Buffer.alloc(16, 1), hex('2cd0991cd25b0aac406a5816b6394100')]);
  const batch = k.client.hp.masks(samples);
  assert.equal(batch.subarray(0, 5).toString('hex'), '437b9aec36');
  for (const suite of ALL_SUITES) {
    const hp = deriveKeys(suite, Buffer.alloc(suite.hash === 'sha256' ? 32 : 48, 9)).hp;
    const many = Buffer.alloc(16 * 7);
    for (let i = 0; i < many.length; i++) many[i] = (i * 37 + 11) & 0xff;
    const masks = hp.masks(many);
    for (let i = 0; i < 7; i++) {
      const one = hp.mask(many.subarray(i * 16, i * 16 + 16)).subarray(0, 5);
      assert.deepEqual(masks.subarray(i * 16, i * 16 + 5), one, `${suite.name} sample ${i}`);
    }
  }
  assert.throws(() => k.client.hp.masks(Buffer.alloc(20)), RangeError);
});

test('masks read from the datagrams (masksAt) equal one-at-a-time masks for every suite, a too-short datagram among them', () => {
  for (const suite of ALL_SUITES) {
    const hp = deriveKeys(suite, Buffer.alloc(suite.hash === 'sha256' ? 32 : 48, 5)).hp;
    const at = 13;
    // More datagrams than the AES sample scratch first holds, of different lengths; one too short for a sample.
    const dgrams: Buffer[] = [];
    for (let d = 0; d < 70; d++) {
      const b = Buffer.alloc(d === 3 ? at + 15 : at + 16 + (d % 5) * 100);
      for (let i = 0; i < b.length; i++) b[i] = (i * 31 + d * 7 + 3) & 0xff;
      dgrams.push(b);
    }
    const masks = hp.masksAt(dgrams, at);
    assert.equal(masks.length, 16 * dgrams.length, suite.name);
    for (let d = 0; d < dgrams.length; d++) {
      if (d === 3) continue; // too short for a sample: its mask is never used
      const want = hp.mask(dgrams[d].subarray(at, at + 16)).subarray(0, 5);
      assert.deepEqual(masks.subarray(d * 16, d * 16 + 5), want, `${suite.name} datagram ${d}`);
    }
    // A smaller batch after a larger one (the AES scratch is reused) still gets exactly its own masks.
    const two = hp.masksAt(dgrams.slice(10, 12), at);
    assert.equal(two.length, 32);
    assert.deepEqual(two.subarray(16, 21), hp.mask(dgrams[11].subarray(at, at + 16)).subarray(0, 5), suite.name);
  }
});

test('every suite round-trips a 1200-byte short header packet', () => {
  const payload = Buffer.alloc(1200 - 29, 0xab);
  for (const suite of ALL_SUITES) {
    const secret = Buffer.alloc(suite.hash === 'sha256' ? 32 : 48, 7);
    const packet = sealShort(deriveKeys(suite, secret), 1000, payload);
    assert.equal(packet.length, 1200, suite.name);
    const plain = openShort(deriveKeys(suite, secret), packet, 999);
    assert.deepEqual(plain, payload, suite.name);
  }
});

test('tampered ciphertext, tag or header makes open() return null and counts the failure', () => {
  const keys = initialKeys(DCID).client;
  const aad = hex('c3000000010102');
  const sealed = keys.aead.seal(9, aad, Buffer.from('hello frames'));
  assert.equal(sealed.length, 12 + 16);
  assert.equal(keys.aead.open(9, aad, sealed)?.toString(), 'hello frames');
  for (const i of [0, 11, 12, sealed.length - 1]) {
    const t = Buffer.from(sealed);
    t[i] ^= 0x80;
    assert.equal(keys.aead.open(9, aad, t), null, `flip at ${i}`);
  }
  assert.equal(keys.aead.open(9, hex('c3000000010103'), sealed), null, 'wrong AAD');
  assert.equal(keys.aead.open(10, aad, sealed), null, 'wrong packet number');
  assert.equal(keys.aead.open(9, aad, sealed.subarray(0, 15)), null, 'shorter than a tag');
  assert.equal(keys.aead.failedOpens, 7);
  assert.equal(keys.aead.packetsSealed, 1);

  // Through the packet path: a flipped payload byte fails after header protection is removed.
  const k = deriveKeys(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET);
  const packet = Buffer.from(sealShort(k, 5, Buffer.alloc(40, 1)));
  packet[packet.length - 20] ^= 1;
  assert.equal(openShort(k, packet, 4), null);
});

test('sealInPlace matches seal and leaves the AAD alone', () => {
  const keys = initialKeys(DCID).server;
  const aad = hex('40aabbccdd00000007');
  const pt = Buffer.from('some plaintext that is longer than one block');
  const buf = Buffer.alloc(3 + aad.length + pt.length + 16 + 5, 0xee);
  aad.copy(buf, 3);
  pt.copy(buf, 3 + aad.length);
  const end = keys.aead.sealInPlace(7, buf, 3, 3 + aad.length, 3 + aad.length + pt.length);
  assert.equal(end, 3 + aad.length + pt.length + 16);
  assert.deepEqual(buf.subarray(3, end), Buffer.concat([aad, keys.aead.seal(7, aad, pt)]));
  assert.deepEqual(buf.subarray(0, 3), Buffer.alloc(3, 0xee));
  assert.deepEqual(buf.subarray(end), Buffer.alloc(5, 0xee));
  assert.throws(() => keys.aead.sealInPlace(7, Buffer.alloc(20), 0, 2, 10), RangeError);
});

test('nonce uses the full packet number above 2^32 (iv XOR 62-bit pn)', () => {
  const key = hex('000102030405060708090a0b0c0d0e0f');
  const iv = hex('a0a1a2a3a4a5a6a7a8a9aaab');
  const aead = new PacketAead(TLS_AES_128_GCM_SHA256, key, iv);
  for (const pn of [0, 1, 0xffffffff, 2 ** 32, 2 ** 40 + 0x1234567, 2 ** 53 - 1]) {
    const nonce = Buffer.from(iv);
    const pnBytes = Buffer.alloc(8);
    pnBytes.writeBigUInt64BE(BigInt(pn));
    for (let i = 0; i < 8; i++) nonce[4 + i] ^= pnBytes[i];
    const c = createCipheriv('aes-128-gcm', key, nonce);
    c.setAAD(hex('ff'));
    const expected = Buffer.concat([c.update(Buffer.from('x')), c.final(), c.getAuthTag()]);
    assert.deepEqual(aead.seal(pn, hex('ff'), Buffer.from('x')), expected, `pn ${pn}`);
  }
});

test('AES header protection masks equal a one-shot AES-ECB of each sample', () => {
  const key = hex('9f50449e04a0e810283a1e9933adedd2');
  const hp = new HeaderProtector(TLS_AES_128_GCM_SHA256, key);
  for (let i = 0; i < 20; i++) {
    const sample = Buffer.alloc(16, i * 13);
    sample[0] = i;
    const c = createCipheriv('aes-128-ecb', key, null);
    c.setAutoPadding(false);
    const expected = Buffer.concat([c.update(sample), c.final()]);
    assert.deepEqual(Buffer.from(hp.mask(sample)).subarray(0, 5), expected.subarray(0, 5));
  }
});

test('packets too short for a header protection sample are rejected', () => {
  const keys = deriveKeys(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET);
  // pnLength 1 + 2-byte payload: under the 4-byte minimum the sender must pad to.
  const buf = Buffer.alloc(64);
  const h = writeShortHeader(buf, 0, Buffer.alloc(0), 3, 1, 0);
  assert.throws(() => sealPacket(buf, 0, h.pnOffset, 1, h.headerEnd + 2, 3, keys), RangeError);
  // Receiving: 20 bytes after the short header's pn offset is one short of pnOffset + 4 + 16.
  const dgram = Buffer.alloc(1 + 19, 0x41);
  dgram[0] = 0x40;
  const ph = parseHeader(dgram, 0, 0);
  assert.throws(() => removeHeaderProtection(dgram, ph, keys.hp, -1), DecodeError);
});

test('key update: two generations give distinct keys with the same header protection; packets open only with their generation', () => {
  for (const suite of [TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256]) {
    const gen0 = deriveKeys(suite, Buffer.alloc(32, 0x42));
    const gen1 = nextGenerationKeys(gen0);
    const gen2 = nextGenerationKeys(gen1);
    assert.notDeepEqual(gen1.secret, gen0.secret);
    assert.notDeepEqual(gen2.secret, gen1.secret);
    assert.notDeepEqual(gen2.secret, gen0.secret);
    assert.equal(gen1.hp, gen0.hp);
    assert.equal(gen2.hp, gen0.hp);
    const k0 = deriveKeyMaterial(suite, gen0.secret);
    const k1 = deriveKeyMaterial(suite, gen1.secret);
    const k2 = deriveKeyMaterial(suite, gen2.secret);
    assert.notDeepEqual(k1.key, k0.key);
    assert.notDeepEqual(k2.key, k1.key);
    assert.notDeepEqual(k1.iv, k0.iv);

    const payload = Buffer.from('0100000000000000000000', 'hex');
    const packet = sealShort(gen1, 77, payload, 1);
    // Same header protection: every generation can read the header and sees key phase 1.
    const view = Buffer.from(packet);
    const u = removeHeaderProtection(view, parseHeader(view, 0, 8), gen0.hp, 76);
    assert.equal(u.keyPhase, 1);
    assert.equal(u.pn, 77);
    assert.deepEqual(openShort(gen1, packet, 76), payload, suite.name);
    assert.equal(openShort(gen0, packet, 76), null, suite.name);
    assert.equal(openShort(gen2, packet, 76), null, suite.name);
    // A fresh derivation of generation 1 from the secret chain opens it too.
    assert.deepEqual(openShort(nextGenerationKeys(deriveKeys(suite, Buffer.alloc(32, 0x42))), packet, 76), payload);
  }
});

test('header protection leaves the long header form, fixed bit and type bits alone (only the low 4 bits)', () => {
  const keys = initialKeys(DCID).server;
  let sawMaskedBits = 0;
  for (let pn = 0; pn < 64; pn++) {
    const buf = Buffer.alloc(200);
    const h = writeLongHeader(buf, 0, PacketType.Handshake, 1, DCID, hex('01'), null, 40 + 16, pn, 2);
    const end = sealPacket(buf, 0, h.pnOffset, 2, h.headerEnd + 40, pn, keys);
    assert.equal(buf[0] & 0xf0, 0xe0, `pn ${pn}`);
    sawMaskedBits |= buf[0] & 0x0c; // reserved bits get masked too
    const dgram = buf.subarray(0, end);
    const ph = parseHeader(dgram, 0, 0);
    const u = removeHeaderProtection(dgram, ph, keys.hp, pn - 1);
    assert.equal(u.firstByte, 0xe1);
    assert.equal(u.pn, pn);
  }
  assert.notEqual(sawMaskedBits, 0);
});
