/**
 * QUIC packet protection keys: AEAD payload protection (RFC 9001 §5.3), header protection masks (§5.4.3 AES,
 * §5.4.4 ChaCha20), key derivation from a traffic secret (§5.1) and key update (§6).
 *
 * Hot path notes: AES-ECB header protection keeps one cipher per key and feeds it single 16-byte blocks with update()
 * (never final()), so OpenSSL sets the key schedule up once. ChaCha20 header protection computes one ChaCha20 block
 * in JavaScript (chacha20.ts) into scratch arrays: no cipher object per packet. node:crypto has no way to re-key an
 * AEAD context with a new nonce, so with node:crypto seal/open create one cipher per packet; with the sodium backend
 * (backend.ts) ChaCha20-Poly1305 is one libsodium call per packet, sealing and opening in place. The per-packet
 * nonce is built in a reused scratch buffer either way.
 */
import {
  createCipheriv,
  createDecipheriv,
  type Cipher,
  type CipherGCM,
  type DecipherGCM,
} from 'node:crypto';
import { activeSodium, type BackendName, type SodiumBinding } from './backend.js';
import { chachaHpMask, chachaKeyWords } from './chacha20.js';
import { hashLength, hkdfExpandLabel, hkdfExpandLabelInto } from './hkdf.js';
import type { CipherSuite } from './suites.js';
import { ownBuffer, ownCopy } from '../../util/buffers.js';
import { VERSION_1, type PacketLabels } from '../version.js';

const EMPTY = Buffer.alloc(0);
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

/**
 * The tag and the header (AAD) of the packet being opened on libsodium, copied into buffers kept for that (any
 * connection's; used and done within the call): copying 16-40 bytes costs less than making two views of the datagram
 * per packet. The AAD buffer has a view for each length up to AAD_SCRATCH; a longer header gets a view of the datagram.
 */
const TAG = Buffer.alloc(AEAD_TAG_LENGTH);
const AAD_SCRATCH = 64;
const aadBuf = Buffer.alloc(AAD_SCRATCH);
const aadViews: (Buffer | undefined)[] = [];

function tagCopy(buf: Buffer, at: number): Buffer {
  for (let i = 0; i < AEAD_TAG_LENGTH; i++) TAG[i] = buf[at + i];
  return TAG;
}

function aadCopy(buf: Buffer, start: number, end: number): Buffer {
  const n = end - start;
  if (n > AAD_SCRATCH) return buf.subarray(start, end);
  for (let i = 0; i < n; i++) aadBuf[i] = buf[start + i];
  return (aadViews[n] ??= aadBuf.subarray(0, n));
}

/** The samples of one masksAt call on AES (any connection's; used and done within the call). */
let samples: Buffer = Buffer.alloc(0);
function sampleScratch(bytes: number): Buffer {
  if (samples.length < bytes) samples = Buffer.alloc(Math.max(bytes, 64 * HP_SAMPLE_LENGTH));
  return samples;
}

/** Computes header protection masks for one header protection key (RFC 9001 §5.4). */
export class HeaderProtector {
  private readonly ecb: Cipher | null;
  private readonly key: Buffer;
  /** ChaCha20: the key as words, a block scratch and the mask scratch that mask() returns. */
  private readonly chachaKey: Uint32Array | null;
  private readonly block: Uint32Array | null;
  private readonly out: Buffer | null;

  constructor(
    readonly suite: CipherSuite,
    hpKey: Buffer,
  ) {
    if (hpKey.length !== suite.keyLength) throw new RangeError(`header protection key must be ${suite.keyLength} bytes`);
    this.key = ownCopy(hpKey);
    if (suite.hp === 'chacha20') {
      this.ecb = null;
      this.chachaKey = chachaKeyWords(this.key);
      this.block = new Uint32Array(16);
      this.out = Buffer.alloc(5);
    } else {
      this.ecb = createCipheriv(suite.hp, this.key, null);
      this.ecb.setAutoPadding(false);
      this.chachaKey = null;
      this.block = null;
      this.out = null;
    }
  }

  /**
   * Returns at least 5 bytes of mask for a 16-byte sample. The result may be a buffer owned by node:crypto or by
   * this object; callers must use it before the next call and must not keep it.
   */
  mask(sample: Buffer): Buffer {
    if (sample.length < HP_SAMPLE_LENGTH) throw new RangeError('header protection sample must be 16 bytes');
    return this.maskAt(sample, 0);
  }

  /** mask() of the sample at buf[at, at + 16); the caller has checked that it is there. */
  maskAt(buf: Buffer, at: number): Buffer {
    if (this.ecb !== null) return this.ecb.update(buf.subarray(at, at + HP_SAMPLE_LENGTH));
    // ChaCha20 (§5.4.4): counter = sample[0..4] little-endian, nonce = sample[4..16]; the mask is the first five
    // bytes of that keystream block.
    chachaHpMask(this.chachaKey!, buf, at, this.block!, this.out!, 0);
    return this.out!;
  }

  /**
   * masks() of the samples at offset `at` of each of `dgrams` (mask i at 16 * i), read where they lie: ChaCha20
   * computes each mask from the datagram itself, AES gathers the samples into one buffer for one ECB call. A datagram
   * too short for a sample gets a mask that means nothing (the packet is rejected before a mask is used).
   */
  masksAt(dgrams: readonly Buffer[], at: number): Buffer {
    const n = dgrams.length;
    if (this.ecb !== null) {
      const samples = sampleScratch(n * HP_SAMPLE_LENGTH);
      for (let i = 0; i < n; i++) {
        const d = dgrams[i];
        const o = i * HP_SAMPLE_LENGTH;
        // Byte by byte: Buffer.copy costs more than this for 16 bytes.
        if (d.length >= at + HP_SAMPLE_LENGTH) for (let j = 0; j < HP_SAMPLE_LENGTH; j++) samples[o + j] = d[at + j];
        else for (let j = 0; j < HP_SAMPLE_LENGTH; j++) samples[o + j] = 0;
      }
      return this.ecb.update(samples.length === n * HP_SAMPLE_LENGTH ? samples : samples.subarray(0, n * HP_SAMPLE_LENGTH));
    }
    const out = Buffer.allocUnsafe(n * HP_SAMPLE_LENGTH);
    for (let i = 0; i < n; i++) {
      const d = dgrams[i];
      if (d.length >= at + HP_SAMPLE_LENGTH) chachaHpMask(this.chachaKey!, d, at, this.block!, out, i * HP_SAMPLE_LENGTH);
      else out.fill(0, i * HP_SAMPLE_LENGTH, (i + 1) * HP_SAMPLE_LENGTH);
    }
    return out;
  }

  /** Masks for n samples laid out back to back (16 bytes each); the mask of sample i starts at 16 * i. */
  masks(samples: Buffer): Buffer {
    if (samples.length % HP_SAMPLE_LENGTH !== 0) throw new RangeError('samples must be whole 16-byte blocks');
    // ECB without padding turns every complete block into its encryption: exactly one mask per sample.
    if (this.ecb !== null) return this.ecb.update(samples);
    const out = Buffer.alloc(samples.length);
    for (let i = 0; i < samples.length; i += HP_SAMPLE_LENGTH) chachaHpMask(this.chachaKey!, samples, i, this.block!, out, i);
    return out;
  }
}

/**
 * AEAD payload protection for one key/iv pair (RFC 9001 §5.3). Counts packets for the AEAD limits (§6.6).
 * ChaCha20-Poly1305 runs on libsodium when the sodium backend was active at construction, everything else on
 * node:crypto; both give the same bytes.
 */
export class PacketAead {
  private readonly key: Buffer;
  private readonly iv: Buffer;
  private readonly nonce: Buffer;
  private readonly sodium: SodiumBinding | null;
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
    this.sodium = suite.aead === 'chacha20-poly1305' ? activeSodium() : null;
  }

  /** The library that seals and opens for this key. */
  get backend(): BackendName {
    return this.sodium !== null ? 'sodium' : 'node';
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
    const iv = this.iv;
    for (let i = 0; i < AEAD_IV_LENGTH; i++) n[i] = iv[i]!;
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
    const out = Buffer.allocUnsafe(plaintext.length + AEAD_TAG_LENGTH);
    const nonce = this.nonceFor(pn);
    if (this.sodium !== null) {
      this.sodium.crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        out.subarray(0, plaintext.length),
        out.subarray(plaintext.length),
        plaintext,
        aad,
        null,
        nonce,
        this.key,
      );
      this.sealed++;
      return out;
    }
    const c = aeadCipher(this.suite.aead, this.key, nonce);
    c.setAAD(aad);
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
    const nonce = this.nonceFor(pn);
    if (this.sodium !== null) {
      const payload = buf.subarray(aadEnd, payloadEnd);
      this.sodium.crypto_aead_chacha20poly1305_ietf_encrypt_detached(
        payload,
        buf.subarray(payloadEnd, end),
        payload,
        buf.subarray(aadStart, aadEnd),
        null,
        nonce,
        this.key,
      );
      this.sealed++;
      return end;
    }
    const c = aeadCipher(this.suite.aead, this.key, nonce);
    c.setAAD(buf.subarray(aadStart, aadEnd));
    const ct = c.update(buf.subarray(aadEnd, payloadEnd));
    const n = aadEnd + ct.copy(buf, aadEnd);
    const fin = c.final();
    if (fin.length) fin.copy(buf, n);
    c.getAuthTag().copy(buf, payloadEnd);
    this.sealed++;
    return end;
  }

  /** Returns the plaintext in a new buffer, or null when authentication fails (never throws for that). */
  open(pn: number, aad: Buffer, ciphertextAndTag: Buffer): Buffer | null {
    const ctLen = ciphertextAndTag.length - AEAD_TAG_LENGTH;
    if (ctLen < 0) {
      this.failed++;
      return null;
    }
    if (this.sodium !== null) {
      const pt = Buffer.allocUnsafe(ctLen);
      return this.sodiumOpen(pt, ciphertextAndTag.subarray(0, ctLen), ciphertextAndTag.subarray(ctLen), aad, pn);
    }
    return this.nodeOpen(pn, aad, ciphertextAndTag.subarray(0, ctLen), ciphertextAndTag.subarray(ctLen));
  }

  /**
   * Opens the packet payload buf[aadEnd, end) (ciphertext then tag) with buf[aadStart, aadEnd) as associated data.
   * Returns the plaintext, or null when authentication fails. The plaintext may be a view of buf over the ciphertext
   * (decrypted in place, sodium) or a new buffer (node:crypto); either way buf[aadEnd, end - 16) is no longer the
   * ciphertext afterwards, also after a failure.
   */
  openInPlace(pn: number, buf: Buffer, aadStart: number, aadEnd: number, end: number): Buffer | null {
    const ctEnd = end - AEAD_TAG_LENGTH;
    if (ctEnd < aadEnd || aadStart > aadEnd || end > buf.length) {
      this.failed++;
      return null;
    }
    const ct = buf.subarray(aadEnd, ctEnd);
    if (this.sodium !== null) return this.sodiumOpen(ct, ct, tagCopy(buf, ctEnd), aadCopy(buf, aadStart, aadEnd), pn);
    return this.nodeOpen(pn, buf.subarray(aadStart, aadEnd), ct, buf.subarray(ctEnd, end));
  }

  private sodiumOpen(out: Buffer, ct: Buffer, tag: Buffer, aad: Buffer, pn: number): Buffer | null {
    try {
      this.sodium!.crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, null, ct, tag, aad, this.nonceFor(pn), this.key);
    } catch {
      this.failed++;
      return null;
    }
    return out;
  }

  private nodeOpen(pn: number, aad: Buffer, ct: Buffer, tag: Buffer): Buffer | null {
    const d = aeadDecipher(this.suite.aead, this.key, this.nonceFor(pn));
    d.setAAD(aad);
    d.setAuthTag(tag);
    const pt = d.update(ct);
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

/** The labels of QUIC v1; QUIC v2's are in version.ts (VERSION_2.labels, RFC 9369 §3.3.2). */
const V1_LABELS: PacketLabels = VERSION_1.labels;

/** The raw key, iv and header protection key a traffic secret expands to (§5.1), with the version's labels. */
export function deriveKeyMaterial(
  suite: CipherSuite,
  secret: Buffer,
  labels: PacketLabels = V1_LABELS,
): { key: Buffer; iv: Buffer; hpKey: Buffer } {
  return {
    key: hkdfExpandLabel(suite.hash, secret, labels.key, EMPTY, suite.keyLength),
    iv: hkdfExpandLabel(suite.hash, secret, labels.iv, EMPTY, AEAD_IV_LENGTH),
    hpKey: hkdfExpandLabel(suite.hash, secret, labels.hp, EMPTY, suite.keyLength),
  };
}

/**
 * Scratch for the key, iv and header protection key on their way into PacketAead / HeaderProtector (which copy them
 * into buffers of their own): views of exactly each length, so that a derivation allocates nothing for them.
 */
const material = Buffer.alloc(32 + AEAD_IV_LENGTH + 32);
const scratchKey = { 16: material.subarray(0, 16), 32: material.subarray(0, 32) } as Record<number, Buffer>;
const scratchIv = material.subarray(32, 32 + AEAD_IV_LENGTH);
const scratchHp = { 16: material.subarray(44, 60), 32: material.subarray(44, 76) } as Record<number, Buffer>;

function scratchOf(views: Record<number, Buffer>, length: number): Buffer {
  const v = views[length];
  if (v === undefined) throw new RangeError(`no key scratch for ${length}-byte keys`);
  return v;
}

function aeadFromSecret(suite: CipherSuite, secret: Buffer, labels: PacketLabels): PacketAead {
  const key = scratchOf(scratchKey, suite.keyLength);
  hkdfExpandLabelInto(suite.hash, secret, labels.key, EMPTY, suite.keyLength, key, 0);
  hkdfExpandLabelInto(suite.hash, secret, labels.iv, EMPTY, AEAD_IV_LENGTH, scratchIv, 0);
  return new PacketAead(suite, key, scratchIv);
}

/**
 * Derives the packet protection key, iv and header protection key from a traffic secret (§5.1), with the version's
 * labels (v1 by default).
 */
export function deriveKeys(suite: CipherSuite, secret: Buffer, labels: PacketLabels = V1_LABELS): DirectionKeys {
  const aead = aeadFromSecret(suite, secret, labels);
  const hpKey = scratchOf(scratchHp, suite.keyLength);
  hkdfExpandLabelInto(suite.hash, secret, labels.hp, EMPTY, suite.keyLength, hpKey, 0);
  return { suite, secret, aead, hp: new HeaderProtector(suite, hpKey) };
}

/**
 * The next key phase (§6): secret' = HKDF-Expand-Label(secret, "quic ku", "", Hash.length) ("quicv2 ku" in v2), with
 * a new AEAD key and iv. The header protection key is not updated, so the same HeaderProtector is shared. `labels`
 * must be those the current keys were derived with.
 */
export function nextGenerationKeys(current: DirectionKeys, labels: PacketLabels = V1_LABELS): DirectionKeys {
  const { suite } = current;
  const secret = hkdfExpandLabel(suite.hash, current.secret, labels.ku, EMPTY, hashLength(suite.hash));
  return { suite, secret, aead: aeadFromSecret(suite, secret, labels), hp: current.hp };
}
