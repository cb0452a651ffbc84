/**
 * TLS 1.3 extensions used over QUIC (RFC 8446 §4.2, RFC 6066 §3 server_name, RFC 7301 ALPN,
 * RFC 9001 §8.2 quic_transport_parameters): code points, encoders and strict decoders.
 */
import { Reader, Writer } from '../../util/varint.js';
import { TlsAlert, TlsError } from '../errors.js';

export const ExtensionType = {
  server_name: 0,
  supported_groups: 10,
  signature_algorithms: 13,
  application_layer_protocol_negotiation: 16,
  pre_shared_key: 41,
  early_data: 42,
  supported_versions: 43,
  cookie: 44,
  psk_key_exchange_modes: 45,
  key_share: 51,
  quic_transport_parameters: 0x39,
} as const;

export const TLS13_VERSION = 0x0304;

export const NamedGroup = { secp256r1: 0x0017, x25519: 0x001d } as const;

export const SignatureScheme = {
  rsa_pkcs1_sha256: 0x0401,
  ecdsa_secp256r1_sha256: 0x0403,
  ecdsa_secp384r1_sha384: 0x0503,
  rsa_pss_rsae_sha256: 0x0804,
  rsa_pss_rsae_sha384: 0x0805,
  rsa_pss_rsae_sha512: 0x0806,
  ed25519: 0x0807,
} as const;

export interface Extension {
  type: number;
  data: Buffer;
}

export interface KeyShareEntry {
  group: number;
  keyExchange: Buffer;
}

/** Reads an Extension list<0..2^16-1>; duplicate types are illegal (RFC 8446 §4.2). */
export function readExtensions(r: Reader): Map<number, Buffer> {
  const block = r.bytes(r.u16());
  const er = new Reader(block);
  const out = new Map<number, Buffer>();
  while (!er.atEnd()) {
    const type = er.u16();
    const data = er.bytes(er.u16());
    if (out.has(type)) throw new TlsError(TlsAlert.illegal_parameter, `duplicate extension ${type}`);
    out.set(type, data);
  }
  return out;
}

export function writeExtensions(w: Writer, exts: Extension[]): void {
  w.vec(2, (b) => {
    for (const e of exts) b.u16(e.type).vec(2, (x) => x.bytes(e.data));
  });
}

function build(fn: (w: Writer) => void): Buffer {
  const w = new Writer(64);
  fn(w);
  return Buffer.from(w.finish());
}

/** Requires that a decoder consumed its whole extension body. */
function done(r: Reader, what: string): void {
  if (!r.atEnd()) throw new TlsError(TlsAlert.decode_error, `trailing bytes in ${what} extension`);
}

function nonEmpty(n: number, what: string): void {
  if (n === 0) throw new TlsError(TlsAlert.decode_error, `empty ${what} list`);
}

// server_name ----------------------------------------------------------------------------------------------------

export function encodeServerName(host: string): Buffer {
  return build((w) => w.vec(2, (l) => l.u8(0).vec(2, (h) => h.bytes(Buffer.from(host, 'ascii')))));
}

/** Returns the host_name entry, or null when the list carries none. */
export function decodeServerName(data: Buffer): string | null {
  const r = new Reader(data);
  const list = new Reader(r.bytes(r.u16()));
  done(r, 'server_name');
  nonEmpty(list.remaining, 'server_name');
  let host: string | null = null;
  while (!list.atEnd()) {
    const type = list.u8();
    const name = list.bytes(list.u16());
    if (type === 0) {
      if (host !== null) throw new TlsError(TlsAlert.illegal_parameter, 'more than one host_name in server_name');
      if (name.length === 0) throw new TlsError(TlsAlert.decode_error, 'empty host_name');
      host = name.toString('ascii');
    }
  }
  return host;
}

// u16 lists: supported_groups, signature_algorithms --------------------------------------------------------------

export function encodeU16List(values: number[]): Buffer {
  return build((w) => w.vec(2, (l) => values.forEach((v) => l.u16(v))));
}

export function decodeU16List(data: Buffer, what: string): number[] {
  const r = new Reader(data);
  const len = r.u16();
  if (len % 2 !== 0) throw new TlsError(TlsAlert.decode_error, `odd length in ${what}`);
  const lr = new Reader(r.bytes(len));
  done(r, what);
  nonEmpty(len, what);
  const out: number[] = [];
  while (!lr.atEnd()) out.push(lr.u16());
  return out;
}

// ALPN ----------------------------------------------------------------------------------------------------------

export function encodeAlpn(protocols: string[]): Buffer {
  return build((w) =>
    w.vec(2, (l) => {
      for (const p of protocols) {
        const b = Buffer.from(p, 'utf8');
        if (b.length === 0 || b.length > 255) throw new RangeError(`bad ALPN protocol name ${JSON.stringify(p)}`);
        l.u8(b.length).bytes(b);
      }
    }),
  );
}

export function decodeAlpn(data: Buffer): string[] {
  const r = new Reader(data);
  const lr = new Reader(r.bytes(r.u16()));
  done(r, 'ALPN');
  nonEmpty(lr.remaining, 'ALPN');
  const out: string[] = [];
  while (!lr.atEnd()) {
    const name = lr.bytes(lr.u8());
    if (name.length === 0) throw new TlsError(TlsAlert.decode_error, 'empty ALPN protocol name');
    out.push(name.toString('utf8'));
  }
  return out;
}

// supported_versions ----------------------------------------------------------------------------------------------

export function encodeSupportedVersionsClient(versions: number[]): Buffer {
  return build((w) => w.vec(1, (l) => versions.forEach((v) => l.u16(v))));
}

export function decodeSupportedVersionsClient(data: Buffer): number[] {
  const r = new Reader(data);
  const len = r.u8();
  if (len % 2 !== 0 || len === 0) throw new TlsError(TlsAlert.decode_error, 'bad supported_versions length');
  const lr = new Reader(r.bytes(len));
  done(r, 'supported_versions');
  const out: number[] = [];
  while (!lr.atEnd()) out.push(lr.u16());
  return out;
}

export function encodeU16(v: number): Buffer {
  return Buffer.from([v >>> 8, v & 0xff]);
}

/** Server-side supported_versions and the HelloRetryRequest key_share carry one u16. */
export function decodeU16(data: Buffer, what: string): number {
  const r = new Reader(data);
  const v = r.u16();
  done(r, what);
  return v;
}

// key_share -----------------------------------------------------------------------------------------------------

export function encodeKeyShareClient(entries: KeyShareEntry[]): Buffer {
  return build((w) =>
    w.vec(2, (l) => {
      for (const e of entries) l.u16(e.group).vec(2, (k) => k.bytes(e.keyExchange));
    }),
  );
}

export function decodeKeyShareClient(data: Buffer): KeyShareEntry[] {
  const r = new Reader(data);
  const lr = new Reader(r.bytes(r.u16()));
  done(r, 'key_share');
  const out: KeyShareEntry[] = [];
  while (!lr.atEnd()) {
    const group = lr.u16();
    const keyExchange = lr.bytes(lr.u16());
    if (keyExchange.length === 0) throw new TlsError(TlsAlert.decode_error, 'empty key_exchange');
    if (out.some((e) => e.group === group)) throw new TlsError(TlsAlert.illegal_parameter, `duplicate key_share for group ${group}`);
    out.push({ group, keyExchange });
  }
  return out;
}

export function encodeKeyShareServer(entry: KeyShareEntry): Buffer {
  return build((w) => w.u16(entry.group).vec(2, (k) => k.bytes(entry.keyExchange)));
}

export function decodeKeyShareServer(data: Buffer): KeyShareEntry {
  const r = new Reader(data);
  const group = r.u16();
  const keyExchange = r.bytes(r.u16());
  done(r, 'key_share');
  if (keyExchange.length === 0) throw new TlsError(TlsAlert.decode_error, 'empty key_exchange');
  return { group, keyExchange };
}

// cookie ----------------------------------------------------------------------------------------------------------

export function decodeCookie(data: Buffer): Buffer {
  const r = new Reader(data);
  const cookie = r.bytes(r.u16());
  done(r, 'cookie');
  if (cookie.length === 0) throw new TlsError(TlsAlert.decode_error, 'empty cookie');
  return cookie;
}

export function encodeCookie(cookie: Buffer): Buffer {
  return build((w) => w.vec(2, (c) => c.bytes(cookie)));
}
