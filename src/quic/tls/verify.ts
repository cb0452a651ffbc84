/**
 * Server authentication for TLS 1.3: CertificateVerify signing and checking (RFC 8446 §4.4.3, §4.2.3) and
 * certificate path validation against trusted roots with host name / IP checks (RFC 5280 §6 simplified, RFC 6125).
 */
import { X509Certificate, constants, sign, verify, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { rootCertificates } from 'node:tls';
import { TlsAlert, TlsError } from '../errors.js';
import { SignatureScheme } from './extensions.js';

/** What we offer in signature_algorithms, preference order. rsa_pkcs1_sha256 is only for certificate signatures. */
export const OFFERED_SIGNATURE_SCHEMES: readonly number[] = [
  SignatureScheme.ecdsa_secp256r1_sha256,
  SignatureScheme.ed25519,
  SignatureScheme.rsa_pss_rsae_sha256,
  SignatureScheme.ecdsa_secp384r1_sha384,
  SignatureScheme.rsa_pss_rsae_sha384,
  SignatureScheme.rsa_pss_rsae_sha512,
  SignatureScheme.rsa_pkcs1_sha256,
];

/** Schemes allowed in a TLS 1.3 CertificateVerify from us or the peer. */
const CERTIFICATE_VERIFY_SCHEMES: ReadonlySet<number> = new Set(
  OFFERED_SIGNATURE_SCHEMES.filter((s) => s !== SignatureScheme.rsa_pkcs1_sha256),
);

const SERVER_CONTEXT = 'TLS 1.3, server CertificateVerify';

/** The signed content: 64 spaces, the context string, a zero byte, the transcript hash (§4.4.3). */
export function certificateVerifyContent(transcriptHash: Buffer, context = SERVER_CONTEXT): Buffer {
  const ctx = Buffer.from(context, 'ascii');
  const out = Buffer.alloc(64 + ctx.length + 1 + transcriptHash.length, 0x20);
  ctx.copy(out, 64);
  out[64 + ctx.length] = 0;
  transcriptHash.copy(out, 65 + ctx.length);
  return out;
}

interface SchemeParams {
  digest: string | null;
  keyType: string;
  curve?: string;
  pss?: boolean;
}

function schemeParams(scheme: number): SchemeParams | undefined {
  switch (scheme) {
    case SignatureScheme.ecdsa_secp256r1_sha256:
      return { digest: 'sha256', keyType: 'ec', curve: 'prime256v1' };
    case SignatureScheme.ecdsa_secp384r1_sha384:
      return { digest: 'sha384', keyType: 'ec', curve: 'secp384r1' };
    case SignatureScheme.rsa_pss_rsae_sha256:
      return { digest: 'sha256', keyType: 'rsa', pss: true };
    case SignatureScheme.rsa_pss_rsae_sha384:
      return { digest: 'sha384', keyType: 'rsa', pss: true };
    case SignatureScheme.rsa_pss_rsae_sha512:
      return { digest: 'sha512', keyType: 'rsa', pss: true };
    case SignatureScheme.ed25519:
      return { digest: null, keyType: 'ed25519' };
    default:
      return undefined;
  }
}

function keyMatches(key: KeyObject, p: SchemeParams): boolean {
  if (key.asymmetricKeyType !== p.keyType) return false;
  if (p.curve) return key.asymmetricKeyDetails?.namedCurve === p.curve;
  return true;
}

/** The first scheme from the peer's list (its preference order) that our private key can produce, or undefined. */
export function chooseSignatureScheme(key: KeyObject, peerSchemes: number[]): number | undefined {
  for (const s of peerSchemes) {
    if (!CERTIFICATE_VERIFY_SCHEMES.has(s)) continue;
    const p = schemeParams(s);
    if (p && keyMatches(key, p)) return s;
  }
  return undefined;
}

export function signCertificateVerify(key: KeyObject, scheme: number, transcriptHash: Buffer): Buffer {
  const p = schemeParams(scheme);
  if (!p) throw new TlsError(TlsAlert.internal_error, `cannot sign with scheme 0x${scheme.toString(16)}`);
  const data = certificateVerifyContent(transcriptHash);
  if (p.pss) return sign(p.digest, data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST });
  return sign(p.digest, data, key);
}

/** Checks the peer's CertificateVerify; throws illegal_parameter for a scheme we did not offer, decrypt_error for a bad signature. */
export function verifyCertificateVerify(publicKey: KeyObject, scheme: number, signature: Buffer, transcriptHash: Buffer): void {
  const p = CERTIFICATE_VERIFY_SCHEMES.has(scheme) ? schemeParams(scheme) : undefined;
  if (!p) throw new TlsError(TlsAlert.illegal_parameter, `CertificateVerify uses signature scheme 0x${scheme.toString(16)}, which we did not offer`);
  if (!keyMatches(publicKey, p))
    throw new TlsError(TlsAlert.illegal_parameter, `CertificateVerify scheme 0x${scheme.toString(16)} does not match the certificate's ${publicKey.asymmetricKeyType} key`);
  const data = certificateVerifyContent(transcriptHash);
  let ok = false;
  try {
    ok = p.pss
      ? verify(p.digest, data, { key: publicKey, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: constants.RSA_PSS_SALTLEN_DIGEST }, signature)
      : verify(p.digest, data, publicKey, signature);
  } catch {
    ok = false;
  }
  if (!ok) throw new TlsError(TlsAlert.decrypt_error, 'CertificateVerify signature does not verify');
}

// Certificate path validation ------------------------------------------------------------------------------------------

export interface CertificateCheck {
  /** Trusted roots, DER. Undefined: Node's bundled tls.rootCertificates. */
  ca?: Buffer[];
  /** Host name or IP literal to match; undefined skips the name check. */
  serverName?: string;
  /** Validity dates are checked only when given. */
  now?: Date;
}

let defaultRoots: X509Certificate[] | undefined;
/** Parsed trust anchors per configured `ca` array (a client config is shared by its connections). */
const parsedRoots = new WeakMap<Buffer[], X509Certificate[]>();

function trustedRoots(ca: Buffer[] | undefined): X509Certificate[] {
  if (ca) {
    let roots = parsedRoots.get(ca);
    if (!roots) parsedRoots.set(ca, (roots = ca.map((der) => new X509Certificate(der))));
    return roots;
  }
  defaultRoots ??= rootCertificates.map((pem) => new X509Certificate(pem));
  return defaultRoots;
}

/**
 * Certificates of chains that verified, by their DER (a server sends the same chain to every client connection, and
 * OpenSSL's X.509 parsing costs ~250 µs a certificate here). Parsing is a pure function of the bytes, so a hit gives
 * the same object a fresh parse would; every check of the chain (signatures through the cache below, names, dates)
 * still runs on every handshake. Only certificates of verified chains enter, so a peer cannot fill it with junk; a
 * bounded number, the oldest evicted first.
 */
const verifiedCerts = new Map<string, X509Certificate>();
const VERIFIED_CERTS_MAX = 64;
const VERIFIED_CERT_MAX_BYTES = 8192;
/** Issuer signatures already checked: child -> issuers whose key verified its signature (identity of parsed objects). */
const verifiedLinks = new WeakMap<X509Certificate, WeakSet<X509Certificate>>();

function remember(cert: X509Certificate): void {
  const der = cert.raw;
  if (der.length > VERIFIED_CERT_MAX_BYTES) return;
  const k = der.toString('latin1');
  if (verifiedCerts.has(k)) return;
  if (verifiedCerts.size >= VERIFIED_CERTS_MAX) verifiedCerts.delete(verifiedCerts.keys().next().value!);
  verifiedCerts.set(k, cert);
}

/** Parses the peer's DER certificates, leaf first; bad_certificate if any does not parse. */
export function parseCertificates(ders: Buffer[]): X509Certificate[] {
  return ders.map((der, i) => {
    const known = der.length <= VERIFIED_CERT_MAX_BYTES ? verifiedCerts.get(der.toString('latin1')) : undefined;
    if (known) return known;
    try {
      return new X509Certificate(der);
    } catch (e) {
      throw new TlsError(TlsAlert.bad_certificate, `certificate ${i} does not parse: ${(e as Error).message}`);
    }
  });
}

function signedBy(child: X509Certificate, issuer: X509Certificate): boolean {
  if (verifiedLinks.get(child)?.has(issuer)) return true;
  let ok: boolean;
  try {
    ok = child.checkIssued(issuer) && child.verify(issuer.publicKey);
  } catch {
    ok = false;
  }
  if (ok) {
    let s = verifiedLinks.get(child);
    if (!s) verifiedLinks.set(child, (s = new WeakSet()));
    s.add(issuer);
  }
  return ok;
}

function describe(cert: X509Certificate): string {
  return cert.subject.replace(/\n/g, ', ');
}

function checkDates(cert: X509Certificate, now: Date): void {
  const from = new Date(cert.validFrom);
  const to = new Date(cert.validTo);
  if (now < from) throw new TlsError(TlsAlert.certificate_expired, `certificate "${describe(cert)}" is not valid before ${cert.validFrom}`);
  if (now > to) throw new TlsError(TlsAlert.certificate_expired, `certificate "${describe(cert)}" expired on ${cert.validTo}`);
}

/** The names a certificate is for, for error messages: its DNS SANs, else its IP SANs, else its subject. */
function certificateNames(cert: X509Certificate): string {
  const san = cert.subjectAltName ?? '';
  const dns: string[] = [];
  const ips: string[] = [];
  for (const part of san.split(', ')) {
    if (part.startsWith('DNS:')) dns.push(part.slice(4));
    else if (part.startsWith('IP Address:')) ips.push(part.slice(11));
  }
  if (dns.length) return dns.join(', ');
  if (ips.length) return ips.join(', ');
  return describe(cert);
}

export function checkServerName(leaf: X509Certificate, serverName: string): void {
  const bare = serverName.startsWith('[') && serverName.endsWith(']') ? serverName.slice(1, -1) : serverName;
  const ok = isIP(bare) ? leaf.checkIP(bare) !== undefined : leaf.checkHost(bare) !== undefined;
  if (!ok) throw new TlsError(TlsAlert.bad_certificate, `certificate for ${certificateNames(leaf)} does not match host ${serverName}`);
}

/**
 * Builds a path from the leaf through the sent chain to a trusted root and checks names and dates.
 * Certificates sent by the peer after the leaf are intermediates and must be CA certificates; a trust anchor is
 * trusted as configured. Throws unknown_ca when no anchor is found, bad_certificate for a broken chain.
 */
export function verifyCertificateChain(chain: X509Certificate[], opts: CertificateCheck): void {
  if (chain.length === 0) throw new TlsError(TlsAlert.decode_error, 'empty certificate chain');
  const roots = trustedRoots(opts.ca);
  const leaf = chain[0];
  const path: X509Certificate[] = [];
  let current = leaf;
  let anchored = false;
  for (let i = 0; ; i++) {
    path.push(current);
    if (roots.some((r) => r.raw.equals(current.raw))) {
      anchored = true;
      break;
    }
    const root = roots.find((r) => signedBy(current, r));
    if (root) {
      path.push(root);
      anchored = true;
      break;
    }
    const next = chain[i + 1];
    if (!next) break;
    if (!signedBy(current, next))
      throw new TlsError(TlsAlert.bad_certificate, `certificate "${describe(current)}" is not signed by the next certificate in the chain "${describe(next)}"`);
    if (!next.ca) throw new TlsError(TlsAlert.bad_certificate, `intermediate certificate "${describe(next)}" is not a CA`);
    if (path.length > 8) throw new TlsError(TlsAlert.bad_certificate, 'certificate chain too long');
    current = next;
  }
  if (!anchored) {
    const top = path[path.length - 1];
    throw new TlsError(TlsAlert.unknown_ca, `unknown CA: no trusted root issued "${describe(top)}" (issuer "${top.issuer.replace(/\n/g, ', ')}")`);
  }
  if (opts.now) for (const c of path) checkDates(c, opts.now);
  if (opts.serverName !== undefined) checkServerName(leaf, opts.serverName);
  for (const c of path) remember(c);
}
