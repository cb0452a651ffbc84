/**
 * A peer that misbehaves on the wire: the connection must close with the transport error code RFC 9000 §20.1 names
 * for each violation (and tell the peer with CONNECTION_CLOSE, §10.2), or, where the RFC says so, keep going.
 *
 * Misbehaviour is crafted by hand: after a real handshake over the simulated network, the test borrows one side's
 * current 1-RTT write keys, destination CID and next packet number from the connection's private state, seals a
 * short-header packet (RFC 9000 §17.3.1, RFC 9001 §5) around frames of its choosing and delivers it to the other
 * endpoint directly. Covers RFC 9000 §3 (stream states), §4 (flow control), §5.1 (connection IDs), §6 (version
 * negotiation), §8.2 (path validation), §12.4–§12.5 (frames and packet types), §13.1 (ACK of unsent packets),
 * §17.3.1 (reserved bits), §19 (frame rules) and RFC 9001 §5.3 (authentication failure), §6 (TLS KeyUpdate).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { pair, serverConfig, CLIENT_ADDR, SERVER_ADDR } from './helpers.js';
import type { SimNetwork } from './network.js';
import { Endpoint, type Transmit } from '../../src/quic/endpoint.js';
import type { Connection } from '../../src/quic/connection.js';
import type { Address, ConnectionConfig, ConnectionEvent } from '../../src/quic/connection-types.js';
import type { DirectionKeys } from '../../src/quic/crypto/keys.js';
import { initialKeys } from '../../src/quic/crypto/initial.js';
import { frameLength, parseFrames, writeFrame, type Frame } from '../../src/quic/frame/frames.js';
import {
  PacketType,
  openPayload,
  parseHeader,
  removeHeaderProtection,
  sealPacket,
  writeLongHeader,
  writeShortHeader,
} from '../../src/quic/packet/header.js';
import { TransportErrorCode as E } from '../../src/quic/errors.js';
import { QUIC_V1 } from '../../src/quic/types.js';

/** The private connection state these tests borrow to forge packets (read-only except nextPn). */
interface Internals {
  spaces: { read: DirectionKeys | null; write: DirectionKeys | null; nextPn: number; acks: { largestReceived: number } }[];
  dcid: Buffer;
  keyPhase: number;
}
const inner = (c: Connection): Internals => c as unknown as Internals;

const CID_LENGTH = 8;
const AEAD_TAG = 16;

interface Ctx {
  net: SimNetwork;
  sep: Endpoint;
  cep: Endpoint;
  conn: Connection;
  server: Connection;
  cev: ConnectionEvent[];
  sev: ConnectionEvent[];
  /** The application step: drains events into cev / sev. */
  tick: () => void;
}

/** A client/server pair with the handshake confirmed on both sides and the post-handshake frames exchanged. */
function established(seed: number, server: Partial<ConnectionConfig> = {}, client: Partial<ConnectionConfig> = {}): Ctx {
  const { net, sep, cep, conn } = pair(seed, { delay: 5 }, server, client);
  let srv: Connection | undefined;
  const cev: ConnectionEvent[] = [];
  const sev: ConnectionEvent[] = [];
  const tick = (): void => {
    srv ??= sep.pollAccepted();
    for (let e = conn.pollEvent(); e; e = conn.pollEvent()) cev.push(e);
    if (srv) for (let e = srv.pollEvent(); e; e = srv.pollEvent()) sev.push(e);
  };
  const confirmed = (l: ConnectionEvent[]): boolean => l.some((e) => e.type === 'handshake_confirmed');
  const ok = net.run(() => confirmed(cev) && confirmed(sev), 5000, tick);
  assert.ok(ok, `handshake did not finish: client ${conn.state} ${JSON.stringify(conn.closeInfo)}`);
  // Let NEW_CONNECTION_ID, HANDSHAKE_DONE and their ACKs settle.
  net.run(() => false, 200, tick);
  assert.equal(conn.state, 'established');
  assert.equal(srv!.state, 'established');
  return { net, sep, cep, conn, server: srv!, cev, sev, tick };
}

/** Encodes frames back to back. */
function encode(...frames: Frame[]): Buffer {
  const buf = Buffer.alloc(frames.reduce((n, f) => n + frameLength(f), 0));
  let off = 0;
  for (const f of frames) off = writeFrame(buf, off, f);
  assert.equal(off, buf.length);
  return buf;
}

interface ForgeOptions {
  /** Set both reserved bits (0x18) of the short header before sealing. */
  reserved?: boolean;
  /** Flip a bit of the AEAD tag after sealing. */
  corrupt?: boolean;
  /** Pad the datagram to this size with PADDING frames placed before the payload. */
  padTo?: number;
}

/**
 * Seals `payload` (raw frame bytes) in a 1-RTT packet with `from`'s current write keys, as if `from` had sent it,
 * and hands the datagram to `to`. PADDING goes in front of the payload so a truncated frame stays truncated.
 */
function forge(from: Connection, to: Endpoint, fromAddr: Address, now: number, payload: Buffer, opts: ForgeOptions = {}): Buffer {
  const st = inner(from);
  const app = st.spaces[2];
  const keys = app.write;
  assert.ok(keys, 'no 1-RTT write keys');
  const pn = app.nextPn++;
  const pnLength = 4;
  const headerLen = 1 + st.dcid.length + pnLength;
  const pad = Math.max(0, (opts.padTo ?? 0) - (headerLen + payload.length + AEAD_TAG));
  const buf = Buffer.alloc(headerLen + pad + payload.length + AEAD_TAG);
  const { pnOffset, headerEnd } = writeShortHeader(buf, 0, st.dcid, pn, pnLength, (st.keyPhase & 1) as 0 | 1);
  if (opts.reserved) buf[0] |= 0x18;
  payload.copy(buf, headerEnd + pad); // the pad bytes are already zero: PADDING frames
  const end = sealPacket(buf, 0, pnOffset, pnLength, headerEnd + pad + payload.length, pn, keys);
  assert.equal(end, buf.length);
  if (opts.corrupt) buf[end - 1] ^= 0x01;
  to.receive(buf, fromAddr, now);
  return buf;
}

/** A client-sent 1-RTT packet arriving at the server. */
function fromClient(ctx: Ctx, payload: Buffer, opts?: ForgeOptions): void {
  forge(ctx.conn, ctx.sep, CLIENT_ADDR, ctx.net.now, payload, opts);
}

/** A server-sent 1-RTT packet arriving at the client. */
function fromServer(ctx: Ctx, payload: Buffer, opts?: ForgeOptions): void {
  forge(ctx.server, ctx.cep, SERVER_ADDR, ctx.net.now, payload, opts);
}

/** Decrypts a 1-RTT datagram sent to `receiver` with its read keys (a copy: the datagram is left untouched). */
function openShort(dgram: Buffer, receiver: Connection): Frame[] | null {
  if (dgram[0] & 0x80) return null;
  const sp = inner(receiver).spaces[2];
  if (!sp.read) return null;
  const copy = Buffer.from(dgram);
  const h = parseHeader(copy, 0, CID_LENGTH);
  const u = removeHeaderProtection(copy, h, sp.read.hp, sp.acks.largestReceived);
  const pt = openPayload(copy, h, u, sp.read.aead);
  return pt ? parseFrames(pt, '1rtt') : null;
}

/**
 * `offender`'s peer (`victim`) has just detected the violation: it closed locally with `code` as a transport error;
 * after the network runs a little, `offender` has received the CONNECTION_CLOSE.
 */
function expectClose(ctx: Ctx, victim: Connection, offender: Connection, code: number): void {
  const v = victim.closeInfo;
  assert.ok(v, `no close: ${victim.role} is ${victim.state}`);
  assert.equal(v.by, 'local');
  assert.equal(v.application, false);
  assert.equal(v.code, code, `expected 0x${code.toString(16)}, got 0x${v.code.toString(16)} (${v.reason})`);
  assert.ok(victim.state === 'closing' || victim.state === 'draining', `state ${victim.state}`);
  ctx.net.run(() => false, 500, ctx.tick);
  const o = offender.closeInfo;
  assert.ok(o, `the CONNECTION_CLOSE did not reach the ${offender.role}: ${offender.state}`);
  assert.equal(o.by, 'peer');
  assert.equal(o.application, false);
  assert.equal(o.code, code);
  assert.equal(o.frameType ?? 0, v.frameType ?? 0, 'frame type survives the wire');
}

/** The server closes because of what the client sent. */
function serverCloses(ctx: Ctx, code: number): void {
  expectClose(ctx, ctx.server, ctx.conn, code);
}

/** Neither side closed after the network ran a little. */
function expectAlive(ctx: Ctx): void {
  ctx.net.run(() => false, 500, ctx.tick);
  assert.equal(ctx.server.closeInfo, null, `server closed: ${JSON.stringify(ctx.server.closeInfo)}`);
  assert.equal(ctx.conn.closeInfo, null, `client closed: ${JSON.stringify(ctx.conn.closeInfo)}`);
  assert.equal(ctx.server.state, 'established');
  assert.equal(ctx.conn.state, 'established');
}

const stream = (streamId: number, offset: number, data: Buffer | string, fin = false): Frame => ({
  type: 'stream',
  streamId,
  offset,
  data: typeof data === 'string' ? Buffer.from(data) : data,
  fin,
});

/** Reads all readable bytes of a stream. */
function readStream(c: Connection, id: number): Buffer {
  const parts: Buffer[] = [];
  for (let b = c.streamRead(id); b; b = c.streamRead(id)) parts.push(b);
  return Buffer.concat(parts);
}

// ------------------------------------------------------------------------------------------- frame encoding

test('errors: unknown frame type 0x40 -> FRAME_ENCODING_ERROR', () => {
  const ctx = established(101);
  // 0x40 as a two-byte varint (0x40 0x40); no frame type 0x40 exists in QUIC v1 (RFC 9000 §12.4).
  fromClient(ctx, Buffer.from([0x01, 0x40, 0x40]));
  serverCloses(ctx, E.FRAME_ENCODING_ERROR);
});

test('errors: STREAM frame whose Length runs past the packet -> FRAME_ENCODING_ERROR', () => {
  const ctx = established(102);
  // type 0x0a (LEN), stream 0, length 100, but only 10 bytes follow.
  fromClient(ctx, Buffer.concat([Buffer.from([0x0a, 0x00, 0x40, 100]), Buffer.alloc(10, 0x61)]));
  serverCloses(ctx, E.FRAME_ENCODING_ERROR);
});

test('errors: STREAM frame cut inside its Offset varint -> FRAME_ENCODING_ERROR', () => {
  const ctx = established(103);
  // type 0x0c (OFF), stream 0, then the first byte of a 4-byte varint offset and nothing else.
  fromClient(ctx, Buffer.from([0x01, 0x0c, 0x00, 0x80]));
  serverCloses(ctx, E.FRAME_ENCODING_ERROR);
});

// ------------------------------------------------------------------------------------------- stream states

test('errors: STREAM on a server-initiated unidirectional stream (3, send-only for the server) -> STREAM_STATE_ERROR', () => {
  const ctx = established(111);
  fromClient(ctx, encode(stream(3, 0, 'x')));
  serverCloses(ctx, E.STREAM_STATE_ERROR);
});

test('errors: STREAM on a server-initiated bidirectional stream the server never opened (1) -> STREAM_STATE_ERROR', () => {
  const ctx = established(112);
  fromClient(ctx, encode(stream(1, 0, 'x')));
  serverCloses(ctx, E.STREAM_STATE_ERROR);
});

test('errors: MAX_STREAM_DATA on a client-initiated unidirectional stream (2, receive-only for the server) -> STREAM_STATE_ERROR', () => {
  const ctx = established(113);
  fromClient(ctx, encode({ type: 'max_stream_data', streamId: 2, max: 100_000 }));
  serverCloses(ctx, E.STREAM_STATE_ERROR);
});

test('errors: RESET_STREAM on a send-only stream (3) -> STREAM_STATE_ERROR', () => {
  const ctx = established(114);
  fromClient(ctx, encode({ type: 'reset_stream', streamId: 3, errorCode: 1, finalSize: 0 }));
  serverCloses(ctx, E.STREAM_STATE_ERROR);
});

test('errors: STOP_SENDING on a receive-only stream (2) -> STREAM_STATE_ERROR', () => {
  const ctx = established(115);
  fromClient(ctx, encode({ type: 'stop_sending', streamId: 2, errorCode: 1 }));
  serverCloses(ctx, E.STREAM_STATE_ERROR);
});

test('errors: STREAM_DATA_BLOCKED on a send-only stream (3) -> STREAM_STATE_ERROR', () => {
  const ctx = established(116);
  fromClient(ctx, encode({ type: 'stream_data_blocked', streamId: 3, limit: 0 }));
  serverCloses(ctx, E.STREAM_STATE_ERROR);
});

test('errors: MAX_STREAM_DATA for a server stream not yet created (1) -> STREAM_STATE_ERROR', () => {
  const ctx = established(117);
  fromClient(ctx, encode({ type: 'max_stream_data', streamId: 1, max: 100_000 }));
  serverCloses(ctx, E.STREAM_STATE_ERROR);
});

// ------------------------------------------------------------------------------------------- flow control

test('errors: STREAM data beyond the stream flow-control limit -> FLOW_CONTROL_ERROR (the last allowed byte is fine)', () => {
  const ctx = established(121, { initialMaxStreamDataBidiRemote: 1000 });
  fromClient(ctx, encode(stream(0, 999, 'a')));
  assert.equal(ctx.server.closeInfo, null, 'a byte ending exactly at the limit is allowed');
  fromClient(ctx, encode(stream(0, 1000, 'b')));
  serverCloses(ctx, E.FLOW_CONTROL_ERROR);
});

test('errors: STREAM data beyond MAX_DATA summed over streams -> FLOW_CONTROL_ERROR', () => {
  const ctx = established(122, { initialMaxData: 5000 });
  fromClient(ctx, encode(stream(0, 4999, 'a')));
  assert.equal(ctx.server.closeInfo, null, 'exactly MAX_DATA bytes are allowed');
  fromClient(ctx, encode(stream(4, 0, 'b')));
  serverCloses(ctx, E.FLOW_CONTROL_ERROR);
});

// ------------------------------------------------------------------------------------------- stream limits

test('errors: a bidirectional stream id beyond MAX_STREAMS (id 400 with a limit of 100) -> STREAM_LIMIT_ERROR', () => {
  const ctx = established(131);
  fromClient(ctx, encode(stream(396, 0, 'last allowed')));
  assert.equal(ctx.server.closeInfo, null, 'stream 396 (the 100th) is allowed');
  fromClient(ctx, encode(stream(400, 0, 'x')));
  serverCloses(ctx, E.STREAM_LIMIT_ERROR);
});

test('errors: a unidirectional stream id beyond MAX_STREAMS (id 42 with a limit of 10) -> STREAM_LIMIT_ERROR', () => {
  const ctx = established(132, { initialMaxStreamsUni: 10 });
  fromClient(ctx, encode(stream(38, 0, 'last allowed')));
  assert.equal(ctx.server.closeInfo, null, 'stream 38 (the 10th) is allowed');
  fromClient(ctx, encode(stream(42, 0, 'x')));
  serverCloses(ctx, E.STREAM_LIMIT_ERROR);
});

// ------------------------------------------------------------------------------------------- final size

test('errors: data past a FIN\'s final size -> FINAL_SIZE_ERROR', () => {
  const ctx = established(141);
  fromClient(ctx, encode(stream(0, 0, '0123456789', true)));
  assert.equal(ctx.server.closeInfo, null);
  fromClient(ctx, encode(stream(0, 10, 'x')));
  serverCloses(ctx, E.FINAL_SIZE_ERROR);
});

test('errors: RESET_STREAM with a final size below the data received -> FINAL_SIZE_ERROR', () => {
  const ctx = established(142);
  fromClient(ctx, encode(stream(0, 0, Buffer.alloc(100, 0x61))));
  assert.equal(ctx.server.closeInfo, null);
  fromClient(ctx, encode({ type: 'reset_stream', streamId: 0, errorCode: 7, finalSize: 50 }));
  serverCloses(ctx, E.FINAL_SIZE_ERROR);
});

test('errors: RESET_STREAM whose final size differs from an earlier FIN -> FINAL_SIZE_ERROR', () => {
  const ctx = established(143);
  fromClient(ctx, encode(stream(0, 0, '0123456789', true)));
  fromClient(ctx, encode({ type: 'reset_stream', streamId: 0, errorCode: 7, finalSize: 20 }));
  serverCloses(ctx, E.FINAL_SIZE_ERROR);
});

// ------------------------------------------------------------------------------------------- role violations

test('errors: HANDSHAKE_DONE sent by a client -> PROTOCOL_VIOLATION', () => {
  const ctx = established(151);
  fromClient(ctx, encode({ type: 'handshake_done' }));
  serverCloses(ctx, E.PROTOCOL_VIOLATION);
});

test('errors: NEW_TOKEN sent by a client -> PROTOCOL_VIOLATION', () => {
  const ctx = established(152);
  fromClient(ctx, encode({ type: 'new_token', token: Buffer.from('a token from the wrong side') }));
  serverCloses(ctx, E.PROTOCOL_VIOLATION);
});

test('errors: ACK of a packet number the server never sent -> PROTOCOL_VIOLATION', () => {
  const ctx = established(153);
  const next = inner(ctx.server).spaces[2].nextPn;
  fromClient(ctx, encode({ type: 'ack', ranges: [[next + 1000, next + 1000]], ackDelay: 0 }));
  serverCloses(ctx, E.PROTOCOL_VIOLATION);
});

test('errors: a packet with no frames -> PROTOCOL_VIOLATION', () => {
  const ctx = established(154);
  fromClient(ctx, Buffer.alloc(0));
  serverCloses(ctx, E.PROTOCOL_VIOLATION);
});

test('errors: MAX_STREAMS above 2^60 -> FRAME_ENCODING_ERROR', () => {
  const ctx = established(155);
  // 2^60 + 1 is not a double, so raw bytes: type 0x12, then the 8-byte varint 0x1000000000000001.
  fromClient(ctx, Buffer.from([0x12, 0xd0, 0, 0, 0, 0, 0, 0, 0x01]));
  serverCloses(ctx, E.FRAME_ENCODING_ERROR);
});

// ------------------------------------------------------------------------------------------- connection IDs

test('errors: RETIRE_CONNECTION_ID for a sequence number never issued -> PROTOCOL_VIOLATION (an issued one is fine)', () => {
  const ctx = established(161);
  assert.ok(ctx.server.localCids.has(1), 'the server issued connection ID 1');
  const cid1 = ctx.server.localCids.get(1)!;
  assert.equal(ctx.sep.cids.lookup(cid1), ctx.server, "the endpoint's issuer routes it to the server connection");
  assert.equal(ctx.sep.cids.size, ctx.server.localCids.size + 1, "the map holds the server's IDs and the client's original DCID");
  fromClient(ctx, encode({ type: 'retire_connection_id', seq: 1 }));
  assert.equal(ctx.server.closeInfo, null, 'retiring an issued connection ID is allowed');
  assert.equal(ctx.server.localCids.has(1), false, 'connection ID 1 is forgotten');
  assert.equal(ctx.sep.cids.lookup(cid1), undefined, 'and it left the endpoint map');
  assert.equal(ctx.sep.cids.size, ctx.server.localCids.size + 1, 'and only the IDs still in use (a replacement was issued)');
  const unissued = Math.max(...ctx.server.localCids.keys()) + 1;
  fromClient(ctx, encode({ type: 'retire_connection_id', seq: unissued }));
  serverCloses(ctx, E.PROTOCOL_VIOLATION);
});

test('errors: NEW_CONNECTION_ID beyond active_connection_id_limit (4) -> CONNECTION_ID_LIMIT_ERROR', () => {
  const ctx = established(162);
  // The client issued sequence numbers 1..3 after the handshake, so the server holds 4 of the client's CIDs.
  assert.deepEqual([...ctx.conn.localCids.keys()].sort(), [0, 1, 2, 3]);
  fromClient(ctx, encode({ type: 'new_connection_id', seq: 4, retirePriorTo: 0, cid: randomBytes(CID_LENGTH), resetToken: randomBytes(16) }));
  serverCloses(ctx, E.CONNECTION_ID_LIMIT_ERROR);
});

test('errors: NEW_CONNECTION_ID reusing a sequence number for a different CID -> PROTOCOL_VIOLATION', () => {
  const ctx = established(163);
  fromClient(ctx, encode({ type: 'new_connection_id', seq: 1, retirePriorTo: 0, cid: randomBytes(CID_LENGTH), resetToken: randomBytes(16) }));
  serverCloses(ctx, E.PROTOCOL_VIOLATION);
});

// ------------------------------------------------------------------------------------------- header and packet protection

test('errors: reserved bits set in a short header -> PROTOCOL_VIOLATION', () => {
  const ctx = established(171);
  fromClient(ctx, encode({ type: 'ping' }), { reserved: true });
  serverCloses(ctx, E.PROTOCOL_VIOLATION);
});

test('errors: a packet that fails authentication is dropped silently; the connection keeps working', () => {
  const ctx = established(172);
  const before = ctx.server.stats.undecryptable;
  // A HANDSHAKE_DONE would close the connection if the packet were ever processed.
  fromClient(ctx, encode({ type: 'handshake_done' }), { corrupt: true });
  assert.equal(ctx.server.closeInfo, null);
  assert.equal(ctx.server.stats.undecryptable, before + 1, 'counted as undecryptable');
  fromClient(ctx, encode(stream(0, 0, 'still here', true)));
  expectAlive(ctx);
  assert.equal(readStream(ctx.server, 0).toString(), 'still here');
  assert.ok(ctx.server.streamFinished(0));
});

// ------------------------------------------------------------------------------------------- frames that must not close

test('errors: a CRYPTO frame in 1-RTT (a post-handshake NewSessionTicket) is accepted', () => {
  const ctx = established(181);
  // NewSessionTicket (RFC 8446 §4.6.1): lifetime, age_add, nonce<0..255>, ticket<1..2^16-1>, extensions<0..2^16-2>.
  const body = Buffer.concat([
    Buffer.from([0x00, 0x00, 0x1c, 0x20]), // ticket_lifetime 7200 s
    randomBytes(4), // ticket_age_add
    Buffer.from([0x01, 0x00]), // ticket_nonce
    Buffer.from([0x00, 0x20]),
    randomBytes(32), // ticket
    Buffer.from([0x00, 0x00]), // extensions
  ]);
  const msg = Buffer.concat([Buffer.from([0x04, 0x00, 0x00, body.length]), body]);
  fromServer(ctx, encode({ type: 'crypto', offset: 0, data: msg }));
  expectAlive(ctx);
});

test('errors: a TLS KeyUpdate message in 1-RTT CRYPTO -> CRYPTO_ERROR 0x10a (RFC 9001 §6)', {}, () => {
  const ctx = established(182);
  // KeyUpdate (type 24), length 1, request_update = update_not_requested.
  fromServer(ctx, encode({ type: 'crypto', offset: 0, data: Buffer.from([0x18, 0x00, 0x00, 0x01, 0x00]) }));
  expectClose(ctx, ctx.conn, ctx.server, E.CRYPTO_ERROR_BASE + 10);
});

/** Sends a PATH_CHALLENGE from the client and collects the server's answers until the network settles. */
function challenge(ctx: Ctx, data: Buffer): { responses: Buffer[]; sizes: number[] } {
  const responses: Buffer[] = [];
  const sizes: number[] = [];
  const poll = ctx.sep.poll.bind(ctx.sep);
  ctx.sep.poll = (now: number): Transmit | null => {
    const t = poll(now);
    if (t) {
      for (const f of openShort(t.data, ctx.conn) ?? []) {
        if (f.type === 'path_response') {
          responses.push(Buffer.from(f.data));
          sizes.push(t.data.length);
        }
      }
    }
    return t;
  };
  fromClient(ctx, encode({ type: 'path_challenge', data }), { padTo: 1200 });
  expectAlive(ctx);
  ctx.sep.poll = poll;
  return { responses, sizes };
}

test('errors: a PATH_CHALLENGE gets exactly one PATH_RESPONSE echoing its data; nothing closes', () => {
  const ctx = established(183);
  const data = randomBytes(8);
  const { responses } = challenge(ctx, data);
  assert.equal(responses.length, 1, 'one PATH_RESPONSE per PATH_CHALLENGE (RFC 9000 §8.2.2)');
  assert.deepEqual(responses[0], data);
});

test(
  'errors: the datagram carrying a PATH_RESPONSE is expanded to at least 1200 bytes (RFC 9000 §8.2.2)',
  {},
  () => {
    const ctx = established(184);
    const { sizes } = challenge(ctx, randomBytes(8));
    assert.equal(sizes.length, 1);
    assert.ok(sizes[0] >= 1200, `PATH_RESPONSE sent in a ${sizes[0]}-byte datagram`);
  },
);

// ------------------------------------------------------------------------------------------- one bad stream

test('errors: a reset / stopped stream leaves the other streams working byte-exactly', () => {
  const ctx = established(191);
  const { conn, net } = ctx;
  const a = conn.openStream(true)!;
  const b = conn.openStream(true)!;
  const dataA = randomBytes(300_000);
  const dataB = randomBytes(300_000);
  conn.streamWrite(a, dataA, true);
  conn.streamWrite(b, dataB, true);
  const gotB: Buffer[] = [];
  let resetDone = false;
  let finB = false;
  const ok = net.run(
    () => finB && ctx.sev.some((e) => e.type === 'stream_reset' && e.id === a) && ctx.sev.some((e) => e.type === 'stop_sending' && e.id === a),
    30_000,
    () => {
      ctx.tick();
      // Once the server has seen some of stream a, the client gives up on it in both directions.
      if (!resetDone && ctx.server.hasStream(a)) {
        resetDone = true;
        conn.streamReset(a, 0x42);
        conn.streamStopSending(a, 0x43);
      }
      readStream(ctx.server, a); // whatever arrived before the reset is discarded by the application
      const chunk = readStream(ctx.server, b);
      if (chunk.length) gotB.push(chunk);
      if (ctx.server.hasStream(b) && ctx.server.streamFinished(b)) finB = true;
    },
  );
  assert.ok(ok, `not done: finB=${finB} server events ${JSON.stringify(ctx.sev.filter((e) => e.type !== 'stream_readable'))}`);
  assert.ok(resetDone);
  const reset = ctx.sev.find((e) => e.type === 'stream_reset' && e.id === a);
  assert.deepEqual(reset, { type: 'stream_reset', id: a, code: 0x42 });
  const stop = ctx.sev.find((e) => e.type === 'stop_sending' && e.id === a);
  assert.deepEqual(stop, { type: 'stop_sending', id: a, code: 0x43 });
  assert.ok(Buffer.concat(gotB).equals(dataB), 'stream b arrived byte-exactly');
  // The other direction of b works too: the server answers and the client reads it.
  const answer = randomBytes(50_000);
  ctx.server.streamWrite(b, answer, true);
  const back: Buffer[] = [];
  const ok2 = net.run(() => conn.streamFinished(b) && Buffer.concat(back).length === answer.length, 30_000, () => {
    ctx.tick();
    const c = readStream(conn, b);
    if (c.length) back.push(c);
  });
  assert.ok(ok2, 'answer on stream b did not arrive');
  assert.ok(Buffer.concat(back).equals(answer));
  assert.equal(conn.state, 'established');
  assert.equal(ctx.server.state, 'established');
  assert.equal(conn.closeInfo, null);
  assert.equal(ctx.server.closeInfo, null);
});

// ------------------------------------------------------------------------------------------- Initial level

test('errors: a server Initial carrying MAX_DATA (1-RTT only) -> client closes with PROTOCOL_VIOLATION and says so in an Initial', () => {
  const { net, cep, conn } = pair(201);
  const first = cep.poll(net.now);
  assert.ok(first, 'the client sends its Initial');
  const ch = parseHeader(Buffer.from(first.data), 0, CID_LENGTH);
  assert.equal(ch.type, PacketType.Initial);
  const odcid = Buffer.from(ch.dcid);
  const clientScid = Buffer.from(ch.scid);
  const keys = initialKeys(odcid);

  // A server Initial (RFC 9000 §17.2.2) in a 1200-byte datagram: PADDING, then a MAX_DATA frame.
  const serverScid = randomBytes(CID_LENGTH);
  const frame = encode({ type: 'max_data', max: 1_000_000 });
  const pnLength = 4;
  const headerLen = 1 + 4 + 1 + clientScid.length + 1 + serverScid.length + 1 + 2 + pnLength;
  const payloadLen = 1200 - headerLen - AEAD_TAG;
  const buf = Buffer.alloc(1200);
  const { pnOffset, headerEnd } = writeLongHeader(buf, 0, PacketType.Initial, QUIC_V1, clientScid, serverScid, null, payloadLen + AEAD_TAG, 0, pnLength);
  assert.equal(headerEnd, headerLen);
  frame.copy(buf, headerEnd + payloadLen - frame.length);
  assert.equal(sealPacket(buf, 0, pnOffset, pnLength, headerEnd + payloadLen, 0, keys.server), 1200);
  cep.receive(buf, SERVER_ADDR, net.now);

  const info = conn.closeInfo;
  assert.ok(info, `client did not close: ${conn.state}`);
  assert.equal(info.by, 'local');
  assert.equal(info.application, false);
  assert.equal(info.code, E.PROTOCOL_VIOLATION);

  // The CONNECTION_CLOSE goes out in an Initial the (would-be) server can read.
  const closes: Frame[] = [];
  for (let t = cep.poll(net.now); t; t = cep.poll(net.now)) {
    const d = Buffer.from(t.data);
    for (let off = 0; off < d.length; ) {
      let h;
      try {
        h = parseHeader(d, off, CID_LENGTH);
      } catch {
        break;
      }
      off = h.end;
      if (h.type !== PacketType.Initial) continue;
      const u = removeHeaderProtection(d, h, keys.client.hp, 0);
      const pt = openPayload(d, h, u, keys.client.aead);
      assert.ok(pt, 'the client Initial authenticates with the client Initial keys');
      for (const f of parseFrames(pt, 'initial')) if (f.type === 'connection_close') closes.push(f);
    }
  }
  assert.equal(closes.length >= 1, true, 'a CONNECTION_CLOSE was sent');
  const c = closes[0];
  assert.equal(c.type, 'connection_close');
  if (c.type === 'connection_close') {
    assert.equal(c.application, false);
    assert.equal(c.errorCode, E.PROTOCOL_VIOLATION);
  }
});

// ------------------------------------------------------------------------------------------- version negotiation

test('errors: an unknown version in a 1200-byte datagram gets Version Negotiation listing v1 and creates no connection', () => {
  const sep = new Endpoint({ server: serverConfig() });
  const dcid = randomBytes(8);
  const scid = randomBytes(5);
  const dgram = Buffer.alloc(1200);
  dgram[0] = 0xc0;
  dgram.writeUInt32BE(0x1a2a3a4a, 1);
  dgram[5] = dcid.length;
  dcid.copy(dgram, 6);
  dgram[6 + dcid.length] = scid.length;
  scid.copy(dgram, 7 + dcid.length);
  assert.equal(sep.receive(dgram, CLIENT_ADDR, 0), null);
  const t = sep.poll(0);
  assert.ok(t, 'a Version Negotiation packet is sent');
  assert.deepEqual(t.to, CLIENT_ADDR);
  const h = parseHeader(t.data, 0, CID_LENGTH);
  assert.equal(h.type, PacketType.VersionNegotiation);
  assert.equal(h.version, 0);
  assert.ok(h.supportedVersions?.includes(QUIC_V1), `versions ${JSON.stringify(h.supportedVersions)}`);
  assert.ok(!h.supportedVersions?.includes(0x1a2a3a4a), 'the refused version is not listed');
  // §17.2.1: the client's SCID becomes the DCID and vice versa.
  assert.deepEqual(h.dcid, scid);
  assert.deepEqual(h.scid, dcid);
  assert.equal(sep.poll(0), null, 'exactly one packet');
  assert.equal(sep.connections.size, 0);
  assert.equal(sep.pollAccepted(), undefined);

  // Below 1200 bytes there is no answer at all (§6.1 / §14.1).
  assert.equal(sep.receive(dgram.subarray(0, 1199), CLIENT_ADDR, 0), null);
  assert.equal(sep.poll(0), null);
  assert.equal(sep.connections.size, 0);
});
