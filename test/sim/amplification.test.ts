import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SimNetwork } from './network.js';
import { Endpoint } from '../../src/quic/endpoint.js';
import { readFileSync } from 'node:fs';
import { serverConfig, clientConfig, SERVER_ADDR, CLIENT_ADDR, CERTS } from './helpers.js';
import { loadPemChain } from '../../src/quic/tls/pem.js';

test('anti-amplification: before the client address is validated the server sends at most 3x what it received', () => {
  // The client's first datagram arrives; everything the client sends after it is lost, so the server never
  // validates the address. An RSA chain makes the server's flight larger than 3 x 1200 bytes.
  const net = new SimNetwork(3, { delay: 10, blackouts: [[1, 60_000]] });
  const sep = new Endpoint({ server: serverConfig('rsa') });
  const cep = new Endpoint();
  net.attach(SERVER_ADDR, sep);
  net.attach(CLIENT_ADDR, cep);
  cep.connect(clientConfig(), SERVER_ADDR, 0);
  // Count what the server sends by wrapping its poll.
  let serverSent = 0;
  const poll = sep.poll.bind(sep);
  sep.poll = (now: number) => {
    const t = poll(now);
    if (t) serverSent += t.data.length;
    return t;
  };
  net.run(() => false, 20_000);
  const server = sep.pollAccepted()!;
  assert.ok(server, 'the server accepted the connection');
  assert.equal(server.stats.bytesReceived, 1200);
  assert.ok(serverSent > 0, 'the server answered');
  assert.ok(serverSent <= 3 * 1200, `server sent ${serverSent} bytes for 1200 received`);
});

test('anti-amplification: the limit lifts once the client proves its address, and the handshake completes', () => {
  const net = new SimNetwork(4, { delay: 10 });
  // A long chain (the CA certificate repeated) makes the server's first flight larger than 3 x 1200 bytes.
  const cfg = serverConfig('rsa');
  const ca = loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8'))[0];
  cfg.certChain = [...cfg.certChain!, ca, ca, ca, ca, ca, ca];
  const sep = new Endpoint({ server: cfg });
  const cep = new Endpoint();
  net.attach(SERVER_ADDR, sep);
  net.attach(CLIENT_ADDR, cep);
  const conn = cep.connect(clientConfig(), SERVER_ADDR, 0);
  const ok = net.run(() => conn.isHandshakeComplete, 5000);
  assert.ok(ok, 'handshake with a large RSA chain completes');
  const server = sep.pollAccepted()!;
  assert.ok(server.stats.bytesSent > 3 * 1200, 'the server flight needed more than the initial 3x budget');
});
