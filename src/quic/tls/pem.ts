/** PEM helpers (RFC 7468) for configuring the TLS endpoint: certificate chains to DER and private keys to KeyObject. */
import { createPrivateKey, type KeyObject } from 'node:crypto';

const CERT_RE = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+?)-----END CERTIFICATE-----/g;

/** Every CERTIFICATE block in order (leaf first, as in a chain file), as DER. */
export function loadPemChain(pem: string): Buffer[] {
  const out: Buffer[] = [];
  for (const m of pem.matchAll(CERT_RE)) out.push(Buffer.from(m[1].replace(/\s+/g, ''), 'base64'));
  if (out.length === 0) throw new Error('no CERTIFICATE block in PEM input');
  return out;
}

/** A PKCS#8, PKCS#1 or SEC1 private key in PEM. */
export function loadPrivateKey(pem: string): KeyObject {
  return createPrivateKey({ key: pem, format: 'pem' });
}
