/**
 * Header rewriting between the HTTP/3 client side and the HTTP/1.1 upstream side.
 *
 * Request (HTTP/3 -> HTTP/1.1): pseudo-headers and connection-specific fields (RFC 9110 §7.6.1, RFC 9114 §4.2:
 * connection, keep-alive, proxy-connection, transfer-encoding, upgrade, te, and any field the Connection field
 * names) are dropped; `expect` is dropped too (the upstream client does not support 100-continue); split `cookie`
 * fields are joined with "; " (RFC 9114 §4.2.1); `host` is set from :authority; `forwarded` (RFC 7239),
 * `x-forwarded-for` and `via` (RFC 9110 §7.6.3) are appended to; `x-forwarded-proto` is set to https. The route's
 * rules run last: `remove`, then `set`.
 *
 * Response (HTTP/1.1 -> HTTP/3): connection-specific fields are dropped (HTTP/3 forbids them) and `via` is
 * appended to.
 */
import { isIP } from 'node:net';
import { util as undiciUtil } from 'undici';

/** Ordered (name, value) pairs, names lower-case, as the HTTP/3 layer gives them (pseudo-headers allowed). */
export type FieldList = ReadonlyArray<readonly [string, string]>;
/** What the upstream HTTP client takes: one entry per name, repeated fields as arrays. */
export type UpstreamHeaders = Record<string, string | string[]>;

export interface HeaderRules {
  set: Readonly<Record<string, string>>;
  remove: readonly string[];
}

export interface ForwardContext {
  /** The request's :authority (host[:port]). */
  authority: string;
  /** The client's IP address (no port); IPv4-mapped IPv6 is shown as IPv4. */
  clientAddress: string;
  /** The route's header rules. */
  rules?: HeaderRules | null;
}

export const VIA_NAME = 'quic-stream-router';

const CONNECTION_SPECIFIC: ReadonlySet<string> = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade', 'te']);
/** Request fields the proxy itself writes or must not pass on. */
const REQUEST_DROP: ReadonlySet<string> = new Set([...CONNECTION_SPECIFIC, 'host', 'expect']);

const NO_TOKENS: ReadonlySet<string> = new Set();

/** Adds the names listed in one Connection field value (lower-case) to `out`. */
function addConnectionTokens(out: Set<string>, v: string): void {
  if (!v.includes(',')) {
    const n = v.trim().toLowerCase();
    if (n) out.add(n);
    return;
  }
  for (const t of v.split(',')) {
    const n = t.trim().toLowerCase();
    if (n) out.add(n);
  }
}

function appendValue(h: UpstreamHeaders, name: string, value: string): void {
  const cur = h[name];
  if (cur === undefined) h[name] = value;
  else if (Array.isArray(cur)) cur.push(value);
  else h[name] = [cur, value];
}

/** Joins repeated values with ", " (for list-valued fields we extend, like via and x-forwarded-for). */
function joined(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join(', ') : v;
}

/** The client address as it appears in logs and x-forwarded-for: IPv4-mapped IPv6 unwrapped. */
export function clientIp(address: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  return m ? m[1]! : address;
}

function quoted(s: string): string {
  return `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"`;
}

/** RFC 7239 forwarded-element for this hop: for="<ip>" (IPv6 in brackets); proto=https; host="<authority>". */
export function forwardedElement(clientAddress: string, authority: string): string {
  // The requests of one connection share both: the last element is kept.
  if (clientAddress === lastForwarded.address && authority === lastForwarded.authority) return lastForwarded.element;
  const ip = clientIp(clientAddress);
  const node = isIP(ip) === 6 ? `[${ip}]` : ip;
  const element = `for=${quoted(node)};proto=https;host=${quoted(authority)}`;
  lastForwarded = { address: clientAddress, authority, element };
  return element;
}

let lastForwarded = { address: '', authority: '', element: '' };

/** Upstream request headers from the HTTP/3 request's fields. */
export function upstreamRequestHeaders(fields: FieldList, ctx: ForwardContext): UpstreamHeaders {
  let nominated: ReadonlySet<string> = NO_TOKENS;
  for (const [n, v] of fields) {
    if (n !== 'connection') continue;
    if (nominated === NO_TOKENS) nominated = new Set<string>();
    addConnectionTokens(nominated as Set<string>, v);
  }
  const out: UpstreamHeaders = {};
  const cookies: string[] = [];
  for (const [name, value] of fields) {
    if (name.charCodeAt(0) === 0x3a /* ':' */ || REQUEST_DROP.has(name) || nominated.has(name)) continue;
    if (name === 'cookie') cookies.push(value);
    else appendValue(out, name, value);
  }
  if (cookies.length > 0) out.cookie = cookies.join('; ');
  out.host = ctx.authority;

  const element = forwardedElement(ctx.clientAddress, ctx.authority);
  const fwd = joined(out.forwarded);
  out.forwarded = fwd ? `${fwd}, ${element}` : element;
  const xff = joined(out['x-forwarded-for']);
  const ip = clientIp(ctx.clientAddress);
  out['x-forwarded-for'] = xff ? `${xff}, ${ip}` : ip;
  out['x-forwarded-proto'] = 'https';
  const via = joined(out.via);
  out.via = via ? `${via}, 3 ${VIA_NAME}` : `3 ${VIA_NAME}`;

  if (ctx.rules) {
    for (const name of ctx.rules.remove) delete out[name];
    for (const [name, value] of Object.entries(ctx.rules.set)) out[name] = value;
  }
  return out;
}

/** HTTP/3 response fields (no :status) from the upstream's response headers. */
export function downstreamResponseHeaders(headers: Readonly<Record<string, string | string[] | undefined>>): [string, string][] {
  const conn = headers.connection;
  let nominated: ReadonlySet<string> = NO_TOKENS;
  if (conn !== undefined) {
    const set = new Set<string>();
    if (Array.isArray(conn)) for (const v of conn) addConnectionTokens(set, v);
    else addConnectionTokens(set, conn);
    nominated = set;
  }
  const out: [string, string][] = [];
  let via: string | undefined;
  for (const rawName in headers) {
    if (!Object.prototype.hasOwnProperty.call(headers, rawName)) continue;
    const value = headers[rawName];
    if (value === undefined) continue;
    const name = rawName.toLowerCase();
    if (CONNECTION_SPECIFIC.has(name) || nominated.has(name)) continue;
    if (name === 'via') {
      via = joined(value);
      continue;
    }
    if (Array.isArray(value)) for (const v of value) out.push([name, v]);
    else out.push([name, value]);
  }
  out.push(['via', via ? `${via}, 1.1 ${VIA_NAME}` : `1.1 ${VIA_NAME}`]);
  return out;
}

/**
 * downstreamResponseHeaders from the upstream's raw response head (name, value, ... as undici's parser gives them:
 * names as sent, values as bytes), without building the header record first. Fields stay in the order received.
 */
export function downstreamResponseFields(raw: readonly Buffer[]): [string, string][] {
  const out: [string, string][] = [];
  let nominated: Set<string> | null = null;
  let via: string | undefined;
  for (let i = 0; i + 1 < raw.length; i += 2) {
    const name = undiciUtil.headerNameToString(raw[i]);
    const value = raw[i + 1].toString('latin1');
    if (CONNECTION_SPECIFIC.has(name)) {
      if (name === 'connection') addConnectionTokens((nominated ??= new Set<string>()), value);
      continue;
    }
    if (name === 'via') {
      via = via === undefined ? value : `${via}, ${value}`;
      continue;
    }
    out.push([name, value]);
  }
  out.push(['via', via ? `${via}, 1.1 ${VIA_NAME}` : `1.1 ${VIA_NAME}`]);
  if (nominated === null) return out;
  // Fields the Connection field names (RFC 9110 §7.6.1), wherever they came: via included.
  const kept = out.filter(([n]) => !nominated.has(n));
  if (nominated.has('via')) kept.push(['via', `1.1 ${VIA_NAME}`]);
  return kept;
}
