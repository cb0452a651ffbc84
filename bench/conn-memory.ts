/**
 * Memory per idle connection on a server endpoint, and whether it comes back when the connections close.
 *
 *   node dist/bench/conn-memory.js [--count 1000] [--layer quic|h3] [--settle-ms 15000] [--snapshot FILE]
 *                              [--snapshot-base FILE] [--snapshot-closed FILE]
 *
 * This process is the server (one UdpEndpoint on 127.0.0.1; --layer h3: an Http3Server, so every connection also
 * has its HTTP/3 session, control and QPACK streams). A child process (this file with `clients`) opens --count
 * connections to it over loopback (one client endpoint, 32 handshakes at a time, certificate verified against the
 * test CA), keeps them idle, and on request closes them all. A first round of up to 50 connections warms the code
 * paths; then two rounds of --count each. The server measures, each time after full garbage collections: the
 * baseline after the warm-up round; with half and with all of a round's connections idle (perConnectionKB is the
 * difference over the second half: the cost of one more connection; averageKB is all over the baseline, which also
 * holds what grows once under load, such as V8's young generation); and after they closed and their closing and
 * draining periods ended (notReturnedKB, over the baseline), with the sizes of the endpoint's and driver's
 * per-connection tables (closing: connections in their closing/draining period, held as closing records). --snapshot writes a V8 heap snapshot while the first round is idle (--snapshot-base: at the baseline,
 * --snapshot-closed: after the second round closed; compare the two for what closed connections leave). Each measurement waits
 * --settle-ms first: right after a burst of handshakes V8's heap is fragmented by promoted handshake garbage, and
 * its memory reducer compacts it once allocation has been quiet for several seconds (an idle server's steady state).
 *
 * RSS is what the kernel counts (V8's heap plus Buffers, OpenSSL objects and allocator slack); heapUsed and external
 * (including arrayBuffers) are what the program holds. A measurement tool, not a test: it asserts nothing, but it
 * stops with a message when connections fail and after a hard time limit.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { getHeapStatistics, setFlagsFromString, writeHeapSnapshot } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { UdpEndpoint, type QuicConnection } from '../src/io/udp.js';
import { Http3Server } from '../src/h3/server.js';
import { Http3Session } from '../src/h3/session.js';
import type { ConnectionConfig } from '../src/quic/connection-types.js';
import { loadPemChain, loadPrivateKey } from '../src/quic/tls/pem.js';

const CERTS = fileURLToPath(new URL('../../test/fixtures/certs/', import.meta.url));
const HOST = '127.0.0.1';
const IDLE_TIMEOUT = 600_000;
const HARD_LIMIT_MS = 480_000;
const PARALLEL = 32;

type Layer = 'quic' | 'h3';

function usage(msg: string): never {
  process.stderr.write(`conn-memory: ${msg}\n`);
  process.exit(2);
}

function intArg(args: string[], flag: string, dflt: number, min: number): number {
  const i = args.indexOf(flag);
  if (i < 0) return dflt;
  const x = Number(args[i + 1]);
  if (!Number.isInteger(x) || x < min) usage(`${flag} needs an integer >= ${min}, got ${args[i + 1] ?? 'nothing'}`);
  return x;
}

function layerArg(args: string[]): Layer {
  const i = args.indexOf('--layer');
  if (i < 0) return 'quic';
  const v = args[i + 1];
  if (v !== 'quic' && v !== 'h3') usage(`--layer must be quic or h3, got ${v ?? 'nothing'}`);
  return v;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

setFlagsFromString('--expose-gc');
const gcFn = runInNewContext('gc') as (o?: object) => void;
/**
 * Full collections (gc()); QSR_GC=compact uses V8's "last resort" flavour instead, which also compacts but flushes
 * compiled code, so the baselines move with it.
 */
const gc = (): void => (process.env.QSR_GC === 'compact' ? gcFn({ type: 'major', execution: 'sync', flavor: 'last-resort' }) : gcFn());

interface Mem {
  rss: number;
  heapTotal: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  /** V8's heap pages resident in RAM (getHeapStatistics().total_physical_size). */
  v8Physical: number;
  /** RSS of the brk heap ([heap] in smaps: the main thread's glibc malloc arena). */
  rssBrk: number;
  /** RSS of anonymous mappings other than [heap] and [stack] (V8's pages, other malloc arenas, large mallocs). */
  rssAnon: number;
  /** rssAnon + rssBrk - v8Physical: resident memory that is not V8's heap (malloc: OpenSSL, Buffers, V8's zones). */
  rssNotV8: number;
}

/** RSS by kind of mapping, from /proc/self/smaps (Linux; zeros elsewhere). */
function rssByMapping(): { brk: number; anon: number } {
  let text: string;
  try {
    text = readFileSync('/proc/self/smaps', 'utf8');
  } catch {
    return { brk: 0, anon: 0 };
  }
  let brk = 0;
  let anon = 0;
  let kind: 'brk' | 'anon' | 'other' = 'other';
  for (const line of text.split('\n')) {
    if (/^[0-9a-f]+-[0-9a-f]+ /.test(line)) {
      const name = line.split(/\s+/)[5] ?? '';
      kind = name === '[heap]' ? 'brk' : name === '' ? 'anon' : 'other';
    } else if (line.startsWith('Rss:')) {
      const kb = Number(line.slice(4).trim().split(' ')[0]) * 1024;
      if (kind === 'brk') brk += kb;
      else if (kind === 'anon') anon += kb;
    }
  }
  return { brk, anon };
}

async function measure(): Promise<Mem> {
  for (let i = 0; i < 3; i++) {
    gc();
    await sleep(50);
  }
  const m = process.memoryUsage();
  const v8Physical = getHeapStatistics().total_physical_size;
  const r = rssByMapping();
  return {
    rss: m.rss, heapTotal: m.heapTotal, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers,
    v8Physical, rssBrk: r.brk, rssAnon: r.anon, rssNotV8: r.brk + r.anon - v8Physical,
  };
}

function delta(a: Mem, b: Mem, per = 1): Record<keyof Mem, number> {
  const kb = (x: number): number => Math.round(x / per / 102.4) / 10;
  const out = {} as Record<keyof Mem, number>;
  for (const k of Object.keys(a) as (keyof Mem)[]) out[k] = kb(b[k] - a[k]);
  return out;
}

/** Sizes of the per-connection tables of the endpoint and the driver (private fields, read for this report only). */
function tables(ep: UdpEndpoint): Record<string, number> {
  const e = ep.endpoint as unknown as Record<string, { size?: number; length?: number }>;
  const cids = ep.endpoint.cids;
  const d = ep as unknown as Record<string, { size?: number }>;
  const size = (x: { size?: number; length?: number } | undefined): number => x?.size ?? x?.length ?? -1;
  const states: Record<string, number> = {};
  let latest = 0;
  for (const c of ep.endpoint.connections) {
    states[c.state] = (states[c.state] ?? 0) + 1;
    latest = Math.max(latest, (c.nextTimeout() ?? 0) - ep.clock.now());
  }
  if (latest > 0) states.latestDeadlineMs = Math.round(latest);
  return {
    ...states,
    connections: ep.endpoint.connections.size,
    closing: ep.endpoint.closingCount,
    cids: cids.size,
    parkedCids: cids.parkedSize,
    active: size(e.active),
    timers: size(e.timers),
    touched: ep.endpoint.touched.size,
    handles: size(d.handles),
    pendingDispatch: size(d.pendingDispatch),
  };
}

async function server(args: string[]): Promise<void> {
  const count = intArg(args, '--count', 1000, 1);
  const settle = intArg(args, '--settle-ms', 15000, 0);
  const layer = layerArg(args);
  const si = args.indexOf('--snapshot');
  const snapshot = si >= 0 ? args[si + 1] : null;
  if (si >= 0 && !snapshot) usage('--snapshot needs a file name');
  const fileArg = (flag: string): string | null => {
    const i = args.indexOf(flag);
    if (i < 0) return null;
    const f = args[i + 1];
    if (!f || f.startsWith('--')) usage(`${flag} needs a file name`);
    return f;
  };
  const snapshotBase = fileArg('--snapshot-base');
  const snapshotClosed = fileArg('--snapshot-closed');
  const certChain = loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8'));
  const privateKey = loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8'));
  const quic: Partial<ConnectionConfig> = { maxIdleTimeout: IDLE_TIMEOUT };
  let ep: UdpEndpoint;
  let h3: Http3Server | null = null;
  const sessions = () => (h3 ? ((h3 as unknown as { sessions: Set<unknown> }).sessions.size) : 0);
  if (layer === 'h3') {
    h3 = await Http3Server.listen({ listen: [{ address: HOST, port: 0 }], certChain, privateKey, quic });
    ep = h3.endpoint;
  } else {
    ep = await UdpEndpoint.open({
      bind: [{ address: HOST, port: 0 }],
      server: { alpn: ['qsr-bench'], certChain, privateKey, ...quic },
      maxConnections: count + 100,
    });
  }
  let accepted = 0;
  ep.on('connection', (c: QuicConnection) => {
    accepted++;
    c.on('error', () => {});
  });
  const port = ep.address().port;
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), 'clients', '--port', String(port), '--layer', layer], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const hard = setTimeout(() => {
    process.stderr.write('conn-memory: hard time limit reached\n');
    if (child.exitCode === null) child.kill('SIGKILL');
    process.exit(1);
  }, HARD_LIMIT_MS);
  const fromChild = (type: string): Promise<Record<string, unknown>> =>
    new Promise((resolve, reject) => {
      const onMsg = (m: Record<string, unknown>): void => {
        if (m.type !== type) return;
        child.off('message', onMsg);
        child.off('exit', onExit);
        resolve(m);
      };
      const onExit = (code: number | null): void => reject(new Error(`client process exited (code ${code}) before '${type}'`));
      child.on('message', onMsg);
      child.once('exit', onExit);
    });
  /** One round: n connections opened and kept idle, measured, closed, waited for. */
  const round = async (n: number, snapshotFile: string | null) => {
    const t0 = performance.now();
    const half = n >> 1;
    let half1: Mem | null = null;
    for (const k of half > 0 ? [half, n - half] : [n]) {
      child.send({ type: 'open', count: k });
      const ready = await fromChild('ready');
      if (ready.failed) throw new Error(`${String(ready.failed)} connections failed: ${String(ready.error)}`);
      while (ep.endpoint.connections.size < (half1 || half === 0 ? n : half)) await sleep(20);
      if (!half1 && half > 0) {
        await sleep(settle);
        half1 = await measure();
      }
    }
    const openMs = performance.now() - t0;
    await sleep(settle);
    const open = await measure();
    const openTables = { ...tables(ep), ...(h3 && { sessions: sessions() }) };
    if (snapshotFile) writeHeapSnapshot(snapshotFile);
    child.send({ type: 'close' });
    await fromChild('closed');
    // Closing and draining last three PTOs (RFC 9000 §10.2): under a second on an idle loopback, but the RTT estimate
    // of a connection whose handshake queued behind hundreds of others on a busy machine can make it many seconds.
    const t1 = performance.now();
    while ((ep.endpoint.connections.size > 0 || ep.endpoint.closingCount > 0) && performance.now() - t1 < 60_000) await sleep(50);
    await sleep(settle);
    const closed = await measure();
    const closedTables = { ...tables(ep), ...(h3 && { sessions: sessions() }) };
    return { openMs: Math.round(openMs), half: half1 ?? open, halfCount: half > 0 ? n - half : n, open, openTables, closed, closedTables };
  };
  // A first small round compiles and warms every code path, so that the baseline holds the code and what the
  // first connections leave (JIT code, inline caches, pools) and the rounds after it measure connections only.
  await round(Math.min(50, count), null);
  const base = await measure();
  if (snapshotBase) writeHeapSnapshot(snapshotBase);
  const first = await round(count, snapshot);
  const second = await round(count, null);
  if (snapshotClosed) {
    gc();
    writeHeapSnapshot(snapshotClosed);
  }
  child.send({ type: 'exit' });
  await new Promise((r) => child.once('exit', r));
  clearTimeout(hard);
  const result = {
    layer,
    count,
    accepted,
    openMs: first.openMs,
    baselineMB: { rss: +(base.rss / 1e6).toFixed(1), heapUsed: +(base.heapUsed / 1e6).toFixed(1) },
    /** (all open - half open) / the connections of the second half: the cost of one more connection. */
    perConnectionKB: delta(first.half, first.open, first.halfCount),
    /** (all open - baseline) / count: includes what grows once with load, e.g. V8's young generation. */
    averageKB: delta(base, first.open, count),
    notReturnedKB: delta(base, first.closed),
    secondRound: {
      perConnectionKB: delta(second.half, second.open, second.halfCount),
      averageKB: delta(base, second.open, count),
      notReturnedKB: delta(base, second.closed),
    },
    openTables: first.openTables,
    closedTables: first.closedTables,
    closedTablesSecondRound: second.closedTables,
  };
  process.stdout.write(JSON.stringify(result) + '\n');
  if (h3) await h3.close({ drainMs: 100 });
  else await ep.close(0, '', 200);
}

async function clients(args: string[]): Promise<void> {
  const port = intArg(args, '--port', 0, 1);
  const layer = layerArg(args);
  const ep = await UdpEndpoint.open({ bind: [{ address: HOST, port: 0 }] });
  ep.on('error', () => {});
  const cfg: ConnectionConfig = {
    alpn: [layer === 'h3' ? 'h3' : 'qsr-bench'],
    serverName: 'localhost',
    ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')),
    maxIdleTimeout: IDLE_TIMEOUT,
  };
  let conns: QuicConnection[] = [];
  const open = async (count: number): Promise<void> => {
    let failed = 0;
    let error = '';
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < count) {
        next++;
        const c = ep.connect(cfg, { address: HOST, port });
        if (layer === 'h3') new Http3Session(c, 'client');
        try {
          await c.ready;
          conns.push(c);
        } catch (e) {
          failed++;
          error = (e as Error).message;
        }
      }
    };
    await Promise.all(Array.from({ length: PARALLEL }, worker));
    process.send!({ type: 'ready', count: conns.length, failed, error });
  };
  const close = async (): Promise<void> => {
    // In batches: a burst of hundreds of CONNECTION_CLOSE datagrams overflows the server's socket buffer, and a
    // connection whose close is lost waits for its idle timeout.
    for (let i = 0; i < conns.length; i++) {
      conns[i].close(0, 'done');
      if (i % PARALLEL === PARALLEL - 1) await sleep(5);
    }
    conns = [];
    await sleep(200);
    process.send!({ type: 'closed' });
  };
  process.on('message', (m: { type: string; count?: number }) => {
    if (m.type === 'open') void open(m.count ?? 1);
    else if (m.type === 'close') void close();
    else if (m.type === 'exit') void ep.close(0, '', 200).then(() => process.disconnect());
  });
}

const mode = process.argv[2] === 'clients' ? clients : server;
mode(process.argv.slice(process.argv[2] === 'clients' ? 3 : 2)).catch((e: unknown) => {
  process.stderr.write(`conn-memory: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
