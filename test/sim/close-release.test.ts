/**
 * A closed connection leaves nothing behind in its endpoint (issue 10, memory returned when connections close): after
 * connections end in each way a connection can end (the client closes, the server closes, idle timeout on both
 * sides, a handshake refused for its ALPN), the server and client endpoints hold no entry for any of them: no
 * connection, no routed connection ID (cid-issuer), no deadline in the timer heap, nothing in the active or last-routed
 * slots. The same endpoint then serves a new connection.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Endpoint } from '../../src/quic/endpoint.js';
import type { Connection } from '../../src/quic/connection.js';
import { SimNetwork } from './network.js';
import { SERVER_ADDR, clientConfig, serverConfig } from './helpers.js';

/** The endpoint's per-connection tables, private fields read for this test only. */
function tables(ep: Endpoint): Record<string, number> {
  const e = ep as unknown as {
    active: Set<Connection>;
    timers: { size: number; index: Map<Connection, number>; items: Connection[] };
    lastConn: Connection | null;
    cids: { size: number; keysOf: Map<Connection, string[]> };
  };
  return {
    connections: ep.connections.size,
    cids: e.cids.size,
    cidOwners: e.cids.keysOf.size,
    active: e.active.size,
    timers: e.timers.size,
    timerIndex: e.timers.index.size,
    lastConn: e.lastConn === null ? 0 : 1,
  };
}

const EMPTY = { connections: 0, cids: 0, cidOwners: 0, active: 0, timers: 0, timerIndex: 0, lastConn: 0 };

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
    net.run(() => sep.connections.size === 0 && cep.connections.size === 0, 30_000, accept),
    `every connection ended: server ${sep.connections.size}, client ${cep.connections.size} left`,
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
