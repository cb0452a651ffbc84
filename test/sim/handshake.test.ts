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
