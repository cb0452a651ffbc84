/**
 * The client's lean requests (src/h3/lean-request.ts, what `qsr load` sends) against our Http3Server on the simulated
 * network: many requests through a small stream limit over a lossy, reordering link (the server's responses use its
 * QPACK dynamic table, so sections can arrive before the inserts they need), a body larger than the stream's
 * high-water mark, stream resets and a content-length mismatch (stream errors, the other requests unaffected), GOAWAY
 * (requests the server will not process fail as rejected), a connection the server closes (requests in flight and
 * waiting fail with the close), and abort() (the server sees the cancel).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Http3Server, type Http3Request, type Http3Response } from '../../src/h3/server.js';
import { Http3Client } from '../../src/h3/client.js';
import type { LeanOutcome } from '../../src/h3/lean-request.js';
import { H3ConnectionClosedError, H3Error, H3ErrorCode as E, H3RequestRejectedError, H3StreamError } from '../../src/h3/errors.js';
import type { Http3Session } from '../../src/h3/session.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import type { LinkOptions } from './network.js';
import { SimUdpNetwork, VirtualClock } from './runtime.js';
import { CERTS } from './helpers.js';

const SERVER = { address: '127.0.0.1', port: 443 };
const LOSSY: LinkOptions = { mtu: 1500, delay: 10, jitter: 3, reorder: 0.05, loss: 0.03, duplicate: 0.01 };
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Rejects when `p` has not settled after `ms` of simulated time. */
function within<T>(clock: VirtualClock, p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: object | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = clock.setTimeout(() => rej(new Error(`no ${what} after ${ms} ms of simulated time`)), ms);
  });
  return Promise.race([p, t]).finally(() => clock.clearTimeout(timer!));
}

/** Waits (in simulated time, polling every ms) until cond() holds; fails after `ms`. */
async function until(clock: VirtualClock, cond: () => boolean, ms: number, what: string): Promise<void> {
  const end = clock.now() + ms;
  while (!cond()) {
    if (clock.now() >= end) throw new Error(`no ${what} after ${ms} ms of simulated time`);
    await clock.sleep(1);
  }
}

async function start(link: LinkOptions, handler: (req: Http3Request, res: Http3Response) => void, serverQuic: { initialMaxStreamsBidi?: number } = {}) {
  const clock = new VirtualClock();
  const net = new SimUdpNetwork(21, link, clock);
  const sessions: Http3Session[] = [];
  const server = await Http3Server.listen(
    {
      listen: [SERVER],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
      runtime: net.runtime,
      quic: serverQuic,
    },
    handler,
  );
  server.on('session', (s: Http3Session) => sessions.push(s));
  const client = await within(
    clock,
    Http3Client.connect(`https://${SERVER.address}:${SERVER.port}/`, { ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')), serverName: 'localhost', runtime: net.runtime }),
    20_000,
    'handshake',
  );
  return {
    clock,
    server,
    client,
    sessions,
    done: async () => {
      await client.close();
      await server.close({ drainMs: 200 });
    },
  };
}

/** Sends `n` requests with `loops` in flight (each loop sends the next when its previous one is done). */
function run(client: Http3Client, path: string, n: number, loops: number, opts: { method?: string; body?: Buffer } = {}): Promise<LeanOutcome[]> {
  const req = client.prepare(path, opts);
  const out: LeanOutcome[] = [];
  let left = n;
  return new Promise((resolve) => {
    let active = 0;
    const next = (): void => {
      if (left === 0) {
        if (--active === 0) resolve(out);
        return;
      }
      left--;
      client.lean.send(req, (o) => {
        out.push(o);
        next();
      });
    };
    for (let i = 0; i < loops; i++) {
      active++;
      next();
    }
  });
}

test('lean: 300 GETs, 8 in flight through a 4-stream limit, lossy link; QPACK dynamic-table responses decoded, every body counted', { timeout: 120_000 }, async () => {
  let seen = 0;
  const t = await start(
    LOSSY,
    (req, res) => {
      seen++;
      const n = Number(new URL(req.path, 'https://x').searchParams.get('n') ?? 0) + seen;
      // Header values repeat (x-kind) and are new with every response (x-tag: an insert each time, referenced at once,
      // so a section can arrive before the encoder-stream insert it needs and wait for it).
      res.respond(200, { 'content-type': 'text/plain', 'x-kind': `kind-${seen % 5}`, 'x-tag': `tag-${seen}` });
      res.end('x'.repeat(100 + (n % 50)));
    },
    { initialMaxStreamsBidi: 4 },
  );
  try {
    const out = await within(t.clock, run(t.client, '/hello?n=0', 300, 8), 60_000, '300 responses');
    assert.equal(out.length, 300);
    assert.deepEqual(out.filter((o) => o.error !== null).map((o) => String(o.error)), []);
    assert.ok(out.every((o) => o.status === 200));
    assert.equal(seen, 300, 'the server saw every request exactly once');
    const bytes = out.reduce((a, o) => a + o.bytesDown, 0);
    // Server-side: 100 + ((0 + k) % 50) bytes for k = 1..300.
    let want = 0;
    for (let k = 1; k <= 300; k++) want += 100 + (k % 50);
    assert.equal(bytes, want);
    assert.equal(t.client.lean.pending, 0);
  } finally {
    await t.done();
  }
});

test('lean: a 3 MB body (above the stream high-water mark) is sent whole, three times; the server hashes each', { timeout: 120_000 }, async () => {
  const body = Buffer.alloc(3 * 1024 * 1024);
  for (let i = 0; i < body.length; i++) body[i] = (i * 131 + (i >> 9)) & 0xff;
  const got: string[] = [];
  const t = await start({ mtu: 1500, delay: 5, loss: 0.01 }, (req, res) => {
    const h = createHash('sha256');
    req.on('data', (c: Buffer) => h.update(c));
    req.on('end', () => {
      got.push(h.digest('hex'));
      res.respond(200);
      res.end('ok');
    });
  });
  try {
    const out = await within(t.clock, run(t.client, '/upload', 3, 2, { method: 'POST', body }), 120_000, 'uploads');
    assert.deepEqual(out.map((o) => [o.status, o.bytesDown, o.error]), [[200, 2, null], [200, 2, null], [200, 2, null]]);
    assert.deepEqual(got, [sha(body), sha(body), sha(body)]);
  } finally {
    await t.done();
  }
});

test('lean: a reset and a content-length mismatch are stream errors of their requests only', { timeout: 60_000 }, async () => {
  const t = await start({ mtu: 1500, delay: 5 }, (req, res) => {
    if (req.path === '/reset') res.reset(E.H3_INTERNAL_ERROR);
    else if (req.path === '/short') {
      res.respond(200, { 'content-length': '10' });
      res.end('abc');
    } else {
      res.respond(204);
      res.end();
    }
  });
  try {
    const [reset, short, fine] = await within(
      t.clock,
      Promise.all([run(t.client, '/reset', 2, 2), run(t.client, '/short', 2, 1), run(t.client, '/fine', 4, 2)]),
      20_000,
      'responses',
    );
    for (const o of reset) {
      assert.ok(o.error instanceof H3StreamError, String(o.error));
      assert.equal((o.error as H3StreamError).code, E.H3_INTERNAL_ERROR);
    }
    for (const o of short) {
      assert.ok(o.error instanceof H3Error, String(o.error));
      assert.equal((o.error as H3Error).code, E.H3_MESSAGE_ERROR);
      assert.match(o.error.message, /content-length 10 but 3 bytes of DATA/);
    }
    assert.deepEqual(fine.map((o) => [o.status, o.error]), [[204, null], [204, null], [204, null], [204, null]]);
    assert.equal(t.client.session.closedError, null, 'the connection is still up');
  } finally {
    await t.done();
  }
});

test('lean: after GOAWAY requests fail as rejected (not processed), those below its id complete; a closed connection fails the rest', { timeout: 60_000 }, async () => {
  let seen = 0;
  const held: Http3Response[] = [];
  const t = await start({ mtu: 1500, delay: 10 }, (_req, res) => {
    seen++;
    held.push(res); // answered after the GOAWAY
  });
  try {
    const req = t.client.prepare('/held');
    const first: LeanOutcome[] = [];
    for (let i = 0; i < 3; i++) t.client.lean.send(req, (o) => first.push(o));
    await until(t.clock, () => held.length === 3, 5_000, 'three requests at the server');
    t.sessions[0].goaway(); // GOAWAY(12): streams 0, 4, 8 are served
    await within(t.clock, new Promise<void>((r) => t.client.session.once('goaway', () => r())), 5_000, 'GOAWAY');
    assert.equal(t.client.lean.unusable, true);
    const late = await within(t.clock, new Promise<LeanOutcome>((r) => t.client.lean.send(req, r)), 1_000, 'late outcome');
    assert.ok(late.error instanceof H3RequestRejectedError, String(late.error));
    for (const res of held) {
      res.respond(200);
      res.end('done');
    }
    await until(t.clock, () => first.length === 3, 5_000, 'held responses');
    assert.deepEqual(first.map((o) => [o.status, o.bytesDown, o.error]), [[200, 4, null], [200, 4, null], [200, 4, null]]);
    assert.equal(seen, 3);
  } finally {
    await t.done();
  }

  // The server closes the connection with requests in flight and others waiting for stream credit.
  let arrived = 0;
  const u = await start({ mtu: 1500, delay: 10 }, () => void arrived++, { initialMaxStreamsBidi: 2 });
  try {
    const req = u.client.prepare('/never');
    const outs: LeanOutcome[] = [];
    for (let i = 0; i < 5; i++) u.client.lean.send(req, (o) => outs.push(o));
    assert.equal(u.client.lean.pending, 5, 'two in flight, three waiting');
    // Both streams at the server (the handshake is confirmed by then, so the close is an application close).
    await until(u.clock, () => arrived === 2, 5_000, 'two requests at the server');
    u.sessions[0].close(E.H3_INTERNAL_ERROR, 'going down');
    await until(u.clock, () => outs.length === 5, 5_000, 'failures');
    for (const o of outs) {
      assert.ok(o.error instanceof H3ConnectionClosedError, String(o.error));
      assert.match(o.error.message, /closed by peer with H3_INTERNAL_ERROR \(going down\)/);
    }
    assert.equal(u.client.lean.pending, 0);
  } finally {
    await u.done();
  }
});

test('lean: abort() resets and stops the stream with H3_REQUEST_CANCELLED; the outcome is the given error', { timeout: 60_000 }, async () => {
  const cancelled: number[] = [];
  const t = await start({ mtu: 1500, delay: 5 }, (req, res) => {
    req.on('aborted', () => cancelled.push(1));
    res.on('error', () => {});
    req.on('error', () => {});
  });
  try {
    const req = t.client.prepare('/slow', { method: 'POST', body: Buffer.alloc(10_000, 1) });
    const outs: LeanOutcome[] = [];
    const x = t.client.lean.send(req, (o) => outs.push(o));
    await within(t.clock, new Promise<void>((r) => t.clock.setTimeout(r, 200)), 1_000, 'wait');
    const why = new Error('timeout');
    x.abort(why);
    x.abort(new Error('twice'));
    assert.equal(outs.length, 1);
    assert.equal(outs[0].error, why);
    await until(t.clock, () => cancelled.length > 0, 5_000, 'the server to see the cancel');
  } finally {
    await t.done();
  }
});
