/**
 * `staticHandler(root)` from src/services/static.ts (what `qsr serve` runs) with fake request/response objects:
 * GET/HEAD semantics (RFC 9110 §9.3.1-2), content-type/content-length, index.html, 404/403/400/405 + allow, path
 * traversal in its encoded and symlinked forms, streaming with backpressure (the file is never read whole into
 * memory), and the small-file cache (expiry on the handler's clock, a changed or deleted file seen after it, bounds).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  staticHandler,
  resolveRequestPath,
  DEFAULT_STATIC_CACHE,
  type AccessLogEntry,
  type StaticHandlerOptions,
  type StaticRequest,
  type StaticResponse,
} from '../../src/services/static.js';
import { contentType } from '../../src/services/mime.js';

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

class FakeReq extends PassThrough {
  constructor(
    readonly method: string,
    readonly path: string,
  ) {
    super();
  }
}

class FakeRes extends PassThrough {
  status: number | undefined;
  headers: Record<string, string> | undefined;
  headersSent = false;
  resetCode: number | undefined;
  written = 0;
  constructor() {
    super({ highWaterMark: 16 * 1024 });
  }
  respond(status: number, headers: Record<string, string> = {}): void {
    assert.equal(this.headersSent, false, 'respond called twice');
    this.status = status;
    this.headers = headers;
    this.headersSent = true;
  }
  reset(code?: number): void {
    this.resetCode = code;
    this.destroy();
  }
  override _transform(chunk: Buffer, enc: BufferEncoding, cb: (e?: Error | null, d?: Buffer) => void): void {
    assert.ok(this.headersSent, 'body before headers');
    this.written += chunk.length;
    cb(null, chunk);
  }
}

interface Result {
  status: number;
  headers: Record<string, string>;
  body: Buffer;
  log: AccessLogEntry;
}

let root = '';
let outside = '';
const big = randomBytes(1024 * 1024 + 123);
const logs: AccessLogEntry[] = [];
let handler: ReturnType<typeof staticHandler>;

function setup(): void {
  if (root) return;
  outside = mkdtempSync(join(tmpdir(), 'qsr-static-'));
  root = join(outside, 'www');
  mkdirSync(join(root, 'sub', 'deeper'), { recursive: true });
  mkdirSync(join(root, 'noindex'));
  mkdirSync(join(root, '.hidden'));
  writeFileSync(join(root, 'index.html'), '<h1>home</h1>\n');
  writeFileSync(join(root, 'sub', 'index.html'), '<h1>sub</h1>\n');
  writeFileSync(join(root, 'sub', 'deeper', 'data.json'), '{"a":1}');
  writeFileSync(join(root, 'big.bin'), big);
  writeFileSync(join(root, 'empty.txt'), '');
  writeFileSync(join(root, 'a b.txt'), 'space');
  writeFileSync(join(root, 'noext'), 'x');
  writeFileSync(join(root, '.hidden', 'key.pem'), 'secret');
  writeFileSync(join(outside, 'secret.txt'), 'outside the root');
  symlinkSync(join(outside, 'secret.txt'), join(root, 'link-out.txt'));
  symlinkSync(join(root, 'sub', 'index.html'), join(root, 'link-in.html'));
  handler = staticHandler(root, { onDone: (e) => logs.push(e) });
}

async function request(method: string, path: string): Promise<Result> {
  setup();
  return requestWith(handler, logs, method, path);
}

/** One request through `h`, whose onDone pushes to `entries`; resolves with the response once it is logged. */
async function requestWith(h: ReturnType<typeof staticHandler>, entries: AccessLogEntry[], method: string, path: string): Promise<Result> {
  const req = new FakeReq(method, path);
  req.end();
  const res = new FakeRes();
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  const before = entries.length;
  h(req as unknown as StaticRequest, res as unknown as StaticResponse);
  await within(new Promise<void>((r, j) => res.on('end', r).on('error', j)), 5000, `${method} ${path}`);
  await within(
    (async () => {
      while (entries.length === before) await new Promise((r) => setImmediate(r));
    })(),
    5000,
    'access log entry',
  );
  assert.ok(res.status !== undefined, 'responded');
  return { status: res.status, headers: res.headers ?? {}, body: Buffer.concat(chunks), log: entries[entries.length - 1] };
}

test.after(() => {
  if (outside) rmSync(outside, { recursive: true, force: true });
});

test('static: GET / serves index.html with type and length; the access entry records it', { timeout: 10_000 }, async () => {
  const r = await request('GET', '/');
  assert.equal(r.status, 200);
  assert.equal(r.body.toString(), '<h1>home</h1>\n');
  assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal(r.headers['content-length'], String(r.body.length));
  assert.ok(r.headers['last-modified']);
  assert.deepEqual({ ...r.log, ms: 0 }, { method: 'GET', path: '/', status: 200, bytes: 14, ms: 0 });
});

test('static: nested files, directories with and without index.html, query strings, percent-encoding', { timeout: 10_000 }, async () => {
  const json = await request('GET', '/sub/deeper/data.json?x=1');
  assert.equal(json.status, 200);
  assert.equal(json.headers['content-type'], 'application/json');
  assert.equal(json.body.toString(), '{"a":1}');
  assert.equal((await request('GET', '/sub')).body.toString(), '<h1>sub</h1>\n');
  assert.equal((await request('GET', '/sub/')).body.toString(), '<h1>sub</h1>\n');
  assert.equal((await request('GET', '/noindex/')).status, 404);
  assert.equal((await request('GET', '/a%20b.txt')).body.toString(), 'space');
  assert.equal((await request('GET', '/noext')).headers['content-type'], 'application/octet-stream');
  const empty = await request('GET', '/empty.txt');
  assert.equal(empty.status, 200);
  assert.equal(empty.headers['content-length'], '0');
  assert.equal(empty.body.length, 0);
  assert.equal((await request('GET', '/link-in.html')).body.toString(), '<h1>sub</h1>\n', 'symlink inside the root is followed');
});

test('static: a 1 MB file arrives byte-identical', { timeout: 10_000 }, async () => {
  const r = await request('GET', '/big.bin');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], String(big.length));
  assert.ok(r.body.equals(big));
  assert.equal(r.log.bytes, big.length);
});

test('static: HEAD has the headers of GET and no body', { timeout: 10_000 }, async () => {
  const r = await request('HEAD', '/big.bin');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], String(big.length));
  assert.equal(r.headers['content-type'], 'application/octet-stream');
  assert.equal(r.body.length, 0);
  assert.equal(r.log.bytes, 0);
  const missing = await request('HEAD', '/nope');
  assert.equal(missing.status, 404);
  assert.equal(missing.body.length, 0);
});

test('static: 404 with a short text body; 405 with allow for other methods', { timeout: 10_000 }, async () => {
  const r = await request('GET', '/does/not/exist.html');
  assert.equal(r.status, 404);
  assert.equal(r.headers['content-type'], 'text/plain; charset=utf-8');
  assert.equal(r.body.toString(), 'Not Found\n');
  assert.equal(r.headers['content-length'], '10');
  for (const m of ['POST', 'PUT', 'DELETE', 'OPTIONS', 'get']) {
    const x = await request(m, '/');
    assert.equal(x.status, 405, m);
    assert.equal(x.headers.allow, 'GET, HEAD');
  }
});

test('static: nothing outside the root, no hidden files, malformed paths refused', { timeout: 10_000 }, async () => {
  for (const p of ['/../secret.txt', '/sub/../../secret.txt', '/%2e%2e/secret.txt', '/%2e%2e%2fsecret.txt', '/sub%2f..%2f..%2fsecret.txt', '/link-out.txt']) {
    const r = await request('GET', p);
    assert.ok(r.status === 403 || r.status === 404, `${p} -> ${r.status}`);
    assert.ok(!r.body.toString().includes('outside the root'), p);
  }
  assert.equal((await request('GET', '/../secret.txt')).status, 403);
  assert.equal((await request('GET', '/link-out.txt')).status, 403);
  assert.equal((await request('GET', '/.hidden/key.pem')).status, 404);
  assert.equal((await request('GET', '/sub/../index.html')).status, 200, 'a .. that stays inside is fine');
  assert.equal((await request('GET', '/%zz')).status, 400);
  assert.equal((await request('GET', '/a%00b')).status, 400);
  assert.equal((await request('GET', 'relative')).status, 400);
  assert.deepEqual(await resolveRequestPath(root, '/../www/index.html'), { kind: 'file', path: join(root, 'index.html') });
});

test('static: the body is streamed with backpressure, not read whole', { timeout: 10_000 }, async () => {
  setup();
  const req = new FakeReq('GET', '/big.bin');
  req.end();
  const res = new FakeRes();
  handler(req as unknown as StaticRequest, res as unknown as StaticResponse);
  // Nobody reads the response: the pipe must stop once the response's buffers are full.
  await within(
    (async () => {
      while (!res.headersSent) await new Promise((r) => setImmediate(r));
    })(),
    5000,
    'headers',
  );
  for (let i = 0; i < 50; i++) await new Promise((r) => setImmediate(r));
  await new Promise((r) => setTimeout(r, 50));
  assert.ok(res.written < 256 * 1024, `only a few chunks written while the reader is stalled (${res.written})`);
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  await within(new Promise((r) => res.on('end', r)), 5000, 'body');
  assert.ok(Buffer.concat(chunks).equals(big));
});

test('static: a reset response stops reading the file and logs the request', { timeout: 10_000 }, async () => {
  setup();
  const req = new FakeReq('GET', '/big.bin');
  req.end();
  const res = new FakeRes();
  const before = logs.length;
  handler(req as unknown as StaticRequest, res as unknown as StaticResponse);
  await within(
    (async () => {
      while (!res.headersSent) await new Promise((r) => setImmediate(r));
    })(),
    5000,
    'headers',
  );
  res.destroy(); // what a STOP_SENDING / client reset looks like from here
  await within(
    (async () => {
      while (logs.length === before) await new Promise((r) => setImmediate(r));
    })(),
    5000,
    'access log entry after reset',
  );
  assert.ok(logs[logs.length - 1].bytes < big.length);
});

// The small-file cache, on a clock of the test's own (no timing in the assertions).

const dirs: string[] = [];
test.after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

/** A fresh directory and a handler over it whose cache runs on `clock.t`. */
function cachedSite(files: Record<string, string>, cache?: StaticHandlerOptions['cache']) {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-static-cache-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  const clock = { t: 1_000_000 };
  const entries: AccessLogEntry[] = [];
  const h = staticHandler(dir, { onDone: (e) => entries.push(e), now: () => clock.t, cache });
  const get = async (path: string, method = 'GET'): Promise<Result> => requestWith(h, entries, method, path);
  /** Replace a file's content and give it another modification time. */
  const change = (name: string, text: string, mtime = new Date('2020-01-02T03:04:05Z')): void => {
    writeFileSync(join(dir, name), text);
    utimesSync(join(dir, name), mtime, mtime);
  };
  return { dir, clock, get, change };
}
test('static cache: the defaults are the ones qsr serve has always used', () => {
  assert.deepEqual({ ...DEFAULT_STATIC_CACHE }, { ttlMs: 1000, fileMax: 64 * 1024, entries: 1000, bytes: 32 * 1024 * 1024 });
});

test('static cache: a small file is served from memory until its entry expires, then the changed file and its mtime', { timeout: 10_000 }, async () => {
  const site = cachedSite({ 'c.txt': 'one' });
  const first = await site.get('/c.txt');
  assert.equal(first.body.toString(), 'one');
  const firstModified = first.headers['last-modified'];
  site.change('c.txt', 'two, longer');
  const cached = await site.get('/c.txt');
  assert.equal(cached.body.toString(), 'one', 'within the TTL the cached body is served');
  assert.equal(cached.headers['last-modified'], firstModified);
  assert.equal(cached.headers['content-length'], '3');
  assert.equal(cached.headers['content-type'], 'text/plain; charset=utf-8');
  const head = await site.get('/c.txt', 'HEAD');
  assert.equal(head.headers['content-length'], '3', 'HEAD from the cache has the cached length');
  assert.equal(head.body.length, 0);
  assert.equal(head.log.bytes, 0);
  site.clock.t += DEFAULT_STATIC_CACHE.ttlMs - 1;
  assert.equal((await site.get('/c.txt')).body.toString(), 'one', 'one ms before expiry');
  site.clock.t += 1;
  const fresh = await site.get('/c.txt');
  assert.equal(fresh.body.toString(), 'two, longer', 'at expiry the file is read again');
  assert.equal(fresh.headers['content-length'], '11');
  assert.equal(fresh.headers['last-modified'], 'Thu, 02 Jan 2020 03:04:05 GMT', 'the new modification time');
  assert.equal(fresh.log.bytes, 11);
  // The query string is part of the key: another query is another entry.
  site.change('c.txt', 'three', new Date('2021-01-01T00:00:00Z'));
  assert.equal((await site.get('/c.txt')).body.toString(), 'two, longer');
  assert.equal((await site.get('/c.txt?v=2')).body.toString(), 'three');
});

test('static cache: a deleted file is served until its entry expires, then 404', { timeout: 10_000 }, async () => {
  const site = cachedSite({ 'gone.txt': 'here' });
  assert.equal((await site.get('/gone.txt')).status, 200);
  unlinkSync(join(site.dir, 'gone.txt'));
  assert.equal((await site.get('/gone.txt')).body.toString(), 'here');
  site.clock.t += DEFAULT_STATIC_CACHE.ttlMs;
  assert.equal((await site.get('/gone.txt')).status, 404);
});

test('static cache: files over fileMax, HEAD requests and errors are not cached; ttlMs 0 turns it off', { timeout: 10_000 }, async () => {
  const site = cachedSite({ 'big.txt': '12345678', 'small.txt': '1234', 'head.txt': 'h' }, { fileMax: 4 });
  assert.equal((await site.get('/big.txt')).body.toString(), '12345678');
  assert.equal((await site.get('/small.txt')).body.toString(), '1234');
  assert.equal((await site.get('/head.txt', 'HEAD')).status, 200);
  assert.equal((await site.get('/later.txt')).status, 404);
  site.change('big.txt', 'ABCDEFGH');
  site.change('small.txt', 'abcd');
  site.change('head.txt', 'H');
  site.change('later.txt', 'now');
  assert.equal((await site.get('/big.txt')).body.toString(), 'ABCDEFGH', 'a streamed file is read every time');
  assert.equal((await site.get('/small.txt')).body.toString(), '1234', 'a file of fileMax bytes is cached');
  assert.equal((await site.get('/head.txt')).body.toString(), 'H', 'HEAD did not fill the cache');
  assert.equal((await site.get('/later.txt')).body.toString(), 'now', 'a 404 is not cached');

  const off = cachedSite({ 'x.txt': 'x' }, { ttlMs: 0 });
  assert.equal((await off.get('/x.txt')).body.toString(), 'x');
  off.change('x.txt', 'y');
  assert.equal((await off.get('/x.txt')).body.toString(), 'y');
});

test('static cache: bounded in entries and bytes; when full, expired entries make room', { timeout: 10_000 }, async () => {
  const site = cachedSite({ 'a.txt': 'a', 'b.txt': 'b', 'c.txt': 'c' }, { entries: 2 });
  for (const n of ['a', 'b', 'c']) await site.get(`/${n}.txt`);
  for (const n of ['a', 'b', 'c']) site.change(`${n}.txt`, n.toUpperCase());
  assert.equal((await site.get('/a.txt')).body.toString(), 'a');
  assert.equal((await site.get('/b.txt')).body.toString(), 'b');
  assert.equal((await site.get('/c.txt')).body.toString(), 'C', 'the third file did not fit');
  assert.equal((await site.get('/c.txt')).body.toString(), 'C', 'and still does not while a and b are fresh');
  site.clock.t += DEFAULT_STATIC_CACHE.ttlMs;
  assert.equal((await site.get('/c.txt')).body.toString(), 'C', 'expired entries were dropped and c cached');
  site.change('c.txt', 'c again');
  assert.equal((await site.get('/c.txt')).body.toString(), 'C', 'c is served from the cache now');

  const bytes = cachedSite({ 'p.txt': '123456', 'q.txt': 'abcdef' }, { bytes: 10 });
  await bytes.get('/p.txt');
  await bytes.get('/q.txt');
  bytes.change('p.txt', 'PPPPPP');
  bytes.change('q.txt', 'QQQQQQ');
  assert.equal((await bytes.get('/p.txt')).body.toString(), '123456', 'the first 6 bytes fit');
  assert.equal((await bytes.get('/q.txt')).body.toString(), 'QQQQQQ', '6 more would make 12 > 10');
});

test('mime: the built-in table', () => {
  const cases: [string, string][] = [
    ['a.html', 'text/html; charset=utf-8'],
    ['a.css', 'text/css; charset=utf-8'],
    ['a.js', 'text/javascript; charset=utf-8'],
    ['a.json', 'application/json'],
    ['a.txt', 'text/plain; charset=utf-8'],
    ['a.PNG', 'image/png'],
    ['a.jpg', 'image/jpeg'],
    ['a.gif', 'image/gif'],
    ['a.svg', 'image/svg+xml'],
    ['a.ico', 'image/x-icon'],
    ['a.wasm', 'application/wasm'],
    ['a.mp4', 'video/mp4'],
    ['a.webm', 'video/webm'],
    ['a.pdf', 'application/pdf'],
    ['a.bin', 'application/octet-stream'],
    ['a.unknown', 'application/octet-stream'],
    ['/dir.d/noext', 'application/octet-stream'],
  ];
  for (const [f, t] of cases) assert.equal(contentType(f), t, f);
});
