/**
 * HTTP/3 end to end over real UDP on loopback (RFC 9114): Http3Server and Http3Client on our QUIC stack.
 * GET/POST with bodies (5 MB each way, SHA-256 checked), trailers both ways, 100 concurrent requests on one
 * connection, empty bodies (HEAD), and graceful close with GOAWAY (§5.2). Every wait is bounded.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import { readFileSync } from 'node:fs';
import { Http3Server, type Http3Request, type Http3Response } from '../../src/h3/server.js';
import { Http3Client } from '../../src/h3/client.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import { CERTS } from '../sim/helpers.js';
import { chunked, hashAll, readAll } from '../util/data.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

async function start(handler: (req: Http3Request, res: Http3Response) => void): Promise<{ server: Http3Server; client: Http3Client; done(): Promise<void> }> {
  const server = await Http3Server.listen(
    {
      listen: [{ address: '127.0.0.1', port: 0 }],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
    },
    handler,
  );
  const { port } = server.addresses()[0];
  let client: Http3Client;
  try {
    client = await Http3Client.connect(`https://127.0.0.1:${port}/`, {
      ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')),
      serverName: 'localhost',
    });
  } catch (e) {
    await server.close({ drainMs: 100 });
    throw e;
  }
  return {
    server,
    client,
    done: async () => {
      await client.close();
      await server.close({ drainMs: 500 });
    },
  };
}

/** Echo-ish handler used by several tests. */
function routes(req: Http3Request, res: Http3Response): void {
  if (req.path === '/hello') {
    res.respond(200, { 'content-type': 'text/plain', 'x-method': req.method });
    res.end(req.method === 'HEAD' ? undefined : 'hello world');
    return;
  }
  if (req.path === '/echo') {
    res.respond(200, { 'x-req-ct': req.headers['content-type'] ?? '' });
    req.pipe(res);
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
    const data = randomBytes(size);
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
  if (req.path === '/empty') {
    res.respond(204);
    res.end();
    return;
  }
  res.respond(404);
  res.end();
}

test('GET with a small body, HEAD and 204 with empty bodies, 404', { timeout: 20_000 }, async () => {
  const t = await start(routes);
  try {
    const r = await within(t.client.request('/hello'), 5000, 'GET /hello');
    assert.equal(r.status, 200);
    assert.ok(r.headers.some(([n, v]) => n === 'content-type' && v === 'text/plain'));
    assert.equal((await within(readAll(r.body), 5000, 'body')).toString(), 'hello world');
    assert.equal(r.body.trailers, null);

    const h = await within(t.client.request('/hello', { method: 'HEAD' }), 5000, 'HEAD');
    assert.equal(h.status, 200);
    assert.ok(h.headers.some(([n, v]) => n === 'x-method' && v === 'HEAD'));
    assert.equal((await readAll(h.body)).length, 0);

    const e = await within(t.client.request('/empty'), 5000, '204');
    assert.equal(e.status, 204);
    assert.equal((await readAll(e.body)).length, 0);

    const nf = await within(t.client.request('/nope'), 5000, '404');
    assert.equal(nf.status, 404);
    await readAll(nf.body);
  } finally {
    await t.done();
  }
});

test('POST echo and 5 MB each way, checked by SHA-256', { timeout: 60_000 }, async () => {
  const t = await start(routes);
  try {
    const small = await t.client.request('/echo', { method: 'POST', body: 'ping', headers: { 'content-type': 'text/x-test' } });
    assert.equal(small.status, 200);
    assert.ok(small.headers.some(([n, v]) => n === 'x-req-ct' && v === 'text/x-test'));
    assert.equal((await readAll(small.body)).toString(), 'ping');

    // 5 MB up, streamed from a Readable, hashed by the server.
    const up = randomBytes(5 * 1024 * 1024);
    const r = await within(
      t.client.request('/hash', { method: 'POST', body: Readable.from(chunked(up, 32 * 1024)), trailers: [['x-up-trailer', 'yes']] }),
      30_000,
      'upload',
    );
    const hdr = (n: string): string | undefined => r.headers.find(([k]) => k === n)?.[1];
    assert.equal(Number(hdr('x-bytes')), up.length);
    assert.equal(hdr('x-sha256'), sha(up));
    assert.deepEqual(JSON.parse(hdr('x-trailer')!), [['x-up-trailer', 'yes']]);
    await readAll(r.body);

    // 5 MB down.
    const d = await within(t.client.request(`/blob/${5 * 1024 * 1024}`), 10_000, 'download head');
    const got = await within(hashAll(d.body), 30_000, 'download body');
    assert.equal(got.bytes, 5 * 1024 * 1024);
    assert.equal(got.sha256, d.headers.find(([k]) => k === 'x-sha256')?.[1]);

    // 5 MB echoed both ways at once.
    const both = randomBytes(5 * 1024 * 1024);
    const e = await within(t.client.request('/echo', { method: 'POST', body: Readable.from(chunked(both, 64 * 1024)) }), 30_000, 'echo head');
    const eh = await within(hashAll(e.body), 30_000, 'echo body');
    assert.equal(eh.bytes, both.length);
    assert.equal(eh.sha256, sha(both));
  } finally {
    await t.done();
  }
});

test('trailers both ways', { timeout: 20_000 }, async () => {
  const t = await start(routes);
  try {
    const r = await t.client.request('/trailers');
    assert.equal((await readAll(r.body)).toString(), 'part1part2');
    assert.deepEqual(r.body.trailers, [['x-checksum', 'abc123'], ['x-count', '2']]);
    const u = await t.client.request('/hash', { method: 'POST', body: 'abc', trailers: [['x-sig', 's1'], ['x-more', 'm']] });
    assert.deepEqual(JSON.parse(u.headers.find(([k]) => k === 'x-trailer')![1]), [['x-sig', 's1'], ['x-more', 'm']]);
    await readAll(u.body);
  } finally {
    await t.done();
  }
});

test('100 concurrent requests on one connection', { timeout: 60_000 }, async () => {
  const t = await start((req, res) => {
    res.respond(200, { 'x-path': req.path });
    res.end(`body of ${req.path}`);
  });
  try {
    const results = await within(
      Promise.all(
        Array.from({ length: 100 }, async (_, i) => {
          const r = await t.client.request(`/item/${i}`);
          return { i, status: r.status, id: r.streamId, body: (await readAll(r.body)).toString() };
        }),
      ),
      40_000,
      '100 requests',
    );
    const ids = new Set<number>();
    for (const r of results) {
      assert.equal(r.status, 200);
      assert.equal(r.body, `body of /item/${r.i}`);
      ids.add(r.id);
    }
    assert.equal(ids.size, 100, 'each request on its own stream');
  } finally {
    await t.done();
  }
});

test('GOAWAY: server.close() lets a slow response finish; new requests are then refused', { timeout: 30_000 }, async () => {
  let release!: () => void;
  const released = new Promise<void>((r) => (release = r));
  let started!: () => void;
  const isStarted = new Promise<void>((r) => (started = r));
  const t = await start((req, res) => {
    if (req.path !== '/slow') return routes(req, res);
    res.respond(200);
    res.write('first;');
    started();
    void released.then(() => res.end('last'));
  });
  try {
    const r = await within(t.client.request('/slow'), 5000, 'slow head');
    await within(isStarted, 5000, 'slow started');
    const goaway = new Promise<number>((res) => t.client.once('goaway', res));
    const closing = t.server.close({ drainMs: 10_000 });
    const id = await within(goaway, 5000, 'GOAWAY at the client');
    assert.ok(id > r.streamId, `GOAWAY id ${id} lets stream ${r.streamId} finish`);
    await assert.rejects(t.client.request('/hello'), /GOAWAY/);
    release();
    assert.equal((await within(readAll(r.body), 5000, 'slow body')).toString(), 'first;last');
    await within(closing, 10_000, 'server close');
  } finally {
    release();
    await t.done();
  }
});

test('aborting a request (AbortSignal) resets its stream with H3_REQUEST_CANCELLED; the connection goes on', { timeout: 20_000 }, async () => {
  let seen!: (code: number) => void;
  const serverSaw = new Promise<number>((r) => (seen = r));
  const t = await start((req, res) => {
    if (req.path !== '/forever') return routes(req, res);
    req.on('aborted', (e: { code?: number }) => seen(e.code ?? -1));
    res.respond(200);
    res.write('start');
  });
  try {
    const ac = new AbortController();
    const r = await within(t.client.request('/forever', { method: 'POST', body: new Readable({ read() {} }), signal: ac.signal }), 5000, 'head');
    const failed = assert.rejects(readAll(r.body));
    ac.abort();
    await within(failed, 5000, 'body failure');
    assert.equal(await within(serverSaw, 5000, 'server abort'), 0x10c);
    const ok = await t.client.request('/hello');
    assert.equal((await readAll(ok.body)).toString(), 'hello world');
  } finally {
    await t.done();
  }
});
