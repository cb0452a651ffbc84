/**
 * `qsr serve` and `qsr get` as a user runs them: the built CLI (dist/src/cli/qsr.js) in child processes over real
 * UDP on loopback, HTTP/3 (RFC 9114) on our QUIC stack. The server makes its development certificate, the client
 * trusts it with --ca. Checks statuses and sizes, byte-identical saved files, exit codes (0 ok, 1 any failure,
 * 2 usage), multiplexing (-n 20 gives 20 distinct request streams on one connection), HEAD, path traversal with a
 * raw `:path`, access log lines, and graceful SIGTERM.
 * Every child process has a timeout; servers are killed by PID in `after`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Http3Client } from '../../src/h3/client.js';
import { IncomingBody } from '../../src/h3/request-stream.js';
import { loadPemChain } from '../../src/quic/tls/pem.js';
import { QSR, runQsrCaptured, type QsrResult } from './qsr-run.js';



/** Runs `qsr ...args` to completion (killed after `ms`). */
const qsr = (args: string[], cwd: string, ms = 30_000): Promise<QsrResult> => runQsrCaptured(args, { cwd, ms });

interface Server {
  child: ChildProcess;
  port: number;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

const servers: ChildProcess[] = [];

/** Starts `qsr serve` on an ephemeral port and resolves once it printed its address. */
function startServer(cwd: string, extra: string[] = []): Promise<Server> {
  const child = spawn(process.execPath, [QSR, 'serve', '--dir', 'www', '--listen', '127.0.0.1:0', '--data-dir', 'data', ...extra], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  servers.push(child);
  let err = '';
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`qsr serve did not start within 15 s\nstdout: ${out}\nstderr: ${err}`)), 15_000);
    child.stderr.on('data', (d: Buffer) => {
      err += d;
      const m = /serving .* on https:\/\/127\.0\.0\.1:(\d+)\//.exec(err);
      if (m) {
        clearTimeout(timer);
        resolve({ child, port: Number(m[1]), stderr: () => err, exited });
      }
    });
    void exited.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`qsr serve exited with ${code}\nstdout: ${out}\nstderr: ${err}`));
    });
  });
}

interface JsonResult {
  path: string;
  method: string;
  streamId: number | null;
  status: number | null;
  bytes: number;
  ok: boolean;
  headers?: Record<string, string>;
  file?: string;
  error?: string;
}
interface JsonDoc {
  origin: string;
  requests: JsonResult[];
  summary: { requests: number; ok: number; failed: number; bytes: number; wallMs: number; mbPerSec: number };
}

let work = '';
let srv: Server;
let origin = '';
let ca = '';
const big = randomBytes(1024 * 1024);
const INDEX = '<!doctype html><title>qsr</title><h1>hello over HTTP/3</h1>\n';
const NESTED = '{"nested":true}\n';
const SECRET = '{"name":"not-for-you"}\n';

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'qsr-e2e-serve-'));
  mkdirSync(join(work, 'www', 'docs', 'api'), { recursive: true });
  writeFileSync(join(work, 'www', 'index.html'), INDEX);
  writeFileSync(join(work, 'www', 'big.bin'), big);
  writeFileSync(join(work, 'www', 'docs', 'api', 'nested.json'), NESTED);
  writeFileSync(join(work, 'package.json'), SECRET); // one level above the served directory
  srv = await startServer(work);
  origin = `https://localhost:${srv.port}`;
  ca = join(work, 'data', 'certs', 'cert.pem');
});

after(async () => {
  for (const c of servers) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

test('serve: prints its address, the dev certificate path and SPKI hash; key file is 0600', { timeout: 10_000 }, () => {
  const err = srv.stderr();
  assert.match(err, /created development certificate data\/certs\/cert\.pem/);
  assert.match(err, /--ignore-certificate-errors-spki-list=[A-Za-z0-9+/]{43}=/);
  assert.match(err, new RegExp(`serving .*www on https://127\\.0\\.0\\.1:${srv.port}/ \\(HTTP/3\\)`));
  assert.equal(statSync(join(work, 'data', 'certs', 'key.pem')).mode & 0o777, 0o600);
});

test('get: index, 1 MB binary and a nested file: statuses, sizes and types; exit 0', { timeout: 60_000 }, async () => {
  const r = await qsr(['get', `${origin}/`, `${origin}/big.bin`, `${origin}/docs/api/nested.json`, '--ca', ca, '--json'], work);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const doc = JSON.parse(r.stdout) as JsonDoc;
  assert.equal(doc.origin, origin);
  const [index, bin, nested] = doc.requests;
  assert.deepEqual(
    doc.requests.map((x) => [x.path, x.status, x.bytes, x.ok]),
    [
      ['/', 200, Buffer.byteLength(INDEX), true],
      ['/big.bin', 200, big.length, true],
      ['/docs/api/nested.json', 200, Buffer.byteLength(NESTED), true],
    ],
  );
  assert.equal(index.headers?.['content-type'], 'text/html; charset=utf-8');
  assert.equal(bin.headers?.['content-type'], 'application/octet-stream');
  assert.equal(bin.headers?.['content-length'], String(big.length));
  assert.equal(nested.headers?.['content-type'], 'application/json');
  assert.deepEqual({ ...doc.summary, wallMs: 0, mbPerSec: 0 }, { requests: 3, ok: 3, failed: 0, bytes: big.length + Buffer.byteLength(INDEX) + Buffer.byteLength(NESTED), wallMs: 0, mbPerSec: 0 });

  // the table form
  const t = await qsr(['get', `${origin}/`, `${origin}/big.bin`, '--ca', ca], work);
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^stream\s+method\s+path\s+status\s+bytes\s+ms/);
  assert.match(t.stdout, /\bGET\s+\/big\.bin\s+200\s+1048576\b/);
  assert.match(t.stdout, /2 requests, 2 ok, 0 failed, \d+ bytes in [\d.]+ s, [\d.]+ MB\/s\n$/);
});

test('get -o: saved files are byte-identical; / is saved as index.html; repeats get .k', { timeout: 60_000 }, async () => {
  const out = join(work, 'out');
  const r = await qsr(['get', `${origin}/`, `${origin}/big.bin`, `${origin}/docs/api/nested.json`, '-n', '2', '-o', out, '--ca', ca], work);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  assert.deepEqual(readdirSync(out).sort(), ['big.bin', 'big.bin.1', 'index.html', 'index.html.1', 'nested.json', 'nested.json.1']);
  assert.ok(readFileSync(join(out, 'big.bin')).equals(big));
  assert.ok(readFileSync(join(out, 'big.bin.1')).equals(big));
  assert.equal(readFileSync(join(out, 'index.html'), 'utf8'), INDEX);
  assert.equal(readFileSync(join(out, 'nested.json.1'), 'utf8'), NESTED);
});

test('get: a 404 makes the exit code 1; the other requests still succeed', { timeout: 60_000 }, async () => {
  const r = await qsr(['get', `${origin}/`, `${origin}/no/such/file.txt`, '--ca', ca, '--json'], work);
  assert.equal(r.code, 1, r.stderr);
  const doc = JSON.parse(r.stdout) as JsonDoc;
  assert.equal(doc.requests[0].status, 200);
  assert.equal(doc.requests[1].status, 404);
  assert.equal(doc.requests[1].ok, false);
  assert.equal(doc.requests[1].bytes, 'Not Found\n'.length);
  assert.deepEqual([doc.summary.ok, doc.summary.failed], [1, 1]);
});

test('get -n 20: one connection, 20 distinct request streams', { timeout: 60_000 }, async () => {
  const r = await qsr(['get', `${origin}/big.bin`, '-n', '20', '--ca', ca, '--json'], work);
  assert.equal(r.code, 0, r.stderr);
  const doc = JSON.parse(r.stdout) as JsonDoc;
  assert.equal(doc.requests.length, 20);
  const ids = doc.requests.map((x) => x.streamId);
  assert.equal(new Set(ids).size, 20, `stream ids ${ids.join(',')}`);
  for (const id of ids) assert.ok(id !== null && id % 4 === 0, `client-initiated bidirectional stream id, got ${id}`);
  assert.ok(doc.requests.every((x) => x.status === 200 && x.bytes === big.length));
  assert.equal(doc.summary.bytes, 20 * big.length);
});

test('get -X HEAD: content-length and no body', { timeout: 60_000 }, async () => {
  const r = await qsr(['get', `${origin}/big.bin`, '-X', 'HEAD', '--ca', ca, '--json'], work);
  assert.equal(r.code, 0, r.stderr);
  const [x] = (JSON.parse(r.stdout) as JsonDoc).requests;
  assert.equal(x.method, 'HEAD');
  assert.equal(x.status, 200);
  assert.equal(x.headers?.['content-length'], String(big.length));
  assert.equal(x.bytes, 0);
});

test('get -d @FILE: the request body is streamed from the file (GET with a body is served, the body drained)', { timeout: 60_000 }, async () => {
  const r = await qsr(['get', `${origin}/docs/api/nested.json`, '-X', 'GET', '-d', '@' + join(work, 'www', 'big.bin'), '--ca', ca, '--json'], work);
  assert.equal(r.code, 0, r.stderr);
  const [x] = (JSON.parse(r.stdout) as JsonDoc).requests;
  assert.equal(x.status, 200);
  assert.equal(x.bytes, Buffer.byteLength(NESTED));
});

test('get: other methods get 405 with allow', { timeout: 60_000 }, async () => {
  const r = await qsr(['get', `${origin}/`, '-d', 'hello', '--ca', ca, '--json'], work);
  assert.equal(r.code, 1);
  const [x] = (JSON.parse(r.stdout) as JsonDoc).requests;
  assert.equal(x.method, 'POST');
  assert.equal(x.status, 405);
  assert.equal(x.headers?.allow, 'GET, HEAD');
});

test('serve: path traversal with a raw :path is refused', { timeout: 30_000 }, async () => {
  // Http3Client.request normalises URLs, so this goes one level down: a request stream with a hand-made header section.
  const client = await Http3Client.connect(`${origin}/`, { ca: loadPemChain(readFileSync(ca, 'utf8')), serverName: 'localhost' });
  try {
    for (const path of ['/../package.json', '/docs/../../package.json', '/%2e%2e/package.json', '/%2e%2e%2fpackage.json']) {
      const s = await client.session.openRequest();
      const res = new Promise<{ status: number; body: string } | { error: string }>((resolve) => {
        s.onHead = (st) => {
          const b = new IncomingBody(st);
          let text = '';
          b.on('data', (d: Buffer) => (text += d));
          b.on('end', () => resolve({ status: st.response?.status ?? 0, body: text }));
          b.on('error', (e) => resolve({ error: e.message }));
          return b;
        };
        s.onFailure = (e) => resolve({ error: e.message });
      });
      s.sendHeaders([
        [':method', 'GET'],
        [':scheme', 'https'],
        [':authority', `localhost:${srv.port}`],
        [':path', path],
      ]);
      s.finish(null);
      const got = await res;
      // the raw path reaches the handler, which answers 403 (it would leave the root); nothing leaks
      assert.ok('status' in got, `${path}: ${JSON.stringify(got)}`);
      assert.equal(got.status, 403, path);
      assert.ok(!got.body.includes('not-for-you'), path);
    }
  } finally {
    await client.close();
  }
  // and through qsr get: an encoded slash is not normalised by URL parsing
  const r = await qsr(['get', `${origin}/%2e%2e%2fpackage.json`, '--ca', ca, '--json'], work);
  assert.equal(r.code, 1);
  const [x] = (JSON.parse(r.stdout) as JsonDoc).requests;
  assert.ok(x.status === 403 || x.status === 404, String(x.status));
});

test('serve: one access line per request (method path status bytes ms)', { timeout: 10_000 }, () => {
  const err = srv.stderr();
  assert.match(err, /^GET \/big\.bin 200 1048576 [\d.]+ms$/m);
  assert.match(err, /^HEAD \/big\.bin 200 0 [\d.]+ms$/m);
  assert.match(err, /^GET \/no\/such\/file\.txt 404 10 [\d.]+ms$/m);
  assert.match(err, /^POST \/ 405 \d+ [\d.]+ms$/m);
});

test('get: usage errors exit 2 with a message naming the flag or URL', { timeout: 60_000 }, async () => {
  const cases: [string[], RegExp][] = [
    [['get', `${origin}/`, 'https://example.com/x'], /URL 'https:\/\/example\.com\/x' is not on the same origin/],
    [['get', 'http://localhost/'], /only https:\/\//],
    [['get', `${origin}/`, '-n', '0'], /-n/],
    [['get', `${origin}/`, '-n', 'many'], /-n/],
    [['get', `${origin}/`, '--insecure', '--ca', ca], /--insecure and --ca/],
    [['get', `${origin}/`, '--ca', join(work, 'nope.pem')], /--ca: cannot read/],
    [['get', `${origin}/`, '-d', '@' + join(work, 'nope.bin')], /-d: cannot read/],
    [['get', `${origin}/`, '-H', 'no-colon'], /-H: expected 'name: value'/],
    [['get', `${origin}/`, '-H', 'connection: close'], /-H 'connection: close': connection-specific/],
    [['get', `${origin}/`, '-X', 'GE T'], /-X: 'GE T' is not a valid HTTP method/],
    [['get'], /missing required argument/],
    [['get', `${origin}/`, '--bogus'], /unknown option '--bogus'/],
    [['serve'], /--dir/],
    [['serve', '--dir', join(work, 'missing')], /--dir: cannot use/],
    [['serve', '--dir', 'www', '--cert', ca], /--cert needs --key/],
    [['serve', '--dir', 'www', '--listen', '127.0.0.1:70000'], /--listen: port 70000 is out of range/],
  ];
  for (const [args, re] of cases) {
    const r = await qsr(args, work, 15_000);
    assert.equal(r.code, 2, `${args.join(' ')}: exit ${r.code}\n${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
});

test('get: an untrusted certificate fails the requests (exit 1) without --ca; --insecure accepts it', { timeout: 60_000 }, async () => {
  const r = await qsr(['get', `${origin}/`, '--json', '--timeout', '10000'], work);
  assert.equal(r.code, 1);
  const doc = JSON.parse(r.stdout) as JsonDoc;
  assert.equal(doc.summary.failed, 1);
  assert.match(doc.requests[0].error ?? '', /connect/);
  const ok = await qsr(['get', `${origin}/`, '--insecure'], work);
  assert.equal(ok.code, 0, ok.stderr);
});

test('serve: reuses the dev certificate, and SIGTERM closes gracefully with exit 0', { timeout: 30_000 }, async () => {
  const second = await startServer(work);
  assert.match(second.stderr(), /using development certificate data\/certs\/cert\.pem/);
  const r = await qsr(['get', `https://127.0.0.1:${second.port}/`, '--ca', ca], work);
  assert.equal(r.code, 0, r.stderr);
  second.child.kill('SIGTERM');
  const { code } = await second.exited;
  assert.equal(code, 0);
  assert.match(second.stderr(), /SIGTERM, closing/);
});

test('qsr get --timeout: requests the server never answers fail with the timeout and the run ends on time', { timeout: 20_000 }, async () => {
  const { Http3Server } = await import('../../src/h3/server.js');
  const { loadPrivateKey } = await import('../../src/quic/tls/pem.js');
  const { executeGet, planGet } = await import('../../src/cli/get.js');
  const certs = fileURLToPath(new URL('../../../test/fixtures/certs/', import.meta.url));
  // Answers /fast at once and never answers anything else.
  const server = await Http3Server.listen(
    {
      listen: [{ address: '127.0.0.1', port: 0 }],
      certChain: loadPemChain(readFileSync(`${certs}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${certs}ecdsa.key`, 'utf8')),
    },
    (req, res) => {
      if (req.path === '/fast') {
        res.respond(200, [['content-type', 'text/plain']]);
        res.end('ok');
      }
    },
  );
  try {
    const { port } = server.addresses()[0];
    const origin = `https://127.0.0.1:${port}`;
    const plan = planGet([`${origin}/fast`, `${origin}/slow`], { repeat: 3, ca: `${certs}ca.pem`, serverName: 'localhost', timeout: 800 });
    const t0 = Date.now();
    const { results } = await executeGet(plan);
    const took = Date.now() - t0;
    assert.ok(took >= 700 && took < 5000, `the run ended after the 800 ms timeout, took ${took} ms`);
    assert.equal(results.length, 6);
    for (const r of results.filter((x) => x.path === '/fast')) assert.equal(r.ok, true, JSON.stringify(r));
    for (const r of results.filter((x) => x.path === '/slow')) {
      assert.equal(r.ok, false);
      assert.equal(r.error, 'timed out after 800 ms');
    }
  } finally {
    await server.close({ drainMs: 100 });
  }
});
