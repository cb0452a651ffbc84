/** Shared set-up for simulated-network tests: a client and a server endpoint with test certificates. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Endpoint } from '../../src/quic/endpoint.js';
import type { ConnectionConfig } from '../../src/quic/connection-types.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import { SimNetwork, type LinkOptions } from './network.js';

export const CERTS = fileURLToPath(new URL('../../../test/fixtures/certs/', import.meta.url));

export function serverConfig(kind: 'ecdsa' | 'rsa' | 'ed25519' = 'ecdsa', extra: Partial<ConnectionConfig> = {}): ConnectionConfig {
  return {
    alpn: ['h3', 'test'],
    certChain: loadPemChain(readFileSync(`${CERTS}${kind}.pem`, 'utf8')),
    privateKey: loadPrivateKey(readFileSync(`${CERTS}${kind}.key`, 'utf8')),
    ...extra,
  };
}

export function clientConfig(extra: Partial<ConnectionConfig> = {}): ConnectionConfig {
  return {
    alpn: ['h3'],
    serverName: 'localhost',
    ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')),
    ...extra,
  };
}

export const SERVER_ADDR = { address: '10.0.0.1', port: 443 };
export const CLIENT_ADDR = { address: '10.0.0.2', port: 50000 };

export function pair(seed: number, link: LinkOptions = {}, server: Partial<ConnectionConfig> = {}, client: Partial<ConnectionConfig> = {}) {
  const net = new SimNetwork(seed, link);
  const sep = new Endpoint({ server: serverConfig('ecdsa', server) });
  const cep = new Endpoint();
  net.attach(SERVER_ADDR, sep);
  net.attach(CLIENT_ADDR, cep);
  const conn = cep.connect(clientConfig(client), SERVER_ADDR, net.now);
  return { net, sep, cep, conn };
}
