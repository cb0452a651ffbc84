/**
 * `qsr get`: a curl-like HTTP/3 client. Every URL must be on one origin; one QUIC connection carries all requests,
 * sent at once and multiplexed, one request stream each (RFC 9114 §4.1). Bodies are counted and discarded, or saved
 * to a directory with -o; request bodies from `-d @FILE` are streamed from the file. Prints a table and a summary,
 * or a JSON document with --json. Exit code: 0 all ok, 1 any request failed (network error or status >= 400),
 * 2 usage error (thrown as UsageError).
 */
import { createReadStream, createWriteStream, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { performance } from 'node:perf_hooks';
import type { Http3Client } from '../h3/client.js';
import { checkField, type HeaderList } from '../h3/validate.js';
import { keyLogSink } from '../obs/keylog.js';
import { qlogTracer } from '../obs/qlog.js';
import type { TraceFactory } from '../quic/trace.js';
import { loadPemChain } from '../quic/tls/pem.js';
import type { ConnectionConfig } from '../quic/connection-types.js';
import { UsageError, parseSuites } from './args.js';

export interface GetOptions {
  repeat?: number;
  request?: string;
  data?: string;
  header?: string[];
  outputDir?: string;
  insecure?: boolean;
  ca?: string;
  keylog?: string;
  qlog?: string;
  serverName?: string;
  json?: boolean;
  /** Whole run (connect + every request), ms. */
  timeout?: number;
  /** Give up on a QUIC handshake that has not completed after this long, ms (default 10 000). */
  handshakeTimeout?: number;
  /** TLS 1.3 suites to offer, comma-separated (default: all three). */
  ciphers?: string;
  /** Our initial connection receive window (initial_max_data), bytes. */
  maxData?: number;
  /** Our initial receive window of each request stream (initial_max_stream_data_bidi_local), bytes. */
  maxStreamData?: number;
}

export interface PlannedRequest {
  url: string;
  /** :path as sent (path and query). */
  path: string;
  /** Repeat index 0..n-1. */
  k: number;
  /** Where the body is saved (with -o), else null. */
  file: string | null;
}

export interface GetPlan {
  origin: string;
  /** The origin's host without brackets. */
  host: string;
  method: string;
  headers: HeaderList;
  body: { file: string; size: number } | { text: string } | null;
  requests: PlannedRequest[];
  outputDir: string | null;
  ca: Buffer[] | undefined;
  insecure: boolean;
  serverName: string | undefined;
  timeoutMs: number;
  handshakeTimeoutMs: number;
  /** Transport settings from --ciphers / --max-data / --max-stream-data. */
  quic: Partial<ConnectionConfig>;
}

export interface GetResult {
  url: string;
  path: string;
  method: string;
  streamId: number | null;
  status: number | null;
  bytes: number;
  ms: number;
  ok: boolean;
  /** Response header fields (repeated names joined with ', '). */
  headers?: Record<string, string>;
  file?: string;
  error?: string;
}

const METHOD_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const MAX_REQUESTS = 100_000;

/** Name for a saved body: the last path segment (decoded, made safe) or index.html, `.k` for repeats, unique. */
export function outputName(pathname: string, k: number, used: Set<string>): string {
  const last = pathname.slice(pathname.lastIndexOf('/') + 1);
  let base: string;
  try {
    base = decodeURIComponent(last);
  } catch {
    base = last;
  }
  base = base.replace(/[/\\\0]/g, '_');
  if (base === '' || base === '.' || base === '..') base = 'index.html';
  let name = k > 0 ? `${base}.${k}` : base;
  for (let i = 1; used.has(name); i++) name = `${k > 0 ? `${base}.${k}` : base}.dup${i}`;
  used.add(name);
  return name;
}

function parseHeader(h: string): [string, string] {
  const i = h.indexOf(':', 1);
  if (i <= 0) throw new UsageError(`-H: expected 'name: value', got '${h}'`);
  const name = h.slice(0, i).trim().toLowerCase();
  const value = h.slice(i + 1).trim();
  if (name.startsWith(':')) throw new UsageError(`-H: pseudo-header '${name}' cannot be set (use the URL and -X)`);
  try {
    checkField(name, value);
  } catch (e) {
    throw new UsageError(`-H '${h}': ${(e as Error).message.replace(/^.*malformed message: /, '')}`);
  }
  return [name, value];
}

/** Validates the command line into a plan; throws UsageError naming the flag or URL. No network. */
export function planGet(urls: string[], o: GetOptions): GetPlan {
  if (urls.length === 0) throw new UsageError('give at least one URL');
  let origin = '';
  let firstUrl = '';
  const parsed: URL[] = [];
  for (const u of urls) {
    let url: URL;
    try {
      url = new URL(u);
    } catch {
      throw new UsageError(`URL '${u}' is not a valid URL`);
    }
    if (url.protocol !== 'https:') throw new UsageError(`URL '${u}': only https:// URLs are supported`);
    if (url.username || url.password) throw new UsageError(`URL '${u}': user information in URLs is not supported`);
    if (!origin) {
      origin = url.origin;
      firstUrl = u;
    } else if (url.origin !== origin) {
      throw new UsageError(`URL '${u}' is not on the same origin as '${firstUrl}' (${origin}); one connection serves one origin`);
    }
    parsed.push(url);
  }

  const n = o.repeat ?? 1;
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`-n: expected a whole number >= 1, got '${n}'`);
  if (n * urls.length > MAX_REQUESTS) throw new UsageError(`-n: ${n} x ${urls.length} URLs is more than ${MAX_REQUESTS} requests`);

  if (o.insecure && o.ca) throw new UsageError('--insecure and --ca exclude each other');
  let ca: Buffer[] | undefined;
  if (o.ca) {
    let pem: string;
    try {
      pem = readFileSync(o.ca, 'utf8');
    } catch (e) {
      throw new UsageError(`--ca: cannot read '${o.ca}': ${(e as Error).message}`);
    }
    try {
      ca = loadPemChain(pem);
    } catch (e) {
      throw new UsageError(`--ca: '${o.ca}': ${(e as Error).message}`);
    }
  }
  if (o.serverName !== undefined && !/^[A-Za-z0-9.\-:[\]]+$/.test(o.serverName)) throw new UsageError(`--server-name: '${o.serverName}' is not a host name or IP address`);

  let body: GetPlan['body'] = null;
  if (o.data !== undefined) {
    if (o.data.startsWith('@')) {
      const file = o.data.slice(1);
      if (!file) throw new UsageError("-d: '@' needs a file name (-d @FILE)");
      let size: number;
      try {
        const st = statSync(file);
        if (!st.isFile()) throw new Error('not a regular file');
        size = st.size;
      } catch (e) {
        throw new UsageError(`-d: cannot read '${file}': ${(e as Error).message}`);
      }
      body = { file, size };
    } else {
      body = { text: o.data };
    }
  }

  const method = o.request ?? (body ? 'POST' : 'GET');
  if (!METHOD_RE.test(method)) throw new UsageError(`-X: '${method}' is not a valid HTTP method`);
  if (method === 'CONNECT') throw new UsageError('-X: CONNECT is not supported');

  const headers: HeaderList = (o.header ?? []).map(parseHeader);
  if (body && !headers.some(([h]) => h === 'content-length')) {
    headers.push(['content-length', String('file' in body ? body.size : Buffer.byteLength(body.text))]);
  }

  let outputDir: string | null = null;
  if (o.outputDir !== undefined) {
    outputDir = o.outputDir;
    try {
      mkdirSync(outputDir, { recursive: true });
      if (!statSync(outputDir).isDirectory()) throw new Error('not a directory');
    } catch (e) {
      throw new UsageError(`-o: cannot use '${outputDir}' as a directory: ${(e as Error).message}`);
    }
  }

  const quic: Partial<ConnectionConfig> = {};
  const suites = parseSuites('--ciphers', o.ciphers);
  if (suites) quic.cipherSuites = suites;
  if (o.maxData !== undefined) quic.initialMaxData = o.maxData;
  if (o.maxStreamData !== undefined) quic.initialMaxStreamDataBidiLocal = o.maxStreamData;

  const used = new Set<string>();
  const requests: PlannedRequest[] = [];
  for (let i = 0; i < parsed.length; i++) {
    const url = parsed[i];
    for (let k = 0; k < n; k++) {
      requests.push({
        url: urls[i],
        path: url.pathname + url.search,
        k,
        file: outputDir !== null ? join(outputDir, outputName(url.pathname, k, used)) : null,
      });
    }
  }
  return {
    origin,
    host: parsed[0].hostname.replace(/^\[|\]$/g, ''),
    method,
    headers,
    body,
    requests,
    outputDir,
    ca,
    insecure: !!o.insecure,
    serverName: o.serverName,
    timeoutMs: o.timeout ?? 30_000,
    handshakeTimeoutMs: o.handshakeTimeout ?? 10_000,
    quic,
  };
}

/** Counts bytes passing through. */
function counter(onBytes: (n: number) => void): Transform {
  return new Transform({
    transform(chunk: Buffer, _enc, cb) {
      onBytes(chunk.length);
      cb(null, chunk);
    },
  });
}

/** Counts a response body's bytes as it is read; resolves at its end, rejects if it fails or closes early. */
function consume(body: Readable, onBytes: (n: number) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    body.on('data', (chunk: Buffer) => onBytes(chunk.length));
    body.once('end', resolve);
    body.once('error', reject);
    body.once('close', () => {
      if (!body.readableEnded) reject(new Error('response body closed before its end'));
    });
  });
}

/**
 * Runs the plan over one connection. Resolves with the per-request results and the wall time. The timeout covers the
 * whole run: when it fires the connection is closed, which fails every request still open (with the timeout as
 * its error). One timer for all requests, not a race per request: thousands of reactions on one long-lived promise
 * were most of the client's cost per small request.
 */
export async function executeGet(
  plan: GetPlan,
  keyLog?: (line: string) => void,
  trace?: TraceFactory,
): Promise<{ results: GetResult[]; wallMs: number; connectError?: string }> {
  const started = performance.now();
  const timeoutMessage = `timed out after ${plan.timeoutMs} ms`;
  let expired = false;
  let onExpire: () => void = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  const timedOut = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      expired = true;
      reject(new Error(timeoutMessage));
      onExpire();
    }, plan.timeoutMs);
  });
  timedOut.catch(() => {});
  const fail = (r: PlannedRequest, error: string, streamId: number | null = null, status: number | null = null, bytes = 0, ms = 0): GetResult => ({
    url: r.url,
    path: r.path,
    method: plan.method,
    streamId,
    status,
    bytes,
    ms,
    ok: false,
    error,
  });

  let client: Http3Client;
  try {
    const { Http3Client: Client } = await import('../h3/client.js');
    client = await Promise.race([
      // The server name defaults to the URL host even when it is an IP literal, so the certificate's IP SANs are
      // checked (no SNI is sent for an IP).
      Client.connect(plan.origin + '/', {
        ca: plan.ca,
        insecure: plan.insecure,
        serverName: plan.serverName ?? plan.host,
        keyLog,
        trace,
        handshakeTimeout: plan.handshakeTimeoutMs,
        quic: plan.quic,
      }),
      timedOut,
    ]);
  } catch (e) {
    clearTimeout(timer);
    const msg = `connect: ${(e as Error).message}`;
    return { results: plan.requests.map((r) => fail(r, msg)), wallMs: performance.now() - started, connectError: msg };
  }
  onExpire = () => void client.close().catch(() => undefined);

  const one = async (r: PlannedRequest): Promise<GetResult> => {
    const t0 = performance.now();
    let streamId: number | null = null;
    let status: number | null = null;
    let headers: Record<string, string> | undefined;
    let bytes = 0;
    let body: Readable | undefined;
    try {
      const reqBody = plan.body === null ? undefined : 'file' in plan.body ? createReadStream(plan.body.file) : plan.body.text;
      if (expired) throw new Error(timeoutMessage);
      const res = await client.request(r.path, { method: plan.method, headers: plan.headers, body: reqBody });
      streamId = res.streamId;
      status = res.status;
      headers = {};
      for (const [n, v] of res.headers) headers[n] = n in headers ? `${headers[n]}, ${v}` : v;
      body = res.body;
      const save = r.file !== null && res.status < 400;
      if (save) await pipeline(res.body, counter((n) => (bytes += n)), createWriteStream(r.file as string));
      else await consume(res.body, (n) => (bytes += n));
      const ms = performance.now() - t0;
      if (res.status >= 400) return { ...fail(r, `HTTP ${res.status}`, streamId, status, bytes, ms), headers };
      return { url: r.url, path: r.path, method: plan.method, streamId, status, bytes, ms, ok: true, headers, ...(save ? { file: r.file as string } : {}) };
    } catch (e) {
      body?.destroy();
      const msg = expired ? timeoutMessage : (e as Error).message;
      return { ...fail(r, msg, streamId, status, bytes, performance.now() - t0), ...(headers ? { headers } : {}) };
    }
  };

  const results = await Promise.all(plan.requests.map(one));
  const wallMs = performance.now() - started;
  clearTimeout(timer);
  await Promise.race([client.close(), new Promise((r) => setTimeout(r, 2000).unref())]).catch(() => {});
  return { results, wallMs };
}

export interface GetSummary {
  requests: number;
  ok: number;
  failed: number;
  bytes: number;
  wallMs: number;
  /** Body bytes per second in MB/s (10^6 bytes). */
  mbPerSec: number;
}

export function summarize(results: GetResult[], wallMs: number): GetSummary {
  const ok = results.filter((r) => r.ok).length;
  const bytes = results.reduce((s, r) => s + r.bytes, 0);
  return { requests: results.length, ok, failed: results.length - ok, bytes, wallMs, mbPerSec: wallMs > 0 ? bytes / 1e6 / (wallMs / 1000) : 0 };
}

/** The human-readable table plus the summary line. */
export function formatTable(results: GetResult[], s: GetSummary): string {
  const rows = [
    ['stream', 'method', 'path', 'status', 'bytes', 'ms', ''],
    ...results.map((r) => [
      r.streamId === null ? '-' : String(r.streamId),
      r.method,
      r.path,
      r.status === null ? '-' : String(r.status),
      String(r.bytes),
      r.ms.toFixed(1),
      r.error ? `error: ${r.error}` : (r.file ?? ''),
    ]),
  ];
  const widths = rows[0].map((_, c) => Math.max(...rows.map((row) => row[c].length)));
  const right = new Set([0, 3, 4, 5]);
  const lines = rows.map((row) =>
    row
      .map((cell, c) => (c === row.length - 1 ? cell : right.has(c) ? cell.padStart(widths[c]) : cell.padEnd(widths[c])))
      .join('  ')
      .trimEnd(),
  );
  lines.push(
    `${s.requests} requests, ${s.ok} ok, ${s.failed} failed, ${s.bytes} bytes in ${(s.wallMs / 1000).toFixed(3)} s, ${s.mbPerSec.toFixed(2)} MB/s`,
  );
  return lines.join('\n') + '\n';
}

/** `qsr get`: returns the exit code (0 or 1); usage errors are thrown as UsageError. */
export async function runGet(urls: string[], o: GetOptions): Promise<number> {
  const plan = planGet(urls, o);
  const { results, wallMs, connectError } = await executeGet(plan, keyLogSink(o.keylog), qlogTracer(o.qlog));
  const summary = summarize(results, wallMs);
  if (o.json) {
    process.stdout.write(JSON.stringify({ origin: plan.origin, method: plan.method, ...(connectError ? { error: connectError } : {}), requests: results, summary }, null, 2) + '\n');
  } else {
    if (connectError) process.stderr.write(`qsr get: cannot connect to ${plan.origin}: ${connectError.replace(/^connect: /, '')}\n`);
    process.stdout.write(formatTable(results, summary));
  }
  return summary.failed > 0 ? 1 : 0;
}
