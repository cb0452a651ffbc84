/**
 * Which library does QUIC packet protection (RFC 9001 §5.3 AEAD) for ChaCha20-Poly1305: node:crypto, always present,
 * or libsodium through the optional dependency `sodium-native`, which seals and opens without creating a cipher
 * object per packet (node:crypto cannot re-key an AEAD context). AES-GCM always runs on node:crypto (libsodium has no
 * AES-128-GCM). ChaCha20 header protection (§5.4.4) runs in a JavaScript ChaCha20 block (chacha20.ts) with either
 * backend: it measured faster than both a node:crypto cipher per sample and a call into libsodium.
 *
 * Selection: QSR_CRYPTO=node|sodium|auto (default auto: sodium when it loads). A failed load changes nothing but speed;
 * the server's default cipher-suite preference puts ChaCha20 first when sodium is active (tls.ts).
 */
import { createRequire } from 'node:module';

/** The subset of sodium-native this stack calls (libsodium's ChaCha20-Poly1305 IETF, RFC 8439, and ChaCha20). */
export interface SodiumBinding {
  crypto_aead_chacha20poly1305_ietf_encrypt_detached(
    c: Uint8Array,
    mac: Uint8Array,
    m: Uint8Array,
    ad: Uint8Array | null,
    nsec: null,
    npub: Uint8Array,
    k: Uint8Array,
  ): number;
  /** Throws when the tag does not verify (libsodium then zeroes m). */
  crypto_aead_chacha20poly1305_ietf_decrypt_detached(
    m: Uint8Array,
    nsec: null,
    c: Uint8Array,
    mac: Uint8Array,
    ad: Uint8Array | null,
    npub: Uint8Array,
    k: Uint8Array,
  ): void;
  crypto_stream_chacha20_ietf_xor_ic(c: Uint8Array, m: Uint8Array, n: Uint8Array, ic: number, k: Uint8Array): void;
}

export type BackendName = 'node' | 'sodium';
export type BackendRequest = BackendName | 'auto';

export interface CryptoBackendInfo {
  /** The backend that protects ChaCha20-Poly1305 packets. */
  name: BackendName;
  /** What QSR_CRYPTO (or setCryptoBackend) asked for. */
  requested: BackendRequest;
  /** One line for people, e.g. "sodium (libsodium via sodium-native 5.1.0; AES-GCM on node:crypto)". */
  description: string;
  /** Why sodium is not used when it was requested or auto-selected and did not load; null otherwise. */
  sodiumError: string | null;
  /**
   * A configuration error: QSR_CRYPTO has an unknown value, or asks for sodium and it did not load. The stack then
   * runs on node:crypto; the CLI refuses to start (cryptoBackendOrThrow).
   */
  error: string | null;
}

export interface SodiumLoad {
  binding: SodiumBinding | null;
  version: string | null;
  error: string | null;
}

const SODIUM_FUNCTIONS = [
  'crypto_aead_chacha20poly1305_ietf_encrypt_detached',
  'crypto_aead_chacha20poly1305_ietf_decrypt_detached',
  'crypto_stream_chacha20_ietf_xor_ic',
] as const;

/** Loads `moduleName` (sodium-native) without throwing: a missing package or prebuilt binary gives binding null. */
export function loadSodium(moduleName = 'sodium-native'): SodiumLoad {
  const require = createRequire(import.meta.url);
  let mod: Record<string, unknown>;
  try {
    mod = require(moduleName) as Record<string, unknown>;
  } catch (err) {
    return { binding: null, version: null, error: `cannot load ${moduleName}: ${firstLine(err)}` };
  }
  for (const f of SODIUM_FUNCTIONS)
    if (typeof mod[f] !== 'function') return { binding: null, version: null, error: `${moduleName} has no ${f}` };
  let version: string | null = null;
  try {
    version = (require(`${moduleName}/package.json`) as { version?: string }).version ?? null;
  } catch {
    // Not every build exports package.json; the version is only shown to people.
  }
  return { binding: mod as unknown as SodiumBinding, version, error: null };
}

function firstLine(err: unknown): string {
  return (err instanceof Error ? err.message : String(err)).split('\n')[0]!;
}

/** Decides the backend for a request and a load attempt (pure; exported for tests). */
export function resolveBackend(requestRaw: string | undefined, load: () => SodiumLoad): { info: CryptoBackendInfo; sodium: SodiumBinding | null } {
  const raw = (requestRaw ?? '').trim().toLowerCase();
  const known = raw === '' || raw === 'auto' || raw === 'node' || raw === 'sodium';
  const requested: BackendRequest = raw === 'node' || raw === 'sodium' ? raw : 'auto';
  const node = (sodiumError: string | null, error: string | null): { info: CryptoBackendInfo; sodium: null } => ({
    info: {
      name: 'node',
      requested,
      description: `node:crypto (OpenSSL ${process.versions.openssl})${sodiumError !== null && requested === 'auto' ? '; sodium-native not loaded' : ''}`,
      sodiumError,
      error,
    },
    sodium: null,
  });
  if (!known) return node(null, `QSR_CRYPTO: expected node, sodium or auto, got '${requestRaw}'`);
  if (requested === 'node') return node(null, null);
  const s = load();
  if (s.binding === null) return node(s.error, requested === 'sodium' ? `QSR_CRYPTO=sodium: ${s.error}` : null);
  return {
    info: {
      name: 'sodium',
      requested,
      description: `sodium (libsodium ChaCha20-Poly1305 via sodium-native${s.version ? ` ${s.version}` : ''}; AES-GCM on node:crypto)`,
      sodiumError: null,
      error: null,
    },
    sodium: s.binding,
  };
}

let current: { info: CryptoBackendInfo; sodium: SodiumBinding | null } | null = null;
let sodiumCache: SodiumLoad | null = null;

function cachedLoad(): SodiumLoad {
  return (sodiumCache ??= loadSodium());
}

function state(): { info: CryptoBackendInfo; sodium: SodiumBinding | null } {
  return (current ??= resolveBackend(process.env.QSR_CRYPTO, cachedLoad));
}

/** The backend in use (resolved from QSR_CRYPTO when this module loads). Never throws; see `error`. */
export function cryptoBackend(): CryptoBackendInfo {
  return state().info;
}

/** Like cryptoBackend(), but throws an Error naming QSR_CRYPTO when the setting cannot be honoured. */
export function cryptoBackendOrThrow(): CryptoBackendInfo {
  const info = state().info;
  if (info.error !== null) throw new Error(info.error);
  return info;
}

/** The libsodium binding when sodium is the active backend, else null. Read by each new key object. */
export function activeSodium(): SodiumBinding | null {
  return state().sodium;
}

/**
 * Switches the backend for key objects created from now on (tests and benchmarks; existing keys keep theirs).
 * Returns the resulting info; with 'sodium' and no sodium-native, info.error says so and node:crypto is used.
 */
export function setCryptoBackend(request: BackendRequest): CryptoBackendInfo {
  current = resolveBackend(request, cachedLoad);
  return current.info;
}

// Resolved when the stack is loaded, not in the first handshake: loading the native addon takes tens of milliseconds.
state();
