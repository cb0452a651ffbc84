/**
 * Logging: the access log (one JSON line per request stream) and the router's general log, both pino, written
 * to stdout or appended to a file.
 *
 * Access log line, keys in this order:
 *   {"time":"2025-01-01T00:00:00.000Z","connectionId":"8f3a…","streamId":4,"client":"127.0.0.1:52311",
 *    "method":"GET","authority":"localhost:4433","path":"/video/1","route":"video","upstream":"http://127.0.0.1:5001",
 *    "status":200,"bytesIn":0,"bytesOut":1048576,"durationMs":12.5,"error":null}
 * `protocol` ("h3", or e.g. "http/1.1" for the TCP listener) follows `client` when the caller gives it. `route`,
 * `upstream` and `status` are null when there was none (no matching route, no response sent); `error` is null when
 * the stream completed normally. `method`, `authority` and `path` are null for a stream whose request head never
 * arrived or could not be decoded (a stream error such as H3_EXCESSIVE_LOAD). A path longer than MAX_LOGGED_PATH
 * (2048) characters is cut there and followed by `"pathTruncated":true,"pathLength":<its full length>`.
 * `connectionId` is the QUIC connection's original destination connection ID (hex), or `tcp-<hex>` for one TCP
 * connection of the HTTPS listener (the same for all HTTP/2 streams on it); `client` is address:port with an IPv6
 * address in brackets.
 */
import { pino, type Logger, type DestinationStream } from 'pino';

/** Paths longer than this many characters are cut in the access log (and the line says so). */
export const MAX_LOGGED_PATH = 2048;

/** 'stdout', 'stderr' or a file path (appended to, directories created). */
export type LogTarget = 'stdout' | 'stderr' | string;

export interface AccessLogFields {
  connectionId: string;
  streamId: number;
  /** address:port (IPv6 in brackets). */
  client: string;
  protocol?: string;
  /** null for a stream whose request head never arrived or could not be decoded (e.g. H3_EXCESSIVE_LOAD). */
  method: string | null;
  authority: string | null;
  path: string | null;
  route: string | null;
  upstream: string | null;
  status: number | null;
  bytesIn: number;
  bytesOut: number;
  durationMs: number;
  error: string | null;
}

export interface AccessLog {
  /** Writes one line for a finished request stream. */
  logStream(fields: AccessLogFields): void;
  /** Resolves once everything written so far has reached the destination. */
  flush(): Promise<void>;
  /** Flushes and, for a file, closes it. */
  close(): Promise<void>;
}

interface Sink {
  stream: DestinationStream;
  flush(): Promise<void>;
  close(): Promise<void>;
}

function sink(target: LogTarget): Sink {
  const fd = target === 'stdout' ? 1 : target === 'stderr' ? 2 : null;
  const dest = pino.destination(fd !== null ? { dest: fd, sync: false } : { dest: target, sync: false, mkdir: true, append: true });
  // sonic-boom cannot flush before its file is open.
  const ready = fd !== null ? Promise.resolve() : new Promise<void>((resolve, reject) => {
    dest.once('ready', () => resolve());
    dest.once('error', reject);
  });
  ready.catch(() => undefined);
  const flush = async (): Promise<void> => {
    await ready;
    await new Promise<void>((resolve, reject) => dest.flush((err) => (err ? reject(err) : resolve())));
  };
  return {
    stream: dest,
    flush,
    close: async () => {
      await flush();
      if (fd === null) {
        const closed = new Promise<void>((resolve) => dest.once('close', () => resolve()));
        dest.end();
        await closed;
      }
    },
  };
}

/** True when JSON.stringify would escape a character of s (quote, backslash, controls, surrogates: lone ones are). */
function needsEscape(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x22 || c === 0x5c || (c >= 0xd800 && c <= 0xdfff)) return true;
  }
  return false;
}

/** A JSON string, or null (plain strings, the usual case, quoted without JSON.stringify). */
function jstr(s: string | null): string {
  if (s === null) return 'null';
  return needsEscape(s) ? JSON.stringify(s) : `"${s}"`;
}

let isoSecond = -1;
let isoPrefix = '';

/**
 * new Date().toISOString(), from a prefix made once a second ("2025-01-01T00:00:00.") and the milliseconds:
 * toISOString cost more than the rest of a line.
 */
function isoNow(): string {
  const ms = Date.now();
  const sec = Math.floor(ms / 1000);
  if (sec !== isoSecond) {
    isoSecond = sec;
    isoPrefix = new Date(sec * 1000).toISOString().slice(0, 20);
  }
  const m = ms - sec * 1000;
  return `${isoPrefix}${m < 10 ? '00' : m < 100 ? '0' : ''}${m}Z`;
}

/** A JSON number (JSON has no NaN or Infinity: null, as JSON.stringify writes them), or null. */
function jnum(n: number | null): string {
  return n !== null && Number.isFinite(n) ? String(n) : 'null';
}

/**
 * One access log line. Written out field by field (the keys are fixed): a logger's generic serialisation of an object
 * per request was the largest part of the access log's cost for small requests.
 */
export function accessLogLine(f: AccessLogFields, time?: Date): string {
  let s = `{"time":"${time === undefined ? isoNow() : time.toISOString()}","connectionId":${jstr(f.connectionId)},"streamId":${jnum(f.streamId)},"client":${jstr(f.client)}`;
  if (f.protocol !== undefined) s += `,"protocol":${jstr(f.protocol)}`;
  s += `,"method":${jstr(f.method)},"authority":${jstr(f.authority)}`;
  if (f.path !== null && f.path.length > MAX_LOGGED_PATH) {
    s += `,"path":${jstr(f.path.slice(0, MAX_LOGGED_PATH))},"pathTruncated":true,"pathLength":${f.path.length}`;
  } else s += `,"path":${jstr(f.path)}`;
  s += `,"route":${jstr(f.route)},"upstream":${jstr(f.upstream)},"status":${jnum(f.status)},"bytesIn":${jnum(f.bytesIn)}`;
  s += `,"bytesOut":${jnum(f.bytesOut)},"durationMs":${jnum(f.durationMs)},"error":${jstr(f.error)}}\n`;
  return s;
}

/** Creates the access log writing to `target`. */
export function createAccessLog(target: LogTarget): AccessLog {
  const out = sink(target);
  return {
    logStream(f: AccessLogFields): void {
      out.stream.write(accessLogLine(f));
    },
    flush: out.flush,
    close: out.close,
  };
}

export interface RouterLogger {
  logger: Logger;
  flush(): Promise<void>;
  close(): Promise<void>;
}

/** The router's general log (startup, health changes, errors): pino JSON lines with level names. */
export function createLogger(target: LogTarget, level: pino.LevelWithSilent = 'info'): RouterLogger {
  const out = sink(target);
  const logger = pino(
    {
      level,
      base: null,
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    out.stream,
  );
  return { logger, flush: out.flush, close: out.close };
}
