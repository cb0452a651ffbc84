import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConnectionFlowControl } from '../../src/quic/stream/flow.js';
import { SendStream } from '../../src/quic/stream/send.js';
import { RecvStream } from '../../src/quic/stream/recv.js';
import { TransportError, TransportErrorCode } from '../../src/quic/errors.js';
import { prng } from '../util/prng.js';

test('flow: send credit, MAX_DATA only increases, DATA_BLOCKED once per limit', () => {
  const f = new ConnectionFlowControl(1000, 500);
  assert.equal(f.sendCredit, 500);
  assert.equal(f.blockedLimit(), null);
  f.onNewDataSent(300);
  assert.equal(f.sendCredit, 200);
  f.onNewDataSent(200);
  assert.equal(f.sendCredit, 0);
  assert.throws(() => f.onNewDataSent(1), 'overrunning the peer limit is a local bug');
  assert.equal(f.blockedLimit(), 500);
  f.markBlockedSent(500);
  assert.equal(f.blockedLimit(), null);
  f.setPeerMaxData(400);
  assert.equal(f.sendCredit, 0);
  f.setPeerMaxData(800);
  assert.equal(f.sendCredit, 300);
  assert.equal(f.blockedLimit(), null);
  f.onNewDataSent(300);
  assert.equal(f.blockedLimit(), 800);
});

test('flow: receive side enforces MAX_DATA and extends it as data is consumed', () => {
  const f = new ConnectionFlowControl(1000, 0);
  f.onDataReceived(600);
  f.onDataReceived(400);
  assert.throws(
    () => f.onDataReceived(1),
    (e: unknown) => e instanceof TransportError && e.code === TransportErrorCode.FLOW_CONTROL_ERROR,
  );
  const g = new ConnectionFlowControl(1000, 0);
  g.onDataReceived(1000);
  assert.equal(g.maxDataUpdate(), null);
  g.onDataConsumed(250);
  assert.equal(g.maxDataUpdate(), null, 'exactly three quarters left');
  g.onDataConsumed(1);
  assert.equal(g.maxDataUpdate(), 1251);
  g.markMaxDataSent(1251);
  assert.equal(g.currentLimit, 1251);
  assert.equal(g.maxDataUpdate(), null);
  g.onDataReceived(251);
  g.markMaxDataSent(10); // never decreases
  assert.throws(() => g.onDataReceived(1));
});

interface Packet {
  sid: number;
  offset: number;
  data: Buffer;
  fin: boolean;
}
type Event =
  | { at: number; kind: 'packet'; p: Packet; lost: boolean }
  | { at: number; kind: 'max_stream_data'; sid: number; v: number }
  | { at: number; kind: 'max_data'; v: number };

test('flow: randomized transfer over a lossy, reordering network never exceeds peer limits (seeded)', () => {
  let blockedReports = 0;
  for (let seed = 1; seed <= 8; seed++) {
    const rnd = prng(seed);
    const nStreams = 1 + Math.floor(rnd() * 6);
    const streamWindow = 2000 + Math.floor(rnd() * 20000);
    const connWindow = 3000 + Math.floor(rnd() * 40000);
    const senderFlow = new ConnectionFlowControl(0, connWindow);
    const receiverFlow = new ConnectionFlowControl(connWindow, 0);
    const sources: Buffer[] = [];
    const senders: SendStream[] = [];
    const receivers: RecvStream[] = [];
    const delivered: Buffer[][] = [];
    for (let i = 0; i < nStreams; i++) {
      const len = Math.floor(rnd() * 150_000);
      const src = Buffer.allocUnsafe(len);
      for (let k = 0; k < len; k++) src[k] = Math.floor(rnd() * 256);
      sources.push(src);
      const s = new SendStream(i * 4, streamWindow);
      // Write in uneven pieces.
      for (let off = 0; off < len; ) {
        const n = Math.min(len - off, 1 + Math.floor(rnd() * 5000));
        s.write(src.subarray(off, off + n));
        off += n;
      }
      s.end();
      senders.push(s);
      receivers.push(new RecvStream(i * 4, streamWindow));
      delivered.push([]);
    }

    let events: Event[] = [];
    let now = 0;
    let rr = 0;
    const done = () => receivers.every((r) => r.finished) && senders.every((s) => s.state === 'data_recvd');
    while (!done()) {
      now++;
      assert.ok(now < 200_000, `seed ${seed}: transfer terminates`);
      // Sender: a burst of packets.
      const burst = 1 + Math.floor(rnd() * 8);
      for (let k = 0; k < burst; k++) {
        let sent = false;
        for (let j = 0; j < nStreams && !sent; j++) {
          const s = senders[(rr + j) % nStreams];
          if (!s.hasSendable(senderFlow.sendCredit)) continue;
          const c = s.nextChunk(1 + Math.floor(rnd() * 1400), senderFlow.sendCredit);
          if (!c) continue;
          senderFlow.onNewDataSent(c.isNew);
          // The invariants under test: never past the peer's stream or connection limit.
          assert.ok(senderFlow.bytesSent <= senderFlow.peerLimit);
          assert.ok(s.highestSent <= s.peerMaxStreamData);
          assert.ok(c.offset + c.data.length <= s.peerMaxStreamData);
          const lost = rnd() < 0.1;
          events.push({ at: now + 1 + Math.floor(rnd() * 6), kind: 'packet', p: { sid: s.id / 4, ...c }, lost });
          sent = true;
        }
        rr++;
      }
      for (const s of senders) {
        const b = s.blockedLimit();
        if (b !== null) {
          blockedReports++;
          s.markBlockedSent(b);
        }
      }
      // Network: deliver due events in random order.
      const due = events.filter((e) => e.at <= now);
      events = events.filter((e) => e.at > now);
      for (let i = due.length - 1; i > 0; i--) {
        const j = Math.floor(rnd() * (i + 1));
        [due[i], due[j]] = [due[j], due[i]];
      }
      for (const e of due) {
        if (e.kind === 'packet') {
          const s = senders[e.p.sid];
          if (e.lost) {
            s.onLost(e.p.offset, e.p.data.length, e.p.fin);
            continue;
          }
          const r = receivers[e.p.sid];
          receiverFlow.onDataReceived(r.onData(e.p.offset, e.p.data, e.p.fin)); // throws on any violation
          s.onAck(e.p.offset, e.p.data.length, e.p.fin);
        } else if (e.kind === 'max_stream_data') {
          senders[e.sid].setMaxStreamData(e.v);
        } else {
          senderFlow.setPeerMaxData(e.v);
        }
      }
      // Receiver application reads some streams; credit goes back.
      for (let i = 0; i < nStreams; i++) {
        const r = receivers[i];
        if (rnd() < 0.5) {
          const b = r.read(Math.floor(rnd() * 6000));
          if (b) delivered[i].push(Buffer.from(b));
        }
        receiverFlow.onDataConsumed(r.drainConsumed());
        const v = r.maxStreamDataUpdate();
        if (v !== null) {
          r.markMaxStreamDataSent(v);
          events.push({ at: now + 1 + Math.floor(rnd() * 6), kind: 'max_stream_data', sid: i, v });
        }
      }
      const m = receiverFlow.maxDataUpdate();
      if (m !== null) {
        receiverFlow.markMaxDataSent(m);
        events.push({ at: now + 1 + Math.floor(rnd() * 6), kind: 'max_data', v: m });
      }
    }
    for (let i = 0; i < nStreams; i++) {
      assert.ok(Buffer.concat(delivered[i]).equals(sources[i]), `seed ${seed} stream ${i}: bytes identical`);
    }
    const total = sources.reduce((t, b) => t + b.length, 0);
    assert.equal(senderFlow.bytesSent, total, 'each byte counted once against MAX_DATA');
    assert.equal(receiverFlow.bytesReceived, total);
    if (total > connWindow * 2) assert.ok(senderFlow.peerLimit > connWindow, 'credit was extended');
  }
  assert.ok(blockedReports > 0, 'streams did hit their flow-control limit');
});
