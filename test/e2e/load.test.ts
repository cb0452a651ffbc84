/**
 * `qsr load` as a user runs it: the built CLI (dist/src/cli/qsr.js) in a child process against an in-process
 * Http3Server (our stack, real UDP on an ephemeral loopback port) that counts what it is sent. Checks that N requests
 * arrive exactly N times (also spread over two worker processes, whose histograms are merged), the JSON report's
 * shape and ordered percentiles, a duration run, an upload from -d @FILE (the server hashes every body), errors by
 * kind (404/500 statuses, stream resets, timeouts), an unreachable server (exit 1 with the reason), bad flags (exit 2
 * naming the flag) and that nothing is printed on a stderr that is not a terminal. Every child has a timeout.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as hdr from 'hdr-histogram-js';
import { Http3Server } from '../../src/h3/server.js';
import { H3ErrorCode } from '../../src/h3/errors.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import type { LoadReport } from '../../src/load/report.js';
import { CERTS } from '../sim/helpers.js';
import { runQsrCaptured, type QsrResult } from './qsr-run.js';



const qsr = (args: string[], ms = 60_000): Promise<QsrResult> => runQsrCaptured(args, { ms });

const hits = new Map<string, number>();
const uploads: { bytes: number; sha256: string; method: string }[] = [];
let server: Http3Server;
let origin = '';
let work = '';
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'qsr-e2e-load-'));
  server = await Http3Server.listen(
    {
      listen: [{ address: '127.0.0.1', port: 0 }],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
    },
    (req, res) => {
      const n = (hits.get(req.path) ?? 0) + 1;
      hits.set(req.path, n);
      if (req.path.startsWith('/hello')) {
        res.respond(200, { 'content-type': 'text/plain' });
        res.end('hello world');
      } else if (req.path === '/upload') {
        const h = createHash('sha256');
        let bytes = 0;
        req.on('data', (c: Buffer) => {
          bytes += c.length;
          h.update(c);
        });
        req.on('end', () => {
          uploads.push({ bytes, sha256: h.digest('hex'), method: req.method });
          res.respond(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ bytes }));
        });
      } else if (req.path === '/flaky') {
        // Every third request is a 500, every fifth (not third) a 404: exact counts to compare with.
        const status = n % 3 === 0 ? 500 : n % 5 === 0 ? 404 : 200;
        res.respond(status);
        res.end(`status ${status}`);
      } else if (req.path === '/reset') {
        res.reset(H3ErrorCode.H3_INTERNAL_ERROR);
      } else if (req.path === '/slow') {
        // Never answers: the client's --timeout has to end it.
        req.resume();
      } else {
        res.respond(404);
        res.end('not found');
      }
    },
  );
  origin = `https://127.0.0.1:${server.addresses()[0].port}`;
});

after(async () => {
  await server.close({ drainMs: 200 });
  rmSync(work, { recursive: true, force: true });
});

const TLS = ['--ca', `${CERTS}ca.pem`, '--server-name', 'localhost'];

async function load(path: string, args: string[]): Promise<{ run: QsrResult; report: LoadReport }> {
  const run = await qsr(['load', `${origin}${path}`, ...TLS, '--json', ...args]);
  let report: LoadReport;
  try {
    report = JSON.parse(run.stdout) as LoadReport;
  } catch {
    throw new Error(`no JSON report (exit ${run.code})\nstdout: ${run.stdout}\nstderr: ${run.stderr}`);
  }
  return { run, report };
}

function assertOrdered(r: LoadReport): void {
  const l = r.latencyMs;
  const seq = [l.min, l.p50, l.p90, l.p99, l.p99_9, l.max];
  for (let i = 1; i < seq.length; i++) assert.ok(seq[i - 1] <= seq[i], `latency ${JSON.stringify(l)} not ordered`);
  assert.ok(l.min > 0 && l.mean >= l.min && l.mean <= l.max, `mean ${l.mean} outside [min, max]`);
}

test('-n 500 over 2 connections x 10 streams: the server sees exactly 500 requests; the JSON report adds up', async () => {
  const { run, report } = await load('/hello/a', ['-n', '500', '-c', '2', '-s', '10']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(hits.get('/hello/a'), 500);
  assert.equal(run.stderr, '', 'stderr is not a terminal: no progress line');
  assert.deepEqual(report.requests, { total: 500, ok: 500, failed: 0, notSent: 0 });
  assert.deepEqual(report.statuses, { '200': 500 });
  assert.deepEqual(report.errors, {});
  assert.deepEqual(report.target, { requests: 500 });
  assert.equal(report.method, 'GET');
  assert.equal(report.connections, 2);
  assert.equal(report.streams, 10);
  assert.equal(report.workers, 1);
  assert.equal(report.bytesDown, 500 * 'hello world'.length);
  assert.equal(report.bytesUp, 0);
  assert.ok(report.durationMs > 0);
  assert.ok(Math.abs(report.requestsPerSec - 500 / (report.durationMs / 1000)) < 1, `${report.requestsPerSec} req/s in ${report.durationMs} ms`);
  assertOrdered(report);
  assert.equal(report.latencyDistribution.reduce((a, b) => a + b.count, 0), 500);
  assert.equal(report.latencyDistribution.at(-1)?.leMs, null);
  assert.equal(report.handshakeMs.count, 2);
  assert.equal(report.handshakeMs.failed, 0);
  assert.ok(report.handshakeMs.min > 0 && report.handshakeMs.min <= report.handshakeMs.max);
  assert.equal(hdr.decodeFromCompressedBase64(report.latencyHistogram).totalCount, 500);
  assert.equal(report.generator.processes, 1);
  assert.ok(report.generator.cpuSeconds > 0);
});

test('--workers 2: the counts and histograms of both processes are merged', async () => {
  const { run, report } = await load('/hello/w', ['-n', '301', '-c', '3', '-s', '4', '--workers', '2']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(hits.get('/hello/w'), 301);
  assert.deepEqual(report.requests, { total: 301, ok: 301, failed: 0, notSent: 0 });
  assert.equal(report.workers, 2);
  assert.equal(report.generator.processes, 2);
  assert.equal(report.handshakeMs.count, 3);
  assert.equal(report.bytesDown, 301 * 'hello world'.length);
  assert.equal(hdr.decodeFromCompressedBase64(report.latencyHistogram).totalCount, 301);
  assert.equal(report.latencyDistribution.reduce((a, b) => a + b.count, 0), 301);
  assertOrdered(report);
});

test('--duration 1s: requests until the time is up, every one counted by the server', async () => {
  const before = hits.get('/hello/d') ?? 0;
  const { run, report } = await load('/hello/d', ['--duration', '1s', '-s', '4']);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(report.target, { durationMs: 1000 });
  assert.ok(report.requests.ok > 0);
  assert.equal((hits.get('/hello/d') ?? 0) - before, report.requests.total);
  assert.ok(report.durationMs >= 1000, `measured ${report.durationMs} ms`);
  assertOrdered(report);
});

test('-X PUT -d @FILE: every request carries the whole file (the server hashes each body)', async () => {
  const body = randomBytes(200_000);
  const file = join(work, 'body.bin');
  writeFileSync(file, body);
  uploads.length = 0;
  const { run, report } = await load('/upload', ['-n', '6', '-s', '3', '-X', 'PUT', '-d', `@${file}`]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(uploads.length, 6);
  for (const u of uploads) assert.deepEqual(u, { bytes: body.length, sha256: sha(body), method: 'PUT' });
  assert.equal(report.bytesUp, 6 * body.length);
  assert.equal(report.method, 'PUT');
  assert.ok(report.mbPerSecUp > 0);
});

test('a literal -d is sent as a POST body', async () => {
  uploads.length = 0;
  const { run } = await load('/upload', ['-n', '2', '-d', 'hello=1']);
  assert.equal(run.code, 0, run.stderr);
  assert.deepEqual(uploads, [
    { bytes: 7, sha256: sha(Buffer.from('hello=1')), method: 'POST' },
    { bytes: 7, sha256: sha(Buffer.from('hello=1')), method: 'POST' },
  ]);
});

test('errors by kind: statuses 4xx/5xx counted exactly, stream resets by code, timeouts', async () => {
  const flaky = await load('/flaky', ['-n', '30', '-s', '5']);
  assert.equal(flaky.run.code, 0, 'some requests succeeded: exit 0');
  // n = 1..30: 500 for multiples of 3 (10), 404 for multiples of 5 that are not of 3 (4), else 200 (16).
  assert.deepEqual(flaky.report.statuses, { '200': 16, '404': 4, '500': 10 });
  assert.deepEqual(flaky.report.errors, { 'status 5xx': 10, 'status 4xx': 4 });
  assert.deepEqual(flaky.report.requests, { total: 30, ok: 16, failed: 14, notSent: 0 });

  const missing = await load('/missing', ['-n', '12']);
  assert.equal(missing.run.code, 1, 'no request succeeded: exit 1');
  assert.deepEqual(missing.report.errors, { 'status 4xx': 12 });

  const reset = await load('/reset', ['-n', '8', '-s', '4']);
  assert.equal(reset.run.code, 1);
  assert.deepEqual(reset.report.errors, { 'stream reset H3_INTERNAL_ERROR': 8 });
  assert.deepEqual(reset.report.statuses, {});

  const slow = await load('/slow', ['-n', '3', '-s', '3', '--timeout', '300ms']);
  assert.equal(slow.run.code, 1);
  assert.deepEqual(slow.report.errors, { timeout: 3 });
  assert.equal(slow.report.requests.failed, 3);
});

test('text output: throughput, percentiles, the distribution, and no progress line off a terminal', async () => {
  const run = await qsr(['load', `${origin}/hello/t`, ...TLS, '-n', '50']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stderr, '');
  assert.match(run.stdout, /^GET https:\/\/127\.0\.0\.1:\d+\/hello\/t: 1 connection x 10 streams, 50 requests$/m);
  assert.match(run.stdout, /^requests: +50 in [\d.]+ s, 50 ok, 0 failed$/m);
  assert.match(run.stdout, /^throughput: [\d.]+ req\/s, [\d.]+ MB\/s up, [\d.]+ MB\/s down/m);
  assert.match(run.stdout, /^latency ms: p50 [\d.]+ +p90 [\d.]+ +p99 [\d.]+ +p99\.9 [\d.]+ +max [\d.]+/m);
  assert.match(run.stdout, /^ +<= [\d.]+ ms +\d+ +[\d.]+ % {2}#+$/m);
  assert.match(run.stdout, /^handshake: +1 connection, min [\d.]+ ms/m);
  assert.match(run.stdout, /^errors: +none$/m);
});

test('an unreachable server: exit 1 with the reason', async () => {
  // A port nobody listens on (bound, then closed).
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, '127.0.0.1', () => r()));
  const port = sock.address().port;
  await new Promise<void>((r) => sock.close(() => r()));
  for (const extra of [[], ['-w', '2', '-c', '2']]) {
    const run = await qsr(['load', `https://127.0.0.1:${port}/`, ...TLS, '-n', '5', '--handshake-timeout', '500', ...extra]);
    assert.equal(run.code, 1, run.stderr);
    assert.match(run.stderr, new RegExp(`^qsr load: cannot connect to https://127\\.0\\.0\\.1:${port}: .*(no answer|refused|unreachable)`, 'm'));
    assert.equal(run.stdout, '');
  }
});

test('bad flags: exit 2 with a message naming the flag (every check: test/unit/load-stats.test.ts)', async () => {
  const cases: [string[], RegExp][] = [
    [['--connections', '0'], /--connections: 0 is out of range 1-/],
    [['-n', '10', '--duration', '5s'], /--requests: give --requests or --duration, not both/],
    [['-d', '@/nonexistent/body.bin'], /-d: cannot read '\/nonexistent\/body.bin'/],
    [['--handshake-timeout', '-1'], /--handshake-timeout: expected a whole number/],
    [['--bogus'], /unknown option '--bogus'/],
  ];
  for (const [args, re] of cases) {
    const run = await qsr(['load', `${origin}/hello/x`, ...args]);
    assert.equal(run.code, 2, `${args.join(' ')}: exit ${run.code}, stderr ${run.stderr}`);
    assert.match(run.stderr, re, args.join(' '));
  }
  const ftp = await qsr(['load', 'ftp://127.0.0.1/']);
  assert.equal(ftp.code, 2);
  assert.match(ftp.stderr, /URL: only https:\/\/ URLs are supported/);
  assert.equal(hits.get('/hello/x'), undefined, 'nothing was sent');
});
