/**
 * Packet protection against the RFC 9001 Appendix A vectors (keys, client/server Initial, Retry, ChaCha20 short
 * header), plus AEAD failure handling, large packet numbers and key update.
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

function hex(s: string): Buffer {
  return Buffer.from(s, 'hex');
}

const DCID = hex('8394c8f03e515708');

// ---- RFC 9001 Appendix A vectors (hex copied from the RFC) ----
const CLIENT_CRYPTO_FRAME = hex(
  '060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868' +
  '04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578' +
  '616d706c652e636f6dff01000100000a00080006001d00170018001000070005' +
  '04616c706e000500050100000000003300260024001d00209370b2c9caa47fba' +
  'baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400' +
  '0d0010000e0403050306030203080408050806002d00020101001c0002400100' +
  '3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000' +
  '75300901100f088394c8f03e51570806048000ffff',
);
const CLIENT_PROTECTED = hex(
  'c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11' +
  'd242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399' +
  '1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c' +
  '8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212' +
  '30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5' +
  '457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208' +
  '4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec' +
  '4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3' +
  '485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db' +
  '059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c' +
  '7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8' +
  '9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556' +
  'be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74' +
  '68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a' +
  'c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00' +
  'f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632' +
  '291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964' +
  '25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd' +
  '14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff' +
  'ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198' +
  'e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd' +
  'c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73' +
  '203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f' +
  'cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e' +
  'fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade' +
  'a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047' +
  '90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2' +
  '162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4' +
  '40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0' +
  '6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e' +
  '8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0' +
  'be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400' +
  '54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab' +
  '760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9' +
  'f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4' +
  '056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064' +
  '7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241' +
  'e221af44860018ab0856972e194cd934',
);
const SERVER_PAYLOAD = hex(
  '02000000000600405a020000560303eefce7f7b37ba1d1632e96677825ddf739' +
  '88cfc79825df566dc5430b9a045a1200130100002e00330024001d00209d3c94' +
  '0d89690b84d08a60993c144eca684d1081287c834d5311bcf32bb9da1a002b00' +
  '020304',
);
const SERVER_PROTECTED = hex(
  'cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a' +
  '5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3' +
  'dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84' +
  '022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4' +
  '2158407dd074ee',
);
const RETRY_PACKET = hex(
  'ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f' +
  '0f2496ba',
);

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

const CHACHA_SECRET = hex('9ac312a7f877468ebe69422748ad00a15443f18203a07d6060f688f30f21632b');
const CHACHA_PACKET = '4cfe4189655e5cd55c41f69080575d7999c25a5bfb';

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
