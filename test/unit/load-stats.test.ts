/**
 * `qsr load` internals that need no network: merging per-process stats (the HDR histograms travel as compressed
 * base64 and add up to exactly what one process recording everything would report), error kinds, how connections
 * and requests are split over worker processes, and duration parsing.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { H3ConnectionClosedError, H3ErrorCode, H3StreamError } from '../../src/h3/errors.js';
import { LoadOptionError, parseDuration, planLoad } from '../../src/load/options.js';
import { buildReport } from '../../src/load/report.js';
import { splitShares } from '../../src/load/run.js';
import { LoadStats, errorKind } from '../../src/load/stats.js';
import { prng } from '../util/prng.js';

test('stats of two processes merge into the report one process recording everything would give', () => {
  const rnd = prng(7);
  const all = new LoadStats();
  const parts = [new LoadStats(), new LoadStats()];
  for (let i = 0; i < 5000; i++) {
    const ms = 0.2 + rnd() * rnd() * 400;
    const status = i % 97 === 0 ? 503 : i % 89 === 0 ? 404 : 200;
    all.response(status, ms);
    parts[i % 2].response(status, ms);
    if (i % 500 === 0) {
      all.failure('timeout');
      parts[(i + 1) % 2].failure('timeout');
    }
  }
  all.handshakeDone(12.5);
  parts[1].handshakeDone(12.5);
  all.elapsedMs = 1000;
  parts[0].elapsedMs = 1000;
  parts[1].elapsedMs = 900;
  const merged = new LoadStats();
  for (const p of parts) merged.merge(p.toWire());
  const plan = planLoad('https://127.0.0.1:4433/', { requests: '5010', connections: '2', workers: '2' });
  const a = buildReport(plan, all);
  const b = buildReport(plan, merged);
  assert.deepEqual(b.requests, a.requests);
  assert.deepEqual(b.statuses, a.statuses);
  assert.deepEqual(b.errors, a.errors);
  assert.deepEqual(b.latencyDistribution, a.latencyDistribution);
  assert.equal(b.durationMs, 1000, 'the longest process');
  for (const k of ['p50', 'p90', 'p99', 'p99_9'] as const) {
    // Equal to the histogram's precision (3 significant digits).
    assert.ok(Math.abs(b.latencyMs[k] - a.latencyMs[k]) <= a.latencyMs[k] * 0.002, `${k}: ${b.latencyMs[k]} vs ${a.latencyMs[k]}`);
  }
  assert.ok(Math.abs(b.latencyMs.mean - a.latencyMs.mean) < 1e-3);
  assert.equal(b.handshakeMs.count, 1);
  assert.equal(a.errors['status 5xx'], 52);
  assert.equal(a.errors['status 4xx'], 56);
  assert.equal(a.errors.timeout, 10);
  const l = a.latencyMs;
  assert.ok(l.min <= l.p50 && l.p50 <= l.p90 && l.p90 <= l.p99 && l.p99 <= l.p99_9 && l.p99_9 <= l.max);
});

test('error kinds: stream resets by code name, connection closes by reason, stream numbers folded', () => {
  assert.equal(errorKind(new H3StreamError(4, H3ErrorCode.H3_INTERNAL_ERROR, 'reset by peer')), 'stream reset H3_INTERNAL_ERROR');
  assert.equal(errorKind(new H3ConnectionClosedError(0, 'idle', false, '')), 'connection closed: idle timeout');
  assert.equal(
    errorKind(new H3ConnectionClosedError(H3ErrorCode.H3_NO_ERROR, 'peer', true, 'bye')),
    'connection closed: closed by peer with H3_NO_ERROR (bye)',
  );
  assert.equal(errorKind(new Error('stream 12 broke')), errorKind(new Error('stream 816 broke')));
  const s = new LoadStats();
  for (let i = 0; i < 100; i++) s.failure(`other: kind ${i}`);
  assert.equal(s.errors.size, 65, 'at most 64 kinds, the rest together');
  assert.equal(s.errors.get('other (more kinds than listed)'), 36);
});

test('connections and requests split over workers add up exactly', () => {
  const p = planLoad('https://127.0.0.1:4433/', { connections: '7', workers: '3', requests: '1001' });
  const shares = splitShares(p);
  assert.deepEqual(
    shares.map((s) => s.connections),
    [3, 2, 2],
  );
  assert.equal(
    shares.reduce((a, s) => a + (s.requests ?? 0), 0),
    1001,
  );
  const d = splitShares(planLoad('https://127.0.0.1:4433/', { connections: '2', workers: '2', duration: '2s' }));
  assert.deepEqual(d, [
    { connections: 1, requests: null },
    { connections: 1, requests: null },
  ]);
});

test('durations: units, bare numbers, and what is refused', () => {
  assert.equal(parseDuration('--duration', '10s', 's'), 10_000);
  assert.equal(parseDuration('--duration', '10', 's'), 10_000);
  assert.equal(parseDuration('--timeout', '250', 'ms'), 250);
  assert.equal(parseDuration('--duration', '1.5m', 's'), 90_000);
  assert.equal(parseDuration('--duration', '500ms', 's'), 500);
  assert.throws(() => parseDuration('--duration', '10 sec', 's'), (e: unknown) => e instanceof LoadOptionError && e.flag === '--duration');
  assert.throws(() => parseDuration('--duration', '0s', 's'), /shorter than 1 ms/);
  assert.throws(() => parseDuration('--duration', '8d', 's'), /expected a duration/);
  assert.equal(planLoad('https://127.0.0.1:4433/', {}).durationMs, 10_000, 'default: 10 s');
});

test('planLoad: every bad value is refused with the flag named', () => {
  const url = 'https://127.0.0.1:4433/';
  const cases: [string | undefined, Record<string, unknown>, string, RegExp][] = [
    [url, { connections: '0' }, '--connections', /0 is out of range 1-/],
    [url, { streams: 'many' }, '--streams', /expected a whole number, got 'many'/],
    [url, { requests: '10', duration: '5s' }, '--requests', /not both/],
    [url, { requests: '0' }, '--requests', /out of range/],
    [url, { duration: '5 minutes' }, '--duration', /expected a duration such as 10s/],
    [url, { timeout: '0ms' }, '--timeout', /shorter than 1 ms/],
    [url, { workers: '3', connections: '2' }, '--workers', /3 workers need at least as many connections/],
    [url, { data: '@' }, '-d', /needs a file name/],
    [url, { data: '@/nonexistent/body.bin' }, '-d', /cannot read '\/nonexistent\/body.bin'/],
    [url, { method: 'NOT A METHOD' }, '-X', /is not a valid HTTP method/],
    [url, { method: 'CONNECT' }, '-X', /not supported/],
    [url, { header: ['no-colon'] }, '-H', /expected 'name: value'/],
    [url, { header: [':path: /x'] }, '-H', /pseudo-header/],
    [url, { ca: '/nonexistent.pem' }, '--ca', /cannot read/],
    [url, { ca: 'x.pem', insecure: true }, '--ca', /exclude each other/],
    [url, { ciphers: 'TLS_NULL' }, '--ciphers', /unknown cipher suite 'TLS_NULL'/],
    [url, { handshakeTimeout: '-1' }, '--handshake-timeout', /expected a whole number/],
    [url, { serverName: 'a b' }, '--server-name', /not a host name/],
    [url, { maxData: '0' }, '--max-data', /out of range/],
    [undefined, {}, 'URL', /give the https:\/\/ URL/],
    ['not a url', {}, 'URL', /is not a valid URL/],
    ['http://127.0.0.1/', {}, 'URL', /only https:\/\/ URLs/],
    ['https://u:p@127.0.0.1/', {}, 'URL', /user information/],
  ];
  for (const [u, o, flag, re] of cases) {
    assert.throws(
      () => planLoad(u, o),
      (e: unknown) => e instanceof LoadOptionError && e.flag === flag && re.test(e.message) && e.message.startsWith(`${flag}: `),
      `${JSON.stringify(o)} -> ${flag}`,
    );
  }
  const p = planLoad('https://[::1]:4433/a?b=1', { data: 'xyz', header: ['X-A: 1'] });
  assert.equal(p.method, 'POST');
  assert.equal(p.path, '/a?b=1');
  assert.equal(p.host, '::1');
  assert.deepEqual(p.headers, [
    ['x-a', '1'],
    ['content-length', '3'],
  ]);
  assert.equal(p.connections, 1);
  assert.equal(p.streams, 10);
  assert.equal(p.timeoutMs, 30_000);
});
