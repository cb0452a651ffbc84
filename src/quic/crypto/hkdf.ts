/** HKDF (RFC 5869) and TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1), on node:crypto. */
import { createHmac, createHash } from 'node:crypto';
import { ownBuffer } from '../../util/buffers.js';

export type HashName = 'sha256' | 'sha384';

export function hashLength(hash: HashName): number {
  return hash === 'sha256' ? 32 : 48;
}

export function hkdfExtract(hash: HashName, salt: Buffer, ikm: Buffer): Buffer {
  return createHmac(hash, salt.length ? salt : Buffer.alloc(hashLength(hash))).update(ikm).digest();
}

export function hkdfExpand(hash: HashName, prk: Buffer, info: Buffer, length: number): Buffer {
  const out = ownBuffer(length); // secrets and keys: most live as long as their connection
  let prev = Buffer.alloc(0);
  let filled = 0;
  for (let i = 1; filled < length; i++) {
    prev = createHmac(hash, prk).update(prev).update(info).update(Buffer.from([i])).digest();
    filled += prev.copy(out, filled);
  }
  return out;
}

/** HKDF-Expand-Label(Secret, Label, Context, Length) with the "tls13 " prefix. */
export function hkdfExpandLabel(hash: HashName, secret: Buffer, label: string, context: Buffer, length: number): Buffer {
  const full = Buffer.from('tls13 ' + label, 'ascii');
  const info = Buffer.allocUnsafe(2 + 1 + full.length + 1 + context.length);
  info.writeUInt16BE(length, 0);
  info[2] = full.length;
  full.copy(info, 3);
  info[3 + full.length] = context.length;
  context.copy(info, 4 + full.length);
  return hkdfExpand(hash, secret, info, length);
}

export function hash(hashName: HashName, data: Buffer): Buffer {
  return createHash(hashName).update(data).digest();
}
