/**
 * QUIC Initial secrets (RFC 9001 §5.2; QUIC v2's salt and labels: RFC 9369 §3.3): derived from the client's first
 * Destination Connection ID. A server derives them once per new connection: the endpoint opens the first Initial with
 * `clientInitialKeys`, and the connection it creates takes those keys and the extracted initial_secret along
 * (`ClientInitialKeys`) and expands only the server's side from it (`serverInitialKeys`). Every function takes the
 * version's descriptor (version.ts), v1 by default.
 */
import { hkdfExpandLabel, hkdfExtract } from './hkdf.js';
import { TLS_AES_128_GCM_SHA256 } from './suites.js';
import { deriveKeys, type DirectionKeys } from './keys.js';
import { VERSION_1, type QuicVersionParams } from '../version.js';

/** initial_salt for QUIC version 1 (RFC 9001 §5.2). */
export const INITIAL_SALT_V1: Buffer = VERSION_1.initialSalt;

const EMPTY = Buffer.alloc(0);

/** initial_secret = HKDF-Extract(initial_salt, client_dst_connection_id). */
export function initialSecret(dcid: Buffer, v: QuicVersionParams = VERSION_1): Buffer {
  return hkdfExtract('sha256', v.initialSalt, dcid);
}

/** client_initial_secret and server_initial_secret for a client-chosen Destination Connection ID (SHA-256). */
export function initialSecrets(dcid: Buffer, v: QuicVersionParams = VERSION_1): { client: Buffer; server: Buffer } {
  const initial = initialSecret(dcid, v);
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
export function clientInitialKeys(dcid: Buffer, v: QuicVersionParams = VERSION_1): ClientInitialKeys {
  const initial = initialSecret(dcid, v);
  const secret = hkdfExpandLabel('sha256', initial, 'client in', EMPTY, 32);
  return { keys: deriveKeys(TLS_AES_128_GCM_SHA256, secret, v.labels), initial };
}

/** The keys that protect the server's Initial packets, from initial_secret. */
export function serverInitialKeys(initial: Buffer, v: QuicVersionParams = VERSION_1): DirectionKeys {
  return deriveKeys(TLS_AES_128_GCM_SHA256, hkdfExpandLabel('sha256', initial, 'server in', EMPTY, 32), v.labels);
}

/** Initial packet protection keys for both directions (Initial packets always use TLS_AES_128_GCM_SHA256). */
export function initialKeys(dcid: Buffer, v: QuicVersionParams = VERSION_1): { client: DirectionKeys; server: DirectionKeys } {
  const s = initialSecrets(dcid, v);
  return {
    client: deriveKeys(TLS_AES_128_GCM_SHA256, s.client, v.labels),
    server: deriveKeys(TLS_AES_128_GCM_SHA256, s.server, v.labels),
  };
}
