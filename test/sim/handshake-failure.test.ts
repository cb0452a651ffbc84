/**
 * A client whose handshake cannot complete must stop and say why (issue 8, defect 3): Version Negotiation
 * (RFC 9000 §6.2: abandon the attempt, list the versions offered), Retry (RFC 9000 §17.2.5: not followed yet, said
 * so), a handshake timeout (nothing received, or nothing that decrypts), and TLS alerts from either side by name.
 * Invalid Version Negotiation and Retry packets (wrong CIDs, v1 listed, a bad integrity tag, after the server's
 * first Initial) are ignored as the RFC requires, so a blind attacker cannot end a handshake with one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Endpoint } from '../../src/quic/endpoint.js';
import type { Connection } from '../../src/quic/connection.js';
import type { ConnectionEvent } from '../../src/quic/connection-types.js';
import { describeHandshakeFailure } from '../../src/quic/handshake-failure.js';
import { PacketType, buildRetry, buildVersionNegotiation, parseHeader } from '../../src/quic/packet/header.js';
import { loadPemChain } from '../../src/quic/tls/pem.js';
import { QUIC_V1 } from '../../src/quic/types.js';
import { SimNetwork } from './network.js';
import { CERTS, SERVER_ADDR, CLIENT_ADDR, clientConfig, pair } from './helpers.js';

const SERVER = `${SERVER_ADDR.address}:${SERVER_ADDR.port}`;

/** A client endpoint alone (nothing answers) and the CIDs of its first Initial. */
function lonelyClient(extra: Parameters<typeof clientConfig>[0] = {}) {
  const net = new SimNetwork(7);
  const cep = new Endpoint();
  net.attach(CLIENT_ADDR, cep);
  const conn = cep.connect(clientConfig(extra), SERVER_ADDR, net.now);
  const first = cep.poll(net.now);
  assert.ok(first, 'the client sends its Initial');
  const h = parseHeader(Buffer.from(first.data), 0, 8);
  assert.equal(h.type, PacketType.Initial);
  return { net, cep, conn, odcid: Buffer.from(h.dcid), scid: Buffer.from(h.scid) };
}

function events(c: Connection): ConnectionEvent[] {
  const out: ConnectionEvent[] = [];
  for (let e = c.pollEvent(); e; e = c.pollEvent()) out.push(e);
  return out;
}

function assertAbandoned(conn: Connection, cep: Endpoint): void {
  assert.equal(conn.state, 'closed', `state ${conn.state}`);
  assert.ok(events(conn).some((e) => e.type === 'closed'), 'the application hears of the close');
  assert.equal(cep.poll(0), null, 'nothing is sent after abandoning the attempt (no CONNECTION_CLOSE)');
}

test('handshake failure: Version Negotiation without v1 ends the attempt and lists the versions offered', () => {
  const { cep, conn, odcid, scid } = lonelyClient();
  // RFC 9000 §17.2.1: DCID = the client's SCID, SCID = the client's DCID.
  cep.receive(buildVersionNegotiation(scid, odcid, [0x6b3343cf, 0xff00001d, 0x1a2a3a4a]), SERVER_ADDR, 5);
  assertAbandoned(conn, cep);
  const info = conn.closeInfo!;
  assert.deepEqual(info.handshakeFailure, { kind: 'version_negotiation', versions: [0x6b3343cf, 0xff00001d, 0x1a2a3a4a] });
  assert.equal(
    describeHandshakeFailure(info, SERVER),
    'the server at 10.0.0.1:443 does not support QUIC version 1: its Version Negotiation offered 0x6b3343cf (QUIC v2), ' +
      '0xff00001d (draft-29), 0x1a2a3a4a (reserved for greasing)',
  );
});

test('handshake failure: a Version Negotiation listing v1, or not echoing our CIDs, is ignored (RFC 9000 §6.2)', () => {
  const { cep, conn, odcid, scid } = lonelyClient();
  cep.receive(buildVersionNegotiation(scid, odcid, [0x6b3343cf, QUIC_V1]), SERVER_ADDR, 5);
  cep.receive(buildVersionNegotiation(scid, randomBytes(odcid.length), [0x6b3343cf]), SERVER_ADDR, 5);
  assert.equal(conn.state, 'handshake');
  assert.equal(conn.closeInfo, null);
});

test('handshake failure: a Retry ends the attempt with "requires address validation (Retry), not supported yet"', () => {
  const { cep, conn, odcid, scid } = lonelyClient();
  cep.receive(buildRetry(QUIC_V1, scid, randomBytes(8), randomBytes(32), odcid), SERVER_ADDR, 5);
  assertAbandoned(conn, cep);
  const info = conn.closeInfo!;
  assert.deepEqual(info.handshakeFailure, { kind: 'retry' });
  assert.match(describeHandshakeFailure(info, SERVER), /^the server at 10\.0\.0\.1:443 requires address validation \(Retry\), not supported yet/);
});

test('handshake failure: a Retry with a bad integrity tag, or after the server\'s first Initial, is ignored (RFC 9000 §17.2.5.2)', () => {
  const { cep, conn, odcid, scid } = lonelyClient();
  const bad = buildRetry(QUIC_V1, scid, randomBytes(8), randomBytes(32), odcid);
  bad[bad.length - 1] ^= 0x01;
  cep.receive(bad, SERVER_ADDR, 5);
  assert.equal(conn.state, 'handshake');
  // Tag computed over another original DCID: not an answer to our Initial.
  cep.receive(buildRetry(QUIC_V1, scid, randomBytes(8), randomBytes(32), randomBytes(8)), SERVER_ADDR, 5);
  assert.equal(conn.state, 'handshake');
  assert.equal(conn.closeInfo, null);

  // Once a server Initial has been processed, a (valid) Retry is too late.
  const p = pair(11);
  let received = false;
  p.net.run(() => received, 2000, () => {
    received ||= p.conn.stats.packetsReceived > 0;
  });
  assert.ok(received, 'the client processed a server packet');
  const ours = (p.conn as unknown as { originalDcid: Buffer; localCids: Map<number, Buffer> });
  p.cep.receive(buildRetry(QUIC_V1, ours.localCids.get(0)!, randomBytes(8), randomBytes(32), ours.originalDcid), SERVER_ADDR, p.net.now);
  assert.equal(p.conn.closeInfo, null);
  assert.ok(p.net.run(() => p.conn.isHandshakeComplete, 2000, () => p.sep.pollAccepted()), 'the handshake completes');
});

test('handshake failure: nothing received -> closed at the handshake timeout, "no answer ... (nothing received)"', () => {
  const { net, cep, conn } = lonelyClient({ handshakeTimeout: 3000 });
  assert.ok(net.run(() => conn.state === 'closed', 60_000), `still ${conn.state} at ${net.now} ms`);
  assert.ok(net.now >= 3000 && net.now <= 3001, `closed at ${net.now} ms of simulated time, the timeout is 3000`);
  const info = conn.closeInfo!;
  assert.equal(info.by, 'local');
  assert.deepEqual(info.handshakeFailure, { kind: 'timeout', timeoutMs: 3000, datagrams: 0, decrypted: 0 });
  assert.equal(describeHandshakeFailure(info, SERVER), 'no answer from the server at 10.0.0.1:443 within 3000 ms (nothing received)');
  assertAbandoned(conn, cep);
});

test('handshake failure: the default handshake timeout of a client is 10 s; 0 leaves only the idle timeout', () => {
  const a = lonelyClient();
  assert.ok(a.net.run(() => a.conn.state === 'closed', 60_000));
  assert.ok(a.net.now >= 10_000 && a.net.now <= 10_001, `closed at ${a.net.now} ms`);
  assert.equal(a.conn.closeInfo?.handshakeFailure?.kind, 'timeout');
  const b = lonelyClient({ handshakeTimeout: 0 });
  assert.ok(b.net.run(() => b.conn.state === 'closed', 60_000));
  assert.ok(b.net.now >= 30_000, `closed at ${b.net.now} ms: the idle timeout`);
  assert.equal(b.conn.closeInfo?.by, 'idle');
  assert.equal(describeHandshakeFailure(b.conn.closeInfo!), 'handshake with the server did not complete: idle timeout');
});

test('handshake failure: datagrams that never decrypt -> the timeout says so', () => {
  const { net, conn, cep, scid } = lonelyClient({ handshakeTimeout: 2000 });
  for (let i = 0; i < 3; i++) {
    // A long-header Initial to our CID whose protection is garbage.
    const d = randomBytes(1200);
    d[0] = 0xc0;
    d.writeUInt32BE(QUIC_V1, 1);
    d[5] = scid.length;
    scid.copy(d, 6);
    d[6 + scid.length] = 8;
    d[15 + scid.length] = 0; // token length
    d.writeUInt16BE(0x4000 | (1200 - 18 - scid.length), 16 + scid.length);
    cep.receive(d, SERVER_ADDR, net.now);
  }
  assert.ok(net.run(() => conn.state === 'closed', 60_000));
  const info = conn.closeInfo!;
  assert.deepEqual(info.handshakeFailure, { kind: 'timeout', timeoutMs: 2000, datagrams: 3, decrypted: 0 });
  assert.match(describeHandshakeFailure(info, SERVER), /did not complete within 2000 ms: 3 datagrams received, none could be decrypted/);
});

test('handshake failure: a server TLS alert is named (no_application_protocol, 120)', () => {
  const { net, conn } = pair(21, {}, { alpn: ['not-h3'] });
  assert.ok(net.run(() => conn.closeInfo !== null, 5000), `client still ${conn.state}`);
  const info = conn.closeInfo!;
  assert.equal(info.by, 'peer');
  assert.equal(info.code, 0x100 + 120);
  assert.match(describeHandshakeFailure(info, SERVER), /^the server at 10\.0\.0\.1:443 refused the TLS handshake with alert no_application_protocol \(120\)/);
});

test('handshake failure: certificate verification failures name the check and the alert sent', () => {
  const wrongName = pair(22, {}, {}, { serverName: 'wrong.example' });
  assert.ok(wrongName.net.run(() => wrongName.conn.closeInfo !== null, 5000));
  assert.equal(wrongName.conn.closeInfo!.code, 0x100 + 42);
  assert.match(
    describeHandshakeFailure(wrongName.conn.closeInfo!, SERVER),
    /^certificate verification failed: certificate for .* does not match host wrong\.example \(TLS alert bad_certificate sent to the server at 10\.0\.0\.1:443\)$/,
  );
  const otherCa = pair(23, {}, {}, { ca: loadPemChain(readFileSync(`${CERTS}selfsigned.pem`, 'utf8')) });
  assert.ok(otherCa.net.run(() => otherCa.conn.closeInfo !== null, 5000));
  assert.equal(otherCa.conn.closeInfo!.code, 0x100 + 48);
  assert.match(describeHandshakeFailure(otherCa.conn.closeInfo!, SERVER), /^certificate verification failed: unknown CA: .*\(TLS alert unknown_ca sent/);
});
