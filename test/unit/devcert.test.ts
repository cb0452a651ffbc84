/**
 * The development certificate (src/cli/devcert.ts): what it contains (RFC 5280 fields checked with node:crypto's
 * X509Certificate), its reuse rules, its SPKI hash, and that our own TLS 1.3 client accepts it as a trust anchor in a
 * real QUIC handshake over loopback UDP (and refuses it without the anchor).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate, createHash, createPrivateKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureDevCert, devCertProblem, spkiSha256 } from '../../src/io/devcert.js';
import { verifyCertificateChain } from '../../src/quic/tls/verify.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import { UdpEndpoint, type QuicConnection } from '../../src/io/udp.js';
import { TlsError } from '../../src/quic/errors.js';

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

function tempDir(): string {
  return mkdtempSync(join(tmpdir(), 'qsr-devcert-'));
}

/** DER prefix of every P-256 SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier { ecPublicKey, prime256v1 }, BIT STRING (66) }. */
const P256_SPKI_PREFIX = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d030107034200', 'hex');

test('devcert: ECDSA P-256, localhost + 127.0.0.1 + ::1, serverAuth, one year, self-signed, key 0600', { timeout: 20_000 }, async () => {
  const dir = join(tempDir(), 'certs');
  try {
    const now = new Date();
    const dc = await ensureDevCert(dir, now);
    assert.equal(dc.created, true);
    assert.equal(dc.certPath, join(dir, 'cert.pem'));
    assert.equal(dc.keyPath, join(dir, 'key.pem'));
    assert.equal(statSync(dc.keyPath).mode & 0o777, 0o600);

    const cert = new X509Certificate(readFileSync(dc.certPath));
    const key = createPrivateKey(readFileSync(dc.keyPath));
    assert.equal(cert.subject, 'CN=localhost');
    assert.equal(cert.issuer, 'CN=localhost');
    assert.equal(cert.checkHost('localhost'), 'localhost');
    assert.equal(cert.checkIP('127.0.0.1'), '127.0.0.1');
    assert.ok(cert.checkIP('::1'));
    assert.equal(cert.checkHost('example.com'), undefined);
    assert.equal(cert.checkIP('10.0.0.1'), undefined);
    assert.equal(cert.ca, false);
    assert.deepEqual(cert.keyUsage, ['1.3.6.1.5.5.7.3.1']); // node reports the extended key usage OIDs here
    assert.equal(cert.publicKey.asymmetricKeyType, 'ec');
    assert.equal(cert.publicKey.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.ok(cert.checkIssued(cert));
    assert.ok(cert.verify(cert.publicKey), 'self-signature verifies');
    assert.ok(cert.checkPrivateKey(key), 'key matches');

    const from = new Date(cert.validFrom).getTime();
    const to = new Date(cert.validTo).getTime();
    assert.ok(from <= now.getTime(), 'valid now');
    const days = (to - now.getTime()) / 86_400_000;
    assert.ok(days > 364 && days <= 365.01, `valid for a year, got ${days} days`);
    assert.equal(dc.notAfter.getTime(), to);

    const spki = cert.publicKey.export({ type: 'spki', format: 'der' });
    assert.equal(spki.length, 91);
    assert.ok(spki.subarray(0, P256_SPKI_PREFIX.length).equals(P256_SPKI_PREFIX));
    const expected = createHash('sha256').update(spki).digest('base64');
    assert.equal(dc.spkiSha256, expected);
    assert.equal(Buffer.from(dc.spkiSha256, 'base64').length, 32);
    assert.equal(spkiSha256(key), expected, 'same hash from the private key');
  } finally {
    rmSync(join(dir, '..'), { recursive: true, force: true });
  }
});

test('devcert: reused while valid; replaced when the key does not match, it expires, or the files are bad', { timeout: 30_000 }, async () => {
  const dir = tempDir();
  try {
    const first = await ensureDevCert(dir);
    const certPem = readFileSync(first.certPath, 'utf8');

    const again = await ensureDevCert(dir);
    assert.equal(again.created, false);
    assert.equal(again.spkiSha256, first.spkiSha256);
    assert.equal(readFileSync(first.certPath, 'utf8'), certPem);

    // a key file that is readable by others is tightened on reuse
    writeFileSync(first.keyPath, readFileSync(first.keyPath), { mode: 0o644 });
    (await import('node:fs')).chmodSync(first.keyPath, 0o644);
    assert.equal((await ensureDevCert(dir)).created, false);
    assert.equal(statSync(first.keyPath).mode & 0o777, 0o600);

    // another key
    const other = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
    assert.equal(devCertProblem(certPem, other, new Date()), 'key does not match the certificate');
    writeFileSync(first.keyPath, other);
    const replaced = await ensureDevCert(dir);
    assert.equal(replaced.created, true);
    assert.notEqual(replaced.spkiSha256, first.spkiSha256);

    // near expiry (checked as of a date 365 days on)
    const later = new Date(Date.now() + 365 * 86_400_000);
    assert.equal(devCertProblem(readFileSync(first.certPath, 'utf8'), readFileSync(first.keyPath, 'utf8'), later), 'certificate expires within a day');
    const renewed = await ensureDevCert(dir, later);
    assert.equal(renewed.created, true);
    assert.ok(renewed.notAfter.getTime() > later.getTime());

    // garbage
    writeFileSync(first.certPath, 'not a certificate');
    assert.match(devCertProblem('not a certificate', other, new Date()) ?? '', /does not parse/);
    assert.equal((await ensureDevCert(dir)).created, true);

    // a certificate without these names is not reused; any valid pair that covers them is
    const fixtures = new URL('../../../test/fixtures/certs/', import.meta.url);
    const fixture = (name: string): string => readFileSync(new URL(name, fixtures), 'utf8');
    assert.equal(devCertProblem(fixture('ca.pem'), fixture('ca.key'), new Date()), 'certificate does not cover localhost');
    assert.equal(devCertProblem(fixture('selfsigned.pem'), fixture('selfsigned.key'), new Date()), null);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('devcert: our certificate path validation accepts it as a trust anchor for localhost, 127.0.0.1 and ::1', { timeout: 20_000 }, async () => {
  const dir = tempDir();
  try {
    const dc = await ensureDevCert(dir);
    const der = loadPemChain(readFileSync(dc.certPath, 'utf8'));
    const chain = der.map((d) => new X509Certificate(d));
    for (const serverName of ['localhost', '127.0.0.1', '::1', '[::1]']) verifyCertificateChain(chain, { ca: der, serverName, now: new Date() });
    assert.throws(() => verifyCertificateChain(chain, { ca: der, serverName: 'example.com', now: new Date() }), TlsError);
    assert.throws(() => verifyCertificateChain(chain, { serverName: 'localhost', now: new Date() }), /unknown CA/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('devcert: a QUIC + TLS 1.3 handshake over loopback succeeds with the cert as CA (insecure: false), fails without', { timeout: 20_000 }, async () => {
  const dir = tempDir();
  const dc = await ensureDevCert(dir);
  const certChain = loadPemChain(readFileSync(dc.certPath, 'utf8'));
  const privateKey = loadPrivateKey(readFileSync(dc.keyPath, 'utf8'));
  const srv = await UdpEndpoint.open({ bind: [{ address: '127.0.0.1', port: 0 }], server: { alpn: ['h3'], certChain, privateKey } });
  const cli = await UdpEndpoint.open({ bind: [{ address: '127.0.0.1', port: 0 }] });
  srv.on('error', () => {});
  cli.on('error', () => {});
  try {
    const ok: QuicConnection = cli.connect(
      { alpn: ['h3'], serverName: 'localhost', ca: certChain, insecure: false, certificateTime: new Date() },
      srv.address(),
    );
    await within(ok.ready, 5000, 'handshake with the dev cert as CA');
    assert.equal(ok.alpn, 'h3');
    ok.close(0, 'done');

    const byIp = cli.connect({ alpn: ['h3'], serverName: '127.0.0.1', ca: certChain, insecure: false }, srv.address());
    await within(byIp.ready, 5000, 'handshake naming 127.0.0.1');
    byIp.close(0, 'done');

    const refused = cli.connect({ alpn: ['h3'], serverName: 'localhost', insecure: false }, srv.address());
    refused.on('error', () => {});
    await assert.rejects(within(refused.ready, 5000, 'handshake without the CA'));
  } finally {
    await cli.close(0, 'test done', 1000);
    await srv.close(0, 'test done', 1000);
    rmSync(dir, { recursive: true, force: true });
  }
});
