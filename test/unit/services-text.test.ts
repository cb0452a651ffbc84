/**
 * The text service over real HTTP/1.1 on 127.0.0.1: counts and upper-casing (ASCII, non-BMP code points, Unicode
 * white space, line rules), invalid UTF-8 (400), a non-UTF-8 charset (415), the 10 MB limit both by
 * content-length and mid-chunked-body (413), the sample page, and method/path errors.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable } from 'node:stream';
import { startService, countText, type RunningService } from '../../src/services/index.js';
import { TEXT_LIMIT, SAMPLE_SENTENCE } from '../../src/services/text.js';
import { within, request, json, type Reply } from './services-helpers.js';


let svc: RunningService;

test('start the text service on an ephemeral port', async () => {
  svc = await startService('text', { port: 0, log: () => {} });
});

after(() => svc?.server.closeAllConnections());
after(() => svc?.server.shutdown());

const post = (body: string | Buffer | Readable, headers: http.OutgoingHttpHeaders = { 'content-type': 'text/plain; charset=utf-8' }) =>
  request(svc.url, '/text', { method: 'POST', headers, body });

test('POST /text: chars, words, lines, bytes and uppercase', async () => {
  const r = await post('Hello wörld\nfoo  bar\n');
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-service'], 'text');
  assert.match(String(r.headers['content-type']), /^application\/json/);
  assert.deepEqual(json(r), { chars: 21, words: 4, lines: 2, bytes: 22, uppercase: 'HELLO WÖRLD\nFOO  BAR\n' });
});

test('countText: edge cases', () => {
  assert.deepEqual(countText(''), { chars: 0, words: 0, lines: 0, bytes: 0 });
  assert.deepEqual(countText('a'), { chars: 1, words: 1, lines: 1, bytes: 1 });
  assert.deepEqual(countText('a\nb'), { chars: 3, words: 2, lines: 2, bytes: 3 });
  assert.deepEqual(countText('\n\n'), { chars: 2, words: 0, lines: 2, bytes: 2 });
  assert.deepEqual(countText('  \t '), { chars: 4, words: 0, lines: 1, bytes: 4 });
  // U+1F98A is one code point (two UTF-16 units, four UTF-8 bytes); U+00A0 and U+3000 are white space.
  assert.deepEqual(countText('fox\u{1F98A}\u00a0dog\u3000cat'), { chars: 12, words: 3, lines: 1, bytes: 3 + 4 + 2 + 3 + 3 + 3 });
  assert.deepEqual(countText('a\r\nb\r\n'), { chars: 6, words: 2, lines: 2, bytes: 6 });
});

test('POST /text: Unicode upper-casing and an empty body', async () => {
  assert.equal(json(await post('straße ǆ ﬁ')).uppercase, 'STRASSE Ǆ FI');
  assert.deepEqual(json(await post('')), { chars: 0, words: 0, lines: 0, bytes: 0, uppercase: '' });
  // no content-type at all is accepted as UTF-8 text
  assert.equal(json(await post('ok', {})).uppercase, 'OK');
});

test('POST /text: invalid UTF-8 is 400, another charset is 415', async () => {
  const bad = await post(Buffer.from([0x61, 0xff, 0x62]));
  assert.equal(bad.status, 400);
  assert.match(String(json(bad).error), /UTF-8/);
  const latin1 = await post(Buffer.from('caf\xe9', 'latin1'), { 'content-type': 'text/plain; charset=ISO-8859-1' });
  assert.equal(latin1.status, 415);
  assert.equal(latin1.headers['x-service'], 'text');
});

test('POST /text: exactly 10 MB is accepted', { timeout: 30_000 }, async () => {
  const r = await post(Buffer.alloc(TEXT_LIMIT, 'a'));
  assert.equal(r.status, 200);
  const j = json(r);
  assert.deepEqual([j.chars, j.words, j.lines, j.bytes], [TEXT_LIMIT, 1, 1, TEXT_LIMIT]);
  assert.equal((j.uppercase as string).length, TEXT_LIMIT);
  assert.match(j.uppercase as string, /^A+$/);
});

test('POST /text: 10 MB + 1 byte is 413, by content-length', { timeout: 30_000 }, async () => {
  const r = await post(Buffer.alloc(TEXT_LIMIT + 1, 'a'));
  assert.equal(r.status, 413);
  assert.equal(r.headers['x-service'], 'text');
  assert.equal(r.headers.connection, 'close');
  assert.equal(json(r).limit, TEXT_LIMIT);
});

test('POST /text: a chunked body that passes 10 MB is 413', { timeout: 30_000 }, async () => {
  // 12 MB in 64 KiB chunks, no content-length: the service only finds out while reading.
  let left = 12 * 1024 * 1024;
  const chunk = Buffer.alloc(64 * 1024, 'b');
  const body = new Readable({
    read() {
      if (left <= 0) return void this.push(null);
      left -= chunk.length;
      this.push(chunk);
    },
  });
  // The service answers as soon as the limit is passed and then closes, so the client may see a reset while still
  // writing; the response must have arrived either way.
  const r = await within(
    new Promise<Reply>((resolve, reject) => {
      const req = http.request(new URL('/text', svc.url), { method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      });
      req.on('error', (e) => setTimeout(() => reject(e), 500));
      body.pipe(req);
    }),
    20_000,
    'the 413',
  );
  assert.equal(r.status, 413);
  assert.equal(r.headers['x-service'], 'text');
});

test('GET /text/sample: a small HTML page with the sample sentence', async () => {
  const r = await request(svc.url, '/text/sample');
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-type'], 'text/html; charset=utf-8');
  assert.equal(r.headers['x-service'], 'text');
  assert.equal(Number(r.headers['content-length']), r.body.length);
  const html = r.body.toString('utf8');
  assert.match(html, /^<!doctype html>/i);
  assert.ok(html.includes(`<p id="sample">${SAMPLE_SENTENCE}</p>`));
  assert.equal(SAMPLE_SENTENCE, 'The quick brown fox jumps over the lazy dog.');
  const head = await request(svc.url, '/text/sample', { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.body.length, 0);
});

test('wrong method and unknown path', async () => {
  const g = await request(svc.url, '/text');
  assert.equal(g.status, 405);
  assert.equal(g.headers.allow, 'POST');
  const p = await request(svc.url, '/text/sample', { method: 'POST', body: 'x' });
  assert.equal(p.status, 405);
  assert.equal(p.headers.allow, 'GET, HEAD');
  const n = await request(svc.url, '/text/sample/');
  assert.equal(n.status, 404);
  assert.deepEqual(json(n), { error: 'not found', path: '/text/sample/', service: 'text' });
});

test('maxBodyBytes sets the POST /text limit: at the limit 200, one byte over 413 naming the limit', async () => {
  const own = await startService('text', { port: 0, log: () => {}, maxBodyBytes: 1000 });
  try {
    const ok = await request(own.url, '/text', { method: 'POST', body: 'x'.repeat(1000) });
    assert.equal(ok.status, 200);
    assert.equal(json(ok).bytes, 1000);
    const over = await request(own.url, '/text', { method: 'POST', body: 'x'.repeat(1001) });
    assert.equal(over.status, 413);
    assert.equal(json(over).limit, 1000);
    assert.match(String(json(over).error), /limit of 1000 bytes/);
  } finally {
    await own.server.shutdown();
  }
});
