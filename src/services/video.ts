/**
 * The video service (plain HTTP/1.1, RFC 9112):
 * - `POST /video`: a streamed upload of any size, hashed while it arrives (never buffered), answered with
 *   `{"bytes": N, "sha256": "hex", "ms": elapsed}`.
 * - `GET /video/stream?seconds=N&kbps=R`: a live feed of MPEG-TS null packets (ISO/IEC 13818-1, PID 0x1FFF) sent
 *   with chunked transfer coding (RFC 9112 §7.1), one chunk about every 100 ms, R kilobits per second for N
 *   seconds (0 < N <= 3600, 1 <= R <= 1 000 000). A live feed does not wait for a slow reader: a tick whose data
 *   cannot be written without growing the queue is dropped. When the client goes away the timer stops; when the
 *   service shuts down, a running feed is cut (connection closed without the last chunk: incomplete, not ended).
 * - `GET /video/bytes?n=N`: an unpaced download of exactly N bytes (0 <= N <= 64 GiB) of the deterministic pattern of
 *   `pattern.ts`, with content-length, written as fast as the client reads (backpressure, never buffered). Up to
 *   256 MiB the response carries the content's sha256 in `x-content-sha256`, so any client can check what it got.
 */
import { createHash } from 'node:crypto';
import type http from 'node:http';
import { ServiceServer, sendJson, type ServiceOptions } from './common.js';
import { PATTERN_BLOCK, patternBlock, patternSha256 } from './pattern.js';

const TICK_MS = 100;
const TS_PACKET = 188;
/** One MPEG-TS null packet: sync byte, PID 0x1FFF, payload only, stuffing bytes. */
const NULL_PACKET = Buffer.alloc(TS_PACKET, 0xff);
NULL_PACKET[0] = 0x47;
NULL_PACKET[1] = 0x1f;
NULL_PACKET[2] = 0xff;
NULL_PACKET[3] = 0x10;
/** 1024 packets plus one, so any phase-aligned slice of up to 1024 packets is a view, not a copy. */
const PATTERN = Buffer.alloc(TS_PACKET * 1025).fill(NULL_PACKET);

/** `n` bytes of the null-packet stream starting `offset` bytes into it. */
function feedBytes(offset: number, n: number): Buffer {
  const phase = offset % TS_PACKET;
  if (phase + n <= PATTERN.length) return PATTERN.subarray(phase, phase + n);
  const rotated = Buffer.concat([NULL_PACKET.subarray(phase), NULL_PACKET.subarray(0, phase)]);
  return Buffer.allocUnsafe(n).fill(rotated);
}

/** A query parameter as a number in [min, max] (integer if asked), or an error message naming it. */
function numberParam(url: URL, name: string, check: (n: number) => boolean, rule: string): number | string {
  const raw = url.searchParams.get(name);
  if (raw === null || raw.trim() === '') return `missing query parameter '${name}' (${rule})`;
  const n = Number(raw);
  if (!Number.isFinite(n) || !check(n)) return `query parameter '${name}' must be ${rule}, got '${raw}'`;
  return n;
}

function upload(server: ServiceServer, req: http.IncomingMessage, res: http.ServerResponse): void {
  const started = performance.now();
  const hash = createHash('sha256');
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    hash.update(chunk);
  });
  req.on('error', () => {
    // the client reset the upload; counted as aborted when the response closes unfinished
  });
  req.on('end', () => {
    const ms = Math.round((performance.now() - started) * 1000) / 1000;
    server.log({ service: 'video', event: 'upload', bytes, ms });
    sendJson(res, 200, { bytes, sha256: hash.digest('hex'), ms });
  });
}

function live(server: ServiceServer, req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
  const seconds = numberParam(url, 'seconds', (n) => n > 0 && n <= 3600, 'a number with 0 < seconds <= 3600');
  const kbps = numberParam(url, 'kbps', (n) => Number.isInteger(n) && n >= 1 && n <= 1_000_000, 'a whole number from 1 to 1000000');
  for (const [name, v] of [['seconds', seconds], ['kbps', kbps]] as const) {
    if (typeof v === 'string') {
      sendJson(res, 400, { error: v, parameter: name });
      return;
    }
  }
  const durationMs = (seconds as number) * 1000;
  const bytesPerMs = ((kbps as number) * 1000) / 8 / 1000;
  const total = Math.round(bytesPerMs * durationMs);
  res.writeHead(200, {
    'content-type': 'video/mp2t',
    'cache-control': 'no-store',
    'x-stream-seconds': String(seconds),
    'x-stream-kbps': String(kbps),
  });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  res.flushHeaders();

  const started = performance.now();
  let sent = 0; // bytes written
  let due = 0; // bytes the schedule has produced so far (sent + dropped)
  let dropped = 0;
  server.stats.liveStreams++;
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    clearInterval(timer);
    server.stats.liveStreams--;
    unregister();
  };
  const tick = (): void => {
    const elapsed = performance.now() - started;
    const last = elapsed >= durationMs;
    const target = last ? total : Math.min(total, Math.round(bytesPerMs * elapsed));
    const n = target - due;
    if (n > 0) {
      if (res.writableNeedDrain) dropped += n;
      else {
        res.write(feedBytes(due, n));
        sent += n;
      }
      due = target;
    }
    if (last) {
      stop();
      server.log({ service: 'video', event: 'stream-done', sent, dropped, ms: Math.round(elapsed) });
      res.end();
    }
  };
  const timer = setInterval(tick, TICK_MS);
  // Cut when the server shuts down: without the last chunk, so that nobody takes the shortened feed for a whole one.
  const unregister = server.onClose(() => {
    stop();
    server.cut(res);
  });
  res.once('close', () => {
    if (res.writableFinished || stopped) return;
    stop();
    server.log({ service: 'video', event: 'stream-aborted', sent, dropped, ms: Math.round(performance.now() - started) });
  });
}

const MAX_DOWNLOAD = 64 * 1024 ** 3;
/** Largest download whose sha256 is computed up front for the `x-content-sha256` header. */
export const SHA_HEADER_LIMIT = 256 * 1024 * 1024;

function download(server: ServiceServer, req: http.IncomingMessage, res: http.ServerResponse, url: URL): void {
  const n = numberParam(url, 'n', (v) => Number.isInteger(v) && v >= 0 && v <= MAX_DOWNLOAD, `a whole number of bytes from 0 to ${MAX_DOWNLOAD}`);
  if (typeof n === 'string') {
    sendJson(res, 400, { error: n, parameter: 'n' });
    return;
  }
  const headers: http.OutgoingHttpHeaders = {
    'content-type': 'application/octet-stream',
    'content-length': n,
    'cache-control': 'no-store',
  };
  if (n <= SHA_HEADER_LIMIT) headers['x-content-sha256'] = patternSha256(n);
  res.writeHead(200, headers);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const started = performance.now();
  let k = 0;
  let sent = 0;
  const pump = (): void => {
    while (sent < n) {
      const block = patternBlock(k++);
      const chunk = n - sent >= PATTERN_BLOCK ? block : block.subarray(0, n - sent);
      sent += chunk.length;
      if (!res.write(chunk)) {
        res.once('drain', pump);
        return;
      }
    }
    res.end();
    server.log({ service: 'video', event: 'download', bytes: n, ms: Math.round(performance.now() - started) });
  };
  res.once('close', () => res.off('drain', pump));
  pump();
}

/** The video service as an http.Server, not yet listening. */
export function createVideoService(options: ServiceOptions = {}): ServiceServer {
  const server: ServiceServer = new ServiceServer(
    'video',
    {
      '/video': { POST: (req, res) => upload(server, req, res) },
      '/video/stream': { GET: (req, res, url) => live(server, req, res, url) },
      '/video/bytes': { GET: (req, res, url) => download(server, req, res, url) },
    },
    options,
  );
  return server;
}
