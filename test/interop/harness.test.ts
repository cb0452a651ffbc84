// Self-test of the interop harness (test/interop): gtlsclient -> gtlsserver on loopback, captured with tshark and
// decrypted with gtlsserver's SSLKEYLOGFILE. Checks the output parsers, the capture/decrypt path and the matrix runner.
// Skipped when the peers are not installed, except with CI=true, where that is a failure.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import { missingPrograms, makeWorkDir, parseGtlsClientOutput, gtlsClientArgs, gnutlsCiphers, spawnBounded, waitFor, H3_NO_ERROR } from './peers.js';
import { analyseTsharkJson, h3FrameName, decryptReport, formatReport } from '../../src/obs/capture.js';
import { selfcheck, defaultCertDir } from './run.js';
import { compareResponses, fileSizes, keylogConnections, selectedCell, type CellResult } from './matrix.js';
import { CLIENTS, SERVERS } from './matrix-peers.js';
import { startRelay } from './relay.js';


const needed = ['gtlsclient', 'gtlsserver', 'tshark', 'editcap'];
const { missing, hint } = missingPrograms(needed);
const ci = process.env.CI === 'true';
const skipReason = missing.length > 0 && !ci ? hint : false;

test('parsers: gtlsclient output, our JSON events, tshark JSON pairing', () => {
  const out = [
    'I00000000 0x1234 frm tx 0 Initial CRYPTO(0x06) offset=0 len=300',
    'QUIC handshake has completed',
    'Negotiated cipher suite is CHACHA20-POLY1305',
    'Negotiated ALPN is h3',
    'Initiate key update',
    'http: stream 0x4 [:status: 404]',
    'HTTP stream 4 closed with error code 256',
    'ngtcp2_conn_handle_expiry: ERR_HANDSHAKE_TIMEOUT',
    'ngtcp2_conn_read_pkt: ERR_DRAINING',
    'I00000430 0x07e1 frm rx 6 1RTT CONNECTION_CLOSE(0x1d) error_code=(unknown)(0x100) frame_type=0 reason_len=0 reason=[]',
    'I00000431 0x07e1 frm rx 7 1RTT CONNECTION_CLOSE(0x1c) error_code=PROTOCOL_VIOLATION(0xa) frame_type=0 reason_len=0 reason=[]',
  ].join('\n');
  const r = parseGtlsClientOutput(out);
  assert.equal(r.handshakeCompleted, true);
  assert.equal(r.alpn, 'h3');
  assert.equal(r.suite, 'TLS_CHACHA20_POLY1305_SHA256');
  assert.equal(r.keyUpdatesInitiated, 1);
  assert.equal(r.statuses.get(4), 404);
  assert.equal(r.streamCloses.get(4), H3_NO_ERROR);
  assert.equal(r.errors.length, 2, r.errors.join('\n'));
  assert.equal(r.errors[0], 'ngtcp2_conn_handle_expiry: ERR_HANDSHAKE_TIMEOUT');
  assert.match(r.errors[1]!, /PROTOCOL_VIOLATION/);
  assert.equal(parseGtlsClientOutput('').handshakeCompleted, false);

  assert.equal(gnutlsCiphers(['TLS_CHACHA20_POLY1305_SHA256']), 'NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305');
  const args = gtlsClientArgs({ workDir: '/x', host: '127.0.0.1', port: 5, urls: ['https://127.0.0.1:5/'], keyUpdate: '1s', txLoss: 0.1 });
  assert.ok(args.includes('--key-update=1s') && args.includes('--tx-loss=0.1') && args.includes('--exit-on-all-streams-close'));
  assert.throws(() => gtlsClientArgs({ workDir: '/x', host: '10.0.0.1', port: 5, urls: [] }), /non-loopback/);

  // one datagram: a 1-RTT packet with two STREAM frames (http3 layers pair in order) + an undecryptable packet
  const rep = analyseTsharkJson([
    {
      _source: {
        layers: {
          quic: [
            { 'quic.frame': [{ 'quic.frame_type': '11', 'quic.stream.stream_id': '0' }, { 'quic.frame_type': '10', 'quic.stream.stream_id': '3' }] },
            { 'quic.remaining_payload': 'aa:bb' },
          ],
          http3: [{ 'http3.frame_type': ['1', '0'] }, { 'http3.stream_type': '0', 'http3.frame_type': ['4', '33'] }],
        },
      },
    },
  ]);
  assert.equal(rep.quicPackets, 2);
  assert.equal(rep.undecrypted, 1);
  assert.deepEqual(rep.http3Frames.get(0), ['HEADERS', 'DATA']);
  assert.deepEqual(rep.http3Frames.get(3), ['SETTINGS', 'GREASE']);
  assert.equal(rep.http3StreamTypes.get(3), 'control');
  assert.equal(h3FrameName(0x7), 'GOAWAY');
});

test('selfcheck: gtlsclient -> gtlsserver, captured and decrypted', { skip: skipReason, timeout: 60_000 }, async () => {
  assert.deepEqual(missing, [], `${hint} (CI=true: the interop peers must be installed)`);
  const workDir = makeWorkDir('qsr-harness-');
  const out = await selfcheck({ ci, workRoot: workDir, certDir: defaultCertDir() }, join(workDir, 'selfcheck'));
  assert.equal(out.status, 'pass', `${out.reason}\n${JSON.stringify(out.details, null, 1)}`);
  const d = String(out.details?.decrypt);
  assert.match(d, /undecrypted=0 /);
  assert.match(d, / 0:\[HEADERS,[^\]]*DATA/);
  // and the undecrypted count can fail: the same capture with an empty key log leaves the 1-RTT packets opaque
  const empty = join(workDir, 'empty.keylog');
  writeFileSync(empty, '');
  const none = await decryptReport(join(workDir, 'selfcheck', 'capture.pcapng'), empty);
  assert.ok(none.quicPackets > 0);
  assert.ok(none.undecrypted > 0, formatReport(none));
  assert.equal(none.http3Frames.size, 0);
});

test('matrix helpers: cell selection, response comparison, key log connections, file sizes', () => {
  const all = { clients: ['gtlsclient', 'chromium'], servers: ['qsr-serve', 'router'], cases: ['handshake', 'files100', 'win-conn64k', 'win-stream16k'] };
  assert.equal(selectedCell(undefined, 'chromium', 'router', 'files100', all), true);
  assert.equal(selectedCell(['chromium', 'router'], 'chromium', 'router', 'files100', all), true);
  assert.equal(selectedCell(['chromium', 'router'], 'gtlsclient', 'router', 'files100', all), false);
  assert.equal(selectedCell(['win'], 'gtlsclient', 'router', 'win-stream16k', all), true);
  assert.equal(selectedCell(['win', 'gtlsclient'], 'gtlsclient', 'qsr-serve', 'files100', all), false);
  assert.throws(() => selectedCell(['firefx'], 'gtlsclient', 'router', 'files100', all), /unknown firefx/);

  const want = [
    { path: '/a', status: 200, size: 3, sha256: 'aa' },
    { path: '/b', status: 200 },
    { path: '/b', status: 200 },
  ];
  assert.deepEqual(compareResponses([{ path: '/a', status: 200, bytes: 3, sha256: 'aa' }, { path: '/b', status: 200, bytes: 7 }, { path: '/b', status: 200, bytes: 7 }], want, { browser: false, hash: true }), []);
  const bad = compareResponses(
    [{ path: '/a', status: 200, bytes: 3, sha256: 'ab' }, { path: '/b', status: 200, bytes: 7, protocol: 'h2' }, { path: '/b', status: 200, bytes: 8 }],
    want,
    { browser: true, hash: true },
  );
  assert.equal(bad.length, 3, bad.join('\n'));
  assert.match(bad[0]!, /^\/a \(#0\): sha256 ab differs/);
  assert.match(bad[1]!, /came over h2, not h3/);
  assert.match(bad[2]!, /differ in size: 7, 8/);
  assert.match(compareResponses([], want, { browser: false, hash: false })[0]!, /0 responses reported, want 3/);
  assert.match(compareResponses([{ path: '/a', status: 404, bytes: 3 }], want.slice(0, 1), { browser: false, hash: false })[0]!, /status 404, want 200/);

  const dir = makeWorkDir('qsr-harness-');
  writeFileSync(join(dir, 'k'), 'CLIENT_HANDSHAKE_TRAFFIC_SECRET r1 x\nCLIENT_TRAFFIC_SECRET_0 r1 y\nSERVER_TRAFFIC_SECRET_0 r1 z\nCLIENT_TRAFFIC_SECRET_0 r2 y\n');
  assert.equal(keylogConnections(join(dir, 'k')), 2);
  assert.equal(keylogConnections(join(dir, 'none')), null);

  const sizes = fileSizes();
  assert.equal(sizes.length, 100);
  assert.equal(sizes[0], 1024);
  assert.equal(Math.min(...sizes), 1);
  assert.equal(Math.max(...sizes), 1 << 20);
  assert.ok(new Set(sizes).size > 80, 'mixed sizes');

  // every peer entry is complete: a name, and for what it cannot do a reason
  for (const c of CLIENTS) for (const v of Object.values(c.can)) assert.ok(typeof v === 'boolean' || v.length > 10, `${c.name}: ${String(v)}`);
  for (const s of SERVERS) assert.ok(s.pickCiphers === true || s.pickCiphers.length > 10, s.name);
});

test('lossy relay: forwards both ways, drops the seeded share, and the same seed gives the same decisions', async () => {
  const echo = createSocket('udp4');
  echo.on('message', (m, from) => echo.send(m, from.port, from.address));
  await new Promise<void>((r) => echo.bind(0, '127.0.0.1', () => r()));
  const port = echo.address().port;
  const trial = async (seed: number): Promise<{ got: number; up: number; down: number }> => {
    const relay = await startRelay({ target: { address: '127.0.0.1', port }, loss: 0.2, seed });
    const client = createSocket('udp4');
    let got = 0;
    client.on('message', () => got++);
    await new Promise<void>((r) => client.bind(0, '127.0.0.1', () => r()));
    // one datagram at a time, so that the order of drop decisions is the same in every run
    for (let i = 0; i < 400; i++) {
      const st = relay.stats;
      const mark = { up: st.up.dropped, done: got + st.down.dropped };
      client.send(Buffer.from(`d${i}`), relay.port, '127.0.0.1');
      // settled: dropped on the way up, or echoed and then either delivered or dropped on the way down
      const settled = await waitFor(() => st.up.dropped > mark.up || got + st.down.dropped > mark.done, 2000, 1);
      assert.ok(settled, `datagram ${i} neither delivered nor dropped`);
    }
    await new Promise((r) => setTimeout(r, 50));
    const out = { got, up: relay.stats.up.dropped, down: relay.stats.down.dropped };
    assert.equal(relay.stats.clients, 1);
    client.close();
    await relay.close();
    return out;
  };
  try {
    const a = await trial(7);
    assert.ok(a.up > 40 && a.up < 120, `up drops ${a.up} of 400 at 20 %`);
    assert.ok(a.down > 20 && a.down < 100, `down drops ${a.down}`);
    assert.equal(a.got, 400 - a.up - a.down);
    assert.deepEqual(await trial(7), a);
    assert.notDeepEqual(await trial(8), a);
  } finally {
    echo.close();
  }
});

// The whole matrix, as `npm run interop` runs it (in a private network namespace when root).
const matrixSkip = ci ? false : skipReason;
test('interop matrix: every client x server x case cell passes or names what the peer cannot do', { skip: matrixSkip, timeout: 690_000 }, async () => {
  assert.deepEqual(missing, [], hint);
  const out = makeWorkDir('qsr-matrix-out-');
  const runJs = fileURLToPath(new URL('./run.js', import.meta.url));
  const child = spawnBounded({
    name: 'matrix',
    cmd: process.execPath,
    args: ['--experimental-websocket', '--no-warnings', runJs, '--out', out],
    workDir: out,
    timeoutMs: 660_000,
    // run.js is not a test file of this runner
    env: { NODE_TEST_CONTEXT: undefined },
  });
  const exit = await child.exited;
  const log = child.stdout();
  let doc: { results: CellResult[]; matrix: string; summary: { wallMs: number } };
  try {
    doc = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as typeof doc;
  } catch (e) {
    assert.fail(`no results.json (${(e as Error).message}); exit ${JSON.stringify(exit)}\n${log.slice(-4000)}\n${child.stderr().slice(-2000)}`);
  }
  const bad = doc.results.filter((r) => r.status === 'fail').map((r) => `${r.client} -> ${r.server} ${r.case}: ${r.reason}`);
  assert.deepEqual(bad, [], `${doc.matrix}\n(logs: ${out})`);
  assert.equal(exit.code, 0, log.slice(-3000));
  // A skip is either "the peer/server cannot ..." or a peer whose adapter is not in this tree; with CI=true a
  // missing program would have been a failure above.
  const odd = doc.results.filter((r) => r.status === 'skip' && !/^(peer|server) cannot |adapter .* not in this tree|Firefox runs only inside/.test(r.reason));
  assert.deepEqual(odd.map((r) => `${r.client} -> ${r.server} ${r.case}: ${r.reason}`), []);
  for (const name of ['gtlsclient', 'qsr-get', 'chromium']) {
    const mine = doc.results.filter((r) => r.client === name);
    assert.ok(mine.some((r) => r.status === 'pass' && r.case === 'files100'), `${name} ran files100`);
  }
  for (const kase of ['handshake', 'files100', 'requests2000', 'upload100M', 'download100M', 'decrypt', 'chacha20', 'loss5']) {
    assert.ok(doc.results.some((r) => r.server === 'router' && r.case === kase && r.status === 'pass'), `${kase} passed against the router`);
  }
});
