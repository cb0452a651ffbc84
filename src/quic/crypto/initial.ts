/** QUIC v1 Initial secrets (RFC 9001 §5.2): derived from the client's first Destination Connection ID. */
import { hkdfExpandLabel, hkdfExtract } from './hkdf.js';
import { TLS_AES_128_GCM_SHA256 } from './suites.js';
import { deriveKeys, type DirectionKeys } from './keys.js';

/** initial_salt for QUIC version 1 (RFC 9001 §5.2). */
export const INITIAL_SALT_V1: Buffer = Buffer.from('38762cf7f55934b34d179ae6a4c80cadccbb7f0a', 'hex');

const EMPTY = Buffer.alloc(0);

/** client_initial_secret and server_initial_secret for a client-chosen Destination Connection ID (SHA-256). */
export function initialSecrets(dcid: Buffer): { client: Buffer; server: Buffer } {
  const initial = hkdfExtract('sha256', INITIAL_SALT_V1, dcid);
  return {
    client: hkdfExpandLabel('sha256', initial, 'client in', EMPTY, 32),
    server: hkdfExpandLabel('sha256', initial, 'server in', EMPTY, 32),
  };
}

/** The keys that protect a client's Initial packets (what a server needs to open the first one). */
export function clientInitialKeys(dcid: Buffer): DirectionKeys {
  const initial = hkdfExtract('sha256', INITIAL_SALT_V1, dcid);
  return deriveKeys(TLS_AES_128_GCM_SHA256, hkdfExpandLabel('sha256', initial, 'client in', EMPTY, 32));
}

/** Initial packet protection keys for both directions (Initial packets always use TLS_AES_128_GCM_SHA256). */
export function initialKeys(dcid: Buffer): { client: DirectionKeys; server: DirectionKeys } {
  const s = initialSecrets(dcid);
  return { client: deriveKeys(TLS_AES_128_GCM_SHA256, s.client), server: deriveKeys(TLS_AES_128_GCM_SHA256, s.server) };
}
