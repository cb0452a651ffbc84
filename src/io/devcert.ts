/**
 * Self-signed development certificate for `qsr serve` (RFC 5280 profile): ECDSA P-256, CN=localhost, SAN
 * DNS:localhost, IP:127.0.0.1, IP:::1, EKU serverAuth, one year. Written as cert.pem / key.pem (key mode 0600) into
 * a directory and reused while it still covers those names and dates. Also gives the SHA-256 of the certificate's
 * SubjectPublicKeyInfo in base64, which is what Chromium's --ignore-certificate-errors-spki-list expects.
 *
 * Library choice: @peculiar/x509 builds the certificate. It is maintained (MIT, PeculiarVentures, regular releases),
 * signs through the standard WebCrypto API, so Node's own `crypto.webcrypto` does the ECDSA work and nothing needs
 * the network or native code. node-forge was the alternative, but its X.509 signer only does RSA, and we want a
 * P-256 key like the ones browsers and our TLS stack prefer. @peculiar/x509 needs a Reflect metadata polyfill
 * (tsyringe), hence `reflect-metadata`; both are loaded lazily, only when a certificate has to be made.
 */
import { X509Certificate, createHash, createPrivateKey, createPublicKey, randomBytes, webcrypto, KeyObject } from 'node:crypto';
import { chmodSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const DEV_CERT_DNS_NAMES: readonly string[] = ['localhost'];
export const DEV_CERT_IPS: readonly string[] = ['127.0.0.1', '::1'];

/** Regenerate when less than this much validity is left. */
const MIN_REMAINING_MS = 24 * 3600 * 1000;
const VALIDITY_MS = 365 * 24 * 3600 * 1000;
/** notBefore is set slightly in the past so a peer with a clock a little behind still accepts the certificate. */
const BACKDATE_MS = 5 * 60 * 1000;

export interface DevCert {
  certPath: string;
  keyPath: string;
  /** base64(SHA-256(SubjectPublicKeyInfo DER)). */
  spkiSha256: string;
  /** True when this call made a new certificate; false when an existing one was reused. */
  created: boolean;
  notAfter: Date;
}

/** base64 SHA-256 of a public key's SubjectPublicKeyInfo DER (Chromium's --ignore-certificate-errors-spki-list). */
export function spkiSha256(key: KeyObject | X509Certificate): string {
  const pub = key instanceof X509Certificate ? key.publicKey : key.type === 'private' ? createPublicKey(key) : key;
  const der = pub.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

/** Why an existing cert/key pair cannot be reused, or null when it can. */
export function devCertProblem(certPem: string, keyPem: string, now: Date): string | null {
  let cert: X509Certificate;
  try {
    cert = new X509Certificate(certPem);
  } catch (e) {
    return `certificate does not parse: ${(e as Error).message}`;
  }
  for (const name of DEV_CERT_DNS_NAMES) if (cert.checkHost(name) === undefined) return `certificate does not cover ${name}`;
  for (const ip of DEV_CERT_IPS) if (cert.checkIP(ip) === undefined) return `certificate does not cover ${ip}`;
  if (new Date(cert.validFrom) > now) return 'certificate is not valid yet';
  if (new Date(cert.validTo).getTime() - now.getTime() < MIN_REMAINING_MS) return 'certificate expires within a day';
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (e) {
    return `key does not load: ${(e as Error).message}`;
  }
  if (!cert.checkPrivateKey(key)) return 'key does not match the certificate';
  return null;
}

function readIfPresent(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

/** Writes via a temporary file and rename, so a reader never sees half a PEM file. */
function writeAtomic(path: string, data: string, mode: number): void {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  writeFileSync(tmp, data, { mode });
  chmodSync(tmp, mode); // the umask may have cleared bits we asked for; for the key this only ever tightens
  renameSync(tmp, path);
}

/** Makes a new certificate and key as PEM (no files touched). */
export async function generateDevCert(now: Date = new Date()): Promise<{ certPem: string; keyPem: string }> {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  x509.cryptoProvider.set(webcrypto);
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify']);
  const serial = randomBytes(16);
  serial[0] &= 0x7f; // a positive INTEGER (RFC 5280 §4.1.2.2)
  serial[0] |= 0x01; // and no leading zero octet to be stripped
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial.toString('hex'),
    name: 'CN=localhost',
    notBefore: new Date(now.getTime() - BACKDATE_MS),
    notAfter: new Date(now.getTime() + VALIDITY_MS),
    keys: keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      // No KeyUsage extension: with digitalSignature alone, OpenSSL-based clients no longer treat the certificate
      // as self-issued (X509_check_issued wants keyCertSign), and keyCertSign would need cA=true (RFC 5280 §4.2.1.3).
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        ...DEV_CERT_DNS_NAMES.map((value) => ({ type: 'dns' as const, value })),
        ...DEV_CERT_IPS.map((value) => ({ type: 'ip' as const, value })),
      ]),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const keyPem = KeyObject.from(keys.privateKey).export({ type: 'pkcs8', format: 'pem' }) as string;
  return { certPem: cert.toString('pem') + '\n', keyPem };
}

/**
 * The development certificate in `dir` (created with mode 0700 if missing): reused when cert.pem and key.pem are
 * present, match each other, cover localhost/127.0.0.1/::1 and are valid for at least another day; made anew
 * otherwise.
 */
export async function ensureDevCert(dir: string, now: Date = new Date()): Promise<DevCert> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certPath = join(dir, 'cert.pem');
  const keyPath = join(dir, 'key.pem');
  const certPem = readIfPresent(certPath);
  const keyPem = readIfPresent(keyPath);
  if (certPem !== null && keyPem !== null && devCertProblem(certPem, keyPem, now) === null) {
    const cert = new X509Certificate(certPem);
    chmodSync(keyPath, 0o600);
    return { certPath, keyPath, spkiSha256: spkiSha256(cert), created: false, notAfter: new Date(cert.validTo) };
  }
  const made = await generateDevCert(now);
  writeAtomic(keyPath, made.keyPem, 0o600);
  writeAtomic(certPath, made.certPem, 0o644);
  const cert = new X509Certificate(made.certPem);
  return { certPath, keyPath, spkiSha256: spkiSha256(cert), created: true, notAfter: new Date(cert.validTo) };
}
