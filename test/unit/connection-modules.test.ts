/** The connection's modules on their own: timer table, path MTU, connection IDs, frame writer + packet builder. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Level } from '../../src/quic/types.js';
import { TransportError, TransportErrorCode as E } from '../../src/quic/errors.js';
import { Timer, TimerTable } from '../../src/quic/connection/timers.js';
import { PathMtu } from '../../src/quic/connection/pmtu.js';
import { ConnectionIds } from '../../src/quic/connection/cids.js';
import { Retransmits, SentPacketContents, StreamIdSet } from '../../src/quic/connection/retransmits.js';
import { ConnectionIdIssuer } from '../../src/quic/cid-issuer.js';
import { FrameWriter } from '../../src/quic/connection/frame-writer.js';
import { PacketBuilder } from '../../src/quic/connection/packet-builder.js';
import { makeSpace } from '../../src/quic/connection/space.js';
import { NewReno } from '../../src/quic/recovery/new-reno.js';
import { Pacer } from '../../src/quic/recovery/pacer.js';
import { deriveKeys } from '../../src/quic/crypto/keys.js';
import { TLS_AES_128_GCM_SHA256 } from '../../src/quic/crypto/suites.js';
import { parseHeader, removeHeaderProtection } from '../../src/quic/packet/header.js';
import { parseFrames } from '../../src/quic/frame/frames.js';

test('timer table: the earliest armed deadline, 0 is a time, stop disarms', () => {
  const t = new TimerTable();
  assert.equal(t.next(), null);
  t.set(Timer.idle, 30_000);
  t.set(Timer.pacing, 12);
  t.set(Timer.ack, 0);
  assert.equal(t.next(), 0);
  assert.equal(t.expired(Timer.ack, 0), true);
  assert.equal(t.expired(Timer.pacing, 11), false);
  t.stop(Timer.ack);
  assert.equal(t.isArmed(Timer.ack), false);
  assert.equal(t.expired(Timer.ack, 1e12), false, 'a stopped slot never expires');
  assert.equal(t.next(), 12);
  t.set(Timer.pacing, null);
  assert.equal(t.next(), 30_000);
});

test('path MTU: steps up to the ceiling as probes are acknowledged, gives up a size after three losses', () => {
  const cc = new NewReno(1200);
  const pacer = new Pacer(1200);
  const m = new PathMtu(1200, cc, pacer);
  assert.equal(m.probeDue(9000), 1452);
  m.onProbeSent(1452);
  assert.equal(m.probeDue(9000), 0, 'one probe at a time');
  m.onProbeAcked(1452);
  assert.equal(m.size, 1452);
  assert.equal(cc.minWindow, 2 * 1452, 'the congestion controller hears of the new size');
  assert.equal(pacer.maxDatagramSize, 1452);
  assert.equal(m.probeDue(9000), 4096);
  m.onProbeSent(4096);
  m.onProbeAcked(1452); // an old probe's late ACK changes nothing
  assert.equal(m.size, 1452);
  m.onProbeLost(4096);
  for (let i = 0; i < 2; i++) {
    assert.equal(m.probeDue(9000), 4096, 'a lost probe is tried again');
    m.onProbeSent(4096);
    m.onProbeLost(4096);
  }
  assert.equal(m.probeDue(9000), 0, 'the search stops');
  assert.equal(m.size, 1452);
});

test('connection IDs: issue to the peer limit, retire_prior_to, the active limit and unissued retirements', () => {
  const pending = new Retransmits();
  const issuer = new ConnectionIdIssuer<string>(8);
  const ids = new ConnectionIds(issuer.sourceFor('conn'), Buffer.from('aaaaaaaaaaaaaaaa', 'hex'), 4, pending);
  ids.issue(3);
  assert.equal(ids.local.size, 3);
  assert.deepEqual(pending.newCids, [1, 2]);
  const v = ids.version;
  assert.equal(ids.onRetireConnectionId(1), true);
  assert.equal(ids.version, v + 1);
  assert.equal(ids.onRetireConnectionId(1), false, 'already retired');
  assert.throws(() => ids.onRetireConnectionId(9), (e: unknown) => e instanceof TransportError && e.code === E.PROTOCOL_VIOLATION);

  ids.setPeerInitial(Buffer.from('bbbbbbbbbbbbbbbb', 'hex'));
  const cid = (b: number) => Buffer.alloc(8, b);
  const token = Buffer.alloc(16, 7);
  ids.onNewConnectionId(1, 0, cid(1), token);
  ids.onNewConnectionId(2, 2, cid(2), token);
  assert.deepEqual(pending.retireCids, [0, 1], 'retire_prior_to retires the older ones');
  assert.ok(ids.dcid.equals(cid(2)), 'the DCID moves to one still active');
  ids.onNewConnectionId(1, 0, cid(1), token); // below retire_prior_to: retired at once
  assert.deepEqual(pending.retireCids, [0, 1, 1]);
  assert.throws(() => ids.onNewConnectionId(2, 2, cid(9), token), (e: unknown) => e instanceof TransportError && e.code === E.PROTOCOL_VIOLATION);
  for (let s = 3; s <= 5; s++) ids.onNewConnectionId(s, 2, cid(s), token);
  assert.throws(
    () => ids.onNewConnectionId(6, 2, cid(6), token),
    (e: unknown) => e instanceof TransportError && e.code === E.CONNECTION_ID_LIMIT_ERROR,
  );

  const w = new FrameWriter();
  const sent = new SentPacketContents();
  w.reset(Buffer.alloc(200), 0, 200, sent);
  ids.writeFrames(w);
  assert.deepEqual(
    [sent.retransmits!.newCids, sent.retransmits!.retireCids],
    [[2], [0, 1, 1]],
    'seq 1 was retired before it was announced; the rest go out',
  );
  assert.equal(pending.newCids.length + pending.retireCids.length, 0);
});

test('packet builder + frame writer: coalesced packets open with the keys they were sealed with', () => {
  const secret = Buffer.alloc(32, 3);
  const hs = makeSpace(Level.Handshake, 25);
  const app = makeSpace(Level.OneRtt, 25);
  hs.write = deriveKeys(TLS_AES_128_GCM_SHA256, secret);
  app.write = deriveKeys(TLS_AES_128_GCM_SHA256, Buffer.alloc(32, 4));
  const dcid = Buffer.alloc(8, 0xdd);
  const scid = Buffer.alloc(8, 0x5c);
  const b = new PacketBuilder();
  const w = new FrameWriter();
  const buf = Buffer.alloc(1200);

  assert.ok(b.begin(0, hs, 1200, 8, 8, -1));
  w.reset(buf, b.payloadStart, b.payloadEnd, new SentPacketContents());
  assert.ok(w.ping());
  const end1 = b.finish(buf, w.off)!;
  assert.equal(hs.nextPn, 1);

  assert.ok(b.begin(end1, app, 1200 - end1, 8, 8, -1));
  assert.equal(b.finish(buf, b.payloadStart), null, 'a packet with no frames is abandoned');
  assert.equal(app.nextPn, 0, 'and its packet number is not used');
  assert.ok(b.begin(end1, app, 1200 - end1, 8, 8, -1));
  const appFrames = new SentPacketContents();
  w.reset(buf, b.payloadStart, b.payloadEnd, appFrames);
  const carried = w.control({ type: 'max_data', max: 12345 });
  assert.ok(carried);
  assert.equal(appFrames.retransmits, carried, "the packet's record holds the control frames written into it");
  let end = b.finish(buf, w.off)!;
  end = b.padLast(buf, 1200);
  assert.equal(end, 1200);
  b.seal(buf, dcid, scid, 1);

  const h1 = parseHeader(buf, 0, 8);
  assert.equal(h1.end, end1);
  const u1 = removeHeaderProtection(buf, h1, hs.write.hp, -1);
  const p1 = hs.write.aead.open(u1.pn, buf.subarray(0, u1.headerEnd), buf.subarray(u1.headerEnd, h1.end))!;
  const f1 = parseFrames(p1, 'handshake').map((f) => f.type);
  assert.equal(f1[0], 'ping');
  assert.ok(f1.length > 1 && f1.slice(1).every((t) => t === 'padding'), 'a one-byte payload is padded for the header-protection sample');

  const h2 = parseHeader(buf, end1, 8);
  const u2 = removeHeaderProtection(buf, h2, app.write.hp, -1);
  assert.equal(u2.keyPhase, 1);
  const p2 = app.write.aead.open(u2.pn, buf.subarray(end1, u2.headerEnd), buf.subarray(u2.headerEnd, h2.end))!;
  const frames = parseFrames(p2, '1rtt');
  assert.deepEqual(frames[0], { type: 'max_data', max: 12345 });
  assert.ok(frames.slice(1).every((f) => f.type === 'padding'), 'padded to the datagram size');
});

test('stream ID sets: a Set only once used; Set semantics (order, delete while iterating, clear)', () => {
  const s = new StreamIdSet();
  assert.equal(s.size, 0);
  assert.equal(s.has(4), false);
  assert.equal(s.delete(4), false);
  assert.deepEqual([...s], []);
  s.clear();
  for (const id of [8, 0, 4, 8]) s.add(id);
  assert.equal(s.size, 3);
  assert.deepEqual([...s], [8, 0, 4]);
  // Deleting the entry being visited (what the frame writers do as they take from the pending set) visits every one.
  const seen: number[] = [];
  for (const id of s) {
    seen.push(id);
    s.delete(id);
  }
  assert.deepEqual(seen, [8, 0, 4]);
  assert.equal(s.size, 0);
  s.add(12);
  assert.ok(s.has(12));
  s.clear();
  assert.deepEqual([...s], []);
  // A packet's record and the pending set are independent: one's entries never show in another's.
  const a = new Retransmits();
  const b = new Retransmits();
  a.maxStreamData.add(1);
  a.resets.add(2);
  assert.deepEqual([[...b.maxStreamData], [...b.resets], [...b.stopSending], [...b.streamDataBlocked]], [[], [], [], []]);
  assert.deepEqual([...a.maxStreamData], [1]);
});
