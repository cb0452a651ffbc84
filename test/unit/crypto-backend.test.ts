/**
 * Packet protection backends (src/quic/crypto/backend.ts): node:crypto and libsodium (sodium-native) give the same
 * bytes for the RFC 9001 Appendix A vectors (A.2-A.5), open each other's packets at random sizes and packet numbers,
 * through key updates, in place and not; the JavaScript ChaCha20 block against RFC 8439 §2.3.2 and both libraries;
 * backend selection (QSR_CRYPTO, a sodium-native that fails to load); the server's suite preference with sodium; and
 * whole transfers in child processes with QSR_CRYPTO=node and auto, so the fallback path keeps being exercised.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadSodium, resolveBackend, setCryptoBackend, type BackendName } from '../../src/quic/crypto/backend.js';
import { chacha20Block, chachaHpMask, chachaKeyWords } from '../../src/quic/crypto/chacha20.js';
import { initialKeys } from '../../src/quic/crypto/initial.js';
import { deriveKeys, nextGenerationKeys, PacketAead, type DirectionKeys } from '../../src/quic/crypto/keys.js';
import { ALL_SUITES, TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, type CipherSuite } from '../../src/quic/crypto/suites.js';
import { openPayload, PacketType, parseHeader, removeHeaderProtection, sealPacket, writeLongHeader, writeShortHeader } from '../../src/quic/packet/header.js';
import { TlsEndpoint, type TlsConfig } from '../../src/quic/tls/tls.js';
import { prng } from '../util/prng.js';
import { CHACHA_PACKET, CHACHA_SECRET, CLIENT_CRYPTO_FRAME, CLIENT_PROTECTED, DCID, SERVER_PAYLOAD, SERVER_PROTECTED, hex } from '../util/rfc9001.js';
import { clientConfig as connClient, serverConfig as connServer } from '../sim/helpers.js';

const execFileP = promisify(execFile);
const sodium = loadSodium();
// sodium-native is installed with the project (optional dependency); on a machine where it cannot load, the sodium
// cases skip, except in CI, where that is a failure.
const noSodium = sodium.binding === null ? `sodium-native does not load here: ${sodium.error}` : false;
if (noSodium && process.env.CI === 'true') throw new Error(`CI=true and ${noSodium}`);
const BACKENDS: { name: BackendName; skip: string | false }[] = [
  { name: 'node', skip: false },
  { name: 'sodium', skip: noSodium },
];

after(() => setCryptoBackend('auto'));

/** Runs fn with keys created under `backend`. */
function under<T>(backend: BackendName, fn: () => T): T {
  const info = setCryptoBackend(backend);
  assert.equal(info.name, backend);
  try {
    return fn();
  } finally {
    setCryptoBackend('auto');
  }
}

function secretFor(suite: CipherSuite, fill: number): Buffer {
  return Buffer.alloc(suite.hash === 'sha256' ? 32 : 48, fill);
}

// ------------------------------------------------------------------------------------- RFC 9001 vectors, each backend

for (const b of BACKENDS) {
  test(`${b.name}: RFC 9001 A.2 client Initial and A.3 server Initial seal to the exact bytes and open back`, { skip: b.skip }, () => {
    under(b.name, () => {
      const k = initialKeys(DCID);
      assert.equal(k.client.aead.backend, 'node', 'AES-128-GCM always runs on node:crypto');
      const buf = Buffer.alloc(1200);
      const h = writeLongHeader(buf, 0, PacketType.Initial, 1, DCID, Buffer.alloc(0), null, 1162 + 16, 2, 4);
      CLIENT_CRYPTO_FRAME.copy(buf, h.headerEnd);
      assert.equal(sealPacket(buf, 0, h.pnOffset, 4, h.headerEnd + 1162, 2, k.client), 1200);
      assert.equal(buf.toString('hex'), CLIENT_PROTECTED.toString('hex'));
      const dgram = Buffer.from(CLIENT_PROTECTED);
      const ph = parseHeader(dgram, 0, 8);
      const u = removeHeaderProtection(dgram, ph, initialKeys(DCID).client.hp, -1);
      const plain = initialKeys(DCID).client.aead.openInPlace(u.pn, dgram, 0, u.headerEnd, ph.end);
      assert.ok(plain);
      assert.equal(plain.subarray(0, CLIENT_CRYPTO_FRAME.length).toString('hex'), CLIENT_CRYPTO_FRAME.toString('hex'));
      assert.ok(plain.subarray(CLIENT_CRYPTO_FRAME.length).every((x) => x === 0));

      const sbuf = Buffer.alloc(SERVER_PROTECTED.length);
      const sh = writeLongHeader(sbuf, 0, PacketType.Initial, 1, Buffer.alloc(0), hex('f067a5502a4262b5'), null, SERVER_PAYLOAD.length + 16, 1, 2);
      SERVER_PAYLOAD.copy(sbuf, sh.headerEnd);
      sealPacket(sbuf, 0, sh.pnOffset, 2, sh.headerEnd + SERVER_PAYLOAD.length, 1, k.server);
      assert.equal(sbuf.toString('hex'), SERVER_PROTECTED.toString('hex'));
      const sd = Buffer.from(SERVER_PROTECTED);
      const sph = parseHeader(sd, 0, 0);
      const su = removeHeaderProtection(sd, sph, k.server.hp, 0);
      assert.equal(openPayload(sd, sph, su, k.server.aead)?.toString('hex'), SERVER_PAYLOAD.toString('hex'));
    });
  });

  test(`${b.name}: RFC 9001 A.5 ChaCha20-Poly1305 short header packet, sealed and opened (copy and in place)`, { skip: b.skip }, () => {
    under(b.name, () => {
      const keys = deriveKeys(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET);
      assert.equal(keys.aead.backend, b.name);
      assert.equal(keys.hp.mask(hex('5e5cd55c41f69080575d7999c25a5bfb')).subarray(0, 5).toString('hex'), 'aefefe7d03');
      const pn = 654360564;
      const buf = Buffer.alloc(21);
      const h = writeShortHeader(buf, 0, Buffer.alloc(0), pn, 3, 0);
      buf[h.headerEnd] = 0x01;
      assert.equal(sealPacket(buf, 0, h.pnOffset, 3, h.headerEnd + 1, pn, keys), 21);
      assert.equal(buf.toString('hex'), CHACHA_PACKET);
      assert.equal(keys.aead.packetsSealed, 1);

      const dgram = hex(CHACHA_PACKET);
      const ph = parseHeader(dgram, 0, 0);
      const u = removeHeaderProtection(dgram, ph, keys.hp, pn - 1);
      assert.equal(u.pn, pn);
      assert.equal(dgram.subarray(0, u.headerEnd).toString('hex'), '4200bff4');
      assert.equal(openPayload(dgram, ph, u, keys.aead)?.toString('hex'), '01');
      assert.equal(dgram.subarray(u.headerEnd).toString('hex'), CHACHA_PACKET.slice(8), 'openPayload leaves the datagram alone');
      const inPlace = keys.aead.openInPlace(u.pn, dgram, 0, u.headerEnd, ph.end);
      assert.equal(inPlace?.toString('hex'), '01');
      // sodium decrypts into the datagram (the plaintext is a view of it); node:crypto returns its own buffer.
      assert.equal(inPlace!.buffer === dgram.buffer && inPlace!.byteOffset === dgram.byteOffset + u.headerEnd, b.name === 'sodium');
      if (b.name === 'sodium') assert.equal(dgram[u.headerEnd], 0x01);

      // A.5's key update secret, and the next generation's keys use the same backend.
      const next = nextGenerationKeys(keys);
      assert.equal(next.secret.toString('hex'), '1223504755036d556342ee9361d253421a826c9ecdf3c7148684b36b714881f9');
      assert.equal(next.aead.backend, b.name);
    });
  });

  test(`${b.name}: tampered ChaCha20-Poly1305 packets fail, in place and not, and are counted`, { skip: b.skip }, () => {
    under(b.name, () => {
      const keys = deriveKeys(TLS_CHACHA20_POLY1305_SHA256, CHACHA_SECRET);
      const aad = hex('43aabbccdd0102');
      const sealed = keys.aead.seal(9, aad, Buffer.from('hello frames'));
      assert.equal(keys.aead.open(9, aad, sealed)?.toString(), 'hello frames');
      let fails = 0;
      for (const i of [0, 11, 12, sealed.length - 1]) {
        const t = Buffer.from(sealed);
        t[i] ^= 0x80;
        assert.equal(keys.aead.open(9, aad, t), null, `flip at ${i}`);
        const pkt = Buffer.concat([aad, t]);
        assert.equal(keys.aead.openInPlace(9, pkt, 0, aad.length, pkt.length), null, `in place, flip at ${i}`);
        fails += 2;
      }
      assert.equal(keys.aead.open(9, hex('43aabbccdd0103'), sealed), null, 'wrong AAD');
      assert.equal(keys.aead.open(10, aad, sealed), null, 'wrong packet number');
      assert.equal(keys.aead.open(9, aad, sealed.subarray(0, 15)), null, 'shorter than a tag');
      const short = Buffer.concat([aad, sealed.subarray(0, 15)]);
      assert.equal(keys.aead.openInPlace(9, short, 0, aad.length, short.length), null, 'in place, shorter than a tag');
      assert.equal(keys.aead.failedOpens, fails + 4);
      // The good packet still opens after all that (no state carried over from a failure).
      assert.equal(keys.aead.open(9, aad, sealed)?.toString(), 'hello frames');
    });
  });
}

// ------------------------------------------------------------------------------------- across backends

test('node and sodium open each other\'s packets: every suite, random sizes and packet numbers, in place and not', { skip: noSodium }, () => {
  const rand = prng(20261202);
  for (const suite of ALL_SUITES) {
    const secret = secretFor(suite, 0x5a);
    const node = under('node', () => deriveKeys(suite, secret));
    const sod = under('sodium', () => deriveKeys(suite, secret));
    assert.equal(sod.aead.backend, suite === TLS_CHACHA20_POLY1305_SHA256 ? 'sodium' : 'node');
    for (let i = 0; i < 60; i++) {
      const size = Math.floor(rand() * 1500);
      const pn = i < 50 ? Math.floor(rand() * 2 ** 20) : Math.floor(rand() * 2 ** 52);
      const payload = randomBytes(size + 4); // pn length + payload >= 4 bytes for the sample
      const [sealer, opener] = i % 2 === 0 ? [node, sod] : [sod, node];
      const packet = sealShortPacket(sealer, pn, payload);
      assert.deepEqual(packet, sealShortPacket(i % 2 === 0 ? sod : node, pn, payload), `${suite.name}: both backends give the same bytes (size ${size})`);
      const d = Buffer.from(packet);
      const h = parseHeader(d, 0, 8);
      const u = removeHeaderProtection(d, h, opener.hp, pn - 1);
      assert.equal(u.pn, pn);
      const plain = i % 3 === 0 ? openPayload(d, h, u, opener.aead) : opener.aead.openInPlace(u.pn, d, 0, u.headerEnd, h.end);
      assert.deepEqual(plain, payload, `${suite.name} size ${size} pn ${pn}`);
    }
  }
});

test('key update across backends: generation n from one library opens only with generation n from the other', { skip: noSodium }, () => {
  for (const suite of [TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384]) {
    let node = under('node', () => deriveKeys(suite, secretFor(suite, 0x42)));
    let sod = under('sodium', () => deriveKeys(suite, secretFor(suite, 0x42)));
    for (let gen = 0; gen < 4; gen++) {
      const payload = randomBytes(1200);
      const phase = (gen & 1) as 0 | 1;
      const fromSodium = sealShortPacket(sod, 1000 + gen, payload, phase);
      const fromNode = sealShortPacket(node, 2000 + gen, payload, phase);
      assert.deepEqual(openShortPacket(node, fromSodium, 999 + gen), payload, `${suite.name} gen ${gen}: node opens sodium's`);
      assert.deepEqual(openShortPacket(sod, fromNode, 1999 + gen), payload, `${suite.name} gen ${gen}: sodium opens node's`);
      const nextNode = under('node', () => nextGenerationKeys(node));
      const nextSod = under('sodium', () => nextGenerationKeys(sod));
      assert.equal(openShortPacket(nextNode, fromSodium, 999 + gen), null, `${suite.name} gen ${gen + 1} rejects gen ${gen}`);
      assert.equal(openShortPacket(nextSod, fromNode, 1999 + gen), null, `${suite.name} gen ${gen + 1} rejects gen ${gen}`);
      assert.equal(nextSod.hp, sod.hp, 'header protection is not updated');
      node = nextNode;
      sod = nextSod;
    }
  }
});

function sealShortPacket(keys: DirectionKeys, pn: number, payload: Buffer, keyPhase: 0 | 1 = 0): Buffer {
  const dcid = hex('0102030405060708');
  const buf = Buffer.alloc(1 + dcid.length + 4 + payload.length + 16);
  const h = writeShortHeader(buf, 0, dcid, pn, 4, keyPhase);
  payload.copy(buf, h.headerEnd);
  return buf.subarray(0, sealPacket(buf, 0, h.pnOffset, 4, h.headerEnd + payload.length, pn, keys));
}

function openShortPacket(keys: DirectionKeys, packet: Buffer, largestPn: number): Buffer | null {
  const d = Buffer.from(packet);
  const h = parseHeader(d, 0, 8);
  const u = removeHeaderProtection(d, h, keys.hp, largestPn);
  return keys.aead.openInPlace(u.pn, d, 0, u.headerEnd, h.end);
}

test('PacketAead.seal and sealInPlace agree on both backends (ChaCha20-Poly1305, random sizes, AAD offsets)', { skip: noSodium }, () => {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const node = under('node', () => new PacketAead(TLS_CHACHA20_POLY1305_SHA256, key, iv));
  const sod = under('sodium', () => new PacketAead(TLS_CHACHA20_POLY1305_SHA256, key, iv));
  assert.equal(node.backend, 'node');
  assert.equal(sod.backend, 'sodium');
  const rand = prng(77);
  for (let i = 0; i < 40; i++) {
    const pre = Math.floor(rand() * 8);
    const aadLen = 1 + Math.floor(rand() * 30);
    const ptLen = Math.floor(rand() * 1400);
    const buf = randomBytes(pre + aadLen + ptLen + 16 + 3);
    const copy = Buffer.from(buf);
    const end = sod.sealInPlace(i, buf, pre, pre + aadLen, pre + aadLen + ptLen);
    const expected = node.seal(i, copy.subarray(pre, pre + aadLen), copy.subarray(pre + aadLen, pre + aadLen + ptLen));
    assert.deepEqual(buf.subarray(pre + aadLen, end), expected);
    assert.deepEqual(buf.subarray(0, pre + aadLen), copy.subarray(0, pre + aadLen), 'AAD and bytes before it untouched');
    assert.deepEqual(buf.subarray(end), copy.subarray(end), 'bytes after the tag untouched');
    assert.deepEqual(sod.seal(i, copy.subarray(pre, pre + aadLen), copy.subarray(pre + aadLen, pre + aadLen + ptLen)), expected);
  }
});

// ------------------------------------------------------------------------------------- ChaCha20 header protection

test('JavaScript ChaCha20 block: RFC 8439 §2.3.2 test vector', () => {
  const key = Buffer.alloc(32);
  for (let i = 0; i < 32; i++) key[i] = i;
  const nonce = hex('000000090000004a00000000');
  const out = new Uint32Array(16);
  chacha20Block(chachaKeyWords(key), 1, nonce.readUInt32LE(0), nonce.readUInt32LE(4), nonce.readUInt32LE(8), out);
  assert.equal(
    Buffer.from(out.buffer).toString('hex'),
    '10f1e7e4d13b5915500fdd1fa32071c4c7d1f4c733c068030422aa9ac3d46c4e' + 'd2826446079faa0914c2d705d98b02a2b5129cd1de164eb9cbd083e8a2503c4e',
  );
  assert.throws(() => chachaKeyWords(Buffer.alloc(16)), RangeError);
});

test('ChaCha20 header protection masks equal node:crypto chacha20 and libsodium xor_ic for random samples', () => {
  const key = randomBytes(32);
  const kw = chachaKeyWords(key);
  const block = new Uint32Array(16);
  const zeros = Buffer.alloc(5);
  for (let i = 0; i < 200; i++) {
    const sample = randomBytes(16);
    if (i === 0) sample.fill(0xff, 0, 4); // counter 2^32 - 1
    const mask = Buffer.alloc(7, 0xee);
    chachaHpMask(kw, sample, 0, block, mask, 1);
    const ossl = createCipheriv('chacha20', key, sample).update(zeros);
    assert.deepEqual(mask.subarray(1, 6), ossl, `sample ${sample.toString('hex')}`);
    assert.equal(mask[0], 0xee);
    assert.equal(mask[6], 0xee);
    if (sodium.binding !== null) {
      const out = Buffer.alloc(5);
      sodium.binding.crypto_stream_chacha20_ietf_xor_ic(out, zeros, sample.subarray(4), sample.readUInt32LE(0), key);
      assert.deepEqual(out, ossl, 'libsodium agrees');
    }
  }
});

// ------------------------------------------------------------------------------------- selection

test('backend selection: QSR_CRYPTO values, and a sodium-native that fails to load changes nothing but the backend', () => {
  const ok = () => ({ binding: sodium.binding ?? ({} as never), version: '9.9.9', error: null });
  const fail = () => ({ binding: null, version: null, error: 'cannot load sodium-native: gone' });
  const r = (v: string | undefined, l: typeof ok | typeof fail) => resolveBackend(v, l).info;
  assert.deepEqual([r(undefined, ok).name, r('', ok).name, r('auto', ok).name, r(' AUTO ', ok).name], ['sodium', 'sodium', 'sodium', 'sodium']);
  assert.match(r(undefined, ok).description, /^sodium \(libsodium ChaCha20-Poly1305 via sodium-native 9\.9\.9; AES-GCM on node:crypto\)$/);
  assert.equal(r('node', ok).name, 'node');
  assert.match(r('node', ok).description, /^node:crypto \(OpenSSL /);
  assert.equal(r('sodium', ok).name, 'sodium');
  // auto with no sodium: node:crypto, no error.
  const auto = r('auto', fail);
  assert.equal(auto.name, 'node');
  assert.equal(auto.error, null);
  assert.equal(auto.sodiumError, 'cannot load sodium-native: gone');
  assert.match(auto.description, /sodium-native not loaded/);
  // Asked for explicitly and missing, or a bad value: node:crypto, with an error naming QSR_CRYPTO.
  const asked = r('sodium', fail);
  assert.equal(asked.name, 'node');
  assert.equal(asked.error, 'QSR_CRYPTO=sodium: cannot load sodium-native: gone');
  const bad = r('openssl', ok);
  assert.equal(bad.name, 'node');
  assert.equal(bad.error, "QSR_CRYPTO: expected node, sodium or auto, got 'openssl'");
  // The real loader does not throw for a module that is not there.
  const missing = loadSodium('sodium-native-not-installed-here');
  assert.equal(missing.binding, null);
  assert.match(missing.error ?? '', /^cannot load sodium-native-not-installed-here: /);
  assert.equal(loadSodium('node:path').error, 'node:path has no crypto_aead_chacha20poly1305_ietf_encrypt_detached');
});

// ------------------------------------------------------------------------------------- suite preference

function negotiate(backend: BackendName, client: Partial<TlsConfig>, server: Partial<TlsConfig>): CipherSuite | null {
  return under(backend, () => {
    const cc = connClient();
    const sc = connServer('ecdsa');
    const c = new TlsEndpoint({ role: 'client', alpn: ['h3'], serverName: 'localhost', ca: cc.ca, now: new Date('2030-06-01T00:00:00Z'), transportParameters: Buffer.from('01', 'hex'), ...client });
    const s = new TlsEndpoint({ role: 'server', alpn: ['h3'], certChain: sc.certChain, privateKey: sc.privateKey, transportParameters: Buffer.from('02', 'hex'), ...server });
    c.start();
    for (let round = 0; round < 10 && !(c.handshakeComplete && s.handshakeComplete); round++) {
      for (const o of c.takeOutput()) s.receive(o.level, o.data);
      for (const o of s.takeOutput()) c.receive(o.level, o.data);
    }
    assert.ok(c.handshakeComplete && s.handshakeComplete, 'handshake completes');
    assert.equal(c.cipherSuite, s.cipherSuite);
    return s.cipherSuite;
  });
}

test('server suite preference: ChaCha20 first with sodium, AES-128-GCM first with node:crypto; explicit lists keep their order', { skip: noSodium }, () => {
  // Default client offer (AES-128, AES-256, ChaCha20) against the default server.
  assert.equal(negotiate('sodium', {}, {}), TLS_CHACHA20_POLY1305_SHA256);
  assert.equal(negotiate('node', {}, {}), TLS_AES_128_GCM_SHA256);
  // A client that does not offer ChaCha20 gets the server's next preference.
  assert.equal(negotiate('sodium', { cipherSuites: [TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256] }, {}), TLS_AES_128_GCM_SHA256);
  // quic.ciphers / --ciphers set on the server: its order wins whatever the backend.
  assert.equal(negotiate('sodium', {}, { cipherSuites: [TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256] }), TLS_AES_128_GCM_SHA256);
  assert.equal(negotiate('node', {}, { cipherSuites: [TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256] }), TLS_CHACHA20_POLY1305_SHA256);
  // An explicit server list that the client's first offer is not first in: still the server's order.
  assert.equal(negotiate('sodium', {}, { cipherSuites: [TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256] }), TLS_AES_256_GCM_SHA384);
});

// ------------------------------------------------------------------------------------- whole transfers, child processes

const CHILD = fileURLToPath(new URL('../util/crypto-child.js', import.meta.url));
const QSR = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));

async function child(env: string, suites: string[] = []): Promise<Record<string, unknown>> {
  const { stdout } = await execFileP(process.execPath, [CHILD, 'run', ...suites], { env: { ...process.env, QSR_CRYPTO: env }, timeout: 30_000 });
  return JSON.parse(stdout.trim().split('\n').pop()!) as Record<string, unknown>;
}

test('QSR_CRYPTO=node in a child process: default suites negotiate AES-128-GCM, ChaCha20 on node:crypto works, key update included', { timeout: 90_000 }, async () => {
  const def = await child('node');
  assert.deepEqual(def, { backend: 'node', error: null, cipher: 'TLS_AES_128_GCM_SHA256', echoed: true, serverKeyUpdates: 1, undecryptable: 0 });
  const chacha = await child('node', ['TLS_CHACHA20_POLY1305_SHA256']);
  assert.deepEqual(chacha, { backend: 'node', error: null, cipher: 'TLS_CHACHA20_POLY1305_SHA256', echoed: true, serverKeyUpdates: 1, undecryptable: 0 });
});

test('QSR_CRYPTO=auto in a child process: sodium, the server picks ChaCha20, key update included', { skip: noSodium, timeout: 90_000 }, async () => {
  const r = await child('auto');
  assert.deepEqual(r, { backend: 'sodium', error: null, cipher: 'TLS_CHACHA20_POLY1305_SHA256', echoed: true, serverKeyUpdates: 1, undecryptable: 0 });
});

test('qsr --version names the backend; a bad QSR_CRYPTO makes commands exit 2 with a message naming it', { timeout: 60_000 }, async () => {
  const v = await execFileP(process.execPath, [QSR, '--version'], { env: { ...process.env, QSR_CRYPTO: 'node' }, timeout: 20_000 });
  assert.match(v.stdout, /^0\.1\.0\npacket protection: node:crypto \(OpenSSL [^)]+\)\n$/);
  if (!noSodium) {
    const a = await execFileP(process.execPath, [QSR, '--version'], { env: { ...process.env, QSR_CRYPTO: 'auto' }, timeout: 20_000 });
    assert.match(a.stdout, /\npacket protection: sodium \(libsodium ChaCha20-Poly1305 via sodium-native [\d.]+; AES-GCM on node:crypto\)\n$/);
  }
  await assert.rejects(
    execFileP(process.execPath, [QSR, 'check-config', 'nonexistent.yaml'], { env: { ...process.env, QSR_CRYPTO: 'fast' }, timeout: 20_000 }),
    (err: { code?: number; stderr?: string }) => {
      assert.equal(err.code, 2);
      assert.equal(err.stderr, "qsr: QSR_CRYPTO: expected node, sodium or auto, got 'fast'\n");
      return true;
    },
  );
});
