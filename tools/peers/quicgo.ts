// quic-go (Go, Debian's golang-github-lucas-clemente-quic-go-dev 0.29) as an interop peer: our own small HTTP/3
// client and server in tools/peers/quicgo/{client,server}/main.go, built offline in GOPATH mode, and the adapters the
// interop runner, its tests and the benchmarks use to drive them.
//
//   buildQuicGo()              builds both programs once into a cache dir under os.tmpdir() keyed by a hash of the Go
//                              sources (reused across runs and processes); { error } when go / quic-go are missing.
//   runQuicGoClient(opts)      runs the client to completion (bounded) and parses its JSON report.
//   startQuicGoServer(opts)    starts the server and waits for its {"listening": "ADDR:PORT"} line.
//
// Everything is loopback only; every process is bounded in time and only ever signalled through its own PID.

import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assertLoopback, findProgram, jsonLines, spawnBounded, waitFor, type Child, type ExitInfo } from '../process.js';
import { missingPrograms } from './packages.js';

/** Where Debian installs Go library sources (GOPATH for the build). */
export const QUICGO_GOPATH = '/usr/share/gocode';
/** The programs needed to build the quic-go peers (names for missingPrograms). */
export const QUICGO_REQUIREMENTS = ['go', 'quic-go'] as const;

const here = dirname(fileURLToPath(import.meta.url));

/** tools/peers/quicgo in the source tree (the .go files are not compiled: from dist/tools/peers or from tools/peers itself). */
export function quicGoSourceDir(): string | null {
  for (const c of [join(here, 'quicgo'), join(here, '../../../tools/peers/quicgo')]) {
    if (existsSync(join(c, 'client', 'main.go')) && existsSync(join(c, 'server', 'main.go'))) return resolve(c);
  }
  return null;
}

export interface QuicGoBinaries {
  client: string;
  server: string;
}

let building: Promise<QuicGoBinaries | { error: string }> | null = null;

/**
 * Build (or reuse) the quic-go client and server. The result is cached per process, and on disk in
 * os.tmpdir()/qsr-quicgo-<hash of the Go sources and the quic-go version>, so only the first run pays the ~30 s cold
 * build. Concurrent builds (parallel test files) are safe: each writes to a temporary name and renames.
 */
export function buildQuicGo(): Promise<QuicGoBinaries | { error: string }> {
  building ??= doBuild();
  return building;
}

async function doBuild(): Promise<QuicGoBinaries | { error: string }> {
  const m = missingPrograms(QUICGO_REQUIREMENTS);
  if (m.missing.length > 0) return { error: `quic-go peer cannot be built: ${m.hint}` };
  const go = findProgram('go')!;
  const src = quicGoSourceDir();
  if (src === null) return { error: 'tools/peers/quicgo/{client,server}/main.go not found' };

  const h = createHash('sha256');
  for (const p of ['client/main.go', 'server/main.go']) h.update(p).update(readFileSync(join(src, p)));
  // the quic-go version in use (Debian's go.mod of the package) and the go binary
  const quicGoMod = join(QUICGO_GOPATH, 'src/github.com/lucas-clemente/quic-go/go.mod');
  h.update(existsSync(quicGoMod) ? readFileSync(quicGoMod) : '').update(go);
  const key = h.digest('hex').slice(0, 16);
  const dir = join(tmpdir(), `qsr-quicgo-${key}`);
  const out: QuicGoBinaries = { client: join(dir, 'quicgo-client'), server: join(dir, 'quicgo-server') };
  if (existsSync(out.client) && existsSync(out.server)) return out;

  mkdirSync(dir, { recursive: true });
  const env = {
    GO111MODULE: 'off',
    GOPATH: QUICGO_GOPATH,
    GOFLAGS: '',
    GOPROXY: 'off',
    CGO_ENABLED: '0',
    // Shared by all keys: a rebuild after a source change takes a second instead of a cold build.
    GOCACHE: join(tmpdir(), 'qsr-quicgo-gocache'),
  };
  for (const [name, bin] of [['client', out.client], ['server', out.server]] as const) {
    const tmp = `${bin}.tmp-${process.pid}`;
    const child = spawnBounded({
      name: `go-build-${name}`,
      cmd: go,
      args: ['build', '-trimpath', '-o', tmp, '.'],
      cwd: join(src, name),
      workDir: dir,
      env,
      timeoutMs: 240_000,
    });
    const exit = await child.exited;
    if (exit.code !== 0 || !existsSync(tmp)) {
      rmSync(tmp, { force: true });
      const why = exit.timedOut ? 'timed out after 240 s' : exit.spawnError ?? `exit ${exit.code ?? exit.signal}`;
      return { error: `go build of tools/peers/quicgo/${name} failed (${why}): ${child.output().slice(-2000)}` };
    }
    renameSync(tmp, bin);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------
// Options shared by both sides

/** quic.Config receive windows, in bytes. Given only one of a pair, the program keeps initial <= max. */
export interface QuicGoWindows {
  /** InitialConnectionReceiveWindow (quic-go default 768 KiB, auto-tuned upwards). */
  initialConn?: number;
  /** MaxConnectionReceiveWindow (default 15 MiB). Set it equal to initialConn for a window that never grows. */
  maxConn?: number;
  /** InitialStreamReceiveWindow (default 512 KiB). */
  initialStream?: number;
  /** MaxStreamReceiveWindow (default 6 MiB). */
  maxStream?: number;
}

function windowArgs(w: QuicGoWindows | undefined): string[] {
  if (w === undefined) return [];
  const a: string[] = [];
  const add = (flag: string, v: number | undefined): void => {
    if (v === undefined) return;
    if (!Number.isSafeInteger(v) || v <= 0) throw new Error(`quic-go window ${flag}: ${v} is not a positive integer`);
    a.push(`-${flag}`, String(v));
  };
  add('initial-conn-window', w.initialConn);
  add('max-conn-window', w.maxConn);
  add('initial-stream-window', w.initialStream);
  add('max-stream-window', w.maxStream);
  return a;
}

const goDuration = (ms: number): string => `${Math.max(1, Math.round(ms))}ms`;

// ---------------------------------------------------------------------------------------------------------------------
// Client

export interface QuicGoClientOptions {
  /** https URLs on one loopback origin; requests cycle through them. */
  urls: string[];
  /** -n: total requests (default one per URL). */
  requests?: number;
  /** -c: requests in flight at a time (default 10). */
  concurrency?: number;
  /** -X (default GET, or POST with bodyFile). */
  method?: string;
  /** -d: each request streams this file as its body, with content-length. */
  bodyFile?: string;
  /** Extra request headers. */
  headers?: Record<string, string>;
  /** -ca: trust this CA (PEM). Exactly one of caFile / insecure. */
  caFile?: string;
  insecure?: boolean;
  /** SNI and the verified name (default: the URL host). */
  serverName?: string;
  /** NSS key log written by the client. */
  keylogFile?: string;
  windows?: QuicGoWindows;
  /** The client's own limit for the whole run (-timeout), default 60 s; the process is killed 10 s after it. */
  timeoutMs?: number;
  /** QUIC handshake idle timeout (default 10 s). */
  handshakeTimeoutMs?: number;
  /** Put the first N bytes of each response body into its result ("body"): for small JSON answers. */
  bodyPreview?: number;
  /** Extra environment, e.g. { QUIC_GO_LOG_LEVEL: 'debug' }. */
  env?: Record<string, string>;
  workDir: string;
  /** Log file name prefix in workDir (default quicgo-client). */
  name?: string;
  /** A binary from buildQuicGo(); built (cached) when omitted. */
  bin?: string;
}

/** One request in the client's report. */
export interface QuicGoRequestResult {
  /** Path and query, e.g. "/bytes?n=5". */
  path: string;
  /** 0 when no response arrived. */
  status: number;
  bytes: number;
  /** Request body bytes handed to the stream (uploads). */
  sent?: number;
  /** sha256 (hex) of the response body as received. */
  sha256: string;
  ms: number;
  error?: string;
  /** The first bodyPreview bytes, when asked for. */
  body?: string;
}

export interface QuicGoClientReport {
  requests: QuicGoRequestResult[];
  totals: {
    requests: number;
    ok: number;
    failed: number;
    /** Response body bytes received. */
    bytes: number;
    /** Request body bytes sent. */
    bytesSent: number;
    /** From dialling to the handshake's completion (0: it never completed). */
    handshakeMs: number;
    wallMs: number;
    /** (bytes + bytesSent) / wall time, 10^6 B/s. */
    mbPerSec: number;
  };
  alpn?: string;
  /** Go's name of the negotiated TLS 1.3 suite, e.g. "TLS_AES_128_GCM_SHA256". */
  cipher?: string;
  /** Set when anything failed: the first failing request, a timeout, more than one connection. */
  error?: string;
}

export interface QuicGoClientRun {
  /** Exit 0, a report, and no error in it: every request got a status < 400 and its whole body. */
  ok: boolean;
  /** Why not ok (build failure, hard timeout, no JSON, the report's own error). */
  error?: string;
  report?: QuicGoClientReport;
  exit?: ExitInfo;
  stderr: string;
  child?: Child;
}

export function quicGoClientArgs(o: QuicGoClientOptions): string[] {
  for (const u of o.urls) {
    if (!/^https:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/|$)/.test(u)) throw new Error(`refusing non-loopback URL ${u}`);
  }
  if (o.urls.length === 0) throw new Error('quic-go client: no URL');
  const a: string[] = [];
  if (o.requests !== undefined) a.push('-n', String(o.requests));
  if (o.concurrency !== undefined) a.push('-c', String(o.concurrency));
  if (o.method !== undefined) a.push('-X', o.method);
  if (o.bodyFile !== undefined) a.push('-d', o.bodyFile);
  for (const [k, v] of Object.entries(o.headers ?? {})) a.push('-H', `${k}: ${v}`);
  if (o.caFile !== undefined) a.push('-ca', o.caFile);
  if (o.insecure === true) a.push('-insecure');
  if (o.serverName !== undefined) a.push('-server-name', o.serverName);
  if (o.keylogFile !== undefined) a.push('-keylog', o.keylogFile);
  a.push('-timeout', goDuration(o.timeoutMs ?? 60_000));
  if (o.handshakeTimeoutMs !== undefined) a.push('-handshake-timeout', goDuration(o.handshakeTimeoutMs));
  if (o.bodyPreview !== undefined) a.push('-body-preview', String(o.bodyPreview));
  a.push(...windowArgs(o.windows));
  a.push(...o.urls);
  return a;
}

/** The client's stdout parsed, or an Error saying why it is not a report. */
export function parseQuicGoReport(stdout: string): QuicGoClientReport | Error {
  const text = stdout.trim();
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    return new Error(`quic-go client output is not JSON (${(e as Error).message}): ${text.slice(0, 300)}`);
  }
  if (typeof v !== 'object' || v === null || !Array.isArray((v as { requests?: unknown }).requests) || typeof (v as { totals?: unknown }).totals !== 'object') {
    return new Error(`quic-go client output has no requests/totals: ${text.slice(0, 300)}`);
  }
  return v as QuicGoClientReport;
}

/** Run the quic-go client to completion (bounded: its -timeout plus 10 s) and parse its report. */
export async function runQuicGoClient(o: QuicGoClientOptions): Promise<QuicGoClientRun> {
  let bin = o.bin;
  if (bin === undefined) {
    const b = await buildQuicGo();
    if ('error' in b) return { ok: false, error: b.error, stderr: '' };
    bin = b.client;
  }
  const args = quicGoClientArgs(o);
  const child = spawnBounded({
    name: o.name ?? 'quicgo-client',
    cmd: bin,
    args,
    workDir: o.workDir,
    env: o.env,
    timeoutMs: (o.timeoutMs ?? 60_000) + 10_000,
  });
  const exit = await child.exited;
  const stderr = child.stderr();
  const parsed = parseQuicGoReport(child.stdout());
  const report = parsed instanceof Error ? undefined : parsed;
  let error: string | undefined;
  if (exit.spawnError !== undefined) error = `quic-go client did not start: ${exit.spawnError}`;
  else if (exit.timedOut) error = `quic-go client hit the hard timeout (${(o.timeoutMs ?? 60_000) + 10_000} ms) and was killed`;
  else if (parsed instanceof Error) error = `${parsed.message}; exit ${exit.code ?? exit.signal}; stderr: ${stderr.slice(-800)}`;
  else if (parsed.error !== undefined) error = parsed.error;
  else if (exit.code !== 0) error = `quic-go client exited ${exit.code ?? exit.signal}: ${stderr.slice(-800)}`;
  return { ok: error === undefined, error, report, exit, stderr, child };
}

// ---------------------------------------------------------------------------------------------------------------------
// Server

export interface QuicGoServerOptions {
  /** Loopback address (default 127.0.0.1). */
  addr?: string;
  /** UDP port; 0 (default) lets the server pick a free one and report it. */
  port?: number;
  certFile: string;
  keyFile: string;
  /** Serve files from this directory (GET/HEAD). /bytes and /upload work without it. */
  dir?: string;
  keylogFile?: string;
  windows?: QuicGoWindows;
  /** Concurrent bidirectional streams a client may open (quic-go default 100). */
  maxStreams?: number;
  /** The server stops by itself after this long (default 300 s); the process is killed 10 s later. */
  maxTimeMs?: number;
  idleTimeoutMs?: number;
  /** No access log on stderr. */
  quiet?: boolean;
  env?: Record<string, string>;
  workDir: string;
  name?: string;
  bin?: string;
}

/** One line of the server's access log (stderr, JSON lines). */
export interface QuicGoAccessLine {
  method: string;
  path: string;
  status: number;
  /** Response body bytes written. */
  bytes: number;
  /** Request body bytes read (uploads). */
  bytesIn?: number;
  ms: number;
  error?: string;
}

export interface QuicGoServer {
  child: Child;
  addr: string;
  port: number;
  /** https://ADDR:PORT (IPv6 in brackets). */
  origin: string;
  /** The access log so far. */
  accessLog(): QuicGoAccessLine[];
  /** SIGTERM, then SIGKILL after graceMs (default 3000). */
  stop(graceMs?: number): Promise<ExitInfo>;
}

export function quicGoServerArgs(o: QuicGoServerOptions): string[] {
  const addr = o.addr ?? '127.0.0.1';
  assertLoopback(addr);
  const a = ['-listen', `${addr.includes(':') ? `[${addr}]` : addr}:${o.port ?? 0}`, '-cert', o.certFile, '-key', o.keyFile];
  if (o.dir !== undefined) a.push('-dir', o.dir);
  if (o.keylogFile !== undefined) a.push('-keylog', o.keylogFile);
  if (o.maxStreams !== undefined) a.push('-max-streams', String(o.maxStreams));
  a.push('-max-time', goDuration(o.maxTimeMs ?? 300_000));
  if (o.idleTimeoutMs !== undefined) a.push('-idle-timeout', goDuration(o.idleTimeoutMs));
  if (o.quiet === true) a.push('-quiet');
  a.push(...windowArgs(o.windows));
  return a;
}

/** Start the quic-go server and wait (up to 10 s) for its listening line; { error } when it does not come. */
export async function startQuicGoServer(o: QuicGoServerOptions): Promise<QuicGoServer | { error: string }> {
  let bin = o.bin;
  if (bin === undefined) {
    const b = await buildQuicGo();
    if ('error' in b) return b;
    bin = b.server;
  }
  const child = spawnBounded({
    name: o.name ?? 'quicgo-server',
    cmd: bin,
    args: quicGoServerArgs(o),
    workDir: o.workDir,
    env: o.env,
    timeoutMs: (o.maxTimeMs ?? 300_000) + 10_000,
  });
  const listening = (): string | undefined => {
    const l = jsonLines(child.stdout()).find((v) => typeof v.listening === 'string');
    return l?.listening as string | undefined;
  };
  await waitFor(() => !child.isRunning() || listening() !== undefined, 10_000);
  const where = listening();
  if (where === undefined || !child.isRunning()) {
    const exit = await child.stop('SIGKILL', 1000);
    return { error: `quic-go server did not start (exit ${exit.code ?? exit.signal}): ${child.output().slice(-1500)}` };
  }
  const colon = where.lastIndexOf(':');
  const host = where.slice(0, colon).replace(/^\[|\]$/g, '');
  const port = Number(where.slice(colon + 1));
  return {
    child,
    addr: host,
    port,
    origin: `https://${host.includes(':') ? `[${host}]` : host}:${port}`,
    accessLog: () => jsonLines(child.stderr()).filter((v) => typeof v.method === 'string') as unknown as QuicGoAccessLine[],
    stop: (graceMs = 3000) => child.stop('SIGTERM', graceMs),
  };
}
