/**
 * A QUIC transfer over loopback UDP with the packet protection backend QSR_CRYPTO selects, for
 * test/unit/crypto-backend.test.ts, which starts it in a child process (the backend is chosen once per process):
 *
 *   QSR_CRYPTO=node node dist/test/util/crypto-child.js run [SUITE...]
 *
 * Our client (offering SUITE..., default: its usual three) and our server (default preference) echo 1 MiB on one
 * stream, the client updates the keys, then another 1 MiB. Prints one JSON line: backend, negotiated suite, what
 * both sides saw. Without the `run` argument (the test runner loads every file under test/) it does nothing.
 */
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { UdpEndpoint, type QuicConnection } from '../../src/io/udp.js';
import type { QuicStream } from '../../src/io/stream.js';
import { cryptoBackend } from '../../src/quic/crypto/backend.js';
import { suiteByName } from '../../src/quic/crypto/suites.js';
import { clientConfig, serverConfig } from '../sim/helpers.js';

async function echo(c: QuicConnection, data: Buffer): Promise<boolean> {
  const s = await c.openStream(true);
  const h = createHash('sha256');
  const done = new Promise<void>((resolve, reject) => {
    s.on('data', (d: Buffer) => h.update(d));
    s.once('end', () => resolve());
    s.once('error', reject);
  });
  for (let off = 0; off < data.length; off += 64 * 1024) {
    if (!s.write(data.subarray(off, off + 64 * 1024))) await once(s, 'drain');
  }
  s.end();
  await done;
  return h.digest('hex') === createHash('sha256').update(data).digest('hex');
}

async function main(): Promise<void> {
  const names = process.argv.slice(3);
  const suites = names.map((n) => {
    const s = suiteByName(n);
    if (!s) throw new Error(`unknown suite ${n}`);
    return s;
  });
  const srv = await UdpEndpoint.open({ bind: [{ address: '127.0.0.1', port: 0 }], server: serverConfig('ecdsa') });
  const cli = await UdpEndpoint.open({ bind: [{ address: '127.0.0.1', port: 0 }] });
  let serverKeyUpdates = 0;
  srv.on('connection', (c: QuicConnection) => {
    c.on('keyupdate', () => serverKeyUpdates++);
    c.on('stream', (s: QuicStream) => {
      s.on('error', () => {});
      s.on('data', (d: Buffer) => s.write(d));
      s.on('end', () => s.end());
    });
  });
  const conn = cli.connect(clientConfig(suites.length ? { cipherSuites: suites } : {}), srv.address());
  await conn.ready;
  const first = await echo(conn, randomBytes(1 << 20));
  const deadline = Date.now() + 3000;
  while (!conn.keyUpdate()) {
    if (Date.now() > deadline) throw new Error('keyUpdate() refused for 3 s');
    await new Promise((r) => setTimeout(r, 20));
  }
  const second = await echo(conn, randomBytes(1 << 20));
  const b = cryptoBackend();
  const out = {
    backend: b.name,
    error: b.error,
    cipher: conn.conn.cipherSuite,
    echoed: first && second,
    serverKeyUpdates,
    undecryptable: conn.conn.stats.undecryptable,
  };
  await cli.close(0, 'done', 1000);
  await srv.close(0, 'done', 1000);
  process.stdout.write(JSON.stringify(out) + '\n');
}

if (process.argv[2] === 'run') {
  const timer = setTimeout(() => {
    process.stderr.write('crypto-child: timed out after 20 s\n');
    process.exit(3);
  }, 20_000);
  timer.unref();
  main().then(
    () => process.exit(0),
    (err: unknown) => {
      process.stderr.write(`crypto-child: ${err instanceof Error ? err.stack : String(err)}\n`);
      process.exit(1);
    },
  );
}
