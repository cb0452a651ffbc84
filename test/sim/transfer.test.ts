import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { clientConfig, pair, SERVER_ADDR, serverConfig } from './helpers.js';
import { SimNetwork, type LinkOptions } from './network.js';
import { Endpoint } from '../../src/quic/endpoint.js';
import type { Connection } from '../../src/quic/connection.js';
import { randomData } from '../util/data.js';

const sha = (b: Buffer | Buffer[]): string => {
  const h = createHash('sha256');
  for (const x of Array.isArray(b) ? b : [b]) h.update(x);
  return h.digest('hex');
};

interface Received {
  chunks: Buffer[];
  bytes: number;
  fin: boolean;
}

/** Reads everything readable from a connection's streams into `into`. */
function readAll(c: Connection, into: Map<number, Received>, onOpen?: (id: number) => void): void {
  for (let e = c.pollEvent(); e; e = c.pollEvent()) {
    if (e.type === 'stream_open') onOpen?.(e.id);
    if (e.type !== 'stream_readable' && e.type !== 'stream_open') continue;
    const id = e.id;
    let r = into.get(id);
    if (!r) into.set(id, (r = { chunks: [], bytes: 0, fin: false }));
    for (let b = c.streamRead(id); b; b = c.streamRead(id)) {
      r.chunks.push(b);
      r.bytes += b.length;
    }
    if (c.streamFinished(id)) r.fin = true;
  }
}

/** The client uploads `size` bytes on one stream; the server echoes the SHA-256 back. */
function upload(seed: number, link: LinkOptions, size: number, maxTime: number) {
  const { net, sep, conn } = pair(seed, link);
  const data = randomData(seed, size);
  let server: Connection | undefined;
  const got = new Map<number, Received>();
  let sid: number | null = null;
  const ok = net.run(
    () => got.get(0)?.fin === true,
    maxTime,
    () => {
      server ??= sep.pollAccepted();
      if (sid === null && conn.isHandshakeComplete) {
        sid = conn.openStream(true);
        conn.streamWrite(sid!, data, true);
      }
      for (let e = conn.pollEvent(); e; e = conn.pollEvent()) void e;
      if (server) readAll(server, got);
    },
  );
  return { ok, net, conn, server, data, got };
}

for (const loss of [0, 0.05, 0.2]) {
  test(`sim: 10 MB upload arrives byte-identical at ${loss * 100}% loss with reordering and duplication`, () => {
    const size = 10 * 1024 * 1024;
    const { ok, net, data, got, conn, server } = upload(7 + loss * 100, { delay: 5, reorder: 0.02, loss, duplicate: 0.01 }, size, 600_000);
    assert.ok(ok, `transfer did not finish: client ${conn.state} ${JSON.stringify(conn.closeInfo)}, server ${server?.state} ${JSON.stringify(server?.closeInfo)}, got ${got.get(0)?.bytes}`);
    const r = got.get(0)!;
    assert.equal(r.bytes, size);
    assert.equal(sha(r.chunks), sha(data));
    if (loss > 0) assert.ok(net.stats.lost > 0, 'the network lost packets');
    assert.equal(conn.state, 'established');
  });
}

test('sim: a connection survives a 2-second blackout and finishes the transfer', () => {
  const size = 2 * 1024 * 1024;
  const { ok, got, data, conn, net } = upload(99, { delay: 10, blackouts: [[60, 2060]] }, size, 120_000);
  assert.ok(ok, `transfer did not finish: ${conn.state} ${JSON.stringify(conn.closeInfo)}`);
  assert.ok(net.stats.lost > 0, 'the blackout dropped packets');
  assert.equal(sha(got.get(0)!.chunks), sha(data));
  assert.equal(conn.state, 'established');
});

test('sim: many streams at once in both directions with flow control respected', () => {
  const { net, sep, conn } = pair(5, { delay: 5, reorder: 0.02, loss: 0.02 }, { initialMaxStreamDataBidiRemote: 64 * 1024, initialMaxData: 512 * 1024 });
  let server: Connection | undefined;
  const atServer = new Map<number, Received>();
  const atClient = new Map<number, Received>();
  const sizes = new Map<number, number>();
  const STREAMS = 40;
  let opened = false;
  const answered = new Set<number>();
  const ok = net.run(
    () => opened && [...sizes.keys()].every((id) => atClient.get(id)?.fin),
    300_000,
    () => {
      server ??= sep.pollAccepted();
      if (!opened && conn.isHandshakeComplete) {
        opened = true;
        for (let i = 0; i < STREAMS; i++) {
          const id = conn.openStream(true)!;
          const size = 1000 + i * 7919;
          sizes.set(id, size);
          conn.streamWrite(id, randomData(id + 1, size), true);
        }
      }
      readAll(conn, atClient);
      if (server) {
        readAll(server, atServer);
        for (const [id, r] of atServer) {
          if (r.fin && !answered.has(id)) {
            answered.add(id);
            // Answer with the request reversed and doubled: a different size in the other direction.
            const body = Buffer.concat(r.chunks);
            server.streamWrite(id, Buffer.concat([body, body]).reverse(), true);
          }
        }
      }
    },
  );
  assert.ok(ok, `not all streams finished: ${[...sizes.keys()].filter((id) => !atClient.get(id)?.fin).length} open; client ${conn.state} ${JSON.stringify(conn.closeInfo)}`);
  for (const [id, size] of sizes) {
    const sent = randomData(id + 1, size);
    assert.equal(sha(atServer.get(id)!.chunks), sha(sent), `stream ${id} upload`);
    const expect = Buffer.concat([sent, sent]).reverse();
    assert.equal(sha(atClient.get(id)!.chunks), sha(expect), `stream ${id} answer`);
  }
  // 40 x ~150 KB with a 64 KB stream window and 512 KB connection window: only possible with working MAX_* updates.
  assert.ok(net.stats.delivered > 100);
});

test('sim: one stream_readable event per batch of unread data, and a new one once the application has read', () => {
  // The server's window for the client's stream holds all 200 KB (the default is smaller).
  const { net, sep, conn } = pair(11, { delay: 2 }, { initialMaxStreamDataBidiRemote: 1024 * 1024 });
  let server: Connection | undefined;
  let sid: number | null = null;
  const chunk = randomData(3, 200 * 1024);
  // Phase 1: the client sends 200 KB (well over a hundred packets); the server application does not read.
  net.run(
    () => server !== undefined && server.hasEvents() && sid !== null && conn.streamBufferedBytes(sid) === 0,
    10_000,
    () => {
      server ??= sep.pollAccepted();
      if (sid === null && conn.isHandshakeComplete) {
        sid = conn.openStream(true);
        conn.streamWrite(sid!, chunk);
      }
      for (let e = conn.pollEvent(); e; e = conn.pollEvent()) void e;
    },
  );
  net.run(() => false, 200);
  assert.ok(server && sid !== null);
  const readable = (c: Connection) => {
    let n = 0;
    for (let e = c.pollEvent(); e; e = c.pollEvent()) if (e.type === 'stream_readable' && e.id === sid) n++;
    return n;
  };
  assert.equal(readable(server), 1, 'many packets of unread data give one event');
  let got = 0;
  for (let b = server.streamRead(sid); b; b = server.streamRead(sid)) got += b.length;
  assert.equal(got, chunk.length);
  // Phase 2: after the read, new data gives a new event.
  conn.streamWrite(sid, chunk.subarray(0, 5000), true);
  net.run(() => false, 200);
  assert.equal(readable(server), 1, 'new data after a read is announced again');
  for (let b = server.streamRead(sid); b; b = server.streamRead(sid)) got += b.length;
  assert.equal(got, chunk.length + 5000);
  assert.ok(server.streamFinished(sid));
});

test('sim: two clients upload at once through one server endpoint and each connection gets only its own data', () => {
  const net = new SimNetwork(21, { delay: 3, reorder: 0.05 });
  const sep = new Endpoint({ server: serverConfig('ecdsa') });
  net.attach(SERVER_ADDR, sep);
  const clients = [0, 1].map((i) => {
    const addr = { address: `10.0.0.${10 + i}`, port: 40000 + i };
    const ep = new Endpoint();
    net.attach(addr, ep);
    return { addr, conn: ep.connect(clientConfig(), SERVER_ADDR, net.now), data: randomData(50 + i, 600_000 + i * 1000), sid: null as number | null };
  });
  const servers: Connection[] = [];
  const got = new Map<Connection, Map<number, Received>>();
  const ok = net.run(
    () => servers.length === 2 && servers.every((s) => got.get(s)?.get(0)?.fin),
    60_000,
    () => {
      for (let a = sep.pollAccepted(); a; a = sep.pollAccepted()) {
        servers.push(a);
        got.set(a, new Map());
      }
      for (const c of clients) {
        if (c.sid === null && c.conn.isHandshakeComplete) {
          c.sid = c.conn.openStream(true);
          c.conn.streamWrite(c.sid!, c.data, true);
        }
        for (let e = c.conn.pollEvent(); e; e = c.conn.pollEvent()) void e;
      }
      for (const s of servers) readAll(s, got.get(s)!);
    },
  );
  assert.ok(ok, 'both uploads finished');
  for (const s of servers) {
    const client = clients.find((c) => c.addr.address === s.remote.address)!;
    assert.equal(sha(got.get(s)!.get(0)!.chunks), sha(client.data), `data for ${client.addr.address}`);
  }
});
