/**
 * TLS 1.3 key schedule (RFC 8446 §7.1) without PSK, Finished MACs (§4.4.4) and the handshake transcript
 * (§4.4.1, including the HelloRetryRequest message_hash substitution).
 */
import { createHash, timingSafeEqual, type Hash } from 'node:crypto';
import { hashLength, hkdfExpandLabel, hkdfExtract, hmac, type HashName } from '../crypto/hkdf.js';

/** Derive-Secret(Secret, Label, Messages) where the caller already hashed Messages. */
export function deriveSecret(hash: HashName, secret: Buffer, label: string, transcriptHash: Buffer): Buffer {
  return hkdfExpandLabel(hash, secret, label, transcriptHash, hashLength(hash));
}

/**
 * The values of the schedule that depend on nothing but the hash (no PSK, so no secret goes into them): Hash(""),
 * the Early Secret HKDF-Extract(0, 0...0) and Derive-Secret(Early Secret, "derived", ""). Public constants, computed
 * once per hash instead of once per handshake.
 */
interface Constants {
  emptyHash: Buffer;
  early: Buffer;
  derivedFromEarly: Buffer;
}
const constants = new Map<HashName, Constants>();

function constantsFor(hash: HashName): Constants {
  let c = constants.get(hash);
  if (!c) {
    const empty = createHash(hash).digest();
    const early = hkdfExtract(hash, Buffer.alloc(0), Buffer.alloc(hashLength(hash)));
    c = { emptyHash: empty, early, derivedFromEarly: deriveSecret(hash, early, 'derived', empty) };
    constants.set(hash, c);
  }
  return c;
}

/** Hash of the empty string (a copy: callers may keep or change it). */
export function emptyHash(hash: HashName): Buffer {
  return Buffer.from(constantsFor(hash).emptyHash);
}

/** Early Secret with no PSK: HKDF-Extract(0, 0...0). */
export function earlySecret(hash: HashName): Buffer {
  return Buffer.from(constantsFor(hash).early);
}

/** Handshake Secret = HKDF-Extract(Derive-Secret(early, "derived", ""), (EC)DHE). */
export function handshakeSecret(hash: HashName, early: Buffer, sharedSecret: Buffer): Buffer {
  const c = constantsFor(hash);
  const derived = early.equals(c.early) ? c.derivedFromEarly : deriveSecret(hash, early, 'derived', c.emptyHash);
  return hkdfExtract(hash, derived, sharedSecret);
}

/** Master Secret = HKDF-Extract(Derive-Secret(handshake, "derived", ""), 0). */
export function masterSecret(hash: HashName, handshake: Buffer): Buffer {
  return hkdfExtract(hash, deriveSecret(hash, handshake, 'derived', constantsFor(hash).emptyHash), Buffer.alloc(hashLength(hash)));
}

/** finished_key = HKDF-Expand-Label(BaseKey, "finished", "", Hash.length). */
export function finishedKey(hash: HashName, baseKey: Buffer): Buffer {
  return hkdfExpandLabel(hash, baseKey, 'finished', Buffer.alloc(0), hashLength(hash));
}

/** verify_data = HMAC(finished_key, transcript hash). */
export function finishedVerifyData(hash: HashName, baseKey: Buffer, transcriptHash: Buffer): Buffer {
  return hmac(hash, finishedKey(hash, baseKey), transcriptHash);
}

/** Constant-time comparison of two MACs of possibly different lengths. */
export function macEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export interface HandshakeSecrets {
  handshakeSecret: Buffer;
  clientHandshakeTrafficSecret: Buffer;
  serverHandshakeTrafficSecret: Buffer;
}

export interface ApplicationSecrets {
  masterSecret: Buffer;
  clientApplicationTrafficSecret: Buffer;
  serverApplicationTrafficSecret: Buffer;
  exporterMasterSecret: Buffer;
}

/** The handshake traffic secrets from the (EC)DHE shared secret and Transcript-Hash(ClientHello..ServerHello). */
export function deriveHandshakeSecrets(hash: HashName, sharedSecret: Buffer, helloHash: Buffer): HandshakeSecrets {
  const hs = hkdfExtract(hash, constantsFor(hash).derivedFromEarly, sharedSecret);
  return {
    handshakeSecret: hs,
    clientHandshakeTrafficSecret: deriveSecret(hash, hs, 'c hs traffic', helloHash),
    serverHandshakeTrafficSecret: deriveSecret(hash, hs, 's hs traffic', helloHash),
  };
}

/** The application traffic secrets from the handshake secret and Transcript-Hash(ClientHello..server Finished). */
export function deriveApplicationSecrets(hash: HashName, handshake: Buffer, serverFinishedHash: Buffer): ApplicationSecrets {
  const ms = masterSecret(hash, handshake);
  let exporter: Buffer | null = null;
  return {
    masterSecret: ms,
    clientApplicationTrafficSecret: deriveSecret(hash, ms, 'c ap traffic', serverFinishedHash),
    serverApplicationTrafficSecret: deriveSecret(hash, ms, 's ap traffic', serverFinishedHash),
    // Nothing in QUIC itself uses the exporter secret (only a key log shows it): derived when asked for.
    get exporterMasterSecret(): Buffer {
      return (exporter ??= deriveSecret(hash, ms, 'exp master', serverFinishedHash));
    },
  };
}

/**
 * The handshake transcript: the raw handshake messages (with their 4-byte headers) in order. The hash is chosen
 * late because the client learns the cipher suite only from ServerHello, so the messages are kept; from the first
 * hash() on, a running hash per hash function is kept as well and hash() digests a copy of it, so no message is
 * hashed twice.
 */
export class Transcript {
  private readonly messages: Buffer[] = [];
  private running: { name: HashName; hash: Hash } | null = null;

  add(message: Buffer): void {
    this.messages.push(message);
    this.running?.hash.update(message);
  }

  hash(hash: HashName): Buffer {
    let r = this.running;
    if (r === null || r.name !== hash) {
      const h = createHash(hash);
      for (const m of this.messages) h.update(m);
      this.running = r = { name: hash, hash: h };
    }
    return r.hash.copy().digest();
  }

  /** Forgets every message and hash (the handshake is over). */
  clear(): void {
    this.messages.length = 0;
    this.running = null;
  }

  /**
   * After a HelloRetryRequest, ClientHello1 is replaced by message_hash: type 254, length Hash.length,
   * Hash(ClientHello1) (RFC 8446 §4.4.1). Call before adding the HelloRetryRequest.
   */
  replaceWithMessageHash(hash: HashName): void {
    const digest = this.hash(hash);
    const header = Buffer.from([254, 0, 0, digest.length]);
    this.messages.length = 0;
    this.running = null;
    this.add(Buffer.concat([header, digest]));
  }
}
