/**
 * The router's YAML configuration: schema (zod, strict: unknown keys are errors), loader, defaults.
 *
 * Reference (every key but `routes` is optional; the values shown are the defaults):
 *
 * ```yaml
 * # Addresses to listen on: UDP for HTTP/3 and the TCP HTTPS listener (Alt-Svc) on the same ports.
 * # "host:port" or "[ipv6]:port".
 * listen: ["127.0.0.1:4433", "[::1]:4433"]
 * # Certificate chain and private key (PEM). Absent: a development certificate kept in dataDir.
 * tls: { cert: certs/server.pem, key: certs/server.key }
 * # Where the router keeps its state (development certificate, key log).
 * dataDir: ./.qsr
 * # NSS key log for Wireshark: a path, true (= <dataDir>/keylog.txt) or false. Default false in a file;
 * # the built-in configuration (no file) has it on.
 * keylog: false
 * # qlog: one file per QUIC connection (<ODCID>_server.sqlog) in this directory, or false. Default false
 * # (the QLOGDIR environment variable, or `--qlog DIR` on the command line, turns it on as well).
 * qlog: false
 * # One JSON line per request stream: stdout, a file path, or false.
 * accessLog: stdout
 * # Upstream timeouts in milliseconds: TCP connect, response headers (counted from the end of the request body),
 * # gap between body chunks (request and response), and how long a graceful shutdown waits for open streams.
 * timeouts: { connectMs: 2000, headersMs: 10000, idleBodyMs: 30000, drainMs: 10000 }
 * # Active health checks: GET <path> on every upstream every intervalMs; 2xx within timeoutMs is a success.
 * # An upstream is taken out after `unhealthyAfter` failures in a row and back in after `healthyAfter`
 * # successes in a row. `healthCheck: false` turns checking off (every upstream counts as healthy).
 * healthCheck: { path: /healthz, intervalMs: 2000, timeoutMs: 1000, unhealthyAfter: 2, healthyAfter: 1 }
 * # QUIC transport settings.
 * # ciphers: the TLS 1.3 suites to accept, in order of preference (default: all three).
 * # congestionControl: newreno (RFC 9002) or cubic (RFC 9438); `qsr up/proxy --congestion-control` overrides it.
 * quic: { maxIdleTimeoutMs: 30000, onePacketPerDatagram: false, congestionControl: newreno, ciphers: [TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256] }
 * # Routes, in order. Each has a unique name, exactly one of `prefix` (matches the path itself and anything
 * # below it at a "/" boundary: /video matches /video, /video/x and /video?x but not /videos) or `exact`,
 * # optionally `host` (the :authority without its port, case-insensitive) and `methods`, one or more
 * # http:// upstream origins, a balancing policy (round-robin | least-outstanding; default round-robin)
 * # and request header rules applied last (`remove` then `set`). The most specific matching route wins
 * # (see routes.ts).
 * routes:
 *   - { name: video, prefix: /video, upstreams: ["http://127.0.0.1:5001"], balance: round-robin }
 *   - { name: text, prefix: /text, upstreams: ["http://127.0.0.1:5002"] }
 *   - name: control
 *     exact: /control/status
 *     host: example.com
 *     methods: [GET]
 *     upstreams: ["http://127.0.0.1:5003", "http://127.0.0.1:5013"]
 *     balance: least-outstanding
 *     headers: { set: { x-a: b }, remove: [x-b] }
 * # The built-in services `qsr up` starts next to the router (any of video, text, control). Absent: none.
 * # services.text.maxBodyBytes: the text service's limit for a POST /text body (default 10485760 = 10 MiB; larger: 413).
 * services: { video: { port: 5001 }, text: { port: 5002 }, control: { port: 5003 } }
 * ```
 *
 * Relative paths (tls.cert, tls.key, dataDir, keylog, qlog, accessLog) are resolved against the directory of the
 * configuration file; in the loaded Config every path is absolute.
 *
 * Errors: parseConfig/loadConfig throw one ConfigError listing every problem, one per line, as
 * `<file>: <dotted.path>: <what was expected>`, e.g. `qsr.yaml: routes.1.upstreams.0: expected an http:// URL,
 * got "ftp://x"`.
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { isIP } from 'node:net';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { ALL_SUITES, suiteByName } from '../quic/crypto/suites.js';
import { CONGESTION_CONTROL_NAMES, type CongestionControlName } from '../quic/recovery/congestion.js';

export type BalancePolicy = 'round-robin' | 'least-outstanding';
export type ServiceName = 'video' | 'text' | 'control';

export interface ListenAddress {
  /** Host without brackets: '127.0.0.1', '::1', 'localhost'. */
  host: string;
  port: number;
}

export interface TimeoutsConfig {
  connectMs: number;
  headersMs: number;
  idleBodyMs: number;
  drainMs: number;
}

export interface HealthCheckConfig {
  path: string;
  intervalMs: number;
  timeoutMs: number;
  unhealthyAfter: number;
  healthyAfter: number;
}

export interface HeaderRules {
  /** Lower-case name -> value; replaces any field of that name. */
  set: Record<string, string>;
  /** Lower-case names to remove. */
  remove: string[];
}

export interface RouteConfig {
  name: string;
  /** Exactly one of prefix / exact is set. */
  prefix: string | null;
  exact: string | null;
  /** Lower-case host name without port (IPv6 in brackets), or null for any host. */
  host: string | null;
  /** Upper-case methods, or null for any method. */
  methods: string[] | null;
  /** Upstream origins, normalised to "http://host:port". */
  upstreams: string[];
  balance: BalancePolicy;
  headers: HeaderRules;
}

export interface Config {
  /** Where the configuration came from: a file path or '<built-in>'. */
  source: string;
  listen: ListenAddress[];
  tls: { cert: string; key: string } | null;
  dataDir: string;
  /** Absolute key log path, or null for none. */
  keylog: string | null;
  /** Absolute qlog directory, or null for none (QLOGDIR may still turn it on). */
  qlog: string | null;
  /** 'stdout', an absolute file path, or false. */
  accessLog: 'stdout' | string | false;
  timeouts: TimeoutsConfig;
  /** null: health checking off. */
  healthCheck: HealthCheckConfig | null;
  /** ciphers: TLS 1.3 suite names in order of preference; absent: the default (all three). */
  quic: { maxIdleTimeoutMs: number; onePacketPerDatagram: boolean; congestionControl: CongestionControlName; ciphers?: string[] };
  routes: RouteConfig[];
  services: Partial<Record<ServiceName, ServiceConfig>>;
}

export interface ServiceConfig {
  port: number;
  /** Text service only: the largest POST /text body in bytes (default 10 MiB). */
  maxBodyBytes?: number;
}

/** Every problem in a configuration; `message` has one `<file>: <path>: <expected>` line per problem. */
export class ConfigError extends Error {
  constructor(
    readonly source: string,
    readonly problems: string[],
  ) {
    super(problems.map((p) => `${source}: ${p}`).join('\n'));
    this.name = 'ConfigError';
  }
}

export const DEFAULT_TIMEOUTS: Readonly<TimeoutsConfig> = { connectMs: 2000, headersMs: 10000, idleBodyMs: 30000, drainMs: 10000 };
export const DEFAULT_HEALTH_CHECK: Readonly<HealthCheckConfig> = {
  path: '/healthz',
  intervalMs: 2000,
  timeoutMs: 1000,
  unhealthyAfter: 2,
  healthyAfter: 1,
};
export const DEFAULT_QUIC = { maxIdleTimeoutMs: 30000, onePacketPerDatagram: false, congestionControl: 'newreno' as CongestionControlName } as const;
const DEFAULT_LISTEN = ['127.0.0.1:4433', '[::1]:4433'];
const DEFAULT_DATA_DIR = './.qsr';

// ---------------------------------------------------------------------------------------------------------------
// Leaf checks: each gives "expected <what>, got <value>" so the message names the exact mistake.

/** A short, quoted rendering of a bad value for an error message. */
function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  if (v === null) return 'null';
  if (typeof v === 'string') return JSON.stringify(v.length > 60 ? `${v.slice(0, 57)}...` : v);
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  return String(v);
}

function leaf<T>(expected: string, ok: (v: unknown) => boolean): z.ZodType<T> {
  return z.any().superRefine((v, ctx) => {
    if (!ok(v)) ctx.addIssue({ code: 'custom', message: v === undefined ? `missing; expected ${expected}` : `expected ${expected}, got ${show(v)}` });
  }) as unknown as z.ZodType<T>;
}

const isPosInt = (v: unknown): boolean => typeof v === 'number' && Number.isSafeInteger(v) && v > 0;
const isPort = (v: unknown): boolean => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
const isNonEmptyString = (v: unknown): boolean => typeof v === 'string' && v.length > 0 && !v.includes('\0');
const FIELD_NAME = /^[!#$%&'*+.^_`|~0-9a-z-]+$/;
/** Methods are tokens (RFC 9110 §9.1); case-sensitive, so only upper case is accepted. */
const METHOD = /^[!#$%&'*+.^_`|~0-9A-Z-]+$/;
/** Path for matching: starts with '/', no query, fragment, whitespace or control characters. */
const isRoutePath = (v: unknown): boolean => typeof v === 'string' && v.startsWith('/') && !/[?#\s]/.test(v) && !hasControlChar(v);
function hasControlChar(s: string): boolean {
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}
/** Header rules may not touch fields the proxy owns. */
const RESERVED_FIELDS = new Set(['host', 'connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te', 'content-length']);

/** "host:port" or "[v6]:port" -> ListenAddress, or null. Port 0 picks a free port (the summary shows it). */
export function parseListenAddress(s: string): ListenAddress | null {
  const m = /^\[([0-9A-Fa-f:.]+)\]:(\d{1,5})$/.exec(s) ?? /^([^:[\]\s]+):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const host = m[1]!;
  const port = Number(m[2]);
  if (port !== 0 && !isPort(port)) return null;
  if (s.startsWith('[') && isIP(host) !== 6) return null;
  return { host, port };
}

/** An upstream origin "http://host[:port][/]" normalised to "http://host:port"; null when it is not one. */
export function parseUpstreamUrl(v: unknown): string | null {
  if (typeof v !== 'string' || !v.startsWith('http://')) return null;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' || u.username || u.password || u.search || u.hash || (u.pathname !== '/' && u.pathname !== '')) return null;
  if (!u.hostname) return null;
  return `http://${u.hostname}:${u.port || '80'}`;
}

/** Host rule: a DNS name or IP literal (IPv6 in brackets), no port; compared lower-case. */
function isHostRule(v: unknown): boolean {
  if (typeof v !== 'string' || v.length === 0) return false;
  if (v.startsWith('[')) return v.endsWith(']') && isIP(v.slice(1, -1)) === 6;
  return /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?$/.test(v);
}

const posInt = leaf<number>('a positive integer', isPosInt);
const port = leaf<number>('a port number 1..65535', isPort);

const timeoutsSchema = z.strictObject({
  connectMs: posInt.optional(),
  headersMs: posInt.optional(),
  idleBodyMs: posInt.optional(),
  drainMs: posInt.optional(),
});

const healthSchema = z.union([
  z.literal(false),
  z.strictObject({
    path: leaf<string>('a path starting with "/"', isRoutePath).optional(),
    intervalMs: posInt.optional(),
    timeoutMs: posInt.optional(),
    unhealthyAfter: posInt.optional(),
    healthyAfter: posInt.optional(),
  }),
]);

const routeSchema = z.strictObject({
  name: leaf<string>('a route name (letters, digits, "_", "-", ".")', (v) => typeof v === 'string' && /^[A-Za-z0-9_.-]+$/.test(v)),
  prefix: leaf<string>('a path starting with "/" (no query)', isRoutePath).optional(),
  exact: leaf<string>('a path starting with "/" (no query)', isRoutePath).optional(),
  host: leaf<string>('a host name without port (IPv6 in brackets)', isHostRule).optional(),
  methods: z.array(leaf<string>('an upper-case HTTP method such as "GET"', (v) => typeof v === 'string' && METHOD.test(v))).optional(),
  upstreams: z.array(leaf<string>('an http:// URL', (v) => parseUpstreamUrl(v) !== null)),
  balance: leaf<BalancePolicy>('"round-robin" or "least-outstanding"', (v) => v === 'round-robin' || v === 'least-outstanding').optional(),
  headers: z
    .strictObject({
      set: z
        .record(
          z.string(),
          leaf<string>('a header value (string without CR, LF or NUL)', (v) => typeof v === 'string' && !/[\r\n\0]/.test(v)),
        )
        .optional(),
      remove: z.array(leaf<string>('a lower-case header field name', (v) => typeof v === 'string' && FIELD_NAME.test(v))).optional(),
    })
    .optional(),
});

const serviceSchema = z.strictObject({ port });
/** The text service also takes its body limit (POST /text larger than this is 413). */
const textServiceSchema = z.strictObject({
  port,
  maxBodyBytes: leaf<number>('a positive whole number of bytes', isPosInt).optional(),
});

const configSchema = z.strictObject({
  listen: z.array(leaf<string>('"host:port" or "[ipv6]:port"', (v) => typeof v === 'string' && parseListenAddress(v) !== null)).optional(),
  tls: z
    .strictObject({
      cert: leaf<string>('a file path', isNonEmptyString),
      key: leaf<string>('a file path', isNonEmptyString),
    })
    .optional(),
  dataDir: leaf<string>('a directory path', isNonEmptyString).optional(),
  keylog: leaf<string | boolean>('a file path, true or false', (v) => typeof v === 'boolean' || isNonEmptyString(v)).optional(),
  qlog: leaf<string | false>('a directory path or false', (v) => v === false || isNonEmptyString(v)).optional(),
  accessLog: leaf<string | false>('"stdout", a file path or false', (v) => v === false || isNonEmptyString(v)).optional(),
  timeouts: timeoutsSchema.optional(),
  healthCheck: healthSchema.optional(),
  quic: z
    .strictObject({
      maxIdleTimeoutMs: posInt.optional(),
      onePacketPerDatagram: leaf<boolean>('true or false', (v) => typeof v === 'boolean').optional(),
      congestionControl: leaf<CongestionControlName>(
        CONGESTION_CONTROL_NAMES.join(' or '),
        (v) => typeof v === 'string' && (CONGESTION_CONTROL_NAMES as readonly string[]).includes(v),
      ).optional(),
      ciphers: z
        .array(leaf<string>(`a TLS 1.3 cipher suite (${ALL_SUITES.map((c) => c.name).join(', ')})`, (v) => typeof v === 'string' && suiteByName(v) !== undefined))
        .min(1)
        .optional(),
    })
    .optional(),
  routes: z.array(routeSchema),
  services: z
    .strictObject({ video: serviceSchema.optional(), text: textServiceSchema.optional(), control: serviceSchema.optional() })
    .optional(),
});

type RawConfig = z.output<typeof configSchema>;

// ---------------------------------------------------------------------------------------------------------------

const KIND: Record<string, string> = { object: 'a mapping', array: 'a list', string: 'a string', number: 'a number', boolean: 'true or false' };

function dotted(path: readonly PropertyKey[]): string {
  return path.length === 0 ? '(top level)' : path.map(String).join('.');
}

/** Turns zod issues into `<dotted.path>: <expected>` lines. */
function describeIssues(issues: readonly z.core.$ZodIssue[]): string[] {
  const out: string[] = [];
  for (const iss of issues) {
    const at = dotted(iss.path);
    switch (iss.code) {
      case 'unrecognized_keys':
        for (const k of iss.keys) out.push(`${iss.path.length ? `${at}.` : ''}${k}: unknown key`);
        break;
      case 'invalid_type': {
        const want = KIND[iss.expected] ?? iss.expected;
        out.push(iss.input === undefined ? `${at}: missing; expected ${want}` : `${at}: expected ${want}, got ${show(iss.input)}`);
        break;
      }
      case 'invalid_union':
        // Only healthCheck is a union (false | mapping): report against the mapping when a mapping was given.
        if (iss.input !== null && typeof iss.input === 'object' && !Array.isArray(iss.input) && iss.errors[1]) {
          out.push(...describeIssues(iss.errors[1].map((e) => ({ ...e, path: [...iss.path, ...e.path] }))));
        } else {
          out.push(`${at}: expected a mapping or false, got ${show(iss.input)}`);
        }
        break;
      default:
        out.push(`${at}: ${iss.message}`);
    }
  }
  return out;
}

/** Checks that need more than one field; run on whatever parts of the raw input have the right shape. */
function crossChecks(raw: unknown): string[] {
  const out: string[] = [];
  if (raw === null || typeof raw !== 'object') return out;
  const r = raw as Record<string, unknown>;
  if (Array.isArray(r.routes)) {
    if (r.routes.length === 0) out.push('routes: expected at least one route');
    const seen = new Map<string, number>();
    r.routes.forEach((route: unknown, i) => {
      if (route === null || typeof route !== 'object' || Array.isArray(route)) return;
      const rt = route as Record<string, unknown>;
      const hasPrefix = rt.prefix !== undefined;
      const hasExact = rt.exact !== undefined;
      if (hasPrefix === hasExact) out.push(`routes.${i}: expected exactly one of "prefix" or "exact"${hasPrefix ? ', got both' : ''}`);
      if (typeof rt.name === 'string') {
        const prev = seen.get(rt.name);
        if (prev !== undefined) out.push(`routes.${i}.name: expected a unique route name, "${rt.name}" is also routes.${prev}`);
        else seen.set(rt.name, i);
      }
      if (Array.isArray(rt.upstreams) && rt.upstreams.length === 0) out.push(`routes.${i}.upstreams: expected at least one upstream URL`);
      if (Array.isArray(rt.methods) && rt.methods.length === 0) out.push(`routes.${i}.methods: expected at least one method (or leave methods out)`);
      const h = rt.headers as Record<string, unknown> | undefined;
      if (h && typeof h === 'object') {
        if (h.set && typeof h.set === 'object' && !Array.isArray(h.set)) {
          for (const name of Object.keys(h.set)) {
            if (!FIELD_NAME.test(name)) out.push(`routes.${i}.headers.set.${name}: expected a lower-case header field name`);
            else if (RESERVED_FIELDS.has(name)) out.push(`routes.${i}.headers.set.${name}: this field is managed by the proxy and cannot be set`);
          }
        }
        if (Array.isArray(h.remove)) {
          h.remove.forEach((name: unknown, j) => {
            if (typeof name === 'string' && RESERVED_FIELDS.has(name)) out.push(`routes.${i}.headers.remove.${j}: "${name}" is managed by the proxy and cannot be removed`);
          });
        }
      }
    });
  }
  if (Array.isArray(r.listen) && r.listen.length === 0) out.push('listen: expected at least one address');
  const hc = r.healthCheck as Record<string, unknown> | undefined;
  if (hc && typeof hc === 'object' && isPosInt(hc.timeoutMs)) {
    const interval = isPosInt(hc.intervalMs) ? (hc.intervalMs as number) : DEFAULT_HEALTH_CHECK.intervalMs;
    if ((hc.timeoutMs as number) > interval) out.push(`healthCheck.timeoutMs: expected at most intervalMs (${interval}), got ${String(hc.timeoutMs)}`);
  }
  return out;
}

function normalize(raw: RawConfig, source: string, baseDir: string, keylogDefault: boolean): Config {
  const at = (p: string): string => resolve(baseDir, p);
  const dataDir = at(raw.dataDir ?? DEFAULT_DATA_DIR);
  const keylogRaw = raw.keylog ?? keylogDefault;
  const keylog = keylogRaw === true ? resolve(dataDir, 'keylog.txt') : keylogRaw === false ? null : at(keylogRaw);
  const accessLogRaw = raw.accessLog ?? 'stdout';
  const accessLog = accessLogRaw === false || accessLogRaw === 'stdout' ? accessLogRaw : at(accessLogRaw);
  const hc = raw.healthCheck;
  return {
    source,
    listen: (raw.listen ?? DEFAULT_LISTEN).map((s) => parseListenAddress(s)!),
    tls: raw.tls ? { cert: at(raw.tls.cert), key: at(raw.tls.key) } : null,
    dataDir,
    keylog,
    qlog: raw.qlog ? at(raw.qlog) : null,
    accessLog,
    timeouts: { ...DEFAULT_TIMEOUTS, ...stripUndefined(raw.timeouts ?? {}) },
    healthCheck: hc === false ? null : { ...DEFAULT_HEALTH_CHECK, ...stripUndefined(hc ?? {}) },
    quic: { ...DEFAULT_QUIC, ...stripUndefined(raw.quic ?? {}) },
    routes: raw.routes.map((r) => ({
      name: r.name,
      prefix: r.prefix ?? null,
      exact: r.exact ?? null,
      host: r.host ? r.host.toLowerCase().replace(/\.$/, '') : null,
      methods: r.methods ? [...new Set(r.methods)] : null,
      upstreams: r.upstreams.map((u) => parseUpstreamUrl(u)!),
      balance: r.balance ?? 'round-robin',
      headers: { set: { ...(r.headers?.set ?? {}) }, remove: [...(r.headers?.remove ?? [])] },
    })),
    services: Object.fromEntries(Object.entries(raw.services ?? {}).filter(([, v]) => v !== undefined).map(([k, v]) => [k, stripUndefined(v!)])),
  };
}

function stripUndefined<T extends object>(o: T): { [K in keyof T]: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]: Exclude<T[K], undefined> };
}

export interface ParseOptions {
  /** Directory relative paths are resolved against (default: the directory of sourceName, else the cwd). */
  baseDir?: string;
}

/**
 * Parses and validates YAML configuration text. `sourceName` prefixes every error line (normally the file path).
 * Throws ConfigError listing every problem.
 */
export function parseConfig(text: string, sourceName: string, options: ParseOptions = {}): Config {
  const doc = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new ConfigError(
      sourceName,
      doc.errors.map((e) => {
        const pos = e.linePos?.[0];
        const where = pos ? `line ${pos.line}, column ${pos.col}` : '(top level)';
        return `${where}: YAML syntax error: ${e.message.split('\n')[0]!.replace(/ at line \d+, column \d+:?$/, '')}`;
      }),
    );
  }
  const raw: unknown = doc.toJS({ maxAliasCount: 100 });
  if (raw === null || raw === undefined || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(sourceName, [`(top level): expected a mapping with at least "routes", got ${raw == null ? 'an empty document' : show(raw)}`]);
  }
  const result = configSchema.safeParse(raw, { reportInput: true });
  const problems = [...(result.success ? [] : describeIssues(result.error.issues)), ...crossChecks(raw)];
  if (!result.success || problems.length > 0) throw new ConfigError(sourceName, problems);
  const baseDir = options.baseDir ?? (sourceName.startsWith('<') ? process.cwd() : dirname(resolve(sourceName)));
  return normalize(result.data, sourceName, baseDir, false);
}

/** Reads and validates a configuration file. A missing or unreadable file is a ConfigError too. */
export function loadConfig(path: string): Config {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EISDIR' ? 'is a directory, expected a file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new ConfigError(path, [`cannot read the configuration: ${why}`]);
  }
  return parseConfig(text, path, { baseDir: dirname(resolve(path)) });
}

/**
 * The built-in configuration used without a file: /video, /text, /control to the local services on
 * 127.0.0.1:5001/5002/5003 (which `qsr up` starts), dev certificate and key log in ./.qsr.
 */
export function defaultConfig(baseDir: string = process.cwd()): Config {
  const raw: RawConfig = {
    routes: [
      { name: 'video', prefix: '/video', upstreams: ['http://127.0.0.1:5001'] },
      { name: 'text', prefix: '/text', upstreams: ['http://127.0.0.1:5002'] },
      { name: 'control', prefix: '/control', upstreams: ['http://127.0.0.1:5003'] },
    ],
    services: { video: { port: 5001 }, text: { port: 5002 }, control: { port: 5003 } },
  };
  return normalize(raw, '<built-in>', baseDir, true);
}
