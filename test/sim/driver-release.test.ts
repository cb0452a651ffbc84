/**
 * The I/O driver lets go of a connection's handle (src/io/udp.ts QuicConnection: its streams, and through its
 * listeners the layers above) as soon as the close was delivered, while the connection itself still lingers through
 * its draining period (RFC 9000 §10.2) as a closing record in the endpoint (not the connection itself); the endpoint
 * drops the record when that period ends, and closing the endpoint still waits for it. Simulated network and clock (test/sim/runtime.ts).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { UdpEndpoint, type QuicConnection, type QuicStream } from '../../src/io/udp.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import { CERTS } from './helpers.js';
import { SimUdpNetwork, VirtualClock } from './runtime.js';

const SERVER = { address: '127.0.0.1', port: 4433 };

/** The driver's handle map (private; read for this test only). */
const handles = (ep: UdpEndpoint): number => (ep as unknown as { handles: Map<unknown, unknown> }).handles.size;

test('driver release: the handle of a closed connection goes at once; the draining connection stays until its period ends', { timeout: 30_000 }, async () => {
  const clock = new VirtualClock();
  const net = new SimUdpNetwork(5, { delay: 20 }, clock);
  const server = await UdpEndpoint.open({
    bind: [SERVER],
    runtime: net.runtime,
    server: {
      alpn: ['test'],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
    },
  });
  const client = await UdpEndpoint.open({ runtime: net.runtime });
  const accepted = once(server, 'connection') as Promise<[QuicConnection]>;
  const c = client.connect({ alpn: ['test'], serverName: 'localhost', ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')) }, SERVER);
  await c.ready;
  const [sc] = await accepted;
  // A stream with data both ways, so the handle has something to hold.
  const gotStream = once(sc, 'stream') as Promise<[QuicStream]>;
  const s = await c.openStream();
  s.write(Buffer.alloc(5000, 1));
  const [ss] = await gotStream;
  await once(ss, 'data');
  assert.equal(handles(server), 1);

  const closed = once(sc, 'close');
  c.close(0, 'bye');
  await closed;
  await clock.sleep(1); // the dispatch after the event
  const core = sc.conn;
  assert.equal(core.state, 'draining', 'the server connection drains after the peer closed');
  assert.equal(handles(server), 0, 'the driver no longer holds the handle of a connection whose close it delivered');
  // The endpoint keeps a closing record for it (its connection IDs route there), not the connection (RFC 9000 §10.2).
  assert.equal(server.endpoint.connections.has(core), false, 'the endpoint no longer holds the draining connection');
  assert.equal(server.endpoint.closingCount, 1, 'the endpoint keeps a record of the draining connection');
  assert.ok(server.endpoint.cids.parkedSize >= 1, 'its connection IDs still route (to the record)');

  // Three PTOs later the endpoint forgets the record too.
  for (let i = 0; i < 100 && server.endpoint.closingCount > 0; i++) await clock.sleep(100);
  assert.equal(core.state, 'closed', 'the connection (still held here) is closed when the period ends');
  assert.equal(server.endpoint.connections.size, 0);
  assert.equal(server.endpoint.closingCount, 0);
  assert.equal(server.endpoint.cids.size, 0, 'no connection ID routed');
  assert.equal(server.endpoint.cids.parkedSize, 0, 'no connection ID routed to a record');
  await client.close(0, 'done', 2000);
  await server.close(0, 'done', 2000);
});

test('driver release: endpoint close right after the client finished its handshake waits for the closing connection, which stays closing', { timeout: 30_000 }, async () => {
  const clock = new VirtualClock();
  const net = new SimUdpNetwork(6, { delay: 30 }, clock);
  const server = await UdpEndpoint.open({
    bind: [SERVER],
    runtime: net.runtime,
    server: {
      alpn: ['test'],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
    },
  });
  const client = await UdpEndpoint.open({ runtime: net.runtime });
  const c = client.connect({ alpn: ['test'], serverName: 'localhost', ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')) }, SERVER);
  await c.ready;
  const peerClosed = once(c, 'close') as Promise<[{ by: string; code: number }]>;
  const t0 = clock.now();
  await server.close(0, 'server going away', 5000);
  const waited = clock.now() - t0;
  const [info] = await peerClosed;
  assert.equal(info.by, 'peer', 'the client heard the server close');
  // Closed before the server's handshake completed: sent as the transport's APPLICATION_ERROR (RFC 9000 §10.2.3).
  assert.equal(info.code, 0x0c);
  assert.equal(server.endpoint.connections.size, 0, 'the endpoint closed its sockets only after its connection ended');
  assert.equal(server.endpoint.closingCount, 0, 'and its closing period');
  // The client's Finished reached a server connection already closing: it did not become established again.
  assert.ok(waited >= 60, `close() waited through the closing period (${waited} ms of simulated time)`);
  await client.close(0, 'done', 2000);
});
