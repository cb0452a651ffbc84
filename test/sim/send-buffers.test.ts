/**
 * The buffers datagrams are handed out in (src/quic/connection/scratch.ts: views of a shared slab, no copy): a
 * datagram handed out is never written again while the caller holds it, as node:dgram holds each until its send is
 * done. The server's datagrams of a download are all held (a snapshot taken of each as it is polled) before any is
 * delivered; each must still match its snapshot, and the client must open every one and get the bytes intact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Endpoint } from '../../src/quic/endpoint.js';
import type { Connection } from '../../src/quic/connection.js';
import { CLIENT_ADDR, clientConfig, SERVER_ADDR, serverConfig } from './helpers.js';
import { randomData } from '../util/data.js';

test('download: datagrams held across many polls (several scratch slabs) stay intact and all decrypt', () => {
  const SIZE = 3_000_000;
  const data = randomData(7, SIZE);
  // Two servers of datagram sizes that do not divide the slab (and the client's own, smaller ones, in between).
  for (const maxDatagramSize of [1452, 1350, 9000]) {
    const server = new Endpoint({ server: serverConfig('ecdsa', { maxDatagramSize }) });
    const client = new Endpoint();
    let now = 1000;
    const conn = client.connect(clientConfig({ maxDatagramSize }), SERVER_ADDR, now);
    let serverConn: Connection | null = null;
    let sid: number | null = null;
    let written = false;
    const chunks: Buffer[] = [];
    let got = 0;
    let fin = false;
    let held = 0;
    let maxHeld = 0;
    for (let turn = 0; turn < 20_000 && !fin; turn++) {
      // Client: the request once the handshake is done, then what arrived.
      if (sid === null && conn.isHandshakeComplete) {
        sid = conn.openStream(true);
        conn.streamWrite(sid!, Buffer.from('GET'), true);
      }
      for (let e = conn.pollEvent(); e; e = conn.pollEvent()) {
        if (e.type !== 'stream_readable') continue;
        for (let b = conn.streamRead(e.id); b; b = conn.streamRead(e.id)) {
          chunks.push(Buffer.from(b));
          got += b.length;
        }
        if (conn.streamFinished(e.id)) fin = true;
      }
      for (let t = client.poll(now); t; t = client.poll(now)) server.receive(Buffer.from(t.data), CLIENT_ADDR, now);
      // Server: answer the stream with all of `data`, then hold every datagram it sends this turn.
      serverConn ??= server.pollAccepted() ?? null;
      if (serverConn !== null) {
        for (let e = serverConn.pollEvent(); e; e = serverConn.pollEvent()) {
          if (e.type === 'stream_open' && !written) {
            while (serverConn.streamRead(e.id)) {
              // the request: dropped
            }
            serverConn.streamWrite(e.id, data, true);
            written = true;
          }
        }
      }
      const out: { d: Buffer; copy: Buffer }[] = [];
      for (let t = server.poll(now); t; t = server.poll(now)) {
        out.push({ d: t.data, copy: Buffer.from(t.data) });
        // An ACK-only datagram from the connection in between takes its own piece of the scratch as well.
        if (out.length % 16 === 0 && serverConn !== null) {
          const ack = serverConn.pollAckOnly(now);
          if (ack) out.push({ d: ack, copy: Buffer.from(ack) });
        }
      }
      maxHeld = Math.max(maxHeld, out.length);
      for (const { d, copy } of out) assert.ok(d.equals(copy), `a held datagram (${d.length} bytes) was overwritten`);
      held += out.length;
      for (const { d } of out) client.receive(d, SERVER_ADDR, now);
      now += 1;
      const next = Math.min(client.nextTimeout() ?? Infinity, server.nextTimeout() ?? Infinity);
      if (out.length === 0 && next <= now + 1000) {
        now = Math.max(now, next);
        client.handleTimeout(now);
        server.handleTimeout(now);
      }
    }
    assert.ok(fin, `download incomplete with ${maxDatagramSize}-byte datagrams: ${got} of ${SIZE} bytes`);
    assert.equal(got, SIZE);
    assert.equal(createHash('sha256').update(Buffer.concat(chunks)).digest('hex'), createHash('sha256').update(data).digest('hex'));
    // Enough held at once to span several 64 KiB slabs, and nothing the client could not open.
    assert.ok(maxHeld * maxDatagramSize > 4 * 65536, `only ${maxHeld} datagrams held at once`);
    assert.ok(held >= SIZE / maxDatagramSize);
    assert.equal(conn.stats.undecryptable, 0);
    assert.equal(conn.stats.packetsLost, 0);
  }
});
