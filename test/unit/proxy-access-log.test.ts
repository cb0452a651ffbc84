import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MAX_LOGGED_PATH, accessLogLine, createAccessLog, createLogger, type AccessLogFields } from '../../src/proxy/access-log.js';

const FIELDS: AccessLogFields = {
  connectionId: '8f3a9c',
  streamId: 4,
  client: '[::1]:52311',
  method: 'GET',
  authority: 'localhost:4433',
  path: '/video/1?q=2',
  route: 'video',
  upstream: 'http://127.0.0.1:5001',
  status: 200,
  bytesIn: 0,
  bytesOut: 1048576,
  durationMs: 12.5,
  error: null,
};

test('access log: one JSON line per stream, exactly the documented fields in order, appended to a file', { timeout: 10000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-log-'));
  try {
    const file = join(dir, 'sub', 'access.log'); // directory created on demand
    const log = createAccessLog(file);
    log.logStream(FIELDS);
    log.logStream({ ...FIELDS, streamId: 8, route: null, upstream: null, status: 404, error: 'no route', protocol: 'http/1.1' });
    await log.close();
    const lines = readFileSync(file, 'utf8').split('\n');
    assert.equal(lines.length, 3);
    assert.equal(lines[2], '');
    const first = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.deepEqual(Object.keys(first), [
      'time',
      'connectionId',
      'streamId',
      'client',
      'method',
      'authority',
      'path',
      'route',
      'upstream',
      'status',
      'bytesIn',
      'bytesOut',
      'durationMs',
      'error',
    ]);
    assert.match(first.time as string, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.deepEqual({ ...first, time: undefined }, { ...FIELDS, time: undefined });
    const second = JSON.parse(lines[1]!) as Record<string, unknown>;
    assert.equal(second.protocol, 'http/1.1');
    assert.equal(Object.keys(second)[4], 'protocol');
    assert.equal(second.route, null);
    assert.equal(second.upstream, null);
    assert.equal(second.status, 404);
    assert.equal(second.error, 'no route');

    // A second logger appends rather than truncating.
    const again = createAccessLog(file);
    again.logStream(FIELDS);
    await again.close();
    assert.equal(readFileSync(file, 'utf8').split('\n').length, 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('router log: level names, no pid/hostname', { timeout: 10000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-log-'));
  try {
    const file = join(dir, 'router.log');
    const { logger, close } = createLogger(file);
    logger.warn({ upstream: 'http://127.0.0.1:5001' }, 'unhealthy');
    logger.debug('not written at info level');
    await close();
    const lines = readFileSync(file, 'utf8').trim().split('\n');
    assert.equal(lines.length, 1);
    const rec = JSON.parse(lines[0]!) as Record<string, unknown>;
    assert.equal(rec.level, 'warn');
    assert.equal(rec.msg, 'unhealthy');
    assert.equal(rec.upstream, 'http://127.0.0.1:5001');
    assert.equal(rec.pid, undefined);
    assert.equal(rec.hostname, undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('access log: a path over 2048 characters is cut there, with pathTruncated and pathLength after it', { timeout: 10000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-log-'));
  try {
    const file = join(dir, 'access.log');
    const log = createAccessLog(file);
    const long = `/video/${'x'.repeat(60 * 1024)}`;
    log.logStream({ ...FIELDS, path: long });
    log.logStream({ ...FIELDS, path: `/${'y'.repeat(MAX_LOGGED_PATH - 1)}` }); // exactly the limit: kept whole
    await log.close();
    const [a, b] = readFileSync(file, 'utf8').split('\n');
    assert.ok(a!.length < 4096, `a line of ${a!.length} characters`);
    const first = JSON.parse(a!) as Record<string, unknown>;
    assert.equal(first.path, long.slice(0, MAX_LOGGED_PATH));
    assert.equal(first.pathTruncated, true);
    assert.equal(first.pathLength, long.length);
    const keys = Object.keys(first);
    assert.deepEqual(keys.slice(keys.indexOf('path'), keys.indexOf('path') + 3), ['path', 'pathTruncated', 'pathLength']);
    const second = JSON.parse(b!) as Record<string, unknown>;
    assert.equal(String(second.path).length, MAX_LOGGED_PATH);
    assert.equal('pathTruncated' in second, false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('access log line: the same text JSON.stringify writes for those fields in that order, odd strings included', () => {
  const time = new Date('2025-01-02T03:04:05.678Z');
  const odd = 'quote " backslash \\ newline \n tab \t nul \u0000 del \u007f é 漢 \ud83d\ude00 lone \ud800 end';
  const cases: AccessLogFields[] = [
    FIELDS,
    { ...FIELDS, protocol: 'h2', path: odd, authority: odd, error: odd, client: '[::1]:1' },
    { ...FIELDS, method: null, authority: null, path: null, route: null, upstream: null, status: null, durationMs: Number.NaN },
    { ...FIELDS, durationMs: 0.001, bytesIn: 2 ** 40, bytesOut: -0, streamId: 0 },
  ];
  for (const f of cases) {
    const expected: Record<string, unknown> = { time: time.toISOString(), connectionId: f.connectionId, streamId: f.streamId, client: f.client };
    if (f.protocol !== undefined) expected.protocol = f.protocol;
    Object.assign(expected, { method: f.method, authority: f.authority, path: f.path, route: f.route, upstream: f.upstream, status: f.status });
    Object.assign(expected, { bytesIn: f.bytesIn, bytesOut: f.bytesOut, durationMs: f.durationMs, error: f.error });
    assert.equal(accessLogLine(f, time), JSON.stringify(expected) + '\n');
  }
  const long = accessLogLine({ ...FIELDS, path: '/' + 'x'.repeat(MAX_LOGGED_PATH + 10) }, time);
  const parsed = JSON.parse(long) as Record<string, unknown>;
  assert.equal((parsed.path as string).length, MAX_LOGGED_PATH);
  assert.equal(parsed.pathTruncated, true);
  assert.equal(parsed.pathLength, MAX_LOGGED_PATH + 11);
  assert.deepEqual(Object.keys(parsed).slice(6, 9), ['path', 'pathTruncated', 'pathLength']);
});

test('access log line without a time given: the current time, exactly as toISOString writes it', (t) => {
  // Milliseconds that need padding, a second boundary, and the next second's prefix.
  const instants = [Date.UTC(2025, 0, 2, 3, 4, 5, 7), Date.UTC(2025, 0, 2, 3, 4, 5, 78), Date.UTC(2025, 0, 2, 3, 4, 5, 999), Date.UTC(2025, 0, 2, 3, 4, 6, 0), Date.UTC(2031, 11, 31, 23, 59, 59, 120)];
  let i = 0;
  t.mock.method(Date, 'now', () => instants[i]!);
  for (i = 0; i < instants.length; i++) {
    const line = JSON.parse(accessLogLine(FIELDS)) as { time: string };
    assert.equal(line.time, new Date(instants[i]!).toISOString());
  }
});
