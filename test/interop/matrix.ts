// The interop matrix: CLIENT x SERVER x CASE, each cell PASS, FAIL or SKIP with its reason.
//
// A peer is one entry of a table (matrix-peers.ts) that says what it can do and how to drive it:
//  * a ServerPeer starts a server (qsr serve, the router, or for our client gtlsserver / the quic-go server) and names
//    the resources a case fetches from it: a page, a small resource, 100 files of mixed sizes, a download of N bytes
//    whose sha256 is known, and where to upload (or why it cannot take uploads);
//  * a ClientPeer turns a ClientJob (GETs on one connection, or one POST; optional flow-control windows, cipher
//    suites, simulated loss, key update, key log) into the peer's own command line or page script and reports every
//    response (status, bytes, sha256, protocol).
// The cases below are written once against those two interfaces. A case the peer cannot do is a SKIP naming what the
// peer cannot do; a peer that is not installed is a SKIP, or a FAIL with CI=true. Cases run one after the other (the
// machine has two cores; a 100 MB transfer in parallel with another case measures the machine, not the peers), every
// one bounded in time. Servers are started once per run and reused by the cases (restarted if one exits); chacha20
// uses a second instance of each server configured to accept only ChaCha20, and decrypt a third one that serves the
// decrypt cases only, so that each capture holds just its own connection.

import { createHash, randomBytes } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { patternBlock, patternSha256, PATTERN_BLOCK } from '../../src/services/pattern.js';
import { prng } from '../util/prng.js';
import { decryptReportFiltered, startCapture, type Capture } from '../../src/obs/capture.js';
import { h3DecryptVerdict, short } from './h3decrypt.js';
import { findProgram, missingPrograms, spawnBounded } from './peers.js';
import { startRelay, type Relay } from './relay.js';

export type Status = 'pass' | 'fail' | 'skip';

export interface Outcome {
  status: Status;
  reason: string;
  details?: Record<string, unknown>;
}

export interface CellResult extends Outcome {
  client: string;
  server: string;
  case: string;
  durationMs: number;
  workDir?: string;
}

export const pass = (reason: string, details?: Record<string, unknown>): Outcome => ({ status: 'pass', reason, details });
export const fail = (reason: string, details?: Record<string, unknown>): Outcome => ({ status: 'fail', reason, details });
export const skip = (reason: string, details?: Record<string, unknown>): Outcome => ({ status: 'skip', reason, details });

export const CHACHA = 'TLS_CHACHA20_POLY1305_SHA256';

// ---------------------------------------------------------------------------------------------------------------------
// Run context and the test content every file server serves

export interface Resource {
  path: string;
  /** Body size in bytes; undefined when not known in advance (then all responses must agree). */
  size?: number;
  /** sha256 hex of the body, when known. */
  sha256?: string;
}

export interface Content {
  /** Directory served by the file servers (qsr serve, gtlsserver, the quic-go server). */
  docroot: string;
  /** The 100 files, f000.bin..f099.bin, random bytes of mixed sizes (1 KiB, then 1 B .. 1 MiB, spread evenly in log scale). */
  fileSizes: number[];
  files: Resource[];
  index: Resource;
  small: Resource;
  /** Files of the deterministic pattern (src/services/pattern.ts), p<N>.bin, for downloads and as upload bodies. */
  patternFile(n: number): string;
}

export interface RunContext {
  /** CI=true: a missing peer is a failure. */
  ci: boolean;
  workRoot: string;
  /** test/fixtures/certs: ca.pem signs ecdsa.pem (localhost, 127.0.0.1, ::1). */
  certDir: string;
  /** True when this process runs in a private network namespace (fixed ports are free, browsers are confined). */
  netns: boolean;
  content: Content;
  /** Seed of the lossy relay's PRNG (QSR_INTEROP_SEED). */
  seed: number;
}

export const FILE_COUNT = 100;
export const BIG = 100_000_000;
export const MEDIUM = 10_000_000;
export const SMALL_REQUESTS = 2000;

const INDEX_HTML = '<!doctype html><html><head><meta charset="utf-8"><title>qsr interop</title></head><body><p id="x">interop over h3</p></body></html>\n';

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

export function sha256File(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1 << 20);
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      h.update(buf.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}


/** Sizes of the 100 files: f000 is 1 KiB (one packet: tshark dissects a whole DATA frame), then 1 B .. 1 MiB. */
export function fileSizes(count = FILE_COUNT): number[] {
  return Array.from({ length: count }, (_, i) => (i === 0 ? 1024 : Math.max(1, Math.round(2 ** (((i - 1) * 20) / (count - 2))))));
}

/** The first `n` bytes of the pattern written to `path` (in 64 KiB blocks). */
function writePatternFile(path: string, n: number): void {
  const fd = openSync(path, 'w');
  try {
    for (let k = 0, left = n; left > 0; k++, left -= PATTERN_BLOCK) {
      const b = patternBlock(k);
      writeSync(fd, left >= PATTERN_BLOCK ? b : b.subarray(0, left));
    }
  } finally {
    closeSync(fd);
  }
}

/** Creates the docroot once per run: index.html, small.txt, 100 seeded random files and the pattern files. */
export function makeContent(dir: string, seed: number): Content {
  mkdirSync(dir, { recursive: true });
  const rnd = prng(seed);
  const sizes = fileSizes();
  const files: Resource[] = sizes.map((size, i) => {
    const name = `f${String(i).padStart(3, '0')}.bin`;
    // Reproducible content: a 32-byte key from the seeded PRNG, expanded by chaining sha256.
    const key = Buffer.from(Array.from({ length: 32 }, () => Math.floor(rnd() * 256)));
    const body = Buffer.allocUnsafe(size);
    let block = key;
    for (let off = 0; off < size; off += 32) {
      block = createHash('sha256').update(block).digest();
      block.copy(body, off, 0, Math.min(32, size - off));
    }
    writeFileSync(join(dir, name), body);
    return { path: `/${name}`, size, sha256: sha256(body) };
  });
  writeFileSync(join(dir, 'index.html'), INDEX_HTML);
  const small = Buffer.from('small response for many requests\n');
  writeFileSync(join(dir, 'small.txt'), small);
  const patternFile = (n: number): string => {
    const p = join(dir, `p${n}.bin`);
    if (!existsSync(p)) writePatternFile(p, n);
    return p;
  };
  patternFile(MEDIUM);
  patternFile(BIG);
  return {
    docroot: dir,
    fileSizes: sizes,
    files,
    index: { path: '/index.html', size: Buffer.byteLength(INDEX_HTML), sha256: sha256(Buffer.from(INDEX_HTML)) },
    small: { path: '/small.txt', size: small.length, sha256: sha256(small) },
    patternFile,
  };
}

/** A fresh random body file (not the pattern), for tests of the harness itself. */
export function writeRandomFile(path: string, size: number): void {
  const fd = openSync(path, 'w');
  try {
    for (let left = size; left > 0; left -= 1 << 20) writeSync(fd, randomBytes(Math.min(left, 1 << 20)));
  } finally {
    closeSync(fd);
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Peer interfaces

export interface ServerInstance {
  /** UDP port on 127.0.0.1. */
  port: number;
  /** The NSS key log this server writes (ours), or null. */
  keylog: string | null;
  alive(): boolean;
  stop(): Promise<void>;
  /** Tail of its logs, for failure reports. */
  logTail(): string;
}

export interface ServerStartOptions {
  workDir: string;
  /** Accept only these TLS 1.3 suites (the server picks ChaCha20 for a client that offers all). */
  ciphers?: string[];
  /** Use the product's fixed ports (router: 4433 and 5001-5003): only inside a private network namespace. */
  fixedPorts: boolean;
}

export interface ServerPeer {
  name: string;
  /** Our own stack (its key log is the one the decrypt case checks). */
  ours: boolean;
  /** Only our client runs against it (gtlsserver, quic-go server). */
  onlyOurClient?: boolean;
  /** Why it cannot run here (a missing program), or null. */
  unavailable(ctx: RunContext): Promise<Unavailable | null>;
  /** true, or why this server cannot be configured to pick a cipher suite. */
  pickCiphers: true | string;
  start(ctx: RunContext, o: ServerStartOptions): Promise<ServerInstance>;
  /** A small HTML page (browsers open it, and the other cases fetch from its origin). */
  page(ctx: RunContext): Resource;
  /** The resource of the 2,000 small requests. */
  small(ctx: RunContext): Resource;
  /** 100 resources of mixed sizes with known content. */
  files(ctx: RunContext): Resource[];
  /** A download of n bytes whose sha256 is known. */
  download(ctx: RunContext, n: number): Resource;
  /** Where a POST goes (answered with JSON {bytes, sha256}), or why this server cannot take uploads. */
  upload: { path: string } | string;
}

export interface Unavailable {
  reason: string;
  /** 'missing': a program is not installed (a failure with CI=true); 'adapter': its adapter is not in this tree. */
  kind: 'missing' | 'adapter' | 'netns';
}

export interface Windows {
  /** Initial connection receive window (initial_max_data). */
  maxData?: number;
  /** Initial receive window of each request stream (initial_max_stream_data_bidi_local). */
  maxStreamData?: number;
}

export interface ClientJob {
  ctx: RunContext;
  workDir: string;
  /** Always 127.0.0.1; the certificate is checked for serverName. */
  host: string;
  port: number;
  serverName: string;
  /** The page a browser opens first (same origin as the requests). */
  page: string;
  /** GETs, all on one connection, sent concurrently; paths may repeat. */
  gets: string[];
  /** Hash every response body (else only its size counts). */
  hash: boolean;
  /** One POST of the first `size` pattern bytes (the file holds exactly them). */
  post?: { path: string; file: string; size: number };
  windows?: Windows;
  /** Offer only these suites. */
  ciphers?: string[];
  /** The client drops this share of the packets it sends and receives itself. */
  loss?: number;
  keyUpdate?: boolean;
  /** Where the client writes its NSS key log. */
  keylog: string;
  /** A capture will be decrypted: no GSO super-datagrams, please. */
  capture?: boolean;
  timeoutMs: number;
}

export interface Got {
  path: string;
  status: number | null;
  bytes: number;
  sha256?: string;
  /** The body of a small answer (uploads). */
  answer?: string;
  /** ALPN / nextHopProtocol of this response, when the client reports it. */
  protocol?: string;
  error?: string;
}

export interface ClientRun {
  responses: Got[];
  /** What went wrong as a whole (no report, a timeout, a crash). */
  error?: string;
  /** TLS 1.3 suite name, when the client reports it. */
  cipher?: string;
  /** Key updates the client initiated. */
  keyUpdates?: number;
  /** Packets the client dropped on purpose (own loss simulation). */
  dropped?: number;
  details: Record<string, unknown>;
}

export interface ClientPeer {
  name: string;
  ours: boolean;
  /** A browser: judged per request by nextHopProtocol, not by counting connections in its key log. */
  browser: boolean;
  unavailable(ctx: RunContext): Promise<Unavailable | null>;
  can: {
    /** Set its receive windows. */
    windows: true | string;
    /** Offer only chosen cipher suites. */
    ciphers: true | string;
    /** Simulate loss itself (else the lossy relay does). */
    ownLoss: boolean;
    keyUpdate: true | string;
  };
  run(job: ClientJob): Promise<ClientRun>;
}

// ---------------------------------------------------------------------------------------------------------------------
// Judging responses

interface Expect {
  path: string;
  status: number;
  size?: number;
  sha256?: string;
}

const expectOf = (r: Resource): Expect => ({ path: r.path, status: 200, size: r.size, sha256: r.sha256 });

/** CLIENT_TRAFFIC_SECRET_0 lines in an NSS key log: one per TLS connection. */
export function keylogConnections(path: string): number | null {
  if (!existsSync(path)) return null;
  return readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.startsWith('CLIENT_TRAFFIC_SECRET_0 ')).length;
}

/** Problems with the responses against what was expected, one line each (empty: all good). */
export function compareResponses(got: readonly Got[], want: readonly Expect[], o: { browser: boolean; hash: boolean }): string[] {
  const problems: string[] = [];
  if (got.length !== want.length) problems.push(`${got.length} responses reported, want ${want.length}`);
  const sizes = new Set<number>();
  for (let i = 0; i < Math.min(got.length, want.length); i++) {
    const g = got[i]!;
    const w = want[i]!;
    const at = `${w.path}${want.length > 1 ? ` (#${i})` : ''}`;
    if (g.error !== undefined && g.error !== '') problems.push(`${at}: ${g.error}`);
    else if (g.status !== w.status) problems.push(`${at}: status ${g.status ?? 'none'}, want ${w.status}`);
    else if (w.size !== undefined && g.bytes !== w.size) problems.push(`${at}: ${g.bytes} bytes, want ${w.size}`);
    else if (o.hash && w.sha256 !== undefined && g.sha256 !== w.sha256) problems.push(`${at}: sha256 ${g.sha256 ?? 'none'} differs (${g.bytes} bytes)`);
    else if (o.browser && g.protocol !== undefined && g.protocol !== 'h3') problems.push(`${at}: came over ${g.protocol || 'an unknown protocol'}, not h3`);
    if (w.size === undefined) sizes.add(g.bytes);
  }
  if (sizes.size > 1) problems.push(`bodies of one resource differ in size: ${short([...sizes])}`);
  return problems;
}

function judge(cell: Cell, run: ClientRun, want: readonly Expect[], o: { hash: boolean; oneConnection: boolean; what: string }, extra: Record<string, unknown> = {}): Outcome {
  const details: Record<string, unknown> = { ...run.details, ...extra };
  if (run.error !== undefined) {
    const done = run.responses.filter((r) => r.status !== null && r.error === undefined).length;
    return fail(`${run.error} (${done}/${want.length} responses complete)`, details);
  }
  const problems = compareResponses(run.responses, want, { browser: cell.client.browser, hash: o.hash });
  if (problems.length > 0) return fail(`${problems.length} of ${want.length} responses wrong: ${short(problems, 3)}`, details);
  if (o.oneConnection && !cell.client.browser) {
    const n = keylogConnections(cell.job.keylog);
    details.connections = n;
    if (n !== null && n !== 1) return fail(`${o.what}: used ${n} connections, want 1`, details);
  }
  const bytes = run.responses.reduce((a, r) => a + r.bytes, 0);
  return pass(`${o.what}: ${want.length} responses, ${bytes} B${o.hash ? ', every body\'s sha256 matches' : ''}`, details);
}

// ---------------------------------------------------------------------------------------------------------------------
// Cases

export interface Cell {
  ctx: RunContext;
  client: ClientPeer;
  server: ServerPeer;
  workDir: string;
  /**
   * The server instance this cell uses, shared by every cell of this server kind and variant: 'default', 'chacha'
   * (configured to accept only ChaCha20) or 'decrypt' (used only by the decrypt cases, so that its captures hold
   * nothing but their own connection). Restarted when it has exited.
   */
  instance(variant?: Variant): Promise<ServerInstance>;
  /** A job for this cell against `inst` (defaults filled in). */
  job: ClientJob;
}

export type Variant = 'default' | 'chacha' | 'decrypt';

export interface CaseDef {
  name: string;
  title: string;
  /** Hard limit for the client (the cell as a whole gets a little more). */
  timeoutMs: number;
  run(cell: Cell): Promise<Outcome>;
}

async function jobFor(cell: Cell, inst: ServerInstance | { port: number }, extra: Partial<ClientJob>): Promise<ClientJob> {
  return { ...cell.job, port: inst.port, ...extra };
}

async function withCapture<T>(cell: Cell, port: number, f: (cap: Capture) => Promise<T>): Promise<T | Outcome> {
  const m = missingPrograms(['tshark']);
  if (m.missing.length > 0) return cell.ctx.ci ? fail(`${m.hint} (CI=true: missing peers are failures)`) : skip(m.hint);
  const cap = await startCapture({ port, file: join(cell.workDir, 'capture.pcapng'), timeoutMs: cell.job.timeoutMs + 30_000, settleMs: 200 });
  try {
    return await f(cap);
  } finally {
    await cap.stop();
  }
}

const isOutcome = (x: unknown): x is Outcome => typeof x === 'object' && x !== null && 'status' in x && 'reason' in x;

/** The cipher suite code point(s) in the ServerHello messages of a capture (Initial packets need no keys). */
async function serverHelloSuites(pcap: string, workDir: string): Promise<string[]> {
  const tshark = findProgram('tshark');
  if (tshark === null) return [];
  const c = spawnBounded({
    name: 'tshark-serverhello',
    cmd: tshark,
    args: ['-r', pcap, '-Y', 'tls.handshake.type == 2', '-T', 'fields', '-e', 'tls.handshake.ciphersuite'],
    workDir,
    timeoutMs: 60_000,
  });
  await c.exited;
  return c
    .stdout()
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}

const SUITE_IDS: Readonly<Record<string, string>> = {
  '0x1301': 'TLS_AES_128_GCM_SHA256',
  '0x1302': 'TLS_AES_256_GCM_SHA384',
  '0x1303': 'TLS_CHACHA20_POLY1305_SHA256',
};

const FEW = 10;

function windowCase(name: string, title: string, w: Windows): CaseDef {
  return {
    name,
    title,
    timeoutMs: 25_000,
    async run(cell) {
      if (cell.client.can.windows !== true) return skip(`peer cannot ${cell.client.can.windows}`);
      const inst = await cell.instance();
      const files = cell.server.files(cell.ctx);
      const big = cell.server.download(cell.ctx, MEDIUM);
      const job = await jobFor(cell, inst, { gets: [...files.map((f) => f.path), big.path], hash: true, windows: w });
      const run = await cell.client.run(job);
      const what = `100 files + ${MEDIUM / 1e6} MB with ${title}`;
      return judge(cell, run, [...files, big].map(expectOf), { hash: true, oneConnection: true, what });
    },
  };
}

export const CASES: readonly CaseDef[] = [
  {
    name: 'handshake',
    title: 'handshake and one GET',
    timeoutMs: 20_000,
    async run(cell) {
      const inst = await cell.instance();
      const page = cell.server.page(cell.ctx);
      const run = await cell.client.run(await jobFor(cell, inst, { gets: [page.path], hash: true }));
      return judge(cell, run, [expectOf(page)], { hash: true, oneConnection: true, what: `GET ${page.path}` });
    },
  },
  {
    name: 'files100',
    title: '100 files of mixed sizes, byte-identical, one connection',
    timeoutMs: 30_000,
    async run(cell) {
      const inst = await cell.instance();
      const files = cell.server.files(cell.ctx);
      const run = await cell.client.run(await jobFor(cell, inst, { gets: files.map((f) => f.path), hash: true }));
      return judge(cell, run, files.map(expectOf), { hash: true, oneConnection: true, what: '100 files' });
    },
  },
  {
    name: 'requests2000',
    title: '2,000 small requests on one connection',
    timeoutMs: 60_000,
    async run(cell) {
      const inst = await cell.instance();
      const small = cell.server.small(cell.ctx);
      const gets = Array.from({ length: SMALL_REQUESTS }, () => small.path);
      const run = await cell.client.run(await jobFor(cell, inst, { gets, hash: false }));
      return judge(cell, run, gets.map(() => expectOf(small)), { hash: false, oneConnection: true, what: `${SMALL_REQUESTS} x GET ${small.path}` });
    },
  },
  {
    name: 'upload100M',
    title: '100 MB upload, sha256 checked by the server',
    timeoutMs: 120_000,
    async run(cell) {
      if (typeof cell.server.upload === 'string') return skip(`server cannot take uploads: ${cell.server.upload}`);
      const inst = await cell.instance();
      const file = cell.ctx.content.patternFile(BIG);
      const post = { path: cell.server.upload.path, file, size: BIG };
      const run = await cell.client.run(await jobFor(cell, inst, { gets: [], post, hash: false }));
      const details = { ...run.details };
      if (run.error !== undefined) return fail(run.error, details);
      const r = run.responses[0];
      if (run.responses.length !== 1 || r === undefined) return fail(`${run.responses.length} responses, want 1`, details);
      if (r.error !== undefined) return fail(`POST ${post.path}: ${r.error}`, details);
      if (r.status !== 200) return fail(`POST ${post.path}: status ${r.status}, want 200 (answer ${String(r.answer).slice(0, 200)})`, details);
      let ans: { bytes?: unknown; sha256?: unknown };
      try {
        ans = JSON.parse(r.answer ?? '') as typeof ans;
      } catch {
        return fail(`POST ${post.path}: the answer is not JSON: ${String(r.answer).slice(0, 200)}`, details);
      }
      const want = patternSha256(BIG);
      if (ans.bytes !== BIG || ans.sha256 !== want) {
        return fail(`server received ${String(ans.bytes)} bytes with sha256 ${String(ans.sha256)}, sent ${BIG} with ${want}`, details);
      }
      return pass(`POST ${BIG} B: the server received every byte (size and sha256 match)`, details);
    },
  },
  {
    name: 'download100M',
    title: '100 MB download, sha256 checked',
    timeoutMs: 120_000,
    async run(cell) {
      const inst = await cell.instance();
      const big = cell.server.download(cell.ctx, BIG);
      const run = await cell.client.run(await jobFor(cell, inst, { gets: [big.path], hash: true }));
      return judge(cell, run, [expectOf(big)], { hash: true, oneConnection: true, what: `GET ${big.path}` });
    },
  },
  windowCase('win-conn64k', 'connection window 64 KiB', { maxData: 64 * 1024 }),
  windowCase('win-conn1m', 'connection window 1 MiB', { maxData: 1024 * 1024 }),
  windowCase('win-stream16k', 'stream window 16 KiB', { maxStreamData: 16 * 1024 }),
  {
    name: 'chacha20',
    title: 'TLS_CHACHA20_POLY1305_SHA256 (the client offers only it, or the server picks it)',
    timeoutMs: 30_000,
    async run(cell) {
      const clientCan = cell.client.can.ciphers === true;
      const serverCan = cell.server.pickCiphers === true;
      if (!clientCan && !serverCan) return skip(`peer cannot ${cell.client.can.ciphers}, and ${cell.server.pickCiphers}`);
      const inst = await cell.instance(serverCan ? 'chacha' : 'default');
      const files = cell.server.files(cell.ctx).slice(0, FEW);
      const job = await jobFor(cell, inst, { gets: files.map((f) => f.path), hash: true, ciphers: clientCan ? [CHACHA] : undefined });
      const r = await withCapture(cell, inst.port, async (cap) => {
        const run = await cell.client.run(job);
        await cap.stop();
        return { run, suites: await serverHelloSuites(cap.pcap, cell.workDir) };
      });
      if (isOutcome(r)) return r;
      const who = `${clientCan ? 'client offers only ChaCha20' : 'client offers all'}, ${serverCan ? 'server accepts only ChaCha20' : 'server default'}`;
      const out = judge(cell, r.run, files.map(expectOf), { hash: true, oneConnection: true, what: `${FEW} files` }, { serverHello: r.suites, setup: who });
      if (out.status !== 'pass') return out;
      const names = r.suites.map((s) => SUITE_IDS[s] ?? s);
      if (names.length === 0) return fail('no ServerHello in the capture', out.details);
      if (names.some((n) => n !== CHACHA)) return fail(`ServerHello chose ${names.join(', ')}, want ${CHACHA} (${who})`, out.details);
      if (r.run.cipher !== undefined && r.run.cipher !== CHACHA) return fail(`the client reports ${r.run.cipher}`, out.details);
      return pass(`${out.reason}; ServerHello: ${CHACHA} (${who})`, out.details);
    },
  },
  {
    name: 'loss5',
    title: '100 files with 5 % packet loss each way',
    timeoutMs: 60_000,
    async run(cell) {
      const inst = await cell.instance();
      const files = cell.server.files(cell.ctx);
      const LOSS = 0.05;
      let relay: Relay | null = null;
      try {
        let job: ClientJob;
        if (cell.client.can.ownLoss) job = await jobFor(cell, inst, { gets: files.map((f) => f.path), hash: true, loss: LOSS });
        else {
          relay = await startRelay({ target: { address: '127.0.0.1', port: inst.port }, loss: LOSS, seed: cell.ctx.seed });
          job = await jobFor(cell, { port: relay.port }, { gets: files.map((f) => f.path), hash: true });
        }
        const run = await cell.client.run(job);
        const how = relay !== null ? `lossy relay (seed ${cell.ctx.seed})` : 'the client itself';
        const stats = relay !== null ? { ...relay.stats } : { dropped: run.dropped };
        const out = judge(cell, run, files.map(expectOf), { hash: true, oneConnection: true, what: '100 files' }, { loss: stats, by: how });
        if (out.status !== 'pass') return out;
        if (relay !== null && (relay.stats.up.dropped === 0 || relay.stats.down.dropped === 0)) return fail(`the relay dropped nothing in one direction: ${JSON.stringify(relay.stats)}`, out.details);
        if (relay === null && !(run.dropped !== undefined && run.dropped > 0)) return fail('the client reported no simulated packet loss', out.details);
        const dropped = relay !== null ? `${relay.stats.up.dropped}/${relay.stats.up.seen} up, ${relay.stats.down.dropped}/${relay.stats.down.seen} down` : `${run.dropped}`;
        return pass(`${out.reason}; ${LOSS * 100} % loss each way by ${how}: ${dropped} datagrams dropped`, out.details);
      } finally {
        await relay?.close();
      }
    },
  },
  {
    name: 'keyupdate',
    title: 'the client initiates a key update, then 100 files',
    timeoutMs: 30_000,
    async run(cell) {
      if (cell.client.can.keyUpdate !== true) return skip(`peer cannot ${cell.client.can.keyUpdate}`);
      const inst = await cell.instance();
      const files = cell.server.files(cell.ctx);
      const run = await cell.client.run(await jobFor(cell, inst, { gets: files.map((f) => f.path), hash: true, keyUpdate: true }));
      const out = judge(cell, run, files.map(expectOf), { hash: true, oneConnection: true, what: '100 files' });
      if (out.status !== 'pass') return out;
      if (!(run.keyUpdates !== undefined && run.keyUpdates > 0)) return fail('the client did not initiate a key update', out.details);
      return pass(`${out.reason}; ${run.keyUpdates} key update(s) initiated by the client`, out.details);
    },
  },
  {
    name: 'decrypt',
    title: "a capture decrypted by tshark with our side's key log",
    timeoutMs: 40_000,
    async run(cell) {
      const inst = await cell.instance('decrypt');
      const files = cell.server.files(cell.ctx).slice(0, FEW);
      const page = cell.server.page(cell.ctx);
      const want = [page, ...files];
      const job = await jobFor(cell, inst, { gets: want.map((f) => f.path), hash: true, capture: true });
      const keylog = cell.client.ours ? job.keylog : inst.keylog;
      if (keylog === null) return fail('neither side of this pair is ours: nothing to check');
      const r = await withCapture(cell, inst.port, async (cap) => {
        const run = await cell.client.run(job);
        await cap.stop();
        return run;
      });
      if (isOutcome(r)) return r;
      const out = judge(cell, r, want.map(expectOf), { hash: true, oneConnection: true, what: `${want.length} GETs` });
      if (out.status !== 'pass') return out;
      if (!existsSync(keylog)) return fail(`key log ${keylog} was not written`, out.details);
      const rep = await decryptReportFiltered(join(cell.workDir, 'capture.pcapng'), keylog);
      const v = h3DecryptVerdict(rep, []);
      const details = { ...out.details, ...v.details, keylog: cell.client.ours ? 'client (ours)' : 'server (ours)' };
      return v.status === 'pass' ? pass(v.reason, details) : fail(v.reason, details);
    },
  },
];

// ---------------------------------------------------------------------------------------------------------------------
// Runner

export interface MatrixOptions {
  clients: readonly ClientPeer[];
  servers: readonly ServerPeer[];
  cases?: readonly CaseDef[];
  /** Tokens naming clients, servers or cases (see selectedCell). */
  only?: readonly string[];
  log?: (line: string) => void;
}

/**
 * `only` tokens name clients, servers or cases. A cell is selected when, in every one of these three dimensions that
 * some token names, it matches one of those tokens: `--only chromium,router` is Chromium against the router, every
 * case; `--only files100,loss5` is those two cases for every pair. A case token also matches by prefix before "-"
 * ("win" selects win-conn64k, win-conn1m and win-stream16k).
 */
export function selectedCell(only: readonly string[] | undefined, client: string, server: string, kase: string, all: { clients: string[]; servers: string[]; cases: string[] }): boolean {
  if (only === undefined || only.length === 0) return true;
  const caseMatch = (t: string, c: string): boolean => c === t || c.startsWith(t + '-');
  const cl = only.filter((t) => all.clients.includes(t));
  const sv = only.filter((t) => all.servers.includes(t));
  const cs = only.filter((t) => all.cases.some((c) => caseMatch(t, c)));
  const unknown = only.filter((t) => !cl.includes(t) && !sv.includes(t) && !cs.includes(t));
  if (unknown.length > 0) throw new Error(`--only: unknown ${unknown.join(', ')} (clients ${all.clients.join(' ')}; servers ${all.servers.join(' ')}; cases ${all.cases.join(' ')})`);
  return (cl.length === 0 || cl.includes(client)) && (sv.length === 0 || sv.includes(server)) && (cs.length === 0 || cs.some((t) => caseMatch(t, kase)));
}

export function pairs(clients: readonly ClientPeer[], servers: readonly ServerPeer[]): [ClientPeer, ServerPeer][] {
  const out: [ClientPeer, ServerPeer][] = [];
  for (const c of clients) for (const s of servers) if (!s.onlyOurClient || c.ours) if (c.ours || s.ours) out.push([c, s]);
  return out;
}

function unavailableOutcome(ctx: RunContext, u: Unavailable): Outcome {
  if (u.kind === 'adapter') return skip(u.reason);
  return ctx.ci ? fail(`${u.reason} (CI=true: missing peers are failures)`) : skip(u.reason);
}

export async function runMatrix(ctx: RunContext, o: MatrixOptions): Promise<CellResult[]> {
  const cases = o.cases ?? CASES;
  const all = { clients: o.clients.map((c) => c.name), servers: o.servers.map((s) => s.name), cases: cases.map((c) => c.name) };
  const results: CellResult[] = [];
  const shared = new Map<string, ServerInstance>();
  const unavailable = new Map<string, Unavailable | null>();
  const check = async (key: string, f: () => Promise<Unavailable | null>): Promise<Unavailable | null> => {
    if (!unavailable.has(key)) unavailable.set(key, await f());
    return unavailable.get(key) ?? null;
  };
  let cellNo = 0;
  try {
    for (const [client, server] of pairs(o.clients, o.servers)) {
      for (const kase of cases) {
        if (!selectedCell(o.only, client.name, server.name, kase.name, all)) continue;
        const workDir = join(ctx.workRoot, `${String(++cellNo).padStart(3, '0')}-${client.name}-${server.name}-${kase.name}`);
        mkdirSync(workDir, { recursive: true });
        const t0 = Date.now();
        let out: Outcome;
        const cu = await check(`c:${client.name}`, () => client.unavailable(ctx));
        const su = await check(`s:${server.name}`, () => server.unavailable(ctx));
        if (cu !== null) out = unavailableOutcome(ctx, cu);
        else if (su !== null) out = unavailableOutcome(ctx, su);
        else {
          const instance = async (variant: Variant = 'default'): Promise<ServerInstance> => {
            const key = `${server.name}-${variant}`;
            const cur = shared.get(key);
            if (cur !== undefined && cur.alive()) return cur;
            if (cur !== undefined) o.log?.(`NOTE ${key} had exited; restarting it. Its log: ${cur.logTail().slice(-500)}`);
            const inst = await server.start(ctx, {
              workDir: join(ctx.workRoot, `server-${key}`),
              // the product's own ports in a private namespace, for the one instance most cases use
              fixedPorts: ctx.netns && variant === 'default',
              ciphers: variant === 'chacha' ? [CHACHA] : undefined,
            });
            shared.set(key, inst);
            return inst;
          };
          const job: ClientJob = {
            ctx,
            workDir,
            host: '127.0.0.1',
            port: 0,
            serverName: 'localhost',
            page: server.page(ctx).path,
            gets: [],
            hash: false,
            keylog: join(workDir, 'client.keylog'),
            timeoutMs: kase.timeoutMs,
          };
          const cell: Cell = { ctx, client, server, workDir, instance, job };
          let timer: NodeJS.Timeout | undefined;
          const guard = new Promise<Outcome>((r) => {
            timer = setTimeout(() => r(fail(`case did not finish within ${kase.timeoutMs + 30_000} ms (harness limit)`)), kase.timeoutMs + 30_000);
          });
          try {
            out = await Promise.race([kase.run(cell), guard]);
          } catch (e) {
            out = fail(`harness error: ${e instanceof Error ? e.message : String(e)}`);
          } finally {
            clearTimeout(timer);
          }
        }
        const r: CellResult = { client: client.name, server: server.name, case: kase.name, durationMs: Date.now() - t0, workDir, ...out };
        results.push(r);
        o.log?.(`${r.status.toUpperCase().padEnd(4)} ${client.name} -> ${server.name} ${kase.name} (${(r.durationMs / 1000).toFixed(1)} s): ${r.reason}`);
      }
    }
  } finally {
    for (const s of shared.values()) await s.stop();
  }
  return results;
}

/** The matrix as text: one row per client -> server pair, one column per case. */
export function formatMatrix(results: readonly CellResult[]): string {
  const cases = [...new Set(results.map((r) => r.case))];
  const rows = [...new Set(results.map((r) => `${r.client} -> ${r.server}`))];
  const w0 = Math.max(13, ...rows.map((r) => r.length));
  const ws = cases.map((c) => Math.max(4, c.length));
  const line = (cells: string[]): string => cells.map((c, i) => c.padEnd(i === 0 ? w0 : ws[i - 1]!)).join(' | ');
  const out = [line(['client -> server', ...cases]), line(['-'.repeat(w0), ...ws.map((w) => '-'.repeat(w))])];
  for (const row of rows) {
    out.push(line([row, ...cases.map((c) => results.find((r) => `${r.client} -> ${r.server}` === row && r.case === c)?.status.toUpperCase() ?? '-')]));
  }
  return out.join('\n');
}
