// Interop matrix against real peers: ngtcp2's gtlsclient/gtlsserver (GnuTLS) and tshark (decryption check).
//
// `npm run interop` (node dist/test/interop/run.js [--only a,b] [--out DIR] [--list]).
// Cases x peers; each result is pass/fail/skip with a reason. A missing peer program is a skip, except when CI=true,
// where it is a failure. A case whose OUR side is not built yet (ours.ts returns null) is a failure ("not implemented").
// Prints a matrix and writes <out>/results.json (default interop-results/). Exit code 1 if anything failed.
//
// Columns: "gtlsclient->ours" (our server), "ours->gtlsserver" (our client), "gtlsclient->gtlsserver" (selfcheck of the
// harness itself). Rows: handshake, chacha20, keyupdate (QUIC level: `qsr quic-listen` / `quic-connect`), http3,
// upload, transferloss (HTTP/3: `qsr serve`, `qsr get`, h3-upload-server.ts; bytes checked end to end, see the
// HTTP/3 section below), decrypt/<case> (tshark decrypts the capture with OUR key log, zero undecrypted packets; for
// the HTTP/3 cases also HEADERS on every request stream and DATA on at least one), selfcheck[-chacha20|-keyupdate].

import { createHash, randomBytes, randomInt } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  H3_NO_ERROR,
  makeWorkDir,
  missingPrograms,
  freeUdpPort,
  startGtlsServer,
  runGtlsClient,
  startGtlsClient,
  parseGtlsClientOutput,
  spawnBounded,
  sleep,
  waitFor,
  udpPortBound,
  parseGtlsServerLog,
  findProgram,
  type Child,
  type GtlsClientOptions,
} from './peers.js';
import { startCapture, decryptReport, injectSecrets, formatReport, h3FrameName, type Capture, type DecryptReport } from './capture.js';
import {
  ourServerCommand,
  ourClientCommand,
  ourServeCommand,
  ourGetCommand,
  ourUploadServerCommand,
  parseOurEvents,
  parseGetJson,
  sawPeerControlStream,
  fakeOurs,
  type OurCommand,
  type OurEvent,
} from './ours.js';

export type Status = 'pass' | 'fail' | 'skip';
export const PEER_OUR_SERVER = 'gtlsclient->ours';
export const PEER_OUR_CLIENT = 'ours->gtlsserver';
export const PEER_SELF = 'gtlsclient->gtlsserver';

export interface Outcome {
  status: Status;
  reason: string;
  details?: Record<string, unknown>;
}

export interface CaseResult extends Outcome {
  case: string;
  peer: string;
  durationMs: number;
  workDir?: string;
}

export interface RunContext {
  /** CI=true: a missing peer is a failure. */
  ci: boolean;
  /** Root of this run's work directories (under os.tmpdir()). */
  workRoot: string;
  /** Directory holding ca.pem, ecdsa.pem, ecdsa.key. */
  certDir: string;
}

/** One runnable entry; one run may yield several result rows (e.g. a case and its decrypt check). */
interface CaseDef {
  names: string[];
  peer: string;
  /** An HTTP/3 case: needs the real qsr serve/get (left out under QSR_INTEROP_FAKE_OURS). */
  http3?: boolean;
  run(ctx: RunContext, workDir: string): Promise<Outcome[]>;
}

const here = dirname(fileURLToPath(import.meta.url));

/** Locate test/fixtures/certs from src (test/interop) or compiled (dist/test/interop) location. */
export function defaultCertDir(): string {
  for (const c of [join(here, '../fixtures/certs'), join(here, '../../../test/fixtures/certs')]) {
    if (existsSync(join(c, 'ecdsa.pem'))) return resolve(c);
  }
  throw new Error('test/fixtures/certs not found');
}

const pass = (reason: string, details?: Record<string, unknown>): Outcome => ({ status: 'pass', reason, details });
const fail = (reason: string, details?: Record<string, unknown>): Outcome => ({ status: 'fail', reason, details });

/** Skip for a missing program, or fail when running in CI. */
function missingOutcome(ctx: RunContext, hint: string): Outcome {
  return ctx.ci ? fail(`${hint} (CI=true: missing peers are failures)`) : { status: 'skip', reason: hint };
}

function decryptOutcome(r: DecryptReport, opts: { keyPhase1?: boolean } = {}): Outcome {
  const details = { report: formatReport(r) };
  if (r.quicPackets === 0) return fail('no QUIC packets captured', details);
  if (r.undecrypted > 0) return fail(`${r.undecrypted} of ${r.quicPackets} QUIC packets not decrypted`, details);
  if (opts.keyPhase1 === true && r.keyPhase1Packets === 0) return fail('no packet with key phase 1 in the capture', details);
  return pass(`${r.quicPackets} QUIC packets, all decrypted`, details);
}

/** Captures `udp port P` if tshark exists; returns null (and the skip/fail outcome) otherwise. */
async function maybeCapture(ctx: RunContext, workDir: string, port: number): Promise<{ cap: Capture | null; missing?: Outcome }> {
  const m = missingPrograms(['tshark']);
  if (m.missing.length > 0) return { cap: null, missing: missingOutcome(ctx, m.hint) };
  return { cap: await startCapture({ workDir, port }) };
}

async function decryptWith(cap: Capture | null, missing: Outcome | undefined, keylog: string, workDir: string, keyPhase1 = false): Promise<Outcome> {
  if (cap === null) return missing ?? fail('no capture');
  if (!existsSync(keylog)) return fail(`key log ${keylog} was not written`);
  return decryptOutcome(await decryptReport(cap.pcap, keylog, workDir), { keyPhase1 });
}

// ---------------------------------------------------------------------------------------------------------------------
// Cases: gtlsclient -> our server

interface Variant {
  name: 'handshake' | 'chacha20' | 'keyupdate';
  ciphers?: string[];
  keyUpdate?: boolean;
}

const CHACHA = 'TLS_CHACHA20_POLY1305_SHA256';

async function ourServerCase(ctx: RunContext, workDir: string, v: Variant): Promise<Outcome[]> {
  const port = await freeUdpPort('127.0.0.1');
  const keylog = join(workDir, 'ours.keylog');
  const cmd = ourServerCommand({
    addr: '127.0.0.1',
    port,
    certFile: join(ctx.certDir, 'ecdsa.pem'),
    keyFile: join(ctx.certDir, 'ecdsa.key'),
    alpn: ['h3'],
    ciphers: v.ciphers,
    keylogFile: keylog,
    workDir,
  });
  if (cmd === null) {
    const o = fail('not implemented: our QUIC server not built yet (test/interop/ours.ts)');
    return [o, o];
  }
  const m = missingPrograms(['gtlsclient']);
  if (m.missing.length > 0) {
    const o = missingOutcome(ctx, m.hint);
    return [o, o];
  }
  const { cap, missing } = await maybeCapture(ctx, workDir, port);
  let server: Child | null = null;
  let client: Child | null = null;
  try {
    server = spawnBounded({ name: 'ours-server', cmd: cmd.cmd, args: cmd.args, env: cmd.env, workDir, timeoutMs: 30_000 });
    const srv = server;
    const up = await waitFor(
      () => !srv.isRunning() || udpPortBound(port) || parseOurEvents(srv.stdout()).some((e) => e.event === 'listening'),
      5000,
    );
    if (!up || !srv.isRunning()) return twice(fail(`our server did not start: ${srv.output().slice(-800)}`));

    const url = `https://127.0.0.1:${port}/index.html`;
    const copts: GtlsClientOptions = {
      workDir,
      host: '127.0.0.1',
      port,
      urls: [url],
      keylogFile: join(workDir, 'gtlsclient.keylog'),
      ciphers: v.ciphers,
      idleTimeout: '3s',
      timeoutMs: 15_000,
    };
    if (v.keyUpdate === true) {
      copts.keyUpdate = '100ms';
      copts.delayStream = '400ms'; // the request goes out under the updated keys
    }
    client = startGtlsClient(copts);
    const cl = client;
    // Stop waiting as soon as our server has seen what the case needs (it cannot answer HTTP/3 yet).
    const enough = (ev: OurEvent[]): boolean => {
      if (!sawPeerControlStream(ev, true)) return false;
      if (v.keyUpdate !== true) return true;
      const ku = ev.findIndex((e) => e.event === 'key_update');
      return ku >= 0 && ev.slice(ku + 1).some((e) => e.event === 'peer_stream_data' && e.streamId === 0);
    };
    await waitFor(() => !cl.isRunning() || enough(parseOurEvents(srv.stdout())), 12_000);
    await sleep(200);
    await client.stop('SIGTERM', 2000);
    await server.stop('SIGTERM', 2000);
    if (cap !== null) await cap.stop();

    const res = parseGtlsClientOutput(client.output());
    const events = parseOurEvents(server.stdout());
    const details = {
      gtlsclient: { alpn: res.alpn, cipher: res.cipher, handshake: res.handshakeCompleted, keyUpdates: res.keyUpdatesInitiated, errors: res.errors },
      ours: events,
    };
    const hs = events.find((e) => e.event === 'handshake') as { alpn?: string; cipher?: string } | undefined;
    let main: Outcome;
    if (!res.handshakeCompleted) main = fail('gtlsclient: handshake did not complete', details);
    else if (res.alpn !== 'h3') main = fail(`gtlsclient: negotiated ALPN ${res.alpn ?? '(none)'}`, details);
    else if (hs === undefined) main = fail('our server printed no handshake event', details);
    else if (hs.alpn !== 'h3') main = fail(`our server: ALPN ${hs.alpn ?? '(none)'}`, details);
    else if (v.ciphers !== undefined && (res.suite !== v.ciphers[0] || hs.cipher !== v.ciphers[0])) {
      main = fail(`cipher: gtlsclient ${res.suite ?? res.cipher}, ours ${hs.cipher}`, details);
    } else if (!sawPeerControlStream(events, true)) main = fail("our server did not report the peer's control stream data", details);
    else if (v.keyUpdate === true && res.keyUpdatesInitiated === 0) main = fail('gtlsclient did not initiate a key update', details);
    else if (v.keyUpdate === true && !enough(events)) main = fail('no key_update event followed by request stream data on our server', details);
    else if (events.some((e) => e.event === 'error')) main = fail('our server reported an error', details);
    else if (res.errors.length > 0) main = fail(`gtlsclient errors: ${res.errors.slice(0, 3).join(' | ')}`, details);
    else main = pass(`handshake ${res.cipher}/h3, peer control stream seen${v.keyUpdate === true ? ', key update ok' : ''}`, details);

    const dec = await decryptWith(cap, missing, keylog, workDir, v.keyUpdate === true);
    return [main, dec];
  } finally {
    await client?.stop('SIGKILL', 1000);
    await server?.stop('SIGKILL', 1000);
    await cap?.stop();
  }
}

function twice(o: Outcome): Outcome[] {
  return [o, o];
}

// ---------------------------------------------------------------------------------------------------------------------
// Cases: our client -> gtlsserver

/** gtlsserver on 127.0.0.1:port serving docroot with the test ECDSA certificate; its key log in workDir by default. */
function gtlsServerFor(ctx: RunContext, workDir: string, port: number, docroot: string, timeoutMs: number, keylogFile = join(workDir, 'gtlsserver.keylog')): Promise<Child> {
  return startGtlsServer({ workDir, addr: '127.0.0.1', port, docroot, key: join(ctx.certDir, 'ecdsa.key'), cert: join(ctx.certDir, 'ecdsa.pem'), keylogFile, timeoutMs });
}

async function ourClientCase(ctx: RunContext, workDir: string, v: Variant): Promise<Outcome[]> {
  const port = await freeUdpPort('127.0.0.1');
  const keylog = join(workDir, 'ours.keylog');
  const docroot = join(workDir, 'htdocs');
  mkdirSync(docroot, { recursive: true });
  writeFileSync(join(docroot, 'index.html'), '<html><body>interop</body></html>\n');
  const cmd = ourClientCommand({
    host: '127.0.0.1',
    port,
    serverName: 'localhost',
    urls: [`https://127.0.0.1:${port}/index.html`],
    alpn: ['h3'],
    ciphers: v.ciphers,
    caFile: join(ctx.certDir, 'ca.pem'),
    keylogFile: keylog,
    workDir,
  });
  if (cmd === null) return twice(fail('not implemented: our QUIC client not built yet (test/interop/ours.ts)'));
  const m = missingPrograms(['gtlsserver']);
  if (m.missing.length > 0) return twice(missingOutcome(ctx, m.hint));
  const { cap, missing } = await maybeCapture(ctx, workDir, port);
  let server: Child | null = null;
  let client: Child | null = null;
  try {
    server = await gtlsServerFor(ctx, workDir, port, docroot, 30_000);
    client = spawnBounded({ name: 'ours-client', cmd: cmd.cmd, args: cmd.args, env: cmd.env, workDir, timeoutMs: 15_000 });
    const cl = client;
    await waitFor(() => !cl.isRunning() || sawPeerControlStream(parseOurEvents(cl.stdout()), false), 12_000);
    await sleep(200);
    await client.stop('SIGTERM', 2000);
    await server.stop('SIGTERM', 2000);
    if (cap !== null) await cap.stop();

    const events = parseOurEvents(client.stdout());
    const slog = parseGtlsServerLog(server.output());
    const details = { gtlsserver: { handshakes: slog.handshakeCompleted, alpn: slog.alpn, ciphers: slog.ciphers, errors: slog.errors }, ours: events };
    const hs = events.find((e) => e.event === 'handshake') as { alpn?: string; cipher?: string } | undefined;
    let main: Outcome;
    if (slog.handshakeCompleted === 0) main = fail('gtlsserver: no completed handshake', details);
    else if (hs === undefined) main = fail('our client printed no handshake event', details);
    else if (hs.alpn !== 'h3' || slog.alpn[0] !== 'h3') main = fail(`ALPN: ours ${hs.alpn}, gtlsserver ${slog.alpn[0]}`, details);
    else if (v.ciphers !== undefined && hs.cipher !== v.ciphers[0]) main = fail(`cipher: ours ${hs.cipher}`, details);
    else if (!sawPeerControlStream(events, false)) main = fail("our client did not report the server's control stream data", details);
    else if (events.some((e) => e.event === 'error')) main = fail('our client reported an error', details);
    else if (slog.errors.length > 0) main = fail(`gtlsserver errors: ${slog.errors.slice(0, 3).join(' | ')}`, details);
    else main = pass(`handshake ${hs.cipher}/h3, server control stream seen`, details);
    return [main, await decryptWith(cap, missing, keylog, workDir)];
  } finally {
    await client?.stop('SIGKILL', 1000);
    await server?.stop('SIGKILL', 1000);
    await cap?.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Selfcheck: gtlsclient -> gtlsserver, validates the harness (spawn, parse, capture, decrypt, inject).

export interface SelfcheckOptions {
  ciphers?: string[];
  keyUpdate?: boolean;
}

export async function selfcheck(ctx: RunContext, workDir: string, o: SelfcheckOptions = {}): Promise<Outcome> {
  const m = missingPrograms(['gtlsclient', 'gtlsserver', 'tshark', 'editcap']);
  if (m.missing.length > 0) return missingOutcome(ctx, m.hint);
  const port = await freeUdpPort('127.0.0.1');
  const docroot = join(workDir, 'htdocs');
  mkdirSync(docroot, { recursive: true });
  writeFileSync(join(docroot, 'index.html'), '<html><body>selfcheck</body></html>\n');
  const keylog = join(workDir, 'gtlsserver.keylog');
  let server: Child | null = null;
  let cap: Capture | null = null;
  try {
    cap = await startCapture({ workDir, port });
    server = await gtlsServerFor(ctx, workDir, port, docroot, 30_000, keylog);
    const urls = [`https://127.0.0.1:${port}/index.html`, `https://127.0.0.1:${port}/2000`];
    const c = await runGtlsClient({
      workDir,
      host: '127.0.0.1',
      port,
      urls,
      keylogFile: join(workDir, 'gtlsclient.keylog'),
      ciphers: o.ciphers,
      keyUpdate: o.keyUpdate === true ? '50ms' : undefined,
      delayStream: o.keyUpdate === true ? '300ms' : undefined,
      timeoutMs: 15_000,
    });
    await server.stop('SIGTERM', 2000);
    await cap.stop();
    const r = c.result;
    const slog = parseGtlsServerLog(server.output());
    const rep = await decryptReport(cap.pcap, keylog, workDir);
    const dsb = join(workDir, 'capture-dsb.pcapng');
    await injectSecrets(cap.pcap, keylog, dsb, workDir);
    const repDsb = await decryptReport(dsb, null, workDir);
    const details: Record<string, unknown> = {
      gtlsclient: { alpn: r.alpn, cipher: r.cipher, statuses: Object.fromEntries(r.statuses), closes: Object.fromEntries(r.streamCloses), keyUpdates: r.keyUpdatesInitiated, errors: r.errors },
      gtlsserver: { handshakes: slog.handshakeCompleted, paths: Object.fromEntries(slog.paths) },
      decrypt: formatReport(rep),
      decryptEmbedded: formatReport(repDsb),
    };
    if (c.exit.timedOut) return fail('gtlsclient hit the hard timeout', details);
    if (!r.handshakeCompleted) return fail('gtlsclient: handshake did not complete', details);
    if (r.alpn !== 'h3') return fail(`ALPN ${r.alpn}`, details);
    if (o.ciphers !== undefined && r.suite !== o.ciphers[0]) return fail(`cipher ${r.cipher}, wanted ${o.ciphers[0]}`, details);
    if (r.statuses.get(0) !== 200 || r.statuses.get(4) !== 200) return fail('expected :status 200 on streams 0 and 4', details);
    if (r.streamCloses.get(0) !== H3_NO_ERROR || r.streamCloses.get(4) !== H3_NO_ERROR) return fail('streams did not close with H3_NO_ERROR', details);
    if (o.keyUpdate === true && r.keyUpdatesInitiated === 0) return fail('gtlsclient did not initiate a key update', details);
    if (r.errors.length > 0) return fail(`gtlsclient errors: ${r.errors.slice(0, 3).join(' | ')}`, details);
    if (slog.paths.get(0) !== '/index.html') return fail('gtlsserver did not log :path /index.html on stream 0', details);
    const d = decryptOutcome(rep, { keyPhase1: o.keyUpdate === true });
    if (d.status !== 'pass') return fail(`decrypt: ${d.reason}`, details);
    const s0 = rep.http3Frames.get(0) ?? [];
    if (!s0.includes('HEADERS') || !s0.includes('DATA')) return fail(`stream 0 frames [${s0.join(',')}], want HEADERS and DATA`, details);
    if (repDsb.undecrypted !== 0 || !(repDsb.http3Frames.get(0) ?? []).includes('HEADERS')) {
      return fail('capture with editcap-embedded secrets did not decrypt', details);
    }
    return pass(`${r.cipher}/h3, ${rep.quicPackets} QUIC packets decrypted, stream 0 [${s0.join(',')}]`, details);
  } finally {
    await server?.stop('SIGKILL', 1000);
    await cap?.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// HTTP/3 cases: bytes moved end to end and checked byte for byte (or by size and SHA-256 where the peer generates or
// discards the body).
//
//   http3        [gtlsclient->ours]  qsr serve, 100 random files (1-50 KiB), all fetched on one connection
//   http3        [ours->gtlsserver]  qsr get: the same 100 files plus a 20 MB generated body, one connection
//   upload       [gtlsclient->ours]  20 MB POST to h3-upload-server.ts, which answers "<bytes> <sha256>"
//   upload       [ours->gtlsserver]  qsr get -X POST -d @FILE (20 MB); gtlsserver answers only after the whole body
//   transferloss [gtlsclient->ours]  http3 with gtlsclient dropping 5 % of the packets it sends and receives
//   decrypt/<case>: tshark, with the key log OUR side wrote, decrypts every QUIC packet; HEADERS are dissected on
//   every request stream (bidi, client-initiated: id % 4 == 0) that appears, and DATA on at least one. tshark 4.0
//   neither decodes QPACK nor dissects a DATA frame continued in later packets, so the bytes themselves are checked
//   at the endpoints, not from the capture.

const H3_FILES = 100;
const BIG_BODY = 20_000_000;

/**
 * `count` files f000.bin... of random bytes, random sizes 1-50 KiB, written to `dir`; name -> contents. f000.bin is
 * exactly 1 KiB: its response fits in one packet, so tshark (which does not dissect a DATA frame split across
 * packets) sees at least one whole DATA frame even from a peer that fills every packet.
 */
function makeFiles(dir: string, count: number): Map<string, Buffer> {
  mkdirSync(dir, { recursive: true });
  const files = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const name = `f${String(i).padStart(3, '0')}.bin`;
    const body = randomBytes(i === 0 ? 1024 : randomInt(1024, 50 * 1024 + 1));
    writeFileSync(join(dir, name), body);
    files.set(name, body);
  }
  return files;
}

/** Every expected file compared byte for byte with DIR/<name>; one line per problem. */
function compareFiles(expected: ReadonlyMap<string, Buffer>, dir: string): string[] {
  const problems: string[] = [];
  for (const [name, want] of expected) {
    const p = join(dir, name);
    if (!existsSync(p)) {
      problems.push(`${name}: not downloaded`);
      continue;
    }
    const got = readFileSync(p);
    if (got.equals(want)) continue;
    let i = 0;
    while (i < got.length && i < want.length && got[i] === want[i]) i++;
    problems.push(`${name}: ${got.length} bytes, want ${want.length}, first difference at byte ${i}`);
  }
  return problems;
}

function sha256File(path: string): string {
  return createHash('sha256').update(readFileSync(path)).digest('hex');
}

/** A file of `size` random bytes (written in 1 MiB pieces). */
function writeRandomFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    for (let left = size; left > 0; left -= 1 << 20) writeSync(fd, randomBytes(Math.min(left, 1 << 20)));
  } finally {
    closeSync(fd);
  }
}

function rmQuiet(path: string): void {
  rmSync(path, { force: true, recursive: true });
}

const short = (list: readonly (string | number)[], n = 5): string =>
  list.slice(0, n).join(', ') + (list.length > n ? ` ... (${list.length})` : '');

/** Run tshark to completion and return its stdout (throws on a non-zero exit). */
async function tsharkOut(name: string, args: string[], workDir: string): Promise<string> {
  const cmd = findProgram('tshark');
  if (cmd === null) throw new Error(missingPrograms(['tshark']).hint);
  const child = spawnBounded({ name, cmd, args, workDir, timeoutMs: 90_000 });
  const exit = await child.exited;
  if (exit.code !== 0) throw new Error(`tshark ${args.join(' ')}: ${JSON.stringify(exit)} ${child.stderr().slice(-1000)}`);
  return child.stdout();
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObj = { [k: string]: Json };
const jsonList = (x: Json | undefined): Json[] => (x === undefined || x === null ? [] : Array.isArray(x) ? x : [x]);
const jsonObj = (x: Json | undefined): x is JsonObj => typeof x === 'object' && x !== null && !Array.isArray(x);
const jsonNum = (x: Json | undefined): number => (typeof x === 'string' || typeof x === 'number' ? Number(x) : NaN);
function jsonHasKey(x: Json | undefined, key: string): boolean {
  if (Array.isArray(x)) return x.some((e) => jsonHasKey(e, key));
  if (!jsonObj(x)) return false;
  return Object.entries(x).some(([k, v]) => k === key || jsonHasKey(v, key));
}

/** QUIC varint at `pos` (RFC 9000 §16): [value, next position], or null when `b` ends first. */
function varintAt(b: Buffer, pos: number): [number, number] | null {
  if (pos >= b.length) return null;
  const len = 1 << (b[pos]! >> 6);
  if (pos + len > b.length) return null;
  let v = b[pos]! & 0x3f;
  for (let i = 1; i < len; i++) v = v * 256 + b[pos + i]!;
  return [v, pos + len];
}

interface StreamFrame {
  sid: number;
  offset: number;
  data: Buffer;
}

/**
 * Whether tshark's http3 layer `layer` was dissected from STREAM frame `f`. tshark 4.0 gives an http3 layer only to
 * STREAM frames in which it could dissect something, so layers are a subsequence of the STREAM frames, not one each:
 * a typed layer matches when the frame's bytes start with that stream type (a uni stream at offset 0) and/or that
 * HTTP/3 frame (type and length) complete within the STREAM frame; an empty layer (nothing dissected) matches a
 * frame that does not start with a whole HTTP/3 frame.
 */
function layerMatches(f: StreamFrame, layer: Json): boolean {
  let pos = 0;
  const uni = f.sid % 4 >= 2;
  const streamType = jsonObj(layer) ? jsonList(layer['http3.stream_type']) : [];
  const types = jsonObj(layer) ? jsonList(layer['http3.frame_type']).map(jsonNum) : [];
  const lengths = jsonObj(layer) ? jsonList(layer['http3.frame_length']).map(jsonNum) : [];
  if (streamType.length > 0) {
    if (!uni || f.offset !== 0) return false;
    const st = varintAt(f.data, 0);
    if (st === null || st[0] !== jsonNum(streamType[0])) return false;
    pos = st[1];
    if (types.length === 0) return true;
  }
  const t = varintAt(f.data, pos);
  const l = t === null ? null : varintAt(f.data, t[1]);
  const whole = t !== null && l !== null && l[1] + l[0] <= f.data.length;
  if (types.length === 0) return !whole || (uni && f.offset > 0);
  return whole && t[0] === types[0] && l[0] === lengths[0];
}

/**
 * From tshark `-T json --no-duplicate-keys` output: packet and undecrypted counts (as capture.ts counts them), and
 * per stream the HTTP/3 frame types dissected, with each http3 layer paired to its STREAM frame by content (see
 * layerMatches) instead of by position. A datagram whose layers cannot all be placed counts as unpaired.
 */
export function analyseH3Json(packets: Json): DecryptReport {
  const r: DecryptReport = { packets: 0, quicPackets: 0, undecrypted: 0, keyPhase1Packets: 0, http3Frames: new Map(), http3StreamTypes: new Map(), unpaired: 0 };
  for (const p of jsonList(packets)) {
    r.packets++;
    const layers = jsonObj(p) && jsonObj(p._source) ? p._source.layers : undefined;
    if (!jsonObj(layers)) continue;
    const frames: StreamFrame[] = [];
    for (const q of jsonList(layers.quic)) {
      if (!jsonObj(q)) continue;
      r.quicPackets++;
      if ('quic.remaining_payload' in q || jsonHasKey(q, 'quic.decryption_failed')) r.undecrypted++;
      for (const f of jsonList(q['quic.frame'])) {
        if (!jsonObj(f)) continue;
        const ft = jsonNum(f['quic.frame_type']);
        if (ft < 0x08 || ft > 0x0f) continue;
        const hex = typeof f['quic.stream_data'] === 'string' ? f['quic.stream_data'].replace(/:/g, '') : '';
        frames.push({ sid: jsonNum(f['quic.stream.stream_id']), offset: jsonNum(f['quic.stream.offset'] ?? '0'), data: Buffer.from(hex, 'hex') });
      }
    }
    const h3 = jsonList(layers.http3);
    const placed: [StreamFrame, Json][] = [];
    let i = 0;
    for (const layer of h3) {
      while (i < frames.length && !layerMatches(frames[i]!, layer)) i++;
      if (i === frames.length) break;
      placed.push([frames[i]!, layer]);
      i++;
    }
    if (placed.length !== h3.length) {
      r.unpaired++;
      continue;
    }
    for (const [f, layer] of placed) {
      const list = r.http3Frames.get(f.sid) ?? [];
      if (jsonObj(layer)) {
        for (const st of jsonList(layer['http3.stream_type'])) r.http3StreamTypes.set(f.sid, String(jsonNum(st)));
        for (const t of jsonList(layer['http3.frame_type'])) list.push(h3FrameName(jsonNum(t)));
      }
      r.http3Frames.set(f.sid, list);
    }
  }
  return r;
}

/**
 * decryptReport for captures of many megabytes: tshark's full JSON of a 20 MB transfer is ~250 MB (every payload in
 * hex) and takes tens of seconds, so only the datagrams the check needs are turned into JSON: long-header packets,
 * those with a dissected HTTP/3 frame, and every packet tshark could not decrypt (so `undecrypted` stays exact).
 * The datagram and QUIC packet totals come from a cheap fields pass (no keys needed to count packets). Layers are
 * paired with STREAM frames by analyseH3Json: with 100 requests in flight most datagrams carry several STREAM frames
 * and end in a split one, which capture.ts's positional pairing has to give up on.
 */
export async function decryptReportFiltered(pcap: string, keylog: string, workDir: string): Promise<DecryptReport> {
  const counts = await tsharkOut('tshark-count', ['-r', pcap, '-T', 'fields', '-e', 'quic.packet_length', '-E', 'occurrence=a', '-E', 'aggregator=,'], workDir);
  let packets = 0;
  let quicPackets = 0;
  for (const line of counts.split('\n')) {
    if (line === '') continue;
    packets++;
    quicPackets += line.trim() === '' ? 0 : line.split(',').length;
  }
  const filter = 'quic.long.packet_type || http3.frame_type || quic.decryption_failed || quic.remaining_payload';
  const out = await tsharkOut('tshark-decode', ['-r', pcap, '-o', `tls.keylog_file:${keylog}`, '-Y', filter, '-T', 'json', '--no-duplicate-keys'], workDir);
  const rep = analyseH3Json(out.trim() === '' ? [] : (JSON.parse(out) as Json));
  return { ...rep, packets, quicPackets };
}

/**
 * The decrypt/<case> verdict for an HTTP/3 case: all packets decrypted; HEADERS dissected on every request stream that
 * appears (at least one); DATA dissected on at least one request stream. Streams of `expect` that do not appear are
 * listed in the reason.
 */
function h3DecryptVerdict(r: DecryptReport, expect: readonly number[]): Outcome {
  const req = [...r.http3Frames.entries()].filter(([sid]) => sid % 4 === 0).sort((a, b) => a[0] - b[0]);
  const streams = Object.fromEntries(req.map(([sid, f]) => [sid, f.join(',')]));
  const details = { report: `packets=${r.packets} quic=${r.quicPackets} undecrypted=${r.undecrypted} unpaired=${r.unpaired}`, requestStreams: streams };
  if (r.quicPackets === 0) return fail('no QUIC packets captured', details);
  if (r.undecrypted > 0) return fail(`${r.undecrypted} of ${r.quicPackets} QUIC packets not decrypted`, details);
  if (req.length === 0) return fail('no HTTP/3 frame dissected on any request stream', details);
  const noHeaders = req.filter(([, f]) => !f.includes('HEADERS')).map(([sid]) => sid);
  if (noHeaders.length > 0) return fail(`request streams without a dissected HEADERS frame: ${short(noHeaders)}`, details);
  // A stream whose request and response HEADERS were both split across packets has nothing tshark 4.0 can dissect
  // (seen once in ~10 runs of 100 requests), so the absent ones are reported, not failed.
  const absent = expect.filter((sid) => !r.http3Frames.has(sid));
  const withData = req.filter(([, f]) => f.includes('DATA')).length;
  if (withData === 0) return fail('no DATA frame dissected on any request stream', details);
  return pass(
    `${r.quicPackets} QUIC packets all decrypted; HEADERS on all ${req.length} request streams dissected` +
      `${absent.length > 0 ? ` (of ${expect.length}; not dissectable: ${short(absent)})` : ''}, DATA on ${withData}`,
    details,
  );
}

async function h3Decrypt(cap: Capture | null, missing: Outcome | undefined, keylog: string, workDir: string, expect: readonly number[]): Promise<Outcome> {
  if (cap === null) return missing ?? fail('no capture');
  if (!existsSync(keylog)) return fail(`key log ${keylog} was not written by our side`);
  return h3DecryptVerdict(await decryptReportFiltered(cap.pcap, keylog, workDir), expect);
}

/** Client-initiated bidirectional stream ids 0, 4, 8, ... for `n` requests. */
const requestStreams = (n: number): number[] => Array.from({ length: n }, (_, i) => 4 * i);

/** Start our server `cmd` and wait until it listens (JSON "listening" line, or its UDP port bound). */
async function startOurs(name: string, cmd: OurCommand, port: number, workDir: string, timeoutMs: number): Promise<Child | Outcome> {
  const child = spawnBounded({ name, cmd: cmd.cmd, args: cmd.args, env: cmd.env, workDir, timeoutMs });
  const up = await waitFor(
    () => !child.isRunning() || udpPortBound(port) || parseOurEvents(child.stdout()).some((e) => e.event === 'listening'),
    10_000,
  );
  if (!up || !child.isRunning()) {
    await child.stop('SIGKILL', 1000);
    return fail(`${name} did not start: ${child.output().slice(-800)}`);
  }
  return child;
}

const isOutcome = (x: Child | Outcome): x is Outcome => 'status' in x;

interface H3ServerVariant {
  name: 'http3' | 'transferloss';
  /** gtlsclient --tx-loss / --rx-loss. */
  loss?: number;
}

/** http3 / transferloss [gtlsclient->ours]: gtlsclient fetches 100 files from `qsr serve` on one connection. */
async function h3FilesFromOurServer(ctx: RunContext, workDir: string, v: H3ServerVariant): Promise<Outcome[]> {
  const port = await freeUdpPort('127.0.0.1');
  const keylog = join(workDir, 'ours.keylog');
  const docroot = join(workDir, 'htdocs');
  const files = makeFiles(docroot, H3_FILES);
  const cmd = ourServeCommand({
    addr: '127.0.0.1',
    port,
    dir: docroot,
    certFile: join(ctx.certDir, 'ecdsa.pem'),
    keyFile: join(ctx.certDir, 'ecdsa.key'),
    keylogFile: keylog,
    workDir,
  });
  if (cmd === null) return twice(fail('not implemented: qsr serve (test/interop/ours.ts)'));
  const m = missingPrograms(['gtlsclient']);
  if (m.missing.length > 0) return twice(missingOutcome(ctx, m.hint));
  const { cap, missing } = await maybeCapture(ctx, workDir, port);
  let server: Child | null = null;
  try {
    const s = await startOurs('ours-serve', cmd, port, workDir, 90_000);
    if (isOutcome(s)) return twice(s);
    server = s;
    const dl = join(workDir, 'download');
    mkdirSync(dl, { recursive: true });
    const names = [...files.keys()];
    const c = await runGtlsClient({
      workDir,
      host: '127.0.0.1',
      port,
      urls: names.map((n) => `https://127.0.0.1:${port}/${n}`),
      nstreams: names.length,
      download: dl,
      keylogFile: join(workDir, 'gtlsclient.keylog'),
      txLoss: v.loss,
      rxLoss: v.loss,
      idleTimeout: '10s',
      timeoutMs: 60_000,
    });
    await server.stop('SIGTERM', 7000);
    if (cap !== null) await cap.stop();

    const r = c.result;
    const streams = requestStreams(names.length);
    const badStatus = streams.filter((sid) => r.statuses.get(sid) !== 200);
    const badClose = streams.filter((sid) => r.streamCloses.get(sid) !== H3_NO_ERROR);
    const problems = compareFiles(files, dl);
    const access = server.stderr().split('\n').filter((l) => /^GET \/f\d{3}\.bin 200 \d+ /.test(l)).length;
    const serverErrors = server.stderr().split('\n').filter((l) => /error/i.test(l));
    // gtlsclient prints one line per packet it drops on purpose: the loss case must really have lost some.
    const simulatedLosses = (c.output.match(/\*\* Simulated (incoming|outgoing) packet loss \*\*/g) ?? []).length;
    const details = {
      gtlsclient: { alpn: r.alpn, cipher: r.cipher, statuses: r.statuses.size, closes: r.streamCloses.size, errors: r.errors.slice(0, 10), exit: c.exit },
      ours: { accessLog200: access, errors: serverErrors.slice(0, 10) },
      simulatedLosses,
      files: { count: files.size, bytes: [...files.values()].reduce((a, b) => a + b.length, 0), problems: problems.slice(0, 10) },
    };
    let main: Outcome;
    if (c.exit.timedOut) main = fail('gtlsclient hit the hard timeout', details);
    else if (!r.handshakeCompleted || r.alpn !== 'h3') main = fail(`gtlsclient: handshake ${r.handshakeCompleted}, ALPN ${r.alpn ?? '(none)'}`, details);
    else if (badStatus.length > 0) main = fail(`streams without :status 200: ${short(badStatus)}`, details);
    else if (badClose.length > 0) main = fail(`streams not closed with H3_NO_ERROR: ${short(badClose)}`, details);
    else if (problems.length > 0) main = fail(`${problems.length} files differ: ${short(problems, 3)}`, details);
    else if (r.errors.length > 0) main = fail(`gtlsclient errors: ${r.errors.slice(0, 3).join(' | ')}`, details);
    else if (serverErrors.length > 0) main = fail(`qsr serve: ${serverErrors.slice(0, 3).join(' | ')}`, details);
    else if (access !== names.length) main = fail(`qsr serve logged ${access} GET .. 200 lines, want ${names.length}`, details);
    else if (v.loss !== undefined && simulatedLosses === 0) main = fail('gtlsclient reported no simulated packet loss', details);
    else {
      main = pass(
        `${names.length} files (${details.files.bytes} B) on one connection identical byte for byte, all H3_NO_ERROR` +
          (v.loss !== undefined ? `, with ${v.loss * 100}% loss each way (${simulatedLosses} packets dropped by gtlsclient)` : ''),
        details,
      );
    }
    return [main, await h3Decrypt(cap, missing, keylog, workDir, streams)];
  } finally {
    await server?.stop('SIGKILL', 1000);
    await cap?.stop();
  }
}

/** http3 [ours->gtlsserver]: qsr get fetches 100 files and a 20 MB generated body over one connection. */
async function h3FilesFromGtlsServer(ctx: RunContext, workDir: string): Promise<Outcome[]> {
  const port = await freeUdpPort('127.0.0.1');
  const keylog = join(workDir, 'ours.keylog');
  const docroot = join(workDir, 'htdocs');
  const files = makeFiles(docroot, H3_FILES);
  const out = join(workDir, 'download');
  const origin = `https://127.0.0.1:${port}`;
  const paths = [...files.keys()].map((n) => `/${n}`).concat(`/${BIG_BODY}`);
  const cmd = ourGetCommand({
    urls: paths.map((p) => origin + p),
    caFile: join(ctx.certDir, 'ca.pem'),
    serverName: 'localhost',
    keylogFile: keylog,
    outputDir: out,
    timeoutMs: 50_000,
    workDir,
  });
  if (cmd === null) return twice(fail('not implemented: qsr get (test/interop/ours.ts)'));
  const m = missingPrograms(['gtlsserver']);
  if (m.missing.length > 0) return twice(missingOutcome(ctx, m.hint));
  const { cap, missing } = await maybeCapture(ctx, workDir, port);
  let server: Child | null = null;
  try {
    server = await gtlsServerFor(ctx, workDir, port, docroot, 90_000);
    const client = spawnBounded({ name: 'ours-get', cmd: cmd.cmd, args: cmd.args, env: cmd.env, workDir, timeoutMs: 60_000 });
    const exit = await client.exited;
    await server.stop('SIGTERM', 2000);
    if (cap !== null) await cap.stop();

    const slog = parseGtlsServerLog(server.output());
    const doc = parseGetJson(client.stdout());
    const problems = compareFiles(files, out);
    const bigFile = join(out, String(BIG_BODY));
    const bigSize = existsSync(bigFile) ? statSync(bigFile).size : -1;
    rmQuiet(bigFile);
    const details: Record<string, unknown> = {
      exit,
      stderr: client.stderr().slice(-1000),
      gtlsserver: { handshakes: slog.handshakeCompleted, requests: slog.paths.size, errors: slog.errors.slice(0, 10) },
      files: { count: files.size, problems: problems.slice(0, 10) },
      bigFileSize: bigSize,
    };
    let main: Outcome;
    if (doc instanceof Error) main = fail(doc.message, details);
    else {
      details.summary = doc.summary;
      const reqs = doc.requests;
      const ids = reqs.map((q) => q.streamId);
      const failed = reqs.filter((q) => !q.ok || q.status !== 200);
      const big = reqs.find((q) => q.path === `/${BIG_BODY}`);
      const unlogged = paths.filter((p) => ![...slog.paths.values()].includes(p));
      if (exit.timedOut) main = fail('qsr get hit the hard timeout', details);
      else if (exit.code !== 0) main = fail(`qsr get exited ${exit.code}${doc.error ? `: ${doc.error}` : ''}`, details);
      else if (reqs.length !== paths.length) main = fail(`qsr get reported ${reqs.length} requests, want ${paths.length}`, details);
      else if (failed.length > 0) main = fail(`requests not ok/200: ${short(failed.map((q) => `${q.path} ${q.status} ${q.error ?? ''}`), 3)}`, details);
      else if (ids.some((id) => id === null || id % 4 !== 0) || new Set(ids).size !== ids.length) {
        main = fail(`stream ids not distinct client bidi ids: ${short(ids.map(String), 10)}`, details);
      } else if (big === undefined || big.bytes !== BIG_BODY || bigSize !== BIG_BODY) {
        main = fail(`/${BIG_BODY}: ${big?.bytes} bytes reported, ${bigSize} saved, want ${BIG_BODY}`, details);
      } else if (problems.length > 0) main = fail(`${problems.length} files differ: ${short(problems, 3)}`, details);
      else if (slog.handshakeCompleted !== 1) main = fail(`gtlsserver saw ${slog.handshakeCompleted} handshakes, want 1 connection`, details);
      else if (unlogged.length > 0) main = fail(`gtlsserver did not log requests for ${short(unlogged)}`, details);
      else if (slog.errors.length > 0) main = fail(`gtlsserver errors: ${slog.errors.slice(0, 3).join(' | ')}`, details);
      else {
        main = pass(
          `${files.size} files identical byte for byte + ${BIG_BODY} B body on one connection, ${reqs.length} distinct streams, ` +
            `${doc.summary.mbPerSec.toFixed(1)} MB/s`,
          details,
        );
      }
    }
    return [main, await h3Decrypt(cap, missing, keylog, workDir, requestStreams(paths.length))];
  } finally {
    await server?.stop('SIGKILL', 1000);
    await cap?.stop();
  }
}

/** upload [gtlsclient->ours]: gtlsclient POSTs 20 MB to h3-upload-server.ts, which answers "<bytes> <sha256>". */
async function uploadToOurServer(ctx: RunContext, workDir: string): Promise<Outcome[]> {
  const port = await freeUdpPort('127.0.0.1');
  const keylog = join(workDir, 'ours.keylog');
  const cmd = ourUploadServerCommand({
    addr: '127.0.0.1',
    port,
    certFile: join(ctx.certDir, 'ecdsa.pem'),
    keyFile: join(ctx.certDir, 'ecdsa.key'),
    keylogFile: keylog,
    workDir,
  });
  if (cmd === null) return twice(fail('not implemented: upload server (test/interop/ours.ts)'));
  const m = missingPrograms(['gtlsclient']);
  if (m.missing.length > 0) return twice(missingOutcome(ctx, m.hint));
  const body = join(workDir, 'upload.bin');
  writeRandomFile(body, BIG_BODY);
  const sha = sha256File(body);
  const { cap, missing } = await maybeCapture(ctx, workDir, port);
  let server: Child | null = null;
  try {
    const s = await startOurs('ours-upload-server', cmd, port, workDir, 90_000);
    if (isOutcome(s)) return twice(s);
    server = s;
    const dl = join(workDir, 'download');
    mkdirSync(dl, { recursive: true });
    const c = await runGtlsClient({
      workDir,
      host: '127.0.0.1',
      port,
      urls: [`https://127.0.0.1:${port}/upload`],
      download: dl,
      extraArgs: ['-d', body, '-m', 'POST'],
      keylogFile: join(workDir, 'gtlsclient.keylog'),
      idleTimeout: '10s',
      timeoutMs: 60_000,
    });
    await server.stop('SIGTERM', 3000);
    if (cap !== null) await cap.stop();

    const r = c.result;
    const answerFile = join(dl, 'upload');
    const answer = existsSync(answerFile) ? readFileSync(answerFile, 'utf8').trim() : null;
    const want = `${BIG_BODY} ${sha}`;
    const seen = parseOurEvents(server.stdout()).find((e) => e.event === 'request') as { bytes?: number; sha256?: string } | undefined;
    const details = {
      gtlsclient: { alpn: r.alpn, status: r.statuses.get(0), close: r.streamCloses.get(0), errors: r.errors.slice(0, 10), exit: c.exit },
      answer,
      want,
      ours: parseOurEvents(server.stdout()),
    };
    let main: Outcome;
    if (c.exit.timedOut) main = fail('gtlsclient hit the hard timeout', details);
    else if (!r.handshakeCompleted || r.alpn !== 'h3') main = fail(`gtlsclient: handshake ${r.handshakeCompleted}, ALPN ${r.alpn ?? '(none)'}`, details);
    else if (r.statuses.get(0) !== 200) main = fail(`stream 0 :status ${r.statuses.get(0)}, want 200`, details);
    else if (r.streamCloses.get(0) !== H3_NO_ERROR) main = fail(`stream 0 closed with ${r.streamCloses.get(0)}, want H3_NO_ERROR`, details);
    else if (answer !== want) main = fail(`answer "${answer}", want "${want}"`, details);
    else if (seen?.bytes !== BIG_BODY || seen.sha256 !== sha) main = fail('our server did not log the request body it hashed', details);
    else if (r.errors.length > 0) main = fail(`gtlsclient errors: ${r.errors.slice(0, 3).join(' | ')}`, details);
    else main = pass(`${BIG_BODY} B POST received intact (size and SHA-256 match), 200, H3_NO_ERROR`, details);
    return [main, await h3Decrypt(cap, missing, keylog, workDir, [0])];
  } finally {
    rmQuiet(body);
    await server?.stop('SIGKILL', 1000);
    await cap?.stop();
  }
}

/** upload [ours->gtlsserver]: qsr get -X POST -d @FILE (20 MB). gtlsserver reads and discards the body. */
async function uploadFromOurClient(ctx: RunContext, workDir: string): Promise<Outcome[]> {
  const port = await freeUdpPort('127.0.0.1');
  const keylog = join(workDir, 'ours.keylog');
  const docroot = join(workDir, 'htdocs');
  mkdirSync(docroot, { recursive: true });
  const page = '<html><body>upload target</body></html>\n';
  writeFileSync(join(docroot, 'target.html'), page);
  const body = join(workDir, 'upload.bin');
  const cmd = ourGetCommand({
    urls: [`https://127.0.0.1:${port}/target.html`],
    caFile: join(ctx.certDir, 'ca.pem'),
    serverName: 'localhost',
    keylogFile: keylog,
    method: 'POST',
    dataFile: body,
    timeoutMs: 50_000,
    workDir,
  });
  if (cmd === null) return twice(fail('not implemented: qsr get (test/interop/ours.ts)'));
  const m = missingPrograms(['gtlsserver']);
  if (m.missing.length > 0) return twice(missingOutcome(ctx, m.hint));
  writeRandomFile(body, BIG_BODY);
  const { cap, missing } = await maybeCapture(ctx, workDir, port);
  let server: Child | null = null;
  try {
    server = await gtlsServerFor(ctx, workDir, port, docroot, 90_000);
    const client = spawnBounded({ name: 'ours-get', cmd: cmd.cmd, args: cmd.args, env: cmd.env, workDir, timeoutMs: 60_000 });
    const exit = await client.exited;
    await server.stop('SIGTERM', 2000);
    if (cap !== null) await cap.stop();

    const log = server.output();
    const slog = parseGtlsServerLog(log);
    const sawPost = /^http: stream 0x0 \[:method: POST\]$/m.test(log);
    const sawLength = new RegExp(`^http: stream 0x0 \\[content-length: ${BIG_BODY}\\]$`, 'm').test(log);
    const doc = parseGetJson(client.stdout());
    const details: Record<string, unknown> = {
      exit,
      stderr: client.stderr().slice(-1000),
      gtlsserver: { handshakes: slog.handshakeCompleted, paths: Object.fromEntries(slog.paths), post: sawPost, contentLength: sawLength, errors: slog.errors.slice(0, 10) },
    };
    let main: Outcome;
    if (doc instanceof Error) main = fail(doc.message, details);
    else {
      details.requests = doc.requests;
      const q = doc.requests[0];
      if (exit.timedOut) main = fail('qsr get hit the hard timeout', details);
      else if (exit.code !== 0) main = fail(`qsr get exited ${exit.code}${doc.error ? `: ${doc.error}` : ''}`, details);
      else if (doc.requests.length !== 1 || q === undefined) main = fail(`${doc.requests.length} requests reported, want 1`, details);
      else if (!q.ok || q.status !== 200 || q.method !== 'POST') main = fail(`${q.method} ${q.path}: status ${q.status} ${q.error ?? ''}`, details);
      else if (q.bytes !== Buffer.byteLength(page)) main = fail(`response body ${q.bytes} bytes, want ${Buffer.byteLength(page)}`, details);
      else if (slog.paths.get(0) !== '/target.html' || !sawPost || !sawLength) {
        main = fail(`gtlsserver log: path ${slog.paths.get(0)}, POST ${sawPost}, content-length ${BIG_BODY} ${sawLength}`, details);
      } else if (slog.errors.length > 0) main = fail(`gtlsserver errors: ${slog.errors.slice(0, 3).join(' | ')}`, details);
      else {
        main = pass(
          `POST ${BIG_BODY} B -> 200 (gtlsserver logged POST, content-length ${BIG_BODY}; it answers after the request FIN)`,
          details,
        );
      }
    }
    return [main, await h3Decrypt(cap, missing, keylog, workDir, [0])];
  } finally {
    rmQuiet(body);
    await server?.stop('SIGKILL', 1000);
    await cap?.stop();
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Registry and runner

const variants: Variant[] = [
  { name: 'handshake' },
  { name: 'chacha20', ciphers: [CHACHA] },
  { name: 'keyupdate', keyUpdate: true },
];

export const CASES: readonly CaseDef[] = [
  ...variants.map((v) => ({
    names: [v.name, `decrypt/${v.name}`],
    peer: PEER_OUR_SERVER,
    run: (ctx: RunContext, wd: string) => ourServerCase(ctx, wd, v),
  })),
  // keyupdate is driven by gtlsclient's --key-update, so only against our server for now
  ...variants
    .filter((v) => v.keyUpdate !== true)
    .map((v) => ({
      names: [v.name, `decrypt/${v.name}`],
      peer: PEER_OUR_CLIENT,
      run: (ctx: RunContext, wd: string) => ourClientCase(ctx, wd, v),
    })),
  { names: ['http3', 'decrypt/http3'], peer: PEER_OUR_SERVER, http3: true, run: (ctx: RunContext, wd: string) => h3FilesFromOurServer(ctx, wd, { name: 'http3' }) },
  { names: ['http3', 'decrypt/http3'], peer: PEER_OUR_CLIENT, http3: true, run: h3FilesFromGtlsServer },
  { names: ['upload', 'decrypt/upload'], peer: PEER_OUR_SERVER, http3: true, run: uploadToOurServer },
  { names: ['upload', 'decrypt/upload'], peer: PEER_OUR_CLIENT, http3: true, run: uploadFromOurClient },
  {
    names: ['transferloss', 'decrypt/transferloss'],
    peer: PEER_OUR_SERVER,
    http3: true,
    run: (ctx: RunContext, wd: string) => h3FilesFromOurServer(ctx, wd, { name: 'transferloss', loss: 0.05 }),
  },
  { names: ['selfcheck'], peer: PEER_SELF, run: async (ctx: RunContext, wd: string) => [await selfcheck(ctx, wd)] },
  {
    names: ['selfcheck-chacha20'],
    peer: PEER_SELF,
    run: async (ctx: RunContext, wd: string) => [await selfcheck(ctx, wd, { ciphers: [CHACHA] })],
  },
  {
    names: ['selfcheck-keyupdate'],
    peer: PEER_SELF,
    run: async (ctx: RunContext, wd: string) => [await selfcheck(ctx, wd, { keyUpdate: true })],
  },
];

/** `only` entries select a case name exactly, or every case starting with "<entry>-" or "<entry>/". */
function selected(names: readonly string[], only: readonly string[] | undefined): boolean {
  if (only === undefined || only.length === 0) return true;
  return names.some((n) => only.some((o) => n === o || n.startsWith(o + '-') || n.startsWith(o + '/')));
}

export interface RunOptions {
  only?: string[];
  ci?: boolean;
  certDir?: string;
  log?: (line: string) => void;
}

export async function runInterop(o: RunOptions = {}): Promise<CaseResult[]> {
  const ctx: RunContext = {
    ci: o.ci ?? process.env.CI === 'true',
    workRoot: makeWorkDir(),
    certDir: o.certDir ?? defaultCertDir(),
  };
  const results: CaseResult[] = [];
  for (const c of CASES) {
    if (!selected(c.names, o.only)) continue;
    // The gtls stand-in validates the harness's transport paths only; it has no qsr serve/get equivalent.
    if (c.http3 === true && fakeOurs()) continue;
    const workDir = join(ctx.workRoot, `${c.names[0]}_${c.peer.replace(/[^a-z0-9]+/gi, '_')}`);
    mkdirSync(workDir, { recursive: true });
    const t0 = Date.now();
    let outs: Outcome[];
    try {
      outs = await c.run(ctx, workDir);
    } catch (e) {
      outs = c.names.map(() => fail(`harness error: ${e instanceof Error ? e.message : String(e)}`));
    }
    const durationMs = Date.now() - t0;
    c.names.forEach((name, i) => {
      if (!selected([name], o.only)) return;
      const out = outs[i] ?? fail('no outcome');
      const r: CaseResult = { case: name, peer: c.peer, durationMs, workDir, ...out };
      results.push(r);
      o.log?.(`${r.status.toUpperCase().padEnd(4)} ${name} [${c.peer}] ${r.reason}`);
    });
  }
  return results;
}

export function formatMatrix(results: readonly CaseResult[]): string {
  const peers = [PEER_OUR_SERVER, PEER_OUR_CLIENT, PEER_SELF].filter((p) => results.some((r) => r.peer === p));
  const cases = [...new Set(results.map((r) => r.case))];
  const w0 = Math.max(4, ...cases.map((c) => c.length));
  const ws = peers.map((p) => Math.max(p.length, 4));
  const row = (cells: string[]): string => cells.map((c, i) => c.padEnd(i === 0 ? w0 : ws[i - 1]!)).join(' | ');
  const lines = [row(['case', ...peers]), row(['-'.repeat(w0), ...ws.map((w) => '-'.repeat(w))])];
  for (const c of cases) {
    lines.push(row([c, ...peers.map((p) => results.find((r) => r.case === c && r.peer === p)?.status.toUpperCase() ?? '-')]));
  }
  return lines.join('\n');
}

function parseArgs(argv: string[]): { only?: string[]; out: string; list: boolean } {
  let only: string[] | undefined;
  let out = 'interop-results';
  let list = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--only') only = (argv[++i] ?? '').split(',').filter((s) => s !== '');
    else if (a.startsWith('--only=')) only = a.slice(7).split(',').filter((s) => s !== '');
    else if (a === '--out') out = argv[++i] ?? out;
    else if (a === '--list') list = true;
    else throw new Error(`unknown argument ${a} (use --only a,b --out DIR --list)`);
  }
  return { only, out, list };
}

async function main(): Promise<number> {
  const args = parseArgs(process.argv.slice(2));
  if (args.list) {
    for (const c of CASES) for (const n of c.names) console.log(`${n}\t${c.peer}`);
    return 0;
  }
  const ci = process.env.CI === 'true';
  const results = await runInterop({ only: args.only, ci, log: (l) => console.log(l) });
  console.log('\n' + formatMatrix(results) + '\n');
  for (const r of results) if (r.status !== 'pass') console.log(`${r.status.toUpperCase()} ${r.case} [${r.peer}]: ${r.reason}`);
  mkdirSync(args.out, { recursive: true });
  const file = join(args.out, 'results.json');
  writeFileSync(
    file,
    JSON.stringify({ generatedAt: new Date().toISOString(), ci, node: process.version, results }, null, 2) + '\n',
  );
  const failed = results.filter((r) => r.status === 'fail').length;
  console.log(`wrote ${file}: ${results.length} results, ${failed} failed`);
  return failed > 0 || results.length === 0 ? 1 : 0;
}

// `node --test dist/test/` also executes every .js under a test/ directory, this file included: only run the matrix
// when started directly, not as a test-runner child (NODE_TEST_CONTEXT is set there).
const invokedDirectly = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly && process.env.NODE_TEST_CONTEXT === undefined) {
  main().then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(2);
    },
  );
}
