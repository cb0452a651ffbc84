/**
 * Static files over HTTP/3 as a request handler (what `qsr serve` runs): GET and HEAD (RFC 9110 §9.3.1-2),
 * content-type by extension (mime.ts), content-length, last-modified, 404/403/400/405 (with allow), `/` and
 * directories map to index.html, nothing outside the served directory is reachable (after percent-decoding,
 * normalising and resolving symlinks; hidden names other than `.well-known` are 404). Bodies larger than the cache's
 * file limit are streamed from the file with backpressure, never read whole; small files are kept in memory for a
 * moment (see StaticCacheOptions).
 *
 * The handler works on anything shaped like Http3Request/Http3Response (StaticRequest/StaticResponse), so it is
 * unit-tested with fake request/response objects and needs no HTTP/3 server to be loaded.
 */
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import { realpathSync, statSync } from 'node:fs';
import { resolve, sep, join } from 'node:path';
import { finished, pipeline, type Readable, type Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
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

/**
 * The in-memory cache of small files (like nginx's open_file_cache): a hot file is served with no file-system call at
 * all, which is most of the cost of a small response. An entry is used until `ttlMs` after it was read, whatever
 * happens to the file meanwhile; a changed or deleted file is seen once the entry has expired.
 */
export interface StaticCacheOptions {
  /** How long an entry is used (default 1000 ms); 0 turns the cache off. */
  ttlMs?: number;
  /** Files up to this size (bytes) are read in one call and cached (default 64 KiB); larger ones are streamed. */
  fileMax?: number;
  /** At most this many entries (default 1000). */
  entries?: number;
  /** At most this many body bytes in all (default 32 MiB). */
  bytes?: number;
}

export interface StaticHandlerOptions {
  /** Called once per request when its response has finished or was aborted. */
  onDone?: (entry: AccessLogEntry) => void;
  cache?: StaticCacheOptions;
  /** The clock of the cache's expiry, in ms (default Date.now; tests pass their own). */
  now?: () => number;
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

export const DEFAULT_STATIC_CACHE: Readonly<Required<StaticCacheOptions>> = { ttlMs: 1000, fileMax: 64 * 1024, entries: 1000, bytes: 32 * 1024 * 1024 };

const REASONS: Record<number, string> = { 400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed', 500: 'Internal Server Error' };

/** The request handler serving files under `root` (which must exist). */
export function staticHandler(root: string, opts: StaticHandlerOptions = {}): (req: StaticRequest, res: StaticResponse) => void {
  const realRoot = realpathSync(root);
  if (!statSync(realRoot).isDirectory()) throw new Error(`${root} is not a directory`);

  const limits = { ...DEFAULT_STATIC_CACHE, ...opts.cache };
  const now = opts.now ?? Date.now;

  // Small files kept in memory for limits.ttlMs (StaticCacheOptions), keyed by the request path; bounded in entries
  // and bytes: when full, expired entries are dropped, and a file that still does not fit is not kept.
  const cache = new Map<string, { path: string; type: string; mtime: string; body: Buffer; expires: number }>();
  let cachedBytes = 0;
  const remember = (key: string, path: string, st: { size: number; mtime: Date }, body: Buffer): void => {
    if (limits.ttlMs <= 0) return;
    if (cache.size >= limits.entries || cachedBytes + body.length > limits.bytes) {
      for (const [k, v] of cache) {
        if (v.expires > now()) continue;
        cache.delete(k);
        cachedBytes -= v.body.length;
      }
      if (cache.size >= limits.entries || cachedBytes + body.length > limits.bytes) return;
    }
    const old = cache.get(key);
    if (old) cachedBytes -= old.body.length;
    cache.set(key, { path, type: contentType(path), mtime: st.mtime.toUTCString(), body, expires: now() + limits.ttlMs });
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
    if (hit && hit.expires > now() && !res.destroyed) {
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
      if (size <= limits.fileMax) {
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
