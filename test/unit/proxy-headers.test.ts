import { test } from 'node:test';
import assert from 'node:assert/strict';
import { downstreamResponseFields, downstreamResponseHeaders, forwardedElement, upstreamRequestHeaders } from '../../src/proxy/headers.js';

const BASE: [string, string][] = [
  [':method', 'GET'],
  [':scheme', 'https'],
  [':authority', 'example.com:4433'],
  [':path', '/video/1'],
];

test('request: pseudo-headers and connection-specific fields dropped, host from :authority, forwarding fields added', () => {
  const h = upstreamRequestHeaders(
    [
      ...BASE,
      ['accept', 'video/mp4'],
      ['connection', 'x-secret, keep-alive'],
      ['x-secret', 'hop'],
      ['keep-alive', 'timeout=5'],
      ['proxy-connection', 'keep-alive'],
      ['transfer-encoding', 'chunked'],
      ['upgrade', 'websocket'],
      ['te', 'trailers'],
      ['expect', '100-continue'],
      ['host', 'evil.example'],
      ['x-multi', 'a'],
      ['x-multi', 'b'],
    ],
    { authority: 'example.com:4433', clientAddress: '192.0.2.7' },
  );
  assert.deepEqual(h, {
    accept: 'video/mp4',
    'x-multi': ['a', 'b'],
    host: 'example.com:4433',
    forwarded: 'for="192.0.2.7";proto=https;host="example.com:4433"',
    'x-forwarded-for': '192.0.2.7',
    'x-forwarded-proto': 'https',
    via: '3 quic-stream-router',
  });
});

test('request: IPv6 client in brackets and quoted; IPv4-mapped shown as IPv4', () => {
  const h = upstreamRequestHeaders(BASE, { authority: '[::1]:4433', clientAddress: '2001:db8::5' });
  assert.equal(h.forwarded, 'for="[2001:db8::5]";proto=https;host="[::1]:4433"');
  assert.equal(h['x-forwarded-for'], '2001:db8::5');
  assert.equal(forwardedElement('::ffff:10.0.0.1', 'h'), 'for="10.0.0.1";proto=https;host="h"');
  assert.equal(forwardedElement('10.0.0.1', 'a"b'), 'for="10.0.0.1";proto=https;host="a\\"b"');
});

test('request: forwarded, x-forwarded-for and via are appended to; x-forwarded-proto replaced', () => {
  const h = upstreamRequestHeaders(
    [
      ...BASE,
      ['forwarded', 'for=198.51.100.1'],
      ['x-forwarded-for', '198.51.100.1'],
      ['x-forwarded-for', '198.51.100.2'],
      ['x-forwarded-proto', 'http'],
      ['via', '1.1 edge'],
    ],
    { authority: 'example.com', clientAddress: '203.0.113.9' },
  );
  assert.equal(h.forwarded, 'for=198.51.100.1, for="203.0.113.9";proto=https;host="example.com"');
  assert.equal(h['x-forwarded-for'], '198.51.100.1, 198.51.100.2, 203.0.113.9');
  assert.equal(h['x-forwarded-proto'], 'https');
  assert.equal(h.via, '1.1 edge, 3 quic-stream-router');
});

test('request: split cookie fields are joined with "; " (RFC 9114 §4.2.1)', () => {
  const h = upstreamRequestHeaders([...BASE, ['cookie', 'a=1'], ['cookie', 'b=2; c=3']], { authority: 'h', clientAddress: '127.0.0.1' });
  assert.equal(h.cookie, 'a=1; b=2; c=3');
});

test('request: route rules remove then set, after the forwarding fields', () => {
  const h = upstreamRequestHeaders([...BASE, ['x-a', 'old'], ['x-b', 'gone'], ['x-c', 'keep']], {
    authority: 'h',
    clientAddress: '127.0.0.1',
    rules: { set: { 'x-a': 'new', 'x-route': 'video' }, remove: ['x-b', 'x-forwarded-for', 'x-a'] },
  });
  assert.equal(h['x-a'], 'new');
  assert.equal(h['x-route'], 'video');
  assert.equal(h['x-b'], undefined);
  assert.equal(h['x-forwarded-for'], undefined);
  assert.equal(h['x-c'], 'keep');
});

test('response: hop-by-hop fields dropped (including those Connection names), set-cookie kept apart, via appended', () => {
  const out = downstreamResponseHeaders({
    'content-type': 'text/plain',
    connection: 'keep-alive, x-hop',
    'keep-alive': 'timeout=5',
    'x-hop': '1',
    'transfer-encoding': 'chunked',
    'proxy-connection': 'close',
    upgrade: 'h2c',
    te: 'trailers',
    'set-cookie': ['a=1', 'b=2'],
    'content-length': '5',
    trailer: 'x-checksum',
    skipped: undefined,
  });
  assert.deepEqual(out, [
    ['content-type', 'text/plain'],
    ['set-cookie', 'a=1'],
    ['set-cookie', 'b=2'],
    ['content-length', '5'],
    ['trailer', 'x-checksum'],
    ['via', '1.1 quic-stream-router'],
  ]);
  assert.deepEqual(downstreamResponseHeaders({ via: '1.0 cache' }), [['via', '1.0 cache, 1.1 quic-stream-router']]);
});

test('response from the raw head (what the router uses): the same fields dropped and kept, names lower-case, values as bytes, order kept', () => {
  const raw = (...pairs: string[]): Buffer[] => pairs.map((x) => Buffer.from(x, 'latin1'));
  const out = downstreamResponseFields(
    raw(
      'Content-Type', 'text/plain',
      'Connection', 'keep-alive, X-Hop',
      'Keep-Alive', 'timeout=5',
      'X-Hop', '1',
      'Set-Cookie', 'a=1',
      'Transfer-Encoding', 'chunked',
      'Proxy-Connection', 'close',
      'Upgrade', 'h2c',
      'TE', 'trailers',
      'X-Latin1', 'caf\xe9',
      'Set-Cookie', 'b=2',
      'content-length', '5',
      'Via', '1.0 a',
      'via', '1.1 b',
    ),
  );
  assert.deepEqual(out, [
    ['content-type', 'text/plain'],
    ['set-cookie', 'a=1'],
    ['x-latin1', 'caf\xe9'],
    ['set-cookie', 'b=2'],
    ['content-length', '5'],
    ['via', '1.0 a, 1.1 b, 1.1 quic-stream-router'],
  ]);
  // A via that the Connection field names is dropped like any nominated field; ours is still added.
  assert.deepEqual(downstreamResponseFields(raw('connection', 'via', 'via', '1.0 x', 'x-a', '1')), [
    ['x-a', '1'],
    ['via', '1.1 quic-stream-router'],
  ]);
  // The same result as the record-based conversion for a head without repeated names.
  const plain = raw('content-type', 'text/html', 'x-service', 'text', 'date', 'Wed, 02 Dec 2026 09:30:00 GMT', 'connection', 'keep-alive');
  assert.deepEqual(downstreamResponseFields(plain), downstreamResponseHeaders({ 'content-type': 'text/html', 'x-service': 'text', date: 'Wed, 02 Dec 2026 09:30:00 GMT', connection: 'keep-alive' }));
});
