/**
 * The receive path above the QUIC core: ACKs for a receive batch leave before the application's work of that turn
 * (Connection.pollAckOnly, used by io/udp.ts flush), IP-literal sends are not deferred by a DNS lookup
 * (io/node-runtime.ts), and the DATA payloads an HTTP/3 request stream reads in one pass reach the body as one chunk
 * (h3/request-stream.ts), byte-exact.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { CLIENT_ADDR, CERTS, pair, SERVER_ADDR } from './helpers.js';
import type { Connection } from '../../src/quic/connection.js';
import { literalLookup } from '../../src/io/node-runtime.js';
import { Http3Server, type Http3Request, type Http3Response } from '../../src/h3/server.js';
import { Http3Client } from '../../src/h3/client.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import { SimUdpNetwork, VirtualClock } from './runtime.js';
import { chunked, randomData, readAll } from '../util/data.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A handshaken client/server pair on a clean link, and the server's connection. */
function established(seed: number): { net: ReturnType<typeof pair>['net']; conn: Connection; server: Connection } {
  const { net, sep, conn } = pair(seed, { delay: 5 });
  let server: Connection | undefined;
  const ok = net.run(
    () => server !== undefined && server.state === 'established' && conn.state === 'established',
    5000,
    () => {
      server ??= sep.pollAccepted();
      for (let e = conn.pollEvent(); e; e = conn.pollEvent()) void e;
      if (server) for (let e = server.pollEvent(); e; e = server.pollEvent()) void e;
    },
  );
  assert.ok(ok && server, 'handshake completed');
  // Let the last handshake ACKs and HANDSHAKE_DONE settle.
  net.run(() => false, 200, () => {
    for (let e = conn.pollEvent(); e; e = conn.pollEvent()) void e;
    for (let e = server!.pollEvent(); e; e = server!.pollEvent()) void e;
  });
  return { net, conn, server: server! };
}

test('pollAckOnly: acknowledges a batch at once, carries no stream data, and leaves the data for poll()', () => {
  const { net, conn, server } = established(31);
  let now = net.now;
  assert.equal(server.pollAckOnly(now), null, 'nothing received: no ACK due');

  // The client sends a few ack-eliciting packets; the server receives them and has a response queued.
  const sid = conn.openStream(true)!;
  conn.streamWrite(sid, randomData(1, 5000), false);
  const dgrams: Buffer[] = [];
  for (let d = conn.poll(now); d; d = conn.poll(now)) dgrams.push(Buffer.from(d));
  assert.ok(dgrams.length >= 2, `the client sent ${dgrams.length} datagrams`);
  now += 5;
  for (const d of dgrams) server.receive(d, CLIENT_ADDR, now);
  for (let e = server.pollEvent(); e; e = server.pollEvent()) void e;
  server.streamWrite(sid, Buffer.from('response bytes'), true);

  const ack = server.pollAckOnly(now);
  assert.ok(ack, 'two ack-eliciting packets: an ACK is due now');
  assert.ok(ack.length < 100, `an ACK-only datagram is small (${ack.length} bytes)`);
  assert.equal(server.pollAckOnly(now), null, 'the ACK was sent: none due any more');

  // The client learns of the ACK and gets no stream data from it.
  const sentBefore = conn.stats.packetsSent;
  conn.receive(Buffer.from(ack), SERVER_ADDR, now + 5);
  const events: string[] = [];
  for (let e = conn.pollEvent(); e; e = conn.pollEvent()) events.push(e.type);
  assert.ok(!events.includes('stream_readable'), `no stream data in the ACK-only datagram (events: ${events.join(', ')})`);
  assert.equal(conn.streamRead(sid), null);
  assert.equal(conn.stats.packetsSent, sentBefore);

  // The response goes out on the next poll().
  const rest: Buffer[] = [];
  for (let d = server.poll(now); d; d = server.poll(now)) rest.push(Buffer.from(d));
  assert.ok(rest.length >= 1, 'the queued response is still sent by poll()');
  for (const d of rest) conn.receive(d, SERVER_ADDR, now + 5);
  let got = '';
  for (let e = conn.pollEvent(); e; e = conn.pollEvent()) {
    if (e.type === 'stream_readable' && e.id === sid) for (let b = conn.streamRead(sid); b; b = conn.streamRead(sid)) got += b.toString();
  }
  assert.equal(got, 'response bytes');
});

test('pollAckOnly: nothing during the handshake (its ACKs ride on the next flight)', () => {
  const { net, sep, conn } = pair(32, { delay: 5 });
  const first = conn.poll(net.now)!;
  sep.receive(first, CLIENT_ADDR, net.now + 5);
  const server = sep.pollAccepted();
  assert.ok(server, 'the server accepted the Initial');
  assert.equal(server.pollAckOnly(net.now + 5), null);
  assert.ok(server.poll(net.now + 5), 'the server flight (with its ACK) is sent by poll()');
});

test('literalLookup: an IP literal is answered before it returns (no tick per datagram); a name goes to dns.lookup', async () => {
  for (const [addr, fam] of [
    ['127.0.0.1', 4],
    ['::1', 6],
  ] as const) {
    let got: [string, number] | null = null;
    literalLookup(addr, fam, (err, a, f) => {
      assert.equal(err, null);
      got = [a, f];
    });
    assert.deepEqual(got, [addr, fam], `${addr} answered synchronously`);
  }
  const name = await new Promise<[string, number]>((res, rej) => literalLookup('localhost', 4, (err, a, f) => (err ? rej(err) : res([a, f]))));
  assert.equal(name[1], 4);
  assert.match(name[0], /^127\./);
});

test('sim h3: small DATA frames read in one pass reach the request body as one chunk, byte-exact', { timeout: 60_000 }, async () => {
  const clock = new VirtualClock();
  const net = new SimUdpNetwork(33, { mtu: 1500, delay: 2 }, clock);
  const chunks: number[] = [];
  const handler = (req: Http3Request, res: Http3Response): void => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => {
      chunks.push(c.length);
      parts.push(c);
    });
    req.on('end', () => {
      const all = Buffer.concat(parts);
      res.respond(200, { 'x-bytes': String(all.length), 'x-sha256': sha(all) });
      res.end();
    });
  };
  const server = await Http3Server.listen(
    {
      listen: [{ address: '127.0.0.1', port: 443 }],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
      runtime: net.runtime,
    },
    handler,
  );
  const client = await Http3Client.connect('https://127.0.0.1:443/', {
    ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')),
    serverName: 'localhost',
    runtime: net.runtime,
  });
  try {
    // 400 writes of 500 bytes: 400 DATA frames, several to a packet.
    const data = randomData(34, 200_000);
    const frames = 400;
    const r = await client.request('/up', { method: 'POST', body: Readable.from(chunked(data, 500)), headers: { 'content-length': String(data.length) } });
    assert.equal(r.status, 200);
    await readAll(r.body);
    assert.equal(r.headers.find(([n]) => n === 'x-bytes')?.[1], String(data.length));
    assert.equal(r.headers.find(([n]) => n === 'x-sha256')?.[1], sha(data));
    assert.equal(
      chunks.reduce((a, b) => a + b, 0),
      data.length,
    );
    assert.ok(chunks.length < frames / 4, `${frames} DATA frames arrived as ${chunks.length} body chunks`);
    assert.ok(Math.max(...chunks) > 500, 'a chunk holds more than one frame');
  } finally {
    await client.close();
    await server.close({ drainMs: 200 });
  }
});
