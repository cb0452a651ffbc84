/**
 * The floor under the router's receive cost: what node:dgram alone costs per received datagram on this machine, and
 * next to it what opening one packet costs (AEAD open in place and the header protection mask, the stack's own calls,
 * src/quic/crypto/keys.ts). Issue 10 asks for < 8 µs of router CPU per received packet; this says how much of that
 * the runtime takes before any of our code runs.
 *
 *   node dist/bench/dgram-floor.js [--seconds S] [--size BYTES] [--rate N] [--runs N] [--json FILE]
 *   node dist/bench/run.js --suite floor [--runs N]                      (the same, with the defaults)
 *
 * A sender process (this file, `sender` argument) blasts SIZE-byte datagrams (default 1,300) at a loopback socket
 * for S seconds (default 3), as fast as it can or at N datagrams a second (--rate), from a connected socket. The
 * receiver (this process) does nothing but count, in two ways, alternating run by run:
 *   - count:  a 'message' listener that increments a counter;
 *   - turn:   the driver's shape (src/io/udp.ts): each datagram pushed to an array, one setImmediate per event-loop
 *             turn that empties it (its datagrams per turn are printed too).
 * Receiver CPU is process.cpuUsage() (user + system) from the first datagram to the last, divided by the datagrams
 * received (the kernel drops what the receiver cannot take: the sender's count is printed beside it). The crypto rows
 * are CPU per call over ~20 ms loops, medians of the rounds, with the backend the stack picks (libsodium
 * ChaCha20-Poly1305 when sodium-native loads) and node:crypto AES-128-GCM for comparison. Loopback only; the sender
 * has a hard timeout and is ended by its own PID. A measurement tool, not a test.
 */
import { fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { loadSodium, setCryptoBackend } from '../src/quic/crypto/backend.js';
import { deriveKeys } from '../src/quic/crypto/keys.js';
import { TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256, type CipherSuite } from '../src/quic/crypto/suites.js';
import { writeShortHeader } from '../src/quic/packet/header.js';
import { fmt, median, table, type Say } from './common.js';

const HOST = '127.0.0.1';
const SELF = fileURLToPath(import.meta.url);

export interface FloorOptions {
  seconds: number;
  size: number;
  /** Datagrams a second the sender aims at; 0: as fast as it can. */
  rate: number;
  runs: number;
}

export const FLOOR_DEFAULTS: FloorOptions = { seconds: 3, size: 1300, rate: 0, runs: 3 };

type Mode = 'count' | 'turn';

interface RecvResult {
  mode: Mode;
  sent: number;
  received: number;
  usPerDatagram: number;
  perSecond: number;
  /** turn mode: datagrams per event-loop turn (mean). */
  perTurn: number | null;
}

export interface FloorReport {
  options: FloorOptions;
  runs: RecvResult[];
  dgramCountUs: number | null;
  dgramTurnUs: number | null;
  crypto: { op: string; suite: string; backend: string; us: number }[];
}

// ---------------------------------------------------------------------------------------------------------------- sender

function runSender(port: number, size: number, seconds: number, rate: number): void {
  const sock = createSocket('udp4');
  const buf = randomBytes(size);
  buf[0] = 0x40; // a short-header first byte, not that the receiver looks
  let sent = 0;
  sock.connect(port, HOST, () => {
    const t0 = performance.now();
    const end = t0 + seconds * 1000;
    const step = (): void => {
      const now = performance.now();
      if (now >= end) {
        // Let the last sends leave before reporting.
        setTimeout(() => {
          process.send?.({ sent });
          sock.close();
        }, 50);
        return;
      }
      // As fast as possible: 64 sends a turn; at a rate: catch up to where the schedule says we should be.
      const due = rate > 0 ? Math.min(256, Math.floor(((now - t0) / 1000) * rate) - sent) : 64;
      for (let i = 0; i < due; i++) sock.send(buf);
      sent += Math.max(0, due);
      setImmediate(step);
    };
    step();
  });
}

// -------------------------------------------------------------------------------------------------------------- receiver

async function receiveRun(o: FloorOptions, mode: Mode): Promise<RecvResult> {
  const sock = createSocket('udp4');
  await new Promise<void>((r) => sock.bind(0, HOST, () => r()));
  try {
    sock.setRecvBufferSize(8 * 1024 * 1024);
  } catch {
    // the kernel's default then
  }
  let received = 0;
  let first: NodeJS.CpuUsage | null = null;
  let last: NodeJS.CpuUsage | null = null;
  let turns = 0;
  /** Datagrams received up to the `last` snapshot (count mode takes one every 64 datagrams). */
  let counted = 0;
  let queue: Buffer[] = [];
  let scheduled = false;
  const flush = (): void => {
    scheduled = false;
    turns++;
    received += queue.length;
    queue = [];
    last = process.cpuUsage();
    counted = received;
  };
  if (mode === 'count') {
    sock.on('message', () => {
      if (received++ === 0) first = process.cpuUsage();
      else if ((received & 63) === 0) {
        last = process.cpuUsage();
        counted = received;
      }
    });
  } else {
    sock.on('message', (msg: Buffer) => {
      if (first === null) first = process.cpuUsage();
      queue.push(msg);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    });
  }
  const port = sock.address().port;
  const child = fork(SELF, ['sender', String(port), String(o.size), String(o.seconds), String(o.rate)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const hardLimit = setTimeout(() => child.kill('SIGKILL'), (o.seconds + 10) * 1000);
  const sent = await new Promise<number>((resolve) => {
    let n = 0;
    child.on('message', (m: { sent?: number }) => (n = m.sent ?? n));
    child.on('exit', () => resolve(n));
  });
  clearTimeout(hardLimit);
  // What is still in the socket queue arrives now; then the last CPU snapshot.
  await new Promise((r) => setTimeout(r, 200));
  sock.close();
  const a = first as NodeJS.CpuUsage | null;
  const b = last as NodeJS.CpuUsage | null;
  const cpu = a !== null && b !== null ? b.user - a.user + (b.system - a.system) : 0;
  return {
    mode,
    sent,
    received,
    usPerDatagram: counted > 1 ? cpu / (counted - 1) : NaN,
    perSecond: received / o.seconds,
    perTurn: mode === 'turn' && turns > 0 ? received / turns : null,
  };
}

// ---------------------------------------------------------------------------------------------------------------- crypto

function cpuPerCall(fn: () => void, n: number): number {
  const t = process.cpuUsage();
  for (let i = 0; i < n; i++) fn();
  const d = process.cpuUsage(t);
  return (d.user + d.system) / n;
}

function calibrate(fn: () => void): number {
  for (let i = 0; i < 2000; i++) fn();
  for (let n = 1000; ; n *= 4) {
    const t = process.cpuUsage();
    for (let i = 0; i < n; i++) fn();
    const d = process.cpuUsage(t);
    if (d.user + d.system > 20_000) return n;
  }
}

/** Open in place (minus the copy that restores the ciphertext) and one header protection mask, CPU µs per call. */
function cryptoCosts(suite: CipherSuite, size: number, rounds: number): { open: number; mask: number } {
  const keys = deriveKeys(suite, randomBytes(32));
  const plain = Buffer.alloc(size);
  const h = writeShortHeader(plain, 0, randomBytes(8), 7, 2, 0);
  randomBytes(size - h.headerEnd - 16).copy(plain, h.headerEnd);
  const sealed = Buffer.from(plain);
  keys.aead.sealInPlace(7, sealed, 0, h.headerEnd, size - 16);
  const work = Buffer.alloc(size);
  const copy = (): void => void sealed.copy(work);
  const open = (): void => {
    sealed.copy(work);
    if (keys.aead.openInPlace(7, work, 0, h.headerEnd, size) === null) throw new Error('open failed');
  };
  const sample = randomBytes(64);
  let i = 0;
  const mask = (): void => void keys.hp.maskAt(sample, i++ & 31);
  const fns = [copy, open, mask];
  const ns = fns.map(calibrate);
  const per: number[][] = fns.map(() => []);
  for (let r = 0; r < rounds; r++) for (let k = 0; k < fns.length; k++) per[k]!.push(cpuPerCall(fns[k]!, ns[k]!));
  const [c, op, m] = per.map((xs) => median(xs)!);
  return { open: Math.max(0, op! - c!), mask: m! };
}

// ------------------------------------------------------------------------------------------------------------------ main

export async function runFloorSuite(o: FloorOptions, say: Say): Promise<FloorReport> {
  say(`# node:dgram floor: ${o.size}-byte datagrams on loopback, sender ${o.rate > 0 ? `at ${o.rate}/s` : 'as fast as it can'}, ${o.seconds} s per run, runs ${o.runs} per mode (alternating)`);
  const runs: RecvResult[] = [];
  for (let r = 0; r < o.runs; r++) {
    for (const mode of r % 2 === 0 ? (['count', 'turn'] as const) : (['turn', 'count'] as const)) {
      const res = await receiveRun(o, mode);
      runs.push(res);
      say(`  ${mode.padEnd(5)}: sent ${res.sent}, received ${res.received} (${fmt(res.perSecond / 1000, 1)}k/s)${res.perTurn !== null ? `, ${fmt(res.perTurn, 1)} per turn` : ''}: receiver ${fmt(res.usPerDatagram, 2)} µs per datagram`);
    }
  }
  const dgramCountUs = median(runs.filter((r) => r.mode === 'count').map((r) => r.usPerDatagram));
  const dgramTurnUs = median(runs.filter((r) => r.mode === 'turn').map((r) => r.usPerDatagram));

  const sodium = loadSodium();
  const crypto: FloorReport['crypto'] = [];
  const cases: [CipherSuite, 'sodium' | 'node'][] = [[TLS_CHACHA20_POLY1305_SHA256, sodium.binding !== null ? 'sodium' : 'node'], [TLS_AES_128_GCM_SHA256, 'node']];
  if (sodium.binding !== null) cases.push([TLS_CHACHA20_POLY1305_SHA256, 'node']);
  for (const [suite, backend] of cases) {
    setCryptoBackend(backend);
    const c = cryptoCosts(suite, o.size, 7);
    const name = suite.name.replace(/^TLS_|_SHA\d+$/g, '');
    crypto.push({ op: 'AEAD open in place', suite: name, backend, us: c.open }, { op: 'header protection mask', suite: name, backend, us: c.mask });
  }
  setCryptoBackend('auto');

  const t: string[][] = [['receiver work per datagram', 'CPU µs']];
  t.push(['node:dgram, count only (median)', fmt(dgramCountUs)]);
  t.push(['node:dgram, queued + one setImmediate per turn (median)', fmt(dgramTurnUs)]);
  for (const c of crypto) t.push([`${c.op}, ${c.suite} (${c.backend === 'sodium' ? 'libsodium' : 'node:crypto'})`, fmt(c.us)]);
  const chosen = crypto.slice(0, 2);
  if (dgramTurnUs !== null) t.push([`floor: turn + ${chosen[0]!.suite} open + mask (${chosen[0]!.backend})`, fmt(dgramTurnUs + chosen[0]!.us + chosen[1]!.us)]);
  say(table(t));
  say('  (goal of issue 10: < 8 µs of router CPU per received packet, everything included)');
  return { options: o, runs, dgramCountUs, dgramTurnUs, crypto };
}

function parseArgs(argv: string[]): FloorOptions & { json: string | null } {
  const o = { ...FLOOR_DEFAULTS, json: null as string | null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const v = argv[i + 1];
    const num = (lo: number, hi: number): number => {
      const n = Number(v);
      if (v === undefined || !Number.isFinite(n) || n < lo || n > hi) usage(`${a} takes a number from ${lo} to ${hi}`);
      i++;
      return n;
    };
    if (a === '--seconds') o.seconds = num(0.5, 60);
    else if (a === '--size') o.size = Math.floor(num(64, 65_000));
    else if (a === '--rate') o.rate = Math.floor(num(0, 10_000_000));
    else if (a === '--runs') o.runs = Math.floor(num(1, 50));
    else if (a === '--json') {
      if (v === undefined) usage('--json takes a file name');
      o.json = v;
      i++;
    } else usage(`unknown argument '${a}'`);
  }
  return o;
}

function usage(msg: string): never {
  process.stderr.write(`bench/dgram-floor: ${msg}\nusage: node dist/bench/dgram-floor.js [--seconds S] [--size BYTES] [--rate N] [--runs N] [--json FILE]\n`);
  process.exit(2);
}

if (process.argv[1] === SELF) {
  if (process.argv[2] === 'sender') {
    const [port, size, seconds, rate] = process.argv.slice(3).map(Number);
    runSender(port!, size!, seconds!, rate!);
  } else {
    const o = parseArgs(process.argv.slice(2));
    runFloorSuite(o, (s) => console.log(s))
      .then((r) => {
        if (o.json !== null) writeFileSync(o.json, JSON.stringify(r, null, 2) + '\n');
      })
      .catch((e: unknown) => {
        process.stderr.write(`bench/dgram-floor: ${e instanceof Error ? e.message : String(e)}\n`);
        process.exit(1);
      });
  }
}
