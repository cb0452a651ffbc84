// The peers of the interop matrix (matrix.ts): one entry per client and per server, each saying what it can do and
// how to drive it. Adding a peer is adding an entry here.
//
// Clients: gtlsclient (ngtcp2 + GnuTLS), qsr-get (ours), chromium, quicgo (tools/peers/quicgo.ts), firefox
// (tools/peers/firefox.ts; needs a private network namespace). Servers: qsr-serve (ours, a directory), router (ours:
// `qsr up --config` with its three services), and for our client only gtlsserver and quicgo-server.

import { existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { patternSha256 } from '../../src/services/pattern.js';
import { runChromiumScript, spkiOfCert, chromiumPath } from './chromium.js';
import {
  sha256File,
  type ClientJob,
  type ClientPeer,
  type ClientRun,
  type Got,
  type Resource,
  type RunContext,
  type ServerInstance,
  type ServerPeer,
  type Unavailable,
} from './matrix.js';
import { parseGetJson } from './ours.js';
import { H3_NO_ERROR, freeUdpPort, missingPrograms, runGtlsClient, spawnBounded, startGtlsServer, waitFor, type Child } from './peers.js';

const qsrJs = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));
const cert = (ctx: RunContext): string => join(ctx.certDir, 'ecdsa.pem');
const key = (ctx: RunContext): string => join(ctx.certDir, 'ecdsa.key');
const ca = (ctx: RunContext): string => join(ctx.certDir, 'ca.pem');

/** A server lives for the whole run at most (the shared ones); it is stopped by the runner. */
const SERVER_LIFETIME_MS = 30 * 60_000;

function missing(programs: string[]): Unavailable | null {
  const m = missingPrograms(programs);
  return m.missing.length > 0 ? { reason: m.hint, kind: 'missing' } : null;
}

function freeTcpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      s.close(() => resolve(typeof a === 'object' && a !== null ? a.port : 0));
    });
  });
}

function instanceOf(child: Child, port: number, keylog: string | null, extraStop?: () => Promise<void>): ServerInstance {
  let stopped = false;
  return {
    port,
    keylog,
    alive: () => child.isRunning(),
    async stop() {
      if (stopped) return;
      stopped = true;
      await child.stop('SIGTERM', 12_000);
      await extraStop?.();
    },
    logTail: () => child.output().slice(-3000),
  };
}

const fileResources = (ctx: RunContext): Resource[] => ctx.content.files;

// ---------------------------------------------------------------------------------------------------------------------
// Servers

const qsrServe: ServerPeer = {
  name: 'qsr-serve',
  ours: true,
  unavailable: () => Promise.resolve(null),
  pickCiphers: true,
  async start(ctx, o) {
    mkdirSync(o.workDir, { recursive: true });
    const port = await freeUdpPort('127.0.0.1');
    const keylog = join(o.workDir, `serve-${port}.keylog`);
    const args = [qsrJs, 'serve', '--dir', ctx.content.docroot, '--listen', `127.0.0.1:${port}`, '--cert', cert(ctx), '--key', key(ctx), '--keylog', keylog];
    if (o.ciphers !== undefined) args.push('--ciphers', o.ciphers.join(','));
    const child = spawnBounded({ name: 'qsr-serve', cmd: process.execPath, args, workDir: o.workDir, timeoutMs: SERVER_LIFETIME_MS });
    const up = await waitFor(() => !child.isRunning() || /serving .* on https:\/\/127\.0\.0\.1:/.test(child.stderr()), 15_000);
    if (!up || !child.isRunning()) {
      await child.stop('SIGKILL', 1000);
      throw new Error(`qsr serve did not start: ${child.output().slice(-1000)}`);
    }
    return instanceOf(child, port, keylog);
  },
  page: (ctx) => ctx.content.index,
  small: (ctx) => ctx.content.small,
  files: fileResources,
  download: (ctx, n) => ({ path: `/${basename(ctx.content.patternFile(n))}`, size: n, sha256: patternSha256(n) }),
  upload: 'qsr serve is a static file server (GET and HEAD only); uploads to our server are checked through the router',
};

const ROUTER_PORTS = { h3: 4433, video: 5001, text: 5002, control: 5003 };

const router: ServerPeer = {
  name: 'router',
  ours: true,
  unavailable: () => Promise.resolve(null),
  pickCiphers: true,
  async start(ctx, o) {
    mkdirSync(o.workDir, { recursive: true });
    const ports = o.fixedPorts
      ? ROUTER_PORTS
      : { h3: await freeUdpPort('127.0.0.1'), video: await freeTcpPort(), text: await freeTcpPort(), control: await freeTcpPort() };
    const keylog = join(o.workDir, `router-${ports.h3}.keylog`);
    const quic = o.ciphers !== undefined ? `quic: { ciphers: [${o.ciphers.join(', ')}] }\n` : '';
    const config = join(o.workDir, `router-${ports.h3}.yaml`);
    writeFileSync(
      config,
      `# interop matrix: the router with its three services (qsr up)
listen: ["127.0.0.1:${ports.h3}"]
tls: { cert: ${JSON.stringify(cert(ctx))}, key: ${JSON.stringify(key(ctx))} }
dataDir: ${JSON.stringify(join(o.workDir, `state-${ports.h3}`))}
keylog: ${JSON.stringify(keylog)}
accessLog: ${JSON.stringify(join(o.workDir, `access-${ports.h3}.log`))}
timeouts: { drainMs: 2000 }
${quic}routes:
  - { name: video, prefix: /video, upstreams: ["http://127.0.0.1:${ports.video}"] }
  - { name: text, prefix: /text, upstreams: ["http://127.0.0.1:${ports.text}"] }
  - { name: control, prefix: /control, upstreams: ["http://127.0.0.1:${ports.control}"] }
services: { video: { port: ${ports.video} }, text: { port: ${ports.text} }, control: { port: ${ports.control} } }
`,
    );
    const child = spawnBounded({ name: `router-${ports.h3}`, cmd: process.execPath, args: [qsrJs, 'up', '--config', config], workDir: o.workDir, timeoutMs: SERVER_LIFETIME_MS });
    const up = await waitFor(() => !child.isRunning() || /quic-stream-router is up/.test(child.stdout()), 20_000);
    if (!up || !child.isRunning()) {
      await child.stop('SIGKILL', 1000);
      throw new Error(`qsr up did not start: ${child.output().slice(-1500)}`);
    }
    return instanceOf(child, ports.h3, keylog);
  },
  page: () => ({ path: '/text/sample' }),
  small: () => ({ path: '/text/sample' }),
  // The video service's deterministic download in the same 100 sizes as the files.
  files: (ctx) => ctx.content.fileSizes.map((n) => ({ path: `/video/bytes?n=${n}`, size: n, sha256: patternSha256(n) })),
  download: (_ctx, n) => ({ path: `/video/bytes?n=${n}`, size: n, sha256: patternSha256(n) }),
  upload: { path: '/video' },
};

const gtlsserver: ServerPeer = {
  name: 'gtlsserver',
  ours: false,
  onlyOurClient: true,
  unavailable: () => Promise.resolve(missing(['gtlsserver'])),
  pickCiphers: true,
  async start(ctx, o) {
    mkdirSync(o.workDir, { recursive: true });
    const port = await freeUdpPort('127.0.0.1');
    const child = await startGtlsServer({
      workDir: o.workDir,
      addr: '127.0.0.1',
      port,
      docroot: ctx.content.docroot,
      key: key(ctx),
      cert: cert(ctx),
      quiet: true,
      ciphers: o.ciphers,
      keylogFile: join(o.workDir, `gtlsserver-${port}.keylog`),
      timeoutMs: SERVER_LIFETIME_MS,
      name: `gtlsserver-${port}`,
    });
    return instanceOf(child, port, null);
  },
  page: (ctx) => ctx.content.index,
  small: (ctx) => ctx.content.small,
  files: fileResources,
  download: (ctx, n) => ({ path: `/${basename(ctx.content.patternFile(n))}`, size: n, sha256: patternSha256(n) }),
  upload: 'gtlsserver reads and discards request bodies: it cannot report what it received',
};

// quic-go (tools/peers/quicgo.ts, by another helper): loaded at run time so that this file compiles without it.
interface QuicGoModule {
  buildQuicGo(): Promise<{ client: string; server: string } | { error: string }>;
  runQuicGoClient(o: Record<string, unknown>): Promise<{
    ok: boolean;
    error?: string;
    report?: { requests: { path: string; status: number; bytes: number; sha256: string; error?: string; body?: string }[]; alpn?: string; cipher?: string; error?: string };
    exit?: { timedOut: boolean };
    stderr: string;
  }>;
  startQuicGoServer(o: Record<string, unknown>): Promise<{ child: Child; port: number; stop(graceMs?: number): Promise<unknown> } | { error: string }>;
}

async function loadModule<T>(file: string): Promise<T | null> {
  const url = new URL(file, import.meta.url);
  if (!existsSync(fileURLToPath(url))) return null;
  return (await import(url.href)) as T;
}

let quicGoBuild: Promise<{ client: string; server: string } | { error: string } | null> | undefined;
/** Builds the quic-go programs once per run (buildQuicGo caches across runs too). */
function quicGo(): Promise<{ mod: QuicGoModule; bin: { client: string; server: string } } | Unavailable> {
  quicGoBuild ??= (async () => {
    const mod = await loadModule<QuicGoModule>('../../tools/peers/quicgo.js');
    return mod === null ? null : mod.buildQuicGo();
  })();
  return quicGoBuild.then(async (b) => {
    if (b === null) return { reason: 'adapter tools/peers/quicgo.ts is not in this tree yet', kind: 'adapter' as const };
    if ('error' in b) return { reason: `quic-go: ${b.error}`, kind: 'missing' as const };
    return { mod: (await loadModule<QuicGoModule>('../../tools/peers/quicgo.js'))!, bin: b };
  });
}

const quicgoServer: ServerPeer = {
  name: 'quicgo-server',
  ours: false,
  onlyOurClient: true,
  async unavailable() {
    const q = await quicGo();
    return 'reason' in q ? q : null;
  },
  pickCiphers: 'the quic-go server cannot restrict its TLS 1.3 suites (crypto/tls has no setting for them)',
  async start(ctx, o) {
    const q = await quicGo();
    if ('reason' in q) throw new Error(q.reason);
    mkdirSync(o.workDir, { recursive: true });
    const s = await q.mod.startQuicGoServer({
      addr: '127.0.0.1',
      port: 0,
      certFile: cert(ctx),
      keyFile: key(ctx),
      dir: ctx.content.docroot,
      quiet: true,
      maxTimeMs: SERVER_LIFETIME_MS,
      workDir: o.workDir,
      bin: q.bin.server,
    });
    if ('error' in s) throw new Error(s.error);
    return instanceOf(s.child, s.port, null);
  },
  page: (ctx) => ctx.content.index,
  small: (ctx) => ctx.content.small,
  files: fileResources,
  download: (_ctx, n) => ({ path: `/bytes?n=${n}`, size: n, sha256: patternSha256(n) }),
  upload: { path: '/upload' },
};

export const SERVERS: readonly ServerPeer[] = [qsrServe, router, gtlsserver, quicgoServer];

// ---------------------------------------------------------------------------------------------------------------------
// Clients

const url = (job: ClientJob, path: string): string => `https://${job.host}:${job.port}${path}`;

function hashSaved(file: string | undefined): { bytes: number; sha256?: string } {
  if (file === undefined || !existsSync(file)) return { bytes: 0 };
  return { bytes: statSync(file).size, sha256: sha256File(file) };
}

const gtlsclient: ClientPeer = {
  name: 'gtlsclient',
  ours: false,
  browser: false,
  unavailable: () => Promise.resolve(missing(['gtlsclient'])),
  can: { windows: true, ciphers: true, ownLoss: true, keyUpdate: true },
  async run(job) {
    const dl = join(job.workDir, 'download');
    const paths = job.post !== undefined ? [job.post.path] : job.gets;
    const save = job.hash || job.post !== undefined;
    if (save) mkdirSync(dl, { recursive: true });
    const same = paths.every((p) => p === paths[0]);
    const extra: string[] = [];
    if (job.post !== undefined) extra.push('-d', job.post.file, '-m', 'POST');
    if (job.windows?.maxData !== undefined) extra.push(`--max-data=${job.windows.maxData}`);
    if (job.windows?.maxStreamData !== undefined) extra.push(`--max-stream-data-bidi-local=${job.windows.maxStreamData}`);
    const c = await runGtlsClient({
      workDir: job.workDir,
      host: job.host,
      port: job.port,
      urls: (same ? [paths[0]!] : paths).map((p) => url(job, p)),
      nstreams: paths.length,
      download: save ? dl : undefined,
      keylogFile: job.keylog,
      ciphers: job.ciphers,
      txLoss: job.loss,
      rxLoss: job.loss,
      keyUpdate: job.keyUpdate === true ? '50ms' : undefined,
      delayStream: job.keyUpdate === true ? '300ms' : undefined,
      idleTimeout: '5s',
      timeoutMs: job.timeoutMs,
      extraArgs: extra,
    });
    const r = c.result;
    const lengths = new Map<number, number>();
    for (const m of c.output.matchAll(/^http: stream 0x([0-9a-f]+) \[content-length: (\d+)\]$/gm)) lengths.set(parseInt(m[1]!, 16), Number(m[2]));
    const responses: Got[] = paths.map((path, i) => {
      const sid = 4 * i;
      const status = r.statuses.get(sid) ?? null;
      const close = r.streamCloses.get(sid);
      const got: Got = { path, status, bytes: lengths.get(sid) ?? 0 };
      if (close !== H3_NO_ERROR) got.error = close === undefined ? 'the stream did not finish' : `the stream closed with error code 0x${close.toString(16)}`;
      if (save) {
        const file = join(dl, basename(path));
        const h = hashSaved(file);
        got.bytes = h.bytes;
        got.sha256 = h.sha256;
        if (job.post !== undefined && existsSync(file)) got.answer = readFileSync(file, 'utf8');
      }
      return got;
    });
    const run: ClientRun = {
      responses,
      cipher: r.suite,
      keyUpdates: r.keyUpdatesInitiated,
      dropped: (c.output.match(/\*\* Simulated (incoming|outgoing) packet loss \*\*/g) ?? []).length,
      details: { exit: c.exit, alpn: r.alpn, cipher: r.cipher, errors: r.errors.slice(0, 5), log: join(job.workDir, 'gtlsclient.stderr') },
    };
    const incomplete = responses.some((g) => g.error !== undefined);
    if (c.exit.timedOut) run.error = `gtlsclient hit the hard limit of ${job.timeoutMs} ms`;
    else if (!r.handshakeCompleted) run.error = `gtlsclient: the handshake did not complete${r.errors.length > 0 ? ` (${r.errors[0]})` : ''}`;
    else if (incomplete && r.errors.length > 0) run.error = `gtlsclient: ${r.errors[0]}`;
    return run;
  },
};

const qsrGet: ClientPeer = {
  name: 'qsr-get',
  ours: true,
  browser: false,
  unavailable: () => Promise.resolve(null),
  can: { windows: true, ciphers: true, ownLoss: false, keyUpdate: 'initiate a key update (qsr get has no option for it)' },
  async run(job) {
    const paths = job.post !== undefined ? [job.post.path] : job.gets;
    const same = paths.length > 1 && paths.every((p) => p === paths[0]);
    const out = join(job.workDir, 'download');
    const args = [qsrJs, 'get', ...(same ? [url(job, paths[0]!), '-n', String(paths.length)] : paths.map((p) => url(job, p)))];
    args.push('--json', '--ca', ca(job.ctx), '--server-name', job.serverName, '--keylog', job.keylog, '--timeout', String(Math.max(1000, job.timeoutMs - 3000)));
    if (job.hash || job.post !== undefined) args.push('-o', out);
    if (job.post !== undefined) args.push('-X', 'POST', '-d', `@${job.post.file}`);
    if (job.windows?.maxData !== undefined) args.push('--max-data', String(job.windows.maxData));
    if (job.windows?.maxStreamData !== undefined) args.push('--max-stream-data', String(job.windows.maxStreamData));
    if (job.ciphers !== undefined) args.push('--ciphers', job.ciphers.join(','));
    const child = spawnBounded({ name: 'qsr-get', cmd: process.execPath, args, workDir: job.workDir, timeoutMs: job.timeoutMs });
    const exit = await child.exited;
    const doc = parseGetJson(child.stdout());
    const details: Record<string, unknown> = { exit, stderr: child.stderr().slice(-1000), log: child.stdoutPath };
    if (doc instanceof Error) return { responses: [], error: exit.timedOut ? `qsr get hit the hard limit of ${job.timeoutMs} ms` : doc.message, details };
    details.summary = doc.summary;
    const responses: Got[] = doc.requests.map((q) => {
      const g: Got = { path: q.path, status: q.status, bytes: q.bytes };
      if (q.error !== undefined && !(q.status !== null && q.status >= 400 && q.error === `HTTP ${q.status}`)) g.error = q.error;
      if (q.file !== undefined) {
        const h = hashSaved(q.file);
        g.sha256 = h.sha256;
        if (job.post !== undefined) g.answer = readFileSync(q.file, 'utf8');
      }
      return g;
    });
    const run: ClientRun = { responses, details };
    if (doc.error !== undefined) run.error = `qsr get: ${doc.error}`;
    else if (exit.timedOut) run.error = `qsr get hit the hard limit of ${job.timeoutMs} ms`;
    return run;
  },
};

// Browsers: one page script for Chromium and Firefox. It runs in the page (same origin, so on the page's connection),
// sends the GETs with up to BROWSER_CONCURRENCY in flight (cache: no-store), hashes each body with crypto.subtle, or
// POSTs the pattern of src/services/pattern.ts generated in the page, and reports per response the nextHopProtocol from
// the resource timing. The bound is Chromium's: with 2,000 fetches pending at once it sends a STREAMS_BLOCKED frame for
// each one waiting for a stream and closes its own connection with QUIC_TOO_MANY_BUFFERED_CONTROL_FRAMES after ~1,000
// of them (against gtlsserver just as against our servers); a page with 100 in flight is what a real page does.
const BROWSER_CONCURRENCY = 100;

function pageScript(job: ClientJob): string {
  const arg = { gets: job.gets, hash: job.hash, concurrency: BROWSER_CONCURRENCY, post: job.post === undefined ? null : { path: job.post.path, size: job.post.size } };
  return `(async (a) => {
  const hex = (b) => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
  performance.setResourceTimingBufferSize(a.gets.length + 100);
  performance.clearResourceTimings();
  const protocols = (path) => performance.getEntriesByName(new URL(path, location.href).href).map((e) => e.nextHopProtocol);
  if (a.post !== null) {
    const BLOCK = 65536;
    const base = new Uint8Array(BLOCK);
    for (let i = 0; i < BLOCK; i++) base[i] = (i * 251 + (i >>> 8) * 13 + 7) & 0xff;
    const body = new Uint8Array(a.post.size);
    for (let off = 0, k = 0; off < a.post.size; off += BLOCK, k++) {
      const len = Math.min(BLOCK, a.post.size - off);
      body.set(len === BLOCK ? base : base.subarray(0, len), off);
      for (let j = 0; j < 8 && j < len; j++) body[off + j] = Math.floor(k / 2 ** (8 * j)) % 256;
    }
    try {
      const r = await fetch(a.post.path, { method: 'POST', body, cache: 'no-store', headers: { 'content-type': 'application/octet-stream' } });
      const answer = await r.text();
      return JSON.stringify([{ path: a.post.path, status: r.status, bytes: answer.length, answer, protocol: protocols(a.post.path)[0] || '' }]);
    } catch (e) {
      return JSON.stringify([{ path: a.post.path, status: null, bytes: 0, error: String(e) }]);
    }
  }
  const one = async (path) => {
    try {
      const r = await fetch(path, { cache: 'no-store' });
      const b = await r.arrayBuffer();
      const g = { path, status: r.status, bytes: b.byteLength };
      if (a.hash) g.sha256 = hex(await crypto.subtle.digest('SHA-256', b));
      return g;
    } catch (e) {
      return { path, status: null, bytes: 0, error: String(e) };
    }
  };
  // At most a.concurrency requests in flight (workers taking the next index), results in request order.
  const out = new Array(a.gets.length);
  let next = 0;
  const worker = async () => {
    while (next < a.gets.length) {
      const i = next++;
      out[i] = await one(a.gets[i]);
    }
  };
  await Promise.all(Array.from({ length: Math.min(a.concurrency, a.gets.length) }, worker));
  const seen = new Map();
  for (const g of out) {
    const list = seen.get(g.path) || protocols(g.path);
    seen.set(g.path, list);
    g.protocol = list.shift() || '';
  }
  return JSON.stringify(out);
})(${JSON.stringify(arg)})`;
}

function parsePageValue(v: unknown): Got[] | Error {
  try {
    const x = typeof v === 'string' ? (JSON.parse(v) as unknown) : v;
    if (!Array.isArray(x)) return new Error(`page script returned ${JSON.stringify(x)?.slice(0, 200)}`);
    return x as Got[];
  } catch (e) {
    return new Error(`page script value is not JSON: ${(e as Error).message}`);
  }
}

const BROWSER_CANNOT_WINDOWS = 'set its flow-control windows (no browser option for them)';

const chromium: ClientPeer = {
  name: 'chromium',
  ours: false,
  browser: true,
  unavailable: () => Promise.resolve(chromiumPath() === null ? { reason: 'not installed: apt-get install chromium', kind: 'missing' as const } : null),
  can: { windows: BROWSER_CANNOT_WINDOWS, ciphers: 'restrict its cipher suites (no option for TLS 1.3 suites)', ownLoss: false, keyUpdate: 'initiate a key update on request' },
  async run(job) {
    const r = await runChromiumScript({
      url: url(job, job.page),
      spkiBase64: spkiOfCert(cert(job.ctx)),
      workDir: job.workDir,
      timeoutMs: job.timeoutMs,
      keylogFile: job.keylog,
      script: pageScript(job),
    });
    const details: Record<string, unknown> = { exit: r.exitCode, timedOut: r.timedOut, netlogErrors: r.netlog.errors.slice(0, 5), sessions: r.netlog.quicSessions, netlog: r.netlogFile };
    if (r.error !== undefined) return { responses: [], error: `chromium: ${r.error}${r.netlog.errors.length > 0 ? ` (${r.netlog.errors[0]})` : ''}`, details };
    const got = parsePageValue(r.value);
    if (got instanceof Error) return { responses: [], error: got.message, details };
    return { responses: got, details };
  },
};

const quicgoClient: ClientPeer = {
  name: 'quicgo',
  ours: false,
  browser: false,
  async unavailable() {
    const q = await quicGo();
    return 'reason' in q ? q : null;
  },
  can: { windows: true, ciphers: 'restrict its TLS 1.3 suites (crypto/tls has no setting for them)', ownLoss: false, keyUpdate: 'initiate a key update on request' },
  async run(job) {
    const q = await quicGo();
    if ('reason' in q) return { responses: [], error: q.reason, details: {} };
    const paths = job.post !== undefined ? [job.post.path] : job.gets;
    const same = paths.length > 1 && paths.every((p) => p === paths[0]);
    // A window that does not grow: initial = max (quic-go auto-tunes between them).
    const w = job.windows;
    const windows =
      w === undefined
        ? undefined
        : {
            ...(w.maxData !== undefined ? { initialConn: w.maxData, maxConn: w.maxData } : {}),
            ...(w.maxStreamData !== undefined ? { initialStream: w.maxStreamData, maxStream: w.maxStreamData } : {}),
          };
    const r = await q.mod.runQuicGoClient({
      urls: (same ? [paths[0]!] : paths).map((p) => url(job, p)),
      requests: paths.length,
      concurrency: Math.min(100, paths.length),
      method: job.post !== undefined ? 'POST' : 'GET',
      bodyFile: job.post?.file,
      caFile: ca(job.ctx),
      serverName: job.serverName,
      keylogFile: job.keylog,
      windows,
      timeoutMs: Math.max(1000, job.timeoutMs - 10_000),
      bodyPreview: job.post !== undefined ? 4096 : undefined,
      workDir: job.workDir,
      bin: q.bin.client,
    });
    const details: Record<string, unknown> = { exit: r.exit, stderr: r.stderr.slice(-1000), alpn: r.report?.alpn, cipher: r.report?.cipher };
    if (r.report === undefined) return { responses: [], error: `quic-go client: ${r.error ?? 'no report'}`, details };
    const responses: Got[] = r.report.requests.map((x) => ({
      path: x.path,
      status: x.status === 0 ? null : x.status,
      bytes: x.bytes,
      sha256: x.sha256,
      ...(x.body !== undefined ? { answer: x.body } : {}),
      ...(x.error !== undefined ? { error: x.error } : {}),
    }));
    const run: ClientRun = { responses, cipher: r.report.cipher, details };
    if (r.exit?.timedOut === true) run.error = `quic-go client hit the hard limit of ${job.timeoutMs} ms`;
    return run;
  },
};

// Firefox (tools/peers/firefox.ts, by another helper): loaded at run time so that this file compiles without it.
interface FirefoxModule {
  firefoxUnavailable(): string | null;
  runFirefox(o: Record<string, unknown>): Promise<{
    h3: boolean;
    loads: { attempt: number; ok: boolean; error?: string; protocol: string | null }[];
    scripts: Record<string, { ok: boolean; value?: unknown; error?: string }>;
    fatal?: string;
    exit: { timedOut: boolean };
    logBase: string;
  }>;
}

const firefox: ClientPeer = {
  name: 'firefox',
  ours: false,
  browser: true,
  async unavailable(ctx) {
    const mod = await loadModule<FirefoxModule>('../../tools/peers/firefox.js');
    if (mod === null) return { reason: 'adapter tools/peers/firefox.ts is not in this tree yet', kind: 'adapter' };
    const why = mod.firefoxUnavailable();
    if (why !== null) return { reason: why, kind: 'missing' };
    if (!ctx.netns) return { reason: 'Firefox runs only inside a private network namespace (run the matrix as root: it re-executes itself under unshare -n)', kind: 'netns' };
    return null;
  },
  // Firefox's receive windows are prefs (network.http.http3.max_data / max_stream_data).
  can: { windows: true, ciphers: 'restrict its cipher suites (no pref for TLS 1.3 suites)', ownLoss: false, keyUpdate: 'initiate a key update on request' },
  async run(job) {
    const mod = await loadModule<FirefoxModule>('../../tools/peers/firefox.js');
    const prefs: Record<string, number> = {};
    if (job.windows?.maxData !== undefined) prefs['network.http.http3.max_data'] = job.windows.maxData;
    if (job.windows?.maxStreamData !== undefined) prefs['network.http.http3.max_stream_data'] = job.windows.maxStreamData;
    if (mod === null) return { responses: [], error: 'adapter tools/peers/firefox.ts is not in this tree', details: {} };
    const r = await mod.runFirefox({
      workDir: job.workDir,
      pageUrl: url(job, job.page),
      h3Port: job.port,
      certPem: ca(job.ctx),
      scripts: [{ name: 'job', expression: pageScript(job), timeoutMs: job.timeoutMs }],
      keylogFile: job.keylog,
      ...(job.capture === true ? { maxGsoSegments: 1 } : {}),
      prefs,
      timeoutMs: job.timeoutMs,
    });
    const details: Record<string, unknown> = { h3: r.h3, loads: r.loads, fatal: r.fatal, exit: r.exit, logs: `${r.logBase}.*` };
    const s = r.scripts.job;
    if (!r.h3) return { responses: [], error: `firefox: the page never came over h3 (${r.loads.map((l) => l.error ?? l.protocol).join('; ')})`, details };
    if (s === undefined || !s.ok) return { responses: [], error: `firefox: ${s?.error ?? r.fatal ?? 'the script did not run'}`, details };
    const got = parsePageValue(s.value);
    if (got instanceof Error) return { responses: [], error: got.message, details };
    return { responses: got, details };
  },
};

export const CLIENTS: readonly ClientPeer[] = [gtlsclient, qsrGet, chromium, quicgoClient, firefox];
