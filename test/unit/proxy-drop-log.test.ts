/** The router's rate-limited warning about Initials the QUIC endpoint dropped undecrypted (src/proxy/drop-log.ts). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DroppedInitialsLog } from '../../src/proxy/drop-log.js';
import { Endpoint } from '../../src/quic/endpoint.js';
import { serverConfig } from '../sim/helpers.js';

test('dropped Initials: one warning per interval with the count since the last one, none when nothing was dropped', () => {
  const lines: { fields: Record<string, unknown>; msg: string }[] = [];
  const log = { info: () => {}, error: () => {}, warn: (fields: Record<string, unknown>, msg: string) => lines.push({ fields, msg }) };
  const sep = new Endpoint({ server: serverConfig() });
  const report = new DroppedInitialsLog(() => sep.stats.undecryptableInitials, log, 10_000);
  report.tick();
  assert.equal(lines.length, 0, 'nothing dropped, nothing logged');

  // Three 1200-byte Initials whose payload is noise.
  for (let i = 0; i < 3; i++) {
    const d = Buffer.alloc(1200, i + 1);
    d[0] = 0xc0;
    d.writeUInt32BE(1, 1);
    d[5] = 8;
    d[14] = 0; // SCID length
    d[15] = 0; // token length
    d.writeUInt16BE(0x4000 | (1200 - 18), 16);
    sep.receive(d, { address: '10.1.1.1', port: 1000 + i }, 0);
  }
  assert.equal(sep.connections.size, 0);
  report.tick();
  assert.equal(lines.length, 1);
  assert.deepEqual(lines[0].fields, { droppedInitials: 3, totalDroppedInitials: 3, intervalMs: 10_000 });
  assert.equal(lines[0].msg, 'dropped 3 Initial packets that did not decrypt in the last 10 s (corrupted or forged; no connection state was created)');
  report.tick();
  assert.equal(lines.length, 1, 'no new drops, no new line');
});
