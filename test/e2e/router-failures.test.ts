/**
 * The stream router (`qsr proxy`) under failure and load, as a user runs it: the built CLI in a child process on
 * free loopback ports (UDP for HTTP/3, TCP for h2/h1.1), dataDir and access log in a temp dir, the upstreams started
 * by the test (in-process services, a `qsr service` child, a deliberately slow node:http server, a dead port).
 *
 * 1. a large streamed upload (default 1 GB; QSR_UPLOAD_MB overrides) arrives intact and the router's RSS stays flat
 * 2. a stopped backend gives 502 on its stream only; the other routes answer 200 on the same connection
 * 3. a slow backend gives 504 after timeouts.headersMs while a parallel request to another route succeeds
 * 4. a client cancel aborts the upstream request, is logged as an error, and leaves the connection usable
 * 5. SIGTERM drains: the in-flight stream completes, a new request after GOAWAY is refused, exit 0
 * 6. the TCP listener answers HTTP/2 and HTTP/1.1 with `alt-svc: h3=":PORT"`
 *
 * Every test has a timeout; every child is killed by its PID in `after`.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import dgram from 'node:dgram';
import http from 'node:http';
import http2 from 'node:http2';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { fileURLToPath } from 'node:url';
import { Http3Client } from '../../src/h3/client.js';
import { H3ErrorCode, H3RequestRejectedError, H3StreamError } from '../../src/h3/errors.js';
import { loadPemChain } from '../../src/quic/tls/pem.js';
import { startService, type RunningService, type ServiceLogEvent } from '../../src/services/index.js';
import { readAll } from '../util/data.js';

const QSR = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));

// ---------------------------------------------------------------------------------------------------------------
// Helpers (kept local to this file).

const children = new Set<ChildProcess>();
const dirs: string[] = [];
const closers: (() => Promise<void>)[] = [];

after(async () => {
  const exits: Promise<void>[] = [];
  for (const c of children) {
    if (c.exitCode !== null || c.signalCode !== null) continue;
    exits.push(new Promise<void>((r) => c.once('exit', () => r())));
    c.kill('SIGKILL');
  }
  await Promise.race([Promise.all(exits), sleep(5000)]);
  // Each close gets at most 2 s, so one that never calls back cannot keep the temp dirs from being removed.
  for (const close of closers.splice(0)) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([close().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, 2000)))]);
    clearTimeout(timer);
  }
  for (const d of dirs) {
    try {
      rmSync(d, { recursive: true, force: true, maxRetries: 3 });
    } catch (err) {
      process.stderr.write(`could not remove ${d}: ${(err as Error).message}\n`);
    }
  }
});

function tempDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'qsr-router-failures-'));
  dirs.push(d);
  return d;
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Polls `check` every 50 ms until it returns a value (not undefined) or `ms` pass. */
async function waitFor<T>(what: string, ms: number, check: () => T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** A TCP port with nothing listening on it (bound, then released). */
async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

/**
 * A port free for both UDP and TCP on 127.0.0.1 (the router binds both on its listen port; the config does not
 * accept port 0): bind UDP port 0, check TCP on the same port, release both.
 */
async function freeUdpTcpPort(): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    const port = udp.address().port;
    const tcp = net.createServer();
    const ok = await new Promise<boolean>((r) => {
      tcp.once('error', () => r(false));
      tcp.listen(port, '127.0.0.1', () => r(true));
    });
    if (ok) await new Promise<void>((r) => tcp.close(() => r()));
    await new Promise<void>((r) => udp.close(() => r()));
    if (ok) return port;
  }
  throw new Error('no port free for both UDP and TCP');
}

/** An in-process service on a free port, closed in `after`; log events are collected, not printed. */
async function service(name: 'video' | 'text' | 'control'): Promise<RunningService & { events: ServiceLogEvent[] }> {
  const events: ServiceLogEvent[] = [];
  const s = await startService(name, { port: 0, log: (e) => events.push(e), closeTimeoutMs: 500 });
  closers.push(() => s.server.shutdown());
  return { ...s, events };
}

interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

interface Router {
  child: ChildProcess;
  pid: number;
  dir: string;
  /** UDP (HTTP/3) port. */
  port: number;
  /** TCP (h2/h1.1) port. */
  tcpPort: number;
  caPem: string;
  ca: Buffer[];
  stderr: () => string;
  exited: Promise<Exit>;
  /** Parsed access log lines so far. */
  accessLog: () => Record<string, unknown>[];
  connect: () => Promise<Http3Client>;
}

interface RouteSpec {
  name: string;
  prefix: string;
  upstreams: string[];
}

/**
 * Writes a configuration (JSON, which is YAML) into a fresh temp dir and runs `qsr proxy --config` there, listening
 * on 127.0.0.1 port 0; resolves once it printed its addresses.
 */
async function startRouter(routes: RouteSpec[], timeouts: Record<string, number> = {}): Promise<Router> {
  const dir = tempDir();
  const config = {
    listen: [`127.0.0.1:${await freeUdpTcpPort()}`],
    dataDir: './data',
    accessLog: './access.log',
    healthCheck: false,
    timeouts,
    routes,
  };
  writeFileSync(join(dir, 'qsr.yaml'), JSON.stringify(config, null, 2));
  const child = spawn(process.execPath, [QSR, 'proxy', '--config', 'qsr.yaml'], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (d: Buffer) => (out += d));
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const exited = new Promise<Exit>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  const ports = await new Promise<{ udp: number; tcp: number }>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`qsr proxy did not start within 20 s\nstdout: ${out}\nstderr: ${err}`)), 20_000);
    const onData = (): void => {
      const u = /HTTP\/3 \(UDP\):\s+https:\/\/127\.0\.0\.1:(\d+)/.exec(out);
      const t = /\(TCP\):\s+127\.0\.0\.1:(\d+)/.exec(out);
      if (u && t) {
        clearTimeout(timer);
        child.stdout!.off('data', onData);
        resolve({ udp: Number(u[1]), tcp: Number(t[1]) });
      }
    };
    child.stdout!.on('data', onData);
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`qsr proxy exited (${e.code ?? e.signal}) before starting\nstdout: ${out}\nstderr: ${err}`));
    });
  });
  const caPem = readFileSync(join(dir, 'data', 'certs', 'cert.pem'), 'utf8');
  const ca = loadPemChain(caPem);
  const logPath = join(dir, 'access.log');
  return {
    child,
    pid: child.pid!,
    dir,
    port: ports.udp,
    tcpPort: ports.tcp,
    caPem,
    ca,
    stderr: () => err,
    exited,
    accessLog: () =>
      existsSync(logPath)
        ? readFileSync(logPath, 'utf8')
            .split('\n')
            .filter((l) => l.trim() !== '')
            .map((l) => JSON.parse(l) as Record<string, unknown>)
        : [],
    connect: async () => {
      const c = await Http3Client.connect(`https://127.0.0.1:${ports.udp}/`, { ca, serverName: 'localhost' });
      closers.push(() => c.close());
      return c;
    },
  };
}

/** Runs `qsr service NAME --port 0 [extra]` in a temp dir; resolves with its URL once it listens. */
async function serviceChild(name: string, extra: string[] = []): Promise<{ child: ChildProcess; url: string; stderr: () => string }> {
  const child = spawn(process.execPath, [QSR, 'service', name, '--port', '0', ...extra], { cwd: tempDir(), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`qsr service ${name} did not start\nstdout: ${out}\nstderr: ${err}`)), 15_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d;
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => reject(new Error(`qsr service ${name} exited (${code})\nstderr: ${err}`)));
  });
  return { child, url, stderr: () => err };
}

/** Resident set size of a process in bytes (Linux /proc). */
function rss(pid: number): number {
  const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** A Promise that rejects after `ms` (for racing steps that must not hang). */
function deadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  return Promise.race([
    p.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: no result within ${ms} ms`)), ms))),
  ]);
}

const MB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------------

const UPLOAD_MB = Number(process.env.QSR_UPLOAD_MB ?? 1024);

test(`a ${UPLOAD_MB} MB streamed upload through the router arrives intact and the router's RSS stays flat`, { timeout: 300_000 }, async (t) => {
  // The video service in its own process, so the router process is alone and its RSS is its own.
  const video = await serviceChild('video');
  const router = await startRouter([{ name: 'video', prefix: '/video', upstreams: [video.url] }], { idleBodyMs: 60_000 });
  const client = await router.connect();

  // Warm up (undici pool, stream buffers, JIT) before taking the baseline.
  const warm = randomBytes(MB);
  const w = await client.request('/video', { method: 'POST', body: warm });
  assert.equal(w.status, 200);
  const wj = JSON.parse((await readAll(w.body)).toString()) as { bytes: number; sha256: string };
  assert.equal(wj.sha256, createHash('sha256').update(warm).digest('hex'));
  await sleep(300);

  const baseline = rss(router.pid);
  let peak = baseline;
  const samples: number[] = [];
  const sampler = setInterval(() => {
    try {
      const v = rss(router.pid);
      samples.push(v);
      if (v > peak) peak = v;
    } catch {
      // the process is gone: the assertions below will say why
    }
  }, 250);

  // Pseudo-random body: 64 KB slices of a 4 MB random pool at LCG-chosen offsets, hashed as they are produced.
  const total = UPLOAD_MB * MB;
  const CHUNK = 64 * 1024;
  const pool = randomBytes(4 * MB);
  const hash = createHash('sha256');
  let produced = 0;
  let seed = 0x2545f491;
  const body = new Readable({
    highWaterMark: 4 * CHUNK,
    read() {
      if (produced >= total) {
        this.push(null);
        return;
      }
      seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
      const off = seed % (pool.length - CHUNK);
      const n = Math.min(CHUNK, total - produced);
      const chunk = pool.subarray(off, off + n);
      hash.update(chunk);
      produced += n;
      this.push(chunk);
    },
  });
  const t0 = performance.now();
  let res;
  let text: string;
  try {
    res = await client.request('/video', { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } });
    text = (await readAll(res.body)).toString();
  } finally {
    clearInterval(sampler);
  }
  const end = rss(router.pid);
  samples.push(end);
  if (end > peak) peak = end;
  const secs = (performance.now() - t0) / 1000;
  assert.equal(res.status, 200, text);
  const j = JSON.parse(text) as { bytes: number; sha256: string; ms: number };
  assert.equal(produced, total);
  assert.equal(j.bytes, total);
  assert.equal(j.sha256, hash.digest('hex'));
  const growth = peak - baseline;
  t.diagnostic(
    `${UPLOAD_MB} MB in ${secs.toFixed(1)} s = ${(UPLOAD_MB / secs).toFixed(1)} MB/s; router RSS baseline ` +
      `${(baseline / MB).toFixed(1)} MB, peak ${(peak / MB).toFixed(1)} MB (growth ${(growth / MB).toFixed(1)} MB, ${samples.length} samples)`,
  );
  // The shape of the curve: a plateau is heap headroom, a steady climb would be buffering.
  const q = [0.25, 0.5, 0.75, 1].map((f) => (samples[Math.min(samples.length - 1, Math.floor(f * (samples.length - 1)))]! / MB).toFixed(0));
  t.diagnostic(`router RSS (MB) at 25/50/75/100% of the samples: ${q.join(' / ')}`);
  assert.ok(samples.length >= 2, `expected RSS samples during and after the upload, got ${samples.length}`);
  assert.ok(growth < 64 * MB, `router RSS grew by ${(growth / MB).toFixed(1)} MB (limit 64 MB)`);
  const line = await waitFor('the access log line of the upload', 20_000, () =>
    router.accessLog().find((l) => l.method === 'POST' && l.bytesIn === total),
  );
  assert.equal(line.status, 200);
  assert.equal(line.error, null);
});

test('a stopped backend: 502 with a JSON body on its stream, 200 for the other routes on the same connection', { timeout: 30_000 }, async () => {
  const video = await service('video');
  const control = await service('control');
  const dead = await deadPort();
  const router = await startRouter([
    { name: 'video', prefix: '/video', upstreams: [video.url] },
    { name: 'text', prefix: '/text', upstreams: [`http://127.0.0.1:${dead}`] },
    { name: 'control', prefix: '/control', upstreams: [control.url] },
  ]);
  const client = await router.connect();
  const upload = randomBytes(200_000);
  const [text, vid, ctl] = await deadline(
    Promise.all([
      client.request('/text/sample'),
      client.request('/video', { method: 'POST', body: upload }),
      client.request('/control/status'),
    ]),
    10_000,
    'three requests',
  );
  const [tb, vb, cb] = await Promise.all([readAll(text.body), readAll(vid.body), readAll(ctl.body)]);
  assert.equal(text.status, 502, tb.toString());
  assert.match(text.headers.find(([n]) => n === 'content-type')?.[1] ?? '', /application\/json/);
  const err = JSON.parse(tb.toString()) as { error: string; route: string };
  assert.equal(err.route, 'text');
  assert.equal(err.error, 'upstream unavailable');
  assert.equal(vid.status, 200);
  assert.equal((JSON.parse(vb.toString()) as { sha256: string }).sha256, createHash('sha256').update(upload).digest('hex'));
  assert.equal(ctl.status, 200);
  assert.equal((JSON.parse(cb.toString()) as { service: string }).service, 'control');
  // Three different request streams on one connection.
  assert.equal(new Set([text.streamId, vid.streamId, ctl.streamId]).size, 3);
  const line = await waitFor('the 502 access log line', 5000, () => router.accessLog().find((l) => l.status === 502));
  assert.equal(line.route, 'text');
  assert.match(String(line.error), /connect/);
});

test('a slow backend: 504 after timeouts.headersMs while a parallel request to another route succeeds', { timeout: 30_000 }, async (t) => {
  // Headers only after 3 s; the router gives up after 500 ms.
  const slow = http.createServer((req, res) => {
    const timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('too late\n');
    }, 3000);
    res.once('close', () => clearTimeout(timer));
    req.resume();
  });
  await new Promise<void>((r) => slow.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => {
    slow.closeAllConnections();
    slow.close(() => r());
  }));
  const slowUrl = `http://127.0.0.1:${(slow.address() as net.AddressInfo).port}`;
  const control = await service('control');
  const router = await startRouter(
    [
      { name: 'text', prefix: '/text', upstreams: [slowUrl] },
      { name: 'control', prefix: '/control', upstreams: [control.url] },
    ],
    { headersMs: 500 },
  );
  const client = await router.connect();
  const t0 = performance.now();
  const slowReq = client.request('/text/sample').then(async (r) => ({ r, body: await readAll(r.body), ms: performance.now() - t0 }));
  const fast = await client.request('/control/status');
  const fastBody = await readAll(fast.body);
  const fastMs = performance.now() - t0;
  assert.equal(fast.status, 200);
  assert.equal((JSON.parse(fastBody.toString()) as { service: string }).service, 'control');
  const s = await deadline(slowReq, 10_000, 'the slow request');
  assert.equal(s.r.status, 504, s.body.toString());
  const j = JSON.parse(s.body.toString()) as { error: string; route: string };
  assert.equal(j.error, 'upstream timeout');
  assert.equal(j.route, 'text');
  assert.ok(s.ms < 3000, `504 after ${s.ms.toFixed(0)} ms, expected about 500 ms`);
  t.diagnostic(`control answered after ${fastMs.toFixed(0)} ms, the 504 came after ${s.ms.toFixed(0)} ms`);
});

test('a client cancel aborts the upstream request, is logged with an error, and the connection still works', { timeout: 40_000 }, async (t) => {
  const video = await service('video');
  const control = await service('control');
  const router = await startRouter([
    { name: 'video', prefix: '/video', upstreams: [video.url] },
    { name: 'control', prefix: '/control', upstreams: [control.url] },
  ]);
  const client = await router.connect();

  // Two ways to cancel, one after the other on the same connection: the request's AbortSignal, then destroying
  // the response body. Each stream has its own query so its log lines can be told apart.
  for (const [i, how] of (['signal', 'destroy'] as const).entries()) {
    const path = `/video/stream?seconds=30&kbps=200&cancel=${how}`;
    const ac = new AbortController();
    const res = await client.request(path, { signal: ac.signal });
    assert.equal(res.status, 200);
    const bodyDone = new Promise<Error | null>((resolve) => {
      res.body.once('error', (e) => resolve(e));
      res.body.once('end', () => resolve(null));
      res.body.once('close', () => resolve(null));
    });
    let got = 0;
    await deadline(
      new Promise<void>((resolve) => {
        const onData = (d: Buffer): void => {
          got += d.length;
          if (got >= 5000) {
            res.body.off('data', onData);
            res.body.pause();
            resolve();
          }
        };
        res.body.on('data', onData);
      }),
      10_000,
      'the first 5000 bytes of the live stream',
    );
    assert.equal(video.server.stats.liveStreams, 1);
    const tCancel = Date.now();
    if (how === 'signal') ac.abort();
    else res.body.destroy();
    const e = await deadline(bodyDone, 5000, 'the cancelled body');
    if (how === 'signal') assert.ok(e, 'the response body should fail after the abort, not end');
    assert.ok(!res.body.readableEnded, 'the body must not look complete');

    await waitFor(`the video service to see the abort (${how})`, 5000, () => (video.server.stats.aborted >= i + 1 ? true : undefined));
    t.diagnostic(`${how}: the video service saw the abort ${Date.now() - tCancel} ms after the cancel`);
    await waitFor('the live stream timer to stop', 2000, () => (video.server.stats.liveStreams === 0 ? true : undefined));
    assert.ok(
      video.events.some((ev) => ev.event === 'aborted' && ev.path === path),
      `no "aborted" event for ${path}: ${JSON.stringify(video.events)}`,
    );

    const line = await waitFor('the access log line of the cancelled stream', 5000, () => router.accessLog().find((l) => l.path === path));
    assert.equal(line.route, 'video');
    assert.equal(line.upstream, video.url);
    assert.match(String(line.error), /cancel/, `access log error: ${String(line.error)}`);
    assert.ok((line.bytesOut as number) >= 5000, `bytesOut ${String(line.bytesOut)}`);

    // The same connection serves a new request.
    const again = await deadline(client.request('/control/status'), 5000, 'a request after the cancel');
    assert.equal(again.status, 200);
    assert.equal((JSON.parse((await readAll(again.body)).toString()) as { ok: boolean }).ok, true);
  }
  assert.equal(video.server.stats.aborted, 2);
});

test('SIGTERM drains: the in-flight stream completes, a new request after GOAWAY is refused, exit 0', { timeout: 40_000 }, async (t) => {
  const video = await service('video');
  const control = await service('control');
  const router = await startRouter(
    [
      { name: 'video', prefix: '/video', upstreams: [video.url] },
      { name: 'control', prefix: '/control', upstreams: [control.url] },
    ],
    { drainMs: 10_000 },
  );
  const client = await router.connect();
  const goaway = new Promise<number>((resolve) => client.once('goaway', resolve));
  const res = await client.request('/video/stream?seconds=3&kbps=100');
  assert.equal(res.status, 200);
  const all = readAll(res.body);
  all.catch(() => undefined); // awaited below; do not let an early failure leave it unhandled
  await sleep(500);
  const tTerm = Date.now();
  router.child.kill('SIGTERM');
  const id = await deadline(goaway, 5000, 'GOAWAY after SIGTERM');
  t.diagnostic(`GOAWAY id ${id} after ${Date.now() - tTerm} ms`);

  // A new request on the same connection after the GOAWAY is refused.
  await assert.rejects(
    deadline(client.request('/control/status'), 5000, 'a request after GOAWAY'),
    (err: Error) => {
      // Either the client refuses to start it (it saw the GOAWAY) or the server rejects it (H3_REQUEST_REJECTED).
      assert.ok(
        err instanceof H3RequestRejectedError || /GOAWAY/.test(err.message),
        `expected a GOAWAY refusal or H3RequestRejectedError, got ${err.name}: ${err.message}`,
      );
      return true;
    },
  );

  const body = await deadline(all, 10_000, 'the rest of the stream');
  assert.ok(Math.abs(body.length - 37_500) <= 3_750, `stream delivered ${body.length} bytes, expected 37500 ± 10%`);
  assert.equal(body[0], 0x47, 'MPEG-TS sync byte');

  const exit = await deadline(router.exited, 10_000 + 5_000, 'router exit after SIGTERM');
  t.diagnostic(`router exited ${Date.now() - tTerm} ms after SIGTERM`);
  assert.deepEqual(exit, { code: 0, signal: null }, router.stderr());
  assert.equal(control.server.stats.requests, 0, 'the refused request must not reach the control service');
});

test('SIGTERM with a stream longer than the drain timeout: it is cut at the deadline, logged as such, exit 0', { timeout: 40_000 }, async (t) => {
  const video = await service('video');
  const router = await startRouter([{ name: 'video', prefix: '/video', upstreams: [video.url] }], { drainMs: 1000 });
  const client = await router.connect();
  const path = '/video/stream?seconds=20&kbps=100';
  const res = await client.request(path);
  assert.equal(res.status, 200);
  const all = readAll(res.body);
  const outcome = all.then(
    () => 'ended',
    () => 'cut',
  );
  await sleep(300);
  const tTerm = Date.now();
  router.child.kill('SIGTERM');
  const exit = await deadline(router.exited, 10_000, 'router exit after SIGTERM');
  const took = Date.now() - tTerm;
  t.diagnostic(`router exited ${took} ms after SIGTERM`);
  assert.deepEqual(exit, { code: 0, signal: null }, router.stderr());
  assert.ok(took >= 900 && took < 8000, `exit after the 1 s drain deadline, took ${took} ms`);
  assert.equal(await deadline(outcome, 5000, 'the client stream to end'), 'cut', 'the 20 s stream cannot have finished');
  const line = router.accessLog().find((l) => l.path === path);
  assert.ok(line, `an access log line for the cut stream:\n${JSON.stringify(router.accessLog())}`);
  assert.match(String(line.error), /drain deadline/, `access log error: ${String(line.error)}`);
});

test('the TCP listener: HTTP/2 and HTTP/1.1 requests get 200 and alt-svc h3 with the UDP port', { timeout: 30_000 }, async () => {
  const text = await service('text');
  const router = await startRouter([{ name: 'text', prefix: '/text', upstreams: [text.url] }]);
  const altSvc = new RegExp(`^h3=":${router.port}"`);

  // HTTP/2
  const session = http2.connect(`https://127.0.0.1:${router.tcpPort}`, { ca: router.caPem, servername: 'localhost' });
  closers.push(async () => void session.destroy());
  const h2 = await deadline(
    new Promise<{ headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader; body: string }>((resolve, reject) => {
      session.once('error', reject);
      const req = session.request({ ':path': '/text/sample' });
      req.on('error', reject);
      let headers: http2.IncomingHttpHeaders & http2.IncomingHttpStatusHeader = {};
      req.on('response', (h) => (headers = h));
      let body = '';
      req.setEncoding('utf8');
      req.on('data', (d: string) => (body += d));
      req.on('end', () => resolve({ headers, body }));
      req.end();
    }),
    10_000,
    'the HTTP/2 request',
  );
  assert.equal(h2.headers[':status'], 200);
  assert.match(String(h2.headers['alt-svc']), altSvc);
  assert.equal(h2.headers['x-service'], 'text');
  assert.ok(h2.body.length > 0);
  session.close();

  // HTTP/1.1
  const h1 = await deadline(
    new Promise<{ status: number; headers: http.IncomingHttpHeaders; body: string; version: string }>((resolve, reject) => {
      const req = https.request(
        { host: '127.0.0.1', port: router.tcpPort, path: '/text/sample', ca: router.caPem, servername: 'localhost', agent: false },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => (body += d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, version: res.httpVersion }));
          res.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end();
    }),
    10_000,
    'the HTTP/1.1 request',
  );
  assert.equal(h1.status, 200);
  assert.equal(h1.version, '1.1');
  assert.match(String(h1.headers['alt-svc']), altSvc);
  assert.equal(h1.body, h2.body);

  const lines = await waitFor('two access log lines', 5000, () => {
    const l = router.accessLog();
    return l.length >= 2 ? l : undefined;
  });
  assert.deepEqual(lines.map((l) => l.protocol).sort(), ['h2', 'http/1.1']);
});

test(
  'an HTTP/2 client cancel on the TCP listener aborts the upstream request and is logged as a client cancel',
  {
    timeout: 30_000,
  },
  async () => {
    const video = await service('video');
    const router = await startRouter([{ name: 'video', prefix: '/video', upstreams: [video.url] }]);
    const session = http2.connect(`https://127.0.0.1:${router.tcpPort}`, { ca: router.caPem, servername: 'localhost' });
    closers.push(async () => void session.destroy());
    session.on('error', () => undefined);
    const path = '/video/stream?seconds=30&kbps=200&h2=1';
    const req = session.request({ ':path': path });
    req.on('error', () => undefined);
    await deadline(
      new Promise<void>((resolve) => {
        let got = 0;
        req.on('data', (d: Buffer) => {
          got += d.length;
          if (got >= 5000 && !req.closed) {
            req.close(http2.constants.NGHTTP2_CANCEL);
            resolve();
          }
        });
      }),
      10_000,
      'the first 5000 bytes over HTTP/2',
    );
    await waitFor('the video service to see the abort', 5000, () => (video.server.stats.aborted >= 1 ? true : undefined));
    const line = await waitFor('the access log line', 5000, () => router.accessLog().find((l) => l.path === path));
    assert.equal(line.protocol, 'h2');
    assert.match(String(line.error), /cancel/, `access log error: ${String(line.error)}`);
  },
);

test('an upstream that dies mid-body (stopped or killed): the client sees its stream reset, never a clean end, and the access log has the error', { timeout: 60_000 }, async () => {
  for (const sig of ['SIGTERM', 'SIGKILL'] as const) {
    const video = await serviceChild('video');
    const router = await startRouter([{ name: 'video', prefix: '/video', upstreams: [video.url] }]);
    const client = await router.connect();
    const path = `/video/stream?seconds=30&kbps=200&upstream=${sig}`;
    const res = await client.request(path);
    assert.equal(res.status, 200);
    let got = 0;
    const outcome = new Promise<Error | 'ended'>((resolve) => {
      res.body.on('data', (d: Buffer) => (got += d.length));
      res.body.once('error', (e) => resolve(e));
      res.body.once('end', () => resolve('ended'));
    });
    await waitFor('the first 5000 bytes', 10_000, () => (got >= 5000 ? true : undefined));
    const exited = new Promise<void>((r) => video.child.once('exit', () => r()));
    video.child.kill(sig);
    await deadline(exited, 10_000, `the video service to exit on ${sig}`);
    const end = await deadline(outcome, 10_000, 'the end of the client stream');
    assert.ok(end instanceof H3StreamError, `${sig}: the stream must be reset, got ${end === 'ended' ? 'a clean end' : String(end)}`);
    assert.equal(end.code, H3ErrorCode.H3_INTERNAL_ERROR);
    assert.ok(!res.body.readableEnded);
    const line = await waitFor('the access log line', 5000, () => router.accessLog().find((l) => l.path === path));
    assert.equal(line.status, 200);
    assert.match(String(line.error), /upstream body/, `${sig}: access log error: ${String(line.error)}`);
    // The connection is still usable for other streams.
    assert.ok((line.bytesOut as number) >= 5000);
  }
});

test('an upload that takes several times timeouts.headersMs goes through (200, intact); a backend silent after the body still gets 504', { timeout: 40_000 }, async () => {
  const video = await service('video');
  // Reads the whole body, then never answers.
  const silent = http.createServer((req) => req.resume());
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise<void>((r) => {
    silent.closeAllConnections();
    silent.close(() => r());
  }));
  const router = await startRouter(
    [
      { name: 'video', prefix: '/video', upstreams: [video.url] },
      { name: 'silent', prefix: '/silent', upstreams: [`http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`] },
    ],
    { headersMs: 500, idleBodyMs: 5000 },
  );
  const client = await router.connect();
  /** 10 pieces of 10 kB, 200 ms apart: about 2 s, four times headersMs. */
  const trickle = (): { body: Readable; sha256: () => string } => {
    const h = createHash('sha256');
    let i = 0;
    const body = new Readable({
      read() {
        if (i === 10) return void this.push(null);
        const chunk = randomBytes(10_000);
        i++;
        h.update(chunk);
        setTimeout(() => this.push(chunk), 200);
      },
    });
    return { body, sha256: () => h.digest('hex') };
  };
  const up = trickle();
  const res = await client.request('/video?slow-upload=1', { method: 'POST', body: up.body, headers: { 'content-type': 'application/octet-stream' } });
  const text = (await readAll(res.body)).toString();
  assert.equal(res.status, 200, text);
  const j = JSON.parse(text) as { bytes: number; sha256: string };
  assert.equal(j.bytes, 100_000);
  assert.equal(j.sha256, up.sha256());
  const line = await waitFor('the access log line of the upload', 5000, () => router.accessLog().find((l) => l.path === '/video?slow-upload=1'));
  assert.equal(line.status, 200);
  assert.equal(line.bytesIn, 100_000);
  assert.equal(line.error, null);

  const res2 = await client.request('/silent', { method: 'POST', body: trickle().body });
  const text2 = (await readAll(res2.body)).toString();
  assert.equal(res2.status, 504, text2);
  assert.equal((JSON.parse(text2) as { error: string }).error, 'upstream timeout');
  const line2 = await waitFor('the 504 line', 5000, () => router.accessLog().find((l) => l.path === '/silent'));
  assert.equal(line2.bytesIn, 100_000, 'the whole body went upstream before the timeout');
});
