/** HTTP/3 message validation (RFC 9114 §4.1.2, §4.2, §4.3): every rule, as H3_MESSAGE_ERROR stream errors. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  parseContentLength,
  toHeaderList,
  toRecord,
  validateRequest,
  validateResponse,
  validateTrailers,
  type HeaderList,
} from '../../src/h3/validate.js';
import { H3Error, H3ErrorCode as E } from '../../src/h3/errors.js';

const GET: HeaderList = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':authority', 'example.com'],
  [':path', '/a?b=c'],
];

function malformed(fn: () => unknown, why: string): void {
  assert.throws(
    fn,
    (e: unknown) => e instanceof H3Error && e.code === E.H3_MESSAGE_ERROR && e.scope === 'stream',
    why,
  );
}

test('a valid request and its parts', () => {
  const r = validateRequest([...GET, ['accept', '*/*'], ['content-length', '5'], ['te', 'trailers']]);
  assert.equal(r.method, 'GET');
  assert.equal(r.scheme, 'https');
  assert.equal(r.authority, 'example.com');
  assert.equal(r.path, '/a?b=c');
  assert.equal(r.contentLength, 5);
  assert.deepEqual(r.fields[0], ['accept', '*/*']);
  // host instead of :authority
  const h = validateRequest([[':method', 'GET'], [':scheme', 'https'], [':path', '/'], ['host', 'h.example']]);
  assert.equal(h.authority, 'h.example');
  // OPTIONS *
  assert.equal(validateRequest([[':method', 'OPTIONS'], [':scheme', 'https'], [':authority', 'a'], [':path', '*']]).path, '*');
  // CONNECT: :authority only
  const c = validateRequest([[':method', 'CONNECT'], [':authority', 'proxy:443']]);
  assert.equal(c.authority, 'proxy:443');
});

test('missing required pseudo-headers', () => {
  for (const drop of [':method', ':scheme', ':path']) malformed(() => validateRequest(GET.filter(([n]) => n !== drop)), `no ${drop}`);
  malformed(() => validateRequest([[':method', 'GET'], [':scheme', 'https'], [':path', '/']]), 'https without authority or host');
  malformed(() => validateRequest([[':method', 'CONNECT']]), 'CONNECT without :authority');
});

test('duplicate, unknown, misplaced and response pseudo-headers in requests', () => {
  malformed(() => validateRequest([...GET, [':path', '/x']]), 'duplicate :path');
  malformed(() => validateRequest([[':method', 'GET'], ...GET]), 'duplicate :method');
  malformed(() => validateRequest([...GET, [':foo', 'x']]), 'unknown pseudo-header');
  malformed(() => validateRequest([...GET, [':status', '200']]), ':status in a request');
  malformed(() => validateRequest([...GET, [':protocol', 'websocket']]), ':protocol without extended CONNECT');
  malformed(() => validateRequest([GET[0], GET[1], ['accept', '*/*'], GET[2], GET[3]]), 'pseudo-header after a field');
  malformed(() => validateRequest([[':method', 'CONNECT'], [':authority', 'a:1'], [':path', '/']]), 'CONNECT with :path');
});

test(':path rules', () => {
  const withPath = (p: string): HeaderList => GET.map(([n, v]) => [n, n === ':path' ? p : v]);
  malformed(() => validateRequest(withPath('')), 'empty :path');
  malformed(() => validateRequest(withPath('noslash')), 'relative :path');
  malformed(() => validateRequest(withPath('*')), '* for GET');
});

test('field names: lowercase tokens only', () => {
  malformed(() => validateRequest([...GET, ['Accept', '*/*']]), 'uppercase');
  malformed(() => validateRequest([...GET, ['x-Foo', '1']]), 'uppercase inside');
  malformed(() => validateRequest([...GET, ['bad name', '1']]), 'space in name');
  malformed(() => validateRequest([...GET, ['bad:name', '1']]), 'colon in name');
  malformed(() => validateRequest([...GET, ['', '1']]), 'empty name');
});

test('connection-specific fields and te', () => {
  for (const n of ['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']) {
    malformed(() => validateRequest([...GET, [n, 'x']]), n);
  }
  malformed(() => validateRequest([...GET, ['te', 'gzip']]), 'te: gzip');
  validateRequest([...GET, ['te', 'trailers']]);
});

test('values with CR, LF or NUL are malformed (also in pseudo-headers and trailers)', () => {
  for (const bad of ['a\rb', 'a\nb', 'a\0b']) {
    malformed(() => validateRequest([...GET, ['x', bad]]), JSON.stringify(bad));
    malformed(() => validateRequest(GET.map(([n, v]) => [n, n === ':authority' ? bad : v])), 'pseudo ' + JSON.stringify(bad));
    malformed(() => validateTrailers([['x', bad]]), 'trailer ' + JSON.stringify(bad));
  }
  // Other octets (obs-text, tabs) are allowed.
  validateRequest([...GET, ['x', 'a\tb\u00ff']]);
});

test('host and :authority must agree; one host only', () => {
  malformed(() => validateRequest([...GET, ['host', 'other.example']]), 'host differs');
  validateRequest([...GET, ['host', 'example.com']]);
  malformed(() => validateRequest([[':method', 'GET'], [':scheme', 'https'], [':path', '/'], ['host', 'a'], ['host', 'b']]), 'two hosts');
});

test('content-length parsing', () => {
  assert.equal(parseContentLength([]), null);
  assert.equal(parseContentLength(['0']), 0);
  assert.equal(parseContentLength(['42', '42']), 42);
  assert.equal(parseContentLength(['42, 42']), 42);
  malformed(() => parseContentLength(['42', '43']), 'conflict');
  malformed(() => parseContentLength(['-1']), 'negative');
  malformed(() => parseContentLength(['1e3']), 'not digits');
  malformed(() => parseContentLength(['']), 'empty');
  malformed(() => validateRequest([...GET, ['content-length', 'abc']]), 'through validateRequest');
});

test('responses: :status only, three digits, not 101', () => {
  const r = validateResponse([[':status', '204'], ['server', 'x'], ['content-length', '0']]);
  assert.equal(r.status, 204);
  assert.equal(r.contentLength, 0);
  assert.equal(validateResponse([[':status', '103']]).status, 103);
  malformed(() => validateResponse([['server', 'x']]), 'no :status');
  malformed(() => validateResponse([[':status', '20']]), 'two digits');
  malformed(() => validateResponse([[':status', '200'], [':status', '200']]), 'duplicate');
  malformed(() => validateResponse([[':status', '101']]), '101');
  malformed(() => validateResponse([[':status', '200'], [':path', '/']]), 'request pseudo in response');
  malformed(() => validateResponse([[':status', '200'], ['Server', 'x']]), 'uppercase');
});

test('trailers: no pseudo-headers, regular field rules', () => {
  assert.deepEqual(validateTrailers([['x-checksum', 'abc']]), [['x-checksum', 'abc']]);
  malformed(() => validateTrailers([[':status', '200']]), 'pseudo in trailers');
  malformed(() => validateTrailers([['X-Checksum', 'a']]), 'uppercase trailer');
  malformed(() => validateTrailers([['transfer-encoding', 'chunked']]), 'connection-specific trailer');
});

test('toHeaderList and toRecord', () => {
  assert.deepEqual(toHeaderList({ 'X-A': 1, b: ['x', 'y'] }), [['x-a', '1'], ['b', 'x'], ['b', 'y']]);
  assert.deepEqual(toHeaderList([['A', 'b']]), [['a', 'b']]);
  assert.deepEqual(
    toRecord([['a', '1'], ['a', '2'], ['set-cookie', 'x=1'], ['set-cookie', 'y=2'], ['cookie', 'p=1'], ['cookie', 'q=2']]),
    { a: '1, 2', 'set-cookie': 'x=1\ny=2', cookie: 'p=1; q=2' },
  );
});
