// The interop matrix runner: `npm run interop` (node --experimental-websocket dist/test/interop/run.js).
//
//   run.js [--only TOKEN,...] [--out DIR] [--list] [--no-netns]
//
// Runs every CLIENT x SERVER x CASE cell of matrix.ts with the peers of matrix-peers.ts, prints the matrix (one row
// per client -> server pair, one column per case, PASS/FAIL/SKIP), then every cell that did not pass with its reason,
// and writes <out>/results.json (default interop-results/). Exit code 1 when any cell failed.
// --only selects cells by client, server and case names (see selectedCell in matrix.ts), e.g.
// `--only chromium,router`, `--only qsr-get,win`, `--only files100,loss5`.
//
// As root, and unless --no-netns is given, the runner re-executes itself inside a private network namespace
// (tools/peers/netns.ts: `unshare -n`, loopback only): the router gets its real fixed ports (4433, services 5001-5003), nothing
// collides with anything else on the machine, browsers cannot reach the network, and Firefox can run at all. Without
// root it runs here, with free ports, and Firefox is skipped (a failure with CI=true).
// CI=true: a missing peer is a failure, not a skip. QSR_INTEROP_SEED sets the lossy relay's seed (default 1).
//
// Also here: selfcheck (gtlsclient -> gtlsserver, captured and decrypted: validates the harness itself) and
// defaultCertDir.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { decryptReport, formatReport, injectSecrets, startCapture, type Capture, type DecryptReport } from '../../src/obs/capture.js';
import { BIG, CASES, MEDIUM, fail, formatMatrix, makeContent, pairs, pass, runMatrix, selectedCell, skip, type CellResult, type Outcome, type RunContext } from './matrix.js';
import { CLIENTS, SERVERS } from './matrix-peers.js';
import { inPrivateNetns, netnsArgv, netnsUnavailable } from '../../tools/peers/netns.js';
import { H3_NO_ERROR, freeUdpPort, makeWorkDir, missingPrograms, parseGtlsServerLog, runGtlsClient, startGtlsServer, type Child } from './peers.js';

const here = dirname(fileURLToPath(import.meta.url));

/** Locate test/fixtures/certs from src (test/interop) or compiled (dist/test/interop) location. */
export function defaultCertDir(): string {
  for (const c of [join(here, '../fixtures/certs'), join(here, '../../../test/fixtures/certs')]) {
    if (existsSync(join(c, 'ecdsa.pem'))) return resolve(c);
  }
  throw new Error('test/fixtures/certs not found');
}

export interface SelfcheckContext {
  ci: boolean;
  certDir: string;
  workRoot?: string;
}

function decryptOutcome(r: DecryptReport, opts: { keyPhase1?: boolean } = {}): Outcome {
  const details = { report: formatReport(r) };
  if (r.quicPackets === 0) return fail('no QUIC packets captured', details);
  if (r.undecrypted > 0) return fail(`${r.undecrypted} of ${r.quicPackets} QUIC packets not decrypted`, details);
  if (opts.keyPhase1 === true && r.keyPhase1Packets === 0) return fail('no packet with key phase 1 in the capture', details);
  return pass(`${r.quicPackets} QUIC packets, all decrypted`, details);
}

// ---------------------------------------------------------------------------------------------------------------------
// Selfcheck: gtlsclient -> gtlsserver, validates the harness (spawn, parse, capture, decrypt, inject).

export interface SelfcheckOptions {
  ciphers?: string[];
  keyUpdate?: boolean;
}

export async function selfcheck(ctx: SelfcheckContext, workDir: string, o: SelfcheckOptions = {}): Promise<Outcome> {
  const m = missingPrograms(['gtlsclient', 'gtlsserver', 'tshark', 'editcap']);
  if (m.missing.length > 0) return ctx.ci ? fail(`${m.hint} (CI=true: missing peers are failures)`) : skip(m.hint);
  const port = await freeUdpPort('127.0.0.1');
  const docroot = join(workDir, 'htdocs');
  mkdirSync(docroot, { recursive: true });
  writeFileSync(join(docroot, 'index.html'), '<html><body>selfcheck</body></html>\n');
  const keylog = join(workDir, 'gtlsserver.keylog');
  let server: Child | null = null;
  let cap: Capture | null = null;
  try {
    cap = await startCapture({ port, file: join(workDir, 'capture.pcapng'), timeoutMs: 60_000, settleMs: 200 });
    server = await startGtlsServer({ workDir, addr: '127.0.0.1', port, docroot, key: join(ctx.certDir, 'ecdsa.key'), cert: join(ctx.certDir, 'ecdsa.pem'), keylogFile: keylog, timeoutMs: 30_000 });
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
    const rep = await decryptReport(cap.pcap, keylog);
    const dsb = join(workDir, 'capture-dsb.pcapng');
    await injectSecrets(cap.pcap, keylog, dsb);
    const repDsb = await decryptReport(dsb, null);
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
// The command

export interface RunOptions {
  only?: string[];
  out: string;
  list: boolean;
  netns: boolean;
}

export function parseArgs(argv: readonly string[]): RunOptions {
  const o: RunOptions = { out: 'interop-results', list: false, netns: true };
  const tokens = (v: string | undefined): string[] => (v ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--only') o.only = [...(o.only ?? []), ...tokens(argv[++i])];
    else if (a.startsWith('--only=')) o.only = [...(o.only ?? []), ...tokens(a.slice(7))];
    else if (a === '--out') o.out = argv[++i] ?? o.out;
    else if (a.startsWith('--out=')) o.out = a.slice(6);
    else if (a === '--list') o.list = true;
    else if (a === '--no-netns') o.netns = false;
    else throw new Error(`unknown argument ${a} (use --only a,b --out DIR --list --no-netns)`);
  }
  return o;
}

const names = (): { clients: string[]; servers: string[]; cases: string[] } => ({
  clients: CLIENTS.map((c) => c.name),
  servers: SERVERS.map((s) => s.name),
  cases: CASES.map((c) => c.name),
});

/** Re-executes this script inside a private network namespace; resolves with its exit code. */
function reexecInNetns(argv: readonly string[]): Promise<number> | null {
  const inner = netnsArgv([process.execPath, ...process.execArgv, fileURLToPath(import.meta.url), ...argv]);
  if (inner === null) return null;
  return new Promise((resolveCode) => {
    const child = spawn(inner[0]!, inner.slice(1), { stdio: 'inherit', env: { ...process.env, QSR_INTEROP_NETNS: '1' } });
    const forward = (sig: NodeJS.Signals): void => {
      child.kill(sig);
    };
    process.on('SIGINT', forward);
    process.on('SIGTERM', forward);
    child.on('exit', (code, signal) => resolveCode(code ?? (signal !== null ? 1 : 2)));
  });
}

async function main(argv: readonly string[]): Promise<number> {
  const o = parseArgs(argv);
  if (o.list) {
    const all = names();
    for (const [c, s] of pairs(CLIENTS, SERVERS)) for (const k of CASES) if (selectedCell(o.only, c.name, s.name, k.name, all)) console.log(`${c.name}\t${s.name}\t${k.name}`);
    return 0;
  }
  const out = resolve(o.out);
  if (o.netns && !inPrivateNetns() && process.env.QSR_INTEROP_NETNS === undefined) {
    const why = netnsUnavailable();
    if (why === null) {
      const args = [...argv.filter((a, i) => a !== '--out' && argv[i - 1] !== '--out' && !a.startsWith('--out=')), '--out', out];
      return (await reexecInNetns(args)) ?? 2;
    }
    console.log(`note: running without a private network namespace (${why}): free ports, no Firefox`);
  }
  selectedCell(o.only, '', '', '', names()); // reject unknown tokens before doing anything
  const ci = process.env.CI === 'true';
  const workRoot = makeWorkDir('qsr-matrix-');
  const seed = Number(process.env.QSR_INTEROP_SEED ?? 1);
  const t0 = Date.now();
  const ctx: RunContext = { ci, workRoot, certDir: defaultCertDir(), netns: inPrivateNetns(), content: makeContent(join(workRoot, 'htdocs'), seed), seed };
  console.log(`interop matrix: work directory ${workRoot}${ctx.netns ? ', in a private network namespace' : ''}`);
  const results = await runMatrix(ctx, { clients: CLIENTS, servers: SERVERS, only: o.only, log: (l) => console.log(l) });
  const wallMs = Date.now() - t0;
  // The pattern files are 110 MB; the rest of the work directory (logs, captures) stays for a look at failures.
  for (const n of [MEDIUM, BIG]) rmSync(ctx.content.patternFile(n), { force: true });
  console.log('\n' + formatMatrix(results) + '\n');
  for (const r of results) if (r.status !== 'pass') console.log(`${r.status.toUpperCase()} ${r.client} -> ${r.server} ${r.case}: ${r.reason}`);
  mkdirSync(out, { recursive: true });
  const file = join(out, 'results.json');
  const count = (s: string): number => results.filter((r) => r.status === s).length;
  const summary = { cells: results.length, pass: count('pass'), fail: count('fail'), skip: count('skip'), wallMs };
  writeFileSync(
    file,
    JSON.stringify({ generatedAt: new Date().toISOString(), ci, netns: ctx.netns, seed, node: process.version, summary, matrix: formatMatrix(results), results }, null, 2) + '\n',
  );
  console.log(`wrote ${file}: ${summary.cells} cells, ${summary.pass} passed, ${summary.fail} failed, ${summary.skip} skipped in ${(wallMs / 1000).toFixed(0)} s`);
  return summary.fail > 0 || results.length === 0 ? 1 : 0;
}

export type { CellResult };

// `node --test dist/test/` also executes every .js under a test/ directory, this file included: only run the matrix
// when started directly, not as a test-runner child (NODE_TEST_CONTEXT is set there).
const invokedDirectly = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly && process.env.NODE_TEST_CONTEXT === undefined) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: unknown) => {
      console.error(e);
      process.exit(2);
    },
  );
}
