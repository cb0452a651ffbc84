/**
 * startStack (src/proxy/stack.ts), the lifecycle of `qsr up` / `qsr proxy`, in-process: the services as supervised
 * child processes on free ports, the router on port 0 (UDP and TCP), requests through it over HTTP/3 and HTTP/2,
 * a reload, and close(): the router's UDP and TCP ports and the services' ports can be bound again, the service
 * processes are gone, the access log holds every request. A router that cannot start stops what it started.
 *
 * Every test has a timeout; the `after` hook closes whatever a failed test left open.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import http2 from 'node:http2';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Http3Client } from '../../src/h3/client.js';
import { loadPemChain } from '../../src/quic/tls/pem.js';
import { parseConfig, type Config } from '../../src/proxy/config.js';
import { startStack, serviceSpecs, DEFAULT_SERVICE_PORTS, type Stack } from '../../src/proxy/stack.js';
import { startService } from '../../src/services/index.js';
import { allocatePorts, baseConfig, freeUdpTcpPort, portFree } from './router-helpers.js';
import { readAll } from '../util/data.js';

const closers: (() => Promise<unknown>)[] = [];
const dirs: string[] = [];
after(async () => {
  for (const close of closers.splice(0).reverse()) {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([close().catch(() => undefined), new Promise<void>((r) => (timer = setTimeout(r, 5000)))]);
    clearTimeout(timer);
  }
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

interface Record_ {
  level: string;
  msg: string;
  fields: Record<string, unknown>;
}

/** A logger that keeps every record (the router's and the supervisor's). */
function recordingLog(): { log: Parameters<typeof startStack>[0]['log']; records: Record_[] } {
  const records: Record_[] = [];
  const at = (level: string) => (fields: Record<string, unknown>, msg: string) => void records.push({ level, msg, fields });
  return { log: { info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') }, records };
}

function workDir(): string {
  const d = mkdtempSync(join(tmpdir(), 'qsr-stack-'));
  dirs.push(d);
  return d;
}

function config(dir: string, raw: Record<string, unknown>): Config {
  return parseConfig(JSON.stringify(raw), join(dir, 'qsr.yaml'));
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The kinds of the process's active handles and requests (sockets, servers, child processes, timers), sorted. */
const resources = (): string[] => process.getActiveResourcesInfo().sort();

/** The resources in `now` beyond those in `before` (a multiset difference). */
function extra(now: string[], before: string[]): string[] {
  const left = [...before];
  return now.filter((r) => {
    const i = left.indexOf(r);
    if (i < 0) return true;
    left.splice(i, 1);
    return false;
  });
}

/** Waits up to `ms` until no resource is active beyond those in `before`; returns the extra ones then. */
async function extraResources(before: string[], ms: number): Promise<string[]> {
  const deadline = Date.now() + ms;
  let more = extra(resources(), before);
  while (more.length > 0 && Date.now() < deadline) {
    await sleep(50);
    more = extra(resources(), before);
  }
  return more;
}

async function h2Get(port: number, ca: string, path: string): Promise<number> {
  const session = http2.connect(`https://127.0.0.1:${port}`, { ca, servername: 'localhost' });
  session.on('error', () => undefined);
  try {
    return await new Promise<number>((resolve, reject) => {
      const req = session.request({ ':path': path });
      let status = 0;
      req.on('response', (h) => (status = Number(h[':status'])));
      req.on('error', reject);
      req.resume();
      req.on('end', () => resolve(status));
      req.end();
    });
  } finally {
    await new Promise<void>((r) => session.close(() => r()));
  }
}

test('serviceSpecs: the listed services on their ports (text with its body limit), or all three on the defaults', () => {
  const dir = workDir();
  const routes = [{ name: 'r', prefix: '/', upstreams: ['http://127.0.0.1:1'] }];
  assert.deepEqual(
    serviceSpecs(config(dir, { routes })).map((s) => [s.name, s.port, s.args]),
    Object.entries(DEFAULT_SERVICE_PORTS).map(([n, p]) => [n, p, undefined]),
  );
  assert.deepEqual(DEFAULT_SERVICE_PORTS, { video: 5001, text: 5002, control: 5003 });
  const listed = serviceSpecs(config(dir, { routes, services: { control: { port: 7003 }, text: { port: 7002, maxBodyBytes: 1000 } } }));
  assert.deepEqual(
    listed.map((s) => [s.name, s.port, s.args]),
    [
      ['text', 7002, ['--max-body-bytes', '1000']],
      ['control', 7003, undefined],
    ],
  );
});

test('startStack: services and router up, requests over HTTP/3 and HTTP/2, reload, close() releases everything', { timeout: 60_000 }, async () => {
  const dir = workDir();
  const ports = await allocatePorts();
  const accessLog = join(dir, 'access.log');
  const cfg = config(dir, { ...baseConfig(ports), listen: ['127.0.0.1:0'], accessLog, timeouts: { drainMs: 500 } });
  const { log, records } = recordingLog();
  // The probe sockets of allocatePorts are closed but may still be listed for a moment.
  const settle = Date.now() + 2000;
  while (resources().some((r) => r === 'UDPWrap' || r === 'TCPServerWrap' || r === 'CloseReq') && Date.now() < settle) await sleep(20);
  const before = resources();
  const stack: Stack = await startStack({ config: cfg, services: true, log });
  closers.push(() => stack.close(0));

  assert.deepEqual({ ...stack.services }, { video: ports.video, text: ports.text, control: ports.control });
  const pids = Object.values(stack.servicePids());
  assert.equal(pids.length, 3);
  for (const pid of pids) assert.ok(typeof pid === 'number' && alive(pid), `service ${pid} runs`);
  const udp = stack.info.udp[0]!.port;
  assert.ok(udp > 0);
  assert.equal(stack.info.tcp[0]!.port, udp, 'TCP on the port UDP got');
  assert.equal(await portFree(udp, true), false, 'the router holds its port');

  const caPem = readFileSync(stack.info.certPath, 'utf8');
  const client = await Http3Client.connect(`https://127.0.0.1:${udp}/`, { ca: loadPemChain(caPem), serverName: 'localhost' });
  closers.push(() => client.close());
  const status = await client.request('/control/status');
  assert.equal(status.status, 200);
  assert.equal((JSON.parse((await readAll(status.body)).toString()) as { service: string }).service, 'control');
  const sample = await client.request('/text/sample');
  assert.equal(sample.status, 200);
  assert.ok((await readAll(sample.body)).length > 0);
  assert.equal(await h2Get(udp, caPem, '/text/sample'), 200, 'HTTPS over TCP reaches the text service');

  // A reload without the control route: the router answers 404 itself from now on.
  stack.reload(config(dir, { ...baseConfig(ports), listen: ['127.0.0.1:0'], accessLog, routes: [{ name: 'text', prefix: '/text', upstreams: [`http://127.0.0.1:${ports.text}`] }] }));
  const gone = await client.request('/control/status');
  assert.equal(gone.status, 404);
  await readAll(gone.body);
  await client.close();

  const closing = stack.close();
  assert.equal(stack.close(), closing, 'close() is idempotent');
  await closing;

  // Sockets, servers, child processes, pipes and timers of the stack (and of the client) are all gone.
  assert.deepEqual(await extraResources(before, 3000), [], 'no handle beyond those active before startStack');
  for (const pid of pids) assert.equal(alive(pid as number), false, `service ${pid} stopped`);
  assert.equal(await portFree(udp, true), true, 'UDP and TCP port of the router released');
  for (const p of [ports.video, ports.text, ports.control]) assert.equal(await portFree(p), true, `service port ${p} released`);
  const lines = readFileSync(accessLog, 'utf8')
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as { path: string; status: number; protocol?: string });
  assert.deepEqual(
    lines.map((l) => [l.path, l.status]).sort(),
    [
      ['/control/status', 200],
      ['/control/status', 404],
      ['/text/sample', 200],
      ['/text/sample', 200],
    ],
    'every request is in the access log, flushed by close()',
  );
  for (const name of ['video', 'text', 'control']) {
    assert.ok(
      records.some((r) => r.level === 'info' && r.msg.startsWith(`${name} service stopped (`)),
      `${name} stopped by close(): ${JSON.stringify(records.map((r) => r.msg))}`,
    );
  }
  assert.ok(!records.some((r) => /restarting/.test(r.msg)), 'no service restarted during the shutdown');
});

test('startStack without services (qsr proxy): forwards to an upstream that runs elsewhere', { timeout: 30_000 }, async () => {
  const dir = workDir();
  const text = await startService('text', { port: 0, log: () => {}, closeTimeoutMs: 500 });
  closers.push(() => text.server.shutdown());
  const { log } = recordingLog();
  const stack = await startStack({
    config: config(dir, { listen: ['127.0.0.1:0'], dataDir: './data', accessLog: false, healthCheck: false, routes: [{ name: 'text', prefix: '/text', upstreams: [text.url] }] }),
    services: false,
    log,
  });
  closers.push(() => stack.close(0));
  assert.deepEqual({ ...stack.services }, {});
  assert.deepEqual(stack.servicePids(), {});
  const client = await Http3Client.connect(`https://127.0.0.1:${stack.info.udp[0]!.port}/`, {
    ca: loadPemChain(readFileSync(stack.info.certPath, 'utf8')),
    serverName: 'localhost',
  });
  closers.push(() => client.close());
  const r = await client.request('/text/sample');
  assert.equal(r.status, 200);
  await readAll(r.body);
  await client.close();
  const port = stack.info.udp[0]!.port;
  await stack.close();
  assert.equal(await portFree(port, true), true);
});

test('startStack: a router that cannot bind its port stops the services it started, then rejects', { timeout: 30_000 }, async () => {
  const dir = workDir();
  const port = await freeUdpTcpPort();
  const textPort = (await allocatePorts()).text;
  const blocker: Socket = createSocket('udp4');
  await new Promise<void>((r) => blocker.bind(port, '127.0.0.1', () => r()));
  closers.push(() => new Promise<void>((r) => blocker.close(() => r())));
  const { log, records } = recordingLog();
  const cfg = config(dir, {
    listen: [`127.0.0.1:${port}`],
    dataDir: './data',
    accessLog: false,
    routes: [{ name: 'text', prefix: '/text', upstreams: [`http://127.0.0.1:${textPort}`] }],
    services: { text: { port: textPort } },
  });
  await assert.rejects(startStack({ config: cfg, services: true, log }), /cannot start the router: .*EADDRINUSE/);
  const started = records.find((r) => r.msg === 'text service started');
  assert.ok(started, JSON.stringify(records));
  assert.equal(alive(started.fields.pid as number), false, 'the text service was stopped');
  assert.ok(records.some((r) => r.level === 'info' && r.msg.startsWith('text service stopped (')), JSON.stringify(records));
  assert.equal(await portFree(textPort), true);
});
