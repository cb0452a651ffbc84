/**
 * TLS 1.3 over QUIC: a client and a server TlsEndpoint wired together in memory, handshake bytes passed per level
 * (whole, or split into small random chunks), covering every cipher suite and certificate type, HelloRetryRequest,
 * key logging, RFC 9001 §4.1.4 secret timing, and failures with their exact alerts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { CipherSuite } from '../../src/quic/crypto/suites.js';
import { ALL_SUITES, TLS_AES_128_GCM_SHA256 } from '../../src/quic/crypto/suites.js';
import { hashLength } from '../../src/quic/crypto/hkdf.js';
import { setCryptoBackend } from '../../src/quic/crypto/backend.js';
import { TlsAlert, TlsError } from '../../src/quic/errors.js';
import { Level } from '../../src/quic/types.js';
import { TlsEndpoint, type TlsConfig, type TlsSecret } from '../../src/quic/tls/tls.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import { HRR_RANDOM, decodeClientHello, decodeServerHello, encodeClientHello, encodeEncryptedExtensions, decodeEncryptedExtensions } from '../../src/quic/tls/messages.js';
import { ExtensionType, decodeKeyShareClient, decodeU16List, encodeKeyShareClient, encodeU16List } from '../../src/quic/tls/extensions.js';
import { prng } from '../util/prng.js';

// The default-preference assertions here are node:crypto's (AES-128-GCM first); with the sodium backend the server
// prefers ChaCha20, which test/unit/crypto-backend.test.ts checks.
setCryptoBackend('node');

const certDir = new URL('../../../test/fixtures/certs/', import.meta.url);
const pem = (name: string): string => readFileSync(new URL(name, certDir), 'utf8');
const CA = loadPemChain(pem('ca.pem'));
const CERTS = ['ecdsa', 'rsa', 'ed25519'] as const;
const server = (kind: string) => ({ certChain: loadPemChain(pem(`${kind}.pem`)), privateKey: loadPrivateKey(pem(`${kind}.key`)) });
/** Inside the fixtures' validity period (2026-11-24 .. 2046-11-19). */
const NOW = new Date('2030-06-01T00:00:00Z');
const CLIENT_TP = Buffer.from('0102030405', 'hex');
const SERVER_TP = Buffer.from('a0a1a2a3a4a5a6', 'hex');

function clientConfig(over: Partial<TlsConfig> = {}): TlsConfig {
  return { role: 'client', alpn: ['h3'], serverName: 'localhost', ca: CA, now: NOW, transportParameters: CLIENT_TP, ...over };
}
function serverConfig(kind = 'ecdsa', over: Partial<TlsConfig> = {}): TlsConfig {
  return { role: 'server', alpn: ['h3'], transportParameters: SERVER_TP, ...server(kind), ...over };
}

/** Small deterministic PRNG (mulberry32) for chunk sizes. */
type Mutate = (from: 'client' | 'server', level: Level, data: Buffer) => Buffer;

interface RunOptions {
  /** Split each flight into random chunks of 1..maxChunk bytes. */
  rng?: () => number;
  maxChunk?: number;
  mutate?: Mutate;
}

interface Run {
  client: TlsEndpoint;
  server: TlsEndpoint;
  clientSecrets: TlsSecret[];
  serverSecrets: TlsSecret[];
  /** Every flight as sent, for inspection. */
  sent: { from: 'client' | 'server'; level: Level; data: Buffer }[];
}

function deliver(to: TlsEndpoint, from: 'client' | 'server', out: { level: Level; data: Buffer }[], run: Run, opts: RunOptions): void {
  // Coalesce consecutive messages of one level, as a QUIC stack would in CRYPTO frames.
  const byLevel: { level: Level; data: Buffer }[] = [];
  for (const o of out) {
    const data = opts.mutate ? opts.mutate(from, o.level, o.data) : o.data;
    run.sent.push({ from, level: o.level, data });
    const last = byLevel[byLevel.length - 1];
    if (last && last.level === o.level) last.data = Buffer.concat([last.data, data]);
    else byLevel.push({ level: o.level, data });
  }
  for (const { level, data } of byLevel) {
    if (!opts.rng) {
      to.receive(level, data);
      continue;
    }
    for (let off = 0; off < data.length; ) {
      const n = 1 + Math.floor(opts.rng() * (opts.maxChunk ?? 16));
      to.receive(level, data.subarray(off, off + n));
      off += n;
    }
  }
}

function handshake(cc: TlsConfig, sc: TlsConfig, opts: RunOptions = {}): Run {
  const run: Run = { client: new TlsEndpoint(cc), server: new TlsEndpoint(sc), clientSecrets: [], serverSecrets: [], sent: [] };
  run.client.start();
  for (let round = 0; round < 10; round++) {
    const co = run.client.takeOutput();
    run.clientSecrets.push(...run.client.takeSecrets());
    deliver(run.server, 'client', co, run, opts);
    const so = run.server.takeOutput();
    run.serverSecrets.push(...run.server.takeSecrets());
    deliver(run.client, 'server', so, run, opts);
    run.clientSecrets.push(...run.client.takeSecrets());
    if (co.length === 0 && so.length === 0) break;
  }
  return run;
}

function secretMap(secrets: TlsSecret[]): Map<string, TlsSecret> {
  const m = new Map<string, TlsSecret>();
  for (const s of secrets) {
    const key = `${s.level}:${s.direction}`;
    assert.ok(!m.has(key), `secret ${key} delivered twice`);
    m.set(key, s);
  }
  return m;
}

function assertMatchingSecrets(run: Run, suite: CipherSuite): void {
  const c = secretMap(run.clientSecrets);
  const s = secretMap(run.serverSecrets);
  assert.equal(c.size, 4);
  assert.equal(s.size, 4);
  for (const level of [Level.Handshake, Level.OneRtt]) {
    for (const [a, b] of [
      [c.get(`${level}:write`), s.get(`${level}:read`)],
      [c.get(`${level}:read`), s.get(`${level}:write`)],
    ]) {
      assert.ok(a && b, `missing secret at level ${level}`);
      assert.equal(a.suite, suite);
      assert.equal(b.suite, suite);
      assert.equal(a.secret.length, hashLength(suite.hash));
      assert.deepEqual(a.secret, b.secret);
    }
  }
  // The four secrets are distinct.
  assert.equal(new Set([...c.values()].map((x) => x.secret.toString('hex'))).size, 4);
}

function alertOf(fn: () => unknown): { alert: number; message: string } {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof TlsError, `expected TlsError, got ${String(e)}`);
    return { alert: e.alert, message: e.message };
  }
  assert.fail('expected a TlsError');
}

/** Changes one byte of the first message of `type` sent by `who`. */
function flipIn(who: 'client' | 'server', type: number, at: (len: number) => number): Mutate {
  let done = false;
  return (from, _level, data) => {
    if (done || from !== who || data[0] !== type) return data;
    done = true;
    const copy = Buffer.from(data);
    copy[at(copy.length)] ^= 0x01;
    return copy;
  };
}

// ---------------------------------------------------------------------------------------------------------------------

for (const suite of ALL_SUITES) {
  for (const kind of CERTS) {
    test(`handshake completes: ${suite.name} with ${kind} certificate (random 1..16-byte chunks)`, () => {
      const run = handshake(clientConfig({ cipherSuites: [suite] }), serverConfig(kind), { rng: prng(suite.id * 31 + kind.length), maxChunk: 16 });
      const { client, server } = run;
      assert.equal(client.handshakeComplete, true);
      assert.equal(server.handshakeComplete, true);
      assert.equal(client.cipherSuite, suite);
      assert.equal(server.cipherSuite, suite);
      assert.equal(client.alpn, 'h3');
      assert.equal(server.alpn, 'h3');
      assert.deepEqual(client.peerTransportParameters, SERVER_TP);
      assert.deepEqual(server.peerTransportParameters, CLIENT_TP);
      assert.equal(server.serverName, 'localhost');
      assert.equal(client.peerCertificates.length, 1);
      assert.equal(client.peerCertificates[0].subject, 'CN=localhost');
      assert.deepEqual(client.clientRandom, server.clientRandom);
      assert.equal(client.clientRandom?.length, 32);
      assertMatchingSecrets(run, suite);
      // No ChangeCipherSpec, no records: only handshake messages at Initial and Handshake.
      assert.deepEqual(
        run.sent.map((s) => `${s.from}:${s.level}:${s.data[0]}`),
        ['client:0:1', 'server:0:2', 'server:1:8', 'server:1:11', 'server:1:15', 'server:1:20', 'client:1:20'],
      );
    });
  }
}

test('default cipher suites: the server picks its own first match; whole flights delivered at once', () => {
  const run = handshake(clientConfig(), serverConfig('rsa', { cipherSuites: [ALL_SUITES[2], ALL_SUITES[0]] }));
  assert.equal(run.server.cipherSuite, ALL_SUITES[2]);
  assertMatchingSecrets(run, ALL_SUITES[2]);
  const run2 = handshake(clientConfig(), serverConfig('ed25519'));
  assert.equal(run2.client.cipherSuite, TLS_AES_128_GCM_SHA256);
});

test('one-byte chunks work too', () => {
  const run = handshake(clientConfig(), serverConfig('rsa'), { rng: () => 0, maxChunk: 1 });
  assert.ok(run.client.handshakeComplete && run.server.handshakeComplete);
});

test('ALPN: the server chooses by its own preference order', () => {
  const run = handshake(clientConfig({ alpn: ['hq-interop', 'h3'] }), serverConfig('ecdsa', { alpn: ['h3', 'hq-interop'] }));
  assert.equal(run.client.alpn, 'h3');
  assert.equal(run.server.alpn, 'h3');
});

for (const [clientGroups, serverGroups] of [
  [['secp256r1', 'x25519'], ['x25519']],
  [['x25519', 'secp256r1'], ['secp256r1']],
] as const) {
  test(`HelloRetryRequest: client groups ${clientGroups.join(',')} vs server ${serverGroups.join(',')}`, () => {
    const run = handshake(clientConfig({ groups: [...clientGroups] }), serverConfig('ecdsa', { groups: [...serverGroups] }), { rng: prng(7), maxChunk: 40 });
    assert.ok(run.client.handshakeComplete && run.server.handshakeComplete);
    const initial = run.sent.filter((s) => s.level === Level.Initial);
    assert.equal(initial.length, 4, 'CH1, HRR, CH2, SH');
    const hrr = decodeServerHello(initial[1].data.subarray(4));
    assert.equal(hrr.isHelloRetryRequest, true);
    assert.deepEqual(hrr.random, HRR_RANDOM);
    assert.equal(decodeServerHello(initial[3].data.subarray(4)).isHelloRetryRequest, false);
    // Both ClientHellos carry the same random; the second one's key share is for the server's group.
    const ch1 = decodeClientHello(initial[0].data.subarray(4));
    const ch2 = decodeClientHello(initial[2].data.subarray(4));
    assert.deepEqual(ch1.random, ch2.random);
    assert.deepEqual(ch1.cipherSuites, ch2.cipherSuites);
    assert.deepEqual([...ch1.extensions.keys()], [...ch2.extensions.keys()]);
    assert.notDeepEqual(ch1.extensions.get(ExtensionType.key_share), ch2.extensions.get(ExtensionType.key_share));
    assertMatchingSecrets(run, TLS_AES_128_GCM_SHA256);
  });
}

test('no HelloRetryRequest when the client share already matches an accepted group', () => {
  const run = handshake(clientConfig({ groups: ['secp256r1', 'x25519'] }), serverConfig('ecdsa', { groups: ['x25519', 'secp256r1'] }));
  assert.ok(run.server.handshakeComplete);
  assert.equal(run.sent.filter((s) => s.level === Level.Initial).length, 2);
});

test('no common group -> handshake_failure', () => {
  const r = alertOf(() => handshake(clientConfig({ groups: ['x25519'] }), serverConfig('ecdsa', { groups: ['secp256r1'] })));
  assert.equal(r.alert, TlsAlert.handshake_failure);
});

test('key log: five labels per side, identical lines, the client random, and the delivered secrets', () => {
  const clientLines: string[] = [];
  const serverLines: string[] = [];
  const run = handshake(clientConfig({ keyLog: (l) => clientLines.push(l) }), serverConfig('ecdsa', { keyLog: (l) => serverLines.push(l) }));
  const labels = ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0', 'EXPORTER_SECRET'];
  const random = run.client.clientRandom!.toString('hex');
  for (const lines of [clientLines, serverLines]) {
    assert.deepEqual(lines.map((l) => l.split(' ')[0]).sort(), [...labels].sort());
    for (const l of lines) {
      assert.match(l, /^[A-Z_0-9]+ [0-9a-f]{64} [0-9a-f]{64}$/);
      assert.equal(l.split(' ')[1], random);
    }
  }
  assert.deepEqual([...clientLines].sort(), [...serverLines].sort());
  const byLabel = new Map(clientLines.map((l) => [l.split(' ')[0], l.split(' ')[2]]));
  const c = secretMap(run.clientSecrets);
  assert.equal(byLabel.get('CLIENT_HANDSHAKE_TRAFFIC_SECRET'), c.get(`${Level.Handshake}:write`)!.secret.toString('hex'));
  assert.equal(byLabel.get('SERVER_HANDSHAKE_TRAFFIC_SECRET'), c.get(`${Level.Handshake}:read`)!.secret.toString('hex'));
  assert.equal(byLabel.get('CLIENT_TRAFFIC_SECRET_0'), c.get(`${Level.OneRtt}:write`)!.secret.toString('hex'));
  assert.equal(byLabel.get('SERVER_TRAFFIC_SECRET_0'), c.get(`${Level.OneRtt}:read`)!.secret.toString('hex'));
});

test('secret and completion timing follow RFC 9001 §4.1.4 / §4.1.1', () => {
  const client = new TlsEndpoint(clientConfig());
  const server = new TlsEndpoint(serverConfig('ecdsa'));
  client.start();
  assert.deepEqual(client.takeSecrets(), []);
  const ch = client.takeOutput();
  assert.deepEqual(ch.map((o) => o.level), [Level.Initial]);
  assert.equal(server.peerTransportParameters, null);
  server.start(); // no-op
  server.receive(Level.Initial, ch[0].data);
  assert.deepEqual(server.peerTransportParameters, CLIENT_TP);
  assert.deepEqual(server.takeSecrets().map((s) => `${s.level}:${s.direction}`), ['1:read', '1:write', '2:write']);
  assert.equal(server.handshakeComplete, false);
  const flight = server.takeOutput();
  assert.deepEqual(flight.map((o) => o.level), [Level.Initial, Level.Handshake, Level.Handshake, Level.Handshake, Level.Handshake]);

  client.receive(Level.Initial, flight[0].data);
  assert.deepEqual(client.takeSecrets().map((s) => `${s.level}:${s.direction}`), ['1:read', '1:write']);
  assert.equal(client.peerTransportParameters, null);
  client.receive(Level.Handshake, flight[1].data); // EncryptedExtensions
  assert.deepEqual(client.peerTransportParameters, SERVER_TP);
  client.receive(Level.Handshake, Buffer.concat([flight[2].data, flight[3].data]));
  assert.deepEqual(client.takeSecrets(), []);
  assert.equal(client.handshakeComplete, false);
  client.receive(Level.Handshake, flight[4].data); // Finished
  assert.deepEqual(client.takeSecrets().map((s) => `${s.level}:${s.direction}`), ['2:read', '2:write']);
  assert.equal(client.handshakeComplete, true);

  const fin = client.takeOutput();
  assert.deepEqual(fin.map((o) => o.level), [Level.Handshake]);
  server.receive(Level.Handshake, fin[0].data);
  assert.deepEqual(server.takeSecrets().map((s) => `${s.level}:${s.direction}`), ['2:read']);
  assert.equal(server.handshakeComplete, true);
  // A NewSessionTicket at 1-RTT is ignored by the client (no resumption); KeyUpdate is forbidden in QUIC.
  client.receive(Level.OneRtt, Buffer.from('04000000', 'hex'));
  assert.equal(alertOf(() => client.receive(Level.OneRtt, Buffer.from('1800000100', 'hex'))).alert, TlsAlert.unexpected_message);
});

// Failures ------------------------------------------------------------------------------------------------------------

test('no common ALPN -> no_application_protocol (120) at the server', () => {
  const r = alertOf(() => handshake(clientConfig({ alpn: ['hq-interop'] }), serverConfig('ecdsa', { alpn: ['h3'] })));
  assert.equal(r.alert, TlsAlert.no_application_protocol);
  assert.equal(r.alert, 120);
  assert.match(r.message, /no common application protocol/);
});

test('wrong host name -> bad_certificate (42) with a clear message', () => {
  const r = alertOf(() => handshake(clientConfig({ serverName: 'example.com' }), serverConfig('ecdsa')));
  assert.equal(r.alert, 42);
  assert.match(r.message, /certificate for localhost does not match host example\.com/);
});

test('IP literals: no SNI is sent, the address is checked against IP SANs', () => {
  for (const ip of ['127.0.0.1', '::1']) {
    const run = handshake(clientConfig({ serverName: ip }), serverConfig('ecdsa'));
    assert.ok(run.client.handshakeComplete, ip);
    assert.equal(run.server.serverName, null);
  }
  const r = alertOf(() => handshake(clientConfig({ serverName: '10.1.2.3' }), serverConfig('ecdsa')));
  assert.equal(r.alert, TlsAlert.bad_certificate);
  assert.match(r.message, /does not match host 10\.1\.2\.3/);
});

test('self-signed certificate without insecure -> unknown_ca (48); insecure: true accepts it', () => {
  const r = alertOf(() => handshake(clientConfig(), serverConfig('selfsigned')));
  assert.equal(r.alert, TlsAlert.unknown_ca);
  assert.match(r.message, /^.*unknown CA/);
  const run = handshake(clientConfig({ insecure: true, ca: undefined }), serverConfig('selfsigned'));
  assert.ok(run.client.handshakeComplete && run.server.handshakeComplete);
  assert.equal(run.client.peerCertificates[0].issuer, 'CN=localhost');
});

test('insecure: true still checks the CertificateVerify signature', () => {
  const r = alertOf(() => handshake(clientConfig({ insecure: true }), serverConfig('selfsigned'), { mutate: flipIn('server', 15, (n) => n - 1) }));
  assert.equal(r.alert, TlsAlert.decrypt_error);
  assert.match(r.message, /CertificateVerify signature/);
});

test('a self-signed certificate is accepted when it is itself a trusted root', () => {
  const run = handshake(clientConfig({ ca: loadPemChain(pem('selfsigned.pem')) }), serverConfig('selfsigned'));
  assert.ok(run.client.handshakeComplete);
});

test('a CA-signed leaf is unknown when the client trusts another root, and with Node default roots', () => {
  assert.equal(alertOf(() => handshake(clientConfig({ ca: loadPemChain(pem('selfsigned.pem')) }), serverConfig('rsa'))).alert, TlsAlert.unknown_ca);
  assert.equal(alertOf(() => handshake(clientConfig({ ca: undefined }), serverConfig('rsa'))).alert, TlsAlert.unknown_ca);
});

test('the trusted root may also be sent in the chain', () => {
  const run = handshake(clientConfig(), serverConfig('ecdsa', { certChain: [...loadPemChain(pem('ecdsa.pem')), ...CA] }));
  assert.ok(run.client.handshakeComplete);
  assert.equal(run.client.peerCertificates.length, 2);
});

test('validity dates are checked when now is given -> certificate_expired (45)', () => {
  assert.equal(alertOf(() => handshake(clientConfig({ now: new Date('2050-01-01T00:00:00Z') }), serverConfig('ecdsa'))).alert, TlsAlert.certificate_expired);
  assert.equal(alertOf(() => handshake(clientConfig({ now: new Date('2020-01-01T00:00:00Z') }), serverConfig('ecdsa'))).alert, TlsAlert.certificate_expired);
  assert.ok(handshake(clientConfig({ now: undefined }), serverConfig('ecdsa')).client.handshakeComplete);
});

for (const kind of CERTS) {
  test(`tampered CertificateVerify (${kind}) -> decrypt_error (51)`, () => {
    const r = alertOf(() => handshake(clientConfig(), serverConfig(kind), { mutate: flipIn('server', 15, (n) => n - 1) }));
    assert.equal(r.alert, TlsAlert.decrypt_error);
    // Fails on the signature itself, not later on the Finished MAC over the changed transcript.
    assert.match(r.message, /CertificateVerify signature does not verify/);
  });
}

test('tampered server Finished -> decrypt_error (51) at the client', () => {
  const r = alertOf(() => handshake(clientConfig(), serverConfig('ecdsa'), { mutate: flipIn('server', 20, (n) => n - 1) }));
  assert.equal(r.alert, TlsAlert.decrypt_error);
  assert.match(r.message, /server Finished/);
});

test('tampered client Finished -> decrypt_error (51) at the server', () => {
  const r = alertOf(() => handshake(clientConfig(), serverConfig('ecdsa'), { mutate: flipIn('client', 20, () => 4) }));
  assert.equal(r.alert, TlsAlert.decrypt_error);
  assert.match(r.message, /client Finished/);
});

test('a tampered transcript (ServerHello random) breaks the CertificateVerify', () => {
  const r = alertOf(() => handshake(clientConfig(), serverConfig('ecdsa'), { mutate: flipIn('server', 2, () => 10) }));
  assert.equal(r.alert, TlsAlert.decrypt_error);
  assert.match(r.message, /CertificateVerify/);
});

/** Re-encodes the client's ClientHello through `edit`. */
function editClientHello(edit: (exts: Map<number, Buffer>) => void, sessionId?: Buffer): Mutate {
  return (from, level, data) => {
    if (from !== 'client' || level !== Level.Initial || data[0] !== 1) return data;
    const ch = decodeClientHello(data.subarray(4));
    edit(ch.extensions);
    const msg = encodeClientHello(ch.random, ch.cipherSuites, [...ch.extensions].map(([type, d]) => ({ type, data: d })));
    if (!sessionId) return msg;
    // Splice a legacy_session_id in after legacy_version + random.
    const body = Buffer.concat([msg.subarray(4, 38), Buffer.from([sessionId.length]), sessionId, msg.subarray(39)]);
    const out = Buffer.concat([Buffer.from([1, 0, 0, 0]), body]);
    out.writeUIntBE(body.length, 1, 3);
    return out;
  };
}

test('server ignores GREASE (RFC 8701) extensions, groups and key shares, as Chromium sends them', () => {
  const mutate = editClientHello((e) => {
    e.set(0x1a1a, Buffer.alloc(0));
    const groups = decodeU16List(e.get(ExtensionType.supported_groups)!, 'supported_groups');
    e.set(ExtensionType.supported_groups, encodeU16List([0x2a2a, ...groups]));
    const shares = decodeKeyShareClient(e.get(ExtensionType.key_share)!);
    e.set(ExtensionType.key_share, encodeKeyShareClient([{ group: 0x2a2a, keyExchange: Buffer.from([0]) }, ...shares]));
  });
  const client = new TlsEndpoint(clientConfig());
  const srv = new TlsEndpoint(serverConfig('ecdsa'));
  client.start();
  srv.receive(Level.Initial, mutate('client', Level.Initial, client.takeOutput()[0].data));
  const flight = srv.takeOutput();
  assert.deepEqual(flight.map((o) => o.data[0]), [2, 8, 11, 15, 20]);
  const sh = decodeServerHello(flight[0].data.subarray(4));
  assert.equal(sh.extensions.get(ExtensionType.key_share)!.readUInt16BE(0), 0x001d);
  assert.equal(srv.alpn, 'h3');
});

test('ClientHello without quic_transport_parameters -> missing_extension (109)', () => {
  const r = alertOf(() => handshake(clientConfig(), serverConfig('ecdsa'), { mutate: editClientHello((e) => e.delete(ExtensionType.quic_transport_parameters)) }));
  assert.equal(r.alert, 109);
});

test('ClientHello without ALPN -> no_application_protocol (120)', () => {
  const r = alertOf(() => handshake(clientConfig(), serverConfig('ecdsa'), { mutate: editClientHello((e) => e.delete(ExtensionType.application_layer_protocol_negotiation)) }));
  assert.equal(r.alert, 120);
});

test('ClientHello without supported_versions -> protocol_version (70)', () => {
  const r = alertOf(() => handshake(clientConfig(), serverConfig('ecdsa'), { mutate: editClientHello((e) => e.delete(ExtensionType.supported_versions)) }));
  assert.equal(r.alert, TlsAlert.protocol_version);
});

test('ClientHello with a non-empty legacy_session_id -> illegal_parameter (47)', () => {
  const r = alertOf(() => handshake(clientConfig(), serverConfig('ecdsa'), { mutate: editClientHello(() => {}, Buffer.alloc(8, 0xaa)) }));
  assert.equal(r.alert, TlsAlert.illegal_parameter);
});

test('EncryptedExtensions without quic_transport_parameters -> missing_extension (109) at the client', () => {
  const mutate: Mutate = (from, _level, data) => {
    if (from !== 'server' || data[0] !== 8) return data;
    const exts = decodeEncryptedExtensions(data.subarray(4));
    exts.delete(ExtensionType.quic_transport_parameters);
    return encodeEncryptedExtensions([...exts].map(([type, d]) => ({ type, data: d })));
  };
  // Changing EE changes the transcript, so the failure must come before CertificateVerify is checked.
  const r = alertOf(() => handshake(clientConfig(), serverConfig('ecdsa'), { mutate }));
  assert.equal(r.alert, TlsAlert.missing_extension);
});

test('data at the wrong level -> unexpected_message (10); errors are sticky', () => {
  const client = new TlsEndpoint(clientConfig());
  assert.equal(alertOf(() => client.receive(Level.Initial, Buffer.from('02000000', 'hex'))).alert, TlsAlert.unexpected_message);
  const c2 = new TlsEndpoint(clientConfig());
  c2.start();
  const err = alertOf(() => c2.receive(Level.Handshake, Buffer.from('08000002', 'hex')));
  assert.equal(err.alert, TlsAlert.unexpected_message);
  assert.equal(alertOf(() => c2.receive(Level.Initial, Buffer.alloc(0))).message, err.message);

  const server = new TlsEndpoint(serverConfig('ecdsa'));
  assert.equal(alertOf(() => server.receive(Level.Handshake, Buffer.from('14000000', 'hex'))).alert, TlsAlert.unexpected_message);
  const s2 = new TlsEndpoint(serverConfig('ecdsa'));
  assert.equal(alertOf(() => s2.receive(Level.Initial, Buffer.from('1400000100', 'hex'))).alert, TlsAlert.unexpected_message);
});

test('extra bytes after ServerHello at the Initial level -> unexpected_message', () => {
  const client = new TlsEndpoint(clientConfig());
  const server = new TlsEndpoint(serverConfig('ecdsa'));
  client.start();
  server.receive(Level.Initial, client.takeOutput()[0].data);
  const sh = server.takeOutput()[0].data;
  assert.equal(alertOf(() => client.receive(Level.Initial, Buffer.concat([sh, Buffer.from('0800')]))).alert, TlsAlert.unexpected_message);
});

test('malformed ClientHello -> decode_error (50)', () => {
  const server = new TlsEndpoint(serverConfig('ecdsa'));
  // A ClientHello whose body is too short to hold a random.
  assert.equal(alertOf(() => server.receive(Level.Initial, Buffer.from('01000004030300aa', 'hex'))).alert, TlsAlert.decode_error);
});
