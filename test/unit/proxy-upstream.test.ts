import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { UpstreamCancel, UpstreamError, UpstreamPool, type HealthChange, type UpstreamPoolOptions, type UpstreamSink } from '../../src/proxy/upstream.js';

const TIMEOUTS = { connectMs: 2000, headersMs: 5000, idleBodyMs: 5000 };

interface TestServer {
  server: Server;
  origin: string;
  close(): Promise<void>;
}

async function startServer(handler: (req: IncomingMessage, res: ServerResponse) => void): Promise<TestServer> {
  const server = createServer(handler);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    server,
    origin: `http://127.0.0.1:${port}`,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

function pool(o: Partial<UpstreamPoolOptions> & Pick<UpstreamPoolOptions, 'upstreams'>): UpstreamPool {
  return new UpstreamPool({ name: 'r', balance: 'round-robin', timeouts: TIMEOUTS, healthCheck: null, ...o });
}

const GET = (path = '/') => ({ method: 'GET', path, headers: {}, body: null });

async function text(p: UpstreamPool, path = '/'): Promise<string> {
  const res = await p.request(GET(path));
  return await res.body.text();
}

/** A port nothing listens on (bound then released). */
async function deadPort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as AddressInfo;
  s.close();
  await once(s, 'close');
  return port;
}

test('round-robin alternates across two upstreams', { timeout: 20000 }, async () => {
  const a = await startServer((_req, res) => res.end('a'));
  const b = await startServer((_req, res) => res.end('b'));
  const p = pool({ upstreams: [a.origin, b.origin] });
  try {
    const seen: string[] = [];
    for (let i = 0; i < 6; i++) seen.push(await text(p));
    assert.deepEqual(seen, ['a', 'b', 'a', 'b', 'a', 'b']);
    assert.deepEqual(
      p.health().map((h) => h.outstanding),
      [0, 0],
    );
  } finally {
    await p.destroy();
    await a.close();
    await b.close();
  }
});

test('least-outstanding avoids the upstream with a slow request in flight', { timeout: 20000 }, async () => {
  let releaseSlow: () => void = () => undefined;
  let slowCalls = 0;
  const slow = await startServer((_req, res) => {
    if (slowCalls++ > 0) return void res.end('slow'); // only the first request is slow
    res.writeHead(200);
    res.write('sl');
    releaseSlow = () => res.end('ow');
  });
  const fast = await startServer((_req, res) => res.end('fast'));
  const p = pool({ upstreams: [slow.origin, fast.origin], balance: 'least-outstanding' });
  try {
    const held = await p.request(GET()); // both idle: the first in turn, the slow one, gets it
    assert.equal(held.upstream, slow.origin);
    const seen: string[] = [];
    for (let i = 0; i < 4; i++) seen.push(await text(p));
    assert.deepEqual(seen, ['fast', 'fast', 'fast', 'fast']);
    assert.deepEqual(
      p.health().map((h) => h.outstanding),
      [1, 0],
    );
    releaseSlow();
    assert.equal(await held.body.text(), 'slow');
    assert.deepEqual(
      p.health().map((h) => h.outstanding),
      [0, 0],
    );
    // Both idle again: ties are taken in turn.
    const next = [await text(p), await text(p)].sort();
    assert.deepEqual(next, ['fast', 'slow'].sort());
  } finally {
    await p.destroy();
    await slow.close();
    await fast.close();
  }
});

test('health checks take a failing upstream out and bring it back', { timeout: 20000 }, async () => {
  const a = await startServer((_req, res) => res.end('a'));
  let bHealthy = true;
  const b = await startServer((req, res) => {
    if (req.url === '/healthz') {
      res.statusCode = bHealthy ? 200 : 500;
      res.end();
    } else res.end('b');
  });
  const changes: HealthChange[] = [];
  const p = pool({
    upstreams: [a.origin, b.origin],
    healthCheck: { path: '/healthz', intervalMs: 20, timeoutMs: 2000, unhealthyAfter: 2, healthyAfter: 2 },
    onHealthChange: (c) => changes.push(c),
  });
  try {
    p.start();
    bHealthy = false;
    const [down] = (await once(p, 'health')) as [HealthChange];
    assert.deepEqual(down, { route: 'r', upstream: b.origin, healthy: false, reason: 'status 500' });
    const snap = p.health().find((h) => h.upstream === b.origin)!;
    assert.equal(snap.healthy, false);
    assert.ok(snap.consecutiveFailures >= 2);
    assert.equal(snap.lastError, 'status 500');
    for (let i = 0; i < 4; i++) assert.equal(await text(p), 'a');
    bHealthy = true;
    const [up] = (await once(p, 'health')) as [HealthChange];
    assert.deepEqual(up, { route: 'r', upstream: b.origin, healthy: true, reason: 'check passed' });
    const seen = [await text(p), await text(p)].sort();
    assert.deepEqual(seen, ['a', 'b']);
    assert.deepEqual(changes, [down, up]);
  } finally {
    await p.destroy();
    await a.close();
    await b.close();
  }
});

test('no healthy upstream: pick() is null and request fails with kind unavailable (503)', { timeout: 20000 }, async () => {
  const port = await deadPort();
  const p = pool({
    upstreams: [`http://127.0.0.1:${port}`],
    // The first check runs at once; a generous check timeout, so that a busy machine still sees the refusal itself.
    healthCheck: { path: '/healthz', intervalMs: 2000, timeoutMs: 2000, unhealthyAfter: 1, healthyAfter: 1 },
  });
  try {
    p.start();
    const [c] = (await once(p, 'health')) as [HealthChange];
    assert.equal(c.healthy, false);
    assert.equal(c.reason, 'ECONNREFUSED');
    assert.equal(p.pick(), null);
    await assert.rejects(p.request(GET()), (err: unknown) => err instanceof UpstreamError && err.kind === 'unavailable' && err.status === 503);
  } finally {
    await p.destroy();
  }
});

test('connection refused -> kind connect, 502', { timeout: 20000 }, async () => {
  const port = await deadPort();
  const p = pool({ upstreams: [`http://127.0.0.1:${port}`] });
  try {
    await assert.rejects(p.request(GET()), (err: unknown) => {
      assert.ok(err instanceof UpstreamError);
      assert.equal(err.kind, 'connect');
      assert.equal(err.status, 502);
      assert.equal(err.code, 'ECONNREFUSED');
      assert.equal(err.upstream, `http://127.0.0.1:${port}`);
      return true;
    });
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
  }
});

test('no response headers in time -> kind timeout, 504', { timeout: 20000 }, async () => {
  const s = await startServer(() => undefined); // never answers
  const p = pool({ upstreams: [s.origin], timeouts: { ...TIMEOUTS, headersMs: 100 } });
  try {
    await assert.rejects(p.request(GET()), (err: unknown) => {
      assert.ok(err instanceof UpstreamError);
      assert.equal(err.kind, 'timeout');
      assert.equal(err.status, 504);
      assert.equal(err.code, 'UND_ERR_HEADERS_TIMEOUT');
      return true;
    });
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
    await s.close();
  }
});

test('upstream closing mid-body -> trailers reject with kind reset', { timeout: 20000 }, async () => {
  const s = await startServer((_req, res) => {
    res.writeHead(200, { 'content-length': '100' });
    res.write('partial');
    setImmediate(() => res.socket?.destroy());
  });
  const p = pool({ upstreams: [s.origin] });
  try {
    const res = await p.request(GET());
    res.body.resume();
    res.body.on('error', () => undefined);
    await assert.rejects(res.trailers, (err: unknown) => err instanceof UpstreamError && err.kind === 'reset' && err.status === 502);
  } finally {
    await p.destroy();
    await s.close();
  }
});

test('aborting the signal cancels the upstream request (the upstream sees close)', { timeout: 20000 }, async () => {
  let sawRequest: () => void = () => undefined;
  const requested = new Promise<void>((r) => (sawRequest = r));
  let sawClose: () => void = () => undefined;
  const closed = new Promise<void>((r) => (sawClose = r));
  const s = await startServer((_req, res) => {
    res.on('close', () => {
      if (!res.writableFinished) sawClose();
    });
    sawRequest();
  });
  const p = pool({ upstreams: [s.origin] });
  try {
    const ac = new AbortController();
    const pending = p.request({ ...GET('/wait'), signal: ac.signal });
    await requested;
    assert.equal(p.health()[0]!.outstanding, 1);
    ac.abort();
    await assert.rejects(pending, (err: unknown) => err instanceof UpstreamError && err.kind === 'aborted');
    await closed;
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
    await s.close();
  }
});

test('aborting after the headers cancels the response body too', { timeout: 20000 }, async () => {
  let sawClose: () => void = () => undefined;
  const closed = new Promise<void>((r) => (sawClose = r));
  const s = await startServer((_req, res) => {
    res.on('close', () => {
      if (!res.writableFinished) sawClose();
    });
    res.writeHead(200);
    res.write('first');
  });
  const p = pool({ upstreams: [s.origin] });
  try {
    const ac = new AbortController();
    const res = await p.request({ ...GET(), signal: ac.signal });
    res.body.on('error', () => undefined);
    ac.abort();
    await assert.rejects(res.trailers, (err: unknown) => err instanceof UpstreamError && err.kind === 'aborted');
    await closed;
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
    await s.close();
  }
});

test('an UpstreamCancel (the forwarder\'s signal) cancels before and after the response headers', { timeout: 20000 }, async () => {
  let closes = 0;
  let sawClose: () => void = () => undefined;
  const s = await startServer((req, res) => {
    res.on('close', () => {
      if (!res.writableFinished && ++closes === 2) sawClose();
    });
    if (req.url === '/head-first') {
      res.writeHead(200);
      res.write('first');
    }
  });
  const bothClosed = new Promise<void>((r) => (sawClose = r));
  const p = pool({ upstreams: [s.origin] });
  try {
    // Before the headers: the pending request rejects as aborted.
    const before = new UpstreamCancel();
    const pending = p.request({ ...GET('/wait'), signal: before });
    await new Promise((r) => setTimeout(r, 100));
    before.abort(new Error('client cancelled the stream'));
    await assert.rejects(pending, (err: unknown) => err instanceof UpstreamError && err.kind === 'aborted');
    // After the headers: the body fails and the upstream sees the connection go.
    const after = new UpstreamCancel();
    const res = await p.request({ ...GET('/head-first'), signal: after });
    res.body.on('error', () => undefined);
    after.abort();
    assert.equal(after.aborted, true);
    await assert.rejects(res.trailers, (err: unknown) => err instanceof UpstreamError && err.kind === 'aborted');
    await bothClosed;
    assert.equal(p.health()[0]!.outstanding, 0);
    // Aborted already: refused without reaching the upstream.
    await assert.rejects(p.request({ ...GET(), signal: after }), (err: unknown) => err instanceof UpstreamError && err.kind === 'aborted');
  } finally {
    await p.destroy();
    await s.close();
  }
});

test('64 MB streamed up and back down with backpressure; request headers and trailers pass', { timeout: 60000 }, async () => {
  const TOTAL = 64 * 1024 * 1024;
  const CHUNK = 64 * 1024;
  let received = 0;
  let sentDown = 0;
  let seenHeader: string | undefined;
  const s = await startServer((req, res) => {
    seenHeader = req.headers['x-test'] as string | undefined;
    res.writeHead(200, { trailer: 'x-sha256' });
    const h = createHash('sha256');
    req.on('data', (chunk: Buffer) => {
      received += chunk.length;
      h.update(chunk);
      sentDown += chunk.length;
      if (!res.write(chunk)) {
        req.pause();
        res.once('drain', () => req.resume());
      }
    });
    req.on('end', () => {
      res.addTrailers({ 'x-sha256': h.digest('hex') });
      res.end();
    });
  });
  const p = pool({ upstreams: [s.origin] });
  try {
    let produced = 0;
    let maxAheadUp = 0;
    const up = createHash('sha256');
    const body = Readable.from(
      (function* () {
        for (let i = 0; produced < TOTAL; i++) {
          maxAheadUp = Math.max(maxAheadUp, produced - received);
          const chunk = Buffer.alloc(CHUNK, i & 0xff);
          up.update(chunk);
          produced += chunk.length;
          yield chunk;
        }
      })(),
      { objectMode: false, highWaterMark: CHUNK },
    );
    const res = await p.request({ method: 'POST', path: '/echo', headers: { 'x-test': 'yes' }, body });
    assert.equal(res.statusCode, 200);
    let got = 0;
    let maxAheadDown = 0;
    const down = createHash('sha256');
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      got += chunk.length;
      down.update(chunk);
      maxAheadDown = Math.max(maxAheadDown, sentDown - got);
      // A slow consumer: the server must wait for us instead of buffering everything.
      if (got % (1024 * 1024) < chunk.length) await new Promise((r) => setImmediate(r));
    }
    assert.equal(got, TOTAL);
    assert.equal(received, TOTAL);
    assert.equal(seenHeader, 'yes');
    const digest = up.digest('hex');
    assert.equal(down.digest('hex'), digest);
    assert.deepEqual(await res.trailers, { 'x-sha256': digest });
    // With backpressure neither side gets far ahead of the other (socket and stream buffers only).
    // Loopback TCP buffers auto-tune to several MB each way (about 5-7 MB ahead measured here, 8.9 MB once on a
    // loaded machine), so the bound is 16 MiB against a 64 MiB body: far less than buffering it all.
    assert.ok(maxAheadUp < 16 * 1024 * 1024, `producer ran ${maxAheadUp} bytes ahead of the upstream`);
    assert.ok(maxAheadDown < 16 * 1024 * 1024, `upstream ran ${maxAheadDown} bytes ahead of the reader`);
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
    await s.close();
  }
});

/** A request body that yields `chunks` pieces of `size` bytes, `gapMs` apart (a slow client trickling an upload). */
function trickle(chunks: number, size: number, gapMs: number): { body: Readable; sha256: () => string } {
  const h = createHash('sha256');
  let i = 0;
  const body = new Readable({
    read() {
      if (i === chunks) {
        this.push(null);
        return;
      }
      const chunk = Buffer.alloc(size, i++ & 0xff);
      h.update(chunk);
      setTimeout(() => this.push(chunk), gapMs);
    },
  });
  return { body, sha256: () => h.digest('hex') };
}

test('an upload that takes several times headersMs succeeds: the headers timer starts once the body is sent', { timeout: 20000 }, async () => {
  // The body takes about 2 s (10 pieces, 200 ms apart); the upstream answers as soon as it has all of it.
  const s = await startServer((req, res) => {
    const h = createHash('sha256');
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      h.update(c);
    });
    req.on('end', () => res.end(JSON.stringify({ bytes: n, sha256: h.digest('hex') })));
  });
  const p = pool({ upstreams: [s.origin], timeouts: { ...TIMEOUTS, headersMs: 300, idleBodyMs: 2000 } });
  try {
    const up = trickle(10, 1000, 200);
    const res = await p.request({ method: 'POST', path: '/upload', headers: { 'content-type': 'application/octet-stream' }, body: up.body });
    assert.equal(res.statusCode, 200);
    const j = JSON.parse(await res.body.text()) as { bytes: number; sha256: string };
    assert.equal(j.bytes, 10_000);
    assert.equal(j.sha256, up.sha256());
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
    await s.close();
  }
});

test('a backend that never answers after a slow upload still gets 504, counted from the end of the body', { timeout: 20000 }, async () => {
  let received = 0;
  let bodyEnded = false;
  const s = await startServer((req) => {
    req.on('data', (c: Buffer) => (received += c.length));
    req.on('end', () => (bodyEnded = true)); // and never answers
  });
  const p = pool({ upstreams: [s.origin], timeouts: { ...TIMEOUTS, headersMs: 300, idleBodyMs: 2000 } });
  try {
    const up = trickle(6, 1000, 200);
    await assert.rejects(p.request({ method: 'POST', path: '/upload', headers: {}, body: up.body }), (err: unknown) => {
      assert.ok(err instanceof UpstreamError, String(err));
      assert.equal(err.kind, 'timeout');
      assert.equal(err.status, 504);
      assert.equal(err.code, 'UND_ERR_HEADERS_TIMEOUT');
      // The whole body reached the upstream before the timer could fire.
      assert.equal(received, 6000);
      assert.equal(bodyEnded, true);
      return true;
    });
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
    await s.close();
  }
});

test('a request body that stalls is cut after idleBodyMs: 408 when the client stopped sending', { timeout: 20000 }, async () => {
  let received = 0;
  let closed = false;
  const s = await startServer((req) => {
    req.on('data', (c: Buffer) => (received += c.length));
    req.on('close', () => (closed = true));
  });
  const p = pool({ upstreams: [s.origin], timeouts: { ...TIMEOUTS, headersMs: 300, idleBodyMs: 400 } });
  try {
    // One piece, then nothing more (never ends).
    const body = new Readable({ read() {} });
    body.push(Buffer.alloc(1000, 1));
    await assert.rejects(p.request({ method: 'POST', path: '/upload', headers: {}, body }), (err: unknown) => {
      assert.ok(err instanceof UpstreamError, String(err));
      assert.equal(err.kind, 'timeout');
      assert.equal(err.status, 408);
      assert.match(err.message, /request body/);
      return true;
    });
    assert.equal(received, 1000);
    for (let i = 0; i < 100 && !closed; i++) await new Promise((r) => setTimeout(r, 20));
    assert.equal(closed, true, 'the upstream request was ended');
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
    await s.close();
  }
});

/** An UpstreamSink that records what dispatch() delivers; `pauseAt` bytes: onBody returns false once past it. */
class RecordingSink implements UpstreamSink {
  upstream: string | null = null;
  status = 0;
  head: string[] = [];
  bytes = 0;
  calls = 0;
  trailers: string[] | null = null;
  error: UpstreamError | null = null;
  paused = false;
  private settle: () => void = () => undefined;
  readonly done = new Promise<void>((r) => (this.settle = r));
  constructor(private pauseAt = Infinity) {}
  onResponse(upstream: string, statusCode: number, rawHeaders: Buffer[]): void {
    this.upstream = upstream;
    this.status = statusCode;
    this.head = rawHeaders.map((b) => b.toString('latin1'));
  }
  onBody(chunk: Buffer): boolean {
    this.calls++;
    this.bytes += chunk.length;
    if (this.bytes >= this.pauseAt && !this.paused) {
      this.paused = true;
      return false;
    }
    return true;
  }
  onEnd(rawTrailers: Buffer[]): void {
    this.trailers = rawTrailers.map((b) => b.toString('latin1'));
    this.settle();
  }
  onError(err: UpstreamError): void {
    this.error = err;
    this.settle();
  }
}

test('dispatch: head, body and trailers reach the sink; false from onBody holds the upstream until resume()', { timeout: 20000 }, async () => {
  // Well above what the kernel's socket buffers on loopback hold, so a paused sink must hold the upstream back.
  const TOTAL = 32 * 1024 * 1024;
  let written = 0;
  const s = await startServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'x-a': 'b', trailer: 'x-sum' });
    const chunk = Buffer.alloc(64 * 1024, 7);
    const more = (): void => {
      while (written < TOTAL) {
        written += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', more);
      }
      res.addTrailers({ 'x-sum': 'ok' });
      res.end();
    };
    more();
  });
  const p = pool({ upstreams: [s.origin] });
  try {
    const sink = new RecordingSink(256 * 1024);
    const call = p.dispatch(GET('/big'), sink);
    await new Promise((r) => setTimeout(r, 150));
    for (let i = 0; i < 20 && !sink.paused; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(sink.paused, true);
    assert.equal(sink.status, 200);
    assert.equal(sink.upstream, s.origin);
    assert.ok(sink.head.includes('x-a') && sink.head.includes('b'), `head: ${sink.head.join(' ')}`);
    // Paused: no more body while the sink does not resume (the upstream's writes back up).
    const seen = sink.bytes;
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(sink.bytes, seen);
    assert.ok(written < TOTAL, `the upstream wrote all ${written} bytes although the sink paused at ${seen}`);
    assert.equal(p.health()[0]!.outstanding, 1);
    call.resume();
    await sink.done;
    assert.equal(sink.error, null);
    assert.equal(sink.bytes, TOTAL);
    assert.deepEqual(sink.trailers, ['x-sum', 'ok']);
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
    await s.close();
  }
});

test('dispatch: failures before the head (connect, abort) and after it (the body cut) reach onError, mapped', { timeout: 20000 }, async () => {
  // Nothing listening: connect, 502.
  const dead = pool({ upstreams: [`http://127.0.0.1:${await deadPort()}`] });
  try {
    const sink = new RecordingSink();
    dead.dispatch(GET(), sink);
    await sink.done;
    assert.equal(sink.error?.kind, 'connect');
    assert.equal(sink.error?.status, 502);
    assert.equal(dead.health()[0]!.outstanding, 0);
  } finally {
    await dead.destroy();
  }
  let sawClose: () => void = () => undefined;
  const closed = new Promise<void>((r) => (sawClose = r));
  const s = await startServer((req, res) => {
    res.on('close', () => {
      if (!res.writableFinished) sawClose();
    });
    if (req.url === '/cut') {
      res.writeHead(200, { 'content-length': '100' });
      res.write('partial');
      setImmediate(() => res.socket?.destroy());
    }
  });
  const p = pool({ upstreams: [s.origin] });
  try {
    // abort() before the head: kind aborted, and the upstream sees its connection go.
    const sink = new RecordingSink();
    const call = p.dispatch(GET('/wait'), sink);
    await new Promise((r) => setTimeout(r, 100));
    call.abort(new Error('client cancelled the stream'));
    await sink.done;
    assert.equal(sink.error?.kind, 'aborted');
    assert.equal(sink.status, 0);
    await closed;
    // The upstream cuts the body: onError after onResponse, kind reset, with undici's error as the cause.
    const cut = new RecordingSink();
    p.dispatch(GET('/cut'), cut);
    await cut.done;
    assert.equal(cut.status, 200);
    assert.equal(cut.bytes, 'partial'.length);
    assert.equal(cut.error?.kind, 'reset');
    assert.ok(cut.error?.cause instanceof Error);
    assert.equal(p.health()[0]!.outstanding, 0);
  } finally {
    await p.destroy();
    await s.close();
  }
});
