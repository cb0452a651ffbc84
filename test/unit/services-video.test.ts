/**
 * The video service over real HTTP/1.1 on 127.0.0.1: a 50 MB streamed upload hashed without buffering (RSS
 * checked), the paced live feed (size, MPEG-TS framing, chunked coding, generous pacing sanity), parameter
 * validation, client aborts of both a live stream and an upload (counted, timer stopped), and close() cutting a
 * live stream.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable } from 'node:stream';
import { createHash, randomBytes } from 'node:crypto';
import { startService, type RunningService, type ServiceLogEvent } from '../../src/services/index.js';
import { within, waitFor, request, json, type Reply } from './services-helpers.js';
import { PATTERN_BLOCK, patternBytes, patternSha256 } from '../../src/services/pattern.js';


const events: ServiceLogEvent[] = [];
let svc: RunningService;

test('start the video service on an ephemeral port', async () => {
  svc = await startService('video', { port: 0, log: (e) => events.push(e) });
  assert.match(svc.url, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(svc.port > 0);
});

after(() => svc?.server.closeAllConnections());
after(() => svc?.server.shutdown());

test('POST /video: 50 MB streamed upload, sha256 matches, RSS does not grow by the body size', { timeout: 60_000 }, async () => {
  const CHUNK = 64 * 1024;
  const total = 50 * 1024 * 1024 + 12_345;
  // A few distinct immutable chunks, reused: the client itself allocates nothing per chunk.
  const pool = Array.from({ length: 7 }, () => randomBytes(CHUNK));
  const expected = createHash('sha256');
  let produced = 0;
  let i = 0;
  const body = new Readable({
    read() {
      if (produced >= total) {
        this.push(null);
        return;
      }
      const chunk = pool[i++ % pool.length].subarray(0, Math.min(CHUNK, total - produced));
      produced += chunk.length;
      expected.update(chunk);
      this.push(chunk);
    },
  });
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  let rssPeak = rssBefore;
  const sampler = setInterval(() => {
    rssPeak = Math.max(rssPeak, process.memoryUsage().rss);
  }, 20);
  try {
    const r = await request(svc.url, '/video', {
      method: 'POST',
      headers: { 'content-type': 'application/octet-stream', 'transfer-encoding': 'chunked' },
      body,
    }, 50_000);
    assert.equal(r.status, 200);
    assert.equal(r.headers['x-service'], 'video');
    const j = json(r);
    assert.equal(j.bytes, total);
    assert.equal(j.sha256, expected.digest('hex'));
    assert.equal(typeof j.ms, 'number');
    assert.ok((j.ms as number) >= 0);
  } finally {
    clearInterval(sampler);
  }
  const growth = rssPeak - rssBefore;
  assert.ok(growth < 40 * 1024 * 1024, `RSS grew by ${(growth / 1048576).toFixed(1)} MB during a 50 MB upload`);
});

test('POST /video: empty and small bodies, with content-length', async () => {
  const empty = json(await request(svc.url, '/video', { method: 'POST', body: Buffer.alloc(0) }));
  assert.deepEqual([empty.bytes, empty.sha256], [0, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']);
  const abc = json(await request(svc.url, '/video', { method: 'POST', body: 'abc' }));
  assert.deepEqual([abc.bytes, abc.sha256], [3, 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad']);
});

test('GET /video/stream: 1 s at 800 kbps is a paced, chunked MPEG-TS feed of about 100 kB', { timeout: 20_000 }, async () => {
  const started = Date.now();
  let dataEvents = 0;
  const r = await within(
    new Promise<Reply>((resolve, reject) => {
      http
        .get(new URL('/video/stream?seconds=1&kbps=800', svc.url), (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => {
            dataEvents++;
            chunks.push(c);
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        })
        .on('error', reject);
    }),
    15_000,
    'the live stream',
  );
  const ms = Date.now() - started;
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-service'], 'video');
  assert.equal(r.headers['content-type'], 'video/mp2t');
  assert.equal(r.headers['transfer-encoding'], 'chunked');
  assert.equal(r.headers['content-length'], undefined);
  assert.ok(r.body.length >= 50_000 && r.body.length <= 200_000, `got ${r.body.length} bytes`);
  assert.equal(r.body.length, 100_000, 'the schedule ends with exactly kbps * 125 * seconds bytes');
  for (let off = 0; off < r.body.length; off += 188) assert.equal(r.body[off], 0x47, `TS sync byte at ${off}`);
  // Pacing sanity only: a 1 s feed cannot finish in under half a second, and it arrives in several pieces.
  assert.ok(ms >= 500, `the 1 s stream ended after ${ms} ms`);
  assert.ok(dataEvents >= 3, `only ${dataEvents} data events`);
  assert.equal(svc.server.stats.liveStreams, 0);
});

test('GET /video/stream: fractional seconds and a tiny rate', { timeout: 20_000 }, async () => {
  const r = await request(svc.url, '/video/stream?seconds=0.3&kbps=1');
  assert.equal(r.status, 200);
  assert.equal(r.body.length, Math.round(0.3 * 125)); // 37.5 -> 38 bytes
});

test('GET /video/stream: a reader that stops reading loses data (live) instead of growing the queue', { timeout: 30_000 }, async () => {
  // 1 Gbit/s for 0.5 s is 62.5 MB; the client does not read until the server has finished.
  const before = events.length;
  const received = await within(
    new Promise<number>((resolve, reject) => {
      http
        .get(new URL('/video/stream?seconds=0.5&kbps=1000000', svc.url), (res) => {
          res.pause();
          waitFor(() => events.slice(before).some((e) => e.event === 'stream-done'), 'the feed to finish', 15_000)
            .then(() => {
              let n = 0;
              res.on('data', (c: Buffer) => (n += c.length));
              res.on('end', () => resolve(n));
              res.resume();
            })
            .catch(reject);
        })
        .on('error', reject);
    }),
    25_000,
    'the fast stream',
  );
  const done = events.slice(before).find((e) => e.event === 'stream-done');
  assert.ok(done);
  const total = 1_000_000 * 125 * 0.5;
  assert.equal((done.sent as number) + (done.dropped as number), total);
  assert.ok((done.dropped as number) > 0, 'a stalled reader must cause drops');
  assert.equal(received, done.sent);
});

test('GET /video/stream: invalid parameters give 400 naming the parameter', async () => {
  const cases: [string, string][] = [
    ['?kbps=800', 'seconds'],
    ['?seconds=&kbps=800', 'seconds'],
    ['?seconds=0&kbps=800', 'seconds'],
    ['?seconds=-1&kbps=800', 'seconds'],
    ['?seconds=3601&kbps=800', 'seconds'],
    ['?seconds=abc&kbps=800', 'seconds'],
    ['?seconds=Infinity&kbps=800', 'seconds'],
    ['?seconds=1', 'kbps'],
    ['?seconds=1&kbps=0', 'kbps'],
    ['?seconds=1&kbps=1000001', 'kbps'],
    ['?seconds=1&kbps=1.5', 'kbps'],
    ['?seconds=1&kbps=fast', 'kbps'],
  ];
  for (const [q, param] of cases) {
    const r = await request(svc.url, `/video/stream${q}`);
    assert.equal(r.status, 400, q);
    assert.equal(r.headers['x-service'], 'video');
    const j = json(r);
    assert.equal(j.parameter, param, q);
    assert.match(String(j.error), new RegExp(param), q);
  }
  assert.equal(svc.server.stats.liveStreams, 0);
  // The limits themselves are accepted (HEAD: headers only, no feed is started).
  const head = await request(svc.url, '/video/stream?seconds=3600&kbps=1000000', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
  assert.equal(svc.server.stats.liveStreams, 0);
});

test('GET /video/bytes: exactly N bytes of the documented pattern, with its sha256 in a header', { timeout: 30_000 }, async () => {
  for (const n of [0, 1, PATTERN_BLOCK - 1, PATTERN_BLOCK, PATTERN_BLOCK + 1, 3 * PATTERN_BLOCK + 777, 5_000_000]) {
    const r = await request(svc.url, `/video/bytes?n=${n}`);
    assert.equal(r.status, 200, String(n));
    assert.equal(r.headers['content-length'], String(n));
    assert.equal(r.body.length, n);
    const sha = createHash('sha256').update(r.body).digest('hex');
    assert.equal(r.headers['x-content-sha256'], sha, `header sha256 for ${n}`);
    assert.equal(patternSha256(n), sha, `patternSha256(${n})`);
    assert.ok(r.body.equals(patternBytes(0, n)), `content for ${n}`);
  }
  // Blocks are stamped with their number: two blocks differ, and a slice from the middle matches.
  const two = patternBytes(0, 2 * PATTERN_BLOCK);
  assert.ok(!two.subarray(0, PATTERN_BLOCK).equals(two.subarray(PATTERN_BLOCK)));
  assert.ok(patternBytes(PATTERN_BLOCK - 5, 10).equals(two.subarray(PATTERN_BLOCK - 5, PATTERN_BLOCK + 5)));
  for (const q of ['', '?n=-1', '?n=1.5', '?n=abc', `?n=${64 * 1024 ** 3 + 1}`]) {
    const bad = await request(svc.url, `/video/bytes${q}`);
    assert.equal(bad.status, 400, q);
    assert.equal(json(bad).parameter, 'n');
  }
  const head = await request(svc.url, '/video/bytes?n=1000', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '1000');
  assert.equal(head.body.length, 0);
});

test('wrong method and unknown path', async () => {
  const r = await request(svc.url, '/video');
  assert.equal(r.status, 405);
  assert.equal(r.headers.allow, 'POST');
  const s = await request(svc.url, '/video/stream?seconds=1&kbps=1', { method: 'POST', body: 'x' });
  assert.equal(s.status, 405);
  assert.equal(s.headers.allow, 'GET, HEAD');
  const n = await request(svc.url, '/video/nope');
  assert.equal(n.status, 404);
  assert.deepEqual(json(n), { error: 'not found', path: '/video/nope', service: 'video' });
});

test('a client leaving a live stream stops its timer and is counted in stats.aborted', { timeout: 20_000 }, async () => {
  const abortedBefore = svc.server.stats.aborted;
  await within(
    new Promise<void>((resolve, reject) => {
      const req = http.get(new URL('/video/stream?seconds=60&kbps=800', svc.url), (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    }),
    10_000,
    'the first chunk of the live stream',
  );
  await waitFor(() => svc.server.stats.aborted === abortedBefore + 1, 'stats.aborted to count the stream');
  await waitFor(() => svc.server.stats.liveStreams === 0, 'the stream timer to stop');
  const ev = events.find((e) => e.event === 'stream-aborted');
  assert.ok(ev, 'a stream-aborted log event');
  assert.ok((ev.sent as number) > 0);
});

test('a client resetting mid-upload is counted in stats.aborted', { timeout: 20_000 }, async () => {
  const abortedBefore = svc.server.stats.aborted;
  const uploadsBefore = events.filter((e) => e.event === 'upload').length;
  const req = http.request(new URL('/video', svc.url), { method: 'POST', headers: { 'transfer-encoding': 'chunked' } });
  req.on('error', () => {});
  req.write(randomBytes(256 * 1024));
  await waitFor(() => svc.server.stats.inFlight > 0, 'the upload to reach the service');
  req.destroy();
  await waitFor(() => svc.server.stats.aborted === abortedBefore + 1, 'stats.aborted to count the upload');
  assert.equal(events.filter((e) => e.event === 'upload').length, uploadsBefore, 'no upload was answered');
  assert.ok(events.some((e) => e.event === 'aborted' && e.method === 'POST'));
});

test('close() cuts a running live stream (no last chunk: the client sees it incomplete, not ended) and resolves', { timeout: 20_000 }, async () => {
  const seen: ServiceLogEvent[] = [];
  const own = await startService('video', { port: 0, log: (e) => seen.push(e), closeTimeoutMs: 2000 });
  let n = 0;
  const done = within(
    new Promise<'ended' | 'cut'>((resolve) => {
      http
        .get(new URL('/video/stream?seconds=600&kbps=80', own.url), (res) => {
          res.on('data', (c: Buffer) => (n += c.length));
          res.on('end', () => resolve('ended'));
          res.on('error', () => resolve('cut'));
        })
        .on('error', () => resolve('cut'));
    }),
    10_000,
    'the stream to end',
  );
  await waitFor(() => own.server.stats.liveStreams === 1, 'the stream to start');
  await new Promise((r) => setTimeout(r, 250));
  await within(own.server.shutdown(), 5000, 'close()');
  assert.equal(await done, 'cut', 'a shortened feed must not end like a complete one');
  assert.ok(n > 0 && n < 600 * 10_000, `${n} bytes before the close`);
  assert.equal(own.server.stats.liveStreams, 0);
  assert.equal(own.server.stats.aborted, 0, 'cut by the server, not aborted by the client');
  await waitFor(() => seen.some((e) => e.event === 'cut' && e.path === '/video/stream?seconds=600&kbps=80'), 'the "cut" log event');
});
