// Interop matrix against real peers: ngtcp2's gtlsclient/gtlsserver (GnuTLS) and tshark (decryption check).
//
// `npm run interop` (node dist/test/interop/run.js [--only a,b] [--out DIR] [--list]).
// Cases x peers; each result is pass/fail/skip with a reason. A missing peer program is a skip, except when CI=true,
// where it is a failure. A case whose OUR side is not built yet (ours.ts returns null) is a failure ("not implemented").
// Prints a matrix and writes <out>/results.json (default interop-results/). Exit code 1 if anything failed.
//
// Columns: "gtlsclient->ours" (our server), "ours->gtlsserver" (our client), "gtlsclient->gtlsserver" (selfcheck of the
// harness itself). Rows: handshake, chacha20, keyupdate, decrypt/<case> (tshark decrypts the capture with OUR key log,
// zero undecrypted packets), selfcheck[-chacha20|-keyupdate].

import { mkdirSync, writeFileSync, existsSync } from 'node:fs';
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
  type Child,
  type GtlsClientOptions,
} from './peers.js';
import { startCapture, decryptReport, injectSecrets, formatReport, type Capture, type DecryptReport } from './capture.js';
import { ourServerCommand, ourClientCommand, parseOurEvents, sawPeerControlStream, type OurEvent } from './ours.js';

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
    server = await startGtlsServer({
      workDir,
      addr: '127.0.0.1',
      port,
      docroot,
      key: join(ctx.certDir, 'ecdsa.key'),
      cert: join(ctx.certDir, 'ecdsa.pem'),
      keylogFile: join(workDir, 'gtlsserver.keylog'),
      timeoutMs: 30_000,
    });
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
    server = await startGtlsServer({
      workDir,
      addr: '127.0.0.1',
      port,
      docroot,
      key: join(ctx.certDir, 'ecdsa.key'),
      cert: join(ctx.certDir, 'ecdsa.pem'),
      keylogFile: keylog,
      timeoutMs: 30_000,
    });
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
