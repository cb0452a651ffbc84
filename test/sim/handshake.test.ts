import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pair } from './helpers.js';
import type { Connection } from '../../src/quic/connection.js';
import type { ConnectionEvent } from '../../src/quic/connection-types.js';

function drain(c: Connection, into: ConnectionEvent[]): void {
  for (let e = c.pollEvent(); e; e = c.pollEvent()) into.push(e);
}

test('sim: client and server complete the handshake and confirm it', () => {
  const { net, sep, conn } = pair(1);
  let server: Connection | undefined;
  const cev: ConnectionEvent[] = [];
  const sev: ConnectionEvent[] = [];
  const ok = net.run(
    () => cev.some((e) => e.type === 'handshake_confirmed') && sev.some((e) => e.type === 'handshake_confirmed'),
    5000,
    () => {
      server ??= sep.pollAccepted();
      drain(conn, cev);
      if (server) drain(server, sev);
    },
  );
  assert.ok(ok, `handshake did not finish: client ${conn.state}, ${JSON.stringify(conn.closeInfo)} server ${server?.state} ${JSON.stringify(server?.closeInfo)}`);
  assert.equal(conn.alpn, 'h3');
  assert.equal(server!.alpn, 'h3');
  assert.equal(conn.state, 'established');
});

test('sim: onePacketPerDatagram puts every packet in its own datagram and the handshake still completes', async () => {
  const { parseHeader } = await import('../../src/quic/packet/header.js');
  const { net, sep, cep, conn } = pair(2, {}, { onePacketPerDatagram: true }, { onePacketPerDatagram: true });
  let packetsPerDatagram = 0;
  let datagrams = 0;
  for (const ep of [sep, cep]) {
    const poll = ep.poll.bind(ep);
    ep.poll = (now: number) => {
      const t = poll(now);
      if (t && (t.data[0] & 0x80) !== 0) {
        // Count the long-header packets in it (short-header packets run to the end of the datagram anyway).
        let n = 0;
        for (let off = 0; off < t.data.length && (t.data[off] & 0x80) !== 0; n++) off = parseHeader(t.data, off, 8).end;
        packetsPerDatagram = Math.max(packetsPerDatagram, n);
        datagrams++;
      }
      return t;
    };
  }
  let server: Connection | undefined;
  const ok = net.run(() => conn.isHandshakeComplete && !!server?.isHandshakeComplete, 5000, () => {
    server ??= sep.pollAccepted();
  });
  assert.ok(ok, 'handshake completed');
  assert.ok(datagrams >= 3, `saw ${datagrams} long-header datagrams`);
  assert.equal(packetsPerDatagram, 1, 'no datagram carried two packets');
});

test("sim: the server's stateless reset tokens (transport parameter, NEW_CONNECTION_ID) come from its endpoint's key", async () => {
  const { createHmac } = await import('node:crypto');
  const { Endpoint } = await import('../../src/quic/endpoint.js');
  const { SimNetwork } = await import('./network.js');
  const { CLIENT_ADDR, SERVER_ADDR, clientConfig, serverConfig } = await import('./helpers.js');
  const key = Buffer.alloc(32, 0x42);
  const net = new SimNetwork(3, { delay: 5 });
  const sep = new Endpoint({ server: serverConfig(), statelessResetKey: key });
  const cep = new Endpoint();
  net.attach(SERVER_ADDR, sep);
  net.attach(CLIENT_ADDR, cep);
  const received: { connection_id: string; stateless_reset_token: string }[] = [];
  const trace = (e: { name: string; data: object }): void => {
    if (e.name !== 'transport:packet_received') return;
    for (const f of (e.data as { frames: { frame_type: string }[] }).frames)
      if (f.frame_type === 'new_connection_id') received.push(f as unknown as (typeof received)[number]);
  };
  const conn = cep.connect(clientConfig({ trace }), SERVER_ADDR, net.now);
  let server: Connection | undefined;
  assert.ok(net.run(() => received.length >= 3, 5000, () => (server ??= sep.pollAccepted())));
  const token = (cid: Buffer): Buffer => createHmac('sha256', key).update(cid).digest().subarray(0, 16);
  const scid = server!.localCids.get(0)!;
  assert.deepEqual(conn.peerTransportParameters!.statelessResetToken, token(scid), 'stateless_reset_token of connection ID 0');
  const elsewhere = new Endpoint({ statelessResetKey: key });
  for (const f of received) {
    const cid = Buffer.from(f.connection_id, 'hex');
    assert.equal(f.stateless_reset_token, token(cid).toString('hex'), `token of ${f.connection_id}`);
    assert.equal(f.stateless_reset_token, elsewhere.cids.resetToken(cid).toString('hex'), 'another endpoint with the key agrees');
    assert.equal(sep.cids.lookup(cid), server, 'each issued ID routes to the server connection');
  }
});
