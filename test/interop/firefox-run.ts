// The Firefox interop cases, run inside a private network namespace (test/interop/firefox.test.ts starts this file
// under netnsArgv), so that our servers and Firefox share one loopback and nothing reaches another machine:
//
//   node dist/test/interop/firefox-run.js OUT_DIR [serve] [smallwin] [router] [capture]
//
//  * serve:   `qsr serve` (test certificate signed by the test CA) and a page; in the page, 100 files of mixed sizes
//             fetched at once (status, size, SHA-256 and protocol of each), then 2,000 small requests.
//  * smallwin: the same with Firefox's receive windows at connection 64 KiB, stream 16 KiB (neqo grows them as it goes).
//  * router:  `qsr up` on its built-in defaults (router on 4433, services on 5001-5003, development certificate in
//             ./.qsr, trusted in the profile); the page GET /text/sample, then a 100 MiB POST /video (the video
//             service answers the sha256 of what it got) and a 100 MiB GET /video/bytes (x-content-sha256); then a
//             second Firefox with the small windows downloads the 100 MiB again.
//  * capture: `qsr serve` captured with tshark while Firefox (network.http.http3.max_gso_segments=1, SSLKEYLOGFILE)
//             loads a page and a few files; the capture decrypted with Firefox's key log.
// What was seen goes to OUT_DIR/results.json (raw values; firefox.test.ts judges them) and a line per step to stdout.

import { createHash } from 'node:crypto';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { prng } from '../util/prng.js';
import { jsonLines, spawnBounded, udpPortBound, waitFor, type Child, type ExitInfo } from './peers.js';
import { inPrivateNetns } from '../../tools/peers/netns.js';
import { decryptReport, formatReport, startCapture, type Capture, type DecryptReport } from '../../src/obs/capture.js';
import { defaultCertDir } from './run.js';
import { downloadScript, fetchManyScript, runFirefox, uploadScript, windowPrefs, type FirefoxRun } from '../../tools/peers/firefox.js';

const qsrJs = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));

export const SERVE_PORT = 4443;
export const CAPTURE_PORT = 4444;
/** `qsr up` with the built-in configuration: the router on 4433, the services on 5001-5003. */
export const ROUTER_PORT = 4433;
export const FILE_COUNT = 100;
export const SMALL_REQUESTS = 2000;
export const BIG = 100 * 1024 * 1024;

export interface ExpectedFile {
  path: string;
  bytes: number;
  sha256: string;
}

export interface ServeCase {
  run: FirefoxRun;
  files: ExpectedFile[];
  small: ExpectedFile;
  /** QUIC connections the server's key log shows (CLIENT_TRAFFIC_SECRET_0 lines). */
  serverConnections: number;
  /** Access log lines of qsr serve ("GET /path 200 bytes ms"). */
  accessLines: number;
  serverExit: ExitInfo;
}

export interface RouterCase {
  run: FirefoxRun;
  /** A second Firefox (receive windows SMALL_WINDOW_PREFS) downloading the same 100 MiB. */
  smallWindowRun: FirefoxRun;
  /** The access log (JSON lines on qsr up's stdout). */
  accessLog: Record<string, unknown>[];
  /** Warnings and errors qsr up logged (stderr JSON with level >= 40). */
  problems: Record<string, unknown>[];
  upExit: ExitInfo;
}

/** A DecryptReport as JSON (its maps as objects keyed by stream id). */
export interface CaptureReport {
  packets: number;
  quicPackets: number;
  undecrypted: number;
  http3Frames: Record<string, string[]>;
  http3StreamTypes: Record<string, string>;
}

export interface CaptureCase {
  run: FirefoxRun;
  files: ExpectedFile[];
  report?: CaptureReport;
  reportText?: string;
  error?: string;
}

export interface FirefoxResults {
  serve?: ServeCase | { error: string };
  smallwin?: ServeCase | { error: string };
  router?: RouterCase | { error: string };
  capture?: CaptureCase | { error: string };
}

const log = (s: string): void => void process.stdout.write(`[firefox-run] ${s}\n`);
const sha256 = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Deterministic bytes from a seeded PRNG. */
function bytesFrom(rand: () => number, n: number): Buffer {
  const b = Buffer.allocUnsafe(n);
  let i = 0;
  for (; i + 4 <= n; i += 4) b.writeUInt32LE(Math.floor(rand() * 0x1_0000_0000), i);
  for (; i < n; i++) b[i] = Math.floor(rand() * 256);
  return b;
}

/** Sizes around packet, frame and buffer edges, then sizes skewed towards small ones (up to 1 MB). */
const EDGE_SIZES = [0, 1, 2, 100, 1000, 1199, 1200, 1201, 1500, 4095, 4096, 16383, 16384, 16385, 65535, 65536, 65537, 100_000, 262_144, 500_000, 1_048_576, 2_000_000, 3_000_000];

/** A docroot: index.html, `count` files f000.bin... of mixed sizes, small.txt. */
function makeDocroot(dir: string, count: number, seed: number): { files: ExpectedFile[]; small: ExpectedFile } {
  mkdirSync(join(dir, 'files'), { recursive: true });
  writeFileSync(join(dir, 'index.html'), '<!doctype html><html><head><title>qsr</title><link rel="icon" href="data:,"></head><body><p id="x">firefox over h3</p></body></html>\n');
  const rand = prng(seed);
  const files: ExpectedFile[] = [];
  for (let i = 0; i < count; i++) {
    const size = i < EDGE_SIZES.length ? EDGE_SIZES[i]! : Math.floor(rand() ** 3 * 1_000_000);
    const body = bytesFrom(rand, size);
    const name = `f${String(i).padStart(3, '0')}.bin`;
    writeFileSync(join(dir, 'files', name), body);
    files.push({ path: `/files/${name}`, bytes: size, sha256: sha256(body) });
  }
  const smallBody = Buffer.from('small file served two thousand times\n');
  writeFileSync(join(dir, 'small.txt'), smallBody);
  return { files, small: { path: '/small.txt', bytes: smallBody.length, sha256: sha256(smallBody) } };
}

function certs(): { ca: string; cert: string; key: string } {
  const dir = defaultCertDir();
  return { ca: join(dir, 'ca.pem'), cert: join(dir, 'ecdsa.pem'), key: join(dir, 'ecdsa.key') };
}

async function startServe(workDir: string, docroot: string, port: number, keylog: string): Promise<Child> {
  const { cert, key } = certs();
  const server = spawnBounded({
    name: `qsr-serve-${port}`,
    cmd: process.execPath,
    args: [qsrJs, 'serve', '--dir', docroot, '--listen', `127.0.0.1:${port}`, '--listen', `[::1]:${port}`, '--cert', cert, '--key', key, '--keylog', keylog],
    workDir,
    timeoutMs: 200_000,
  });
  const up = await waitFor(() => !server.isRunning() || (/serving .* on https:\/\/\[::1\]:/.test(server.stderr()) && udpPortBound(port)), 15_000);
  if (!up || !server.isRunning()) {
    await server.stop('SIGKILL', 1000);
    throw new Error(`qsr serve did not start: ${server.output().slice(-2000)}`);
  }
  return server;
}

const readText = (p: string): string => {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return '';
  }
};

const countConnections = (keylog: string): number => readText(keylog).split('\n').filter((l) => l.startsWith('CLIENT_TRAFFIC_SECRET_0 ')).length;

/** Firefox's receive windows for the small-window case: connection 64 KiB, stream 16 KiB. */
export const SMALL_WINDOW_PREFS = windowPrefs(65536, 16384);

async function serveCase(out: string, name: string, prefs?: Record<string, number>): Promise<ServeCase> {
  const workDir = join(out, name);
  const docroot = join(workDir, 'docroot');
  const { files, small } = makeDocroot(docroot, FILE_COUNT, 8);
  const keylog = join(workDir, 'server-keylog.txt');
  const server = await startServe(workDir, docroot, SERVE_PORT, keylog);
  try {
    const smallUrls = Array.from({ length: SMALL_REQUESTS }, (_, i) => `${small.path}?i=${i}`);
    const run = await runFirefox({
      workDir,
      pageUrl: `https://localhost:${SERVE_PORT}/`,
      certPem: certs().ca,
      prefs,
      scripts: [
        { name: 'files', expression: fetchManyScript(files.map((f) => f.path), { timeoutMs: 25_000 }), timeoutMs: 35_000 },
        { name: 'small', expression: fetchManyScript(smallUrls, { timeoutMs: 25_000 }), timeoutMs: 35_000 },
      ],
      timeoutMs: 90_000,
    });
    log(`${name}: h3=${run.h3} loads=${run.loads.length} protocols=${JSON.stringify(run.protocols)} fatal=${run.fatal ?? '-'} ms=${run.ms}`);
    const serverExit = await server.stop('SIGTERM', 6000);
    const accessLines = server.stderr().split('\n').filter((l) => /^GET \S+ \d{3} /.test(l)).length;
    return { run, files, small, serverConnections: countConnections(keylog), accessLines, serverExit };
  } finally {
    await server.stop('SIGKILL', 1000);
    rmSync(docroot, { recursive: true, force: true }); // 27 MB, made again from the seed by the next run
  }
}

/** PIDs of the services `qsr up` logged as started. */
function servicePids(stderr: string): number[] {
  return jsonLines(stderr)
    .filter((o) => typeof o.pid === 'number' && / service started$/.test(String(o.msg ?? '')))
    .map((o) => o.pid as number);
}

/** End a service that outlived a killed `qsr up`, by its PID, only if that PID still runs our qsr.js service. */
function endOrphan(pid: number): void {
  const cmdline = readText(`/proc/${pid}/cmdline`).split('\0').join(' ');
  if (!cmdline.includes(qsrJs) || !/ service /.test(cmdline)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

async function routerCase(out: string): Promise<RouterCase> {
  const workDir = join(out, 'router');
  mkdirSync(workDir, { recursive: true });
  // Built-in defaults, as a new user runs it: the development certificate and key log go to ./.qsr.
  const up = spawnBounded({ name: 'qsr-up', cmd: process.execPath, args: [qsrJs, 'up'], workDir, cwd: workDir, timeoutMs: 220_000 });
  try {
    const ok = await waitFor(() => !up.isRunning() || /quic-stream-router is up/.test(up.stdout()), 30_000);
    if (!ok || !up.isRunning()) throw new Error(`qsr up did not come up: ${up.output().slice(-2000)}`);
    const run = await runFirefox({
      workDir,
      pageUrl: `https://localhost:${ROUTER_PORT}/text/sample`,
      certPem: join(workDir, '.qsr', 'certs', 'cert.pem'),
      scripts: [
        { name: 'upload', expression: uploadScript('/video', BIG, { timeoutMs: 45_000 }), timeoutMs: 55_000 },
        { name: 'download', expression: downloadScript(`/video/bytes?n=${BIG}`, { timeoutMs: 45_000 }), timeoutMs: 55_000 },
      ],
      timeoutMs: 130_000,
    });
    log(`router: h3=${run.h3} loads=${run.loads.length} protocols=${JSON.stringify(run.protocols)} fatal=${run.fatal ?? '-'} ms=${run.ms}`);
    const smallWindowRun = await runFirefox({
      workDir,
      pageUrl: `https://localhost:${ROUTER_PORT}/text/sample`,
      certPem: join(workDir, '.qsr', 'certs', 'cert.pem'),
      prefs: SMALL_WINDOW_PREFS,
      scripts: [{ name: 'download', expression: downloadScript(`/video/bytes?n=${BIG}`, { timeoutMs: 45_000 }), timeoutMs: 55_000 }],
      timeoutMs: 80_000,
    });
    log(`router, small windows: h3=${smallWindowRun.h3} fatal=${smallWindowRun.fatal ?? '-'} ms=${smallWindowRun.ms}`);
    const upExit = await up.stop('SIGTERM', 15_000);
    const problems = jsonLines(up.stderr()).filter((o) => typeof o.level === 'number' && o.level >= 40);
    const accessLog = jsonLines(up.stdout()).filter((o) => 'streamId' in o && 'status' in o);
    return { run, smallWindowRun, accessLog, problems, upExit };
  } finally {
    const exit = await up.stop('SIGKILL', 1000);
    if (exit.code !== 0) for (const pid of servicePids(up.stderr())) endOrphan(pid);
  }
}

async function captureCase(out: string): Promise<CaptureCase> {
  const workDir = join(out, 'capture');
  const docroot = join(workDir, 'docroot');
  const { files } = makeDocroot(docroot, 6, 9);
  const server = await startServe(workDir, docroot, CAPTURE_PORT, join(workDir, 'server-keylog.txt'));
  let capture: Capture | undefined;
  try {
    capture = await startCapture({ port: CAPTURE_PORT, file: join(workDir, 'capture.pcapng'), timeoutMs: 90_000, settleMs: 200 });
    const keylog = join(workDir, 'firefox-keylog.txt');
    const run = await runFirefox({
      workDir,
      pageUrl: `https://localhost:${CAPTURE_PORT}/`,
      certPem: certs().ca,
      keylogFile: keylog,
      maxGsoSegments: 1,
      scripts: [{ name: 'files', expression: fetchManyScript(files.map((f) => f.path), { timeoutMs: 20_000 }), timeoutMs: 30_000 }],
      timeoutMs: 60_000,
    });
    await capture.stop();
    log(`capture: h3=${run.h3} protocols=${JSON.stringify(run.protocols)} fatal=${run.fatal ?? '-'}`);
    const c: CaptureCase = { run, files };
    try {
      const rep: DecryptReport = await decryptReport(capture.pcap, keylog);
      c.report = {
        packets: rep.packets,
        quicPackets: rep.quicPackets,
        undecrypted: rep.undecrypted,
        http3Frames: Object.fromEntries(rep.http3Frames),
        http3StreamTypes: Object.fromEntries(rep.http3StreamTypes),
      };
      c.reportText = formatReport(rep);
      log(`capture: ${c.reportText}`);
    } catch (e) {
      c.error = (e as Error).message;
    }
    return c;
  } finally {
    await capture?.stop();
    await server.stop('SIGTERM', 6000);
  }
}

/** Run the named cases (all three by default) and write OUT_DIR/results.json. */
export async function runFirefoxCases(out: string, cases: readonly string[]): Promise<FirefoxResults> {
  if (!inPrivateNetns()) throw new Error('firefox-run: not in a private network namespace (start it under netnsArgv)');
  mkdirSync(out, { recursive: true });
  const results: FirefoxResults = {};
  const steps: [keyof FirefoxResults, (o: string) => Promise<ServeCase | RouterCase | CaptureCase>][] = [
    ['serve', (o) => serveCase(o, 'serve')],
    ['smallwin', (o) => serveCase(o, 'smallwin', SMALL_WINDOW_PREFS)],
    ['router', routerCase],
    ['capture', captureCase],
  ];
  for (const [name, fn] of steps) {
    if (cases.length > 0 && !cases.includes(name)) continue;
    const t0 = Date.now();
    log(`${name}: start`);
    try {
      (results as Record<string, unknown>)[name] = await fn(out);
    } catch (e) {
      (results as Record<string, unknown>)[name] = { error: (e as Error).stack ?? String(e) };
    }
    log(`${name}: done in ${Date.now() - t0} ms`);
    writeFileSync(join(out, 'results.json'), JSON.stringify(results));
  }
  return results;
}

// A program only when started directly with an output directory (`node --test dist/test/` loads it with none).
const invokedDirectly = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly && process.argv.length >= 3) {
  runFirefoxCases(process.argv[2]!, process.argv.slice(3)).then(
    () => process.exit(0),
    (e: unknown) => {
      console.error(e);
      process.exit(2);
    },
  );
}
