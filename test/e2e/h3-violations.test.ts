/**
 * HTTP/3 protocol violations against Http3Server over real UDP (RFC 9114 §6.2, §7, §4.1.2, §8; RFC 9204 §6).
 * The client is a raw QuicConnection (ALPN h3) writing hand-made bytes. Each test asserts the exact error code and
 * its scope: a connection error closes the QUIC connection with the code as an application error; a stream error
 * resets only that stream, and a valid request on the same connection still succeeds afterwards.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { UdpEndpoint, type QuicConnection } from '../../src/io/udp.js';
import type { QuicStream } from '../../src/io/stream.js';
import type { CloseInfo } from '../../src/quic/connection-types.js';
import { Http3Server } from '../../src/h3/server.js';
import { H3ErrorCode as E } from '../../src/h3/errors.js';
import { encodeFrame, encodeFrameHeader, encodeSettingsFrame, encodeVarintFrame, FrameReader, FrameType } from '../../src/h3/frames.js';
import { QpackEncoder } from '../../src/h3/qpack/encoder.js';
import { QpackDecoder } from '../../src/h3/qpack/decoder.js';
import type { HeaderList } from '../../src/h3/validate.js';
import { clientConfig, serverConfig } from '../sim/helpers.js';

const QPACK_DECOMPRESSION_FAILED = 0x200;
const QPACK_ENCODER_STREAM_ERROR = 0x201;

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, rej) => {
    timer = setTimeout(() => rej(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

let server: Http3Server;
let client: UdpEndpoint;

before(async () => {
  const sc = serverConfig();
  server = await Http3Server.listen({ listen: [{ address: '127.0.0.1', port: 0 }], certChain: sc.certChain!, privateKey: sc.privateKey! }, (req, res) => {
    req.resume();
    req.on('end', () => {
      res.respond(200, { 'x-path': req.path });
      res.end('ok');
    });
  });
  client = await UdpEndpoint.open({ bind: [{ address: '127.0.0.1', port: 0 }] });
  client.on('error', () => {});
});

after(async () => {
  await client.close(0, 'done', 500);
  await server.close({ drainMs: 200 });
});

interface Raw {
  conn: QuicConnection;
  closed: Promise<CloseInfo>;
}

async function connect(): Promise<Raw> {
  const conn = client.connect(clientConfig(), server.addresses()[0]);
  const closed = new Promise<CloseInfo>((res) => conn.on('close', res));
  await within(conn.ready, 5000, 'handshake');
  return { conn, closed };
}

/** Opens a unidirectional stream and writes the stream type then `bytes`. */
async function uni(conn: QuicConnection, type: number, bytes: Buffer = Buffer.alloc(0), fin = false): Promise<QuicStream> {
  const s = await conn.openStream(false);
  s.on('error', () => {});
  s.write(Buffer.concat([Buffer.from([type]), bytes]));
  if (fin) s.end();
  return s;
}

const SETTINGS = encodeSettingsFrame([]);

async function expectConnectionError(raw: Raw, code: number): Promise<void> {
  const info = await within(raw.closed, 5000, `connection close 0x${code.toString(16)}`);
  assert.equal(info.by, 'peer');
  assert.equal(info.application, true);
  assert.equal(info.code, code, `expected 0x${code.toString(16)}, got 0x${info.code.toString(16)} (${info.reason})`);
}

function headersFrame(streamId: number, fields: HeaderList): Buffer {
  return encodeFrame(FrameType.HEADERS, new QpackEncoder().encode(streamId, fields));
}

function get(path: string): HeaderList {
  return [
    [':method', 'GET'],
    [':scheme', 'https'],
    [':authority', 'localhost'],
    [':path', path],
  ];
}

/** Opens a request stream, writes what `build` returns (given the stream id), FIN when asked. */
async function request(conn: QuicConnection, build: (id: number) => Buffer, fin = true): Promise<QuicStream> {
  const s = await conn.openStream(true);
  s.on('error', () => {});
  s.write(build(s.id));
  if (fin) s.end();
  return s;
}

/** Waits for the server's RESET_STREAM on `s` and returns its code. */
function resetCode(s: QuicStream): Promise<number> {
  if (s.resetCode !== null) return Promise.resolve(s.resetCode);
  return within(new Promise<number>((res) => s.once('reset', res)), 5000, `reset of stream ${s.id}`);
}

/** A valid GET on the connection succeeds (status 200, body "ok"). */
async function validRequestWorks(conn: QuicConnection, path = '/ok'): Promise<void> {
  const s = await request(conn, (id) => headersFrame(id, get(path)));
  const reader = new FrameReader();
  const dec = new QpackDecoder({ maxTableCapacity: 0, maxBlockedStreams: 0 });
  let status: string | undefined;
  let body = '';
  await within(
    new Promise<void>((resolve, reject) => {
      s.on('data', (d: Buffer) => {
        reader.push(d);
        for (let e = reader.next(); e; e = reader.next()) {
          if (e.kind === 'frame' && e.type === FrameType.HEADERS) {
            const h = dec.decode(s.id, e.payload);
            if (h !== 'blocked') status = h.find(([n]) => n === ':status')?.[1];
          } else if (e.kind === 'data') body += e.chunk.toString();
        }
      });
      s.on('end', resolve);
      s.on('error', reject);
    }),
    5000,
    'valid response',
  );
  assert.equal(status, '200');
  assert.equal(body, 'ok');
}

// ------------------------------------------------------------------------------------------------ control stream

test('first control-stream frame not SETTINGS: H3_MISSING_SETTINGS', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, encodeVarintFrame(FrameType.MAX_PUSH_ID, 0));
  await expectConnectionError(raw, E.H3_MISSING_SETTINGS);
});

test('second SETTINGS frame: H3_FRAME_UNEXPECTED', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, Buffer.concat([SETTINGS, SETTINGS]));
  await expectConnectionError(raw, E.H3_FRAME_UNEXPECTED);
});

for (const id of [0x2, 0x3, 0x4, 0x5]) {
  test(`HTTP/2 setting 0x${id.toString(16)}: H3_SETTINGS_ERROR`, { timeout: 15_000 }, async () => {
    const raw = await connect();
    await uni(raw.conn, 0x00, encodeSettingsFrame([[id, 1]]));
    await expectConnectionError(raw, E.H3_SETTINGS_ERROR);
  });
}

for (const t of [0x2, 0x6, 0x8, 0x9]) {
  test(`HTTP/2 frame type 0x${t} on the control stream: H3_FRAME_UNEXPECTED`, { timeout: 15_000 }, async () => {
    const raw = await connect();
    await uni(raw.conn, 0x00, Buffer.concat([SETTINGS, encodeFrame(t, Buffer.alloc(8))]));
    await expectConnectionError(raw, E.H3_FRAME_UNEXPECTED);
  });
}

test('HTTP/2 frame type 0x6 on a request stream: H3_FRAME_UNEXPECTED', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS);
  await request(raw.conn, (id) => Buffer.concat([headersFrame(id, get('/')), encodeFrame(0x6, Buffer.alloc(8))]), false);
  await expectConnectionError(raw, E.H3_FRAME_UNEXPECTED);
});

test('DATA on the control stream: H3_FRAME_UNEXPECTED', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, Buffer.concat([SETTINGS, encodeFrame(FrameType.DATA, Buffer.from('x'))]));
  await expectConnectionError(raw, E.H3_FRAME_UNEXPECTED);
});

test('HEADERS on the control stream: H3_FRAME_UNEXPECTED', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, Buffer.concat([SETTINGS, headersFrame(0, get('/'))]));
  await expectConnectionError(raw, E.H3_FRAME_UNEXPECTED);
});

test('a second control stream: H3_STREAM_CREATION_ERROR', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS);
  await uni(raw.conn, 0x00, SETTINGS);
  await expectConnectionError(raw, E.H3_STREAM_CREATION_ERROR);
});

test('a push stream from the client: H3_STREAM_CREATION_ERROR', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS);
  await uni(raw.conn, 0x01, Buffer.from([0x00]));
  await expectConnectionError(raw, E.H3_STREAM_CREATION_ERROR);
});

test('the control stream closed: H3_CLOSED_CRITICAL_STREAM', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS, true);
  await expectConnectionError(raw, E.H3_CLOSED_CRITICAL_STREAM);
});

test('an unknown (GREASE) stream type is stopped with H3_STREAM_CREATION_ERROR; the connection goes on', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS);
  const g = await raw.conn.openStream(false);
  g.on('error', () => {});
  const stopped = within(new Promise<number>((res) => g.once('stopSending', res)), 5000, 'STOP_SENDING');
  g.write(Buffer.from([0x40, 0x21, 1, 2, 3])); // type 0x21 (reserved), 2-byte varint
  assert.equal(await stopped, E.H3_STREAM_CREATION_ERROR);
  await validRequestWorks(raw.conn);
  raw.conn.close(0);
});

test('a frame whose length overruns its content (SETTINGS cut inside a setting): H3_FRAME_ERROR', { timeout: 15_000 }, async () => {
  const raw = await connect();
  // SETTINGS, length 2: id 0x06, then the first byte of a 2-byte varint value; the second byte lies outside the frame.
  await uni(raw.conn, 0x00, Buffer.from([0x04, 0x02, 0x06, 0x40, 0x00]));
  await expectConnectionError(raw, E.H3_FRAME_ERROR);
});

// ------------------------------------------------------------------------------------------------ request streams

test('DATA before HEADERS on a request stream: H3_FRAME_UNEXPECTED (connection)', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS);
  await request(raw.conn, () => encodeFrame(FrameType.DATA, Buffer.from('early')));
  await expectConnectionError(raw, E.H3_FRAME_UNEXPECTED);
});

const MALFORMED: [string, HeaderList][] = [
  ['missing :method', get('/').filter(([n]) => n !== ':method')],
  ['missing :path', get('/').filter(([n]) => n !== ':path')],
  ['missing :scheme', get('/').filter(([n]) => n !== ':scheme')],
  ['duplicate :path', [...get('/'), [':path', '/again']]],
  ['duplicate :method', [[':method', 'GET'], ...get('/')]],
  ['uppercase field name', [...get('/'), ['X-Upper', '1']]],
  ['connection-specific field (connection)', [...get('/'), ['connection', 'keep-alive']]],
  ['connection-specific field (transfer-encoding)', [...get('/'), ['transfer-encoding', 'chunked']]],
  ['te other than trailers', [...get('/'), ['te', 'gzip']]],
  ['empty :path', get('')],
  ['pseudo-header after a regular field', [...get('/').slice(0, 3), ['accept', '*/*'], [':path', '/']]],
];

for (const [what, fields] of MALFORMED) {
  test(`malformed request (${what}): H3_MESSAGE_ERROR on that stream only`, { timeout: 15_000 }, async () => {
    const raw = await connect();
    await uni(raw.conn, 0x00, SETTINGS);
    const bad = await request(raw.conn, (id) => headersFrame(id, fields), false); // no FIN: STOP_SENDING is still meaningful
    const stopped = new Promise<number>((res) => bad.once('stopSending', res));
    assert.equal(await resetCode(bad), E.H3_MESSAGE_ERROR);
    assert.equal(await within(stopped, 5000, 'STOP_SENDING'), E.H3_MESSAGE_ERROR);
    await validRequestWorks(raw.conn);
    assert.equal(raw.conn.closeInfo, null);
    raw.conn.close(0);
  });
}

test('content-length that disagrees with DATA: H3_MESSAGE_ERROR on that stream only', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS);
  const post = (cl: string): HeaderList => [[':method', 'POST'], ...get('/upload').slice(1), ['content-length', cl]];
  // Less DATA than declared (noticed at FIN) ...
  const short = await request(raw.conn, (id) => Buffer.concat([headersFrame(id, post('10')), encodeFrame(FrameType.DATA, Buffer.from('12345'))]));
  assert.equal(await resetCode(short), E.H3_MESSAGE_ERROR);
  // ... and more DATA than declared (noticed at once, before FIN).
  const long = await request(raw.conn, (id) => Buffer.concat([headersFrame(id, post('3')), encodeFrame(FrameType.DATA, Buffer.from('12345'))]), false);
  assert.equal(await resetCode(long), E.H3_MESSAGE_ERROR);
  await validRequestWorks(raw.conn);
  assert.equal(raw.conn.closeInfo, null);
  raw.conn.close(0);
});

test('a request stream cut inside a frame: H3_FRAME_ERROR', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS);
  await request(raw.conn, (id) => Buffer.concat([headersFrame(id, get('/')), encodeFrameHeader(FrameType.DATA, 10), Buffer.from('abc')]));
  await expectConnectionError(raw, E.H3_FRAME_ERROR);
});

// ------------------------------------------------------------------------------------------------ QPACK

test('a QPACK reference past the static table: QPACK_DECOMPRESSION_FAILED', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS);
  // Required Insert Count 0, Base 0, then an indexed static field line 1 1 index(6) with index 100 (table has 99).
  await request(raw.conn, () => encodeFrame(FrameType.HEADERS, Buffer.from([0x00, 0x00, 0xff, 100 - 63])));
  await expectConnectionError(raw, QPACK_DECOMPRESSION_FAILED);
});

test('an invalid encoder-stream instruction (capacity above our limit): QPACK_ENCODER_STREAM_ERROR', { timeout: 15_000 }, async () => {
  const raw = await connect();
  await uni(raw.conn, 0x00, SETTINGS);
  // Set Dynamic Table Capacity (001 + 5-bit prefix) to 1 000 000, far above the 4096 the server advertised.
  const n = 1_000_000 - 31;
  const bytes = [0x3f];
  let v = n;
  while (v >= 128) {
    bytes.push((v & 0x7f) | 0x80);
    v = Math.floor(v / 128);
  }
  bytes.push(v);
  await uni(raw.conn, 0x02, Buffer.from(bytes));
  await expectConnectionError(raw, QPACK_ENCODER_STREAM_ERROR);
});
