// The edge bench's ACK-delay reader (bench/ack-delay.ts): tshark field lines in, per-packet delays out. ACK ranges are
// decoded as RFC 9000 §19.3.1 says (largest - first range .. largest, then gap + 2 below each smallest), a packet is
// matched to the first ACK that covers it and never again, and only ack-eliciting client 1-RTT packets count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ACK_DELAY_FIELDS, parseAckDelays } from '../../bench/ack-delay.js';

const SERVER = 4433;
const CLIENT = 50000;

/** One line as tshark prints it: tab-separated fields, lists joined with ','. */
function line(o: {
  t: number;
  port: number;
  forms?: number[];
  pns?: number[];
  types?: number[];
  largest?: number[];
  first?: number[];
  counts?: number[];
  gaps?: number[];
  ranges?: number[];
  failed?: boolean;
}): string {
  const j = (a: number[] | undefined): string => (a ?? []).join(',');
  const f = [String(o.t), String(o.port), j(o.forms ?? [0]), j(o.pns), j(o.types), j(o.largest), j(o.first), j(o.counts), j(o.gaps), j(o.ranges), o.failed ? '1' : ''];
  assert.equal(f.length, ACK_DELAY_FIELDS.length);
  return f.join('\t');
}

const STREAM = 0x0c;
const ACK = 0x02;

const clientPacket = (pn: number, t: number, types = [STREAM]): string => line({ t, port: CLIENT, pns: [pn], types });
const serverAck = (t: number, largest: number, first: number, more: [number, number][] = []): string =>
  line({ t, port: SERVER, pns: [1000 + Math.round(t * 1000)], types: [ACK], largest: [largest], first: [first], counts: [more.length], gaps: more.map((m) => m[0]), ranges: more.map((m) => m[1]) });

test('each client packet is matched to the first ACK that covers it; delays in ms, median and p90', () => {
  const lines = [0, 1, 2, 3, 4].map((pn) => clientPacket(pn, 1 + pn * 0.001));
  lines.push(serverAck(1.01, 4, 4)); // covers 0..4
  lines.push(serverAck(1.02, 4, 4)); // the same range again: already matched, not counted twice
  const r = parseAckDelays(lines, SERVER);
  assert.equal(r.matched, 5);
  assert.equal(r.unacked, 0);
  assert.equal(r.clientDatagrams, 5);
  assert.equal(r.serverDatagrams, 2);
  assert.ok(Math.abs(r.medianMs! - 8) < 1e-6, `median ${r.medianMs}`);
  assert.ok(Math.abs(r.p90Ms! - 10) < 1e-6, `p90 ${r.p90Ms}`);
});

test('additional ACK ranges: gap and range count down from the previous smallest (RFC 9000 §19.3.1)', () => {
  const lines = [3, 4, 5, 6, 7, 8, 9].map((pn) => clientPacket(pn, 2 + pn * 0.001));
  // largest 9, first range 1 -> 8..9; then gap 1, range 2 -> largest 8 - 1 - 2 = 5, smallest 5 - 2 = 3 -> 3..5.
  lines.push(serverAck(2.1, 9, 1, [[1, 2]]));
  const r = parseAckDelays(lines, SERVER);
  assert.equal(r.matched, 5, '3, 4, 5, 8 and 9 are acknowledged');
  assert.equal(r.unacked, 2, '6 and 7 fall into the gap');
  // A later ACK covering 6..7 matches them at its own time.
  lines.push(serverAck(2.2, 9, 6));
  const r2 = parseAckDelays(lines, SERVER);
  assert.equal(r2.matched, 7);
  assert.equal(r2.unacked, 0);
  assert.ok(Math.abs(r2.p99Ms! - (2.2 - 2.006) * 1000) < 1e-6, `the slowest is packet 6: ${r2.p99Ms}`);
});

test('packets that elicit no ACK, undecrypted packets, long headers and the test datagrams are left out', () => {
  const lines = [
    line({ t: 0.5, port: CLIENT, forms: [1, 1], pns: [0, 0], types: [6, 6] }), // Initial + Handshake: not 1-RTT
    line({ t: 0.9, port: 40000, forms: [0] }), // the bench's one-byte capture test datagram
    clientPacket(0, 1.0, [ACK]), // an ACK only: not ack-eliciting
    clientPacket(1, 1.0, [ACK, 0x00]), // ACK + PADDING: not ack-eliciting either
    line({ t: 1.0, port: CLIENT, pns: [], types: [], failed: true }), // not decrypted
    clientPacket(2, 1.0, [ACK, STREAM]),
    serverAck(1.004, 2, 2),
  ];
  const r = parseAckDelays(lines, SERVER, 40000);
  assert.equal(r.matched, 1);
  assert.equal(r.unreadable, 1);
  assert.equal(r.clientDatagrams, 5, 'every client datagram but the skipped port is counted');
  assert.ok(Math.abs(r.medianMs! - 4) < 1e-6);
});

test('no ack-eliciting packets: no figures, not zeros', () => {
  const r = parseAckDelays([clientPacket(0, 1, [ACK]), serverAck(1.1, 0, 0)], SERVER);
  assert.equal(r.matched, 0);
  assert.equal(r.medianMs, null);
  assert.equal(r.p90Ms, null);
});
