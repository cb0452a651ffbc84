/**
 * The router in-process (ProxyServer on 127.0.0.1 and ::1, port 0, real UDP and TCP), its services in-process, and
 * what it writes to its access log and puts on the wire:
 *
 * 1. an HTTP/2 connection keeps one connectionId for all its streams; IPv6 clients are written `[::1]:port`
 * 2. a stream the HTTP/3 layer rejects (H3_EXCESSIVE_LOAD) gets an access log line
 * 3. a client that vanished is logged as the idle timeout its connection hit, not as a client cancel
 * 4. a 60 KB path is capped in the line, and the line says so
 * 5. the router's own answers (404, 502, 503, 504) carry FIN in the STREAM frame of their last DATA
 *
 * Every test has a timeout; everything started here is closed in `after`, the one child by its PID.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import http from 'node:http';
import http2 from 'node:http2';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Http3Client } from '../../src/h3/client.js';
import { H3ErrorCode, H3StreamError } from '../../src/h3/errors.js';
import { loadPemChain } from '../../src/quic/tls/pem.js';
import { parseConfig } from '../../src/proxy/config.js';
import { ProxyServer, type ProxyInfo } from '../../src/proxy/server.js';
import { createAccessLog, type AccessLog } from '../../src/proxy/access-log.js';
import { startService, type RunningService } from '../../src/services/index.js';
import { spawnBounded, type Child } from '../interop/peers.js';
import { QSR } from './router-helpers.js';
import { readAll } from '../util/data.js';

const closers: (() => Promise<unknown>)[] = [];
const dirs: string[] = [];
const children: Child[] = [];

after(async () => {
  for (const c of children) await c.stop('SIGKILL', 1000);
  for (const close of closers.splice(0).reverse()) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([close().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, 3000)))]);
    clearTimeout(timer);
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(what: string, ms: number, check: () => T | undefined): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** Polls the access log until a line matches. */
async function lineFor(r: Router, pred: (l: Record<string, unknown>) => boolean, what: string, ms = 5000): Promise<Record<string, unknown>> {
  const deadline = Date.now() + ms;
  for (;;) {
    const lines = await r.lines();
    const l = lines.find(pred);
    if (l) return l;
    if (Date.now() > deadline) throw new Error(`no access log line: ${what}\n${JSON.stringify(lines).slice(0, 3000)}`);
    await sleep(100);
  }
}

async function service(name: 'video' | 'text'): Promise<RunningService> {
  const s = await startService(name, { port: 0, log: () => {}, closeTimeoutMs: 500 });
  closers.push(() => s.server.shutdown());
  return s;
}

/** A plain node:http upstream on a free port; /healthz answers 200 so health checks keep it in. */
async function upstream(handler: (req: http.IncomingMessage, res: http.ServerResponse) => void): Promise<string> {
  const srv = http.createServer((req, res) => {
    if (req.url === '/healthz') return void res.end('ok');
    handler(req, res);
  });
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  closers.push(
    () =>
      new Promise<void>((r) => {
        srv.closeAllConnections();
        srv.close(() => r());
      }),
  );
  return `http://127.0.0.1:${(srv.address() as net.AddressInfo).port}`;
}

async function deadPort(): Promise<number> {
  const srv = net.createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as net.AddressInfo).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

interface Router {
  info: ProxyInfo;
  /** UDP = TCP port on 127.0.0.1 and on ::1. */
  port4: number;
  port6: number;
  ca: Buffer[];
  caPem: string;
  lines(): Promise<Record<string, unknown>[]>;
  rawLines(): Promise<string[]>;
  connect(host?: string): Promise<Http3Client>;
}

async function startRouter(routes: { name: string; prefix: string; upstreams: string[] }[], extra: Record<string, unknown> = {}): Promise<Router> {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-router-logs-'));
  dirs.push(dir);
  const logPath = join(dir, 'access.log');
  const cfg = parseConfig(
    JSON.stringify({ listen: ['127.0.0.1:0', '[::1]:0'], dataDir: './data', accessLog: logPath, healthCheck: false, timeouts: { drainMs: 500 }, routes, ...extra }),
    join(dir, 'qsr.yaml'),
  );
  const quiet = { info: () => {}, warn: () => {}, error: () => {} };
  const accessLog: AccessLog = createAccessLog(logPath);
  const proxy = new ProxyServer(cfg, quiet, accessLog);
  const info = await proxy.start();
  closers.push(async () => {
    await proxy.close(500);
    await accessLog.close();
  });
  const caPem = readFileSync(info.certPath, 'utf8');
  const ca = loadPemChain(caPem);
  const port4 = info.udp.find((a) => a.address === '127.0.0.1')!.port;
  const port6 = info.udp.find((a) => a.address === '::1')!.port;
  const rawLines = async (): Promise<string[]> => {
    await accessLog.flush();
    return existsSync(logPath) ? readFileSync(logPath, 'utf8').split('\n').filter((l) => l !== '') : [];
  };
  return {
    info,
    port4,
    port6,
    ca,
    caPem,
    rawLines,
    lines: async () => (await rawLines()).map((l) => JSON.parse(l) as Record<string, unknown>),
    connect: async (host = '127.0.0.1') => {
      const port = host === '::1' ? port6 : port4;
      const c = await Http3Client.connect(`https://${host.includes(':') ? `[${host}]` : host}:${port}/`, { ca, serverName: 'localhost' });
      closers.push(() => c.close());
      return c;
    },
  };
}

/** `n` GET requests over one HTTP/2 session to `host`; resolves with the statuses. */
async function h2Gets(host: string, port: number, caPem: string, paths: string[]): Promise<number[]> {
  const session = http2.connect(`https://${host.includes(':') ? `[${host}]` : host}:${port}`, { ca: caPem, servername: 'localhost' });
  session.on('error', () => undefined);
  try {
    return await Promise.all(
      paths.map(
        (p) =>
          new Promise<number>((resolve, reject) => {
            const req = session.request({ ':path': p });
            let status = 0;
            req.on('response', (h) => (status = Number(h[':status'])));
            req.on('error', reject);
            req.resume();
            req.on('end', () => resolve(status));
            req.end();
          }),
      ),
    );
  } finally {
    await new Promise<void>((r) => session.close(() => r()));
  }
}

// ---------------------------------------------------------------------------------------------------------------

test('access log: one connectionId per HTTP/2 connection; IPv6 clients in brackets over h3 and h2', { timeout: 30_000 }, async () => {
  const text = await service('text');
  const r = await startRouter([{ name: 'text', prefix: '/text', upstreams: [text.url] }]);
  // Two HTTP/2 connections, three streams each.
  const a = ['/text/sample?c=a1', '/text/sample?c=a2', '/text/sample?c=a3'];
  const b = ['/text/sample?c=b1', '/text/sample?c=b2', '/text/sample?c=b3'];
  assert.deepEqual(await h2Gets('127.0.0.1', r.port4, r.caPem, a), [200, 200, 200]);
  assert.deepEqual(await h2Gets('127.0.0.1', r.port4, r.caPem, b), [200, 200, 200]);
  // HTTP/3 and HTTP/2 from ::1.
  const c6 = await r.connect('::1');
  const res = await c6.request('/text/sample?c=v6h3');
  assert.equal(res.status, 200);
  await readAll(res.body);
  assert.deepEqual(await h2Gets('::1', r.port6, r.caPem, ['/text/sample?c=v6h2']), [200]);

  let lines: Record<string, unknown>[] = [];
  for (let i = 0; i < 50 && lines.length < 8; i++) {
    lines = await r.lines();
    if (lines.length < 8) await sleep(100);
  }
  const byPath = (p: string): Record<string, unknown> => {
    const l = lines.find((x) => x.path === p);
    assert.ok(l, `no line for ${p}: ${JSON.stringify(lines)}`);
    return l;
  };
  const idsA = new Set(a.map((p) => byPath(p).connectionId));
  const idsB = new Set(b.map((p) => byPath(p).connectionId));
  assert.equal(idsA.size, 1, `one connectionId for the first HTTP/2 connection: ${[...idsA].join(', ')}`);
  assert.equal(idsB.size, 1, `one connectionId for the second HTTP/2 connection: ${[...idsB].join(', ')}`);
  assert.notDeepEqual([...idsA], [...idsB], 'two connections, two ids');
  for (const p of [...a, ...b]) assert.match(String(byPath(p).client), /^127\.0\.0\.1:\d+$/);
  const v6h3 = byPath('/text/sample?c=v6h3');
  assert.equal(v6h3.protocol, 'h3');
  assert.match(String(v6h3.client), /^\[::1\]:\d+$/);
  const v6h2 = byPath('/text/sample?c=v6h2');
  assert.equal(v6h2.protocol, 'h2');
  assert.match(String(v6h2.client), /^\[::1\]:\d+$/);
});

test('a stream rejected with H3_EXCESSIVE_LOAD (header section over the limit) gets an access log line', { timeout: 30_000 }, async () => {
  const text = await service('text');
  const r = await startRouter([{ name: 'text', prefix: '/text', upstreams: [text.url] }]);
  const client = await r.connect();
  await waitFor("the router's SETTINGS", 5000, () => (client.session.peerSettings ? true : undefined));
  // Our client refuses to send more than the peer's SETTINGS_MAX_FIELD_SECTION_SIZE (64 KiB): lift that, so the
  // router sees what a client that ignores the setting would send.
  client.session.peerMaxFieldSectionSize = Infinity;
  await assert.rejects(client.request('/text/sample?big=1', { headers: { 'x-big': 'a'.repeat(70_000) } }), (err: unknown) => {
    assert.ok(err instanceof H3StreamError, String(err));
    assert.equal(err.code, H3ErrorCode.H3_EXCESSIVE_LOAD);
    return true;
  });
  // The connection is still fine.
  const ok = await client.request('/text/sample?after=1');
  assert.equal(ok.status, 200);
  await readAll(ok.body);
  const line = await lineFor(r, (l) => l.streamId === 0, 'the line of the rejected stream 0');
  // The header section was never decoded: no method, authority or path to show.
  assert.equal(line.status, null);
  assert.equal(line.route, null);
  assert.equal(line.protocol, 'h3');
  assert.equal(line.method, null);
  assert.equal(line.path, null);
  assert.match(String(line.error), /H3_EXCESSIVE_LOAD/);
  assert.match(String(line.client), /^127\.0\.0\.1:\d+$/);
  assert.equal(typeof line.streamId, 'number');
});

test('a client that vanished mid-stream is logged as the idle timeout its connection hit, not as a client cancel', { timeout: 40_000 }, async () => {
  const video = await service('video');
  const r = await startRouter([{ name: 'video', prefix: '/video', upstreams: [video.url] }], { quic: { maxIdleTimeoutMs: 1000 } });
  const dir = mkdtempSync(join(tmpdir(), 'qsr-router-logs-client-'));
  dirs.push(dir);
  const path = '/video/stream?seconds=30&kbps=100&vanish=1';
  // A client in its own process, so that SIGKILL makes it vanish without a CONNECTION_CLOSE.
  const child = spawnBounded({
    name: 'qsr-get',
    cmd: process.execPath,
    args: [QSR, 'get', `https://127.0.0.1:${r.port4}${path}`, '--ca', r.info.certPath, '--server-name', 'localhost', '--timeout', '60000'],
    workDir: dir,
    timeoutMs: 35_000,
  });
  children.push(child);
  await waitFor('the live stream to start', 15_000, () => (video.server.stats.liveStreams === 1 ? true : undefined));
  await sleep(300);
  await child.stop('SIGKILL', 2000);
  const line = await lineFor(r, (l) => l.path === path, 'the line of the vanished client', 15_000);
  assert.equal(line.status, 200);
  assert.match(String(line.error), /idle timeout/, `access log error: ${String(line.error)}`);
  assert.doesNotMatch(String(line.error), /cancel/);
  // The upstream request was ended too.
  await waitFor('the live stream to stop', 5000, () => (video.server.stats.liveStreams === 0 ? true : undefined));
});

test('a 60 KB path is capped in the access log line, and the line says so', { timeout: 30_000 }, async () => {
  const text = await service('text');
  const r = await startRouter([{ name: 'text', prefix: '/text', upstreams: [text.url] }]);
  const client = await r.connect();
  const long = `/nowhere/${'p'.repeat(60_000)}`;
  const res = await client.request(long);
  assert.equal(res.status, 404); // no route
  await readAll(res.body);
  await lineFor(r, (l) => typeof l.path === 'string' && l.path.startsWith('/nowhere/ppp'), 'the long path');
  const raw = (await r.rawLines()).find((l) => l.includes('/nowhere/ppp'))!;
  assert.ok(raw.length < 4096, `line of ${raw.length} characters`);
  const line = JSON.parse(raw) as Record<string, unknown>;
  assert.equal(String(line.path).length, 2048);
  assert.ok(long.startsWith(String(line.path)));
  assert.equal(line.pathTruncated, true);
  assert.equal(line.pathLength, long.length);
  assert.equal(line.status, 404);
});

interface StreamFrame {
  offset: number;
  length: number;
  fin: boolean;
}

/** Records every STREAM frame the client's QUIC connection receives, by stream id (wrapping the handler of its streams module). */
function recordStreamFrames(client: Http3Client): Map<number, StreamFrame[]> {
  const frames = new Map<number, StreamFrame[]>();
  const streams = (client.session.quic.conn as unknown as { streams: { onStreamFrame(id: number, offset: number, data: Buffer, fin: boolean): void } }).streams;
  const original = streams.onStreamFrame.bind(streams);
  streams.onStreamFrame = (id, offset, data, fin) => {
    let list = frames.get(id);
    if (!list) frames.set(id, (list = []));
    list.push({ offset, length: data.length, fin });
    original(id, offset, data, fin);
  };
  return frames;
}

test("the router's own answers (404, 502, 503, 504) carry FIN in the STREAM frame of their last DATA", { timeout: 40_000 }, async () => {
  const text = await service('text');
  // 502: passes its health checks, drops the connection on any other request; 504: never answers.
  const broken = await upstream((req) => req.socket.destroy());
  const silent = await upstream(() => undefined);
  const dead = `http://127.0.0.1:${await deadPort()}`;
  const r = await startRouter(
    [
      { name: 'text', prefix: '/text', upstreams: [text.url] },
      { name: 'broken', prefix: '/broken', upstreams: [broken] },
      { name: 'silent', prefix: '/silent', upstreams: [silent] },
      { name: 'dead', prefix: '/dead', upstreams: [dead] },
    ],
    { healthCheck: { intervalMs: 100, timeoutMs: 100, unhealthyAfter: 1, healthyAfter: 1 }, timeouts: { headersMs: 300, drainMs: 500 } },
  );
  const client = await r.connect();
  const frames = recordStreamFrames(client);
  const get = async (path: string): Promise<{ status: number; streamId: number; body: string }> => {
    const res = await client.request(path);
    return { status: res.status, streamId: res.streamId, body: (await readAll(res.body)).toString() };
  };
  // The dead upstream is taken out by its first failed check: from then on its route answers 503.
  let unavailable = await get('/dead/x');
  for (let i = 0; i < 40 && unavailable.status !== 503; i++) {
    await sleep(100);
    unavailable = await get('/dead/x');
  }
  const answers = [await get('/nowhere'), await get('/broken/x'), unavailable, await get('/silent/x'), await get('/text/sample')];
  assert.deepEqual(
    answers.map((a) => a.status),
    [404, 502, 503, 504, 200],
    answers.map((a) => a.body).join('\n'),
  );
  for (const a of answers) {
    const list = frames.get(a.streamId) ?? [];
    const fins = list.filter((f) => f.fin);
    const why = `status ${a.status}, stream ${a.streamId}: ${JSON.stringify(list)}`;
    assert.equal(fins.length, 1, why);
    // FIN rides on the frame that ends the body: its STREAM frame has data, and nothing comes after it.
    assert.ok(fins[0]!.length > 0, `FIN in a STREAM frame of its own: ${why}`);
    const end = Math.max(...list.map((f) => f.offset + f.length));
    assert.equal(fins[0]!.offset + fins[0]!.length, end, why);
  }
});
