// Headless Chromium over HTTP/3 on loopback (test/interop/chromium.ts):
//  * the net-log summariser on a synthetic and on a truncated net-log, and the loopback-only URL guard;
//  * selfcheck against ngtcp2's gtlsserver: DOM, QUIC session and HTTP/3 :status 200 for / and /pixel.png from the
//    net-log, and a tshark capture decrypted with Chromium's SSLKEYLOGFILE without one undecrypted packet;
//  * the same page from OUR server (`qsr serve`).
// Skipped when chromium / gtlsserver / tshark are not installed, except with CI=true, where that is a failure.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeUdpPort, makeWorkDir, missingPrograms, spawnBounded, startGtlsServer, udpPortBound, waitFor, type Child } from './peers.js';
import { decryptReport, formatReport, startCapture, type Capture } from '../../src/obs/capture.js';
import { defaultCertDir } from './run.js';
import { chromiumArgs, chromiumPath, parseNetlog, runChromiumH3, spkiOfCert, type ChromiumRun } from './chromium.js';
import { loopbackOrigin } from '../../tools/peers/loopback.js';

const ci = process.env.CI === 'true';
const CHROMIUM_HINT = 'not installed: apt-get install chromium';

/** false when everything is installed (or in CI, where the test then fails on the missing program); else a skip reason. */
function skipUnless(programs: string[], needChromium: boolean): string | false {
  const { missing, hint } = missingPrograms(programs);
  const reasons = [...(missing.length > 0 ? [hint] : []), ...(needChromium && chromiumPath() === null ? [CHROMIUM_HINT] : [])];
  return reasons.length > 0 && !ci ? reasons.join('; ') : false;
}

function requireInstalled(programs: string[]): void {
  const { missing, hint } = missingPrograms(programs);
  assert.equal(missing.length, 0, hint);
  assert.notEqual(chromiumPath(), null, CHROMIUM_HINT);
}

const certDir = defaultCertDir();
const CERT = join(certDir, 'ecdsa.pem');
const KEY = join(certDir, 'ecdsa.key');

/** 1x1 transparent PNG. */
const PIXEL_PNG = Buffer.from(
  '89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489' +
    '0000000d49444154789c63f8cfc0f01f0005000201ad2c6a4d0000000049454e44ae426082',
  'hex',
);
const INDEX_HTML = '<!doctype html><html><head><title>h3</title></head><body><p id="x">hello over h3</p><img src="/pixel.png"></body></html>\n';

function makeDocroot(workDir: string): string {
  const dir = join(workDir, 'docroot');
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'index.html'), INDEX_HTML);
  writeFileSync(join(dir, 'pixel.png'), PIXEL_PNG);
  return dir;
}

function describe(run: ChromiumRun): string {
  const n = run.netlog;
  return (
    `exit=${run.exitCode} signal=${run.signal} timedOut=${run.timedOut} ms=${run.ms} netlog(${n.events} events, complete=${n.complete})` +
    ` sessions=${JSON.stringify(n.quicSessions)} requests=${JSON.stringify(n.h3Requests)} errors=${JSON.stringify(n.errors)}` +
    ` contacted=${JSON.stringify(n.contactedAddresses)}\nDOM: ${run.dom.slice(0, 500)}\nstderr tail: ${run.stderr.slice(-800)}`
  );
}

/** What every page load must show: the DOM, one QUIC session to the origin, 200 for / and /pixel.png, loopback only. */
function checkPageOverH3(run: ChromiumRun, origin: string): void {
  const why = describe(run);
  assert.equal(run.timedOut, false, why);
  assert.equal(run.exitCode, 0, why);
  assert.match(run.dom, /<p id="x">hello over h3<\/p>/, why);
  assert.deepEqual(run.netlog.quicSessions, [origin], why);
  const status = (path: string): (number | null)[] => run.netlog.h3Requests.filter((r) => r.path === path).map((r) => r.status);
  assert.deepEqual(status('/'), [200], why);
  assert.deepEqual(status('/pixel.png'), [200], why);
  assert.deepEqual(run.netlog.errors, [], why);
  // Nothing but loopback was sent to; the background services Chromium tries are refused by the resolver rules.
  for (const a of run.netlog.contactedAddresses) assert.match(a, /^(127\.0\.0\.1|\[::1\]):\d+$/, why);
  for (const u of run.netlog.blockedRequests) assert.doesNotMatch(u, /127\.0\.0\.1|localhost|\[::1\]/, why);
}

// ---------------------------------------------------------------------------------------------------------------------

test('chromium helpers: URL guard, arguments, SPKI hash, net-log parsing (complete and truncated)', async () => {
  for (const bad of [
    'https://example.com:443/',
    'http://127.0.0.1:4433/',
    'https://127.0.0.1/',
    'https://[::1]:4433/',
    'https://10.0.0.1:4433/',
    'https://127.0.0.1.example.com:4433/',
    'https://user@example.com:4433/',
    'https://127.0.0.1:4433@example.com/',
    'https://localhost:99999/',
  ]) {
    assert.throws(() => loopbackOrigin(bad), /refusing/, bad);
    await assert.rejects(runChromiumH3({ url: bad, spkiBase64: 'x', workDir: '/nonexistent', timeoutMs: 1000 }), /refusing/, bad);
  }
  assert.deepEqual(loopbackOrigin('https://localhost:8443/a?b=c'), { host: 'localhost', port: 8443, origin: 'localhost:8443' });

  const spki = spkiOfCert(CERT);
  assert.match(spki, /^[A-Za-z0-9+/]{43}=$/);
  assert.notEqual(spki, spkiOfCert(join(certDir, 'rsa.pem')));
  const args = chromiumArgs({ url: 'https://127.0.0.1:4433/', spkiBase64: spki, userDataDir: '/u', netlogFile: '/n.json' });
  for (const a of [
    '--headless',
    '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE ::1',
    '--user-data-dir=/u',
    '--origin-to-force-quic-on=127.0.0.1:4433',
    `--ignore-certificate-errors-spki-list=${spki}`,
    '--log-net-log=/n.json',
    '--net-log-capture-mode=Everything',
  ]) {
    assert.ok(args.includes(a), a);
  }
  assert.deepEqual(args.slice(-2), ['--dump-dom', 'https://127.0.0.1:4433/']);
  assert.throws(() => chromiumArgs({ url: 'https://127.0.0.1:4433/', spkiBase64: 'abc', userDataDir: '/u', netlogFile: '/n' }));

  // A miniature net-log in Chromium's layout: constants on one line, then one event per line.
  const constants = {
    logEventTypes: { QUIC_SESSION: 10, HTTP3_HEADERS_SENT: 11, HTTP3_HEADERS_DECODED: 12, QUIC_SESSION_CLOSED: 13, URL_REQUEST_START_JOB: 14, REQUEST_ALIVE: 15, UDP_CONNECT: 16, UDP_BYTES_SENT: 17 },
    netError: { ERR_NAME_NOT_RESOLVED: -105, ERR_QUIC_PROTOCOL_ERROR: -356 },
    quicError: { QUIC_NO_ERROR: 0, QUIC_CONNECTION_CANCELLED: 70, QUIC_HTTP_FRAME_ERROR: 117 },
  };
  const ev = (id: number, type: number, phase: number, params: object): string =>
    JSON.stringify({ params, phase, source: { id, start_time: '1', type: 1 }, time: '2', type });
  const events = [
    ev(1, 10, 1, { host: '127.0.0.1', port: 4433 }),
    ev(1, 11, 0, { headers: [':method: GET', ':path: /', ':scheme: https'], stream_id: 0 }),
    ev(1, 11, 0, { headers: [':method: GET', ':path: /a.png'], stream_id: 4 }),
    ev(1, 12, 0, { headers: [':status: 404', 'content-length: 3'], stream_id: 4 }),
    ev(1, 12, 0, { headers: [':status: 200'], stream_id: 0 }),
    ev(2, 14, 1, { url: 'https://update.example/x' }),
    ev(2, 15, 2, { net_error: -105 }),
    ev(3, 14, 1, { url: 'https://127.0.0.1:4433/b' }),
    ev(3, 15, 2, { net_error: -356 }),
    ev(4, 16, 0, { address: '127.0.0.1:4433' }),
    ev(4, 17, 0, { byte_count: 1250 }),
    ev(5, 16, 0, { address: '[2001:db8::1]:443' }), // connect() without bytes sent: not contact
    ev(1, 13, 0, { quic_error: 117, details: 'bad frame', from_peer: true }),
    ev(6, 13, 0, { quic_error: 70, details: 'net error' }), // shutdown of every session: not an error
  ];
  const full = `{"constants":${JSON.stringify(constants)},\n"events": [\n${events.join(',\n')}\n],\n"polledData": {}}\n`;
  const s = parseNetlog(full);
  assert.equal(s.complete, true);
  assert.equal(s.events, events.length);
  assert.deepEqual(s.quicSessions, ['127.0.0.1:4433']);
  assert.deepEqual(s.h3Requests, [
    { path: '/', status: 200 },
    { path: '/a.png', status: 404 },
  ]);
  assert.deepEqual(s.blockedRequests, ['https://update.example/x']);
  assert.deepEqual(s.contactedAddresses, ['127.0.0.1:4433']);
  assert.deepEqual(s.errors, [
    'https://127.0.0.1:4433/b: ERR_QUIC_PROTOCOL_ERROR(-356)',
    'QUIC_SESSION_CLOSED: QUIC_HTTP_FRAME_ERROR(117) bad frame (from peer)',
  ]);

  // Killed mid-write: no closing brackets, last line cut in the middle.
  const cut = full.indexOf(events[5]!) + 20;
  const t = parseNetlog(full.slice(0, cut));
  assert.equal(t.complete, false);
  assert.equal(t.events, 5);
  assert.deepEqual(t.h3Requests, [
    { path: '/', status: 200 },
    { path: '/a.png', status: 404 },
  ]);
  const empty = parseNetlog('');
  assert.equal(empty.events, 0);
  assert.deepEqual(empty.quicSessions, []);
});

test(
  'chromium selfcheck: gtlsserver serves a page with an image over HTTP/3; capture decrypts with Chromium key log',
  { skip: skipUnless(['gtlsserver', 'tshark'], true), timeout: 60_000 },
  async () => {
    requireInstalled(['gtlsserver', 'tshark']);
    const workDir = makeWorkDir('qsr-chromium-');
    const docroot = makeDocroot(workDir);
    const port = await freeUdpPort('127.0.0.1');
    const keylog = join(workDir, 'chromium-keylog.txt');
    let server: Child | undefined;
    let capture: Capture | undefined;
    try {
      server = await startGtlsServer({ workDir, addr: '127.0.0.1', port, docroot, key: KEY, cert: CERT, timeoutMs: 55_000 });
      capture = await startCapture({ port, file: join(workDir, 'capture.pcapng'), timeoutMs: 55_000, settleMs: 200 });
      const run = await runChromiumH3({ url: `https://127.0.0.1:${port}/`, spkiBase64: spkiOfCert(CERT), workDir, timeoutMs: 30_000, keylogFile: keylog });
      await capture.stop();
      checkPageOverH3(run, `127.0.0.1:${port}`);
      assert.equal(run.netlog.complete, true, 'Chromium exited cleanly, so the net-log is complete JSON');

      // The same net-log cut short parses to a prefix of the same requests.
      const text = readFileSync(run.netlogFile, 'utf8');
      const part = parseNetlog(text.slice(0, Math.floor(text.length * 0.9)));
      assert.equal(part.complete, false);
      assert.ok(part.events > 0 && part.events < run.netlog.events);

      // Chromium's key log decrypts every QUIC packet of the capture (gtlsserver runs without GSO).
      const keys = readFileSync(keylog, 'utf8');
      assert.match(keys, /^CLIENT_TRAFFIC_SECRET_0 /m);
      const rep = await decryptReport(capture.pcap, keylog);
      const why = formatReport(rep);
      assert.ok(rep.quicPackets > 0, why);
      assert.equal(rep.undecrypted, 0, why);
      const frames = [...rep.http3Frames.values()].flat();
      assert.ok(frames.includes('HEADERS') && frames.includes('DATA') && frames.includes('SETTINGS'), why);
      const types = [...rep.http3StreamTypes.values()];
      assert.equal(types.filter((x) => x === 'control').length, 2, why);
    } finally {
      await capture?.stop();
      await server?.stop();
    }
  },
);

const qsrJs = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));
const serveJs = fileURLToPath(new URL('../../src/cli/serve.js', import.meta.url));

test(
  'chromium against our server: qsr serve delivers the page and the image over HTTP/3',
  existsSync(serveJs) ? { skip: skipUnless([], true), timeout: 60_000 } : { todo: 'qsr serve not built yet', timeout: 60_000 },
  async () => {
    requireInstalled([]);
    assert.ok(existsSync(serveJs), `${serveJs} is not built`);
    const workDir = makeWorkDir('qsr-chromium-ours-');
    const docroot = makeDocroot(workDir);
    const port = await freeUdpPort('127.0.0.1');
    const keylog = join(workDir, 'chromium-keylog.txt');
    let server: Child | undefined;
    try {
      server = spawnBounded({
        name: 'qsr-serve',
        cmd: process.execPath,
        args: [qsrJs, 'serve', '--dir', docroot, '--listen', `127.0.0.1:${port}`, '--cert', CERT, '--key', KEY],
        workDir,
        timeoutMs: 55_000,
      });
      const up = await waitFor(() => !server!.isRunning() || /serving .* on https:\/\/127\.0\.0\.1:/.test(server!.stderr()), 10_000);
      assert.ok(up && server.isRunning() && udpPortBound(port), `qsr serve did not start: ${server.output().slice(-2000)}`);

      const run = await runChromiumH3({ url: `https://127.0.0.1:${port}/`, spkiBase64: spkiOfCert(CERT), workDir, timeoutMs: 30_000, keylogFile: keylog });
      const log = server.stderr();
      checkPageOverH3(run, `127.0.0.1:${port}`);
      // Our access log agrees with what Chromium saw.
      assert.match(log, /^GET \/ 200 /m, log);
      assert.match(log, new RegExp(`^GET /pixel\\.png 200 ${PIXEL_PNG.length} `, 'm'), log);
    } finally {
      await server?.stop('SIGTERM', 6000);
    }
  },
);
