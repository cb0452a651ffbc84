/**
 * A closed connection leaves nothing behind in its endpoint (issue 10, memory returned when connections close): after
 * connections end in each way a connection can end (the client closes, the server closes, idle timeout on both
 * sides, a handshake refused for its ALPN), the server and client endpoints hold no entry for any of them: no
 * connection, no routed connection ID (cid-issuer), no deadline in the timer heap, nothing in the active or last-routed
 * slots, no closing record. The same endpoint then serves a new connection.
 *
 * While a connection closes or drains (RFC 9000 §10.2) the endpoint holds a ClosingRecord for it and not the
 * connection: the connection object (streams, recovery, TLS, keys) is garbage once the application lets go of it,
 * the record answers the peer's datagrams with the same CONNECTION_CLOSE, rate-limited, a draining one answers
 * nothing, and both go with their connection IDs when the period ends.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Endpoint } from '../../src/quic/endpoint.js';
import type { Connection } from '../../src/quic/connection.js';
import type { ClosingRecord } from '../../src/quic/closing-record.js';
import { SimNetwork } from './network.js';
import { CLIENT_ADDR, SERVER_ADDR, clientConfig, serverConfig } from './helpers.js';

/** The endpoint's per-connection tables, private fields read for this test only. */
function tables(ep: Endpoint): Record<string, number> {
  const e = ep as unknown as {
    active: Set<Connection>;
    timers: { size: number; index: Map<Connection, number>; items: Connection[] };
    lastConn: Connection | null;
    cids: { size: number; parkedSize: number; keysOf: Map<Connection, string[]> };
  };
  return {
    connections: ep.connections.size,
    cids: e.cids.size,
    cidOwners: e.cids.keysOf.size,
    active: e.active.size,
    timers: e.timers.size,
    timerIndex: e.timers.index.size,
    lastConn: e.lastConn === null ? 0 : 1,
    closing: ep.closingCount,
    parkedCids: e.cids.parkedSize,
  };
}

const EMPTY = { connections: 0, cids: 0, cidOwners: 0, active: 0, timers: 0, timerIndex: 0, lastConn: 0, closing: 0, parkedCids: 0 };
const ended = (ep: Endpoint): boolean => ep.connections.size === 0 && ep.closingCount === 0;

test('close release: connections closed by the client, by the server, by idle timeout and refused in the handshake leave no entry in either endpoint', () => {
  const net = new SimNetwork(71, { delay: 3 });
  const sep = new Endpoint({ server: serverConfig('ecdsa', { maxIdleTimeout: 600_000 }) });
  const cep = new Endpoint();
  net.attach(SERVER_ADDR, sep);
  net.attach({ address: '10.0.0.2', port: 50000 }, cep);
  const accepted: Connection[] = [];
  const accept = (): void => {
    for (let c = sep.pollAccepted(); c; c = sep.pollAccepted()) accepted.push(c);
  };

  const N = 8;
  const byClient: Connection[] = [];
  const byServer: Connection[] = [];
  const byIdle: Connection[] = [];
  for (let i = 0; i < N; i++) byClient.push(cep.connect(clientConfig({ maxIdleTimeout: 600_000 }), SERVER_ADDR, net.now));
  for (let i = 0; i < N; i++) byServer.push(cep.connect(clientConfig({ maxIdleTimeout: 600_000 }), SERVER_ADDR, net.now));
  // The idle timeout in effect is the smaller of the two sides' (RFC 9000 §10.1).
  for (let i = 0; i < N; i++) byIdle.push(cep.connect(clientConfig({ maxIdleTimeout: 2000 }), SERVER_ADDR, net.now));
  const refused = cep.connect(clientConfig({ alpn: ['no-such-protocol'] }), SERVER_ADDR, net.now);
  const all = [...byClient, ...byServer, ...byIdle];
  assert.ok(net.run(() => all.every((c) => c.isHandshakeComplete) && refused.closeInfo !== null, 10_000, accept), 'handshakes');
  assert.match(refused.closeInfo?.reason ?? '', /alpn|protocol/i, 'the refused one was refused for its ALPN');
  // A stream on every connection, so that stream state exists when they close.
  for (const c of all) {
    const id = c.openStream(true)!;
    c.streamWrite(id, Buffer.alloc(3000, 1), false);
  }
  net.run(() => false, 1000, accept);
  assert.ok(sep.connections.size >= 3 * N, `the server holds the established connections (${sep.connections.size})`);
  assert.ok(tables(sep).cids >= 3 * N, 'their connection IDs are routed');

  for (const c of byClient) c.close(0, 'client done', true, net.now);
  // A server connection has the original destination connection ID its client chose.
  const serverSide = (c: Connection): Connection => {
    const s = accepted.find((a) => a.originalDcid.equals(c.originalDcid));
    assert.ok(s, 'server side of a connection');
    return s;
  };
  for (const c of byServer) serverSide(c).close(0, 'server done', true, net.now);
  assert.ok(
    net.run(() => ended(sep) && ended(cep), 30_000, accept),
    `every connection ended: server ${sep.connections.size} (+${sep.closingCount} closing), client ${cep.connections.size} (+${cep.closingCount} closing) left`,
  );
  for (const c of all) assert.equal(c.state, 'closed');
  assert.deepEqual(
    byIdle.map((c) => c.closeInfo?.by),
    byIdle.map(() => 'idle'),
    'the short-timeout ones ended by idle timeout',
  );
  assert.deepEqual(tables(sep), EMPTY, 'server endpoint');
  assert.deepEqual(tables(cep), EMPTY, 'client endpoint');
  assert.equal(sep.nextTimeout(), null, 'no timer armed on the server');
  assert.equal(cep.nextTimeout(), null, 'no timer armed on the client');

  // The same endpoints serve a new connection afterwards.
  const again = cep.connect(clientConfig(), SERVER_ADDR, net.now);
  assert.ok(net.run(() => again.isHandshakeComplete, 5000, accept), 'a new connection');
  assert.equal(sep.connections.size, 1);
});

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** The endpoint's closing records (private; read for this test only). */
const records = (ep: Endpoint): ClosingRecord[] => (ep as unknown as { closing: { items: ClosingRecord[] } }).closing.items;

/**
 * Runs the handshake of `c`, a stream with data both ways, then closes the server's side; its CONNECTION_CLOSE is built
 * (returned) but never reaches the client. In a function of its own, so that no variable of the test holds the server
 * connection afterwards.
 */
function serverCloses(net: SimNetwork, sep: Endpoint, c: Connection): { weak: WeakRef<Connection>; close: Buffer } {
  let sc: Connection | undefined;
  const take = (): void => {
    for (let a = sep.pollAccepted(); a; a = sep.pollAccepted()) sc = a;
  };
  assert.ok(net.run(() => c.isHandshakeComplete && sc !== undefined, 5000, take), 'handshake');
  const id = c.openStream(true)!;
  c.streamWrite(id, Buffer.alloc(3000, 7), false);
  net.run(() => false, 300, take);
  assert.ok(sc!.hasStream(id), 'the server has the stream');
  sc!.streamWrite(id, Buffer.alloc(2000, 8), false);
  net.run(() => false, 300, take);
  sc!.close(0x101, 'server done', true, net.now);
  const tx = sep.poll(net.now);
  assert.ok(tx, 'the server sends its CONNECTION_CLOSE');
  assert.equal(sc!.state, 'closing');
  return { weak: new WeakRef(sc!), close: Buffer.from(tx.data) };
}

test('close release: a closing connection is a record holding no connection state; it repeats its CONNECTION_CLOSE to the 1st, 2nd, 4th, 8th datagram, a draining one answers nothing, and both are gone after their period', async () => {
  const net = new SimNetwork(72, { delay: 5 });
  const sep = new Endpoint({ server: serverConfig('ecdsa', { maxIdleTimeout: 600_000 }) });
  const cep = new Endpoint();
  net.attach(SERVER_ADDR, sep);
  net.attach(CLIENT_ADDR, cep);
  // The client's datagrams, copied as sent (the receiver unprotects in place).
  const fromClient: Buffer[] = [];
  const clientPoll = cep.poll.bind(cep);
  cep.poll = (now) => {
    const t = clientPoll(now);
    if (t) fromClient.push(Buffer.from(t.data));
    return t;
  };
  const c = cep.connect(clientConfig({ maxIdleTimeout: 600_000 }), SERVER_ADDR, net.now);
  const { weak, close } = serverCloses(net, sep, c);
  assert.equal(sep.connections.size, 0, 'the endpoint no longer holds the connection');
  assert.equal(sep.closingCount, 1, 'it holds a closing record');
  assert.equal(sep.cids.size, 0);
  assert.ok(sep.cids.parkedSize >= 2, `its connection IDs route to the record (${sep.cids.parkedSize})`);
  const rec = records(sep)[0];
  assert.ok(rec.close?.equals(close), 'the record keeps the CONNECTION_CLOSE datagram');
  for (const [k, v] of Object.entries(rec)) {
    const small = v === null || typeof v === 'number' || Buffer.isBuffer(v) || v instanceof WeakRef || (Array.isArray(v) && v.every((x) => typeof x === 'string')) || (k === 'remote' && Object.keys(v as object).sort().join() === 'address,port');
    assert.ok(small, `record field ${k} holds only what RFC 9000 §10.2 needs`);
  }
  // Nothing but the application held the connection: streams, recovery, TLS and keys are garbage now.
  sep.touched.clear(); // as the driver does after each pass
  await new Promise((r) => setImmediate(r));
  gc();
  assert.equal(weak!.deref(), undefined, 'the closing connection object was collected');

  // The client's datagrams keep coming (it never heard the close): the same CONNECTION_CLOSE goes back, rate-limited.
  const probe = [...fromClient].reverse().find((d) => (d[0] & 0x80) === 0);
  assert.ok(probe, 'a short-header datagram of the client');
  const answered: number[] = [];
  const replies: Buffer[] = [];
  for (let i = 1; i <= 10; i++) {
    assert.equal(sep.receive(Buffer.from(probe), CLIENT_ADDR, net.now + i), null);
    for (let t = sep.poll(net.now + i); t; t = sep.poll(net.now + i)) {
      answered.push(i);
      replies.push(t.data);
      assert.deepEqual(t.to, CLIENT_ADDR);
    }
  }
  assert.deepEqual(answered, [1, 2, 4, 8], 'answered the 1st, 2nd, 4th and 8th datagram');
  for (const r of replies) assert.ok(r.equals(close), 'the same CONNECTION_CLOSE datagram');
  assert.equal(sep.stats.closingDatagrams, 10);
  assert.equal(sep.stats.closingReplies, 4);
  assert.equal(sep.connections.size, 0, 'no connection was made for them');

  // The client hears the close, with the server's code and reason, and drains: a record on its side that sends nothing.
  cep.receive(Buffer.from(replies[0]), SERVER_ADDR, net.now + 20);
  assert.equal(c.closeInfo?.by, 'peer');
  assert.equal(c.closeInfo?.code, 0x101);
  assert.equal(c.closeInfo?.reason, 'server done');
  assert.equal(c.state, 'draining');
  assert.equal(cep.connections.size, 0);
  assert.equal(cep.closingCount, 1);
  assert.equal(records(cep)[0].draining, true);
  cep.receive(Buffer.from(replies[1]), SERVER_ADDR, net.now + 21);
  assert.equal(cep.poll(net.now + 21), null, 'a draining connection sends nothing');
  assert.equal(cep.stats.closingDatagrams, 1);
  assert.equal(cep.stats.closingReplies, 0);

  // The periods end: nothing is left, and later datagrams to those IDs are dropped.
  const sEnd = rec.deadline;
  const cEnd = records(cep)[0].deadline;
  sep.handleTimeout(sEnd - 1);
  assert.equal(sep.closingCount, 1, 'the record stays for its whole period');
  sep.handleTimeout(sEnd);
  cep.handleTimeout(cEnd);
  assert.deepEqual(tables(sep), EMPTY, 'server endpoint after the closing period');
  assert.deepEqual(tables(cep), EMPTY, 'client endpoint after the draining period');
  assert.equal(sep.nextTimeout(), null);
  assert.equal(cep.nextTimeout(), null);
  assert.equal(c.state, 'closed', 'a connection the application still holds is closed when its period ends');
  const dropped = sep.stats.dropped;
  sep.receive(Buffer.from(probe), CLIENT_ADDR, sEnd + 1);
  assert.equal(sep.poll(sEnd + 1), null, 'nothing answers after the period');
  assert.equal(sep.stats.dropped, dropped + 1);
  assert.equal(sep.stats.closingDatagrams, 10);
});

test('close release: a closing record sends no more than three times what it received while the address is not validated', async () => {
  const { ClosingRecord } = await import('../../src/quic/closing-record.js');
  const conn = { handleTimeout: (): void => {} };
  const r = new ClosingRecord(conn, [], CLIENT_ADDR, 100, Buffer.alloc(100), 0);
  assert.equal(r.onDatagram(20), null, '3 x 20 bytes received < 100');
  assert.equal(r.onDatagram(20)?.length, 100, '3 x 40 >= 100');
  assert.equal(r.onDatagram(1000), null, 'the 3rd datagram is not answered (rate limit)');
  assert.equal(r.onDatagram(10)?.length, 100, 'the 4th is');
  const validated = new ClosingRecord(conn, [], CLIENT_ADDR, 100, Buffer.alloc(100), Infinity);
  assert.equal(validated.onDatagram(1)?.length, 100, 'a validated address has no such limit');
});
