/**
 * What a TLS endpoint keeps once its handshake is complete (nothing of the handshake itself: the transcript, the
 * ephemeral key share and the handshake secrets are released), and that the client's certificate caches never
 * weaken verification: every handshake still checks the chain against its own trust anchors, the name, the dates
 * and the CertificateVerify signature.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { TlsAlert, TlsError } from '../../src/quic/errors.js';
import { Level } from '../../src/quic/types.js';
import { TlsEndpoint, type TlsConfig } from '../../src/quic/tls/tls.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const certDir = new URL('../../../test/fixtures/certs/', import.meta.url);
const pem = (name: string): string => readFileSync(new URL(name, certDir), 'utf8');
const CA = loadPemChain(pem('ca.pem'));
const NOW = new Date('2030-06-01T00:00:00Z');

function serverConfig(kind = 'ecdsa', over: Partial<TlsConfig> = {}): TlsConfig {
  return {
    role: 'server',
    alpn: ['h3'],
    transportParameters: Buffer.from('a0a1', 'hex'),
    certChain: loadPemChain(pem(`${kind}.pem`)),
    privateKey: loadPrivateKey(pem(`${kind}.key`)),
    ...over,
  };
}

function clientConfig(over: Partial<TlsConfig> = {}): TlsConfig {
  return { role: 'client', alpn: ['h3'], serverName: 'localhost', ca: CA, now: NOW, transportParameters: Buffer.from('0102', 'hex'), ...over };
}

/** Runs a handshake to completion, passing every flight whole. */
function handshake(client: TlsEndpoint, server: TlsEndpoint, started = false): void {
  if (!started) client.start();
  for (let i = 0; i < 10 && !(client.handshakeComplete && server.handshakeComplete); i++) {
    for (const o of client.takeOutput()) server.receive(o.level, o.data);
    for (const o of server.takeOutput()) client.receive(o.level, o.data);
    client.takeSecrets();
    server.takeSecrets();
  }
}

interface Internals {
  transcript: { messages: Buffer[]; running: unknown };
  keyShare: object | null;
  handshakeSecret: Buffer | null;
  clientHsSecret: Buffer | null;
  serverHsSecret: Buffer | null;
  clientAppSecret: Buffer | null;
}
const internals = (t: TlsEndpoint): Internals => t as unknown as Internals;

test('a completed handshake releases the transcript, the key share and the handshake secrets on both sides', async () => {
  const client = new TlsEndpoint(clientConfig());
  const server = new TlsEndpoint(serverConfig());
  client.start();
  // Hold only weak references to what the handshake builds, then let it complete.
  const share = new WeakRef(internals(client).keyShare!);
  const clientHello = new WeakRef(internals(client).transcript.messages[0]);
  handshake(client, server, true);
  assert.ok(client.handshakeComplete && server.handshakeComplete);
  for (const side of [client, server]) {
    const i = internals(side);
    assert.equal(i.transcript.messages.length, 0);
    assert.equal(i.transcript.running, null);
    assert.equal(i.keyShare, null);
    assert.equal(i.handshakeSecret, null);
    assert.equal(i.clientHsSecret, null);
    assert.equal(i.serverHsSecret, null);
    assert.equal(i.clientAppSecret, null);
  }
  // What the connection still asks for is there.
  assert.equal(client.alpn, 'h3');
  assert.equal(server.alpn, 'h3');
  assert.deepEqual(server.peerTransportParameters, Buffer.from('0102', 'hex'));
  assert.deepEqual(client.peerTransportParameters, Buffer.from('a0a1', 'hex'));
  assert.equal(client.peerCertificates.length, 1);
  assert.equal(client.clientRandom?.length, 32);
  assert.deepEqual(server.clientRandom, client.clientRandom);
  for (let i = 0; i < 10 && (share.deref() || clientHello.deref()); i++) {
    await new Promise((r) => setImmediate(r));
    gc();
  }
  assert.equal(share.deref(), undefined, 'the key share is still reachable');
  assert.equal(clientHello.deref(), undefined, 'the ClientHello is still reachable');
  // Released state changes nothing for late input: Handshake data after completion is still unexpected_message.
  assert.throws(
    () => server.receive(Level.Handshake, Buffer.from([20, 0, 0, 32, ...Buffer.alloc(32)])),
    (e: unknown) => e instanceof TlsError && e.alert === TlsAlert.unexpected_message,
  );
});

test('client certificate caching: a verified chain cached from earlier handshakes is checked again every time', () => {
  // Warm the caches with good handshakes.
  for (let i = 0; i < 2; i++) {
    const client = new TlsEndpoint(clientConfig());
    handshake(client, new TlsEndpoint(serverConfig()));
    assert.ok(client.handshakeComplete);
  }
  const fails = (client: TlsConfig, alert: number, message: RegExp, server = serverConfig()): void => {
    const c = new TlsEndpoint(client);
    assert.throws(
      () => handshake(c, new TlsEndpoint(server)),
      (e: unknown) => e instanceof TlsError && e.alert === alert && message.test(e.message),
    );
    assert.equal(c.handshakeComplete, false);
  };
  // The same certificate, other trust anchors: unknown CA.
  fails(clientConfig({ ca: loadPemChain(pem('selfsigned.pem')) }), TlsAlert.unknown_ca, /unknown CA/);
  // The same certificate, another name.
  fails(clientConfig({ serverName: 'example.com' }), TlsAlert.bad_certificate, /does not match host example\.com/);
  // The same certificate, a date outside its validity.
  fails(clientConfig({ now: new Date('2060-01-01T00:00:00Z') }), TlsAlert.certificate_expired, /expired/);
  // The same certificate with a CertificateVerify made by another key: the signature is checked again.
  const other = serverConfig('ecdsa', { privateKey: loadPrivateKey(pem('ca.key')) });
  fails(clientConfig(), TlsAlert.decrypt_error, /CertificateVerify signature does not verify/, other);
});

test('the Certificate message is built per configured chain: two servers with two chains send their own', () => {
  const seen: string[] = [];
  for (const kind of ['ecdsa', 'rsa', 'ecdsa']) {
    const client = new TlsEndpoint(clientConfig());
    handshake(client, new TlsEndpoint(serverConfig(kind)));
    assert.ok(client.handshakeComplete);
    seen.push(client.peerCertificates[0].publicKey.asymmetricKeyType!);
  }
  assert.deepEqual(seen, ['ec', 'rsa', 'ec']);
});
