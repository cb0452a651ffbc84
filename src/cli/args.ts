/** Parsing and validation helpers for command-line values; errors name the flag. */
import { suiteByName, type CipherSuite } from '../quic/crypto/suites.js';

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** "127.0.0.1:4433", "[::1]:4433", ":4433" (loopback 127.0.0.1) or "4433". */
export function parseHostPort(flag: string, value: string, defaultHost = '127.0.0.1'): { address: string; port: number } {
  let host = defaultHost;
  let portText = value;
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(value) ?? /^([^:]*):(\d+)$/.exec(value);
  if (m) {
    host = m[1] || defaultHost;
    portText = m[2];
  }
  if (!/^\d+$/.test(portText)) throw new UsageError(`${flag}: expected HOST:PORT or PORT, got '${value}'`);
  const port = Number(portText);
  if (port < 0 || port > 65535) throw new UsageError(`${flag}: port ${port} is out of range 0-65535`);
  if (host === 'localhost') host = '127.0.0.1';
  return { address: host, port };
}

/** An https URL with host and port (default 443). */
export function parseHttpsUrl(flag: string, value: string): { host: string; port: number; url: URL } {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new UsageError(`${flag}: '${value}' is not a URL`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`${flag}: only https:// URLs are supported, got '${url.protocol}'`);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  return { host, port: url.port ? Number(url.port) : 443, url };
}

export function parseIntFlag(flag: string, value: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(value)) throw new UsageError(`${flag}: expected a whole number, got '${value}'`);
  const n = Number(value);
  if (n < min || n > max) throw new UsageError(`${flag}: ${n} is out of range ${min}-${max}`);
  return n;
}

/** A comma-separated list of TLS 1.3 suite names (`--ciphers`), or undefined for the default; UsageError names the flag. */
export function parseSuites(flag: string, list: string | undefined): CipherSuite[] | undefined {
  if (!list) return undefined;
  return list.split(',').map((name) => {
    const s = suiteByName(name.trim());
    if (!s) throw new UsageError(`${flag}: unknown cipher suite '${name}' (TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256)`);
    return s;
  });
}
