/** The TLS 1.3 cipher suites QUIC v1 uses, with their AEAD and header-protection algorithms (RFC 9001 §5). */
import type { HashName } from './hkdf.js';

export interface CipherSuite {
  /** TLS CipherSuite code point. */
  id: number;
  name: string;
  hash: HashName;
  /** node:crypto AEAD name. */
  aead: 'aes-128-gcm' | 'aes-256-gcm' | 'chacha20-poly1305';
  keyLength: number;
  /** Header protection: AES-ECB with a key of keyLength, or ChaCha20 (RFC 9001 §5.4.3/5.4.4). */
  hp: 'aes-128-ecb' | 'aes-256-ecb' | 'chacha20';
  /** AEAD confidentiality limit in packets (RFC 9001 §6.6). */
  confidentialityLimit: number;
  /** AEAD integrity limit in packets (RFC 9001 §6.6). */
  integrityLimit: number;
}

export const TLS_AES_128_GCM_SHA256: CipherSuite = {
  id: 0x1301,
  name: 'TLS_AES_128_GCM_SHA256',
  hash: 'sha256',
  aead: 'aes-128-gcm',
  keyLength: 16,
  hp: 'aes-128-ecb',
  confidentialityLimit: 2 ** 23,
  integrityLimit: 2 ** 52,
};

export const TLS_AES_256_GCM_SHA384: CipherSuite = {
  id: 0x1302,
  name: 'TLS_AES_256_GCM_SHA384',
  hash: 'sha384',
  aead: 'aes-256-gcm',
  keyLength: 32,
  hp: 'aes-256-ecb',
  confidentialityLimit: 2 ** 23,
  integrityLimit: 2 ** 52,
};

export const TLS_CHACHA20_POLY1305_SHA256: CipherSuite = {
  id: 0x1303,
  name: 'TLS_CHACHA20_POLY1305_SHA256',
  hash: 'sha256',
  aead: 'chacha20-poly1305',
  keyLength: 32,
  hp: 'chacha20',
  confidentialityLimit: Number.MAX_SAFE_INTEGER,
  integrityLimit: 2 ** 36,
};

export const ALL_SUITES: readonly CipherSuite[] = [TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256];

export function suiteById(id: number): CipherSuite | undefined {
  return ALL_SUITES.find((s) => s.id === id);
}

export function suiteByName(name: string): CipherSuite | undefined {
  return ALL_SUITES.find((s) => s.name === name);
}
