/**
 * TLS 1.3 handshake messages as QUIC carries them in CRYPTO frames (RFC 8446 §4, RFC 9001 §4): framing and
 * reassembly, ClientHello/ServerHello, EncryptedExtensions, Certificate, CertificateVerify, Finished.
 */
import { createHash } from 'node:crypto';
import { Reader, Writer } from '../../util/varint.js';
import { TlsAlert, TlsError } from '../errors.js';
import { readExtensions, writeExtensions, type Extension } from './extensions.js';

export const HandshakeType = {
  client_hello: 1,
  server_hello: 2,
  new_session_ticket: 4,
  end_of_early_data: 5,
  encrypted_extensions: 8,
  certificate: 11,
  certificate_request: 13,
  certificate_verify: 15,
  finished: 20,
  key_update: 24,
  message_hash: 254,
} as const;

/** ServerHello.random of a HelloRetryRequest: SHA-256("HelloRetryRequest") (RFC 8446 §4.1.3). */
export const HRR_RANDOM: Buffer = createHash('sha256').update('HelloRetryRequest').digest();

export const LEGACY_VERSION = 0x0303;

/** Largest handshake message we accept (a certificate chain is the big one). */
export const MAX_MESSAGE_SIZE = 1 << 17;

export interface HandshakeMessage {
  type: number;
  body: Buffer;
  /** Header + body, as it enters the transcript. */
  raw: Buffer;
}

/** Prefixes a body with msg_type and a 24-bit length. */
export function frameMessage(type: number, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(4 + body.length);
  out[0] = type;
  out.writeUIntBE(body.length, 1, 3);
  body.copy(out, 4);
  return out;
}

/** Reassembles handshake messages from in-order CRYPTO bytes split or coalesced arbitrarily. */
export class MessageBuffer {
  private chunks: Buffer[] = [];
  private length = 0;

  get buffered(): number {
    return this.length;
  }

  push(data: Buffer): void {
    if (data.length === 0) return;
    this.chunks.push(data);
    this.length += data.length;
  }

  /** The next complete message, or null if more bytes are needed. */
  next(): HandshakeMessage | null {
    if (this.length < 4) return null;
    // Join a split header first (cheap), and the rest only once the whole message is here, so feeding a large
    // message in tiny pieces does not copy it over and over.
    if (this.chunks[0].length < 4) this.chunks = [Buffer.concat(this.chunks, this.length)];
    const bodyLen = this.chunks[0].readUIntBE(1, 3);
    if (bodyLen > MAX_MESSAGE_SIZE) throw new TlsError(TlsAlert.decode_error, `handshake message of ${bodyLen} bytes is too large`);
    if (this.length < 4 + bodyLen) return null;
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks, this.length)];
    const buf = this.chunks[0];
    const raw = buf.subarray(0, 4 + bodyLen);
    const rest = buf.subarray(4 + bodyLen);
    this.chunks = rest.length ? [rest] : [];
    this.length = rest.length;
    return { type: raw[0], body: raw.subarray(4), raw };
  }
}

function done(r: Reader, what: string): void {
  if (!r.atEnd()) throw new TlsError(TlsAlert.decode_error, `trailing bytes in ${what}`);
}

function build(fn: (w: Writer) => void): Buffer {
  const w = new Writer(512);
  fn(w);
  return Buffer.from(w.finish());
}

// ClientHello (§4.1.2) ---------------------------------------------------------------------------------------------

export interface ClientHello {
  random: Buffer;
  sessionId: Buffer;
  cipherSuites: number[];
  compressionMethods: Buffer;
  extensions: Map<number, Buffer>;
}

export function encodeClientHello(random: Buffer, cipherSuites: number[], extensions: Extension[]): Buffer {
  return frameMessage(
    HandshakeType.client_hello,
    build((w) => {
      w.u16(LEGACY_VERSION).bytes(random);
      w.u8(0); // empty legacy_session_id (RFC 9001 §8.4)
      w.vec(2, (l) => cipherSuites.forEach((s) => l.u16(s)));
      w.u8(1).u8(0); // legacy_compression_methods = [null]
      writeExtensions(w, extensions);
    }),
  );
}

export function decodeClientHello(body: Buffer): ClientHello {
  const r = new Reader(body);
  const version = r.u16();
  if (version !== LEGACY_VERSION) throw new TlsError(TlsAlert.protocol_version, `ClientHello legacy_version 0x${version.toString(16)}`);
  const random = r.bytes(32);
  const sessionId = r.bytes(r.u8());
  if (sessionId.length > 32) throw new TlsError(TlsAlert.decode_error, 'legacy_session_id longer than 32 bytes');
  const suitesLen = r.u16();
  if (suitesLen % 2 !== 0 || suitesLen === 0) throw new TlsError(TlsAlert.decode_error, 'bad cipher_suites length');
  const sr = new Reader(r.bytes(suitesLen));
  const cipherSuites: number[] = [];
  while (!sr.atEnd()) cipherSuites.push(sr.u16());
  const compressionMethods = r.bytes(r.u8());
  const extensions = r.atEnd() ? new Map<number, Buffer>() : readExtensions(r);
  done(r, 'ClientHello');
  return { random, sessionId, cipherSuites, compressionMethods, extensions };
}

// ServerHello / HelloRetryRequest (§4.1.3) ----------------------------------------------------------------------------

export interface ServerHello {
  random: Buffer;
  sessionIdEcho: Buffer;
  cipherSuite: number;
  compressionMethod: number;
  extensions: Map<number, Buffer>;
  isHelloRetryRequest: boolean;
}

export function encodeServerHello(random: Buffer, sessionIdEcho: Buffer, cipherSuite: number, extensions: Extension[]): Buffer {
  return frameMessage(
    HandshakeType.server_hello,
    build((w) => {
      w.u16(LEGACY_VERSION).bytes(random);
      w.vec(1, (s) => s.bytes(sessionIdEcho));
      w.u16(cipherSuite).u8(0);
      writeExtensions(w, extensions);
    }),
  );
}

export function decodeServerHello(body: Buffer): ServerHello {
  const r = new Reader(body);
  const version = r.u16();
  if (version !== LEGACY_VERSION) throw new TlsError(TlsAlert.protocol_version, `ServerHello legacy_version 0x${version.toString(16)}`);
  const random = r.bytes(32);
  const sessionIdEcho = r.bytes(r.u8());
  const cipherSuite = r.u16();
  const compressionMethod = r.u8();
  const extensions = readExtensions(r);
  done(r, 'ServerHello');
  return { random, sessionIdEcho, cipherSuite, compressionMethod, extensions, isHelloRetryRequest: random.equals(HRR_RANDOM) };
}

// EncryptedExtensions (§4.3.1) ---------------------------------------------------------------------------------------

export function encodeEncryptedExtensions(extensions: Extension[]): Buffer {
  return frameMessage(
    HandshakeType.encrypted_extensions,
    build((w) => writeExtensions(w, extensions)),
  );
}

export function decodeEncryptedExtensions(body: Buffer): Map<number, Buffer> {
  const r = new Reader(body);
  const exts = readExtensions(r);
  done(r, 'EncryptedExtensions');
  return exts;
}

// Certificate (§4.4.2) -----------------------------------------------------------------------------------------------

export function encodeCertificate(chain: Buffer[]): Buffer {
  return frameMessage(
    HandshakeType.certificate,
    build((w) => {
      w.u8(0); // empty certificate_request_context
      w.vec(3, (l) => {
        for (const der of chain) l.vec(3, (c) => c.bytes(der)).u16(0);
      });
    }),
  );
}

export interface CertificateMessage {
  context: Buffer;
  certificates: Buffer[];
}

export function decodeCertificate(body: Buffer): CertificateMessage {
  const r = new Reader(body);
  const context = r.bytes(r.u8());
  const lr = new Reader(r.bytes(r.u24()));
  done(r, 'Certificate');
  const certificates: Buffer[] = [];
  while (!lr.atEnd()) {
    const der = lr.bytes(lr.u24());
    if (der.length === 0) throw new TlsError(TlsAlert.decode_error, 'empty cert_data');
    // Per-certificate extensions (OCSP, SCT) are read and ignored: we never ask for them.
    readExtensions(lr);
    certificates.push(der);
  }
  return { context, certificates };
}

// CertificateVerify (§4.4.3) -----------------------------------------------------------------------------------------

export function encodeCertificateVerify(scheme: number, signature: Buffer): Buffer {
  return frameMessage(
    HandshakeType.certificate_verify,
    build((w) => w.u16(scheme).vec(2, (s) => s.bytes(signature))),
  );
}

export function decodeCertificateVerify(body: Buffer): { scheme: number; signature: Buffer } {
  const r = new Reader(body);
  const scheme = r.u16();
  const signature = r.bytes(r.u16());
  done(r, 'CertificateVerify');
  return { scheme, signature };
}

// Finished (§4.4.4) --------------------------------------------------------------------------------------------------

export function encodeFinished(verifyData: Buffer): Buffer {
  return frameMessage(HandshakeType.finished, verifyData);
}
