// Browser peers (Chromium, Firefox) are only ever pointed at a loopback https origin: the check both adapters use.

/** Host and port of a loopback https URL (127.0.0.1 or localhost, explicit port); throws for anything else. */
export function loopbackOrigin(url: string): { host: string; port: number; origin: string } {
  const m = /^https:\/\/(127\.0\.0\.1|localhost):(\d{1,5})(\/[^\s]*)?$/.exec(url);
  const port = m === null ? NaN : Number(m[2]);
  if (m === null || !(port > 0 && port < 65536)) {
    throw new Error(`refusing URL ${url}: only https://127.0.0.1:PORT/... or https://localhost:PORT/... are allowed`);
  }
  // Parse again with WHATWG URL to make sure nothing (userinfo, odd escapes) changes the host Chromium will see.
  const u = new URL(url);
  if (u.hostname !== m[1] || u.port !== m[2] || u.username !== '' || u.password !== '') {
    throw new Error(`refusing URL ${url}: host does not parse as loopback`);
  }
  return { host: m[1]!, port, origin: `${m[1]!}:${port}` };
}
