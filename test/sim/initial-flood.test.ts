/**
 * No state from a packet that has not decrypted (issue 8, defect 7), and per-turn endpoint work that follows the
 * connections with something to do, not the number open:
 * - Initials whose payload does not decrypt under the Initial keys of their DCID (RFC 9001 §5.2) create no
 *   connection, send nothing and are counted; a real client still connects afterwards.
 * - A client's first Initial with one bit flipped is dropped without a trace; its retransmission starts the
 *   connection with the client's true source connection ID (RFC 9000 §7.2), about one PTO later.
 * - With hundreds of idle connections open, the connections the server endpoint visits per turn (polls, timer
 *   queries, timeouts: Endpoint.stats.connectionVisits) stay a handful during a bulk transfer.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Endpoint } from '../../src/quic/endpoint.js';
import type { Connection } from '../../src/quic/connection.js';
import { PacketType, parseHeader } from '../../src/quic/packet/header.js';
import { QUIC_V1 } from '../../src/quic/types.js';
import { prng } from '../util/prng.js';
import { SimNetwork } from './network.js';
import { CLIENT_ADDR, SERVER_ADDR, clientConfig, pair, serverConfig } from './helpers.js';

/** A 1200-byte v1 Initial with a random DCID (8-20 bytes) and SCID, a valid header, and a payload of noise. */
function garbageInitial(rand: () => number): Buffer {
  const dl = 8 + Math.floor(rand() * 13);
  const sl = Math.floor(rand() * 21);
  const d = randomBytes(1200);
  d[0] = 0xc0 | (d[0] & 0x0f); // long header, fixed bit, Initial; the protected low bits stay random
  d.writeUInt32BE(QUIC_V1, 1);
  d[5] = dl;
  d[6 + dl] = sl;
  let p = 7 + dl + sl;
  d[p++] = 0; // no token
  d.writeUInt16BE(0x4000 | (1200 - p - 2), p); // Length to the end of the datagram
  return d;
}

test('initial flood: 1,000 undecryptable Initials create no connection, send nothing, are counted; a real client still connects', () => {
  const net = new SimNetwork(31);
  const sep = new Endpoint({ server: serverConfig() });
  net.attach(SERVER_ADDR, sep);
  const rand = prng(99);
  for (let i = 0; i < 1000; i++) {
    const from = { address: `10.9.${(i >> 8) & 0xff}.${i & 0xff}`, port: 1024 + i };
    assert.equal(sep.receive(garbageInitial(rand), from, net.now), null);
  }
  assert.equal(sep.connections.size, 0, 'no connection was created');
  assert.equal(sep.pollAccepted(), undefined);
  assert.equal(sep.poll(net.now), null, 'nothing was sent');
  assert.equal(sep.nextTimeout(), null, 'no timer is armed');
  assert.equal(sep.stats.undecryptableInitials, 1000);

  const cep = new Endpoint();
  net.attach(CLIENT_ADDR, cep);
  const conn = cep.connect(clientConfig(), SERVER_ADDR, net.now);
  let server: Connection | undefined;
  assert.ok(net.run(() => conn.isHandshakeComplete && !!server?.isHandshakeComplete, 5000, () => (server ??= sep.pollAccepted())), 'handshake');
  assert.equal(sep.connections.size, 1);
  assert.equal(sep.stats.undecryptableInitials, 1000);
});

for (const where of ['scid', 'payload'] as const) {
  test(`initial flood: a first Initial with one flipped bit (${where}) leaves no trace; the retransmission connects with the true SCID`, () => {
    const { net, sep, cep, conn } = pair(41);
    let first = true;
    let trueScid: Buffer | null = null;
    const poll = cep.poll.bind(cep);
    cep.poll = (now: number) => {
      const t = poll(now);
      if (t && first) {
        first = false;
        const h = parseHeader(Buffer.from(t.data), 0, 8);
        assert.equal(h.type, PacketType.Initial);
        trueScid = Buffer.from(h.scid);
        const scidAt = 7 + h.dcid.length;
        const bit = where === 'scid' ? scidAt * 8 + 3 : (h.end - 40) * 8 + 5;
        const data = Buffer.from(t.data);
        data[bit >> 3] ^= 1 << (bit & 7);
        return { ...t, data };
      }
      return t;
    };
    // The corrupted datagram arrives and is dropped.
    assert.ok(net.run(() => sep.stats.datagramsIn >= 1, 1000));
    assert.equal(sep.connections.size, 0, 'the corrupted Initial created no connection');
    assert.equal(sep.stats.undecryptableInitials, 1);
    assert.equal(sep.poll(net.now), null);

    let server: Connection | undefined;
    const ok = net.run(() => conn.isHandshakeComplete && !!server?.isHandshakeComplete, 10_000, () => (server ??= sep.pollAccepted()));
    assert.ok(ok, `handshake did not complete: client ${conn.state} ${JSON.stringify(conn.closeInfo)}`);
    // One PTO (3 x the initial RTT of 333 ms) for the retransmission, then one round trip: well under 2 s.
    assert.ok(net.now < 2000, `handshake completed at ${net.now} ms of simulated time`);
    const peer = (server as unknown as { dcid: Buffer }).dcid;
    assert.deepEqual(peer, trueScid, 'the server talks to the SCID of the Initial that decrypted');
    assert.equal(sep.connections.size, 1);
  });
}

test('initial flood: with 300 idle connections open, the server visits a handful of connections per turn of a bulk transfer', () => {
  const IDLE = 300;
  const net = new SimNetwork(51, { delay: 2 });
  const sep = new Endpoint({ server: serverConfig('ecdsa', { maxIdleTimeout: 600_000 }) });
  net.attach(SERVER_ADDR, sep);
  const idleEp = new Endpoint();
  net.attach({ address: '10.0.0.3', port: 40000 }, idleEp);
  const idle: Connection[] = [];
  for (let i = 0; i < IDLE; i++) idle.push(idleEp.connect(clientConfig({ maxIdleTimeout: 600_000 }), SERVER_ADDR, net.now));
  const drainAccepted = (): void => {
    while (sep.pollAccepted()) {
      // idle: the server application does nothing with them
    }
  };
  assert.ok(net.run(() => idle.every((c) => c.isHandshakeComplete), 30_000, drainAccepted), 'the idle connections are established');
  net.run(() => false, 3000, drainAccepted); // handshake confirmation, NEW_CONNECTION_ID, PMTU probes settle
  assert.equal(sep.connections.size, IDLE);

  const cep = new Endpoint();
  net.attach(CLIENT_ADDR, cep);
  const conn = cep.connect(clientConfig(), SERVER_ADDR, net.now);
  let server: Connection | undefined;
  assert.ok(net.run(() => conn.isHandshakeComplete && !!server, 5000, () => (server ??= sep.pollAccepted())), 'the bulk connection is established');
  const size = 4 * 1024 * 1024;
  const id = conn.openStream(true)!;
  conn.streamWrite(id, Buffer.alloc(size, 7), true);
  let got = 0;
  let turns = 0;
  const nextTimeout = sep.nextTimeout.bind(sep);
  sep.nextTimeout = () => {
    turns++;
    return nextTimeout();
  };
  const visits0 = sep.stats.connectionVisits;
  const ok = net.run(() => got === size, 60_000, () => {
    if (!server) return;
    for (let e = server.pollEvent(); e; e = server.pollEvent()) void e;
    for (let b = server.streamRead(id); b; b = server.streamRead(id)) got += b.length;
  });
  assert.ok(ok, `transfer did not finish: ${got} of ${size}`);
  const perTurn = (sep.stats.connectionVisits - visits0) / turns;
  console.log(`${perTurn.toFixed(2)} connections visited per turn over ${turns} turns, ${IDLE} idle connections open`);
  assert.ok(turns > 100, `${turns} turns`);
  assert.ok(perTurn < 5, `${perTurn.toFixed(1)} connections visited per turn with ${IDLE} idle connections open`);
  assert.equal(sep.connections.size, IDLE + 1);
});
