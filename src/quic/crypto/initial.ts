/**
 * QUIC v1 Initial secrets (RFC 9001 §5.2): derived from the client's first Destination Connection ID. A server derives
 * them once per new connection: the endpoint opens the first Initial with `clientInitialKeys`, and the connection it
 * creates takes those keys and the extracted initial_secret along (`ClientInitialKeys`) and expands only the server's
 * side from it (`serverInitialKeys`).
 */
import { hkdfExpandLabel, hkdfExtract } from './hkdf.js';
import { TLS_AES_128_GCM_SHA256 } from './suites.js';
import { deriveKeys, type DirectionKeys } from './keys.js';

/** initial_salt for QUIC version 1 (RFC 9001 §5.2). */
export const INITIAL_SALT_V1: Buffer = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');

const EMPTY = Buffer.alloc(0);

/** initial_secret = HKDF-Extract(initial_salt, client_dst_connection_id). */
export function initialSecret(dcid: Buffer): Buffer {
  return hkdfExtract('sha256', INITIAL_SALT_V1, dcid);
}

/** client_initial_secret and server_initial_secret for a client-chosen Destination Connection ID (SHA-256). */
export function initialSecrets(dcid: Buffer): { client: Buffer; server: Buffer } {
  const initial = initialSecret(dcid);
  return {
    client: hkdfExpandLabel('sha256', initial, 'client in', EMPTY, 32),
    server: hkdfExpandLabel('sha256', initial, 'server in', EMPTY, 32),
  };
}

/** The keys that protect a client's Initial packets, and the initial_secret they came from. */
export interface ClientInitialKeys {
  keys: DirectionKeys;
  /** initial_secret: `serverInitialKeys` expands the server's side from it. */
  initial: Buffer;
}

/** What a server needs to open a client's first Initial (the server's own keys are derived only for a connection). */
export function clientInitialKeys(dcid: Buffer): ClientInitialKeys {
  const initial = initialSecret(dcid);
  return { keys: deriveKeys(TLS_AES_128_GCM_SHA256, hkdfExpandLabel('sha256', initial, 'client in', EMPTY, 32)), initial };
}

/** The keys that protect the server's Initial packets, from initial_secret. */
export function serverInitialKeys(initial: Buffer): DirectionKeys {
  return deriveKeys(TLS_AES_128_GCM_SHA256, hkdfExpandLabel('sha256', initial, 'server in', EMPTY, 32));
}

/** Initial packet protection keys for both directions (Initial packets always use TLS_AES_128_GCM_SHA256). */
export function initialKeys(dcid: Buffer): { client: DirectionKeys; server: DirectionKeys } {
  const s = initialSecrets(dcid);
  return { client: deriveKeys(TLS_AES_128_GCM_SHA256, s.client), server: deriveKeys(TLS_AES_128_GCM_SHA256, s.server) };
}
