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
