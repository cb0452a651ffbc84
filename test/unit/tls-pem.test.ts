/** PEM helpers for the TLS configuration (RFC 7468). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { X509Certificate } from 'node:crypto';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';

const certDir = new URL('../../../test/fixtures/certs/', import.meta.url);
const pem = (name: string): string => readFileSync(new URL(name, certDir), 'utf8');

test('loadPemChain: every CERTIFICATE block in order, as DER', () => {
  const chain = loadPemChain(pem('ecdsa.pem') + '\n' + pem('ca.pem'));
  assert.equal(chain.length, 2);
  assert.equal(chain[0][0], 0x30); // DER SEQUENCE
  assert.equal(new X509Certificate(chain[0]).subject, 'CN=localhost');
  assert.equal(new X509Certificate(chain[1]).subject, 'CN=qsr test CA');
  assert.deepEqual(chain[1], new X509Certificate(pem('ca.pem')).raw);
  assert.throws(() => loadPemChain(pem('ecdsa.key')), /no CERTIFICATE/);
});

test('loadPrivateKey: EC, RSA and Ed25519 keys match their certificates', () => {
  for (const [kind, type] of [['ecdsa', 'ec'], ['rsa', 'rsa'], ['ed25519', 'ed25519']] as const) {
    const key = loadPrivateKey(pem(`${kind}.key`));
    assert.equal(key.type, 'private');
    assert.equal(key.asymmetricKeyType, type);
    assert.ok(new X509Certificate(pem(`${kind}.pem`)).checkPrivateKey(key), kind);
  }
});
