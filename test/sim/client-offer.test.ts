/**
 * The cipher suites our HTTP/3 client offers (src/h3/client.ts clientCipherSuites): ChaCha20-Poly1305 first while the
 * libsodium backend is active, AES-128-GCM first with node:crypto, an explicit list in its own order. Read off the
 * wire: the client's first datagram on the simulated network is opened with the Initial keys anyone can derive from
 * its destination connection ID (RFC 9001 §5.2), and the ClientHello in its CRYPTO frame is decoded. The handshake
 * then completes against our server, which chooses by its own preference.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { Http3Server } from '../../src/h3/server.js';
import { Http3Client, clientCipherSuites } from '../../src/h3/client.js';
import { loadSodium, setCryptoBackend, type BackendName } from '../../src/quic/crypto/backend.js';
import { initialKeys } from '../../src/quic/crypto/initial.js';
import { ALL_SUITES, TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, suiteById, type CipherSuite } from '../../src/quic/crypto/suites.js';
import { parseFrames } from '../../src/quic/frame/frames.js';
import { PacketType, parseHeader, removeHeaderProtection } from '../../src/quic/packet/header.js';
import { decodeClientHello } from '../../src/quic/tls/messages.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import { SimUdpNetwork, VirtualClock } from './runtime.js';
import { CERTS } from './helpers.js';

const sodium = loadSodium();
const noSodium = sodium.binding === null ? `sodium-native does not load here: ${sodium.error}` : false;
if (noSodium && process.env.CI === 'true') throw new Error(`CI=true and ${noSodium}`);

const SERVER = { address: '127.0.0.1', port: 443 };
const names = (l: readonly CipherSuite[]): string[] => l.map((s) => s.name);

/** The suites a ClientHello in this client Initial datagram offers, in order. */
function offeredSuites(dgram: Buffer): string[] {
  const d = Buffer.from(dgram);
  const h = parseHeader(d, 0, 0);
  assert.equal(h.type, PacketType.Initial, 'the first datagram is an Initial');
  const keys = initialKeys(h.dcid).client;
  const u = removeHeaderProtection(d, h, keys.hp, -1);
  const plain = keys.aead.openInPlace(u.pn, d, h.start, u.headerEnd, h.end);
  assert.ok(plain, 'the Initial opens with the keys of its destination connection ID');
  const crypto = parseFrames(Buffer.from(plain), 'initial')
    .filter((f) => f.type === 'crypto')
    .sort((a, b) => (a.type === 'crypto' && b.type === 'crypto' ? a.offset - b.offset : 0));
  const bytes = Buffer.concat(crypto.map((f) => (f.type === 'crypto' ? f.data : Buffer.alloc(0))));
  assert.equal(bytes[0], 1, 'a ClientHello (handshake type 1)');
  const len = bytes.readUIntBE(1, 3);
  const ch = decodeClientHello(bytes.subarray(4, 4 + len));
  return ch.cipherSuites.map((id) => suiteById(id)?.name ?? `0x${id.toString(16)}`);
}

/** Connects an Http3Client (quic options `quic`) under `backend`; returns what its ClientHello offered and what was negotiated. */
async function connectUnder(backend: BackendName, quic: { cipherSuites?: CipherSuite[] } = {}, serverSuites?: CipherSuite[]): Promise<{ offered: string[]; negotiated: string | null }> {
  assert.equal(setCryptoBackend(backend).name, backend);
  const clock = new VirtualClock();
  const net = new SimUdpNetwork(7, { mtu: 1500, delay: 5 }, clock);
  const sent: Buffer[] = [];
  const transmit = net.transmit.bind(net);
  net.transmit = (from, to, data) => {
    if (to.port === SERVER.port) sent.push(Buffer.from(data));
    transmit(from, to, data);
  };
  const server = await Http3Server.listen(
    {
      listen: [SERVER],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
      runtime: net.runtime,
      quic: serverSuites ? { cipherSuites: serverSuites } : undefined,
    },
    (_req, res) => {
      res.respond(200);
      res.end('ok');
    },
  );
  try {
    const client = await Http3Client.connect(`https://${SERVER.address}:${SERVER.port}/`, {
      ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')),
      serverName: 'localhost',
      runtime: net.runtime,
      quic,
    });
    const negotiated = client.session.quic.conn.cipherSuite;
    const r = await client.request('/');
    assert.equal(r.status, 200);
    r.body.resume();
    await client.close();
    return { offered: offeredSuites(sent[0]), negotiated };
  } finally {
    await server.close({ drainMs: 100 });
    setCryptoBackend('auto');
  }
}

test('clientCipherSuites: ChaCha20 first with sodium, AES-128-GCM first with node:crypto, an explicit list as given', { skip: noSodium }, () => {
  try {
    setCryptoBackend('sodium');
    assert.deepEqual(names(clientCipherSuites()), ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384']);
    assert.deepEqual(names(clientCipherSuites([TLS_AES_256_GCM_SHA384, TLS_AES_128_GCM_SHA256])), ['TLS_AES_256_GCM_SHA384', 'TLS_AES_128_GCM_SHA256']);
    assert.deepEqual(names(clientCipherSuites([])), names(clientCipherSuites()), 'an empty list is no list');
    setCryptoBackend('node');
    assert.deepEqual(names(clientCipherSuites()), ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']);
    assert.deepEqual(names(clientCipherSuites([TLS_CHACHA20_POLY1305_SHA256])), ['TLS_CHACHA20_POLY1305_SHA256']);
    // Every suite is offered either way.
    assert.deepEqual(names(clientCipherSuites()).sort(), names(ALL_SUITES).sort());
  } finally {
    setCryptoBackend('auto');
  }
});

test('Http3Client on the wire: its ClientHello offers ChaCha20 first under sodium, AES-128-GCM first under node:crypto', { skip: noSodium, timeout: 60_000 }, async () => {
  const s = await connectUnder('sodium');
  assert.deepEqual(s.offered, ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384']);
  assert.equal(s.negotiated, 'TLS_CHACHA20_POLY1305_SHA256');
  const n = await connectUnder('node');
  assert.deepEqual(n.offered, ['TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256']);
  assert.equal(n.negotiated, 'TLS_AES_128_GCM_SHA256');
});

test('Http3Client on the wire: an explicit cipher list keeps its order whatever the backend; the server still chooses', { timeout: 60_000 }, async () => {
  const explicit = [TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256];
  for (const b of noSodium ? (['node'] as const) : (['node', 'sodium'] as const)) {
    const r = await connectUnder(b, { cipherSuites: explicit });
    assert.deepEqual(r.offered, ['TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256'], `offer under ${b}`);
    // Our server picks by its own order: under node:crypto AES-128-GCM (not offered), then AES-256-GCM; under sodium
    // ChaCha20 first.
    assert.equal(r.negotiated, b === 'node' ? 'TLS_AES_256_GCM_SHA384' : 'TLS_CHACHA20_POLY1305_SHA256', `negotiated under ${b}`);
  }
  // A server preferring ChaCha20 gets it from the explicit list.
  const c = await connectUnder('node', { cipherSuites: explicit }, [TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256]);
  assert.equal(c.negotiated, 'TLS_CHACHA20_POLY1305_SHA256');
});
