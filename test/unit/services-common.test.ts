/**
 * What the three services share, over real HTTP/1.1 on 127.0.0.1: /healthz and the x-service header, 404/405,
 * keep-alive, slow mode (delayMs holds headers back except on /healthz; a client leaving early is counted),
 * graceful bounded close(), startService errors, and the `qsr service` command (listening line, SIGTERM exit 0,
 * exit 2 for a bad name or flag, exit 1 for a port in use).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { Readable } from 'node:stream';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import {
  SERVICE_NAMES,
  DEFAULT_PORTS,
  createService,
  startService,
  type RunningService,
} from '../../src/services/index.js';
import { within, waitFor, request, json } from './services-helpers.js';


const running: RunningService[] = [];
after(async () => {
  for (const r of running) r.server.closeAllConnections();
  await Promise.all(running.map((r) => r.server.shutdown()));
});
async function start(...args: Parameters<typeof startService>): Promise<RunningService> {
  const r = await startService(args[0], { log: () => {}, ...args[1] });
  running.push(r);
  return r;
}

test('every service: /healthz, x-service, 404 and HEAD', async () => {
  for (const name of SERVICE_NAMES) {
    const s = await start(name, { port: 0 });
    assert.equal(s.host, '127.0.0.1', 'default host');
    const h = await request(s.url, '/healthz');
    assert.equal(h.status, 200);
    assert.equal(h.headers['x-service'], name);
    assert.deepEqual(json(h), { ok: true, service: name });
    const head = await request(s.url, '/healthz', { method: 'HEAD' });
    assert.equal(head.status, 200);
    assert.equal(head.body.length, 0);
    const post = await request(s.url, '/healthz', { method: 'POST', body: 'x' });
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
    assert.equal(post.headers['x-service'], name);
    const n = await request(s.url, '/no/such/path?q=1');
    assert.equal(n.status, 404);
    assert.equal(n.headers['x-service'], name);
    assert.deepEqual(json(n), { error: 'not found', path: '/no/such/path', service: name });
  }
  assert.deepEqual(DEFAULT_PORTS, { video: 5001, text: 5002, control: 5003 });
});

test('createService returns a server that is not listening', () => {
  for (const name of SERVICE_NAMES) {
    const s = createService(name);
    assert.equal(s.listening, false);
    assert.equal(s.service, name);
  }
});

test('keep-alive: several requests reuse one connection', async () => {
  const s = await start('control', { port: 0 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const sockets = new Set<unknown>();
    for (let i = 0; i < 3; i++) {
      await within(
        new Promise<void>((resolve, reject) => {
          const req = http.get(new URL('/healthz', s.url), { agent }, (res) => {
            sockets.add(req.socket);
            assert.equal(res.headers.connection, 'keep-alive');
            res.resume();
            res.on('end', resolve);
          });
          req.on('error', reject);
        }),
        5000,
        'a keep-alive request',
      );
    }
    assert.equal(sockets.size, 1);
  } finally {
    agent.destroy();
  }
});

test('delayMs holds responses back, except GET /healthz', { timeout: 20_000 }, async () => {
  const s = await start('text', { port: 0, delayMs: 1500 });
  const t0 = Date.now();
  const health = await request(s.url, '/healthz');
  assert.equal(health.status, 200);
  let answered = false;
  const slow = request(s.url, '/text/sample').then((r) => {
    answered = true;
    return r;
  });
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(answered, false, 'the delayed response came before the delay could have passed');
  const r = await slow;
  assert.equal(r.status, 200);
  assert.ok(Date.now() - t0 >= 1400, 'a timer cannot fire early');
});

test('a client giving up during the delay is counted as aborted and the handler never runs', { timeout: 20_000 }, async () => {
  const s = await start('control', { port: 0, delayMs: 60_000 });
  const req = http.request(new URL('/control', s.url), { method: 'POST' });
  req.on('error', () => {});
  req.end(JSON.stringify({ command: 'set', key: 'late', value: 1 }));
  await waitFor(() => s.server.stats.inFlight === 1, 'the request to arrive');
  req.destroy();
  await waitFor(() => s.server.stats.aborted === 1 && s.server.stats.inFlight === 0, 'the abort to be counted');
  const status = await request(s.url, '/healthz');
  assert.equal(status.status, 200);
  // the shutdown below must not wait for the 60 s timer
  await within(s.server.shutdown(), 5000, 'close() with a cleared delay');
});

test('close(): stops accepting, lets an in-flight request finish, closes idle keep-alive connections', { timeout: 20_000 }, async () => {
  const s = await start('control', { port: 0, delayMs: 400 });
  const agent = new http.Agent({ keepAlive: true });
  try {
    // an idle keep-alive connection (healthz is not delayed)
    await within(
      new Promise<void>((resolve, reject) =>
        http.get(new URL('/healthz', s.url), { agent }, (res) => res.resume().on('end', resolve)).on('error', reject),
      ),
      5000,
      'healthz',
    );
    const inflight = request(s.url, '/control', { method: 'POST', body: '{"command":"ping"}' });
    await waitFor(() => s.server.stats.inFlight === 1, 'the request to arrive');
    const closed = s.server.shutdown();
    const r = await inflight;
    assert.equal(r.status, 200, 'the in-flight request finished');
    assert.equal(json(r).pong, true);
    assert.equal(r.headers.connection, 'close');
    await within(closed, 5000, 'close()');
    assert.equal(s.server.listening, false);
    await assert.rejects(request(s.url, '/healthz', {}, 5000), /ECONNREFUSED/);
    await within(s.server.shutdown(), 1000, 'a second close() after the first finished');
  } finally {
    agent.destroy();
  }
});

test('close() is bounded: a stalled upload is dropped after closeTimeoutMs', { timeout: 20_000 }, async () => {
  const s = await start('video', { port: 0, closeTimeoutMs: 300 });
  const body = new Readable({ read() {} }); // never ends
  body.push(Buffer.alloc(1024));
  const stalled = request(s.url, '/video', { method: 'POST', headers: { 'transfer-encoding': 'chunked' }, body }, 10_000);
  stalled.catch(() => {});
  await waitFor(() => s.server.stats.inFlight === 1, 'the upload to arrive');
  const t0 = Date.now();
  await within(s.server.shutdown(), 5000, 'a bounded close()');
  assert.ok(Date.now() - t0 < 4000);
  await assert.rejects(stalled);
  await waitFor(() => s.server.stats.aborted === 1, 'the dropped upload to be counted');
});

test('startService: a port in use is a clear error', async () => {
  const s = await start('text', { port: 0 });
  await assert.rejects(startService('control', { port: s.port, log: () => {} }), {
    message: `control service: port ${s.port} on 127.0.0.1 is already in use`,
  });
});

// ---- the `qsr service` command ----
const QSR = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

function qsr(args: string[], onLine?: (line: string, child: ReturnType<typeof spawn>) => void): Promise<Run> {
  return within(
    new Promise<Run>((resolve, reject) => {
      const child = spawn(process.execPath, [QSR, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.setEncoding('utf8').on('data', (d: string) => {
        stdout += d;
        if (onLine && stdout.includes('\n')) onLine(stdout.split('\n')[0], child);
      });
      child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
      child.on('error', reject);
      child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr }));
      setTimeout(() => child.kill('SIGKILL'), 15_000).unref();
    }),
    20_000,
    `qsr ${args.join(' ')}`,
  );
}

test('qsr service control: prints one listening line, serves, exits 0 on SIGTERM', { timeout: 30_000 }, async () => {
  let checked: Promise<void> | undefined;
  const run = await qsr(['service', 'control', '--port', '0'], (line, child) => {
    if (checked) return;
    checked = (async () => {
      const m = /^control service listening on (http:\/\/127\.0\.0\.1:\d+)$/.exec(line);
      assert.ok(m, line);
      const r = await request(m[1], '/control', { method: 'POST', body: '{"command":"ping"}' });
      assert.equal(r.headers['x-service'], 'control');
      assert.equal(json(r).pong, true);
    })().finally(() => child.kill('SIGTERM'));
  });
  await checked;
  assert.equal(run.signal, null);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout.trim().split('\n').length, 1);
});

test('qsr service: a bad name or flag exits 2 naming it; a port in use exits 1', { timeout: 30_000 }, async () => {
  const bad = await qsr(['service', 'audio']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /<name>: unknown service 'audio' \(expected video, text, control\)/);
  const port = await qsr(['service', 'text', '--port', '70000']);
  assert.equal(port.code, 2);
  assert.match(port.stderr, /--port: 70000 is out of range/);
  const missing = await qsr(['service']);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr, /missing required argument 'name'/);
  const busy = await start('video', { port: 0 });
  const inUse = await qsr(['service', 'video', '--port', String(busy.port)]);
  assert.equal(inUse.code, 1);
  assert.match(inUse.stderr, new RegExp(`port ${busy.port} on 127\\.0\\.0\\.1 is already in use`));
  assert.equal(inUse.stdout, '');
});

test('qsr service text --max-body-bytes N: the limit of POST /text; on another service or not a number it exits 2', { timeout: 30_000 }, async () => {
  let checked: Promise<void> | undefined;
  const run = await qsr(['service', 'text', '--port', '0', '--max-body-bytes', '100'], (line, child) => {
    if (checked) return;
    checked = (async () => {
      const url = /listening on (http:\/\/\S+)$/.exec(line)![1]!;
      assert.equal((await request(url, '/text', { method: 'POST', body: 'y'.repeat(100) })).status, 200);
      const over = await request(url, '/text', { method: 'POST', body: 'y'.repeat(101) });
      assert.equal(over.status, 413);
      assert.equal(json(over).limit, 100);
    })().finally(() => child.kill('SIGTERM'));
  });
  await checked;
  assert.equal(run.code, 0, run.stderr);
  const video = await qsr(['service', 'video', '--port', '0', '--max-body-bytes', '100']);
  assert.equal(video.code, 2);
  assert.match(video.stderr, /--max-body-bytes: only the text service has a body limit/);
  const nan = await qsr(['service', 'text', '--port', '0', '--max-body-bytes', '10MB']);
  assert.equal(nan.code, 2);
  assert.match(nan.stderr, /--max-body-bytes: expected a whole number, got '10MB'/);
});
