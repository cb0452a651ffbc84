/** Retry Integrity Tag for QUIC v1 (RFC 9001 §5.8): AES-128-GCM over the Retry pseudo-packet, fixed key and nonce. */
import { createCipheriv, timingSafeEqual } from 'node:crypto';

const RETRY_KEY_V1 = Buffer.from('be0c690b9f66575a1d766b54e368c84e', 'hex');
const RETRY_NONCE_V1 = Buffer.from('461599d35d632bf2239825bb', 'hex');
export const RETRY_TAG_LENGTH = 16;

/** Computes the tag for a Retry packet (everything but the tag) sent in response to originalDcid. */
export function retryIntegrityTag(originalDcid: Buffer, retryPacketWithoutTag: Buffer): Buffer {
  if (originalDcid.length > 255) throw new RangeError('original DCID too long');
  // Retry pseudo-packet = ODCID Length || ODCID || Retry packet without the tag.
  const pseudo = Buffer.allocUnsafe(1 + originalDcid.length + retryPacketWithoutTag.length);
  pseudo[0] = originalDcid.length;
  originalDcid.copy(pseudo, 1);
  retryPacketWithoutTag.copy(pseudo, 1 + originalDcid.length);
  const c = createCipheriv('aes-128-gcm', RETRY_KEY_V1, RETRY_NONCE_V1, { authTagLength: RETRY_TAG_LENGTH });
  c.setAAD(pseudo);
  c.final();
  return c.getAuthTag();
}

/** True when the last 16 bytes of retryPacket are the valid integrity tag for originalDcid. */
export function verifyRetryIntegrity(originalDcid: Buffer, retryPacket: Buffer): boolean {
  if (retryPacket.length < RETRY_TAG_LENGTH + 7 || originalDcid.length > 255) return false;
  const split = retryPacket.length - RETRY_TAG_LENGTH;
  const expected = retryIntegrityTag(originalDcid, retryPacket.subarray(0, split));
  return timingSafeEqual(expected, retryPacket.subarray(split));
}
