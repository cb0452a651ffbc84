/**
 * Per-packet cost of packet protection (RFC 9001 §5.3, §5.4) with each backend (src/quic/crypto/backend.ts):
 * node:crypto and libsodium (sodium-native). CPU microseconds per 1,400-byte packet for AEAD seal and open and for a
 * header protection mask, printed side by side, medians of several rounds.
 *
 *   node dist/bench/crypto.js [--size BYTES] [--rounds N] [--json FILE]
 *
 * Rows: the stack's own calls (PacketAead.sealInPlace / openInPlace / open, HeaderProtector.maskAt, a whole
 * sealPacket and removeHeaderProtection + openInPlace), plus reference rows for what the stack does not use: a
 * node:crypto chacha20 cipher per header protection sample (what HeaderProtector did before) and libsodium's
 * crypto_stream_chacha20_ietf_xor_ic for the mask. AES suites run on node:crypto under both backends.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { loadSodium, setCryptoBackend, type BackendName } from '../src/quic/crypto/backend.js';
import { deriveKeys, type DirectionKeys } from '../src/quic/crypto/keys.js';
import { TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256, type CipherSuite } from '../src/quic/crypto/suites.js';
import { parseHeader, removeHeaderProtection, sealPacket, writeShortHeader } from '../src/quic/packet/header.js';
import { fmt, median, table } from './common.js';

interface Options {
  size: number;
  rounds: number;
  json: string | null;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { size: 1400, rounds: 7, json: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    const int = (flag: string, min: number, max: number): number => {
      if (v === undefined || !/^\d+$/.test(v) || Number(v) < min || Number(v) > max) usage(`${flag} takes a whole number ${min}-${max}`);
      i++;
      return Number(v);
    };
    if (a === '--size') o.size = int('--size', 64, 65_000);
    else if (a === '--rounds') o.rounds = int('--rounds', 1, 100);
    else if (a === '--json') {
      if (v === undefined) usage('--json takes a file name');
      o.json = v;
      i++;
    } else usage(`unknown argument '${a}'`);
  }
  return o;
}

function usage(msg: string): never {
  process.stderr.write(`bench/crypto: ${msg}\nusage: node dist/bench/crypto.js [--size BYTES] [--rounds N] [--json FILE]\n`);
  process.exit(2);
}

/** How many calls of fn take ~20 ms of CPU (after a warm-up that lets V8 optimize it). */
function calibrate(fn: (i: number) => void): number {
  for (let i = 0; i < 2000; i++) fn(i);
  let n = 1000;
  for (;;) {
    const t = process.cpuUsage();
    for (let i = 0; i < n; i++) fn(i);
    const d = process.cpuUsage(t);
    if (d.user + d.system > 20_000) return n;
    n *= 4;
  }
}

function cpuPerCall(fn: (i: number) => void, n: number): number {
  const t = process.cpuUsage();
  for (let i = 0; i < n; i++) fn(i);
  const d = process.cpuUsage(t);
  return (d.user + d.system) / n;
}

/**
 * CPU µs per call (user + system) of each function, measured in alternation (a, b, a, b, ...) so that the machine's
 * load affects them alike; the median of `rounds` measurements each.
 */
function measureAlternating(fns: ((i: number) => void)[], rounds: number): number[] {
  const ns = fns.map(calibrate);
  const per: number[][] = fns.map(() => []);
  for (let r = 0; r < rounds; r++) for (let k = 0; k < fns.length; k++) per[k]!.push(cpuPerCall(fns[k]!, ns[k]!));
  return per.map((xs) => median(xs)!);
}

const DCID = Buffer.from('0102030405060708', 'hex');

/** A short header packet of `size` bytes in total, sealed, plus the working copies the open rows need. */
function packetFor(keys: DirectionKeys, size: number): { plain: Buffer; pnOffset: number; headerEnd: number; sealed: Buffer } {
  const plain = Buffer.alloc(size);
  const h = writeShortHeader(plain, 0, DCID, 1234, 2, 0);
  randomBytes(size - h.headerEnd - 16).copy(plain, h.headerEnd);
  const sealed = Buffer.from(plain);
  sealPacket(sealed, 0, h.pnOffset, 2, size - 16, 1234, keys);
  return { plain, pnOffset: h.pnOffset, headerEnd: h.headerEnd, sealed };
}

type Row = { op: string; suite: string; node: number | null; sodium: number | null };
type Op = { name: string; fn: (i: number) => void; minus?: string };

/** The operations measured for one suite with the keys a backend builds; `minus` names an op to subtract (a copy). */
function opsFor(backend: BackendName, suite: CipherSuite, size: number): Op[] {
  setCryptoBackend(backend);
  const keys = deriveKeys(suite, randomBytes(32));
  const p = packetFor(keys, size);
  const work = Buffer.alloc(size);
  const end = size - 16;
  const sealedUnprotected = Buffer.from(p.plain);
  keys.aead.sealInPlace(1234, sealedUnprotected, 0, p.headerEnd, end);
  const aad = sealedUnprotected.subarray(0, p.headerEnd);
  const ct = sealedUnprotected.subarray(p.headerEnd);
  const sample = randomBytes(64);
  const samples = randomBytes(16 * 32);
  const fail = (): never => {
    throw new Error('open failed');
  };
  return [
    // Opening needs the real ciphertext each time: those rows restore it first and subtract the cost of the copy.
    { name: 'copy of the packet (subtracted below)', fn: () => p.sealed.copy(work) },
    { name: 'AEAD seal in place', fn: () => keys.aead.sealInPlace(1234, work, 0, p.headerEnd, end) },
    {
      name: 'AEAD open in place (receive path)',
      fn: () => {
        sealedUnprotected.copy(work);
        if (keys.aead.openInPlace(1234, work, 0, p.headerEnd, size) === null) fail();
      },
      minus: 'copy of the packet (subtracted below)',
    },
    { name: 'AEAD open to a new buffer', fn: () => keys.aead.open(1234, aad, ct) ?? fail() },
    { name: 'header protection mask', fn: (i) => keys.hp.maskAt(sample, i & 31) },
    { name: 'header protection masks, batch of 32 (per mask)', fn: () => keys.hp.masks(samples) },
    {
      name: 'whole packet: sealPacket',
      fn: () => {
        p.plain.copy(work);
        sealPacket(work, 0, p.pnOffset, 2, end, 1234, keys);
      },
      minus: 'copy of the packet (subtracted below)',
    },
    {
      name: 'whole packet: parse + remove HP + open in place',
      fn: () => {
        p.sealed.copy(work);
        const h = parseHeader(work, 0, 8);
        const u = removeHeaderProtection(work, h, keys.hp, 1233);
        if (keys.aead.openInPlace(u.pn, work, 0, u.headerEnd, h.end) === null) fail();
      },
      minus: 'copy of the packet (subtracted below)',
    },
  ];
}

function main(): void {
  const o = parseArgs(process.argv.slice(2));
  const sodium = loadSodium();
  const rows: Row[] = [];
  for (const suite of [TLS_AES_128_GCM_SHA256, TLS_CHACHA20_POLY1305_SHA256]) {
    const node = opsFor('node', suite, o.size);
    const sod = sodium.binding !== null ? opsFor('sodium', suite, o.size) : null;
    const got = new Map<string, { node: number; sodium: number | null }>();
    for (let k = 0; k < node.length; k++) {
      const fns = sod ? [node[k]!.fn, sod[k]!.fn] : [node[k]!.fn];
      const [a, b] = measureAlternating(fns, o.rounds);
      const minus = node[k]!.minus !== undefined ? got.get(node[k]!.minus!) : undefined;
      const v = { node: Math.max(0, a! - (minus?.node ?? 0)), sodium: b === undefined ? null : Math.max(0, b - (minus?.sodium ?? 0)) };
      got.set(node[k]!.name, v);
      if (node[k]!.name.endsWith('(per mask)')) {
        v.node /= 32;
        if (v.sodium !== null) v.sodium /= 32;
      }
      rows.push({ op: node[k]!.name, suite: suite.name, ...v });
    }
  }
  // Reference rows: ChaCha20 header protection done the ways the stack does not use.
  const key = randomBytes(32);
  const zeros = Buffer.alloc(5);
  const samples = Array.from({ length: 32 }, () => randomBytes(16));
  const refs: ((i: number) => void)[] = [(i) => createCipheriv('chacha20', key, samples[i & 31]!).update(zeros)];
  if (sodium.binding !== null) {
    const s = sodium.binding;
    const nonce = Buffer.alloc(12);
    const mask = Buffer.alloc(5);
    refs.push((i) => {
      const smp = samples[i & 31]!;
      for (let j = 0; j < 12; j++) nonce[j] = smp[4 + j]!;
      s.crypto_stream_chacha20_ietf_xor_ic(mask, zeros, nonce, smp.readUInt32LE(0), key);
    });
  }
  const [perSample, viaSodium] = measureAlternating(refs, o.rounds);
  rows.push({ op: 'ref: mask with a node:crypto chacha20 cipher per sample (before)', suite: 'TLS_CHACHA20_POLY1305_SHA256', node: perSample!, sodium: null });
  if (viaSodium !== undefined)
    rows.push({ op: 'ref: mask with libsodium crypto_stream_chacha20_ietf_xor_ic', suite: 'TLS_CHACHA20_POLY1305_SHA256', node: null, sodium: viaSodium });
  setCryptoBackend('auto');

  const say = (s: string): void => void process.stdout.write(s + '\n');
  say(`packet protection, CPU µs per ${o.size}-byte packet (median of ${o.rounds} rounds), node ${process.version}, ` +
    `sodium-native ${sodium.binding !== null ? (sodium.version ?? 'loaded') : `not loaded (${sodium.error})`}`);
  const t: string[][] = [['operation', 'suite', 'node:crypto', 'sodium', 'node/sodium']];
  for (const r of rows) {
    const ratio = r.node !== null && r.sodium !== null && r.sodium > 0 ? `${(r.node / r.sodium).toFixed(2)}x` : '';
    t.push([r.op, r.suite.replace(/^TLS_|_SHA\d+$/g, ''), fmt(r.node), fmt(r.sodium), ratio]);
  }
  say(table(t));
  if (o.json) writeFileSync(o.json, JSON.stringify({ size: o.size, rounds: o.rounds, node: process.version, sodium: sodium.version, rows }, null, 2) + '\n');
}

main();
