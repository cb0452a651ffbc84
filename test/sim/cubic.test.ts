import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { pair } from './helpers.js';
import type { LinkOptions } from './network.js';
import type { Connection } from '../../src/quic/connection.js';
import type { RttView } from '../../src/quic/recovery/congestion.js';
import { Cubic } from '../../src/quic/recovery/cubic.js';
import { randomData } from '../util/data.js';

const sha = (chunks: Buffer[]): string => {
  const h = createHash('sha256');
  for (const c of chunks) h.update(c);
  return h.digest('hex');
};

/** The client uploads `size` bytes on one stream with CUBIC as its congestion controller; the server reads them. */
function cubicUpload(seed: number, link: LinkOptions, size: number, maxTime: number) {
  const made: Cubic[] = [];
  const congestionControl = (maxDatagramSize: number, rtt: RttView) => {
    const cc = new Cubic(maxDatagramSize, rtt);
    made.push(cc);
    return cc;
  };
  const { net, sep, conn } = pair(seed, link, {}, { congestionControl });
  const data = randomData(seed, size);
  let server: Connection | undefined;
  const chunks: Buffer[] = [];
  let bytes = 0;
  let fin = false;
  let started = false;
  const ok = net.run(
    () => fin,
    maxTime,
    () => {
      server ??= sep.pollAccepted();
      if (!started && conn.isHandshakeComplete) {
        started = true;
        conn.streamWrite(conn.openStream(true)!, data, true);
      }
      for (let e = conn.pollEvent(); e; e = conn.pollEvent()) void e;
      if (!server) return;
      for (let e = server.pollEvent(); e; e = server.pollEvent()) {
        if (e.type !== 'stream_readable' && e.type !== 'stream_open') continue;
        for (let b = server.streamRead(e.id); b; b = server.streamRead(e.id)) {
          chunks.push(b);
          bytes += b.length;
        }
        if (server.streamFinished(e.id)) fin = true;
      }
    },
  );
  assert.equal(made.length, 1, 'the client made one CUBIC controller');
  return { ok, net, conn, server, data, chunks, bytes, cc: made[0]! };
}

test('sim: a 4 MB upload with CUBIC completes byte-identical at 3% random loss', () => {
  const size = 4 * 1024 * 1024;
  const r = cubicUpload(31, { delay: 10, reorder: 0.02, loss: 0.03, duplicate: 0.01 }, size, 600_000);
  assert.ok(r.ok, `transfer did not finish: client ${r.conn.state} ${JSON.stringify(r.conn.closeInfo)}, got ${r.bytes}`);
  assert.equal(r.bytes, size);
  assert.equal(sha(r.chunks), sha([r.data]));
  assert.ok(r.net.stats.lost > 0, 'the network lost packets');
  // Losses reached the controller: W_max and ssthresh are set, and the window was reduced by beta from cwnd_prior.
  assert.ok(r.cc.wMax > 0 && r.cc.ssthresh < Infinity, `W_max ${r.cc.wMax}, ssthresh ${r.cc.ssthresh}`);
  assert.equal(r.cc.ssthresh, Math.max(Math.floor(r.cc.cwndPrior * 0.7), r.cc.minWindow));
  assert.equal(r.conn.state, 'established');
});

test('sim: CUBIC fills a rate-limited link with a tail-drop queue and finishes the transfer', () => {
  const size = 4 * 1024 * 1024;
  // 10 MB/s, 20 ms RTT: a bandwidth-delay product of 200 KB, a 100 KB queue. The drops come from the queue.
  const r = cubicUpload(32, { delay: 10, rate: 10_000, queueLimit: 100_000 }, size, 600_000);
  assert.ok(r.ok, `transfer did not finish: client ${r.conn.state} ${JSON.stringify(r.conn.closeInfo)}, got ${r.bytes}`);
  assert.equal(sha(r.chunks), sha([r.data]));
  assert.ok(r.net.stats.lost > 0, 'the queue dropped packets');
  assert.ok(r.cc.epochStart > -Infinity, 'CUBIC reached congestion avoidance');
  // Simulated time: 4 MB at 10 MB/s is 0.42 s; a controller that kept the link busy finishes within a few times that.
  assert.ok(r.net.now < 3000, `took ${r.net.now} ms of simulated time`);
});
