/**
 * HTTP/3 message validation (RFC 9114 §4.1.2 malformed messages, §4.2 field names and connection-specific fields,
 * §4.2.1 trailers, §4.3 pseudo-header fields, §4.3.1 request, §4.3.2 response; RFC 9110 §8.6 Content-Length).
 * A violation is a malformed message: a stream error H3_MESSAGE_ERROR (§4.1.2).
 */
import { H3Error, H3ErrorCode } from './errors.js';

export type HeaderList = [string, string][];

export interface RequestHead {
  method: string;
  scheme: string;
  /** :authority, or the Host field when :authority is absent; '' when neither. */
  authority: string;
  /** :path ('' for CONNECT). */
  path: string;
  /** Regular fields in order (no pseudo-headers). */
  fields: HeaderList;
  contentLength: number | null;
}

export interface ResponseHead {
  status: number;
  fields: HeaderList;
  contentLength: number | null;
}

const REQUEST_PSEUDO = new Set([':method', ':scheme', ':authority', ':path']);
/** Connection-specific fields (§4.2): forbidden in HTTP/3. */
const CONNECTION_SPECIFIC = new Set(['connection', 'keep-alive', 'proxy-connection', 'transfer-encoding', 'upgrade']);

function malformed(msg: string): H3Error {
  return new H3Error(H3ErrorCode.H3_MESSAGE_ERROR, `malformed message: ${msg}`, 'stream');
}

/** tchar (RFC 9110 §5.6.2) without uppercase letters: what a regular HTTP/3 field name may contain. */
const NAME_CHAR = (() => {
  const t = new Uint8Array(256);
  for (const c of "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz") t[c.charCodeAt(0)] = 1;
  return t;
})();

/** Checks a regular field's name and value (§4.2, §10.3). */
export function checkField(name: string, value: string): void {
  if (name.length === 0) throw malformed('empty field name');
  for (let i = 0; i < name.length; i++) {
    const c = name.charCodeAt(i);
    if (c >= 0x41 && c <= 0x5a) throw malformed(`uppercase field name "${name}"`);
    if (c > 0xff || !NAME_CHAR[c]) throw malformed(`invalid character in field name "${name}"`);
  }
  checkValue(name, value);
  if (CONNECTION_SPECIFIC.has(name)) throw malformed(`connection-specific field "${name}"`);
  if (name === 'te' && value.trim().toLowerCase() !== 'trailers') throw malformed('te other than "trailers"');
}

function checkValue(name: string, value: string): void {
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i);
    if (c === 0x0 || c === 0x0a || c === 0x0d) throw malformed(`CR, LF or NUL in the value of "${name}"`);
  }
}

/** Content-Length (RFC 9110 §8.6): digits only; repeated values must agree. null when absent. */
export function parseContentLength(values: string[]): number | null {
  let n: number | null = null;
  for (const raw of values) {
    for (const part of raw.split(',')) {
      const v = part.trim();
      if (!/^[0-9]{1,15}$/.test(v)) throw malformed(`invalid content-length "${raw}"`);
      const x = Number(v);
      if (n !== null && n !== x) throw malformed('conflicting content-length values');
      n = x;
    }
  }
  return n;
}

/** Splits pseudo-headers from regular fields, checking order, duplicates and each regular field. */
function split(list: HeaderList, allowed: ReadonlySet<string>): { pseudo: Map<string, string>; fields: HeaderList; cl: string[] } {
  const pseudo = new Map<string, string>();
  const fields: HeaderList = [];
  const cl: string[] = [];
  for (const [name, value] of list) {
    if (name.startsWith(':')) {
      if (fields.length) throw malformed(`pseudo-header ${name} after a regular field`);
      if (!allowed.has(name)) throw malformed(`pseudo-header ${name} not allowed here`);
      if (pseudo.has(name)) throw malformed(`duplicate pseudo-header ${name}`);
      checkValue(name, value);
      pseudo.set(name, value);
    } else {
      checkField(name, value);
      if (name === 'content-length') cl.push(value);
      fields.push([name, value]);
    }
  }
  return { pseudo, fields, cl };
}

/** A request header section (§4.3.1). Throws H3Error(H3_MESSAGE_ERROR, stream). */
export function validateRequest(list: HeaderList): RequestHead {
  const { pseudo, fields, cl } = split(list, REQUEST_PSEUDO);
  const method = pseudo.get(':method');
  if (method === undefined) throw malformed('missing :method');
  if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(method)) throw malformed('invalid :method');
  const hosts = fields.filter(([n]) => n === 'host').map(([, v]) => v);
  const auth = pseudo.get(':authority');
  if (method === 'CONNECT') {
    // §4.4: CONNECT carries :authority only.
    if (pseudo.has(':scheme') || pseudo.has(':path')) throw malformed('CONNECT with :scheme or :path');
    if (!auth) throw malformed('CONNECT without :authority');
    return { method, scheme: '', authority: auth, path: '', fields, contentLength: parseContentLength(cl) };
  }
  const scheme = pseudo.get(':scheme');
  const path = pseudo.get(':path');
  if (scheme === undefined) throw malformed('missing :scheme');
  if (path === undefined) throw malformed('missing :path');
  if (path === '') throw malformed('empty :path');
  if (path !== '*' && !path.startsWith('/') && (scheme === 'http' || scheme === 'https')) {
    throw malformed(':path must be "*" or start with "/"');
  }
  if (path === '*' && method !== 'OPTIONS') throw malformed(':path "*" is only for OPTIONS');
  if (hosts.length > 1) throw malformed('more than one host field');
  if (auth !== undefined && hosts.length === 1 && hosts[0] !== auth) throw malformed(':authority and host differ');
  const authority = auth ?? hosts[0] ?? '';
  if ((scheme === 'http' || scheme === 'https') && authority === '') throw malformed(`${scheme} request without :authority or host`);
  return { method, scheme, authority, path, fields, contentLength: parseContentLength(cl) };
}

/** A response header section (§4.3.2): :status only, three digits, not 101 (§4.5). */
export function validateResponse(list: HeaderList): ResponseHead {
  const { pseudo, fields, cl } = split(list, new Set([':status']));
  const s = pseudo.get(':status');
  if (s === undefined) throw malformed('missing :status');
  if (!/^[1-5][0-9][0-9]$/.test(s)) throw malformed(`invalid :status "${s}"`);
  const status = Number(s);
  if (status === 101) throw malformed('101 Switching Protocols is not used in HTTP/3');
  return { status, fields, contentLength: parseContentLength(cl) };
}

/** A trailer section (§4.1, §4.3): no pseudo-headers; regular field rules. */
export function validateTrailers(list: HeaderList): HeaderList {
  for (const [name, value] of list) {
    if (name.startsWith(':')) throw malformed(`pseudo-header ${name} in trailers`);
    checkField(name, value);
  }
  return list;
}

/**
 * Normalizes caller-supplied headers for sending: lowercase names, values as strings, arrays expanded. Appended to
 * `out` when given (e.g. after the pseudo-headers).
 */
export function toHeaderList(h: HeaderList | Record<string, string | number | string[]> | undefined, out: HeaderList = []): HeaderList {
  if (!h) return out;
  if (Array.isArray(h)) {
    for (const [n, v] of h) out.push([n.toLowerCase(), typeof v === 'string' ? v : String(v)]);
    return out;
  }
  for (const [n, v] of Object.entries(h)) {
    const name = n.toLowerCase();
    if (Array.isArray(v)) for (const x of v) out.push([name, String(x)]);
    else out.push([name, String(v)]);
  }
  return out;
}

/**
 * Joins a field list into a record: repeated fields with ', ' (RFC 9110 §5.3), except cookie with '; ' (RFC 9114
 * §4.2.1) and set-cookie, which cannot be comma-joined (RFC 6265 §3), with '\n'. rawHeaders keeps every line.
 */
export function toRecord(list: HeaderList): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [n, v] of list) {
    if (n in out) out[n] = n === 'cookie' ? `${out[n]}; ${v}` : n === 'set-cookie' ? `${out[n]}\n${v}` : `${out[n]}, ${v}`;
    else out[n] = v;
  }
  return out;
}
