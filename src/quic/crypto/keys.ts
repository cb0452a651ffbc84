/**
 * QUIC packet protection keys: AEAD payload protection (RFC 9001 §5.3), header protection masks (§5.4.3 AES,
 * §5.4.4 ChaCha20), key derivation from a traffic secret (§5.1) and key update (§6).
 *
 * Hot path notes: AES-ECB header protection keeps one cipher per key and feeds it single 16-byte blocks with update()
 * (never final()), so OpenSSL sets the key schedule up once. node:crypto has no way to re-key an AEAD context with a
 * new nonce, so seal/open create one cipher per packet; the per-packet nonce is built in a reused scratch buffer
 * (createCipheriv copies it).
 */
import {
  createCipheriv,
  createDecipheriv,
  type Cipher,
  type CipherGCM,
  type DecipherGCM,
} from 'node:crypto';
import { hashLength, hkdfExpandLabel } from './hkdf.js';
import type { CipherSuite } from './suites.js';
import { ownBuffer, ownCopy } from '../../util/buffers.js';

const EMPTY = Buffer.alloc(0);
const CHACHA_ZEROS = Buffer.alloc(5);
export const AEAD_TAG_LENGTH = 16;
export const AEAD_IV_LENGTH = 12;
/** Header protection samples are 16 bytes for every v1 suite (RFC 9001 §5.4.2). */
export const HP_SAMPLE_LENGTH = 16;

const TAG_OPTIONS = { authTagLength: AEAD_TAG_LENGTH };
type AeadName = CipherSuite['aead'];

// node:crypto needs no plaintextLength for chacha20-poly1305 AAD (only CCM/OCB do), but @types/node declares it
// mandatory; both ciphers are handled through the GCM interface, which has the same methods.
function aeadCipher(alg: AeadName, key: Buffer, nonce: Buffer): CipherGCM {
  return alg === 'chacha20-poly1305'
    ? (createCipheriv(alg, key, nonce, TAG_OPTIONS) as unknown as CipherGCM)
    : createCipheriv(alg, key, nonce, TAG_OPTIONS);
}

function aeadDecipher(alg: AeadName, key: Buffer, nonce: Buffer): DecipherGCM {
  return alg === 'chacha20-poly1305'
    ? (createDecipheriv(alg, key, nonce, TAG_OPTIONS) as unknown as DecipherGCM)
    : createDecipheriv(alg, key, nonce, TAG_OPTIONS);
}

/** Computes header protection masks for one header protection key (RFC 9001 §5.4). */
export class HeaderProtector {
  private readonly ecb: Cipher | null;
  private readonly key: Buffer;

  constructor(
    readonly suite: CipherSuite,
    hpKey: Buffer,
  ) {
    if (hpKey.length !== suite.keyLength) throw new RangeError(`header protection key must be ${suite.keyLength} bytes`);
    this.key = ownCopy(hpKey);
    if (suite.hp === 'chacha20') {
      this.ecb = null;
    } else {
      this.ecb = createCipheriv(suite.hp, this.key, null);
      this.ecb.setAutoPadding(false);
    }
  }

  /**
   * Returns at least 5 bytes of mask for a 16-byte sample. The result may be a buffer owned by node:crypto or a
   * fresh one; callers must use it before the next call and must not keep it.
   */
  mask(sample: Buffer): Buffer {
    if (sample.length < HP_SAMPLE_LENGTH) throw new RangeError('header protection sample must be 16 bytes');
    const block = sample.length === HP_SAMPLE_LENGTH ? sample : sample.subarray(0, HP_SAMPLE_LENGTH);
    if (this.ecb !== null) return this.ecb.update(block);
    // ChaCha20 (§5.4.4): counter = sample[0..4] little-endian, nonce = sample[4..16]; OpenSSL's 16-byte "iv" for
    // chacha20 is exactly counter || nonce in that layout. The mask is the keystream over five zero bytes.
    return createCipheriv('chacha20', this.key, block).update(CHACHA_ZEROS);
  }

  /** Masks for n samples laid out back to back (16 bytes each); the mask of sample i starts at 16 * i. */
  masks(samples: Buffer): Buffer {
    if (samples.length % HP_SAMPLE_LENGTH !== 0) throw new RangeError('samples must be whole 16-byte blocks');
    // ECB without padding turns every complete block into its encryption: exactly one mask per sample.
    if (this.ecb !== null) return this.ecb.update(samples);
    const out = Buffer.alloc(samples.length);
    for (let i = 0; i < samples.length; i += HP_SAMPLE_LENGTH) this.mask(samples.subarray(i, i + HP_SAMPLE_LENGTH)).copy(out, i, 0, 5);
    return out;
  }
}

/** AEAD payload protection for one key/iv pair (RFC 9001 §5.3). Counts packets for the AEAD limits (§6.6). */
export class PacketAead {
  private readonly key: Buffer;
  private readonly iv: Buffer;
  private readonly nonce: Buffer;
  private sealed = 0;
  private failed = 0;

  constructor(
    readonly suite: CipherSuite,
    key: Buffer,
    iv: Buffer,
  ) {
    if (key.length !== suite.keyLength) throw new RangeError(`AEAD key must be ${suite.keyLength} bytes`);
    if (iv.length !== AEAD_IV_LENGTH) throw new RangeError('AEAD iv must be 12 bytes');
    this.key = ownCopy(key);
    this.iv = ownCopy(iv);
    this.nonce = ownBuffer(AEAD_IV_LENGTH);
  }

  /** Packets sealed with this key so far. */
  get packetsSealed(): number {
    return this.sealed;
  }

  /** Packets that failed authentication with this key so far. */
  get failedOpens(): number {
    return this.failed;
  }

  /** nonce = iv XOR packet number left-padded to 12 bytes (§5.3), written into the scratch nonce. */
  private nonceFor(pn: number): Buffer {
    const n = this.nonce;
    this.iv.copy(n);
    const lo = pn >>> 0 === pn ? pn : pn % 0x100000000;
    const hi = (pn - lo) / 0x100000000;
    n[11] ^= lo & 0xff;
    n[10] ^= (lo >>> 8) & 0xff;
    n[9] ^= (lo >>> 16) & 0xff;
    n[8] ^= lo >>> 24;
    if (hi !== 0) {
      n[7] ^= hi & 0xff;
      n[6] ^= (hi >>> 8) & 0xff;
      n[5] ^= (hi >>> 16) & 0xff;
      n[4] ^= hi >>> 24;
    }
    return n;
  }

  /** Returns ciphertext || 16-byte tag in a new buffer. */
  seal(pn: number, aad: Buffer, plaintext: Buffer): Buffer {
    const c = aeadCipher(this.suite.aead, this.key, this.nonceFor(pn));
    c.setAAD(aad);
    const out = Buffer.allocUnsafe(plaintext.length + AEAD_TAG_LENGTH);
    const ct = c.update(plaintext);
    ct.copy(out, 0);
    let n = ct.length;
    const fin = c.final();
    if (fin.length) n += fin.copy(out, n);
    c.getAuthTag().copy(out, n);
    this.sealed++;
    return out;
  }

  /**
   * Encrypts buf[aadEnd, payloadEnd) in place with buf[aadStart, aadEnd) as associated data and writes the tag at
   * payloadEnd. Returns payloadEnd + 16. buf must have room for the tag.
   */
  sealInPlace(pn: number, buf: Buffer, aadStart: number, aadEnd: number, payloadEnd: number): number {
    const end = payloadEnd + AEAD_TAG_LENGTH;
    if (end > buf.length) throw new RangeError('no room for the AEAD tag');
    if (aadStart > aadEnd || aadEnd > payloadEnd) throw new RangeError('bad AEAD ranges');
    const c = aeadCipher(this.suite.aead, this.key, this.nonceFor(pn));
    c.setAAD(buf.subarray(aadStart, aadEnd));
    const ct = c.update(buf.subarray(aadEnd, payloadEnd));
    const n = aadEnd + ct.copy(buf, aadEnd);
    const fin = c.final();
    if (fin.length) fin.copy(buf, n);
    c.getAuthTag().copy(buf, payloadEnd);
    this.sealed++;
    return end;
  }

  /** Returns the plaintext, or null when authentication fails (never throws for that). */
  open(pn: number, aad: Buffer, ciphertextAndTag: Buffer): Buffer | null {
    const ctLen = ciphertextAndTag.length - AEAD_TAG_LENGTH;
    if (ctLen < 0) {
      this.failed++;
      return null;
    }
    const d = aeadDecipher(this.suite.aead, this.key, this.nonceFor(pn));
    d.setAAD(aad);
    d.setAuthTag(ciphertextAndTag.subarray(ctLen));
    const pt = d.update(ciphertextAndTag.subarray(0, ctLen));
    try {
      const fin = d.final();
      if (fin.length) return Buffer.concat([pt, fin]);
    } catch {
      this.failed++;
      return null;
    }
    return pt;
  }
}

/** Everything needed to protect or unprotect packets in one direction at one encryption level. */
export interface DirectionKeys {
  suite: CipherSuite;
  secret: Buffer;
  aead: PacketAead;
  hp: HeaderProtector;
}

/** The raw key, iv and header protection key a traffic secret expands to (§5.1). */
export function deriveKeyMaterial(suite: CipherSuite, secret: Buffer): { key: Buffer; iv: Buffer; hpKey: Buffer } {
  return {
    key: hkdfExpandLabel(suite.hash, secret, 'quic key', EMPTY, suite.keyLength),
    iv: hkdfExpandLabel(suite.hash, secret, 'quic iv', EMPTY, AEAD_IV_LENGTH),
    hpKey: hkdfExpandLabel(suite.hash, secret, 'quic hp', EMPTY, suite.keyLength),
  };
}

function aeadFromSecret(suite: CipherSuite, secret: Buffer): PacketAead {
  const key = hkdfExpandLabel(suite.hash, secret, 'quic key', EMPTY, suite.keyLength);
  const iv = hkdfExpandLabel(suite.hash, secret, 'quic iv', EMPTY, AEAD_IV_LENGTH);
  return new PacketAead(suite, key, iv);
}

/** Derives the packet protection key, iv and header protection key from a traffic secret (§5.1). */
export function deriveKeys(suite: CipherSuite, secret: Buffer): DirectionKeys {
  const m = deriveKeyMaterial(suite, secret);
  return { suite, secret, aead: new PacketAead(suite, m.key, m.iv), hp: new HeaderProtector(suite, m.hpKey) };
}

/**
 * The next key phase (§6): secret' = HKDF-Expand-Label(secret, "quic ku", "", Hash.length), with a new AEAD key and
 * iv. The header protection key is not updated, so the same HeaderProtector is shared.
 */
export function nextGenerationKeys(current: DirectionKeys): DirectionKeys {
  const { suite } = current;
  const secret = hkdfExpandLabel(suite.hash, current.secret, 'quic ku', EMPTY, hashLength(suite.hash));
  return { suite, secret, aead: aeadFromSecret(suite, secret), hp: current.hp };
}
