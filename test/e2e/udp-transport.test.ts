/**
 * End-to-end QUIC over real UDP sockets on loopback: our client against our server through src/io/udp.ts.
 * Covers the TLS 1.3 handshake (RFC 8446 §4, RFC 9001 §4) with every cipher suite and certificate type, key exchange
 * groups and HelloRetryRequest, bulk stream transfer, key update (RFC 9001 §6), idle timeout (RFC 9000 §10.1),
 * application close (RFC 9000 §10.2), RESET_STREAM (RFC 9000 §19.4), certificate failures as CRYPTO_ERROR
 * (RFC 9001 §4.8), the NSS key log file, and IPv6.
 * Every test has a test-level timeout and closes its endpoints in `finally`. No timing assertions: throughput goes
 * to the diagnostic output only.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { UdpEndpoint, type QuicConnection } from '../../src/io/udp.js';
import { StreamResetError, type QuicStream } from '../../src/io/stream.js';
import type { CloseInfo, ConnectionConfig } from '../../src/quic/connection-types.js';
import { ALL_SUITES } from '../../src/quic/crypto/suites.js';
import { TransportErrorCode, TlsAlert } from '../../src/quic/errors.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import { KeyLogWriter, keyLogSink } from '../../src/obs/keylog.js';
import { CERTS, clientConfig, serverConfig } from '../sim/helpers.js';

const LOOPBACK4 = '127.0.0.1';
const LOOPBACK6 = '::1';
const CRYPTO_ERROR = TransportErrorCode.CRYPTO_ERROR_BASE;

// ------------------------------------------------------------------------------------------------ helpers

/** Rejects after `ms` with a message naming what we waited for (every wait in this file is bounded). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

interface Pair {
  server: UdpEndpoint;
  client: UdpEndpoint;
  /** The client side of the connection. */
  conn: QuicConnection;
  /** The server side of the connection (resolves on the server's 'connection' event). */
  serverConn: Promise<QuicConnection>;
  close(): Promise<void>;
}

/**
 * Opens a server and a client endpoint on `host` and starts one connection. `onServerConn` runs synchronously on the
 * server's 'connection' event, so stream handlers are in place before any stream arrives.
 */
async function openPair(
  server: ConnectionConfig,
  client: ConnectionConfig,
  onServerConn: (c: QuicConnection) => void = echoStreams,
  host = LOOPBACK4,
): Promise<Pair> {
  const srv = await UdpEndpoint.open({ bind: [{ address: host, port: 0 }], server });
  let cli: UdpEndpoint;
  try {
    cli = await UdpEndpoint.open({ bind: [{ address: host, port: 0 }] });
  } catch (e) {
    await srv.close();
    throw e;
  }
  srv.on('error', () => {});
  cli.on('error', () => {});
  const serverConn = new Promise<QuicConnection>((resolve) =>
    srv.on('connection', (c: QuicConnection) => {
      onServerConn(c);
      resolve(c);
    }),
  );
  const conn = cli.connect(client, srv.address());
  return {
    server: srv,
    client: cli,
    conn,
    serverConn,
    close: async () => {
      await cli.close(0, 'test done', 1000);
      await srv.close(0, 'test done', 1000);
    },
  };
}

/** Server behaviour: every incoming bidirectional stream is echoed back, FIN included. */
function echoStreams(c: QuicConnection): void {
  c.on('stream', (s: QuicStream) => {
    s.on('error', () => {});
    s.on('data', (d: Buffer) => s.write(d));
    s.on('end', () => s.end());
  });
}

/** Collects a stream's incoming bytes until FIN. */
function readAll(s: QuicStream, ms: number, what: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  s.on('data', (d: Buffer) => chunks.push(d));
  return within(
    new Promise<Buffer>((resolve, reject) => {
      s.once('end', () => resolve(Buffer.concat(chunks)));
      s.once('error', reject);
    }),
    ms,
    what,
  );
}

/** Hashes a stream's incoming bytes until FIN. */
function hashAll(s: QuicStream, ms: number, what: string): Promise<{ bytes: number; sha256: string }> {
  const h = createHash('sha256');
  let bytes = 0;
  s.on('data', (d: Buffer) => {
    h.update(d);
    bytes += d.length;
  });
  return within(
    new Promise((resolve, reject) => {
      s.once('end', () => resolve({ bytes, sha256: h.digest('hex') }));
      s.once('error', reject);
    }),
    ms,
    what,
  );
}

/** Writes with backpressure: waits for 'drain' whenever write() returns false. */
async function writeAll(s: QuicStream, chunks: Iterable<Buffer>, end: boolean): Promise<void> {
  for (const c of chunks) {
    if (!s.write(c)) await within(once(s, 'drain'), 15_000, 'stream drain');
  }
  if (end) s.end();
}

/**
 * Deterministic test payload: `total` bytes in 256 KiB chunks, each a copy of one random block with its index
 * written at the front, so misplaced or repeated chunks change the hash.
 */
function* payload(block: Buffer, total: number): Generator<Buffer> {
  for (let off = 0, i = 0; off < total; off += block.length, i++) {
    const c = Buffer.from(block.subarray(0, Math.min(block.length, total - off)));
    if (c.length >= 4) c.writeUInt32BE(i, 0);
    yield c;
  }
}

function payloadDigest(block: Buffer, total: number): string {
  const h = createHash('sha256');
  for (const c of payload(block, total)) h.update(c);
  return h.digest('hex');
}

/** Waits for a connection's 'close' event (or returns the one already seen). */
function closed(c: QuicConnection, ms: number, what: string): Promise<CloseInfo> {
  if (c.closeInfo) return Promise.resolve(c.closeInfo);
  return within(once(c, 'close').then(([info]) => info as CloseInfo), ms, what);
}

/** One echo round trip on a new bidirectional stream. */
async function echoOnce(c: QuicConnection, size = 100_000): Promise<void> {
  const s = await within(c.openStream(true), 3000, 'openStream');
  const msg = randomBytes(size);
  const back = readAll(s, 5000, 'echo');
  s.end(msg);
  assert.ok((await back).equals(msg), 'echoed bytes differ from those sent');
}

/** Retries `keyUpdate()` every 20 ms for up to 2 s (it returns false until allowed). */
async function keyUpdateWhenAllowed(c: QuicConnection, who: string): Promise<void> {
  const deadline = performance.now() + 2000;
  while (!c.keyUpdate()) {
    if (performance.now() > deadline) throw new Error(`${who}: keyUpdate() still refused after 2 s`);
    await sleep(20);
  }
}

/** White-box look at the TLS state (private in TypeScript, present at run time). */
function tlsOf(c: QuicConnection): { clientRandom: Buffer | null; hrrSuite: unknown; hrrGroup: unknown } {
  return (c.conn as unknown as { tls: { clientRandom: Buffer | null; hrrSuite: unknown; hrrGroup: unknown } }).tls;
}

const SELF_SIGNED: ConnectionConfig = {
  alpn: ['h3'],
  certChain: loadPemChain(readFileSync(`${CERTS}selfsigned.pem`, 'utf8')),
  privateKey: loadPrivateKey(readFileSync(`${CERTS}selfsigned.key`, 'utf8')),
};

// ------------------------------------------------------------------------------------------------ 1. suites x certs

for (const suite of ALL_SUITES) {
  for (const kind of ['ecdsa', 'rsa', 'ed25519'] as const) {
    test(`handshake ${suite.name} with a ${kind} certificate: ALPN h3, forced suite, echo`, { timeout: 10_000 }, async () => {
      const p = await openPair(serverConfig(kind), clientConfig({ cipherSuites: [suite] }));
      try {
        await within(p.conn.ready, 5000, 'client handshake');
        const sc = await within(p.serverConn, 5000, 'server connection');
        await within(sc.ready, 5000, 'server handshake');
        assert.equal(p.conn.alpn, 'h3');
        assert.equal(sc.alpn, 'h3');
        assert.equal(p.conn.conn.cipherSuite, suite.name);
        assert.equal(sc.conn.cipherSuite, suite.name);
        assert.equal(p.conn.conn.state, 'established');
        await echoOnce(p.conn);
      } finally {
        await p.close();
      }
    });
  }
}

// ------------------------------------------------------------------------------------------------ 2. groups

test('key exchange: client offering only secp256r1 completes without HelloRetryRequest', { timeout: 10_000 }, async () => {
  const p = await openPair(serverConfig('ecdsa'), clientConfig({ groups: ['secp256r1'] }));
  try {
    await within(p.conn.ready, 5000, 'client handshake');
    const sc = await within(p.serverConn, 5000, 'server connection');
    assert.equal(tlsOf(p.conn).hrrSuite, null, 'the client saw a HelloRetryRequest');
    assert.equal(tlsOf(sc).hrrGroup, null, 'the server sent a HelloRetryRequest');
    await echoOnce(p.conn);
  } finally {
    await p.close();
  }
});

test('key exchange: HelloRetryRequest (client secp256r1+x25519, server x25519 only) completes', { timeout: 10_000 }, async () => {
  const p = await openPair(serverConfig('ecdsa', { groups: ['x25519'] }), clientConfig({ groups: ['secp256r1', 'x25519'] }));
  try {
    await within(p.conn.ready, 5000, 'client handshake');
    const sc = await within(p.serverConn, 5000, 'server connection');
    assert.notEqual(tlsOf(p.conn).hrrSuite, null, 'the client never saw a HelloRetryRequest');
    assert.equal(tlsOf(sc).hrrGroup, 'x25519');
    await echoOnce(p.conn);
  } finally {
    await p.close();
  }
});

test('key exchange: no common group fails with handshake_failure', { timeout: 10_000 }, async () => {
  const p = await openPair(serverConfig('ecdsa', { groups: ['x25519'] }), clientConfig({ groups: ['secp256r1'] }));
  try {
    await assert.rejects(within(p.conn.ready, 5000, 'client handshake failure'));
    const info = await closed(p.conn, 5000, 'client close');
    assert.equal(info.by, 'peer');
    assert.equal(info.application, false);
    assert.equal(info.code, CRYPTO_ERROR + TlsAlert.handshake_failure);
  } finally {
    await p.close();
  }
});

// ------------------------------------------------------------------------------------------------ 3. bulk transfer

test('50 MB upload: the server returns the byte count and SHA-256 of what it received', { timeout: 30_000 }, async (t) => {
  const SIZE = 50_000_000;
  const block = randomBytes(256 * 1024);
  const expected = payloadDigest(block, SIZE);
  const p = await openPair(serverConfig('ecdsa'), clientConfig(), (c) =>
    c.on('stream', (s: QuicStream) => {
      s.on('error', () => {});
      const h = createHash('sha256');
      let n = 0;
      s.on('data', (d: Buffer) => {
        h.update(d);
        n += d.length;
      });
      s.on('end', () => s.end(`${n} ${h.digest('hex')}`));
    }),
  );
  try {
    await within(p.conn.ready, 5000, 'handshake');
    const s = await within(p.conn.openStream(true), 3000, 'openStream');
    const answer = readAll(s, 25_000, 'upload answer');
    const t0 = performance.now();
    await writeAll(s, payload(block, SIZE), true);
    const [count, digest] = (await answer).toString().split(' ');
    const secs = (performance.now() - t0) / 1000;
    assert.equal(Number(count), SIZE);
    assert.equal(digest, expected);
    t.diagnostic(`upload ${SIZE} bytes in ${secs.toFixed(2)} s: ${(SIZE / secs / 1e6).toFixed(1)} MB/s; client stats ${JSON.stringify(p.conn.conn.stats)}`);
  } finally {
    await p.close();
  }
});

test('20 MB download: the client hashes what the server writes', { timeout: 30_000 }, async (t) => {
  const SIZE = 20_000_000;
  const block = randomBytes(256 * 1024);
  const expected = payloadDigest(block, SIZE);
  const p = await openPair(serverConfig('ecdsa'), clientConfig(), (c) =>
    c.on('stream', (s: QuicStream) => {
      s.on('error', () => {});
      s.resume(); // the request body is ignored; its FIN triggers the response
      s.on('end', () => void writeAll(s, payload(block, SIZE), true).catch(() => {}));
    }),
  );
  try {
    await within(p.conn.ready, 5000, 'handshake');
    const s = await within(p.conn.openStream(true), 3000, 'openStream');
    const got = hashAll(s, 25_000, 'download');
    const t0 = performance.now();
    s.end('GET');
    const r = await got;
    const secs = (performance.now() - t0) / 1000;
    assert.equal(r.bytes, SIZE);
    assert.equal(r.sha256, expected);
    t.diagnostic(`download ${SIZE} bytes in ${secs.toFixed(2)} s: ${(SIZE / secs / 1e6).toFixed(1)} MB/s; client stats ${JSON.stringify(p.conn.conn.stats)}`);
  } finally {
    await p.close();
  }
});

// ------------------------------------------------------------------------------------------------ 4. key update

test('key update: client-initiated, then server-initiated, with data flowing before, between and after', { timeout: 15_000 }, async () => {
  const block = randomBytes(64 * 1024);
  const serverUpdates: { generation: number; initiatedBy: string }[] = [];
  const clientUpdates: { generation: number; initiatedBy: string }[] = [];
  const p = await openPair(serverConfig('ecdsa'), clientConfig(), (c) => {
    echoStreams(c);
    c.on('keyupdate', (e: { generation: number; initiatedBy: string }) => serverUpdates.push(e));
  });
  p.conn.on('keyupdate', (e: { generation: number; initiatedBy: string }) => clientUpdates.push(e));
  try {
    await within(p.conn.ready, 5000, 'handshake');
    const sc = await within(p.serverConn, 5000, 'server connection');
    const s = await within(p.conn.openStream(true), 3000, 'openStream');
    // Echoed bytes arrive in order; each phase waits for its own bytes to come back before moving on.
    const received: Buffer[] = [];
    let receivedBytes = 0;
    let waiter: { need: number; resolve: () => void } | null = null;
    s.on('data', (d: Buffer) => {
      received.push(d);
      receivedBytes += d.length;
      if (waiter && receivedBytes >= waiter.need) waiter.resolve();
    });
    const ended = within(once(s, 'end'), 10_000, 'echo FIN');
    let sent = 0;
    const sentHash = createHash('sha256');
    const phase = async (chunks: number, what: string): Promise<void> => {
      const data = [...payload(block, chunks * block.length)];
      for (const d of data) sentHash.update(d);
      sent += chunks * block.length;
      const back = new Promise<void>((resolve) => (waiter = { need: sent, resolve }));
      await writeAll(s, data, false);
      if (receivedBytes < sent) await within(back, 5000, `echo of ${what}`);
      waiter = null;
    };

    await phase(8, 'data before the updates');
    await keyUpdateWhenAllowed(p.conn, 'client');
    await phase(8, 'data after the client update');
    assert.equal(p.conn.conn.currentKeyGeneration, 1);
    assert.equal(sc.conn.currentKeyGeneration, 1, 'the server did not follow the client-initiated update');
    await keyUpdateWhenAllowed(sc, 'server');
    await phase(8, 'data after the server update');
    s.end();
    await ended;

    assert.ok(p.conn.conn.currentKeyGeneration >= 2, `client key generation ${p.conn.conn.currentKeyGeneration}`);
    assert.ok(sc.conn.currentKeyGeneration >= 2, `server key generation ${sc.conn.currentKeyGeneration}`);
    assert.deepEqual(
      clientUpdates.map((e) => [e.generation, e.initiatedBy]),
      [
        [1, 'local'],
        [2, 'peer'],
      ],
    );
    assert.deepEqual(
      serverUpdates.map((e) => [e.generation, e.initiatedBy]),
      [
        [1, 'peer'],
        [2, 'local'],
      ],
    );
    const all = Buffer.concat(received);
    assert.equal(all.length, sent);
    assert.equal(createHash('sha256').update(all).digest('hex'), sentHash.digest('hex'), 'echoed data differs');
    assert.equal(p.conn.conn.stats.undecryptable, 0, 'client could not decrypt some packets');
    assert.equal(sc.conn.stats.undecryptable, 0, 'server could not decrypt some packets');
  } finally {
    await p.close();
  }
});

// ------------------------------------------------------------------------------------------------ 5. idle timeout

test('idle timeout: both sides close with by=idle when nothing is sent', { timeout: 10_000 }, async () => {
  const p = await openPair(serverConfig('ecdsa', { maxIdleTimeout: 300 }), clientConfig({ maxIdleTimeout: 300 }));
  try {
    await within(p.conn.ready, 5000, 'handshake');
    const sc = await within(p.serverConn, 5000, 'server connection');
    const [ci, si] = await Promise.all([closed(p.conn, 5000, 'client idle close'), closed(sc, 5000, 'server idle close')]);
    assert.equal(ci.by, 'idle');
    assert.equal(si.by, 'idle');
  } finally {
    await p.close();
  }
});

// ------------------------------------------------------------------------------------------------ 6. application close

test('application close: code 0x1234 and reason reach the server; its open streams error', { timeout: 10_000 }, async () => {
  const serverStreamErrors: Promise<unknown>[] = [];
  let gotData!: () => void;
  const serverGotData = new Promise<void>((r) => (gotData = r));
  const p = await openPair(serverConfig('ecdsa'), clientConfig(), (c) =>
    c.on('stream', (s: QuicStream) => {
      serverStreamErrors.push(within(once(s, 'error'), 5000, 'server stream error').then(([e]) => e));
      s.once('data', () => gotData());
    }),
  );
  try {
    await within(p.conn.ready, 5000, 'handshake');
    const sc = await within(p.serverConn, 5000, 'server connection');
    const cs = await within(p.conn.openStream(true), 3000, 'openStream');
    cs.on('error', () => {});
    cs.write('not finished');
    await within(serverGotData, 5000, 'data on the server');
    // A stream the server opened itself, with data sent, also open at close time.
    const own = await within(sc.openStream(true), 3000, 'server openStream');
    serverStreamErrors.push(within(once(own, 'error'), 5000, 'server-opened stream error').then(([e]) => e));
    own.write('also open');

    const serverClosed = closed(sc, 5000, 'server close');
    p.conn.close(0x1234, 'bye');
    const info = await serverClosed;
    assert.equal(info.by, 'peer');
    assert.equal(info.application, true);
    assert.equal(info.code, 0x1234);
    assert.equal(info.reason, 'bye');
    const errs = await Promise.all(serverStreamErrors);
    assert.equal(errs.length, 2);
    for (const e of errs) assert.ok(e instanceof Error && /0x1234/.test(e.message), `unexpected stream error: ${String(e)}`);
    // The close's Error reports an event: no stack captured (formatting one cost every closed connection tens of µs).
    for (const e of errs) assert.equal((e as Error).stack, `Error: ${(e as Error).message}`);
    assert.ok(Error.stackTraceLimit > 0, 'Error.stackTraceLimit is restored');
    const ci = await closed(p.conn, 5000, 'client close');
    assert.equal(ci.by, 'local');
    assert.equal(ci.code, 0x1234);
  } finally {
    await p.close();
  }
});

// ------------------------------------------------------------------------------------------------ 7. stream reset

test('stream reset: RESET_STREAM 0x77 reaches the peer while another stream completes', { timeout: 10_000 }, async () => {
  const resetSeen = new Map<number, Promise<{ event: number; error: unknown }>>();
  const p = await openPair(serverConfig('ecdsa'), clientConfig(), (c) =>
    c.on('stream', (s: QuicStream) => {
      const ev = once(s, 'reset').then(([code]) => code as number);
      const er = once(s, 'error').then(([e]) => e as unknown);
      resetSeen.set(
        s.id,
        Promise.all([ev, er]).then(([event, error]) => ({ event, error })),
      );
      // Echo: the completing stream gets its data back; the reset one never sends FIN.
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end());
    }),
  );
  try {
    await within(p.conn.ready, 5000, 'handshake');
    const a = await within(p.conn.openStream(true), 3000, 'openStream a');
    const b = await within(p.conn.openStream(true), 3000, 'openStream b');
    a.on('error', () => {}); // the server's side of `a` is destroyed and answers with its own reset/stop
    // Let the server see stream `a` (its first bytes echo back), then reset it.
    const firstEcho = within(once(a, 'data'), 5000, 'first bytes of a');
    a.write('part of a message that will never finish');
    await firstEcho;
    const bData = randomBytes(500_000);
    const bBack = readAll(b, 8000, 'echo on b');
    b.write(bData.subarray(0, 250_000));
    a.reset(0x77);
    b.end(bData.subarray(250_000));

    const seen = resetSeen.get(a.id);
    assert.ok(seen, 'the server never saw stream a');
    const { event, error } = await within(seen, 5000, 'reset on the server');
    assert.equal(event, 0x77);
    assert.ok(error instanceof StreamResetError, `error is ${String(error)}`);
    assert.equal(error.errorCode, 0x77);
    assert.equal(error.streamId, a.id);
    assert.ok((await bBack).equals(bData), 'stream b data differs');
    assert.equal(p.conn.conn.state, 'established');
  } finally {
    await p.close();
  }
});

// ------------------------------------------------------------------------------------------------ 8. certificates

test('certificate: client without the CA fails with CRYPTO_ERROR unknown_ca', { timeout: 10_000 }, async () => {
  const p = await openPair(serverConfig('ecdsa'), clientConfig({ ca: undefined, serverName: 'localhost' }));
  try {
    await assert.rejects(
      within(p.conn.ready, 5000, 'handshake failure'),
      /^HandshakeError: certificate verification failed: unknown CA: .*\(TLS alert unknown_ca sent to the server at 127\.0\.0\.1:\d+\)$/,
    );
    const info = await closed(p.conn, 5000, 'client close');
    assert.equal(info.by, 'local');
    assert.equal(info.application, false);
    assert.equal(info.code, CRYPTO_ERROR + TlsAlert.unknown_ca);
    const sc = await within(p.serverConn, 5000, 'server connection');
    const si = await closed(sc, 5000, 'server close');
    assert.equal(si.by, 'peer');
    assert.equal(si.code, CRYPTO_ERROR + TlsAlert.unknown_ca);
  } finally {
    await p.close();
  }
});

test('certificate: wrong serverName fails with CRYPTO_ERROR bad_certificate', { timeout: 10_000 }, async () => {
  const p = await openPair(serverConfig('ecdsa'), clientConfig({ serverName: 'example.com' }));
  try {
    await assert.rejects(
      within(p.conn.ready, 5000, 'handshake failure'),
      /certificate verification failed: certificate for .* does not match host example\.com \(TLS alert bad_certificate sent/,
    );
    const info = await closed(p.conn, 5000, 'client close');
    assert.equal(info.application, false);
    assert.equal(info.code, CRYPTO_ERROR + TlsAlert.bad_certificate);
    const sc = await within(p.serverConn, 5000, 'server connection');
    const si = await closed(sc, 5000, 'server close');
    assert.equal(si.by, 'peer');
    assert.equal(si.code, CRYPTO_ERROR + TlsAlert.bad_certificate);
  } finally {
    await p.close();
  }
});

test('certificate: a self-signed certificate is refused by default and accepted with insecure: true', { timeout: 10_000 }, async () => {
  const refused = await openPair(SELF_SIGNED, clientConfig());
  try {
    await assert.rejects(within(refused.conn.ready, 5000, 'handshake failure'), /certificate verification failed: unknown CA: .*unknown_ca/);
    const info = await closed(refused.conn, 5000, 'client close');
    assert.equal(info.code, CRYPTO_ERROR + TlsAlert.unknown_ca);
  } finally {
    await refused.close();
  }
  const p = await openPair(SELF_SIGNED, clientConfig({ ca: undefined, insecure: true }));
  try {
    await within(p.conn.ready, 5000, 'handshake');
    assert.equal(p.conn.alpn, 'h3');
    await echoOnce(p.conn);
  } finally {
    await p.close();
  }
});

// ------------------------------------------------------------------------------------------------ 9. key log

test('key log: one 0600 file, five labels per connection from both sides, appended across connections', { timeout: 15_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-keylog-'));
  const path = join(dir, 'keys.log');
  const LABELS = ['CLIENT_HANDSHAKE_TRAFFIC_SECRET', 'SERVER_HANDSHAKE_TRAFFIC_SECRET', 'CLIENT_TRAFFIC_SECRET_0', 'SERVER_TRAFFIC_SECRET_0', 'EXPORTER_SECRET'];
  const parse = (text: string): string[][] => text.split('\n').filter((l) => l).map((l) => l.split(' '));
  const checkConnection = (lines: string[][], random: string): void => {
    const mine = lines.filter((l) => l[1] === random);
    for (const label of LABELS) {
      const entries = mine.filter((l) => l[0] === label);
      // Both sides derive and log the same secret: the line appears once from the client and once from the server.
      assert.equal(entries.length, 2, `${label} for ${random} appears ${entries.length} times`);
      assert.equal(entries[0][2], entries[1][2], `${label}: client and server logged different secrets`);
      assert.match(entries[0][2], /^[0-9a-f]{64}$/);
    }
    assert.equal(mine.length, 10);
  };
  const connectOnce = async (): Promise<string> => {
    const p = await openPair(serverConfig('ecdsa', { keyLog: keyLogSink(path) }), clientConfig({ keyLog: keyLogSink(path) }));
    try {
      await within(p.conn.ready, 5000, 'handshake');
      await within(p.serverConn, 5000, 'server connection');
      await echoOnce(p.conn, 1000);
      const random = tlsOf(p.conn).clientRandom;
      assert.ok(random && random.length === 32);
      return random.toString('hex');
    } finally {
      await p.close();
    }
  };
  try {
    const r1 = await connectOnce();
    assert.equal(statSync(path).mode & 0o777, 0o600);
    const after1 = readFileSync(path, 'utf8');
    const lines1 = parse(after1);
    for (const l of lines1) assert.equal(l.length, 3, `malformed line: ${l.join(' ')}`);
    checkConnection(lines1, r1);
    assert.equal(lines1.length, 10);

    // Close the shared writer so the second connection re-opens the file: it must append, not truncate.
    KeyLogWriter.open(path).close();
    const r2 = await connectOnce();
    assert.notEqual(r1, r2);
    const after2 = readFileSync(path, 'utf8');
    assert.ok(after2.startsWith(after1), 'the first connection\'s lines were not kept');
    const lines2 = parse(after2);
    assert.equal(lines2.length, 20);
    checkConnection(lines2, r1);
    checkConnection(lines2, r2);
    assert.equal(statSync(path).mode & 0o777, 0o600);
  } finally {
    KeyLogWriter.open(path).close();
    rmSync(dir, { recursive: true, force: true });
  }
});

// ------------------------------------------------------------------------------------------------ 10. IPv6

test('IPv6: handshake and echo over ::1', { timeout: 10_000 }, async (t) => {
  let p: Pair;
  try {
    p = await openPair(serverConfig('ecdsa'), clientConfig(), echoStreams, LOOPBACK6);
  } catch (e) {
    t.skip(`cannot bind ${LOOPBACK6}: ${(e as Error).message}`);
    return;
  }
  try {
    await within(p.conn.ready, 5000, 'handshake');
    const sc = await within(p.serverConn, 5000, 'server connection');
    assert.equal(p.server.address().address, LOOPBACK6);
    assert.equal(sc.remoteAddress.address, LOOPBACK6);
    assert.equal(p.conn.alpn, 'h3');
    await echoOnce(p.conn);
  } finally {
    await p.close();
  }
});
