/**
 * The qlog writer (src/obs/qlog.ts): JSON-SEQ framing (RFC 7464), the qlog 0.3 header, file naming by ODCID and
 * vantage point, relative and ascending times, closing on the connection's final state, the bounded queue (drops
 * counted and marked once writing catches up), the synchronous flush at process exit, and QLOGDIR. Records are
 * checked against src/obs/qlog-schema.json with Ajv.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { QlogWriter, qlogFileName, qlogTracer } from '../../src/obs/qlog.js';
import { parseJsonSeq, qlogValidators, readQlog, type QlogRecord } from '../util/qlog.js';

const ODCID = Buffer.from('8394c8f03e515708', 'hex');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'qsr-qlog-'));
}

function nextTurn(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** A packet_sent of the shape the core emits, with `n` as its packet number. */
function packetSent(time: number, n: number) {
  return {
    time,
    name: 'transport:packet_sent',
    data: {
      header: { packet_type: '1RTT', packet_number: n, flags: 0x41, dcil: 8, dcid: 'aabbccddeeff0011' },
      frames: [{ frame_type: 'stream', stream_id: 0, offset: n * 1000, length: 1000 }],
      raw: { length: 1030, payload_length: 1010 },
      datagram_id: n,
    },
  };
}

test('qlog file name: ODCID in hex and the vantage point, .sqlog', () => {
  assert.equal(qlogFileName(ODCID, 'server'), '8394c8f03e515708_server.sqlog');
  assert.equal(qlogFileName(Buffer.from([0, 1, 0xfe]), 'client'), '0001fe_client.sqlog');
});

test('qlog writer: JSON-SEQ records, qlog 0.3 header, relative ascending times; closes on the "closed" state', async () => {
  const dir = tmp();
  try {
    const w = new QlogWriter(dir, 'server', ODCID);
    assert.equal(w.path, join(dir, '8394c8f03e515708_server.sqlog'));
    w.sink({ time: 1000.25, name: 'connectivity:connection_state_updated', data: { new: 'attempted' } });
    w.sink(packetSent(1001.5, 0));
    // An event stamped earlier than the one before (another layer's clock reading) keeps the order ascending.
    w.sink(packetSent(1001.0, 1));
    w.sink({ time: 1003, name: 'connectivity:connection_state_updated', data: { old: 'attempted', new: 'closed' } });
    // After the final state the file is closed: later events are not written.
    w.sink(packetSent(1004, 2));
    await w.closed;
    const text = readFileSync(w.path, 'utf8');
    assert.equal(text[0], '\x1e', 'the file starts with RS');
    assert.ok(text.endsWith('\n'));
    assert.equal(text.split('\x1e').length - 1, 5, 'header + 4 events');
    for (const rec of text.split('\x1e').slice(1)) assert.equal(rec.indexOf('\n'), rec.length - 1, 'one LF, at the end of each record');
    const { header, events } = readQlog(w.path);
    assert.equal(header.qlog_version, '0.3');
    assert.equal(header.qlog_format, 'JSON-SEQ');
    const trace = header.trace as { vantage_point: { type: string }; common_fields: Record<string, unknown> };
    assert.equal(trace.vantage_point.type, 'server');
    assert.equal(trace.common_fields.ODCID, '8394c8f03e515708');
    assert.equal(trace.common_fields.time_format, 'relative');
    assert.ok(Math.abs((trace.common_fields.reference_time as number) - Date.now()) < 60_000);
    assert.deepEqual(
      events.map((e) => e.time),
      [0, 1.25, 1.25, 2.75],
    );
    assert.equal(events.filter((e) => e.name === 'transport:packet_sent').length, 2);
    assert.equal(w.stats.events, 4);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('qlog writer: a full queue drops events, counts them, and writes one marker once writing catches up', async () => {
  const dir = tmp();
  try {
    const one = JSON.stringify({ time: 0, name: 'transport:packet_sent', data: packetSent(0, 0).data }).length + 2;
    const w = new QlogWriter(dir, 'client', ODCID, { maxQueueBytes: 20 * one });
    // 200 events in one synchronous burst: the disk gets no chance to take any, so at most ~20 fit.
    for (let i = 0; i < 200; i++) w.sink(packetSent(i, i));
    const firstDropped = w.stats.dropped;
    assert.ok(firstDropped >= 170, `dropped ${firstDropped} of 200`);
    assert.equal(w.stats.events + w.stats.dropped, 200);
    // Let the queue drain, then the next event is preceded by the marker.
    for (let i = 0; i < 5 && w.stats.bytesWritten === 0; i++) await nextTurn();
    await new Promise((r) => setTimeout(r, 50));
    w.sink(packetSent(300, 300));
    w.sink({ time: 301, name: 'connectivity:connection_state_updated', data: { new: 'closed' } });
    await w.closed;
    const { events } = readQlog(w.path);
    const markers = events.filter((e) => e.name === 'qlog:events_dropped');
    assert.equal(markers.length, 1);
    assert.equal((markers[0].data as { count: number }).count, firstDropped);
    const idx = events.indexOf(markers[0]);
    assert.equal((events[idx + 1].data as { header: { packet_number: number } }).header.packet_number, 300, 'the marker comes right before the event that was accepted again');
    const sent = events.filter((e) => e.name === 'transport:packet_sent') as QlogRecord[];
    assert.equal(sent.length, 200 - firstDropped + 1);
    // What was kept is the start of the burst, in order.
    assert.deepEqual(
      sent.slice(0, -1).map((e) => (e.data as { header: { packet_number: number } }).header.packet_number),
      [...Array(200 - firstDropped).keys()],
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('qlog writer: drops still pending when the file closes are marked too', async () => {
  const dir = tmp();
  try {
    const w = new QlogWriter(dir, 'client', ODCID, { maxQueueBytes: 600 });
    for (let i = 0; i < 50; i++) w.sink(packetSent(i, i));
    assert.ok(w.stats.dropped > 0);
    await w.close();
    const { events } = readQlog(w.path);
    const m = events.filter((e) => e.name === 'qlog:events_dropped');
    assert.equal(m.length, 1);
    assert.equal((m[0].data as { count: number }).count, w.stats.dropped);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('qlog writer: what is queued at process exit is written synchronously', () => {
  const dir = tmp();
  try {
    const mod = fileURLToPath(new URL('../../src/obs/qlog.js', import.meta.url));
    const script = `
      import { QlogWriter } from ${JSON.stringify(mod)};
      const w = new QlogWriter(${JSON.stringify(dir)}, 'client', Buffer.from('0102030405060708', 'hex'));
      for (let i = 0; i < 1000; i++) w.sink({ time: i, name: 'recovery:metrics_updated', data: { congestion_window: 12000 + i } });
      process.exit(0);
    `;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { timeout: 20_000, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    const { events } = readQlog(join(dir, '0102030405060708_client.sqlog'));
    assert.equal(events.length, 1000);
    assert.equal((events[999].data as { congestion_window: number }).congestion_window, 12999);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('qlogTracer: off without a directory; --qlog wins over QLOGDIR; the directory is created', async () => {
  assert.equal(qlogTracer(undefined, {}), undefined);
  assert.equal(qlogTracer('', {}), undefined);
  const base = tmp();
  try {
    const fromEnv = join(base, 'env', 'nested');
    const f = qlogTracer(undefined, { QLOGDIR: fromEnv });
    assert.ok(f);
    assert.ok(existsSync(fromEnv));
    const flag = join(base, 'flag');
    const g = qlogTracer(flag, { QLOGDIR: fromEnv })!;
    const sink = g('server', ODCID)!;
    sink({ time: 5, name: 'connectivity:connection_state_updated', data: { new: 'closed' } });
    for (let i = 0; i < 50 && readdirSync(flag).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 50));
    assert.deepEqual(readdirSync(flag), ['8394c8f03e515708_server.sqlog']);
    assert.deepEqual(readdirSync(fromEnv), []);
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
});

test('qlog schema: rejects records that are not what the writer emits', () => {
  const v = qlogValidators();
  assert.ok(v.event(packetSent(1, 1)));
  const noHeader = packetSent(1, 1) as { data: Record<string, unknown> };
  delete noHeader.data.header;
  assert.equal(v.event(noHeader), false, 'packet_sent needs a header');
  assert.equal(v.event({ time: 1, name: 'transport:packet_sent', data: { ...packetSent(1, 1).data, extra: 1 } }), false, 'no unknown fields');
  assert.equal(v.event({ time: 1, name: 'transport:made_up', data: {} }), false, 'no unknown event names');
  assert.equal(v.event({ time: -1, name: 'qlog:events_dropped', data: { count: 3 } }), false, 'times are not negative');
  assert.equal(
    v.event({ time: 1, name: 'transport:packet_received', data: { header: { packet_type: '1RTT' }, frames: [{ frame_type: 'stream', stream_id: 0 }], raw: { length: 1 } } }),
    false,
    'a STREAM frame has offset and length',
  );
  assert.equal(v.header({ qlog_version: '0.3', qlog_format: 'JSON', trace: {} }), false);
  assert.throws(() => parseJsonSeq('{"a":1}\n'), /starts with RS/);
  assert.throws(() => parseJsonSeq('\x1e{"a":1}'), /does not end with LF/);
});
