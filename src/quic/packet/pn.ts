/** Packet number encoding length and decoding (RFC 9000 §17.1, Appendix A.2 and A.3). */

const PN_MAX = 2 ** 62;
/** 2^(8 * length) for packet number lengths 1-4 (index = length). */
const PN_WINDOWS = [1, 0x100, 0x10000, 0x1000000, 0x100000000];

/**
 * Recovers a full packet number from its truncated encoding (RFC 9000 Appendix A.3). largestPn is the largest packet
 * number successfully processed in the space, -1 if none. Uses arithmetic instead of bit operations so it is exact
 * above 2^32.
 */
export function decodePacketNumber(largestPn: number, truncatedPn: number, pnLength: number): number {
  const expected = largestPn + 1;
  const win = PN_WINDOWS[pnLength] ?? 2 ** (pnLength * 8);
  const hwin = win / 2;
  const candidate = expected - (expected % win) + truncatedPn;
  if (candidate <= expected - hwin && candidate < PN_MAX - win) return candidate + win;
  if (candidate > expected + hwin && candidate >= win) return candidate - win;
  return candidate;
}

/**
 * The number of bytes to encode pn with (RFC 9000 Appendix A.2): enough to represent twice the number of
 * unacknowledged packet numbers. largestAcked is -1 when nothing has been acknowledged in the space.
 */
export function packetNumberLength(pn: number, largestAcked: number): 1 | 2 | 3 | 4 {
  const unacked = largestAcked < 0 ? pn + 1 : pn - largestAcked;
  if (unacked <= 0x80) return 1;
  if (unacked <= 0x8000) return 2;
  if (unacked <= 0x800000) return 3;
  return 4;
}
