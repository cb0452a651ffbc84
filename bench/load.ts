/**
 * Load generator run as a child process by the h3 and router suites, so that client work never shares an event
 * loop with the bench itself. One origin, one client:
 *   h3: our Http3Client (RFC 9114), ONE QUIC connection, requests multiplexed on it.
 *   h2: node:http2 (RFC 9113), ONE TCP connection, streams multiplexed on it.
 *   h1: undici Pool, HTTP/1.1 keep-alive, `--concurrency` connections (one request in flight on each).
 *
 *   node dist/bench/load.js --proto h3|h2|h1 --url https://127.0.0.1:P/path -n N --concurrency C
 *        [--method GET|POST] [--body-file F] [--ca PEM] [--server-name NAME] [--warmup N] [--timeout MS]
 *
 * Each request is timed from just before it is sent to its last response byte. With --body-file, every request
 * streams that file as its body (content-length set). Prints ONE JSON line {"event":"exit",...}: counts, status
 * histogram, wall time of the measured requests (connect and warm-up excluded), requests/s, MB/s up and down,
 * p50/p90/p99/max latency in ms, and this process's CPU seconds and peak RSS. A measurement tool, not a test.
 */
import { createReadStream, readFileSync, statSync } from 'node:fs';
import { connect as h2connect, constants as h2c, type ClientHttp2Session } from 'node:http2';
import { performance } from 'node:perf_hooks';
import type { Readable } from 'node:stream';
import { Pool } from 'undici';
import { Http3Client } from '../src/h3/client.js';
import { loadPemChain } from '../src/quic/tls/pem.js';

interface Opts {
  proto: 'h3' | 'h2' | 'h1';
  url: URL;
  n: number;
  concurrency: number;
  method: string;
  bodyFile: string | null;
  ca: string | null;
  serverName: string;
  warmup: number;
  timeoutMs: number;
}

interface One {
  status: number;
  bytesIn: number;
  /** Response body, kept only when it is short (for checking an upload's JSON answer). */
  text?: string;
}

/** Sends one request and reads the whole response. */
type Send = () => Promise<One>;

function parse(argv: string[]): Opts {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const int = (name: string, dflt: number): number => {
    const v = get(name);
    const n = v === undefined ? dflt : Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`${name} needs a non-negative integer`);
    return n;
  };
  const proto = get('--proto');
  if (proto !== 'h3' && proto !== 'h2' && proto !== 'h1') throw new Error('--proto h3|h2|h1');
  const url = get('--url');
  if (url === undefined) throw new Error('--url is required');
  const u = new URL(url);
  if (u.hostname !== '127.0.0.1' && u.hostname !== 'localhost' && u.hostname !== '[::1]') throw new Error(`loopback only, not ${u.hostname}`);
  return {
    proto,
    url: u,
    n: Math.max(1, int('-n', 100)),
    concurrency: Math.max(1, int('--concurrency', 1)),
    method: get('--method') ?? 'GET',
    bodyFile: get('--body-file') ?? null,
    ca: get('--ca') ?? null,
    serverName: get('--server-name') ?? 'localhost',
    warmup: int('--warmup', 0),
    timeoutMs: Math.max(1000, int('--timeout', 60_000)),
  };
}

const SHORT = 4096;

async function readAll(body: AsyncIterable<Buffer | string>): Promise<{ bytes: number; text?: string }> {
  let bytes = 0;
  const keep: Buffer[] = [];
  for await (const c of body) {
    const b = typeof c === 'string' ? Buffer.from(c) : c;
    bytes += b.length;
    if (bytes <= SHORT) keep.push(b);
  }
  return bytes <= SHORT ? { bytes, text: Buffer.concat(keep).toString('utf8') } : { bytes };
}

function bodyStream(o: Opts): { body?: Readable; headers: Record<string, string> } {
  if (o.bodyFile === null) return { headers: {} };
  return { body: createReadStream(o.bodyFile, { highWaterMark: 256 * 1024 }), headers: { 'content-length': String(statSync(o.bodyFile).size) } };
}

async function setup(o: Opts): Promise<{ send: Send; close: () => Promise<void> }> {
  const ca = o.ca !== null ? readFileSync(o.ca) : undefined;
  const path = o.url.pathname + o.url.search;
  if (o.proto === 'h3') {
    const client = await Http3Client.connect(o.url.href, { ca: ca ? loadPemChain(ca.toString('utf8')) : undefined, serverName: o.serverName });
    const send: Send = async () => {
      const b = bodyStream(o);
      const res = await client.request(path, { method: o.method, headers: b.headers, body: b.body });
      const r = await readAll(res.body);
      return { status: res.status, bytesIn: r.bytes, text: r.text };
    };
    return { send, close: () => client.close() };
  }
  if (o.proto === 'h2') {
    const session: ClientHttp2Session = h2connect(o.url.origin, { ca, servername: o.serverName, peerMaxConcurrentStreams: 1000 });
    session.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      session.once('connect', () => resolve());
      session.once('error', reject);
    });
    const send: Send = () =>
      new Promise<One>((resolve, reject) => {
        const b = bodyStream(o);
        const req = session.request({ [h2c.HTTP2_HEADER_METHOD]: o.method, [h2c.HTTP2_HEADER_PATH]: path, ...b.headers }, { endStream: b.body === undefined });
        let status = 0;
        req.on('response', (h) => (status = Number(h[h2c.HTTP2_HEADER_STATUS])));
        req.on('error', reject);
        if (b.body) b.body.pipe(req);
        readAll(req).then((r) => resolve({ status, bytesIn: r.bytes, text: r.text }), reject);
      });
    return { send, close: () => new Promise<void>((r) => session.close(() => r())) };
  }
  const pool = new Pool(o.url.origin, { connections: o.concurrency, pipelining: 1, connect: { ca, servername: o.serverName } });
  const send: Send = async () => {
    const b = bodyStream(o);
    const res = await pool.request({ path, method: o.method as 'GET', headers: b.headers, body: b.body });
    const r = await readAll(res.body);
    return { status: res.statusCode, bytesIn: r.bytes, text: r.text };
  };
  return { send, close: () => pool.close() };
}

/** Runs `n` requests with at most `c` in flight; returns per-request latencies (ms) and results. */
async function drive(send: Send, n: number, c: number): Promise<{ ms: number[]; res: (One | Error)[] }> {
  const ms = new Array<number>(n).fill(NaN);
  const res = new Array<One | Error>(n);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < n; i = next++) {
      const t0 = performance.now();
      try {
        res[i] = await send();
      } catch (e) {
        res[i] = e instanceof Error ? e : new Error(String(e));
      }
      ms[i] = performance.now() - t0;
    }
  };
  await Promise.all(Array.from({ length: Math.min(c, n) }, worker));
  return { ms, res };
}

function pct(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1))]!;
}

async function main(): Promise<void> {
  const o = parse(process.argv.slice(2));
  const hard = setTimeout(() => {
    process.stdout.write(JSON.stringify({ event: 'exit', ok: false, error: `timed out after ${o.timeoutMs} ms` }) + '\n');
    process.exit(1);
  }, o.timeoutMs);
  const t0 = performance.now();
  const { send, close } = await setup(o);
  const connectMs = performance.now() - t0;
  if (o.warmup > 0) await drive(send, o.warmup, o.concurrency);
  const cpu0 = process.cpuUsage();
  const t1 = performance.now();
  const { ms, res } = await drive(send, o.n, o.concurrency);
  const wallMs = performance.now() - t1;
  const cpu = process.cpuUsage(cpu0);
  const statuses: Record<string, number> = {};
  let failed = 0;
  let bytesIn = 0;
  let firstError: string | undefined;
  let lastText: string | undefined;
  for (const r of res) {
    if (r instanceof Error) {
      failed++;
      firstError ??= r.message;
      statuses.error = (statuses.error ?? 0) + 1;
      continue;
    }
    statuses[r.status] = (statuses[r.status] ?? 0) + 1;
    if (r.status >= 400) {
      failed++;
      firstError ??= `HTTP ${r.status}`;
    }
    bytesIn += r.bytesIn;
    if (r.text !== undefined) lastText = r.text;
  }
  const bytesOut = o.bodyFile !== null ? statSync(o.bodyFile).size * o.n : 0;
  const sorted = ms.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  const secs = wallMs / 1000;
  await Promise.race([close(), new Promise((r) => setTimeout(r, 2000).unref())]).catch(() => {});
  clearTimeout(hard);
  const ru = process.resourceUsage();
  process.stdout.write(
    JSON.stringify({
      event: 'exit',
      proto: o.proto,
      ok: failed === 0,
      requests: o.n,
      concurrency: o.concurrency,
      failed,
      statuses,
      firstError,
      lastBody: lastText !== undefined && o.bodyFile !== null ? lastText.slice(0, 500) : undefined,
      connectMs,
      wallMs,
      rps: o.n / secs,
      mbPerSecIn: bytesIn / 1e6 / secs,
      mbPerSecOut: bytesOut / 1e6 / secs,
      p50: pct(sorted, 50),
      p90: pct(sorted, 90),
      p99: pct(sorted, 99),
      max: sorted.at(-1) ?? null,
      cpu: (cpu.user + cpu.system) / 1e6,
      maxRssMB: (ru.maxRSS * 1024) / 1e6,
    }) + '\n',
  );
  process.exit(0);
}

main().catch((e: unknown) => {
  process.stdout.write(JSON.stringify({ event: 'exit', ok: false, error: e instanceof Error ? e.message : String(e) }) + '\n');
  process.exit(1);
});
