/**
 * The benchmark entry point (`npm run bench`). Suites:
 *   transport - bulk transfer: one QUIC connection (RFC 9000), one bidi stream, server -> client, over loopback.
 *               Ours: bench/quic-peer.ts as two separate node processes. Reference: ngtcp2's gtlsserver serving /<N>
 *               to gtlsclient (GnuTLS, default GSO).
 *   h3        - bench/h3.ts: qsr serve / qsr get vs gtlsserver / gtlsclient (100 MB download, 10,000 small GETs).
 *   router    - bench/router.ts: our router (h3, h2) vs Caddy 2.6 (h3) vs direct (h1) in front of the same services.
 *   idle      - the transport's bulk transfer against one server endpoint with no other connections, then with
 *               --idle N (default 10,000) idle connections open on it (bench/quic-peer.ts idle, another process):
 *               the endpoint's work per turn must not grow with the connections that have nothing to do.
 *   edge      - bench/edge.ts (the default, issue 10): router vs Caddy 2.6 with gtlsclient, the quic-go client and
 *               Firefox (small GETs, 100 MB up, 100 MB down), router CPU per received datagram and ACK delay during
 *               an upload, RSS per idle connection, handshakes per second per core, 10,000 connections + a bulk
 *               transfer. As root it re-executes this program in a private network namespace (unshare -n) first.
 *   floor     - bench/dgram-floor.ts: node:dgram alone per received datagram (a sender process blasting 1,300-byte
 *               datagrams on loopback, a receiver that only counts) beside the AEAD open and header protection mask
 *               costs: the floor under the router's CPU per received datagram. Not part of `all`.
 * Each prints per-run figures, a side-by-side table of medians and the targets with whether they are met.
 *
 *   node dist/bench/run.js [--suite edge|transport|h3|router|idle|floor|all] [--runs N] [--json FILE] [--profile DIR]
 *                          [--size MB] [--only ours|gtls] [--datagram BYTES]   (the last three: transport only)
 *                          [--idle N]                                           (idle; --size applies too)
 *                          [--only CLIENT,...] [--skip PART,...] [--conns N] [--hold N] [--pause S] [--no-netns]
 *                             (edge: CLIENT gtlsclient|quic-go|firefox|qsr-load, PART throughput|capture|scale|hold)
 *
 * MB = 10^6 bytes. Every child has a hard timeout and is killed by its own PID only; loopback only; temp files removed.
 * This is a measurement tool, not a test: it asserts nothing, it reports.
 */
import { existsSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findProgram, freeUdpPort, spawnBounded, udpPortBound, waitFor, type Child } from '../tools/process.js';
import { describeExit, fmt, jsonLines, median, num, readTextOr, readTimeFile, spawnTimed, childPidOf, table, type Say, type SuiteOptions } from './common.js';
import { runH3Suite } from './h3.js';
import { runRouterSuite } from './router.js';
import { FLOOR_DEFAULTS, runFloorSuite } from './dgram-floor.js';
import { CLIENT_NAMES, PARTS, parseList, runEdgeSuite, type ClientName, type Part } from './edge.js';
import { inPrivateNetns, netnsArgv, netnsUnavailable } from '../tools/peers/netns.js';
import { spawn } from 'node:child_process';

const HOST = '127.0.0.1';
const TARGET_MBPS = 60;
const PEER_JS = fileURLToPath(new URL('./quic-peer.js', import.meta.url));
const CERTS = fileURLToPath(new URL('../../test/fixtures/certs/', import.meta.url));
const TIME = '/usr/bin/time';

type Suite = 'edge' | 'transport' | 'h3' | 'router' | 'idle' | 'floor' | 'all';
const SUITES: readonly Suite[] = ['edge', 'transport', 'h3', 'router', 'idle', 'floor', 'all'];

interface Options {
  suite: Suite;
  profileDir: string | null;
  sizeMB: number;
  runs: number;
  only: 'ours' | 'gtls' | null;
  datagram: number;
  json: string | null;
  idle: number;
  /** edge: clients to run (--only), parts to skip, idle connections, held connections, pause after closing. */
  edgeOnly: ClientName[] | null;
  skip: Part[];
  conns: number;
  hold: number;
  pauseS: number;
  netns: boolean;
}

/** One measured transfer. null fields are "not available". */
interface RunResult {
  impl: 'ours' | 'gtls';
  run: number;
  ok: boolean;
  error?: string;
  bytes: number;
  mbPerSec: number | null;
  /** What the MB/s wall clock covers. */
  clock: string;
  handshakeMs: number | null;
  clientCpu: number | null;
  serverCpu: number | null;
  clientRssMB: number | null;
  serverRssMB: number | null;
  /** Transfer-only client CPU (ours: from stream open to last byte). */
  clientTransferCpu?: number | null;
  extra?: Record<string, unknown>;
}

function usage(msg?: string): never {
  if (msg !== undefined) process.stderr.write(`${msg}\n`);
  process.stderr.write(
    'usage: node dist/bench/run.js [--suite edge|transport|h3|router|idle|floor|all] [--runs N] [--json FILE] [--profile DIR] [--size MB] [--only ours|gtls] [--datagram BYTES] [--idle N]\n' +
      `       edge: [--only ${CLIENT_NAMES.join('|')}[,...]] [--skip ${PARTS.join('|')}[,...]] [--conns N] [--hold N] [--pause S] [--no-netns]\n`,
  );
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = {
    suite: 'edge', profileDir: null, sizeMB: 100, runs: 3, only: null, datagram: 0, json: null, idle: 10_000,
    edgeOnly: null, skip: [], conns: 1000, hold: 10_000, pauseS: 15, netns: true,
  };
  let onlyRaw: string | null = null;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    const num = (min: number, max: number): number => {
      const n = Number(v);
      if (v === undefined || !Number.isFinite(n) || n < min || n > max) usage(`${a} needs a number in [${min}, ${max}]`);
      i++;
      return n;
    };
    switch (a) {
      case '--size':
        o.sizeMB = num(0.001, 10_000);
        break;
      case '--runs':
        o.runs = Math.floor(num(1, 100));
        break;
      case '--datagram':
        o.datagram = Math.floor(num(1200, 65527)); // a fixed ceiling; default: PMTU discovery
        break;
      case '--idle':
        o.idle = Math.floor(num(1, 100_000));
        break;
      case '--only':
        if (v === undefined) usage('--only needs a name (transport: ours|gtls; edge: a list of clients)');
        onlyRaw = v;
        i++;
        break;
      case '--skip': {
        const l = v === undefined ? new Error('--skip needs a list of parts') : parseList(v, PARTS, '--skip');
        if (l instanceof Error) usage(l.message);
        o.skip = l;
        i++;
        break;
      }
      case '--conns':
        o.conns = Math.floor(num(1, 100_000));
        break;
      case '--hold':
        o.hold = Math.floor(num(2, 100_000));
        break;
      case '--pause':
        o.pauseS = num(0, 600);
        break;
      case '--no-netns':
        o.netns = false;
        break;
      case '--suite':
        if (!SUITES.includes(v as Suite)) usage(`--suite takes ${SUITES.join(', ')}`);
        o.suite = v as Suite;
        i++;
        break;
      case '--profile':
        if (v === undefined) usage('--profile needs a directory');
        o.profileDir = v;
        i++;
        break;
      case '--json':
        if (v === undefined) usage('--json needs a file name');
        o.json = v;
        i++;
        break;
      case '-h':
      case '--help':
        usage();
        break;
      default:
        usage(`unknown option ${a}`);
    }
  }
  if (onlyRaw !== null) {
    // transport: ours|gtls; edge: clients. With --suite all both are tried: a name must fit one of them.
    if (onlyRaw === 'ours' || onlyRaw === 'gtls') {
      if (o.suite === 'edge') usage(`--only ${onlyRaw}: the edge suite's clients are ${CLIENT_NAMES.join(', ')}`);
      o.only = onlyRaw;
    } else {
      if (o.suite !== 'edge' && o.suite !== 'all') usage(`--only ${onlyRaw}: suite ${o.suite} takes ours or gtls`);
      const l = parseList(onlyRaw, CLIENT_NAMES, '--only');
      if (l instanceof Error) usage(l.message);
      o.edgeOnly = l;
    }
  }
  return o;
}

/** Hard limit for one transfer: generous, so a slow run is measured rather than killed, but always bounded. */
function transferTimeoutMs(sizeBytes: number): number {
  return 30_000 + Math.ceil(sizeBytes / 1e6) * 1000; // allows ~1 MB/s
}

// ---------------------------------------------------------------------------------------------------------------------
// Ours

async function runOurs(o: Options, size: number, run: number, work: string, sha: boolean): Promise<RunResult> {
  const base: RunResult = {
    impl: 'ours', run, ok: false, bytes: 0, mbPerSec: null, clock: 'stream open -> last byte (handshake excluded)',
    handshakeMs: null, clientCpu: null, serverCpu: null, clientRssMB: null, serverRssMB: null,
  };
  const limit = transferTimeoutMs(size);
  const dg = String(o.datagram); // 0: the connection's default ceiling (PMTU discovery up to 16 KiB on loopback)
  const srv = spawnBounded({ name: `ours-server-${run}`, cmd: process.execPath, args: [PEER_JS, 'server', '--datagram', dg], workDir: work, timeoutMs: limit + 10_000 });
  let port = 0;
  await waitFor(() => {
    const l = jsonLines(srv.stdout()).find((j) => j.event === 'listening');
    if (l) port = num(l.port) ?? 0;
    return port !== 0 || !srv.isRunning();
  }, 10_000);
  if (port === 0) {
    const e = await srv.stop('SIGKILL', 1000);
    return { ...base, error: `server did not start: ${describeExit(srv, e)}` };
  }
  const cliArgs = [PEER_JS, 'client', '--port', String(port), '--size', String(size), '--datagram', dg];
  if (sha) cliArgs.push('--sha');
  const cli = spawnBounded({ name: `ours-client-${run}`, cmd: process.execPath, args: cliArgs, workDir: work, timeoutMs: limit });
  const cExit = await cli.exited;
  // The server exits by itself once the connection is closed; give it a moment, then ask, then kill (its own PID).
  const sOk = await Promise.race([srv.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 5000))]);
  const sExit = sOk ? await srv.exited : await srv.stop('SIGTERM', 3000);
  const c = jsonLines(cli.stdout()).find((j) => j.event === 'exit');
  const s = jsonLines(srv.stdout()).find((j) => j.event === 'exit');
  const r: RunResult = {
    ...base,
    serverCpu: num(s?.cpu),
    serverRssMB: num(s?.maxRssMB),
  };
  if (!c) return { ...r, error: `client: ${describeExit(cli, cExit)}` };
  r.bytes = num(c.bytes) ?? 0;
  r.ok = c.ok === true;
  r.mbPerSec = num(c.mbPerSec);
  r.handshakeMs = num(c.handshakeMs);
  r.clientCpu = num(c.cpu);
  r.clientRssMB = num(c.maxRssMB);
  r.clientTransferCpu = num(c.transferCpu);
  r.extra = { stats: c.stats, sha256: c.sha256, serverErrors: s?.errors, serverExit: s ? undefined : describeExit(srv, sExit) };
  if (!r.ok) r.error = `received ${r.bytes} of ${size} bytes${c.sha256 !== undefined ? ' or SHA-256 mismatch' : ''}`;
  return r;
}

// ---------------------------------------------------------------------------------------------------------------------
// Reference: gtlsserver / gtlsclient (ngtcp2 + GnuTLS)

/** Stops the gtlsserver we started: SIGINT to its own PID (ngtcp2's examples exit cleanly on it), then SIGKILL. */
async function stopTimedServer(srv: Child, timed: boolean): Promise<void> {
  if (!timed) {
    await srv.stop('SIGINT', 3000);
    return;
  }
  const pid = childPidOf(srv.pid);
  if (pid !== null && srv.isRunning()) {
    try {
      process.kill(pid, 'SIGINT');
    } catch {
      // already gone
    }
    const done = await Promise.race([srv.exited.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 3000))]);
    if (!done && srv.isRunning()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  // Last resort: /usr/bin/time itself (our direct child), so nothing outlives the hard limit.
  const late = await Promise.race([srv.exited.then(() => false), new Promise<boolean>((r) => setTimeout(() => r(true), 3000))]);
  if (late) await srv.stop('SIGKILL', 1000);
}

async function runGtls(o: Options, size: number, run: number, work: string): Promise<RunResult> {
  const base: RunResult = {
    impl: 'gtls', run, ok: false, bytes: 0, mbPerSec: null, clock: 'gtlsclient process start -> exit (incl. handshake)',
    handshakeMs: null, clientCpu: null, serverCpu: null, clientRssMB: null, serverRssMB: null,
  };
  const server = findProgram('gtlsserver');
  const client = findProgram('gtlsclient');
  if (server === null || client === null) return { ...base, error: 'gtlsserver/gtlsclient not installed (apt-get install ngtcp2-server ngtcp2-client)' };
  const timed = existsSync(TIME);
  const limit = transferTimeoutMs(size);
  const port = await freeUdpPort(HOST);
  // Downloads go to tmpfs when there is one, so the reference client is not slowed by a disk.
  const dlParent = existsSync('/dev/shm') ? '/dev/shm' : work;
  const dl = mkdtempSync(join(dlParent, 'qsr-bench-dl-'));
  const sTime = join(work, `gtls-server-${run}.time`);
  const cTime = join(work, `gtls-client-${run}.time`);
  try {
    const sArgs = ['-q', `--max-dyn-length=${Math.max(size, 20_000_000)}`, '-d', work, HOST, String(port), `${CERTS}ecdsa.key`, `${CERTS}ecdsa.pem`];
    const srv = spawnTimed(`gtls-server-${run}`, server, sArgs, work, limit + 15_000, timed ? sTime : null);
    const up = await waitFor(() => !srv.isRunning() || udpPortBound(port), 5000);
    if (!up || !srv.isRunning()) {
      const e = await srv.stop('SIGKILL', 1000);
      return { ...base, error: `gtlsserver did not bind: ${describeExit(srv, e)}` };
    }
    const idle = `${Math.ceil(limit / 1000)}s`;
    const cArgs = ['-q', '--exit-on-all-streams-close', `--timeout=${idle}`, '--handshake-timeout=5s', `--download=${dl}`, HOST, String(port), `https://${HOST}:${port}/${size}`];
    const t0 = process.hrtime.bigint();
    const cli = spawnTimed(`gtls-client-${run}`, client, cArgs, work, limit, timed ? cTime : null);
    const cExit = await cli.exited;
    const wallParent = Number(process.hrtime.bigint() - t0) / 1e9;
    await stopTimedServer(srv, timed);
    const file = join(dl, String(size));
    const bytes = existsSync(file) ? statSync(file).size : 0;
    const ct = timed ? readTimeFile(cTime) : null;
    const st = timed ? readTimeFile(sTime) : null;
    const wall = ct?.wall ?? wallParent;
    const ok = bytes === size && !cExit.timedOut;
    return {
      ...base,
      ok,
      error: ok ? undefined : `downloaded ${bytes} of ${size} bytes; ${describeExit(cli, cExit)}`,
      bytes,
      // GNU time's %e has 10 ms resolution; the parent's own clock also counts spawning /usr/bin/time.
      mbPerSec: size / 1e6 / wall,
      clientCpu: ct?.cpu ?? null,
      serverCpu: st?.cpu ?? null,
      clientRssMB: ct?.rssMB ?? null,
      serverRssMB: st?.rssMB ?? null,
      extra: { wallTime: ct?.wall ?? null, wallParent },
    };
  } finally {
    rmSync(dl, { recursive: true, force: true });
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Report

function perRun(r: RunResult): string {
  const hs = r.handshakeMs === null ? '' : ` handshake ${r.handshakeMs.toFixed(1)} ms,`;
  const tc = r.clientTransferCpu != null ? ` (transfer ${r.clientTransferCpu.toFixed(2)})` : '';
  const head = `  ${r.impl} run ${r.run}: ${r.ok ? 'ok' : 'FAILED'} ${fmt(r.mbPerSec, 1)} MB/s,${hs} client CPU ${fmt(r.clientCpu)} s${tc}, server CPU ${fmt(r.serverCpu)} s, RSS ${fmt(r.clientRssMB, 0)}/${fmt(r.serverRssMB, 0)} MB`;
  return r.error !== undefined ? `${head}\n    error: ${r.error}` : head;
}

/** The transport suite: our QUIC peers vs gtlsserver/gtlsclient, one bulk stream. */
async function runTransport(o: Options, work: string, say: Say): Promise<Record<string, unknown>> {
  const size = Math.round(o.sizeMB * 1e6);
  say(`# QUIC bulk transfer, loopback ${HOST}, one connection, one stream, server -> client`);
  say(`size ${o.sizeMB} MB (${size} B, MB = 10^6 B), runs ${o.runs}, ours ${o.datagram ? `--datagram ${o.datagram} (maxDatagramSize ceiling on both sides)` : 'PMTU discovery from 1200 up to the loopback ceiling'}`);
  const results: RunResult[] = [];
  if (o.only !== 'gtls') {
    // Warm-up and integrity check (not timed): a smaller transfer hashed with SHA-256 by the client.
    const v = await runOurs(o, Math.min(size, 8_000_000), 0, work, true);
    say(`ours integrity check (${Math.min(size, 8_000_000)} B, SHA-256 of the pattern): ${v.ok ? 'ok' : `FAILED: ${v.error}`}`);
    for (let i = 1; i <= o.runs; i++) {
      const r = await runOurs(o, size, i, work, false);
      results.push(r);
      say(perRun(r));
    }
  }
  if (o.only !== 'ours') {
    for (let i = 1; i <= o.runs; i++) {
      const r = await runGtls(o, size, i, work);
      results.push(r);
      say(perRun(r));
    }
  }

  const rows = [['implementation', 'MB/s', 'client CPU s', 'server CPU s', 'client peak RSS MB', 'server peak RSS MB']];
  const summary: Record<string, unknown> = {};
  for (const impl of ['ours', 'gtls'] as const) {
    const rs = results.filter((r) => r.impl === impl);
    if (rs.length === 0) continue;
    const good = rs.filter((r) => r.ok);
    const m = {
      mbPerSec: median(good.map((r) => r.mbPerSec)),
      handshakeMs: median(good.map((r) => r.handshakeMs)),
      clientCpu: median(good.map((r) => r.clientCpu)),
      serverCpu: median(good.map((r) => r.serverCpu)),
      clientRssMB: median(good.map((r) => r.clientRssMB)),
      serverRssMB: median(good.map((r) => r.serverRssMB)),
      okRuns: good.length,
      runs: rs.length,
    };
    summary[impl] = m;
    const label = impl === 'ours' ? `ours (node, ${o.datagram ? `dgram ${o.datagram}` : 'PMTUD'})` : 'ngtcp2 gtlsserver/gtlsclient (GSO on)';
    rows.push([`${label}${good.length < rs.length ? ` [${good.length}/${rs.length} ok]` : ''}`, fmt(m.mbPerSec, 1), fmt(m.clientCpu), fmt(m.serverCpu), fmt(m.clientRssMB, 0), fmt(m.serverRssMB, 0)]);
  }
  say('');
  say(`transport medians of ${o.runs} run(s):`);
  say(table(rows));
  const ours = summary.ours as { mbPerSec: number | null; handshakeMs: number | null } | undefined;
  if (ours) say(`ours: handshake (separate, median) ${fmt(ours.handshakeMs, 1)} ms; MB/s is stream open -> last byte; CPU/RSS are whole-process (node start + handshake included)`);
  if (summary.gtls) say('gtls: MB/s is gtlsclient wall clock incl. process start and handshake; body saved to tmpfs (--download) and size-checked; CPU/RSS from /usr/bin/time');
  const best = ours?.mbPerSec ?? null;
  say(`target: >= ${TARGET_MBPS} MB/s on one connection -> ours ${fmt(best, 1)} MB/s: ${best === null ? 'n/a' : best >= TARGET_MBPS ? 'met' : 'NOT met'}`);
  return { results, summary };
}

// ---------------------------------------------------------------------------------------------------------------------
// Idle connections: the same bulk transfer with and without N idle connections on the server endpoint

/** Hard limit for opening the idle connections (their handshakes are the slow part of this suite). */
const IDLE_SETUP_LIMIT_MS = 600_000;

interface IdleServer {
  idle: number;
  srv: Child;
  idler: Child | null;
  port: number;
  /** Idle connections actually established, and how long that took. */
  established: number;
  setupSeconds: number | null;
  /** Per bulk run: the client's speed and the server's CPU seconds and GC pauses over it (quic-peer 'served'). */
  runs: { ok: boolean; mbPerSec: number | null; serverCpu: number | null; gcMs: number | null; majorGcs: number | null; error?: string }[];
  serverCpu: number | null;
  serverRssMB: number | null;
  error?: string;
}

/** A server endpoint (quic-peer server --keep-idle) with `idle` idle connections from another process on it. */
async function startIdleServer(o: Options, idle: number, size: number, work: string, say: Say): Promise<IdleServer> {
  const limit = IDLE_SETUP_LIMIT_MS + 2 * o.runs * transferTimeoutMs(size) + 60_000;
  const srv = spawnBounded({ name: `idle-server-${idle}`, cmd: process.execPath, args: [PEER_JS, 'server', '--keep-idle', String(Math.max(o.idle, 1))], workDir: work, timeoutMs: limit });
  const s: IdleServer = { idle, srv, idler: null, port: 0, established: 0, setupSeconds: null, runs: [], serverCpu: null, serverRssMB: null };
  await waitFor(() => {
    const l = jsonLines(srv.stdout()).find((j) => j.event === 'listening');
    if (l) s.port = num(l.port) ?? 0;
    return s.port !== 0 || !srv.isRunning();
  }, 10_000);
  if (s.port === 0) {
    s.error = `server did not start: ${describeExit(srv, await srv.stop('SIGKILL', 1000))}`;
    return s;
  }
  if (idle === 0) return s;
  const idler = spawnBounded({ name: `idle-clients-${idle}`, cmd: process.execPath, args: [PEER_JS, 'idle', '--port', String(s.port), '--count', String(idle)], workDir: work, timeoutMs: limit });
  s.idler = idler;
  let ready: Record<string, unknown> | undefined;
  await waitFor(() => {
    ready = jsonLines(idler.stdout()).find((j) => j.event === 'idle_ready');
    return ready !== undefined || !idler.isRunning();
  }, IDLE_SETUP_LIMIT_MS, 250);
  if (!ready) {
    s.error = `the idle connections were not established within ${IDLE_SETUP_LIMIT_MS / 1000} s: ${describeExit(idler, await idler.stop('SIGKILL', 1000))}`;
    return s;
  }
  s.established = num(ready.count) ?? 0;
  s.setupSeconds = (num(ready.ms) ?? 0) / 1000;
  say(`${s.established} idle connections established in ${fmt(s.setupSeconds, 1)} s${num(ready.failed) ? ` (${String(ready.failed)} handshakes failed)` : ''}`);
  return s;
}

async function bulkRun(s: IdleServer, size: number, run: number, work: string, say: Say): Promise<void> {
  const servedBefore = jsonLines(s.srv.stdout()).filter((j) => j.event === 'served').length;
  const cli = spawnBounded({ name: `idle-bulk-${s.idle}-${run}`, cmd: process.execPath, args: [PEER_JS, 'client', '--port', String(s.port), '--size', String(size)], workDir: work, timeoutMs: transferTimeoutMs(size) });
  const exit = await cli.exited;
  const c = jsonLines(cli.stdout()).find((j) => j.event === 'exit');
  // The server prints its 'served' line when the stream closes, about when the client exits.
  let served: Record<string, unknown> | undefined;
  await waitFor(() => {
    const l = jsonLines(s.srv.stdout()).filter((j) => j.event === 'served');
    served = l[servedBefore];
    return served !== undefined || !s.srv.isRunning();
  }, 3000, 20);
  const cost = { serverCpu: num(served?.cpu), gcMs: num(served?.gcMs), majorGcs: num(served?.majorGcCount) };
  const r = c ? { ok: c.ok === true, mbPerSec: num(c.mbPerSec), ...cost } : { ok: false, mbPerSec: null, ...cost, error: describeExit(cli, exit) };
  s.runs.push(r);
  say(`  run ${run}, ${s.idle} idle connections: ${r.ok ? 'ok' : 'FAILED'} ${fmt(r.mbPerSec, 1)} MB/s; server ${fmt(r.serverCpu)} s CPU, GC ${fmt(r.gcMs, 0)} ms (${r.majorGcs ?? 'n/a'} mark-compact)${'error' in r && r.error ? ` (${r.error})` : ''}`);
}

async function stopIdleServer(s: IdleServer): Promise<void> {
  if (s.idler) await s.idler.stop('SIGTERM', 5000);
  await s.srv.stop('SIGTERM', 5000);
  const e = jsonLines(s.srv.stdout()).find((j) => j.event === 'exit');
  s.serverCpu = num(e?.cpu);
  s.serverRssMB = num(e?.maxRssMB);
}

/**
 * Two server endpoints side by side, one bare and one with o.idle idle connections, and the same bulk transfer
 * against each in turn (alternating, so a change in the machine's load affects both rows alike).
 */
async function runIdleSuite(o: Options, work: string, say: Say): Promise<Record<string, unknown>> {
  const size = Math.round(o.sizeMB * 1e6);
  say(`# Bulk transfer (one connection, one stream, server -> client, ${o.sizeMB} MB) with 0 and ${o.idle} idle connections open on the server endpoint`);
  say(`loopback ${HOST}; each server, the idle clients and the bulk client are separate processes; runs ${o.runs} per row, alternating; MB = 10^6 B`);
  const servers: IdleServer[] = [];
  try {
    servers.push(await startIdleServer(o, 0, size, work, say));
    servers.push(await startIdleServer(o, o.idle, size, work, say));
    if (servers.every((s) => s.error === undefined)) {
      for (let i = 1; i <= o.runs; i++) for (const s of servers) await bulkRun(s, size, i, work, say);
    }
  } finally {
    for (const s of servers) await stopIdleServer(s);
  }
  const med = (s: IdleServer): number | null => median(s.runs.filter((x) => x.ok).map((x) => x.mbPerSec));
  const medOf = (s: IdleServer, k: 'serverCpu' | 'gcMs'): number | null => median(s.runs.filter((x) => x.ok).map((x) => x[k]));
  const rows = [['idle connections on the server endpoint', 'bulk MB/s (median)', 'server CPU s per transfer', 'server GC ms per transfer', 'ok runs', 'server CPU s (incl. idle handshakes)', 'server peak RSS MB']];
  for (const s of servers) rows.push([String(s.idle ? s.established : 0), fmt(med(s), 1), fmt(medOf(s, 'serverCpu')), fmt(medOf(s, 'gcMs'), 0), `${s.runs.filter((x) => x.ok).length}/${s.runs.length}`, fmt(s.serverCpu), fmt(s.serverRssMB, 0)]);
  say('');
  say('idle-connection medians:');
  say(table(rows));
  for (const s of servers) if (s.error) say(`${s.idle} idle: ${s.error}`);
  const base = servers[0] ? med(servers[0]) : null;
  const loaded = servers[1] ? med(servers[1]) : null;
  const ratio = base !== null && loaded !== null && base > 0 ? loaded / base : null;
  say(`with ${o.idle} idle connections the bulk transfer runs at ${ratio === null ? 'n/a' : `${(ratio * 100).toFixed(1)} %`} of its speed with none; target >= 90 %: ${ratio === null ? 'n/a' : ratio >= 0.9 ? 'met' : 'NOT met'}`);
  const cpu0 = servers[0] ? medOf(servers[0], 'serverCpu') : null;
  const cpu1 = servers[1] ? medOf(servers[1], 'serverCpu') : null;
  const cpuRatio = cpu0 !== null && cpu1 !== null && cpu1 > 0 ? cpu0 / cpu1 : null;
  say(`server CPU per transfer: ${fmt(cpu1)} s with ${o.idle} idle connections, ${fmt(cpu0)} s with none: ${cpuRatio === null ? 'n/a' : `${(cpuRatio * 100).toFixed(1)} %`} of the speed a CPU-bound server would keep (less noisy than wall clock on a busy machine)`);
  return { servers: servers.map(({ srv: _s, idler: _i, ...rest }) => rest), ratio, cpuRatio };
}

/** Runs this program again inside a private network namespace (unshare -n, loopback only); resolves with its exit code. */
function reexecInNetns(argv: readonly string[]): Promise<number> | null {
  const inner = netnsArgv([process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...argv]);
  if (inner === null) return null;
  return new Promise((resolveCode) => {
    const child = spawn(inner[0]!, inner.slice(1), { stdio: 'inherit', env: { ...process.env, QSR_BENCH_NETNS: '1' } });
    const forward = (sig: NodeJS.Signals): void => void child.kill(sig);
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('exit', (code, signal) => resolveCode(code ?? (signal !== null ? 1 : 2)));
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const o = parseArgs(argv);
  if ((o.suite === 'edge' || o.suite === 'all') && o.netns && !inPrivateNetns() && process.env.QSR_BENCH_NETNS === undefined) {
    const why = netnsUnavailable();
    if (why === null) {
      // Same working directory and file system inside: only the network differs (--json FILE means the same file).
      const code = await reexecInNetns(argv);
      process.exit(code ?? 2);
    }
    console.log(`note: not in a private network namespace (${why}): Firefox rows will be n/a`);
  }
  const sys = {
    nproc: availableParallelism(),
    node: process.version,
    kernel: readTextOr('/proc/sys/kernel/osrelease', 'n/a'),
    rmemMax: readTextOr('/proc/sys/net/core/rmem_max', 'n/a'),
    wmemMax: readTextOr('/proc/sys/net/core/wmem_max', 'n/a'),
    loMtu: readTextOr('/sys/class/net/lo/mtu', 'n/a'),
    time: existsSync(TIME) ? TIME : null,
  };
  const say: Say = (s) => console.log(s);
  say(`suite ${o.suite}, runs ${o.runs}; nproc ${sys.nproc}, node ${sys.node}, kernel ${sys.kernel}, net.core.rmem_max ${sys.rmemMax}, wmem_max ${sys.wmemMax}, lo MTU ${sys.loMtu}`);
  if (o.profileDir !== null) mkdirSync(o.profileDir, { recursive: true });
  const report: Record<string, unknown> = { options: o, system: sys };
  const suites: Suite[] = o.suite === 'all' ? ['transport', 'h3', 'router', 'idle', 'edge'] : [o.suite];
  for (const suite of suites) {
    // Every suite gets its own scratch directory (children's logs, generated files), removed afterwards.
    const work = mkdtempSync(join(tmpdir(), `qsr-bench-${suite}-`));
    const so: SuiteOptions = { runs: o.runs, profileDir: o.profileDir, work };
    // Other processes on the host share the CPUs; the load average tells how quiet it was.
    say('');
    say(`load average before ${suite}: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
    try {
      report[suite] =
        suite === 'transport'
          ? await runTransport(o, work, say)
          : suite === 'h3'
            ? await runH3Suite(so, say)
            : suite === 'idle'
              ? await runIdleSuite(o, work, say)
              : suite === 'edge'
                ? await runEdgeSuite({ ...so, only: o.edgeOnly, skip: o.skip, conns: o.conns, hold: o.hold, pauseS: o.pauseS }, say)
                : suite === 'floor'
                  ? await runFloorSuite({ ...FLOOR_DEFAULTS, runs: o.runs }, say)
                  : await runRouterSuite(so, say);
    } finally {
      rmSync(work, { recursive: true, force: true });
    }
    say(`load average after ${suite}: ${loadavg().map((x) => x.toFixed(2)).join(' ')}`);
  }

  if (o.json !== null) {
    writeFileSync(o.json, JSON.stringify(report, null, 2) + '\n');
    console.log(`wrote ${o.json}`);
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
