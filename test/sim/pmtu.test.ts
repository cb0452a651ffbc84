import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pair } from './helpers.js';
import type { Connection } from '../../src/quic/connection.js';

/** Runs a connection for a while after the handshake with some data flowing, and returns both ends. */
function settle(mtu: number | undefined, ceiling: number, download = 0) {
  const { net, sep, conn } = pair(11, { delay: 5, mtu }, { maxDatagramSize: ceiling }, { maxDatagramSize: ceiling });
  let server: Connection | undefined;
  let sid: number | null = null;
  let got = 0;
  net.run(
    () => false,
    3000,
    () => {
      server ??= sep.pollAccepted();
      if (sid === null && conn.isHandshakeComplete) {
        sid = conn.openStream(true);
        conn.streamWrite(sid!, Buffer.alloc(300_000, 1), true);
      }
      while (conn.pollEvent());
      if (server)
        for (let e = server.pollEvent(); e; e = server.pollEvent()) {
          if (e.type !== 'stream_readable') continue;
          for (let b = server.streamRead(e.id); b; b = server.streamRead(e.id)) got += b.length;
          if (download > 0 && server.streamFinished(e.id)) server.streamWrite(e.id, Buffer.alloc(download, 2), true);
        }
    },
  );
  return { conn, server: server!, got, net };
}

test('pmtu: probes raise the datagram size to the ceiling when the path carries it', () => {
  const { conn, server, got } = settle(undefined, 8192);
  assert.equal(got, 300_000);
  assert.equal(conn.datagramSize, 8192);
  // The server sent its handshake and ACKs only: it has no use for larger datagrams and does not probe.
  assert.equal(server.datagramSize, 1200);
  assert.equal(conn.state, 'established');
});

test('pmtu: a side starts probing once it sends more than its handshake (32 KB)', () => {
  const { conn, server, got } = settle(undefined, 8192, 100_000);
  assert.equal(got, 300_000);
  assert.equal(conn.datagramSize, 8192);
  assert.equal(server.datagramSize, 8192);
});

test('pmtu: a path that drops datagrams above 4500 bytes settles at the largest size that passes', () => {
  const { conn, got, net } = settle(4500, 16384);
  assert.equal(got, 300_000);
  assert.equal(conn.datagramSize, 4096);
  assert.ok(net.stats.lost > 0, 'the larger probes were dropped');
  assert.equal(conn.state, 'established');
});

test('pmtu: without room above 1200 bytes nothing is probed', () => {
  const { conn, got, net } = settle(1200, 16384);
  assert.equal(got, 300_000);
  assert.equal(conn.datagramSize, 1200);
  assert.equal(conn.state, 'established');
  assert.ok(net.stats.lost >= 3, 'the 1452-byte probe was tried three times');
});
