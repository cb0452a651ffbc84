/**
 * ACK delay from a capture (bench/edge.ts): the lines of `tshark -T fields -E separator=/t -E aggregator=, -E
 * occurrence=a` with the fields of ACK_DELAY_FIELDS, one line per datagram, in capture order. For every ack-eliciting
 * client 1-RTT packet, the time from its capture to the first server datagram with an ACK frame (RFC 9000 §19.3)
 * whose ranges cover its packet number. On loopback the capture sees a datagram when it is sent, which is also when
 * it is queued at the receiver, so the delay is the receiver's queueing + processing + its own ACK delay.
 * Pure functions: a unit test feeds it synthetic lines.
 */
import { percentile } from './common.js';

/** The tshark fields, in the order parseAckDelays reads them. */
export const ACK_DELAY_FIELDS = [
  'frame.time_epoch',
  'udp.srcport',
  'quic.header_form',
  'quic.packet_number',
  'quic.frame_type',
  'quic.ack.largest_acknowledged',
  'quic.ack.first_ack_range',
  'quic.ack.ack_range_count',
  'quic.ack.gap',
  'quic.ack.ack_range',
  'quic.decryption_failed',
] as const;

export interface AckDelay {
  /** Ack-eliciting client 1-RTT packets matched to an ACK. */
  matched: number;
  /** Client datagrams / server datagrams in the capture. */
  clientDatagrams: number;
  serverDatagrams: number;
  /** Client 1-RTT packets tshark could not read (not decrypted), and those never acknowledged in the capture. */
  unreadable: number;
  unacked: number;
  medianMs: number | null;
  p90Ms: number | null;
  p99Ms: number | null;
}

/** Frame types that do not elicit an ACK (RFC 9002 §2): PADDING, ACK, ACK_ECN, CONNECTION_CLOSE x2. */
const NON_ELICITING = new Set([0x00, 0x02, 0x03, 0x1c, 0x1d]);

/**
 * The delays, in ms, from tshark's field lines. `serverPort` tells the directions apart; datagrams from `skipPort`
 * (the bench's capture test datagrams) are ignored. Only datagrams whose packets are all 1-RTT count.
 */
export function parseAckDelays(lines: Iterable<string>, serverPort: number, skipPort = -1): AckDelay {
  const pending: { pn: number; t: number }[] = []; // ascending pn, not yet acknowledged
  const delays: number[] = [];
  let clientDatagrams = 0;
  let serverDatagrams = 0;
  let unreadable = 0;
  const list = (s: string | undefined): number[] => (s === undefined || s === '' ? [] : s.split(',').map(Number));
  const lowerBound = (pn: number): number => {
    let lo = 0;
    let hi = pending.length;
    while (lo < hi) {
      const m = (lo + hi) >> 1;
      if (pending[m]!.pn < pn) lo = m + 1;
      else hi = m;
    }
    return lo;
  };
  const ackRange = (lo: number, hi: number, t: number): void => {
    const i = lowerBound(lo);
    let j = i;
    while (j < pending.length && pending[j]!.pn <= hi) {
      delays.push((t - pending[j]!.t) * 1000);
      j++;
    }
    if (j > i) pending.splice(i, j - i);
  };
  for (const line of lines) {
    if (line === '') continue;
    const f = line.split('\t');
    const t = Number(f[0]);
    if (Number(f[1]) === skipPort) continue;
    const fromServer = Number(f[1]) === serverPort;
    const forms = list(f[2]);
    const short = forms.length > 0 && forms.every((x) => x === 0); // every packet of the datagram 1-RTT
    if (fromServer) serverDatagrams++;
    else clientDatagrams++;
    if (!short) continue;
    const pns = list(f[3]);
    const types = list(f[4]);
    if (!fromServer) {
      if (pns.length !== 1 || types.length === 0 || (f[10] ?? '') !== '') {
        unreadable++;
        continue;
      }
      if (!types.some((x) => !NON_ELICITING.has(x))) continue;
      const pn = pns[0]!;
      if (pending.length === 0 || pending[pending.length - 1]!.pn < pn) pending.push({ pn, t });
      else pending.splice(lowerBound(pn), 0, { pn, t });
      continue;
    }
    // Server ACK frames: largest, first range, then range-count (gap, range) pairs, in order, per frame.
    const largest = list(f[5]);
    const first = list(f[6]);
    const counts = list(f[7]);
    const gaps = list(f[8]);
    const ranges = list(f[9]);
    if (largest.length !== first.length || largest.length !== counts.length) continue;
    let k = 0;
    for (let a = 0; a < largest.length; a++) {
      let hi = largest[a]!;
      let lo = hi - first[a]!;
      ackRange(lo, hi, t);
      for (let r = 0; r < counts[a]! && k < gaps.length && k < ranges.length; r++, k++) {
        hi = lo - gaps[k]! - 2;
        lo = hi - ranges[k]!;
        ackRange(lo, hi, t);
      }
    }
  }
  const sorted = delays.filter((d) => d >= 0).sort((a, b) => a - b);
  return {
    matched: sorted.length,
    clientDatagrams,
    serverDatagrams,
    unreadable,
    unacked: pending.length,
    medianMs: percentile(sorted, 50),
    p90Ms: percentile(sorted, 90),
    p99Ms: percentile(sorted, 99),
  };
}
