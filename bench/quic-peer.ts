/**
 * One side of the bulk-transfer benchmark over our QUIC stack (RFC 9000 streams over node:dgram), run as a child
 * process by bench/run.ts so that client and server each get their own process and event loop.
 *
 *   node dist/bench/quic-peer.js server [--datagram BYTES] [--keep-idle N]
 *     Binds 127.0.0.1 on a kernel-chosen port, prints {"event":"listening","port":N}, serves ONE connection:
 *     on each bidi stream it reads "<bytes>\n", writes that many bytes (one preallocated 64 KiB buffer, reused,
 *     honouring write() backpressure) and ends the stream. When the connection closes it prints its resource
 *     usage as one JSON line and exits. With --keep-idle N it accepts up to N + 16 connections at once and keeps them
 *     (idle timeout 10 minutes), serves the streams of any of them as above, and runs until SIGTERM. After each bulk
 *     transfer (1 MB or more) it prints {"event":"served"} with its CPU seconds and GC pauses over that transfer; with
 *     QSR_PEER_PROFILE=DIR it also writes a CPU profile of the transfer alone to DIR/served-N.cpuprofile.
 *   node dist/bench/quic-peer.js idle --port P --count N [--alpn NAME] [--at-once K]
 *     Opens N connections to the server (at most K, default 64, handshakes at a time, certificate not verified),
 *     prints {"event":"idle_ready","count":N,"ms":...,"cpuS":...} once all are established (cpuS: its CPU seconds so
 *     far), and keeps them open and silent until
 *     SIGTERM. On SIGUSR2 it closes them all (CONNECTION_CLOSE; H3_NO_ERROR with --alpn h3), prints
 *     {"event":"idle_closed","count":N,"delivered":D,"ms":...} once the closes went out (D = N unless 10 s passed)
 *     and waits for SIGTERM. --alpn h3 makes them HTTP/3 connections as far as
 *     the handshake goes (the edge suite holds them against the router and Caddy; no stream is opened).
 *   node dist/bench/quic-peer.js client --port P --size BYTES [--datagram BYTES] [--sha]
 *     Connects, opens one bidi stream, requests BYTES, counts (and with --sha hashes) what arrives, closes the
 *     connection and prints one JSON line with timings and resource usage.
 *
 * Every JSON line printed on stdout starts with '{'; bench/run.ts reads them. This is a measurement tool, not a test.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { join } from 'node:path';
import { PerformanceObserver, constants, performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { UdpEndpoint, type QuicConnection, type QuicStream } from '../src/io/udp.js';
import type { ConnectionConfig } from '../src/quic/connection-types.js';
import { loadPemChain, loadPrivateKey } from '../src/quic/tls/pem.js';

/** Size of the one buffer the server writes again and again. */
const CHUNK = 64 * 1024;
const HOST = '127.0.0.1';
const CERTS = fileURLToPath(new URL('../../test/fixtures/certs/', import.meta.url));

/** The bytes the server sends: a fixed, non-constant pattern so a SHA-256 check means something. */
function patternChunk(): Buffer {
  const b = Buffer.allocUnsafe(CHUNK);
  for (let i = 0; i < CHUNK; i++) b[i] = (i * 251 + 17 + (i >>> 8)) & 0xff;
  return b;
}

/** SHA-256 (hex) of `size` bytes of the repeated pattern: what the client expects. */
function expectedSha256(size: number): string {
  const chunk = patternChunk();
  const h = createHash('sha256');
  for (let left = size; left > 0; left -= CHUNK) h.update(left >= CHUNK ? chunk : chunk.subarray(0, left));
  return h.digest('hex');
}

function emit(obj: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(obj) + '\n');
}

/** CPU seconds and peak RSS (MB = 10^6 B) of this process so far. */
function usage(): { cpuUser: number; cpuSystem: number; cpu: number; maxRssMB: number } {
  const c = process.cpuUsage();
  const maxRssMB = (process.resourceUsage().maxRSS * 1024) / 1e6; // maxRSS is in KiB
  return { cpuUser: c.user / 1e6, cpuSystem: c.system / 1e6, cpu: (c.user + c.system) / 1e6, maxRssMB };
}

function flag(args: string[], name: string): string | undefined {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
}

function intFlag(args: string[], name: string, dflt: number): number {
  const v = flag(args, name);
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name} needs a non-negative integer, got ${v}`);
  return n;
}

// ---------------------------------------------------------------------------------------------------------------------
// Server

/** Garbage collection in this process so far (PerformanceObserver 'gc' entries): pauses and their total, by kind. */
const gcTotals = { count: 0, ms: 0, majorCount: 0, majorMs: 0 };
function observeGc(): void {
  const obs = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gcTotals.count++;
      gcTotals.ms += e.duration;
      if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        gcTotals.majorCount++;
        gcTotals.majorMs += e.duration;
      }
    }
  });
  obs.observe({ entryTypes: ['gc'] });
}

/**
 * Sends `size` bytes and, for a bulk transfer (1 MB or more), prints {"event":"served"} with this process's CPU
 * seconds and GC pauses from the request until the stream closed: the server's cost of one transfer, which a busy machine
 * changes far less than the wall-clock speed.
 */
async function sendBytes(s: QuicStream, size: number, chunk: Buffer): Promise<void> {
  const profiling = size >= 1e6 ? await startProfile() : null;
  const cpu0 = process.cpuUsage();
  const gc0 = { ...gcTotals };
  const t0 = performance.now();
  let left = size;
  while (left > 0) {
    const n = Math.min(left, CHUNK);
    left -= n;
    const ok = s.write(n === CHUNK ? chunk : chunk.subarray(0, n));
    if (!ok && left > 0) {
      // Backpressure: wait until the stream drains (or fails).
      await Promise.race([once(s, 'drain'), once(s, 'close')]);
      if (s.destroyed) throw new Error('stream closed while sending');
    }
  }
  s.end();
  if (size >= 1e6) {
    if (!s.destroyed) await once(s, 'close');
    const cpu = process.cpuUsage(cpu0);
    emit({
      event: 'served', bytes: size, seconds: (performance.now() - t0) / 1000, cpu: (cpu.user + cpu.system) / 1e6,
      gcCount: gcTotals.count - gc0.count, gcMs: gcTotals.ms - gc0.ms, majorGcCount: gcTotals.majorCount - gc0.majorCount, majorGcMs: gcTotals.majorMs - gc0.majorMs,
      heapUsedMB: process.memoryUsage().heapUsed / 1e6,
      ...(profiling && { profile: await profiling() }),
    });
  }
}

let profiles = 0;

/**
 * With QSR_PEER_PROFILE=DIR, a CPU profile of this process (node:inspector) from now until the returned function is
 * called, which writes it to DIR/served-N.cpuprofile and returns the file name: the bulk transfer alone, without the
 * handshakes of the idle connections that a whole-process --cpu-prof would be mostly made of.
 */
async function startProfile(): Promise<(() => Promise<string>) | null> {
  const dir = process.env.QSR_PEER_PROFILE;
  if (!dir) return null;
  const session = new Session();
  session.connect();
  const post = (method: string, params?: object): Promise<unknown> =>
    new Promise((resolve, reject) => session.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res))));
  await post('Profiler.enable');
  await post('Profiler.start');
  return async () => {
    const { profile } = (await post('Profiler.stop')) as { profile: object };
    session.disconnect();
    const file = join(dir, `served-${++profiles}.cpuprofile`);
    writeFileSync(file, JSON.stringify(profile));
    return file;
  };
}

function serveStream(s: QuicStream, chunk: Buffer, onError: (e: Error) => void): void {
  let req = '';
  let started = false;
  const start = (): void => {
    if (started) return;
    const nl = req.indexOf('\n');
    if (nl < 0) return;
    started = true;
    const size = Number(req.slice(0, nl));
    if (!Number.isSafeInteger(size) || size < 0) {
      s.destroy(new Error(`bad request ${JSON.stringify(req.slice(0, 40))}`));
      return;
    }
    sendBytes(s, size, chunk).catch(onError);
  };
  s.on('data', (d: Buffer) => {
    if (!started) {
      req += d.toString('latin1');
      start();
    }
  });
  s.on('end', start);
  s.on('error', onError);
}

/** Idle timeout of the connections in the idle-connections benchmark: longer than any run. */
const IDLE_BENCH_TIMEOUT = 600_000;

async function server(args: string[]): Promise<void> {
  const datagram = intFlag(args, '--datagram', 0);
  const keepIdle = intFlag(args, '--keep-idle', 0);
  const config: ConnectionConfig = {
    alpn: ['qsr-bench'],
    certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
    privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
    ...(datagram ? { maxDatagramSize: datagram } : {}),
    ...(keepIdle ? { maxIdleTimeout: IDLE_BENCH_TIMEOUT } : {}),
  };
  const chunk = patternChunk();
  observeGc();
  const ep = await UdpEndpoint.open({ bind: [{ address: HOST, port: 0 }], server: config, maxConnections: keepIdle + 16 });
  const errors: string[] = [];
  let finished = false;
  const finish = async (why: string): Promise<void> => {
    if (finished) return;
    finished = true;
    await ep.close(0, 'bench server done', 1000);
    emit({ event: 'exit', role: 'server', why, errors, recvBufferBytes: ep.recvBufferSizes[0], ...usage() });
    process.exit(0);
  };
  let served = false;
  ep.on('connection', (c: QuicConnection) => {
    if (keepIdle) {
      // Every connection stays (the idle ones open no stream); each stream is served; the server runs until SIGTERM.
      c.on('stream', (s: QuicStream) => serveStream(s, chunk, (e) => errors.push(e.message)));
      return;
    }
    if (served) {
      c.close(0x1, 'bench server serves one connection');
      return;
    }
    served = true;
    c.on('stream', (s: QuicStream) => serveStream(s, chunk, (e) => errors.push(e.message)));
    c.on('close', () => void finish('connection closed'));
  });
  ep.on('error', (e: Error) => errors.push(e.message));
  process.on('SIGTERM', () => void finish('SIGTERM'));
  emit({ event: 'listening', port: ep.address().port, recvBufferBytes: ep.recvBufferSizes[0] });
}

// ---------------------------------------------------------------------------------------------------------------------
// Idle connections

const HANDSHAKES_AT_ONCE = 64;

async function idle(args: string[]): Promise<void> {
  const port = intFlag(args, '--port', 0);
  const count = intFlag(args, '--count', 0);
  const atOnce = Math.max(1, intFlag(args, '--at-once', HANDSHAKES_AT_ONCE));
  const ai = args.indexOf('--alpn');
  const alpn = ai >= 0 ? args[ai + 1] : 'qsr-bench';
  if (port === 0 || count === 0 || alpn === undefined || alpn === '') throw new Error('idle needs --port and --count (and a name after --alpn)');
  const config: ConnectionConfig = { alpn: [alpn], insecure: true, maxIdleTimeout: IDLE_BENCH_TIMEOUT };
  const ep = await UdpEndpoint.open({ maxConnections: count + 16 });
  const t0 = performance.now();
  const open: QuicConnection[] = [];
  let failed = 0;
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++;
      const c = ep.connect(config, { address: HOST, port });
      try {
        await c.ready;
        open.push(c);
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(atOnce, count) }, worker));
  const cpu = process.cpuUsage();
  emit({ event: 'idle_ready', count: open.length, failed, ms: performance.now() - t0, cpuS: (cpu.user + cpu.system) / 1e6 });
  process.once('SIGUSR2', () => {
    for (const c of open) c.close(alpn === 'h3' ? 0x100 : 0, 'bench: idle connections done');
    // Reported once every close was delivered, i.e. its CONNECTION_CLOSE datagram went to the socket (the driver sends
    // it before it delivers the close): a process stopped right after 'idle_closed' left connections open on the
    // server when a GC or a busy machine held back the last few hundred closes.
    const t1 = performance.now();
    const done = (): void => {
      const delivered = open.filter((c) => c.closeInfo !== null).length;
      if (delivered < open.length && performance.now() - t1 < 10_000) setTimeout(done, 10);
      else emit({ event: 'idle_closed', count: open.length, delivered, ms: performance.now() - t1 });
    };
    done();
  });
  await new Promise<void>((resolve) => process.once('SIGTERM', () => resolve()));
  emit({ event: 'exit', role: 'idle', ...usage() });
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------------------------------
// Client

async function client(args: string[]): Promise<void> {
  const port = intFlag(args, '--port', 0);
  const size = intFlag(args, '--size', 0);
  const datagram = intFlag(args, '--datagram', 0);
  const wantSha = args.includes('--sha');
  if (port === 0) throw new Error('client needs --port');
  const config: ConnectionConfig = {
    alpn: ['qsr-bench'],
    serverName: 'localhost',
    ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')),
    ...(datagram ? { maxDatagramSize: datagram } : {}),
  };
  const ep = await UdpEndpoint.open();
  const t0 = performance.now();
  const c = ep.connect(config, { address: HOST, port });
  await c.ready;
  const t1 = performance.now();
  const cpu1 = process.cpuUsage();
  const s = await c.openStream();
  const h = wantSha ? createHash('sha256') : null;
  let bytes = 0;
  s.on('data', (d: Buffer) => {
    bytes += d.length;
    h?.update(d);
  });
  const ended = once(s, 'end');
  s.end(`${size}\n`);
  await ended;
  const t2 = performance.now();
  const cpu2 = process.cpuUsage(cpu1);
  const stats = { ...c.conn.stats };
  const sha = h?.digest('hex');
  c.close(0, 'bench done');
  await ep.close(0, 'bench done', 1000);
  const seconds = (t2 - t1) / 1000;
  emit({
    event: 'exit',
    role: 'client',
    size,
    bytes,
    ok: bytes === size && (sha === undefined || sha === expectedSha256(size)),
    sha256: sha,
    handshakeMs: t1 - t0,
    transferSeconds: seconds,
    mbPerSec: size / 1e6 / seconds,
    transferCpu: (cpu2.user + cpu2.system) / 1e6,
    stats,
    ...usage(),
  });
  process.exit(0);
}

const [mode, ...rest] = process.argv.slice(2);
const main = mode === 'server' ? server : mode === 'client' ? client : mode === 'idle' ? idle : null;
if (main === null) {
  process.stderr.write('usage: quic-peer.js server [--datagram B] [--keep-idle N] | client --port P --size BYTES [--datagram B] [--sha] | idle --port P --count N\n');
  process.exit(2);
}
main(rest).catch((e: unknown) => {
  process.stderr.write(`quic-peer ${mode}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  emit({ event: 'error', role: mode, message: e instanceof Error ? e.message : String(e) });
  process.exit(1);
});
