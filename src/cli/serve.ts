/**
 * `qsr serve`: static files over HTTP/3 (RFC 9114 §4: one request per bidirectional stream). GET and HEAD
 * (RFC 9110 §9.3.1-2), content-type by extension, content-length, 404/403/400/405 (with allow), `/` and
 * directories map to index.html, nothing outside the served directory is reachable (after percent-decoding,
 * normalising and resolving symlinks). Bodies are streamed from the file with backpressure, never read whole.
 *
 * `staticHandler(root)` is the request handler on its own (unit-tested with fake request/response objects);
 * `runServe(options)` is the command: TLS material (given, or the development certificate), the Http3Server,
 * access log lines, graceful shutdown on SIGINT/SIGTERM.
 */
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { resolve, sep, join } from 'node:path';
import { finished, pipeline, type Readable, type Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { X509Certificate, type KeyObject } from 'node:crypto';
// Type-only: the HTTP/3 server is loaded when the command runs, so staticHandler stays usable on its own.
import type { Http3Server, Http3Request, Http3Response } from '../h3/server.js';
import { keyLogSink } from '../obs/keylog.js';
import { qlogTracer } from '../obs/qlog.js';
import { cryptoBackend } from '../quic/crypto/backend.js';
import { loadPemChain, loadPrivateKey } from '../quic/tls/pem.js';
import { UsageError, parseHostPort, parseSuites } from './args.js';
import { ensureDevCert } from '../io/devcert.js';
import { contentType } from './mime.js';

/** What the handler needs from an HTTP/3 request (Http3Request satisfies it). */
export type StaticRequest = Readable & { method: string; path: string };

/** What the handler needs from an HTTP/3 response (Http3Response satisfies it). */
export type StaticResponse = Writable & {
  respond(status: number, headers?: Record<string, string>): void;
  readonly headersSent: boolean;
  reset(code?: number): void;
};

export interface AccessLogEntry {
  method: string;
  path: string;
  status: number;
  /** Body bytes handed to the response. */
  bytes: number;
  ms: number;
}

export interface StaticHandlerOptions {
  /** Called once per request when its response has finished or was aborted. */
  onDone?: (entry: AccessLogEntry) => void;
}

/** H3_INTERNAL_ERROR (RFC 9114 §8.1), for a response that fails after its headers went out. */
const H3_INTERNAL_ERROR = 0x102;
const READ_CHUNK = 64 * 1024;

type Resolved = { kind: 'file'; path: string } | { kind: 'status'; status: 400 | 403 | 404 };

/**
 * Maps a request path (":path", maybe with a query) to a file under `realRoot`, or to an error status:
 * 400 for a malformed path, 403 for anything that would leave the root, 404 for what does not exist, hidden
 * (dot) names except `.well-known`, and anything that is not a regular file.
 */
export async function resolveRequestPath(realRoot: string, rawPath: string): Promise<Resolved> {
  let p = rawPath;
  const q = p.search(/[?#]/);
  if (q >= 0) p = p.slice(0, q);
  if (!p.startsWith('/')) return { kind: 'status', status: 400 };
  let decoded: string;
  try {
    decoded = decodeURIComponent(p);
  } catch {
    return { kind: 'status', status: 400 };
  }
  if (decoded.includes('\0')) return { kind: 'status', status: 400 };
  const full = resolve(realRoot, '.' + decoded);
  if (!inside(realRoot, full)) return { kind: 'status', status: 403 };
  const rel = full.slice(realRoot.length + 1);
  if (rel !== '' && rel.split(sep).some((s) => s.startsWith('.') && s !== '.well-known')) return { kind: 'status', status: 404 };
  let real: string;
  try {
    real = await realpath(full);
  } catch {
    return { kind: 'status', status: 404 };
  }
  if (!inside(realRoot, real)) return { kind: 'status', status: 403 };
  try {
    let st = await stat(real);
    if (st.isDirectory()) {
      real = join(real, 'index.html');
      st = await stat(real);
    }
    return st.isFile() ? { kind: 'file', path: real } : { kind: 'status', status: 404 };
  } catch {
    return { kind: 'status', status: 404 };
  }
}

function inside(root: string, p: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

const CACHE_TTL_MS = 1000;
const CACHE_FILE_MAX = 64 * 1024;
const CACHE_ENTRIES = 1000;
const CACHE_BYTES = 32 * 1024 * 1024;

const REASONS: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 500: 'Internal Server Error' };

/** The request handler serving files under `root` (which must exist). */
export function staticHandler(root: string, opts: StaticHandlerOptions = {}): (req: StaticRequest, res: StaticResponse) => void {
  const realRoot = realpathSync(root);
  if (!statSync(realRoot).isDirectory()) throw new Error(`${root} is not a directory`);

  // Small files are kept in memory for a second (like nginx's open_file_cache): a hot file is then served with no
  // file-system call at all, which is most of the cost of a small response. Bounded in entries and bytes.
  const cache = new Map<string, { path: string; type: string; mtime: string; body: Buffer; expires: number }>();
  let cachedBytes = 0;
  const remember = (key: string, path: string, st: { size: number; mtime: Date }, body: Buffer): void => {
    if (cache.size >= CACHE_ENTRIES || cachedBytes + body.length > CACHE_BYTES) {
      for (const [k, v] of cache) {
        if (v.expires > Date.now()) continue;
        cache.delete(k);
        cachedBytes -= v.body.length;
      }
      if (cache.size >= CACHE_ENTRIES || cachedBytes + body.length > CACHE_BYTES) return;
    }
    const old = cache.get(key);
    if (old) cachedBytes -= old.body.length;
    cache.set(key, { path, type: contentType(path), mtime: st.mtime.toUTCString(), body, expires: Date.now() + CACHE_TTL_MS });
    cachedBytes += body.length;
  };

  return (req, res) => {
    const started = performance.now();
    const method = req.method;
    let status = 0;
    let bytes = 0;
    let logged = false;
    const done = (): void => {
      if (logged) return;
      logged = true;
      opts.onDone?.({ method, path: req.path, status, bytes, ms: performance.now() - started });
    };
    finished(res, () => done());
    // A request body (allowed but meaningless for GET/HEAD) is read and dropped so flow control never stalls.
    req.on('error', () => {});
    req.resume();

    const simple = (code: number, extra: Record<string, string> = {}): void => {
      const body = Buffer.from(`${REASONS[code] ?? 'Error'}\n`);
      status = code;
      res.respond(code, { 'content-type': 'text/plain; charset=utf-8', 'content-length': String(body.length), ...extra });
      if (method === 'HEAD') {
        res.end();
      } else {
        bytes = body.length;
        res.end(body);
      }
    };

    if (method !== 'GET' && method !== 'HEAD') {
      simple(405, { allow: 'GET, HEAD' });
      return;
    }

    const key = req.path ?? '';
    const hit = cache.get(key);
    if (hit && hit.expires > Date.now() && !res.destroyed) {
      status = 200;
      res.respond(200, { 'content-type': hit.type, 'content-length': String(hit.body.length), 'last-modified': hit.mtime });
      if (method === 'HEAD') res.end();
      else {
        bytes = hit.body.length;
        res.end(hit.body);
      }
      return;
    }

    void (async () => {
      const r = await resolveRequestPath(realRoot, req.path ?? '');
      if (r.kind === 'status') {
        simple(r.status);
        return;
      }
      let fh: FileHandle;
      try {
        fh = await open(r.path, 'r');
      } catch {
        simple(404);
        return;
      }
      let size: number;
      let mtime: Date;
      try {
        const st = await fh.stat();
        size = st.size;
        mtime = st.mtime;
      } catch {
        await fh.close().catch(() => {});
        simple(500);
        return;
      }
      if (res.destroyed || res.writableEnded) {
        await fh.close().catch(() => {});
        return;
      }
      status = 200;
      res.respond(200, { 'content-type': contentType(r.path), 'content-length': String(size), 'last-modified': mtime.toUTCString() });
      if (method === 'HEAD' || size === 0) {
        await fh.close().catch(() => {});
        res.end();
        return;
      }
      if (size <= CACHE_FILE_MAX) {
        // One read for a small file, kept for the next requests.
        const body = Buffer.allocUnsafe(size);
        const { bytesRead } = await fh.read(body, 0, size, 0);
        await fh.close().catch(() => {});
        const data = body.subarray(0, bytesRead);
        remember(key, r.path, { size, mtime }, data);
        bytes = data.length;
        res.end(data);
        return;
      }
      const rs = fh.createReadStream({ highWaterMark: READ_CHUNK, autoClose: true });
      rs.on('data', (chunk: Buffer | string) => {
        bytes += chunk.length;
      });
      pipeline(rs, res, (err) => {
        if (err && !res.destroyed) res.reset(H3_INTERNAL_ERROR);
      });
    })().catch(() => {
      if (!res.headersSent) simple(500);
      else if (!res.destroyed) res.reset(H3_INTERNAL_ERROR);
    });
  };
}

// The command ---------------------------------------------------------------------------------------------------------

export interface ServeOptions {
  dir: string;
  /** HOST:PORT, repeatable; default 127.0.0.1:4433 and [::1]:4433. */
  listen?: string[];
  cert?: string;
  key?: string;
  keylog?: string;
  qlog?: string;
  /** Where the development certificate lives (DIR/certs); default ./.qsr. */
  dataDir?: string;
  /** TLS 1.3 suites to accept, comma-separated, in order of preference (default: all three). */
  ciphers?: string;
}

const DEFAULT_LISTEN = ['127.0.0.1:4433', '[::1]:4433'];

function log(line: string): void {
  process.stderr.write(line + '\n');
}

let pendingLog = '';

/** Access lines are written once per event-loop turn: one write(2) for a burst of requests, not one each. */
function accessLine(line: string): void {
  if (!pendingLog) {
    setImmediate(() => {
      const out = pendingLog;
      pendingLog = '';
      process.stderr.write(out);
    });
  }
  pendingLog += line + '\n';
}

function readFlagFile(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag}: cannot read '${path}': ${(err as Error).message}`);
  }
}

/** Certificate chain and key from --cert/--key, checked against each other, or the development certificate. */
async function tlsMaterial(o: ServeOptions): Promise<{ certChain: Buffer[]; privateKey: KeyObject }> {
  if (!!o.cert !== !!o.key) throw new UsageError(o.cert ? '--cert needs --key' : '--key needs --cert');
  let certPath = o.cert;
  let keyPath = o.key;
  if (!certPath || !keyPath) {
    const dir = join(o.dataDir ?? '.qsr', 'certs');
    const dc = await ensureDevCert(dir);
    log(`qsr serve: ${dc.created ? 'created' : 'using'} development certificate ${dc.certPath} (localhost, 127.0.0.1, ::1; valid until ${dc.notAfter.toISOString().slice(0, 10)})`);
    log(`qsr serve: trust it with --ca ${dc.certPath}; Chromium: --ignore-certificate-errors-spki-list=${dc.spkiSha256}`);
    certPath = dc.certPath;
    keyPath = dc.keyPath;
  }
  let certChain: Buffer[];
  try {
    certChain = loadPemChain(readFlagFile('--cert', certPath));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--cert: '${certPath}': ${(e as Error).message}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = loadPrivateKey(readFlagFile('--key', keyPath));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--key: '${keyPath}': ${(e as Error).message}`);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certChain[0]);
  } catch (e) {
    throw new UsageError(`--cert: '${certPath}': ${(e as Error).message}`);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new UsageError(`--key: '${keyPath}' does not belong to the certificate in '${certPath}'`);
  return { certChain, privateKey };
}

function formatAddress(a: { address: string; port: number }): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

function isAddressUnavailable(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT';
}

/** `qsr serve`: runs until SIGINT/SIGTERM, then drains for up to 5 s and resolves. */
export async function runServe(o: ServeOptions): Promise<void> {
  let isDir = false;
  try {
    isDir = statSync(o.dir).isDirectory();
  } catch (e) {
    throw new UsageError(`--dir: cannot use '${o.dir}': ${(e as Error).message}`);
  }
  if (!isDir) throw new UsageError(`--dir: '${o.dir}' is not a directory`);
  const explicit = o.listen !== undefined && o.listen.length > 0;
  const listen = (explicit ? (o.listen as string[]) : DEFAULT_LISTEN).map((v) => parseHostPort('--listen', v));
  const tls = await tlsMaterial(o);
  const cipherSuites = parseSuites('--ciphers', o.ciphers);
  const handler = staticHandler(o.dir, {
    onDone: (e) => accessLine(`${e.method} ${e.path} ${e.status || '-'} ${e.bytes} ${e.ms.toFixed(1)}ms`),
  });
  const onRequest = (req: Http3Request, res: Http3Response): void => handler(req, res);
  const { Http3Server: Server } = await import('../h3/server.js');
  const start = (addrs: { address: string; port: number }[]): Promise<Http3Server> =>
    Server.listen({ listen: addrs, ...tls, keyLog: keyLogSink(o.keylog), trace: qlogTracer(o.qlog), quic: cipherSuites ? { cipherSuites } : undefined }, onRequest);

  let server: Http3Server;
  try {
    server = await start(listen);
  } catch (e) {
    // The default includes ::1; a host without IPv6 still serves on 127.0.0.1.
    if (explicit || !isAddressUnavailable(e)) throw e;
    log(`qsr serve: [::1] is not available (${(e as Error).message}); IPv4 only`);
    server = await start(listen.filter((a) => !a.address.includes(':')));
  }
  server.on('error', (e: Error) => log(`qsr serve: error: ${e.message}`));
  const root = realpathSync(o.dir);
  for (const a of server.addresses()) log(`qsr serve: serving ${root} on https://${formatAddress(a)}/ (HTTP/3)`);
  log(`qsr serve: packet protection: ${cryptoBackend().description}`);

  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        log(`qsr serve: ${signal} again, exiting without waiting`);
        process.exit(1);
      }
      stopping = true;
      log(`qsr serve: ${signal}, closing (draining for up to 5 s)`);
      server.close({ drainMs: 5000 }).then(resolveStop, (e: Error) => {
        log(`qsr serve: close: ${e.message}`);
        resolveStop();
      });
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}
