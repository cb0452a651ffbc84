/**
 * (EC)DHE key shares for TLS 1.3 (RFC 8446 §4.2.8.2, §7.4): X25519 (RFC 7748) and secp256r1. secp256r1 runs on
 * node:crypto; X25519 runs on libsodium when the crypto backend is sodium (crypto/backend.ts: the optional
 * dependency sodium-native loaded and QSR_CRYPTO is not "node"; about a third of node:crypto's cost per handshake,
 * no KeyObject or key encoding in between), on node:crypto otherwise. A sodium-native that does not load changes
 * nothing but speed.
 */
import { randomBuffer } from '../../util/random.js';
import { createECDH, createPublicKey, diffieHellman, generateKeyPairSync, type ECDH, type KeyObject } from 'node:crypto';
import { activeSodium, type SodiumBinding } from '../crypto/backend.js';
import { TlsAlert, TlsError } from '../errors.js';
import { NamedGroup } from './extensions.js';

export type Group = 'x25519' | 'secp256r1';

export function groupId(group: Group): number {
  return group === 'x25519' ? NamedGroup.x25519 : NamedGroup.secp256r1;
}

export function groupById(id: number): Group | undefined {
  if (id === NamedGroup.x25519) return 'x25519';
  if (id === NamedGroup.secp256r1) return 'secp256r1';
  return undefined;
}

/** One ephemeral key pair; `publicKey` is the key_exchange bytes to send. */
export interface KeyShare {
  readonly group: Group;
  readonly publicKey: Buffer;
  /** The shared secret with the peer's key_exchange; throws illegal_parameter for an invalid peer key. */
  computeSecret(peer: Buffer): Buffer;
}

/**
 * X25519 on node:crypto. Keys cross the API as JWK (raw key bytes in base64url), not as DER SubjectPublicKeyInfo:
 * OpenSSL 3's DER encoder and decoder cost far more than the X25519 arithmetic (measured here: SPKI export ~150 µs,
 * SPKI import ~180 µs, JWK export ~2 µs, JWK import ~23 µs, on a busy machine), and a handshake needs one of each.
 */
class X25519Share implements KeyShare {
  readonly group = 'x25519' as const;
  readonly publicKey: Buffer;
  private readonly privateKey: KeyObject;

  constructor(privateKey?: KeyObject) {
    this.privateKey = privateKey ?? generateKeyPairSync('x25519').privateKey;
    // The private key's JWK carries the public value x as well.
    const jwk = this.privateKey.export({ format: 'jwk' });
    this.publicKey = Buffer.from(jwk.x!, 'base64url');
  }

  computeSecret(peer: Buffer): Buffer {
    if (peer.length !== 32) throw new TlsError(TlsAlert.illegal_parameter, `x25519 key_exchange of ${peer.length} bytes`);
    let secret: Buffer;
    try {
      const publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x: peer.toString('base64url') }, format: 'jwk' });
      secret = diffieHellman({ privateKey: this.privateKey, publicKey });
    } catch {
      // OpenSSL refuses a small-order peer key (all-zero result) itself.
      throw new TlsError(TlsAlert.illegal_parameter, 'x25519 shared secret is all zero');
    }
    // RFC 8446 §7.4.2 / RFC 7748 §6.1: an all-zero result means a small-order peer key.
    if (secret.every((b) => b === 0)) throw new TlsError(TlsAlert.illegal_parameter, 'x25519 shared secret is all zero');
    return secret;
  }
}

/** The two libsodium calls X25519 needs (crypto_scalarmult_curve25519: clamps the scalar, rejects an all-zero result). */
interface SodiumX25519 {
  crypto_scalarmult_base(q: Uint8Array, n: Uint8Array): void;
  /** Throws when the result is all zero (a small-order peer key). */
  crypto_scalarmult(q: Uint8Array, n: Uint8Array, p: Uint8Array): void;
}

/**
 * libsodium's X25519 when the crypto backend (crypto/backend.ts: QSR_CRYPTO, default sodium when sodium-native
 * loads) is sodium; null on node:crypto. Read for every new key share, like the backend for every new key.
 */
export function sodiumX25519(): SodiumX25519 | null {
  const lib = activeSodium() as (SodiumBinding & Partial<SodiumX25519>) | null;
  if (lib === null || typeof lib.crypto_scalarmult_base !== 'function' || typeof lib.crypto_scalarmult !== 'function') return null;
  return lib as SodiumBinding & SodiumX25519;
}

/** X25519 on libsodium: the private key is 32 random bytes (the scalar; libsodium clamps it, RFC 7748 §5). */
class SodiumX25519Share implements KeyShare {
  readonly group = 'x25519' as const;
  readonly publicKey = Buffer.allocUnsafe(32);
  private readonly privateKey: Buffer;

  constructor(
    private readonly lib: SodiumX25519,
    privateKey?: Buffer,
  ) {
    this.privateKey = privateKey ?? randomBuffer(32);
    lib.crypto_scalarmult_base(this.publicKey, this.privateKey);
  }

  computeSecret(peer: Buffer): Buffer {
    if (peer.length !== 32) throw new TlsError(TlsAlert.illegal_parameter, `x25519 key_exchange of ${peer.length} bytes`);
    const secret = Buffer.allocUnsafe(32);
    try {
      this.lib.crypto_scalarmult(secret, this.privateKey, peer);
    } catch {
      throw new TlsError(TlsAlert.illegal_parameter, 'x25519 shared secret is all zero');
    }
    // RFC 8446 §7.4.2 / RFC 7748 §6.1 (libsodium checks this too).
    if (secret.every((b) => b === 0)) throw new TlsError(TlsAlert.illegal_parameter, 'x25519 shared secret is all zero');
    return secret;
  }
}

class P256Share implements KeyShare {
  readonly group = 'secp256r1' as const;
  readonly publicKey: Buffer;
  private readonly ecdh: ECDH;

  constructor() {
    this.ecdh = createECDH('prime256v1');
    this.publicKey = this.ecdh.generateKeys();
  }

  computeSecret(peer: Buffer): Buffer {
    // RFC 8446 §4.2.8.2: uncompressed point only.
    if (peer.length !== 65 || peer[0] !== 4) throw new TlsError(TlsAlert.illegal_parameter, 'secp256r1 key_exchange is not an uncompressed point');
    try {
      return this.ecdh.computeSecret(peer);
    } catch {
      throw new TlsError(TlsAlert.illegal_parameter, 'secp256r1 key_exchange is not a valid curve point');
    }
  }
}

export function generateKeyShare(group: Group): KeyShare {
  if (group === 'secp256r1') return new P256Share();
  const lib = sodiumX25519();
  return lib ? new SodiumX25519Share(lib) : new X25519Share();
}

/** For tests with fixed vectors: an X25519 share from a given private key, on node:crypto. */
export function x25519ShareFromPrivateKey(privateKey: KeyObject): KeyShare {
  return new X25519Share(privateKey);
}

/** For tests with fixed vectors: an X25519 share from a raw 32-byte private key, on libsodium; null without it. */
export function sodiumX25519ShareFromRaw(privateKey: Buffer): KeyShare | null {
  const lib = sodiumX25519();
  return lib ? new SodiumX25519Share(lib, Buffer.from(privateKey)) : null;
}
