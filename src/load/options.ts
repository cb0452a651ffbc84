/**
 * `qsr load` options: the command line's values (strings as typed) validated into a LoadPlan, a plain object that
 * can be sent to worker processes as it is. Every mistake is a LoadOptionError naming the flag; nothing here
 * touches the network.
 */
import { readFileSync, statSync } from 'node:fs';
import { checkField, type HeaderList } from '../h3/validate.js';
import { loadPemChain } from '../quic/tls/pem.js';
import { suiteByName } from '../quic/crypto/suites.js';

/** A bad value on the command line; `flag` is the flag (or 'URL') it belongs to. */
export class LoadOptionError extends Error {
  constructor(
    readonly flag: string,
    message: string,
  ) {
    super(`${flag}: ${message}`);
    this.name = 'LoadOptionError';
  }
}

/** What the user typed (every value a string, as commander hands them over). */
export interface LoadOptions {
  connections?: string;
  streams?: string;
  requests?: string;
  duration?: string;
  method?: string;
  data?: string;
  header?: string[];
  workers?: string;
  /** Per request, a duration ("30s", "500ms"; a bare number is ms). */
  timeout?: string;
  insecure?: boolean;
  ca?: string;
  serverName?: string;
  keylog?: string;
  qlog?: string;
  /** ms */
  handshakeTimeout?: string;
  ciphers?: string;
  maxData?: string;
  maxStreamData?: string;
}

/** Request bodies up to this size are read once and sent from memory; larger files are streamed per request. */
export const BODY_IN_MEMORY_LIMIT = 64 * 1024 * 1024;

export interface LoadPlan {
  url: string;
  origin: string;
  /** :path as sent. */
  path: string;
  /** The URL host without brackets (the default server name). */
  host: string;
  method: string;
  headers: HeaderList;
  /** null: no body; text: a literal; file: read by every process (in memory up to BODY_IN_MEMORY_LIMIT). */
  body: { text: string } | { file: string; size: number } | null;
  connections: number;
  streams: number;
  /** Total requests (every process together), or null for a duration run. */
  requests: number | null;
  /** ms, or null for a request-count run. */
  durationMs: number | null;
  workers: number;
  timeoutMs: number;
  handshakeTimeoutMs: number;
  insecure: boolean;
  /** The --ca file; each process loads it (validated here). */
  caFile: string | null;
  serverName: string | null;
  keylog: string | null;
  qlog: string | null;
  /** TLS 1.3 suite names to offer, or null for all. */
  ciphers: string[] | null;
  maxData: number | null;
  maxStreamData: number | null;
}

const METHOD_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const MAX_CONNECTIONS = 10_000;
const MAX_STREAMS = 10_000;
const MAX_WORKERS = 64;

function wholeNumber(flag: string, v: string | undefined, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  const t = String(v).trim();
  if (!/^\d+$/.test(t)) throw new LoadOptionError(flag, `expected a whole number, got '${v}'`);
  const n = Number(t);
  if (n < min || n > max) throw new LoadOptionError(flag, `${n} is out of range ${min}-${max}`);
  return n;
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** "10s", "500ms", "1.5m", "2h"; a bare number is in `bareUnit`. Result in ms (> 0). */
export function parseDuration(flag: string, v: string, bareUnit: 'ms' | 's'): number {
  const m = /^(\d+(?:\.\d+)?)\s*(ms|s|m|h)?$/.exec(String(v).trim());
  if (!m) throw new LoadOptionError(flag, `expected a duration such as 10s, 500ms or 2m, got '${v}'`);
  const ms = Number(m[1]) * UNITS[m[2] ?? bareUnit];
  if (!(ms >= 1)) throw new LoadOptionError(flag, `'${v}' is shorter than 1 ms`);
  if (ms > 7 * 24 * 3_600_000) throw new LoadOptionError(flag, `'${v}' is longer than a week`);
  return Math.round(ms);
}

function parseHeader(h: string): [string, string] {
  const i = h.indexOf(':', 1);
  if (i <= 0) throw new LoadOptionError('-H', `expected 'name: value', got '${h}'`);
  const name = h.slice(0, i).trim().toLowerCase();
  const value = h.slice(i + 1).trim();
  if (name.startsWith(':')) throw new LoadOptionError('-H', `pseudo-header '${name}' cannot be set (use the URL and -X)`);
  try {
    checkField(name, value);
  } catch (e) {
    throw new LoadOptionError('-H', `'${h}': ${(e as Error).message.replace(/^.*malformed message: /, '')}`);
  }
  return [name, value];
}

/** Validates the options into a plan. Throws LoadOptionError naming the flag. */
export function planLoad(urlText: string | undefined, o: LoadOptions): LoadPlan {
  if (!urlText) throw new LoadOptionError('URL', 'give the https:// URL to load');
  let url: URL;
  try {
    url = new URL(urlText);
  } catch {
    throw new LoadOptionError('URL', `'${urlText}' is not a valid URL`);
  }
  if (url.protocol !== 'https:') throw new LoadOptionError('URL', `only https:// URLs are supported, got '${url.protocol}'`);
  if (url.username || url.password) throw new LoadOptionError('URL', 'user information in URLs is not supported');

  const connections = wholeNumber('--connections', o.connections, 1, MAX_CONNECTIONS) ?? 1;
  const streams = wholeNumber('--streams', o.streams, 1, MAX_STREAMS) ?? 10;
  const workers = wholeNumber('--workers', o.workers, 1, MAX_WORKERS) ?? 1;
  if (workers > connections) throw new LoadOptionError('--workers', `${workers} workers need at least as many connections (--connections is ${connections})`);
  if (o.requests !== undefined && o.duration !== undefined) throw new LoadOptionError('--requests', 'give --requests or --duration, not both');
  const requests = wholeNumber('--requests', o.requests, 1, Number.MAX_SAFE_INTEGER) ?? null;
  const durationMs = requests === null ? parseDuration('--duration', o.duration ?? '10s', 's') : null;
  const timeoutMs = parseDuration('--timeout', o.timeout ?? '30s', 'ms');
  const handshakeTimeoutMs = wholeNumber('--handshake-timeout', o.handshakeTimeout, 1, 3_600_000) ?? 10_000;

  if (o.insecure && o.ca) throw new LoadOptionError('--ca', '--insecure and --ca exclude each other');
  if (o.ca) {
    let pem: string;
    try {
      pem = readFileSync(o.ca, 'utf8');
    } catch (e) {
      throw new LoadOptionError('--ca', `cannot read '${o.ca}': ${(e as Error).message}`);
    }
    try {
      loadPemChain(pem);
    } catch (e) {
      throw new LoadOptionError('--ca', `'${o.ca}': ${(e as Error).message}`);
    }
  }
  if (o.serverName !== undefined && !/^[A-Za-z0-9.\-:[\]]+$/.test(o.serverName)) {
    throw new LoadOptionError('--server-name', `'${o.serverName}' is not a host name or IP address`);
  }

  let body: LoadPlan['body'] = null;
  if (o.data !== undefined) {
    if (o.data.startsWith('@')) {
      const file = o.data.slice(1);
      if (!file) throw new LoadOptionError('-d', "'@' needs a file name (-d @FILE)");
      let size: number;
      try {
        const st = statSync(file);
        if (!st.isFile()) throw new Error('not a regular file');
        size = st.size;
      } catch (e) {
        throw new LoadOptionError('-d', `cannot read '${file}': ${(e as Error).message}`);
      }
      body = { file, size };
    } else {
      body = { text: o.data };
    }
  }
  const method = o.method ?? (body ? 'POST' : 'GET');
  if (!METHOD_RE.test(method)) throw new LoadOptionError('-X', `'${method}' is not a valid HTTP method`);
  if (method === 'CONNECT') throw new LoadOptionError('-X', 'CONNECT is not supported');
  const headers = (o.header ?? []).map(parseHeader);
  if (body && !headers.some(([n]) => n === 'content-length')) {
    headers.push(['content-length', String('file' in body ? body.size : Buffer.byteLength(body.text))]);
  }

  let ciphers: string[] | null = null;
  if (o.ciphers) {
    ciphers = o.ciphers.split(',').map((n) => n.trim());
    for (const n of ciphers) {
      if (!suiteByName(n)) throw new LoadOptionError('--ciphers', `unknown cipher suite '${n}' (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256)`);
    }
  }
  return {
    url: url.href,
    origin: url.origin,
    path: url.pathname + url.search,
    host: url.hostname.replace(/^\[|\]$/g, ''),
    method,
    headers,
    body,
    connections,
    streams,
    requests,
    durationMs,
    workers,
    timeoutMs,
    handshakeTimeoutMs,
    insecure: !!o.insecure,
    caFile: o.ca ?? null,
    serverName: o.serverName ?? null,
    keylog: o.keylog ?? null,
    qlog: o.qlog ?? null,
    ciphers,
    maxData: wholeNumber('--max-data', o.maxData, 1, Number.MAX_SAFE_INTEGER) ?? null,
    maxStreamData: wholeNumber('--max-stream-data', o.maxStreamData, 1, Number.MAX_SAFE_INTEGER) ?? null,
  };
}
