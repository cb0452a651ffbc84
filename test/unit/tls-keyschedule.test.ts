/**
 * TLS 1.3 key schedule against RFC 8448 §3 ("Simple 1-RTT Handshake"). Values are the trace's hex; the one value
 * the RFC does not print (the transcript hash through CertificateVerify) is the SHA-256 over the trace's messages.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, createPrivateKey } from 'node:crypto';
import { hkdfExpandLabel } from '../../src/quic/crypto/hkdf.js';
import {
  deriveApplicationSecrets,
  deriveHandshakeSecrets,
  deriveSecret,
  earlySecret,
  emptyHash,
  finishedKey,
  finishedVerifyData,
  handshakeSecret,
  masterSecret,
  Transcript,
} from '../../src/quic/tls/keyschedule.js';
import { generateKeyShare, sodiumX25519ShareFromRaw, x25519ShareFromPrivateKey, type KeyShare } from '../../src/quic/tls/keyshare.js';
import { TlsAlert, TlsError } from '../../src/quic/errors.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

const V = {
  clientPrivate: hex('49af42ba7f7994852d713ef2784bcbcaa7911de26adc5642cb634540e7ea5005'),
  clientPublic: hex('99381de560e4bd43d23d8e435a7dbafeb3c06e51c13cae4d5413691e529aaf2c'),
  serverPrivate: hex('b1580eeadf6dd589b8ef4f2d5652578cc810e9980191ec8d058308cea216a21e'),
  serverPublic: hex('c9828876112095fe66762bdbf7c672e156d6cc253b833df1dd69b1b04e751f0f'),
  shared: hex('8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d'),
  early: hex('33ad0a1c607ec03b09e6cd9893680ce210adf300aa1f2660e1b22e10f170f92a'),
  derivedForHandshake: hex('6f2615a108c702c5678f54fc9dbab69716c076189c48250cebeac3576c3611ba'),
  handshake: hex('1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac'),
  helloHash: hex('860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8'),
  clientHs: hex('b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21'),
  serverHs: hex('b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38'),
  clientFinishedKey: hex('b80ad01015fb2f0bd65ff7d4da5d6bf83f84821d1f87fdc7d3c75b5a7b42d9c4'),
  serverFinishedKey: hex('008d3b66f816ea559f96b537e885c31fc068bf492c652f01f288a1d8cdc19fc8'),
  derivedForMaster: hex('43de77e0c77713859a944db9db2590b53190a65b3ee2e4f12dd7a0bb7ce254b4'),
  master: hex('18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919'),
  certificateVerifyHash: hex('edb7725fa7a3473b031ec8ef65a2485493900138a2b91291407d7951a06110ed'),
  serverFinished: hex('9b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718'),
  serverFinishedHash: hex('9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13'),
  clientFinished: hex('a8ec436d677634ae525ac1fcebe11a039ec17694fac6e98527b642f2edd5ce61'),
  clientAp: hex('9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5'),
  serverAp: hex('a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643'),
  exporter: hex('fe22f881176eda18eb8f44529e6792c50c9a3f89452f68d8ae311b4309d3cf50'),
};

function x25519Private(raw: Buffer) {
  // PKCS#8 wrapper for a raw X25519 private key (OID 1.3.101.110).
  return createPrivateKey({ key: Buffer.concat([hex('302e020100300506032b656e04220420'), raw]), format: 'der', type: 'pkcs8' });
}

test('RFC 8448 §3: X25519 key shares and shared secret', () => {
  const client = x25519ShareFromPrivateKey(x25519Private(V.clientPrivate));
  const server = x25519ShareFromPrivateKey(x25519Private(V.serverPrivate));
  assert.equal(client.publicKey.toString('hex'), V.clientPublic.toString('hex'));
  assert.equal(server.publicKey.toString('hex'), V.serverPublic.toString('hex'));
  assert.equal(client.computeSecret(V.serverPublic).toString('hex'), V.shared.toString('hex'));
  assert.equal(server.computeSecret(V.clientPublic).toString('hex'), V.shared.toString('hex'));
});

test('RFC 8448 §3: X25519 on libsodium (when sodium-native loads) gives the same keys and shared secret', (t) => {
  const client = sodiumX25519ShareFromRaw(V.clientPrivate);
  const server = sodiumX25519ShareFromRaw(V.serverPrivate);
  if (client === null || server === null) return t.skip('sodium-native does not load here');
  assert.equal(client.publicKey.toString('hex'), V.clientPublic.toString('hex'));
  assert.equal(server.publicKey.toString('hex'), V.serverPublic.toString('hex'));
  assert.equal(client.computeSecret(V.serverPublic).toString('hex'), V.shared.toString('hex'));
  assert.equal(server.computeSecret(V.clientPublic).toString('hex'), V.shared.toString('hex'));
});

test('X25519: a small-order peer key (all-zero shared secret) and a wrong length are illegal_parameter, on both backends', () => {
  const shares: KeyShare[] = [x25519ShareFromPrivateKey(x25519Private(V.clientPrivate)), generateKeyShare('x25519')];
  const viaSodium = sodiumX25519ShareFromRaw(V.clientPrivate);
  if (viaSodium) shares.push(viaSodium);
  // RFC 7748 §6.1: points of small order, here 0 and 1, give an all-zero result.
  const one = Buffer.alloc(32);
  one[0] = 1;
  for (const share of shares) {
    for (const bad of [Buffer.alloc(32), one]) {
      assert.throws(
        () => share.computeSecret(bad),
        (e: unknown) => e instanceof TlsError && e.alert === TlsAlert.illegal_parameter && /all zero/.test(e.message),
      );
    }
    assert.throws(() => share.computeSecret(Buffer.alloc(31, 9)), (e: unknown) => e instanceof TlsError && e.alert === TlsAlert.illegal_parameter);
  }
});

test('X25519: the node:crypto and the default backend agree on a shared secret', () => {
  const a = x25519ShareFromPrivateKey(x25519Private(V.serverPrivate));
  const b = generateKeyShare('x25519');
  assert.deepEqual(a.computeSecret(b.publicKey), b.computeSecret(a.publicKey));
});

test('RFC 8448 §3: early, handshake and master secrets step by step', () => {
  const early = earlySecret('sha256');
  assert.equal(early.toString('hex'), V.early.toString('hex'));
  assert.equal(deriveSecret('sha256', early, 'derived', emptyHash('sha256')).toString('hex'), V.derivedForHandshake.toString('hex'));
  const hs = handshakeSecret('sha256', early, V.shared);
  assert.equal(hs.toString('hex'), V.handshake.toString('hex'));
  assert.equal(deriveSecret('sha256', hs, 'c hs traffic', V.helloHash).toString('hex'), V.clientHs.toString('hex'));
  assert.equal(deriveSecret('sha256', hs, 's hs traffic', V.helloHash).toString('hex'), V.serverHs.toString('hex'));
  assert.equal(deriveSecret('sha256', hs, 'derived', emptyHash('sha256')).toString('hex'), V.derivedForMaster.toString('hex'));
  assert.equal(masterSecret('sha256', hs).toString('hex'), V.master.toString('hex'));
});

test('RFC 8448 §3: handshake and application traffic secrets via the bundled helpers', () => {
  const hs = deriveHandshakeSecrets('sha256', V.shared, V.helloHash);
  assert.equal(hs.handshakeSecret.toString('hex'), V.handshake.toString('hex'));
  assert.equal(hs.clientHandshakeTrafficSecret.toString('hex'), V.clientHs.toString('hex'));
  assert.equal(hs.serverHandshakeTrafficSecret.toString('hex'), V.serverHs.toString('hex'));
  const app = deriveApplicationSecrets('sha256', hs.handshakeSecret, V.serverFinishedHash);
  assert.equal(app.masterSecret.toString('hex'), V.master.toString('hex'));
  assert.equal(app.clientApplicationTrafficSecret.toString('hex'), V.clientAp.toString('hex'));
  assert.equal(app.serverApplicationTrafficSecret.toString('hex'), V.serverAp.toString('hex'));
  assert.equal(app.exporterMasterSecret.toString('hex'), V.exporter.toString('hex'));
});

test('RFC 8448 §3: finished keys and Finished verify_data', () => {
  assert.equal(finishedKey('sha256', V.clientHs).toString('hex'), V.clientFinishedKey.toString('hex'));
  assert.equal(finishedKey('sha256', V.serverHs).toString('hex'), V.serverFinishedKey.toString('hex'));
  assert.equal(finishedVerifyData('sha256', V.serverHs, V.certificateVerifyHash).toString('hex'), V.serverFinished.toString('hex'));
  assert.equal(finishedVerifyData('sha256', V.clientHs, V.serverFinishedHash).toString('hex'), V.clientFinished.toString('hex'));
});

test('RFC 8448 §3: handshake traffic keys and IVs (TLS labels) from the derived secrets', () => {
  assert.equal(hkdfExpandLabel('sha256', V.clientHs, 'key', Buffer.alloc(0), 16).toString('hex'), 'dbfaa693d1762c5b666af5d950258d01');
  assert.equal(hkdfExpandLabel('sha256', V.clientHs, 'iv', Buffer.alloc(0), 12).toString('hex'), '5bd3c71b836e0b76bb73265f');
  assert.equal(hkdfExpandLabel('sha256', V.serverHs, 'key', Buffer.alloc(0), 16).toString('hex'), '3fce516009c21727d0f2e4e86ee403bc');
});

test('SHA-384 schedule: lengths and an independent early-secret computation', () => {
  const early = earlySecret('sha384');
  assert.equal(early.length, 48);
  // HKDF-Extract(salt = 48 zero bytes, IKM = 48 zero bytes) computed directly with HMAC.
  assert.deepEqual(early, createHmac('sha384', Buffer.alloc(48)).update(Buffer.alloc(48)).digest());
  const hs = deriveHandshakeSecrets('sha384', Buffer.alloc(32, 7), Buffer.alloc(48, 1));
  assert.equal(hs.clientHandshakeTrafficSecret.length, 48);
  assert.notDeepEqual(hs.clientHandshakeTrafficSecret, hs.serverHandshakeTrafficSecret);
  const app = deriveApplicationSecrets('sha384', hs.handshakeSecret, Buffer.alloc(48, 2));
  assert.equal(app.clientApplicationTrafficSecret.length, 48);
  assert.equal(finishedVerifyData('sha384', hs.serverHandshakeTrafficSecret, Buffer.alloc(48)).length, 48);
  // The SHA-384 schedule is not the SHA-256 one truncated or padded.
  assert.notDeepEqual(early.subarray(0, 32), earlySecret('sha256'));
});

test('Transcript: message_hash replaces ClientHello1 after a HelloRetryRequest (RFC 8446 §4.4.1)', () => {
  const ch1 = Buffer.from('010000030a0b0c', 'hex');
  const hrr = Buffer.from('02000001ff', 'hex');
  const t = new Transcript();
  t.add(ch1);
  t.replaceWithMessageHash('sha256');
  t.add(hrr);
  const digest = new Transcript();
  digest.add(ch1);
  const expected = new Transcript();
  expected.add(Buffer.concat([Buffer.from([254, 0, 0, 32]), digest.hash('sha256')]));
  expected.add(hrr);
  assert.deepEqual(t.hash('sha256'), expected.hash('sha256'));
});
