/**
 * Edge suite (issue 10): our router vs Caddy 2.6 in front of the same services (`qsr service text`, `qsr service
 * video`), with independent clients, in one run, loopback only. Best run in a private network namespace (run.ts
 * re-executes itself under `unshare -n` for this suite when it can: Firefox needs it, and so does a clean capture).
 *
 * Throughput rows, each "router | Caddy | ratio | goal 1.5x":
 *   clients  gtlsclient (ngtcp2 0.12 + GnuTLS), the quic-go 0.29 client (tools/peers/quicgo/client, built offline),
 *            headless Firefox ESR (neqo; tools/peers/firefox.ts, WebDriver BiDi), and our own `qsr load` (small
 *            GETs only; one connection, 100 and 1,000 streams in flight)
 *   work     small GETs of /text/sample on ONE connection (quic-go: 100 and 1,000 in flight; gtlsclient: its own
 *            multiplexing, capped by the server's stream limit; Firefox: 2,000 fetch()es at once on the page's
 *            connection), a 100 MB upload (POST /video: the video service streams and hashes any size; the text service
 *            buffers its body, has a 10 MiB limit and needs UTF-8, so it is not an upload sink), and a 100 MB download
 *            (GET /video/bytes?n=100000000, unpaced, deterministic, checked by size and, where the client hashes, by
 *            SHA-256). Runs alternate router/Caddy (the order flips every run); figures are medians.
 * Router cost and ACK latency during the 100 MB upload:
 *   - router CPU per received datagram: the router runs with bench/probe.ts preloaded (counts the datagrams node:dgram
 *     delivers; CPU from process.cpuUsage), two snapshots around every upload; and the bulk phase alone, from
 *     snapshots every 250 ms (the intervals with more than 500 datagrams: a browser's start and page load left out);
 *   - ACK delay: one more quic-go upload per target, captured with tshark on lo (-f 'udp port P'), decrypted with the
 *     client's key log; for every ack-eliciting client 1-RTT packet, the time from its capture to the first server
 *     packet whose ACK frame covers it. Median and p90. (Caddy's CPU per datagram from the same capture: its CPU time
 *     from /proc over the client datagrams captured.)
 * Scale (fresh router and Caddy, router idle timeout raised to 10 min):
 *   - RSS per idle connection: N (--conns, default 1,000) HTTP/3 connections opened by bench/quic-peer.ts idle
 *     (handshake only, no stream), RSS from /proc before and after / N; then all closed, --pause seconds, RSS again;
 *   - handshakes per second per core: the server's CPU time over those N handshakes (64 in flight): "cold", a fresh
 *     process (the router's JIT compiles the handshake path during them); then, after the pause, N more handshakes
 *     ("warm", the goal's figure), with the router's datagrams per handshake (probe: more than 3 in / 2 out are
 *     retransmissions, e.g. when the idle clients, on the same cores, answer slower than a PTO) and the clients' CPU;
 *   - --hold (default 10,000) concurrent connections: hold-1 idle ones plus a 100 MB quic-go download beside them,
 *     compared with the same download before they were opened (after one uncounted warm-up download; router only),
 *     by speed and by the router's CPU seconds and GC pauses per download (probe snapshots around each).
 * Every child is bounded and stopped through its own PID; a missing peer makes its rows "n/a (reason)".
 */
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { createSocket } from 'node:dgram';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  CERTS, HOST, QSR_JS, describeExit, findProgram, fmt, fmtInt, freePort, gtlsCheck, gtlsPrograms, jsonLines, median, runTimed,
  spawnBounded, stopServer, table, waitFor, type Child, type Say, type SuiteOptions,
} from './common.js';
import { ACK_DELAY_FIELDS, parseAckDelays, type AckDelay } from './ack-delay.js';
import { sleep } from '../tools/process.js';
import { gtlsGets, gtlsPost, routerConfig, startCaddy, startRouter, startService, writeUpload } from './router.js';
import { buildQuicGo, runQuicGoClient, type QuicGoClientRun } from '../tools/peers/quicgo.js';
import { downloadScript, fetchManyScript, firefoxUnavailable, runFirefox, uploadScript, type DownloadValue, type FetchManyValue, type UploadValue } from '../tools/peers/firefox.js';
import { inPrivateNetns } from '../tools/peers/netns.js';
import { patternSha256 } from '../src/services/pattern.js';

const BIG = 100_000_000;
const SMALL_N = 5000;
const FIREFOX_SMALL_N = 2000;
const GOAL_RATIO = 1.5;
const GOAL_US_PER_PACKET = 8;
const GOAL_ACK_MS = 1;
const GOAL_KB_PER_CONN = 64;
const GOAL_HANDSHAKES = 2000;
const GOAL_HOLD_RATIO = 0.9;
const CLIENT_TIMEOUT = 150_000;
const PROBE_JS = fileURLToPath(new URL('./probe.js', import.meta.url));
const PEER_JS = fileURLToPath(new URL('./quic-peer.js', import.meta.url));
/** Most idle connections one bench/quic-peer.ts idle process opens (its own memory; several run side by side). */
const IDLE_PER_PROCESS = 2500;

export type ClientName = 'gtlsclient' | 'quic-go' | 'firefox' | 'qsr-load';
export const CLIENT_NAMES: readonly ClientName[] = ['gtlsclient', 'quic-go', 'firefox', 'qsr-load'];
export type Part = 'throughput' | 'capture' | 'scale' | 'hold';
export const PARTS: readonly Part[] = ['throughput', 'capture', 'scale', 'hold'];

export interface EdgeOptions extends SuiteOptions {
  /** Clients to run (null: all). */
  only: ClientName[] | null;
  skip: Part[];
  /** Idle connections for the RSS / handshake figures. */
  conns: number;
  /** Concurrent connections for the hold test (hold-1 idle + the bulk one). */
  hold: number;
  /** Seconds between closing the idle connections and reading RSS again. */
  pauseS: number;
}

type Target = 'router' | 'caddy';
const TARGETS: readonly Target[] = ['router', 'caddy'];
const TLABEL: Record<Target, string> = { router: 'router', caddy: 'Caddy' };
type Work = 'small' | 'small1000' | 'upload' | 'download';

/** The result of one work item: a rate (req/s or MB/s), or why there is none. */
type Outcome = number | string;

interface Endpoints {
  router: Child | null;
  routerPort: number;
  /** The router's probe file (bench/probe.ts); snapshots on SIGUSR2. */
  probe: string | null;
  caddy: Child | null;
  caddyPort: number;
  textPort: number;
  videoPort: number;
}

/**
 * A client the suite drives. `groups` lists the work items, batched the way the client runs them (Firefox: one
 * browser for several; the CLI clients: one process per item). To add a client (e.g. `qsr load`), add a driver here.
 */
interface ClientDriver {
  name: ClientName;
  /** Row labels per work item. */
  rows: Partial<Record<Work, string>>;
  groups: Work[][];
  /** Why it cannot run here, or null. */
  unavailable(o: EdgeOptions): Promise<string | null>;
  run(o: EdgeOptions, works: Work[], target: Target, port: number, tag: string): Promise<Partial<Record<Work, Outcome>>>;
}

// ---------------------------------------------------------------------------------------------------------------------
// /proc and the probe

/** CPU seconds (user + system, all threads) of a process from /proc/PID/stat; null when it is gone. */
export function procCpuSeconds(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  let s: string;
  try {
    s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields after the command name (which may contain spaces) start at ") ": state is field 3, utime 14, stime 15.
  const rest = s.slice(s.lastIndexOf(')') + 2).split(' ');
  const ticks = Number(rest[11]) + Number(rest[12]);
  return Number.isFinite(ticks) ? ticks / 100 : null; // USER_HZ is 100 on Linux
}

/** Resident set size in bytes (VmRSS of /proc/PID/status); null when the process is gone. */
export function procRssBytes(pid: number | undefined): number | null {
  if (pid === undefined) return null;
  try {
    const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

export interface ProbeSnap {
  seq: number;
  datagramsIn: number;
  bytesIn: number;
  datagramsOut: number;
  cpuUser: number;
  cpuSystem: number;
  rss: number;
  heapUsed?: number;
  external?: number;
  /** GC pauses so far (older probes: absent). */
  gcMs?: number;
  majorGcCount?: number;
}

/** Asks the probed router for a snapshot (SIGUSR2; SIGWINCH: after a full GC) and waits up to 3 s for its line. */
export async function probeSnap(router: Child, file: string, signal: 'SIGUSR2' | 'SIGWINCH' = 'SIGUSR2'): Promise<ProbeSnap | null> {
  const lines = (): ProbeSnap[] => (existsSync(file) ? (jsonLines(readFileSync(file, 'utf8')) as unknown as ProbeSnap[]) : []);
  const before = lines().length;
  router.signal(signal);
  let snap: ProbeSnap | null = null;
  await waitFor(() => {
    const l = lines();
    if (l.length > before) snap = l[l.length - 1]!;
    return snap !== null || !router.isRunning();
  }, 3000, 20);
  return snap;
}

interface UploadCost {
  datagrams: number;
  cpuS: number;
  usPerDatagram: number | null;
  bytesPerDatagram: number | null;
  /** The bulk phase alone (bulkCost): client start, page load and handshake left out. */
  bulk?: UploadCost | null;
  /** GC pauses over the bulk phase, ms. */
  bulkGcMs?: number | null;
}

/** Probe snapshots taken every `everyMs` until stop() (which resolves with them); one signal at a time. */
function probeSeries(router: Child, file: string, everyMs = 250): { stop: () => Promise<ProbeSnap[]> } {
  const series: ProbeSnap[] = [];
  let on = true;
  const loop = (async (): Promise<void> => {
    while (on && router.isRunning()) {
      const s = await probeSnap(router, file);
      if (s !== null) series.push(s);
      await sleep(everyMs);
    }
  })();
  return {
    stop: async () => {
      on = false;
      await loop;
      return series;
    },
  };
}

/**
 * The cost over the bulk phase of an upload: from the first to the last interval of the series in which the router
 * received more than `minPerInterval` datagrams, so a browser's start and page load, or a client's handshake, are
 * not in it (Firefox's cost ~0.1-0.3 s of router CPU, a few µs per datagram of a 100 MB upload).
 */
function bulkCost(series: ProbeSnap[], minPerInterval = 500): { cost: UploadCost | null; gcMs: number | null } {
  let i = 0;
  let j = series.length - 1;
  while (i < j && series[i + 1]!.datagramsIn - series[i]!.datagramsIn < minPerInterval) i++;
  while (j > i && series[j]!.datagramsIn - series[j - 1]!.datagramsIn < minPerInterval) j--;
  if (j <= i) return { cost: null, gcMs: null };
  const a = series[i]!;
  const b = series[j]!;
  return { cost: uploadCost(a, b), gcMs: a.gcMs !== undefined && b.gcMs !== undefined ? b.gcMs - a.gcMs : null };
}

function uploadCost(a: ProbeSnap | null, b: ProbeSnap | null): UploadCost | null {
  if (a === null || b === null) return null;
  const datagrams = b.datagramsIn - a.datagramsIn;
  const cpuS = (b.cpuUser + b.cpuSystem - a.cpuUser - a.cpuSystem) / 1e6;
  return { datagrams, cpuS, usPerDatagram: datagrams > 0 ? (cpuS * 1e6) / datagrams : null, bytesPerDatagram: datagrams > 0 ? (b.bytesIn - a.bytesIn) / datagrams : null };
}

// ---------------------------------------------------------------------------------------------------------------------
// Clients

const DL_PATH = `/video/bytes?n=${BIG}`;

function tmpDir(work: string, prefix: string): string {
  return mkdtempSync(join(existsSync('/dev/shm') ? '/dev/shm' : work, prefix));
}

/** gtlsclient GET of the 100 MB download, saved to tmpfs and size-checked; MB/s over its wall clock. */
async function gtlsDownload(o: EdgeOptions, name: string, port: number): Promise<Outcome> {
  const { client } = gtlsPrograms();
  if (client === null) return 'gtlsclient not installed';
  const dl = tmpDir(o.work, 'qsr-edge-dl-');
  try {
    const args = ['-q', '--exit-on-all-streams-close', '--timeout=30s', '--handshake-timeout=5s', `--download=${dl}`, HOST, String(port), `https://${HOST}:${port}${DL_PATH}`];
    const r = await runTimed(o.work, name, client, args, CLIENT_TIMEOUT);
    const files = readdirSync(dl);
    const size = files.length === 1 ? statSync(join(dl, files[0]!)).size : -1;
    if (size !== BIG) return `downloaded ${size < 0 ? `${files.length} files` : `${size} B`}, expected ${BIG} B; ${describeExit(r.child, r.exit)}`;
    return BIG / 1e6 / r.wall;
  } finally {
    rmSync(dl, { recursive: true, force: true });
  }
}

const gtlsDriver = (upload: string): ClientDriver => {
  const checked = new Map<number, string | null>();
  return {
    name: 'gtlsclient',
    rows: { small: `gtlsclient, ${fmtInt(SMALL_N)} small GETs, 1 conn`, upload: 'gtlsclient, 100 MB upload', download: 'gtlsclient, 100 MB download' },
    groups: [['small'], ['upload'], ['download']],
    unavailable: async () => (gtlsPrograms().client === null ? 'gtlsclient not installed (apt-get install ngtcp2-client)' : null),
    async run(o, works, target, port, tag) {
      // gtlsclient exits 0 whatever happened: check one request's status and stream close code once per target.
      if (!checked.has(port)) checked.set(port, await gtlsCheck(o.work, port, `https://${HOST}:${port}/text/sample`));
      const bad = checked.get(port);
      const out: Partial<Record<Work, Outcome>> = {};
      for (const w of works) {
        if (bad) out[w] = `check failed: ${bad}`;
        else if (w === 'small') out[w] = await gtlsGets(o, `gtls-small-${target}-${tag}`, port, SMALL_N);
        else if (w === 'upload') out[w] = await gtlsPost(o, `gtls-up-${target}-${tag}`, port, upload);
        else if (w === 'download') out[w] = await gtlsDownload(o, `gtls-dl-${target}-${tag}`, port);
      }
      return out;
    },
  };
};

function quicGoFailure(r: QuicGoClientRun): string {
  const t = r.report?.totals;
  return `${r.error ?? 'failed'}${t ? ` (${t.ok}/${t.requests} ok)` : ''}`;
}

/** One quic-go client run against a target; the figures its report gives. */
async function quicGoWork(o: EdgeOptions, w: Work, port: number, name: string, keylog?: string, upload?: string): Promise<Outcome> {
  const base = `https://${HOST}:${port}`;
  const common = { caFile: `${CERTS}ca.pem`, serverName: 'localhost', workDir: o.work, name, timeoutMs: CLIENT_TIMEOUT - 15_000, keylogFile: keylog };
  if (w === 'small' || w === 'small1000') {
    const r = await runQuicGoClient({ ...common, urls: [`${base}/text/sample`], requests: SMALL_N, concurrency: w === 'small' ? 100 : 1000 });
    if (!r.ok || r.report === undefined) return quicGoFailure(r);
    return r.report.totals.requests / (r.report.totals.wallMs / 1000);
  }
  if (w === 'upload') {
    const r = await runQuicGoClient({ ...common, urls: [`${base}/video`], method: 'POST', bodyFile: upload, bodyPreview: 400 });
    if (!r.ok || r.report === undefined) return quicGoFailure(r);
    const answer = r.report.requests[0]?.body ?? '';
    if (Number(/"bytes":(\d+)/.exec(answer)?.[1]) !== BIG) return `the video service answered ${answer.slice(0, 200)}`;
    return r.report.totals.bytesSent / 1e6 / (r.report.totals.wallMs / 1000);
  }
  const r = await runQuicGoClient({ ...common, urls: [`${base}${DL_PATH}`] });
  if (!r.ok || r.report === undefined) return quicGoFailure(r);
  const q = r.report.requests[0];
  if (q === undefined || q.bytes !== BIG || q.sha256 !== patternSha256(BIG)) return `download: ${q?.bytes ?? 0} B, sha256 ${q?.sha256 === patternSha256(BIG) ? 'ok' : 'MISMATCH'}`;
  return BIG / 1e6 / (r.report.totals.wallMs / 1000);
}

const quicGoDriver = (upload: string): ClientDriver => ({
  name: 'quic-go',
  rows: {
    small: `quic-go client, ${fmtInt(SMALL_N)} small GETs, 100 in flight`,
    small1000: `quic-go client, ${fmtInt(SMALL_N)} small GETs, 1,000 in flight`,
    upload: 'quic-go client, 100 MB upload',
    download: 'quic-go client, 100 MB download',
  },
  groups: [['small'], ['small1000'], ['upload'], ['download']],
  async unavailable() {
    const b = await buildQuicGo();
    return 'error' in b ? b.error : null;
  },
  async run(o, works, target, port, tag) {
    const out: Partial<Record<Work, Outcome>> = {};
    for (const w of works) out[w] = await quicGoWork(o, w, port, `quicgo-${w}-${target}-${tag}`, undefined, upload);
    return out;
  },
});

const firefoxDriver: ClientDriver = {
  name: 'firefox',
  rows: { small: `Firefox, ${fmtInt(FIREFOX_SMALL_N)} small GETs at once, 1 conn`, upload: 'Firefox, 100 MB upload', download: 'Firefox, 100 MB download' },
  // One browser for the small GETs and the download; the upload in a browser of its own, so that the router's CPU
  // and datagram counts around it cover the upload alone.
  groups: [['small', 'download'], ['upload']],
  unavailable: () => Promise.resolve(firefoxUnavailable()),
  async run(o, works, target, port) {
    const scripts = [];
    if (works.includes('small')) {
      const urls = Array.from({ length: FIREFOX_SMALL_N }, (_, i) => `/text/sample?i=${i}`);
      scripts.push({ name: 'small', expression: fetchManyScript(urls, { hash: false, timeoutMs: 60_000 }), timeoutMs: 70_000 });
    }
    if (works.includes('upload')) scripts.push({ name: 'upload', expression: uploadScript('/video', BIG, { timeoutMs: 90_000 }), timeoutMs: 120_000 });
    if (works.includes('download')) scripts.push({ name: 'download', expression: downloadScript(DL_PATH, { timeoutMs: 90_000 }), timeoutMs: 120_000 });
    const out: Partial<Record<Work, Outcome>> = {};
    let run;
    try {
      run = await runFirefox({ workDir: join(o.work, `firefox-${target}`), pageUrl: `https://${HOST}:${port}/text/sample`, certPem: `${CERTS}ca.pem`, scripts, timeoutMs: 60_000 + scripts.length * 120_000 });
    } catch (e) {
      for (const w of works) out[w] = (e as Error).message;
      return out;
    }
    for (const w of works) {
      const s = run.scripts[w];
      if (!run.h3 || s === undefined) {
        out[w] = run.fatal ?? `no result for ${w} (page not over h3)`;
        continue;
      }
      if (!s.ok) {
        out[w] = s.error ?? 'script failed';
        continue;
      }
      if (w === 'small') {
        const v = s.value as FetchManyValue;
        const bad = v.results.filter((r) => r.status !== 200 || r.protocol !== 'h3' || r.bytes === 0 || r.error !== undefined);
        out[w] = bad.length > 0 ? `${bad.length} of ${v.results.length} not 200 over h3 (first: ${JSON.stringify(bad[0])})` : v.results.length / (v.ms / 1000);
      } else if (w === 'upload') {
        const v = s.value as UploadValue;
        const got = (v.response as { bytes?: number } | null)?.bytes;
        out[w] = v.status !== 200 || v.protocol !== 'h3' || got !== BIG ? `upload: status ${v.status}, ${v.protocol}, service got ${got} B${v.error ? `, ${v.error}` : ''}` : BIG / 1e6 / (v.ms / 1000);
      } else {
        const v = s.value as DownloadValue;
        out[w] = v.status !== 200 || v.protocol !== 'h3' || !v.match || v.bytes !== BIG ? `download: status ${v.status}, ${v.protocol}, ${v.bytes} B, sha256 ${v.match ? 'ok' : 'MISMATCH'}${v.error ? `, ${v.error}` : ''}` : BIG / 1e6 / (v.ms / 1000);
      }
    }
    return out;
  },
};

/**
 * `qsr load` (src/load, src/cli/load.ts): the small-GET rows with our own load generator, one connection, S streams
 * in flight, N requests: `qsr load URL -c 1 -s S -n N --ca CA --server-name localhost --json`, whose report
 * (src/load/report.ts LoadReport) gives requestsPerSec over its measured phase (handshake excluded). Every request
 * must have succeeded. n/a when `qsr load --help` does not list its flags (an older build).
 */
const qsrLoadDriver: ClientDriver = {
  name: 'qsr-load',
  rows: { small: `qsr load, ${fmtInt(SMALL_N)} small GETs, 100 in flight`, small1000: `qsr load, ${fmtInt(SMALL_N)} small GETs, 1,000 in flight` },
  groups: [['small'], ['small1000']],
  async unavailable(o) {
    const c = spawnBounded({ name: 'qsr-load-help', cmd: process.execPath, args: [QSR_JS, 'load', '--help'], workDir: o.work, timeoutMs: 20_000 });
    const e = await c.exited;
    // commander answers an unknown command's --help with the program's help (exit 0): look for the command's flags.
    return e.code === 0 && c.output().includes('--connections') && c.output().includes('--streams') ? null : '`qsr load` not in this build';
  },
  async run(o, works, target, port, tag) {
    const out: Partial<Record<Work, Outcome>> = {};
    for (const w of works) {
      const streams = w === 'small' ? 100 : 1000;
      const args = [QSR_JS, 'load', `https://${HOST}:${port}/text/sample`, '-c', '1', '-s', String(streams), '-n', String(SMALL_N), '--ca', `${CERTS}ca.pem`, '--server-name', 'localhost', '--json'];
      const c = spawnBounded({ name: `qsr-load-${w}-${target}-${tag}`, cmd: process.execPath, args, workDir: o.work, timeoutMs: CLIENT_TIMEOUT });
      const e = await c.exited;
      type Report = { requestsPerSec?: number; requests?: { ok?: number; failed?: number }; errors?: Record<string, number> };
      let rep: Report | null;
      try {
        rep = JSON.parse(c.stdout()) as Report;
      } catch {
        rep = null;
      }
      if (rep === null || typeof rep.requestsPerSec !== 'number') out[w] = `qsr load: no JSON report; ${describeExit(c, e)}`;
      else if (rep.requests?.ok !== SMALL_N) out[w] = `qsr load: ${rep.requests?.ok ?? 0}/${SMALL_N} ok, errors ${JSON.stringify(rep.errors ?? {})}`;
      else out[w] = rep.requestsPerSec;
    }
    return out;
  },
};

// ---------------------------------------------------------------------------------------------------------------------
// Capture: ACK delay

/**
 * tshark -T fields over the capture, one line per datagram: time, source port, header forms, packet numbers, frame
 * types, and the ACK frames' fields; the delays computed from them.
 */
async function ackDelays(o: EdgeOptions, pcap: string, keylog: string, serverPort: number, skipPort: number): Promise<AckDelay | string> {
  const tshark = findProgram('tshark');
  if (tshark === null) return 'tshark not installed';
    const args = ['-r', pcap, '-o', `tls.keylog_file:${keylog}`, '-Y', 'quic', '-T', 'fields', '-E', 'separator=\t', '-E', 'aggregator=,', '-E', 'occurrence=a'];
  for (const f of ACK_DELAY_FIELDS) args.push('-e', f);
  const c = spawnBounded({ name: 'tshark-fields', cmd: tshark, args, workDir: o.work, timeoutMs: 300_000 });
  const e = await c.exited;
  if (e.code !== 0) return `tshark -r failed: ${describeExit(c, e)}`;
  return parseAckDelays(c.stdout().split('\n'), serverPort, skipPort);
}

/** Sends one-byte datagrams to `port` until the capture file grows; the sender's port, or null after 15 s. */
async function captureLive(pcap: string, port: number): Promise<number | null> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, HOST, () => r()));
  const size = (): number => (existsSync(pcap) ? statSync(pcap).size : 0);
  try {
    let base = -1;
    for (let i = 0; i < 150; i++) {
      if (base < 0 && size() > 0) base = size();
      sock.send(Buffer.alloc(1), port, HOST);
      await new Promise((r) => setTimeout(r, 100));
      if (base > 0 && size() > base) return sock.address().port;
    }
    return null;
  } finally {
    sock.close();
  }
}

interface CaptureResult {
  target: Target;
  mbPerSec: Outcome;
  ack?: AckDelay | string;
  /** Server CPU seconds over the captured upload (/proc) and per client datagram seen in the capture. */
  serverCpuS: number | null;
  usPerClientDatagram: number | null;
  /** The router's own count and CPU (probe), for comparison with the capture's. */
  probe?: UploadCost | null;
}

async function captureUpload(o: EdgeOptions, ep: Endpoints, target: Target, upload: string): Promise<CaptureResult> {
  const port = target === 'router' ? ep.routerPort : ep.caddyPort;
  const server = target === 'router' ? ep.router : ep.caddy;
  const res: CaptureResult = { target, mbPerSec: 'not run', serverCpuS: null, usPerClientDatagram: null };
  const dir = tmpDir(o.work, `qsr-edge-cap-${target}-`);
  const pcap = join(dir, 'upload.pcapng');
  const keylog = join(dir, 'keylog.txt');
  const tshark = findProgram('tshark');
  if (tshark === null || server === null) {
    res.mbPerSec = tshark === null ? 'tshark not installed' : `${TLABEL[target]} not running`;
    return res;
  }
  let cap: Child | null = null;
  try {
    // -B: a large capture buffer, so that a busy machine does not drop the upload's packets; -s 0: whole datagrams
    // (decryption needs them).
    cap = spawnBounded({ name: `tshark-cap-${target}`, cmd: tshark, args: ['-q', '-i', 'lo', '-B', '64', '-s', '0', '-f', `udp port ${port}`, '-w', pcap], workDir: o.work, timeoutMs: 240_000 });
    const up = await waitFor(() => !cap!.isRunning() || /Capturing on/.test(cap!.output()), 10_000);
    if (!up || !cap.isRunning()) {
      res.mbPerSec = `tshark did not start: ${describeExit(cap, await cap.stop('SIGKILL', 1000))}`;
      return res;
    }
    // "Capturing on" comes before the filter is live on a busy machine, and a capture without the ClientHello cannot
    // be decrypted: send one-byte datagrams (servers drop them) until the file grows, i.e. dumpcap sees them.
    const sentinel = await captureLive(pcap, port);
    if (sentinel === null) {
      res.mbPerSec = 'the capture did not see test datagrams within 15 s';
      return res;
    }
    const cpu0 = procCpuSeconds(server.pid);
    const p0 = target === 'router' && ep.probe !== null ? await probeSnap(server, ep.probe) : null;
    res.mbPerSec = await quicGoWork(o, 'upload', port, `quicgo-cap-${target}`, keylog, upload);
    const p1 = target === 'router' && ep.probe !== null ? await probeSnap(server, ep.probe) : null;
    const cpu1 = procCpuSeconds(server.pid);
    if (target === 'router') res.probe = uploadCost(p0, p1);
    await new Promise((r) => setTimeout(r, 300));
    await cap.stop('SIGINT', 10_000);
    const drops = /(\d+) packets? dropped/.exec(cap.output())?.[1];
    if (typeof res.mbPerSec === 'string') return res;
    res.ack = await ackDelays(o, pcap, keylog, port, sentinel);
    if (drops !== undefined && Number(drops) > 0 && typeof res.ack !== 'string') res.ack = `${res.ack.medianMs} ms median, but the capture dropped ${drops} packets`;
    res.serverCpuS = cpu0 !== null && cpu1 !== null ? cpu1 - cpu0 : null;
    if (typeof res.ack !== 'string' && res.serverCpuS !== null && res.ack.clientDatagrams > 0) res.usPerClientDatagram = (res.serverCpuS * 1e6) / res.ack.clientDatagrams;
    return res;
  } finally {
    if (cap !== null) await cap.stop('SIGKILL', 1000);
    rmSync(dir, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Scale: idle connections, handshakes, a bulk transfer beside many connections

interface IdleGroup {
  kids: Child[];
  established: number;
  failed: number;
  ms: number;
  /** CPU seconds of the idle client processes when all were established (startup included). */
  clientCpuS: number;
  error?: string;
}

/** Opens `count` idle HTTP/3 connections (several quic-peer idle processes); resolves once all reported. */
async function openIdle(o: EdgeOptions, port: number, count: number, tag: string): Promise<IdleGroup> {
  const g: IdleGroup = { kids: [], established: 0, failed: 0, ms: 0, clientCpuS: 0 };
  const procs = Math.ceil(count / IDLE_PER_PROCESS);
  // Generous (handshakes on a busy 2-core machine ran at 17-35 a second), but bounded: 2 minutes + 150 ms each.
  const limit = 120_000 + count * 150;
  for (let i = 0; i < procs; i++) {
    const n = Math.min(IDLE_PER_PROCESS, count - i * IDLE_PER_PROCESS);
    // Two handshakes in flight per process at most 32: several processes together stay near 64.
    const atOnce = Math.max(8, Math.floor(64 / procs));
    g.kids.push(
      spawnBounded({
        name: `idle-${tag}-${i}`,
        cmd: process.execPath,
        args: ['--max-old-space-size=4096', PEER_JS, 'idle', '--port', String(port), '--count', String(n), '--alpn', 'h3', '--at-once', String(atOnce)],
        workDir: o.work,
        timeoutMs: limit,
      }),
    );
  }
  const t0 = Date.now();
  const ready = (c: Child): Record<string, unknown> | undefined => jsonLines(c.stdout()).find((j) => j.event === 'idle_ready');
  await waitFor(() => g.kids.every((c) => ready(c) !== undefined || !c.isRunning()), limit - 30_000, 250);
  g.ms = Date.now() - t0;
  for (const c of g.kids) {
    const r = ready(c);
    if (r === undefined) g.error = `an idle client did not finish: ${describeExit(c, await c.stop('SIGKILL', 1000))}`;
    else {
      g.established += Number(r.count);
      g.failed += Number(r.failed);
      g.clientCpuS += Number(r.cpuS ?? 0);
    }
  }
  return g;
}

async function closeIdle(g: IdleGroup): Promise<void> {
  for (const c of g.kids) c.signal('SIGUSR2');
  await waitFor(() => g.kids.every((c) => !c.isRunning() || jsonLines(c.stdout()).some((j) => j.event === 'idle_closed')), 20_000, 100);
  // Let the CONNECTION_CLOSE frames go out before the processes go.
  await new Promise((r) => setTimeout(r, 1000));
  for (const c of g.kids) await c.stop('SIGTERM', 5000);
}

interface ScaleResult {
  target: Target;
  conns: number;
  established?: number;
  failed?: number;
  setupS?: number;
  rssBaseMB?: number | null;
  rssOpenMB?: number | null;
  rssClosedMB?: number | null;
  kbPerConn?: number | null;
  retainedMB?: number | null;
  cpuPerHandshakeMs?: number | null;
  handshakesPerCoreS?: number | null;
  /**
   * The same over a second flood of N, after the first closed: the router's JIT has compiled the handshake path by
   * then (a fresh node process runs its first ~1,000 handshakes mostly interpreted or baseline-compiled).
   */
  warm?: HandshakeCost;
  /** The first flood's datagrams per handshake (router, probe) and the idle clients' CPU per handshake. */
  cold?: HandshakeCost;
  /** The router's V8 heap in use and external memory (probe) at the baseline, with the connections open, after close. */
  heapUsedMB?: (number | null)[];
  externalMB?: (number | null)[];
  /** Mark-compact collections in the router between the close and the last measurement. */
  majorGcsAfterClose?: number | null;
  /** Last, after the warm round closed too, a full GC forced in the router (probe): its RSS over the baseline, and heap used. */
  retainedAfterGcMB?: number | null;
  heapUsedAfterGcMB?: number | null;
  error?: string;
}

const mb = (b: number | null): number | null => (b === null ? null : b / 1e6);

/** One handshake flood's cost: server CPU, its datagrams per handshake (router: probe), the clients' CPU. */
interface HandshakeCost {
  established: number;
  cpuPerHandshakeMs: number | null;
  handshakesPerCoreS: number | null;
  /** Router only: datagrams received and sent per handshake (above 3 and 2: retransmissions). */
  datagramsIn?: number | null;
  datagramsOut?: number | null;
  clientCpuPerHandshakeMs: number | null;
  error?: string;
}

function handshakeCost(g: IdleGroup, cpu0: number | null, cpu1: number | null, m0: ProbeSnap | null, m1: ProbeSnap | null): HandshakeCost {
  const n = g.established;
  const c: HandshakeCost = {
    established: n,
    cpuPerHandshakeMs: cpu0 !== null && cpu1 !== null && n > 0 ? ((cpu1 - cpu0) * 1000) / n : null,
    handshakesPerCoreS: cpu0 !== null && cpu1 !== null && cpu1 > cpu0 ? n / (cpu1 - cpu0) : null,
    clientCpuPerHandshakeMs: n > 0 ? (g.clientCpuS * 1000) / n : null,
  };
  if (m0 !== null && m1 !== null && n > 0) {
    c.datagramsIn = (m1.datagramsIn - m0.datagramsIn) / n;
    c.datagramsOut = (m1.datagramsOut - m0.datagramsOut) / n;
  }
  if (g.error !== undefined) c.error = g.error;
  return c;
}

/** A second flood of `o.conns` handshakes (the first has closed): the steady-state cost, JIT warm-up excluded. */
async function warmHandshakes(o: EdgeOptions, target: Target, server: Child, port: number, probe: string | null): Promise<HandshakeCost> {
  const snap = async (): Promise<ProbeSnap | null> => (probe !== null ? await probeSnap(server, probe) : null);
  const cpu0 = procCpuSeconds(server.pid);
  const m0 = await snap();
  const g = await openIdle(o, port, o.conns, `scale-warm-hs-${target}`);
  await new Promise((res) => setTimeout(res, 2000));
  const cpu1 = procCpuSeconds(server.pid);
  const m1 = await snap();
  await closeIdle(g);
  return handshakeCost(g, cpu0, cpu1, m0, m1);
}

async function scaleTarget(o: EdgeOptions, target: Target, server: Child, port: number, probe: string | null, say: Say): Promise<ScaleResult> {
  const r: ScaleResult = { target, conns: o.conns };
  // Warm-up: one request, so that the HTTP/3 code is loaded and compiled before the baseline.
  await quicGoWork(o, 'small', port, `scale-warm-${target}`);
  await new Promise((res) => setTimeout(res, 2000));
  const rss0 = procRssBytes(server.pid);
  const cpu0 = procCpuSeconds(server.pid);
  const snap = async (): Promise<ProbeSnap | null> => (probe !== null ? await probeSnap(server, probe) : null);
  const m0 = await snap();
  const g = await openIdle(o, port, o.conns, `scale-${target}`);
  r.established = g.established;
  r.failed = g.failed;
  r.setupS = g.ms / 1000;
  if (g.error !== undefined) r.error = g.error;
  await new Promise((res) => setTimeout(res, 2000));
  const rss1 = procRssBytes(server.pid);
  const cpu1 = procCpuSeconds(server.pid);
  const m1 = await snap();
  await closeIdle(g);
  say(`  ${TLABEL[target]}: ${g.established} idle connections in ${fmt(r.setupS, 1)} s (${g.failed} failed); RSS ${fmt(mb(rss0), 1)} -> ${fmt(mb(rss1), 1)} MB; closed, waiting ${o.pauseS} s`);
  await new Promise((res) => setTimeout(res, o.pauseS * 1000));
  const rss2 = procRssBytes(server.pid);
  const m2 = await snap();
  if (probe !== null) {
    const pick = (m: ProbeSnap | null, k: 'heapUsed' | 'external'): number | null => (m?.[k] === undefined ? null : mb(m[k]!));
    r.heapUsedMB = [m0, m1, m2].map((m) => pick(m, 'heapUsed'));
    r.externalMB = [m0, m1, m2].map((m) => pick(m, 'external'));
    r.majorGcsAfterClose = m1?.majorGcCount !== undefined && m2?.majorGcCount !== undefined ? m2.majorGcCount - m1.majorGcCount : null;
    say(`    router V8 heap used ${r.heapUsedMB.map((x) => fmt(x, 1)).join(' -> ')} MB, external ${r.externalMB.map((x) => fmt(x, 1)).join(' -> ')} MB (baseline, open, closed); ${r.majorGcsAfterClose ?? 'n/a'} mark-compact after the close`);
  }
  r.rssBaseMB = mb(rss0);
  r.rssOpenMB = mb(rss1);
  r.rssClosedMB = mb(rss2);
  if (rss0 !== null && rss1 !== null && g.established > 0) r.kbPerConn = (rss1 - rss0) / 1e3 / g.established;
  if (rss0 !== null && rss2 !== null) r.retainedMB = (rss2 - rss0) / 1e6;
  if (cpu0 !== null && cpu1 !== null && g.established > 0) {
    r.cpuPerHandshakeMs = ((cpu1 - cpu0) * 1000) / g.established;
    r.handshakesPerCoreS = cpu1 > cpu0 ? g.established / (cpu1 - cpu0) : null;
  }
  r.cold = handshakeCost(g, cpu0, cpu1, m0, m1);
  r.warm = await warmHandshakes(o, target, server, port, probe);
  say(`    handshakes: ${describeHsCost(r.cold)} (first ${g.established}); ${describeHsCost(r.warm)} (${r.warm.established} more, warm)`);
  if (probe !== null) {
    // Last, so that it changes no figure above: what is garbage V8 has not collected yet, and what the router holds
    // once the warm round closed too (a full GC forced through the probe; V8's own comes ~100 s after its last one).
    const m3 = await probeSnap(server, probe, 'SIGWINCH');
    if (m3 !== null && rss0 !== null) {
      r.retainedAfterGcMB = (m3.rss - rss0) / 1e6;
      r.heapUsedAfterGcMB = m3.heapUsed === undefined ? null : m3.heapUsed / 1e6;
      say(`    after both rounds closed, a full GC forced in the router: RSS ${fmt(mb(m3.rss), 1)} MB (${r.retainedAfterGcMB >= 0 ? '+' : ''}${fmt(r.retainedAfterGcMB, 1)} MB on the baseline), heap used ${fmt(r.heapUsedAfterGcMB, 1)} MB`);
    }
  }
  return r;
}

/** The router's CPU seconds and GC pauses over one transfer (probe snapshots around it). */
interface TransferCost {
  cpuS: number;
  gcMs: number | null;
  majorGcs: number | null;
}

function transferCost(a: ProbeSnap | null, b: ProbeSnap | null): TransferCost | null {
  if (a === null || b === null) return null;
  const gc = (k: 'gcMs' | 'majorGcCount'): number | null => (a[k] === undefined || b[k] === undefined ? null : b[k]! - a[k]!);
  return { cpuS: (b.cpuUser + b.cpuSystem - a.cpuUser - a.cpuSystem) / 1e6, gcMs: gc('gcMs'), majorGcs: gc('majorGcCount') };
}

const describeHsCost = (c: HandshakeCost): string =>
  `${fmt(c.cpuPerHandshakeMs, 2)} ms server CPU each${c.datagramsIn != null ? `, ${fmt(c.datagramsIn, 2)} datagrams in / ${fmt(c.datagramsOut ?? null, 2)} out` : ''}, clients ${fmt(c.clientCpuPerHandshakeMs, 2)} ms CPU each${c.error !== undefined ? ` (${short(c.error)})` : ''}`;

const fmtCost = (c: TransferCost | null): string => (c === null ? 'n/a' : `${fmt(c.cpuS)} s CPU (GC ${fmt(c.gcMs, 0)} ms, ${c.majorGcs ?? 'n/a'} mark-compact)`);

interface HoldResult {
  hold: number;
  idle?: number;
  before: Outcome[];
  beside: Outcome[];
  /** The router's CPU and GC per download, alone and beside the idle connections: what a busy machine moves least. */
  costBefore: (TransferCost | null)[];
  costBeside: (TransferCost | null)[];
  rssMB?: number | null;
  setupS?: number;
  error?: string;
}

async function holdTest(o: EdgeOptions, router: Child, port: number, probe: string | null, say: Say): Promise<HoldResult> {
  const r: HoldResult = { hold: o.hold, before: [], beside: [], costBefore: [], costBeside: [] };
  const download = async (name: string, costs: (TransferCost | null)[]): Promise<Outcome> => {
    const p0 = probe !== null ? await probeSnap(router, probe) : null;
    const x = await quicGoWork(o, 'download', port, name);
    costs.push(transferCost(p0, probe !== null ? await probeSnap(router, probe) : null));
    return x;
  };
  // One download first, not counted: the router runs fresh here, and its first transfer also compiles the code.
  await quicGoWork(o, 'download', port, 'hold-warm');
  for (let i = 1; i <= o.runs; i++) r.before.push(await download(`hold-before-${i}`, r.costBefore));
  say(`  bulk download with no other connection: ${r.before.map((x) => (typeof x === 'number' ? `${fmt(x, 1)} MB/s` : `FAILED ${x}`)).join(', ')}`);
  say(`    router per download: ${r.costBefore.map(fmtCost).join('; ')}`);
  // The router's endpoint admits 10,000 connections (Endpoint maxConnections default): hold-1 idle + the bulk one.
  const g = await openIdle(o, port, o.hold - 1, 'hold');
  r.idle = g.established;
  r.setupS = g.ms / 1000;
  try {
    if (g.error !== undefined) r.error = g.error;
    r.rssMB = mb(procRssBytes(router.pid));
    say(`  ${g.established} idle connections held (${g.failed} failed) after ${fmt(r.setupS, 1)} s; router RSS ${fmt(r.rssMB, 0)} MB`);
    for (let i = 1; i <= o.runs; i++) {
      if (!router.isRunning()) {
        r.beside.push('the router is gone');
        break;
      }
      r.beside.push(await download(`hold-beside-${i}`, r.costBeside));
    }
    say(`  bulk download beside them: ${r.beside.map((x) => (typeof x === 'number' ? `${fmt(x, 1)} MB/s` : `FAILED ${x}`)).join(', ')}`);
    say(`    router per download: ${r.costBeside.map(fmtCost).join('; ')}`);
  } finally {
    await closeIdle(g);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------------------
// The suite

async function startStack(o: EdgeOptions, tag: string, quicExtra: string[], say: Say, kids: Child[], services?: { textPort: number; videoPort: number }): Promise<Endpoints | string> {
  let textPort = services?.textPort ?? 0;
  let videoPort = services?.videoPort ?? 0;
  if (services === undefined) {
    const text = await startService(o, 'text');
    const video = await startService(o, 'video');
    if (typeof text !== 'string') kids.push(text.child);
    if (typeof video !== 'string') kids.push(video.child);
    if (typeof text === 'string' || typeof video === 'string') return [text, video].filter((x) => typeof x === 'string').join('; ');
    textPort = text.port;
    videoPort = video.port;
  }
  const ep: Endpoints = { router: null, routerPort: await freePort(), probe: join(o.work, `probe-${tag}.jsonl`), caddy: null, caddyPort: await freePort(), textPort, videoPort };
  const cfg = routerConfig(o, ep.routerPort, textPort, videoPort, quicExtra, `router-${tag}.yaml`);
  const r = await startRouter(o, cfg, `router-${tag}`, null, ['--import', `file://${PROBE_JS}`], { QSR_BENCH_PROBE: ep.probe! });
  if (typeof r === 'string') say(`router (${tag}): ${r}`);
  else {
    ep.router = r;
    kids.push(r);
  }
  const c = await startCaddy(o, ep.caddyPort, textPort, videoPort, `caddy-${tag}`);
  if (typeof c === 'string') say(`caddy (${tag}): ${c}`);
  else {
    ep.caddy = c;
    kids.push(c);
  }
  return ep;
}

const fmtRate = (v: number | null, unit: string): string => (v === null ? 'n/a' : unit === 'req/s' ? `${fmtInt(v)} req/s` : `${fmt(v, 1)} MB/s`);
const short = (s: string, n = 90): string => {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > n ? `${t.slice(0, n - 3)}...` : t;
};
/** Table cells keep the reason short; the full reasons are listed under the table. */
const cellWhy = (s: string): string => short(s, 44);

export async function runEdgeSuite(o: EdgeOptions, say: Say): Promise<Record<string, unknown>> {
  say('# Edge: router vs Caddy 2.6 (quic-go) in front of the same services, independent clients; loopback, MB = 10^6 B');
  say(`private network namespace: ${inPrivateNetns() ? 'yes' : 'no (Firefox needs one: run as root so that run.js re-executes itself under unshare -n)'}; runs ${o.runs}, router/Caddy order flipped every run`);
  const kids: Child[] = [];
  const upload = join(o.work, 'upload.bin');
  writeUpload(upload, BIG);
  const samples = new Map<string, Outcome[]>(); // "client|work|target" -> outcomes
  const unavailable = new Map<ClientName, string>();
  const costs: Record<string, UploadCost[]> = {};
  const captures: CaptureResult[] = [];
  const scale: ScaleResult[] = [];
  let hold: HoldResult | null = null;
  const drivers = [gtlsDriver(upload), quicGoDriver(upload), firefoxDriver, qsrLoadDriver].filter((d) => o.only === null || o.only.includes(d.name));
  const report: Record<string, unknown> = {};
  try {
    const ep = await startStack(o, 'main', [], say, kids);
    if (typeof ep === 'string') {
      say(`services: ${ep}`);
      return { error: ep };
    }
    say(`services: text :${ep.textPort}, video :${ep.videoPort}; router :${ep.routerPort} (probe preloaded, access log off) ${ep.router ? 'up' : 'DOWN'}; Caddy :${ep.caddyPort} ${ep.caddy ? 'up' : 'DOWN'}`);
    const portOf = (t: Target): number => (t === 'router' ? ep.routerPort : ep.caddyPort);
    const live = (t: Target): Child | null => (t === 'router' ? ep.router : ep.caddy);

    if (!o.skip.includes('throughput')) {
      for (const d of drivers) {
        const why = await d.unavailable(o);
        if (why !== null) {
          unavailable.set(d.name, why);
          say(`${d.name}: n/a (${why})`);
        }
      }
      // Warm-up (untimed): the router's JIT and both servers' upstream keep-alive connections.
      const warm = await buildQuicGo();
      if (!('error' in warm)) {
        for (const t of TARGETS) if (live(t) !== null) await quicGoWork(o, 'small', portOf(t), `warm-${t}`);
      }
      for (let run = 1; run <= o.runs; run++) {
        say(`run ${run}:`);
        const order = run % 2 === 1 ? TARGETS : [...TARGETS].reverse();
        for (const d of drivers) {
          if (unavailable.has(d.name)) continue;
          for (const group of d.groups) {
            for (const t of order) {
              const srv = live(t);
              if (srv === null || !srv.isRunning()) {
                for (const w of group) push(samples, `${d.name}|${w}|${t}`, `${TLABEL[t]} not running`);
                continue;
              }
              const probeIt = t === 'router' && group.includes('upload') && ep.probe !== null;
              const p0 = probeIt ? await probeSnap(srv, ep.probe!) : null;
              const series = probeIt ? probeSeries(srv, ep.probe!) : null;
              const res = await d.run(o, group, t, portOf(t), String(run));
              const bulk = series !== null ? bulkCost(await series.stop()) : null;
              const p1 = probeIt ? await probeSnap(srv, ep.probe!) : null;
              if (probeIt) {
                const c = uploadCost(p0, p1);
                if (c !== null && bulk !== null) {
                  c.bulk = bulk.cost;
                  c.bulkGcMs = bulk.gcMs;
                }
                if (c !== null && typeof res.upload === 'number') (costs[d.name] ??= []).push(c);
              }
              for (const w of group) {
                const v = res[w] ?? 'no result';
                push(samples, `${d.name}|${w}|${t}`, v);
                const unit = w === 'small' || w === 'small1000' ? 'req/s' : 'MB/s';
                say(`  ${d.rows[w]} -> ${TLABEL[t]}: ${typeof v === 'number' ? fmtRate(v, unit) : `FAILED ${short(v)}`}`);
              }
            }
          }
        }
      }
    }

    if (!o.skip.includes('capture')) {
      say('capture (quic-go client, 100 MB upload, tshark on lo, decrypted with the client key log):');
      const qg = await buildQuicGo();
      for (const t of TARGETS) {
        if ('error' in qg) {
          captures.push({ target: t, mbPerSec: qg.error, serverCpuS: null, usPerClientDatagram: null });
          continue;
        }
        const c = await captureUpload(o, ep, t, upload);
        captures.push(c);
        const a = c.ack;
        say(`  ${TLABEL[t]}: ${typeof c.mbPerSec === 'number' ? `${fmt(c.mbPerSec, 1)} MB/s` : `FAILED ${short(c.mbPerSec)}`}; ACK delay ${a === undefined ? 'n/a' : typeof a === 'string' ? a : `median ${fmt(a.medianMs, 3)} ms, p90 ${fmt(a.p90Ms, 3)} ms, p99 ${fmt(a.p99Ms, 3)} ms over ${a.matched} packets (client datagrams ${a.clientDatagrams}, server ${a.serverDatagrams}, unreadable ${a.unreadable}, unacked ${a.unacked})`}; server CPU ${fmt(c.serverCpuS)} s = ${fmt(c.usPerClientDatagram, 1)} µs per client datagram${c.probe ? `; probe: ${c.probe.datagrams} datagrams, ${fmt(c.probe.usPerDatagram, 1)} µs each` : ''}`);
      }
    }
    // The main stack is done: stop it, so the scale figures come from fresh processes with nothing else going on.
    for (const k of kids.splice(0).reverse()) await stopServer(k, 'SIGTERM');

    if (!o.skip.includes('scale') || !o.skip.includes('hold')) {
      const qg = await buildQuicGo();
      const sk: Child[] = [];
      try {
        // Idle timeout 10 minutes (the idle clients ask for the same), so nothing times out while connections are opened.
        const st = await startStack(o, 'scale', ['quic: { maxIdleTimeoutMs: 600000 }'], say, sk);
        if (typeof st === 'string') say(`scale: ${st}`);
        else if ('error' in qg) say(`scale: n/a (${qg.error}: the warm-up and bulk transfers use the quic-go client)`);
        else {
          if (!o.skip.includes('scale')) {
            say(`scale: ${o.conns} idle HTTP/3 connections (handshake only) per server, then closed, ${o.pauseS} s pause:`);
            for (const t of TARGETS) {
              const srv = t === 'router' ? st.router : st.caddy;
              if (srv === null) scale.push({ target: t, conns: o.conns, error: `${TLABEL[t]} not running` });
              else scale.push(await scaleTarget(o, t, srv, t === 'router' ? st.routerPort : st.caddyPort, t === 'router' ? st.probe : null, say));
            }
          }
          if (!o.skip.includes('hold')) {
            say(`hold: ${o.hold} concurrent connections on the router (${o.hold - 1} idle + one 100 MB quic-go download):`);
            if (st.router === null) hold = { hold: o.hold, before: [], beside: [], costBefore: [], costBeside: [], error: 'router not running' };
            else hold = await holdTest(o, st.router, st.routerPort, st.probe, say);
          }
        }
      } finally {
        for (const k of sk.reverse()) await stopServer(k, 'SIGTERM');
      }
    }
  } finally {
    for (const k of kids.reverse()) await stopServer(k, 'SIGTERM');
  }

  // ---- tables
  const med = (key: string): number | null => median((samples.get(key) ?? []).filter((x): x is number => typeof x === 'number'));
  const failures = (key: string): string[] => (samples.get(key) ?? []).filter((x): x is string => typeof x === 'string');
  const rows = [['client, work', 'router', 'Caddy', 'ratio', `goal ${GOAL_RATIO}x`]];
  const summaryRows: Record<string, unknown>[] = [];
  let below1 = 0;
  let rated = 0;
  if (!o.skip.includes('throughput')) {
    for (const d of drivers) {
      for (const w of d.groups.flat()) {
        const label = d.rows[w]!;
        const why = unavailable.get(d.name);
        if (why !== undefined) {
          rows.push([label, `n/a (${cellWhy(why)})`, 'n/a', 'n/a', 'n/a']);
          summaryRows.push({ client: d.name, work: w, label, unavailable: why });
          continue;
        }
        const unit = w === 'small' || w === 'small1000' ? 'req/s' : 'MB/s';
        const cell = (t: Target): string => {
          const m = med(`${d.name}|${w}|${t}`);
          const f = failures(`${d.name}|${w}|${t}`);
          const n = (samples.get(`${d.name}|${w}|${t}`) ?? []).length;
          if (m === null) return `n/a (${cellWhy(f[0] ?? 'no run')})`;
          return `${fmtRate(m, unit)}${f.length > 0 ? ` [${n - f.length}/${n} ok]` : ''}`;
        };
        const r = med(`${d.name}|${w}|router`);
        const c = med(`${d.name}|${w}|caddy`);
        const ratio = r !== null && c !== null && c > 0 ? r / c : null;
        if (ratio !== null) {
          rated++;
          if (ratio < 1) below1++;
        }
        rows.push([label, cell('router'), cell('caddy'), ratio === null ? 'n/a' : ratio.toFixed(2), ratio === null ? 'n/a' : ratio >= GOAL_RATIO ? 'met' : 'not met']);
        summaryRows.push({ client: d.name, work: w, label, unit, router: r, caddy: c, ratio, samples: { router: samples.get(`${d.name}|${w}|router`), caddy: samples.get(`${d.name}|${w}|caddy`) } });
      }
    }
    say('');
    say(`Throughput, medians of ${o.runs} run(s) (router and Caddy alternating):`);
    say(table(rows));
    say(`rows with a ratio: ${rated}; below 1.0x (the issue: never): ${below1}`);
    const failed = [...samples.entries()].filter(([, v]) => v.some((x) => typeof x === 'string'));
    if (failed.length > 0) {
      say('failed runs (client|work|server: first reason):');
      for (const [k, v] of failed) say(`  ${k}: ${v.filter((x) => typeof x === 'string').length}/${v.length} failed: ${short(String(v.find((x) => typeof x === 'string')), 400)}`);
    }
    say(`clocks: gtlsclient = its wall clock under /usr/bin/time (process start + handshake included); quic-go = its own wall`);
    say(`  clock from the first dial to the last response; Firefox = page time of the fetch()es (browser start and page load excluded);`);
    say(`  qsr load = its measured phase (handshake excluded).`);
  }
  report.throughput = summaryRows;

  const mRows = [['measure', 'router', 'Caddy', 'goal', 'router met?']];
  const costRow = (name: string): void => {
    const cs = costs[name];
    if (cs === undefined || cs.length === 0) return;
    const us = median(cs.map((c) => c.usPerDatagram));
    const size = median(cs.map((c) => c.bytesPerDatagram));
    mRows.push([`router CPU per received datagram, ${name} 100 MB upload (probe; ~${fmt(size, 0)} B each)`, `${fmt(us, 1)} µs`, '-', `< ${GOAL_US_PER_PACKET} µs`, us === null ? 'n/a' : us < GOAL_US_PER_PACKET ? 'met' : 'not met']);
    const bus = median(cs.map((c) => c.bulk?.usPerDatagram));
    const gc = median(cs.map((c) => c.bulkGcMs));
    mRows.push([`  the same, bulk phase only (probe every 250 ms; GC ${fmt(gc, 0)} ms in it)`, `${fmt(bus, 1)} µs`, '-', `< ${GOAL_US_PER_PACKET} µs`, bus === null ? 'n/a' : bus < GOAL_US_PER_PACKET ? 'met' : 'not met']);
  };
  for (const d of drivers) costRow(d.name);
  const capOf = (t: Target): CaptureResult | undefined => captures.find((c) => c.target === t);
  if (captures.length > 0) {
    const ack = (t: Target, k: 'medianMs' | 'p90Ms'): string => {
      const a = capOf(t)?.ack;
      if (a === undefined) return `n/a (${short(String(capOf(t)?.mbPerSec ?? 'not run'))})`;
      return typeof a === 'string' ? `n/a (${short(a)})` : `${fmt(a[k], 3)} ms`;
    };
    const rm = capOf('router')?.ack;
    const rmv = rm !== undefined && typeof rm !== 'string' ? rm.medianMs : null;
    mRows.push(['ACK delay median, quic-go 100 MB upload (capture)', ack('router', 'medianMs'), ack('caddy', 'medianMs'), `< ${GOAL_ACK_MS} ms`, rmv === null ? 'n/a' : rmv < GOAL_ACK_MS ? 'met' : 'not met']);
    mRows.push(['  ACK delay p90', ack('router', 'p90Ms'), ack('caddy', 'p90Ms'), '-', '-']);
    const per = (t: Target): string => fmt(capOf(t)?.usPerClientDatagram ?? null, 1) + ' µs';
    mRows.push(['server CPU per client datagram, captured upload (/proc)', per('router'), per('caddy'), `< ${GOAL_US_PER_PACKET} µs`, '-']);
  }
  const sc = (t: Target): ScaleResult | undefined => scale.find((s) => s.target === t);
  if (scale.length > 0) {
    const cell = (t: Target, f: (s: ScaleResult) => string): string => {
      const s = sc(t);
      if (s === undefined) return 'n/a';
      if (s.error !== undefined && s.established === undefined) return `n/a (${short(s.error)})`;
      return f(s);
    };
    const r = sc('router');
    mRows.push([`RSS per idle connection (${o.conns} open)`, cell('router', (s) => `${fmt(s.kbPerConn ?? null, 1)} KB`), cell('caddy', (s) => `${fmt(s.kbPerConn ?? null, 1)} KB`), `< ${GOAL_KB_PER_CONN} KB`, r?.kbPerConn == null ? 'n/a' : r.kbPerConn < GOAL_KB_PER_CONN ? 'met' : 'not met']);
    const grown = (s: ScaleResult): number | null => (s.rssOpenMB != null && s.rssBaseMB != null ? s.rssOpenMB - s.rssBaseMB : null);
    const returned = (s: ScaleResult | undefined): boolean | null => {
      if (s?.retainedMB == null) return null;
      const g = grown(s);
      return s.retainedMB <= Math.max(5, 0.1 * (g ?? 0));
    };
    mRows.push([`RSS over baseline ${o.pauseS} s after they closed`, cell('router', (s) => `${fmt(s.retainedMB ?? null, 1)} MB of ${fmt(grown(s), 1)}`), cell('caddy', (s) => `${fmt(s.retainedMB ?? null, 1)} MB of ${fmt(grown(s), 1)}`), 'returned (<= 10 % or 5 MB)', returned(r) === null ? 'n/a' : returned(r) ? 'met' : 'not met']);
    if (r?.retainedAfterGcMB != null) mRows.push(['  the same after both rounds and a full GC forced in the router', `${fmt(r.retainedAfterGcMB, 1)} MB`, '-', '-', '-']);
    mRows.push([`server CPU per handshake, first ${o.conns} (cold)`, cell('router', (s) => `${fmt(s.cpuPerHandshakeMs ?? null, 2)} ms`), cell('caddy', (s) => `${fmt(s.cpuPerHandshakeMs ?? null, 2)} ms`), '-', '-']);
    mRows.push(['handshakes per second per core, cold', cell('router', (s) => fmtInt(s.handshakesPerCoreS ?? null)), cell('caddy', (s) => fmtInt(s.handshakesPerCoreS ?? null)), '-', '-']);
    const w = (s: ScaleResult): number | null => s.warm?.handshakesPerCoreS ?? null;
    mRows.push([`server CPU per handshake, next ${o.conns} (warm)`, cell('router', (s) => `${fmt(s.warm?.cpuPerHandshakeMs ?? null, 2)} ms`), cell('caddy', (s) => `${fmt(s.warm?.cpuPerHandshakeMs ?? null, 2)} ms`), '-', '-']);
    mRows.push(['handshakes per second per core, warm', cell('router', (s) => fmtInt(w(s))), cell('caddy', (s) => fmtInt(w(s))), `>= ${fmtInt(GOAL_HANDSHAKES)}`, r === undefined || w(r) === null ? 'n/a' : w(r)! >= GOAL_HANDSHAKES ? 'met' : 'not met']);
  }
  if (hold !== null) {
    const b = median(hold.before.filter((x): x is number => typeof x === 'number'));
    const s = median(hold.beside.filter((x): x is number => typeof x === 'number'));
    const ratio = b !== null && s !== null && b > 0 ? s / b : null;
    const held = hold.idle !== undefined ? hold.idle + 1 : null;
    const firstErr = [...hold.before, ...hold.beside].find((x): x is string => typeof x === 'string') ?? hold.error;
    mRows.push([
      `${fmtInt(held ?? hold.hold)} concurrent connections + 100 MB download: speed vs alone`,
      ratio === null ? `n/a (${short(firstErr ?? 'no figure')})` : `${fmt(s, 1)} / ${fmt(b, 1)} MB/s = ${(ratio * 100).toFixed(0)} %`,
      '-',
      `>= ${GOAL_HOLD_RATIO * 100} % with ${fmtInt(o.hold)}`,
      ratio === null || held === null ? 'n/a' : ratio >= GOAL_HOLD_RATIO && held >= o.hold ? 'met' : 'not met',
    ]);
    const cpu = (l: (TransferCost | null)[]): number | null => median(l.map((c) => c?.cpuS ?? null).filter((x): x is number => x !== null));
    const gcm = (l: (TransferCost | null)[]): number | null => median(l.map((c) => c?.gcMs ?? null).filter((x): x is number => x !== null));
    const cb = cpu(hold.costBefore);
    const cs = cpu(hold.costBeside);
    mRows.push([
      'router CPU per 100 MB download (GC), beside them vs alone',
      cb === null || cs === null ? 'n/a' : `${fmt(cs)} s (${fmt(gcm(hold.costBeside), 0)} ms) / ${fmt(cb)} s (${fmt(gcm(hold.costBefore), 0)} ms)`,
      '-',
      '-',
      '-',
    ]);
  }
  if (mRows.length > 1) {
    say('');
    say('Router cost, ACK latency and scale:');
    say(table(mRows));
    say('probe = bench/probe.ts preloaded into the router: datagrams delivered by node:dgram and process.cpuUsage(), two snapshots around');
    say('  each upload (client start and handshake included); bulk phase: snapshots every 250 ms, first to last interval with > 500 datagrams. Scale: RSS from /proc/PID/status, CPU from /proc/PID/stat (10 ms ticks),');
    say('  idle connections from bench/quic-peer.ts idle --alpn h3 (handshake only, 64 in flight), so CPU per handshake includes nothing else;');
    say('  cold = the first N on a fresh server (for the router: JIT warm-up included), warm = N more after those closed.');
  }
  report.costs = costs;
  report.captures = captures;
  report.scale = scale;
  report.hold = hold;
  report.measures = mRows;
  report.table = rows;
  return report;
}

function push(m: Map<string, Outcome[]>, k: string, v: Outcome): void {
  const a = m.get(k) ?? [];
  a.push(v);
  m.set(k, a);
}

/** Helper for run.ts: parses a comma list of names against the allowed ones; an Error names the bad one. */
export function parseList<T extends string>(v: string, allowed: readonly T[], flag: string): T[] | Error {
  const out: T[] = [];
  for (const x of v.split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(allowed as readonly string[]).includes(x)) return new Error(`${flag}: unknown name '${x}' (expected ${allowed.join(', ')})`);
    out.push(x as T);
  }
  return out.length > 0 ? out : new Error(`${flag}: expected one or more of ${allowed.join(', ')}`);
}
