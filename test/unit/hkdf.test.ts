/**
 * HKDF (src/quic/crypto/hkdf.ts) on both backends: node:crypto's HMAC, and HMAC-SHA256 on libsodium's SHA-256 when
 * the sodium backend is active (SHA-384 stays on node:crypto either way). RFC 5869 Appendix A (the SHA-256 cases,
 * including a salt longer than a SHA-256 block), RFC 9001 Appendix A.1 (Initial secrets and keys) and A.5 (ChaCha20
 * keys and key update), RFC 8448 §3 key-schedule values, and random inputs against node:crypto's hkdfSync and a plain
 * createHmac reference, for both hashes, one- and multi-block lengths and hkdfExpandLabelInto offsets.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { loadSodium, setCryptoBackend, type BackendName } from '../../src/quic/crypto/backend.js';
import { hashLength, hkdfExpand, hkdfExpandLabel, hkdfExpandLabelInto, hkdfExtract, hmac, hmacBackend, type HashName } from '../../src/quic/crypto/hkdf.js';
import { clientInitialKeys, initialKeys, initialSecret, initialSecrets, serverInitialKeys } from '../../src/quic/crypto/initial.js';
import { deriveKeyMaterial, deriveKeys, nextGenerationKeys } from '../../src/quic/crypto/keys.js';
import { TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256 } from '../../src/quic/crypto/suites.js';
import { deriveApplicationSecrets, deriveHandshakeSecrets, finishedVerifyData } from '../../src/quic/tls/keyschedule.js';
import { prng } from '../util/prng.js';
import { CHACHA_SECRET, DCID, hex } from '../util/rfc9001.js';

const sodium = loadSodium();
const noSodium = sodium.binding === null ? `sodium-native does not load here: ${sodium.error}` : false;
if (noSodium && process.env.CI === 'true') throw new Error(`CI=true and ${noSodium}`);
const BACKENDS: { name: BackendName; skip: string | false }[] = [
  { name: 'node', skip: false },
  { name: 'sodium', skip: noSodium },
];

after(() => setCryptoBackend('auto'));

function under<T>(backend: BackendName, fn: () => T): T {
  assert.equal(setCryptoBackend(backend).name, backend);
  try {
    return fn();
  } finally {
    setCryptoBackend('auto');
  }
}

const range = (from: number, to: number): Buffer => Buffer.from(Array.from({ length: to - from + 1 }, (_, i) => from + i));

/** HKDF-Expand written out from RFC 5869 §2.3 with node:crypto, as the reference. */
function referenceExpand(hash: HashName, prk: Buffer, info: Buffer, length: number): Buffer {
  const blocks: Buffer[] = [];
  let prev = Buffer.alloc(0);
  for (let i = 1; Buffer.concat(blocks).length < length; i++) {
    prev = createHmac(hash, prk).update(Buffer.concat([prev, info, Buffer.from([i])])).digest();
    blocks.push(prev);
  }
  return Buffer.concat(blocks).subarray(0, length);
}

function referenceLabel(label: string, context: Buffer, length: number): Buffer {
  const full = Buffer.from('tls13 ' + label, 'ascii');
  return Buffer.concat([Buffer.from([length >> 8, length & 0xff, full.length]), full, Buffer.from([context.length]), context]);
}

const RFC5869 = [
  {
    name: 'A.1 (basic)',
    ikm: Buffer.alloc(22, 0x0b),
    salt: range(0x00, 0x0c),
    info: range(0xf0, 0xf9),
    length: 42,
    prk: '077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5',
    okm: '3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865',
  },
  {
    name: 'A.2 (80-byte salt, IKM and info: the salt is longer than a block)',
    ikm: range(0x00, 0x4f),
    salt: range(0x60, 0xaf),
    info: range(0xb0, 0xff),
    length: 82,
    prk: '06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244',
    okm:
      'b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87',
  },
  {
    name: 'A.3 (empty salt and info)',
    ikm: Buffer.alloc(22, 0x0b),
    salt: Buffer.alloc(0),
    info: Buffer.alloc(0),
    length: 42,
    prk: '19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04',
    okm: '8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8',
  },
];

for (const b of BACKENDS) {
  test(`${b.name}: RFC 5869 Appendix A SHA-256 cases: PRK and OKM`, { skip: b.skip }, () => {
    under(b.name, () => {
      assert.equal(hmacBackend('sha256'), b.name, 'HMAC-SHA256 follows the backend');
      assert.equal(hmacBackend('sha384'), 'node', 'SHA-384 always on node:crypto');
      for (const v of RFC5869) {
        const prk = hkdfExtract('sha256', v.salt, v.ikm);
        assert.equal(prk.toString('hex'), v.prk, `${v.name}: PRK`);
        assert.equal(hkdfExpand('sha256', prk, v.info, v.length).toString('hex'), v.okm, `${v.name}: OKM`);
        // The same values from OpenSSL's HKDF, so the vectors above are the RFC's and not our own output.
        assert.equal(Buffer.from(hkdfSync('sha256', v.ikm, v.salt, v.info, v.length)).toString('hex'), v.okm, `${v.name}: hkdfSync`);
      }
    });
  });

  test(`${b.name}: RFC 9001 A.1 Initial secrets and keys, and the server's keys from the client's initial_secret`, { skip: b.skip }, () => {
    under(b.name, () => {
      assert.equal(initialSecret(DCID).toString('hex'), '7db5df06e7a69e432496adedb00851923595221596ae2ae9fb8115c1e9ed0a44');
      const s = initialSecrets(DCID);
      assert.equal(s.client.toString('hex'), 'c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea');
      assert.equal(s.server.toString('hex'), '3c199828fd139efd216c155ad844cc81fb82fa8d7446fa7d78be803acdda951b');
      const c = deriveKeyMaterial(TLS_AES_128_GCM_SHA256, s.client);
      assert.deepEqual([c.key, c.iv, c.hpKey].map((x) => x.toString('hex')), ['1f369613dd76d5467730efcbe3b1a22d', 'fa044b2f42a3fd3b46fb255c', '9f50449e04a0e810283a1e9933adedd2']);
      const sv = deriveKeyMaterial(TLS_AES_128_GCM_SHA256, s.server);
      assert.deepEqual([sv.key, sv.iv, sv.hpKey].map((x) => x.toString('hex')), ['cf3a5331653c364c88f0f379b6067e37', '0ac1493ca1905853b0bba03e', 'c206b8d9b9f0f37644430b490eeaa314']);
      // The endpoint's path: the client's keys and initial_secret, then the server's keys from that secret.
      const first = clientInitialKeys(DCID);
      assert.equal(first.initial.toString('hex'), '7db5df06e7a69e432496adedb00851923595221596ae2ae9fb8115c1e9ed0a44');
      assert.equal(first.keys.secret.toString('hex'), s.client.toString('hex'));
      const server = serverInitialKeys(first.initial);
      assert.equal(server.secret.toString('hex'), s.server.toString('hex'));
      // Keys built by deriveKeys (through the scratch) protect like keys built from the material above.
      const both = initialKeys(DCID);
      const pt = Buffer.from('initial payload');
      const aad = Buffer.from('header');
      assert.deepEqual(server.aead.seal(2, aad, pt), both.server.aead.seal(2, aad, pt));
      assert.deepEqual(server.hp.mask(hex('2cd0991cd25b0aac406a5816b6394100')).subarray(0, 5).toString('hex'), '2ec0d8356a');
      assert.deepEqual(first.keys.hp.mask(hex('d1b1c98dd7689fb8ec11d242b123dc9b')).subarray(0, 5).toString('hex'), '437b9aec36');
    });
  });

  test(`${b.name}: RFC 9001 A.5 ChaCha20-Poly1305 keys and key update (quic ku)`, { skip: b.skip }, () => {
    under(b.name, () => {
      const m = deriveKeyMaterial(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET);
      assert.equal(m.key.toString('hex'), 'c6d98ff3441c3fe1b2182094f69caa2ed4b716b65488960a7a984979fb23e1c8');
      assert.equal(m.iv.toString('hex'), 'e0459b3474bdd0e44a41c144');
      assert.equal(m.hpKey.toString('hex'), '25a282b9e82f06f21f488917a4fc8f1b73573685608597d0efcb076b0ab7a7a4');
      const next = nextGenerationKeys(deriveKeys(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET));
      assert.equal(next.secret.toString('hex'), '1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9');
    });
  });

  test(`${b.name}: RFC 8448 §3 key schedule: handshake and application secrets, Finished verify_data`, { skip: b.skip }, () => {
    under(b.name, () => {
      const shared = hex('8bd4054fb55b9d63fdfbacf9f04b9f0d35e6d63f537563efd46272900f89492d');
      const hs = deriveHandshakeSecrets('sha256', shared, hex('860c06edc07858ee8e78f0e7428c58edd6b43f2ca3e6e95f02ed063cf0e1cad8'));
      assert.equal(hs.handshakeSecret.toString('hex'), '1dc826e93606aa6fdc0aadc12f741b01046aa6b99f691ed221a9f0ca043fbeac');
      assert.equal(hs.clientHandshakeTrafficSecret.toString('hex'), 'b3eddb126e067f35a780b3abf45e2d8f3b1a950738f52e9600746a0e27a55a21');
      assert.equal(hs.serverHandshakeTrafficSecret.toString('hex'), 'b67b7d690cc16c4e75e54213cb2d37b4e9c912bcded9105d42befd59d391ad38');
      const app = deriveApplicationSecrets('sha256', hs.handshakeSecret, hex('9608102a0f1ccc6db6250b7b7e417b1a000eaada3daae4777a7686c9ff83df13'));
      assert.equal(app.masterSecret.toString('hex'), '18df06843d13a08bf2a449844c5f8a478001bc4d4c627984d5a41da8d0402919');
      assert.equal(app.clientApplicationTrafficSecret.toString('hex'), '9e40646ce79a7f9dc05af8889bce6552875afa0b06df0087f792ebb7c17504a5');
      assert.equal(app.serverApplicationTrafficSecret.toString('hex'), 'a11af9f05531f856ad47116b45a950328204b4f44bfb6b3a4b4f1f3fcb631643');
      const transcript = hex('edb7725fa7a3473b031ec8ef65a2485493900138a2b91291407d7951a06110ed');
      assert.equal(finishedVerifyData('sha256', hs.serverHandshakeTrafficSecret, transcript).toString('hex'), '9b9b141d906337fbd2cbdce71df4deda4ab42c309572cb7fffee5454b78f0718');
    });
  });

  test(`${b.name}: random inputs match node:crypto (hkdfSync, createHmac) for SHA-256 and SHA-384, all lengths, Into offsets`, { skip: b.skip }, () => {
    under(b.name, () => {
      const next = prng(0x5869);
      const rnd = (): number => Math.floor(next() * 0x100000000);
      const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => rnd() & 0xff));
      for (const hash of ['sha256', 'sha384'] as HashName[]) {
        const hl = hashLength(hash);
        for (let i = 0; i < 150; i++) {
          const ikm = bytes(rnd() % 100);
          const salt = bytes(rnd() % 3 === 0 ? 0 : rnd() % 150); // sometimes empty, sometimes over a block
          const info = bytes(rnd() % 120);
          const length = 1 + (rnd() % (i < 10 ? 255 * hl : 4 * hl)); // a few up to the limit
          const prk = hkdfExtract(hash, salt, ikm);
          assert.deepEqual(prk, createHmac(hash, salt.length ? salt : Buffer.alloc(hl)).update(ikm).digest(), `${hash} extract #${i}`);
          const okm = hkdfExpand(hash, prk, info, length);
          assert.deepEqual(okm, Buffer.from(hkdfSync(hash, ikm, salt, info, length)), `${hash} expand #${i} (length ${length})`);
          const key = bytes(rnd() % 140);
          const data = bytes(rnd() % 300);
          assert.deepEqual(hmac(hash, key, data), createHmac(hash, key).update(data).digest(), `${hash} hmac #${i}`);
          const label = ['quic key', 'quic iv', 'quic hp', 'c hs traffic', 'derived', 'x'.repeat(rnd() % 200)][rnd() % 6]!;
          const context = bytes(rnd() % 3 === 0 ? 0 : hl);
          const n = 1 + (rnd() % (3 * hl));
          const want = referenceExpand(hash, prk, referenceLabel(label, context, n), n);
          assert.deepEqual(hkdfExpandLabel(hash, prk, label, context, n), want, `${hash} expand-label #${i}`);
          const out = Buffer.alloc(n + 20, 0xee);
          const at = rnd() % 20;
          hkdfExpandLabelInto(hash, prk, label, context, n, out, at);
          assert.deepEqual(out.subarray(at, at + n), want, `${hash} expand-label-into #${i}`);
          assert.ok(out.subarray(0, at).every((x) => x === 0xee) && out.subarray(at + n).every((x) => x === 0xee), 'nothing written outside the range');
        }
      }
    });
  });
}

test('HKDF limits: a length over 255 * HashLen, labels and contexts over 255 bytes, and an Into range past the end are refused', () => {
  const prk = randomBytes(32);
  assert.throws(() => hkdfExpand('sha256', prk, Buffer.alloc(0), 255 * 32 + 1), RangeError);
  assert.throws(() => hkdfExpand('sha256', prk, Buffer.alloc(0), 1.5), /not an integer/);
  assert.equal(hkdfExpand('sha256', prk, Buffer.alloc(0), 0).length, 0);
  assert.throws(() => hkdfExpandLabel('sha384', randomBytes(48), 'k', Buffer.alloc(0), 255 * 48 + 1), RangeError);
  assert.throws(() => hkdfExpandLabel('sha256', prk, 'x'.repeat(250), Buffer.alloc(0), 16), /label too long/);
  assert.throws(() => hkdfExpandLabel('sha256', prk, 'quic key', Buffer.alloc(256), 16), /context too long/);
  assert.throws(() => hkdfExpandLabelInto('sha256', prk, 'quic key', Buffer.alloc(0), 16, Buffer.alloc(20), 5), RangeError);
});

test('derivations are independent: results are buffers of their own, not views of a shared scratch', () => {
  const a = hkdfExpandLabel('sha256', Buffer.alloc(32, 1), 'quic key', Buffer.alloc(0), 16);
  const copyA = Buffer.from(a);
  const k1 = deriveKeys(TLS_AES_128_GCM_SHA256, Buffer.alloc(32, 2));
  const sealed1 = k1.aead.seal(0, Buffer.alloc(4), Buffer.alloc(16));
  deriveKeys(TLS_AES_128_GCM_SHA256, Buffer.alloc(32, 3)); // reuses the key scratch
  hkdfExpandLabel('sha256', Buffer.alloc(32, 4), 'quic key', Buffer.alloc(0), 16);
  assert.deepEqual(a, copyA);
  assert.equal(a.buffer.byteLength, 16, 'a secret or key has an ArrayBuffer of its own (util/buffers.ts)');
  assert.deepEqual(k1.aead.seal(0, Buffer.alloc(4), Buffer.alloc(16)), sealed1, 'a key object keeps its keys after the scratch is reused');
});
