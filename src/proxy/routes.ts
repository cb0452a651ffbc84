/**
 * Request routing: picks the configured route for a request by path, host (:authority) and method.
 *
 * Matching rules:
 * - path: `exact` equals the path; `prefix` matches the path itself or anything below it at a "/" boundary
 *   (/video matches /video, /video/x and /video?x, never /videos; a prefix ending in "/" matches everything
 *   under it). The query is ignored. Before matching, the path is normalised (RFC 3986 §6.2.2): percent-encoded
 *   unreserved characters are decoded, other percent-encodings upper-cased, and dot segments removed (§5.2.4),
 *   so /video/../control is matched (and should be forwarded) as /control.
 * - host: the :authority without its port, lower-case, trailing dot dropped; a route with `host` matches only it.
 * - methods: a route with `methods` matches only those (case-sensitive, RFC 9110 §9.1).
 * Among the routes that match, the most specific wins, compared in this order: exact beats prefix; a longer prefix
 * beats a shorter one; a route with a host beats one without; a route with methods beats one without. Remaining
 * ties go to the route that comes first in the file.
 */

/** The fields of a route the router looks at (RouteConfig from config.ts has them all). */
export interface RouteRule {
  name: string;
  prefix: string | null;
  exact: string | null;
  host: string | null;
  methods: readonly string[] | null;
}

export interface RouteRequest {
  method: string;
  /** :authority (host[:port]); '' when the request had none. */
  authority: string;
  /** :path as received, with its query. */
  path: string;
}

export interface RouteMatch<R extends RouteRule = RouteRule> {
  route: R;
  /** Position of the route in the configuration. */
  index: number;
  /** Normalised path (no query) the route was matched against. */
  path: string;
  /** Normalised path plus the original query: what to send upstream so it sees what was routed. */
  forwardPath: string;
}

interface Compiled<R> {
  route: R;
  index: number;
  exact: string | null;
  prefix: string | null;
  host: string | null;
  methods: ReadonlySet<string> | null;
}

export class Router<R extends RouteRule = RouteRule> {
  /** Routes sorted most specific first (stable: file order breaks ties). */
  private readonly ordered: Compiled<R>[];

  constructor(routes: readonly R[]) {
    const compiled = routes.map((route, index) => {
      if ((route.prefix === null) === (route.exact === null)) throw new Error(`route ${route.name}: exactly one of prefix or exact`);
      return {
        route,
        index,
        exact: route.exact,
        prefix: route.prefix,
        host: route.host === null ? null : normalizeHost(route.host),
        methods: route.methods === null ? null : new Set(route.methods),
      };
    });
    this.ordered = compiled.sort((a, b) => compareSpecificity(a, b) || a.index - b.index);
  }

  match(req: RouteRequest): RouteMatch<R> | null {
    const q = req.path.indexOf('?');
    const rawPath = q === -1 ? req.path : req.path.slice(0, q);
    if (!rawPath.startsWith('/')) return null;
    const path = normalizePath(rawPath);
    const host = hostOf(req.authority);
    for (const c of this.ordered) {
      if (c.exact !== null ? path !== c.exact : !prefixMatches(c.prefix!, path)) continue;
      if (c.host !== null && c.host !== host) continue;
      if (c.methods !== null && !c.methods.has(req.method)) continue;
      return { route: c.route, index: c.index, path, forwardPath: q === -1 ? path : path + req.path.slice(q) };
    }
    return null;
  }
}

/** Negative when a is more specific than b. */
function compareSpecificity<R>(a: Compiled<R>, b: Compiled<R>): number {
  const ae = a.exact !== null ? 1 : 0;
  const be = b.exact !== null ? 1 : 0;
  if (ae !== be) return be - ae;
  if (ae === 0) {
    const d = b.prefix!.length - a.prefix!.length;
    if (d !== 0) return d;
  }
  const ah = a.host !== null ? 1 : 0;
  const bh = b.host !== null ? 1 : 0;
  if (ah !== bh) return bh - ah;
  const am = a.methods !== null ? 1 : 0;
  const bm = b.methods !== null ? 1 : 0;
  return bm - am;
}

/** Prefix match at a segment boundary. */
export function prefixMatches(prefix: string, path: string): boolean {
  if (!path.startsWith(prefix)) return false;
  return path.length === prefix.length || prefix.endsWith('/') || path.charCodeAt(prefix.length) === 0x2f;
}

/** Host part of an authority, lower-case, without port or trailing dot; IPv6 keeps its brackets. */
export function hostOf(authority: string): string {
  let h: string;
  if (authority.startsWith('[')) {
    const end = authority.indexOf(']');
    h = end === -1 ? authority : authority.slice(0, end + 1);
  } else {
    const colon = authority.lastIndexOf(':');
    h = colon === -1 ? authority : authority.slice(0, colon);
  }
  return normalizeHost(h);
}

function normalizeHost(h: string): string {
  h = h.toLowerCase();
  return h.endsWith('.') ? h.slice(0, -1) : h;
}

const HEX = '0123456789ABCDEF';
function isUnreserved(c: number): boolean {
  return (c >= 0x41 && c <= 0x5a) || (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x2e || c === 0x5f || c === 0x7e;
}

/**
 * RFC 3986 §6.2.2 normalisation of an absolute path: decode percent-encoded unreserved characters, upper-case
 * the hex of the others, then remove dot segments (§5.2.4). Fast path when there is nothing to do.
 */
export function normalizePath(path: string): string {
  if (path.indexOf('%') === -1 && path.indexOf('/.') === -1) return path;
  let p = '';
  for (let i = 0; i < path.length; i++) {
    const ch = path[i]!;
    if (ch === '%' && i + 2 < path.length && /^[0-9A-Fa-f]{2}$/.test(path.slice(i + 1, i + 3))) {
      const v = parseInt(path.slice(i + 1, i + 3), 16);
      p += isUnreserved(v) ? String.fromCharCode(v) : `%${HEX[v >> 4]}${HEX[v & 15]}`;
      i += 2;
    } else {
      p += ch;
    }
  }
  return removeDotSegments(p);
}

/** RFC 3986 §5.2.4 for an absolute path. */
function removeDotSegments(path: string): string {
  const segs = path.split('/');
  const out: string[] = [];
  // segs[0] is '' (the path starts with '/').
  for (let i = 1; i < segs.length; i++) {
    const s = segs[i]!;
    const last = i === segs.length - 1;
    if (s === '.') {
      if (last) out.push('');
    } else if (s === '..') {
      out.pop();
      if (last) out.push('');
    } else {
      out.push(s);
    }
  }
  return '/' + out.join('/');
}
