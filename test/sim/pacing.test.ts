/**
 * Pacing (RFC 9002 §7.7) when the sender's timer fires late, as Node's timers do on a busy event loop: the pacer's
 * bucket keeps what its rate earned while the sender slept (2 ms of the rate, at least 10 datagrams), so a late wake-up
 * sends what was earned instead of one 10-datagram burst.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pair } from './helpers.js';
import type { Connection } from '../../src/quic/connection.js';

/** The server sends `size` bytes on the client's request stream; returns the simulated ms from request to FIN. */
function download(timerLag: number, size: number): number {
  // A 60 MB/s bottleneck with a 300 KB queue (NewReno settles below it), 0.5 ms each way, both ends running every
  // 4 ms (datagrams arrive in batches, ACKs too), and a sender whose datagrams cost it 10 µs each.
  const { net, sep, conn } = pair(7, { delay: 0.5, batchEvery: 4, rate: 60_000, queueLimit: 300_000 }, { maxDatagramSize: 1452 }, { maxDatagramSize: 1452 });
  net.timerLag = timerLag;
  net.sendCost = 0.01;
  const data = Buffer.alloc(size, 0x61);
  let server: Connection | undefined;
  let sid: number | null = null;
  let start = 0;
  let got = 0;
  let fin = false;
  const ok = net.run(
    () => fin,
    60_000,
    () => {
      server ??= sep.pollAccepted() ?? undefined;
      if (sid === null && conn.isHandshakeComplete) {
        sid = conn.openStream(true);
        conn.streamWrite(sid!, Buffer.from('GET'), true);
        start = net.now;
      }
      if (server) {
        for (let e = server.pollEvent(); e; e = server.pollEvent()) if (e.type === 'stream_open') server.streamWrite(e.id, data, true);
      }
      for (let e = conn.pollEvent(); e; e = conn.pollEvent()) {
        if (e.type !== 'stream_readable') continue;
        for (let b = conn.streamRead(e.id); b; b = conn.streamRead(e.id)) got += b.length;
        if (conn.streamFinished(e.id)) fin = true;
      }
    },
  );
  assert.ok(ok, `download finished (${got} of ${size} bytes)`);
  assert.equal(got, size);
  return net.now - start;
}

test('sim pacing: timers firing 3 ms late slow a 16 MB download by less than half', () => {
  const onTime = download(0, 16_000_000);
  const late = download(3, 16_000_000);
  // Seed 7: on time 328 ms; 3 ms late 408 ms. With a fixed 10-datagram bucket the late run took 556 ms (1.7x): each
  // late wake-up sent 10 datagrams and 1 ms of credit, and what the rate earned beyond that was lost.
  assert.ok(late < 1.45 * onTime, `late timers: ${late.toFixed(1)} ms, on time: ${onTime.toFixed(1)} ms`);
});
