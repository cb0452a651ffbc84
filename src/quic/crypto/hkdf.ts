/**
 * HKDF (RFC 5869) and TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1): the HMAC underneath is node:crypto's, or, for
 * SHA-256 while the sodium backend is active (backend.ts), two one-shot libsodium SHA-256 calls (RFC 2104:
 * H((K ^ opad) || H((K ^ ipad) || m))). A server derives about 35 secrets and keys per handshake; a node:crypto Hmac
 * object costs ~4-6 µs to create and digest, the two libsodium calls about half that. SHA-384 (TLS_AES_256_GCM_SHA384)
 * always runs on node:crypto: libsodium has no SHA-384.
 *
 * The HMAC input is laid out in one module scratch buffer (key pad, then the message: HKDF's T(i-1) || info || i,
 * with HKDF-Expand-Label's info written straight into it), so an expansion builds no info buffer of its own.
 * Secrets and keys are returned in buffers of their own (util/buffers.ts: most live as long as their connection);
 * `hkdfExpandLabelInto` writes into the caller's buffer instead, for keys that are copied into their key objects.
 */
import { createHmac, createHash } from 'node:crypto';
import { ownBuffer } from '../../util/buffers.js';
import { activeSodium, type BackendName, type SodiumBinding } from './backend.js';

/** The libsodium call HMAC-SHA256 needs (SHA-256, FIPS 180-4, one shot). */
interface SodiumSha256 {
  crypto_hash_sha256(out: Uint8Array, input: Uint8Array): void;
}

export type HashName = 'sha256' | 'sha384';

export function hashLength(hash: HashName): number {
  return hash === 'sha256' ? 32 : 48;
}

const BLOCK = 64; // SHA-256 block size; keys up to this length are padded, longer ones hashed first (RFC 2104 §2)
const IPAD = 0x36;
const OPAD = 0x5c;

/** The inner HMAC input: K ^ ipad, then the message at BLOCK. Grown on demand. */
let inner = Buffer.alloc(BLOCK + 256);
/** The outer HMAC input: K ^ opad, then the inner digest. */
const outer = Buffer.alloc(BLOCK + 32);
const outerDigest = outer.subarray(BLOCK);
/** One SHA-256 digest for results that are copied out (lengths other than 32, offsets, multi-block expansions). */
const digestScratch = Buffer.alloc(32);
let innerViews = new Map<number, Buffer>();

/** Room for a message of `len` bytes after the key pad. */
function ensureInner(len: number): void {
  if (BLOCK + len <= inner.length) return;
  inner = Buffer.alloc(BLOCK + len + 64);
  innerViews = new Map();
}

/** inner[0, BLOCK + msgLen) as a view, cached by length (a handful of lengths recur). */
function innerView(msgLen: number): Buffer {
  let v = innerViews.get(msgLen);
  if (v === undefined) {
    v = inner.subarray(0, BLOCK + msgLen);
    if (innerViews.size < 64) innerViews.set(msgLen, v);
  }
  return v;
}

/**
 * HMAC(key, inner[BLOCK, BLOCK + msgLen)) into out[0, hashLength): libsodium SHA-256 when `s` is given (sha256
 * only), else node:crypto. `out` must be exactly hashLength bytes long for the sodium path.
 */
function hmacScratch(hash: HashName, s: SodiumSha256 | null, key: Buffer, msgLen: number, out: Buffer): void {
  if (s === null || hash !== 'sha256') {
    createHmac(hash, key).update(inner.subarray(BLOCK, BLOCK + msgLen)).digest().copy(out, 0);
    return;
  }
  let k = key;
  if (k.length > BLOCK) {
    k = Buffer.alloc(32);
    s.crypto_hash_sha256(k, key);
  }
  const kl = k.length;
  for (let i = 0; i < kl; i++) {
    const b = k[i]!;
    inner[i] = b ^ IPAD;
    outer[i] = b ^ OPAD;
  }
  inner.fill(IPAD, kl, BLOCK);
  outer.fill(OPAD, kl, BLOCK);
  s.crypto_hash_sha256(outerDigest, innerView(msgLen));
  s.crypto_hash_sha256(out, outer);
}

/**
 * libsodium's SHA-256 for HMAC-SHA256 when the crypto backend is sodium (read for every derivation, like the backend
 * for every new key); null for node:crypto, for SHA-384, and for a binding without it.
 */
function sodiumFor(hash: HashName): SodiumSha256 | null {
  if (hash !== 'sha256') return null;
  const lib = activeSodium() as (SodiumBinding & Partial<SodiumSha256>) | null;
  return lib !== null && typeof lib.crypto_hash_sha256 === 'function' ? (lib as SodiumBinding & SodiumSha256) : null;
}

/** The library that computes HMACs with `hash` now: sodium only for SHA-256 with the sodium backend active. */
export function hmacBackend(hash: HashName): BackendName {
  return sodiumFor(hash) !== null ? 'sodium' : 'node';
}

/** HMAC(key, data) (RFC 2104) on the active backend. */
export function hmac(hash: HashName, key: Buffer, data: Buffer): Buffer {
  const s = sodiumFor(hash);
  if (s === null) return createHmac(hash, key).update(data).digest();
  ensureInner(data.length);
  data.copy(inner, BLOCK);
  const out = Buffer.allocUnsafe(32);
  hmacScratch(hash, s, key, data.length, out);
  return out;
}

/** HKDF-Extract(salt, IKM) = HMAC(salt, IKM); an empty salt is HashLen zeros (RFC 5869 §2.2). */
export function hkdfExtract(hash: HashName, salt: Buffer, ikm: Buffer): Buffer {
  const s = sodiumFor(hash);
  const key = salt.length ? salt : Buffer.alloc(hashLength(hash));
  if (s === null) return ownCopyOf(createHmac(hash, key).update(ikm).digest());
  ensureInner(ikm.length);
  ikm.copy(inner, BLOCK);
  const out = ownBuffer(32);
  hmacScratch(hash, s, key, ikm.length, out);
  return out;
}

function ownCopyOf(d: Buffer): Buffer {
  const o = ownBuffer(d.length);
  d.copy(o, 0);
  return o;
}

/**
 * HKDF-Expand (RFC 5869 §2.3) over the info already at inner[BLOCK, BLOCK + infoLen), into out[offset, offset +
 * length): T(1) = HMAC(PRK, info || 0x01), T(i) = HMAC(PRK, T(i-1) || info || i). The caller made room for
 * HashLen + infoLen + 1 message bytes.
 */
function expandScratch(hash: HashName, prk: Buffer, infoLen: number, length: number, out: Buffer, offset: number): void {
  const hl = hashLength(hash);
  if (!Number.isInteger(length) || length < 0 || length > 255 * hl) throw new RangeError(`HKDF-Expand: length ${length} is not an integer from 0 to 255 * HashLen`);
  const s = sodiumFor(hash);
  if (length === 0) return;
  inner[BLOCK + infoLen] = 1;
  if (length === hl && offset === 0 && out.length === hl) {
    hmacScratch(hash, s, prk, infoLen + 1, out); // the common case: one block, straight into the result
    return;
  }
  const t = s !== null ? digestScratch : Buffer.allocUnsafe(hl);
  hmacScratch(hash, s, prk, infoLen + 1, t);
  let filled = t.copy(out, offset, 0, Math.min(hl, length));
  if (filled === length) return;
  // More than one block (never needed by TLS 1.3 or QUIC): T(i-1) goes in front of the info from now on.
  const info = Buffer.from(inner.subarray(BLOCK, BLOCK + infoLen));
  info.copy(inner, BLOCK + hl);
  for (let i = 2; filled < length; i++) {
    t.copy(inner, BLOCK);
    inner[BLOCK + hl + infoLen] = i;
    hmacScratch(hash, s, prk, hl + infoLen + 1, t);
    filled += t.copy(out, offset + filled, 0, Math.min(hl, length - filled));
  }
}

export function hkdfExpand(hash: HashName, prk: Buffer, info: Buffer, length: number): Buffer {
  ensureInner(hashLength(hash) + info.length + 1);
  info.copy(inner, BLOCK);
  const out = ownBuffer(length); // secrets and keys: most live as long as their connection
  expandScratch(hash, prk, info.length, length, out, 0);
  return out;
}

/** "tls13 " + label as bytes, cached for the labels of the stack (a fixed, small set). */
const labels = new Map<string, Buffer>();
function labelBytes(label: string): Buffer {
  let b = labels.get(label);
  if (b === undefined) {
    b = Buffer.from('tls13 ' + label, 'ascii');
    if (b.length > 255) throw new RangeError('HKDF-Expand-Label: label too long');
    if (labels.size < 64) labels.set(label, b);
  }
  return b;
}

/** Writes the HkdfLabel structure (RFC 8446 §7.1) at inner[BLOCK] as the expansion's info; returns its length. */
function writeLabel(hash: HashName, label: string, context: Buffer, length: number): number {
  const full = labelBytes(label);
  if (context.length > 255) throw new RangeError('HKDF-Expand-Label: context too long');
  const infoLen = 2 + 1 + full.length + 1 + context.length;
  ensureInner(hashLength(hash) + infoLen + 1);
  let p = BLOCK;
  inner[p++] = length >>> 8;
  inner[p++] = length & 0xff;
  inner[p++] = full.length;
  full.copy(inner, p);
  p += full.length;
  inner[p++] = context.length;
  context.copy(inner, p);
  return infoLen;
}

/** HKDF-Expand-Label(Secret, Label, Context, Length) with the "tls13 " prefix. */
export function hkdfExpandLabel(hash: HashName, secret: Buffer, label: string, context: Buffer, length: number): Buffer {
  const infoLen = writeLabel(hash, label, context, length);
  const out = ownBuffer(length);
  expandScratch(hash, secret, infoLen, length, out, 0);
  return out;
}

/** hkdfExpandLabel into out[offset, offset + length) (no buffer of its own: for keys copied into key objects). */
export function hkdfExpandLabelInto(hash: HashName, secret: Buffer, label: string, context: Buffer, length: number, out: Buffer, offset: number): void {
  if (offset < 0 || offset + length > out.length) throw new RangeError('hkdfExpandLabelInto: out of range');
  const infoLen = writeLabel(hash, label, context, length);
  expandScratch(hash, secret, infoLen, length, out, offset);
}

export function hash(hashName: HashName, data: Buffer): Buffer {
  return createHash(hashName).update(data).digest();
}
