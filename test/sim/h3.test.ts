/**
 * HTTP/3 sessions in process: Http3Server and Http3Client, unchanged, on the simulated network (test/sim/runtime.ts)
 * with a virtual clock: seeded loss, reordering, duplication and delay between them. Requests and responses, 5 MB
 * each way (SHA-256 checked), trailers both ways, and graceful close with GOAWAY (RFC 9114 §5.2). Waits are bounded in
 * simulated time, so a stuck transfer fails with a message instead of hanging.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { Http3Server, type Http3Request, type Http3Response } from '../../src/h3/server.js';
import { Http3Client } from '../../src/h3/client.js';
import type { Http3Session } from '../../src/h3/session.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import type { LinkOptions } from './network.js';
import { SimUdpNetwork, VirtualClock } from './runtime.js';
import { CERTS } from './helpers.js';
import { chunked, hashAll, randomData, readAll } from '../util/data.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Rejects when `p` has not settled after `ms` of simulated time. */
function within<T>(clock: VirtualClock, p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: object | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = clock.setTimeout(() => rej(new Error(`no ${what} after ${ms} ms of simulated time`)), ms);
  });
  return Promise.race([p, t]).finally(() => clock.clearTimeout(timer!));
}

function routes(req: Http3Request, res: Http3Response): void {
  if (req.path === '/hello') {
    res.respond(200, { 'content-type': 'text/plain', 'x-method': req.method });
    res.end('hello world');
    return;
  }
  if (req.path === '/hash') {
    void hashAll(req).then((h) => {
      res.respond(200, { 'x-bytes': h.bytes, 'x-sha256': h.sha256, 'x-trailer': JSON.stringify(req.trailers) });
      res.end();
    });
    return;
  }
  if (req.path.startsWith('/blob/')) {
    const size = Number(req.path.slice(6));
    const data = randomData(size, size);
    res.respond(200, { 'x-sha256': sha(data), 'content-length': size });
    Readable.from(chunked(data, 16 * 1024)).pipe(res);
    return;
  }
  if (req.path === '/trailers') {
    res.respond(200);
    res.addTrailers({ 'x-checksum': 'abc123', 'x-count': '2' });
    res.write('part1');
    res.end('part2');
    return;
  }
  res.respond(404);
  res.end();
}

const SERVER = { address: '127.0.0.1', port: 443 };
/** A 1500-byte path MTU, 10 ms one way with jitter (reordering), 3 % loss, 1 % duplication. */
const LOSSY: LinkOptions = { mtu: 1500, delay: 10, jitter: 2, reorder: 0.02, loss: 0.03, duplicate: 0.01 };

async function start(seed: number, link: LinkOptions, handler: (req: Http3Request, res: Http3Response) => void = routes) {
  const clock = new VirtualClock();
  const net = new SimUdpNetwork(seed, link, clock);
  const server = await Http3Server.listen(
    {
      listen: [SERVER],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
      runtime: net.runtime,
    },
    handler,
  );
  const client = await within(
    clock,
    Http3Client.connect(`https://${SERVER.address}:${SERVER.port}/`, {
      ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')),
      serverName: 'localhost',
      runtime: net.runtime,
    }),
    20_000,
    'handshake',
  );
  return {
    clock,
    net,
    server,
    client,
    done: async () => {
      await client.close();
      await server.close({ drainMs: 500 });
    },
  };
}

test('sim h3: requests and responses over a lossy, reordering link', { timeout: 60_000 }, async () => {
  const t = await start(11, LOSSY);
  try {
    const r = await within(t.clock, t.client.request('/hello'), 10_000, 'response');
    assert.equal(r.status, 200);
    assert.deepEqual(
      r.headers.filter(([n]) => n.startsWith('x-') || n === 'content-type'),
      [
        ['content-type', 'text/plain'],
        ['x-method', 'GET'],
      ],
    );
    assert.equal((await readAll(r.body)).toString(), 'hello world');
    const missing = await within(t.clock, t.client.request('/nope'), 10_000, '404');
    assert.equal(missing.status, 404);
    await readAll(missing.body);
    // 20 concurrent requests, each on its own stream.
    const many = await within(
      t.clock,
      Promise.all(
        Array.from({ length: 20 }, async () => {
          const x = await t.client.request('/hello');
          return { id: x.streamId, body: (await readAll(x.body)).toString() };
        }),
      ),
      30_000,
      '20 responses',
    );
    assert.equal(new Set(many.map((m) => m.id)).size, 20);
    for (const m of many) assert.equal(m.body, 'hello world');
  } finally {
    await t.done();
  }
});

test('sim h3: the server sends SETTINGS and its QPACK streams in the packet with HANDSHAKE_DONE', { timeout: 30_000 }, async () => {
  const clock = new VirtualClock();
  const net = new SimUdpNetwork(3, { mtu: 1500, delay: 10 }, clock);
  // The frame types of every packet the server sends, from its trace.
  const sent: string[][] = [];
  const server = await Http3Server.listen(
    {
      listen: [SERVER],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
      runtime: net.runtime,
      trace: () => (e) => {
        if (e.name === 'transport:packet_sent') sent.push(((e.data as { frames?: { frame_type: string }[] }).frames ?? []).map((f) => f.frame_type));
      },
    },
    routes,
  );
  const client = await within(
    clock,
    Http3Client.connect(`https://${SERVER.address}:${SERVER.port}/`, { ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')), serverName: 'localhost', runtime: net.runtime }),
    10_000,
    'handshake',
  );
  try {
    await within(clock, (async () => { while (client.session.peerSettings === null) await new Promise<void>((r) => clock.setTimeout(r, 1)); })(), 10_000, 'SETTINGS');
    assert.equal(client.session.peerSettings?.get(0x06), 64 * 1024); // SETTINGS_MAX_FIELD_SECTION_SIZE, the default
    // Opened in the 'ready' event, the control, QPACK encoder and decoder streams leave with HANDSHAKE_DONE, not in a
    // packet (and datagram) of their own one event-loop turn later.
    const done = sent.findIndex((f) => f.includes('handshake_done'));
    assert.ok(done >= 0, `no HANDSHAKE_DONE in ${JSON.stringify(sent)}`);
    assert.equal(sent[done].filter((f) => f === 'stream').length, 3, `packets sent: ${JSON.stringify(sent)}`);
    assert.ok(sent.slice(0, done).every((f) => !f.includes('stream')));
    const r = await within(clock, client.request('/hello'), 10_000, 'response');
    assert.equal((await readAll(r.body)).toString(), 'hello world');
  } finally {
    await client.close();
    await server.close({ drainMs: 500 });
  }
});

test('sim h3: a connection that served 600 requests keeps no record of each finished stream', { timeout: 60_000 }, async () => {
  const t = await start(5, { mtu: 1500, delay: 2 });
  try {
    // The session was made during the handshake: found through the requests.
    let seen: Http3Session | null = null;
    t.server.on('request', (req: Http3Request) => void (seen = req.session));
    for (let wave = 0; wave < 12; wave++) {
      await within(
        t.clock,
        Promise.all(Array.from({ length: 50 }, async () => assert.equal((await readAll((await t.client.request('/hello')).body)).toString(), 'hello world'))),
        30_000,
        `wave ${wave}`,
      );
    }
    const s = seen as Http3Session | null;
    assert.ok(s !== null);
    assert.equal(s.activeStreams, 0);
    // Finished streams are swept once the connection forgot them: far fewer than the 600 requests served.
    assert.ok(s.unsettledStreams < 200, `${s.unsettledStreams} finished streams still tracked after 600 requests`);
    await within(t.clock, (async () => { while (!s.allSettled()) await new Promise<void>((r) => t.clock.setTimeout(r, 10)); })(), 10_000, 'all settled');
    assert.equal(s.unsettledStreams, 0);
  } finally {
    await t.done();
  }
});

test('sim h3: 5 MB up and 5 MB down arrive intact at 3 % loss', { timeout: 120_000 }, async () => {
  const t = await start(12, LOSSY);
  try {
    const size = 5 * 1024 * 1024;
    const up = randomData(1, size);
    const u = await within(
      t.clock,
      t.client.request('/hash', { method: 'POST', body: Readable.from(chunked(up, 32 * 1024)), trailers: [['x-up-trailer', 'yes']] }),
      120_000,
      'upload response',
    );
    const hdr = (n: string): string | undefined => u.headers.find(([k]) => k === n)?.[1];
    assert.equal(u.status, 200);
    assert.equal(Number(hdr('x-bytes')), size);
    assert.equal(hdr('x-sha256'), sha(up));
    assert.deepEqual(JSON.parse(hdr('x-trailer')!), [['x-up-trailer', 'yes']]);
    await readAll(u.body);

    const d = await within(t.clock, t.client.request(`/blob/${size}`), 10_000, 'download head');
    const got = await within(t.clock, hashAll(d.body), 120_000, 'download body');
    assert.equal(got.bytes, size);
    assert.equal(got.sha256, d.headers.find(([k]) => k === 'x-sha256')?.[1]);
    assert.ok(t.net.stats.lost > 0, 'the network lost datagrams');
    assert.ok(t.net.stats.duplicated > 0, 'the network duplicated datagrams');
  } finally {
    await t.done();
  }
});

test('sim h3: trailers both ways', { timeout: 60_000 }, async () => {
  const t = await start(13, LOSSY);
  try {
    const r = await within(t.clock, t.client.request('/trailers'), 10_000, 'response');
    assert.equal((await readAll(r.body)).toString(), 'part1part2');
    assert.deepEqual(r.body.trailers, [
      ['x-checksum', 'abc123'],
      ['x-count', '2'],
    ]);
    const u = await within(
      t.clock,
      t.client.request('/hash', {
        method: 'POST',
        body: 'abc',
        trailers: [
          ['x-sig', 's1'],
          ['x-more', 'm'],
        ],
      }),
      10_000,
      'response',
    );
    assert.deepEqual(JSON.parse(u.headers.find(([k]) => k === 'x-trailer')![1]), [
      ['x-sig', 's1'],
      ['x-more', 'm'],
    ]);
    await readAll(u.body);
  } finally {
    await t.done();
  }
});

test('sim h3: GOAWAY lets an open response finish over a lossy link; new requests are refused', { timeout: 60_000 }, async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let started!: () => void;
  const isStarted = new Promise<void>((r) => (started = r));
  const t = await start(14, LOSSY, (req, res) => {
    if (req.path !== '/slow') return routes(req, res);
    res.respond(200);
    res.write('first;');
    started();
    void released.then(() => res.end('last'));
  });
  try {
    const r = await within(t.clock, t.client.request('/slow'), 10_000, 'slow head');
    await within(t.clock, isStarted, 10_000, 'slow start');
    const goaway = new Promise<number>((res) => t.client.once('goaway', res));
    const closing = t.server.close({ drainMs: 10_000 });
    const id = await within(t.clock, goaway, 10_000, 'GOAWAY at the client');
    assert.ok(id > r.streamId, `GOAWAY id ${id} lets stream ${r.streamId} finish`);
    await assert.rejects(t.client.request('/hello'), /GOAWAY/);
    // The server holds the response for a second of simulated time, then finishes it.
    await t.clock.sleep(1000);
    release();
    assert.equal((await within(t.clock, readAll(r.body), 10_000, 'slow body')).toString(), 'first;last');
    await within(t.clock, closing, 15_000, 'server close');
  } finally {
    release();
    await t.done();
  }
});
