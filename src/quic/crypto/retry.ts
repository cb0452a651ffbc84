/**
 * Retry Integrity Tag (RFC 9001 §5.8): AES-128-GCM over the Retry pseudo-packet with a fixed key and nonce per
 * version (v1: RFC 9001 §5.8; v2: RFC 9369 §3.3.3). Both functions take the version's descriptor, v1 by default.
 */
import { createCipheriv, timingSafeEqual } from 'node:crypto';
import { VERSION_1, type QuicVersionParams } from '../version.js';

export const RETRY_TAG_LENGTH = 16;

/** Computes the tag for a Retry packet (everything but the tag) sent in response to originalDcid. */
export function retryIntegrityTag(originalDcid: Buffer, retryPacketWithoutTag: Buffer, v: QuicVersionParams = VERSION_1): Buffer {
  if (originalDcid.length > 255) throw new RangeError('original DCID too long');
  // Retry pseudo-packet = ODCID Length || ODCID || Retry packet without the tag.
  const pseudo = Buffer.allocUnsafe(1 + originalDcid.length + retryPacketWithoutTag.length);
  pseudo[0] = originalDcid.length;
  originalDcid.copy(pseudo, 1);
  retryPacketWithoutTag.copy(pseudo, 1 + originalDcid.length);
  const c = createCipheriv('aes-128-gcm', v.retryKey, v.retryNonce, { authTagLength: RETRY_TAG_LENGTH });
  c.setAAD(pseudo);
  c.final();
  return c.getAuthTag();
}

/** True when the last 16 bytes of retryPacket are the valid integrity tag for originalDcid. */
export function verifyRetryIntegrity(originalDcid: Buffer, retryPacket: Buffer, v: QuicVersionParams = VERSION_1): boolean {
  if (retryPacket.length < RETRY_TAG_LENGTH + 7 || originalDcid.length > 255) return false;
  const split = retryPacket.length - RETRY_TAG_LENGTH;
  const expected = retryIntegrityTag(originalDcid, retryPacket.subarray(0, split), v);
  return timingSafeEqual(expected, retryPacket.subarray(split));
}
