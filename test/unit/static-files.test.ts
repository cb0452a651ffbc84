/**
 * `staticHandler(root)` from src/cli/serve.ts with fake request/response objects: GET/HEAD semantics
 * (RFC 9110 §9.3.1-2), content-type/content-length, index.html, 404/403/400/405 + allow, path traversal in its
 * encoded and symlinked forms, and streaming with backpressure (the file is never read whole into memory).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { staticHandler, resolveRequestPath, type AccessLogEntry, type StaticRequest, type StaticResponse } from '../../src/cli/serve.js';
import { contentType } from '../../src/cli/mime.js';

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
  const req = new FakeReq(method, path);
  req.end();
  const res = new FakeRes();
  const chunks: Buffer[] = [];
  res.on('data', (c: Buffer) => chunks.push(c));
  const before = logs.length;
  handler(req as unknown as StaticRequest, res as unknown as StaticResponse);
  await within(new Promise<void>((r, j) => res.on('end', r).on('error', j)), 5000, `${method} ${path}`);
  await within(
    (async () => {
      while (logs.length === before) await new Promise((r) => setImmediate(r));
    })(),
    5000,
    'access log entry',
  );
  assert.ok(res.status !== undefined, 'responded');
  return { status: res.status, headers: res.headers ?? {}, body: Buffer.concat(chunks), log: logs[logs.length - 1] };
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
