/**
 * End-to-end tests of the stream router as a user runs it: `qsr up --config FILE` (router + video/text/control
 * services) on free loopback ports, driven by our own client (`qsr client`, Http3Client), by real peers (ngtcp2's
 * gtlsclient, headless Chromium over HTTP/3) and checked on the wire with tshark (`qsr capture`). Covers RFC 9114
 * request streams multiplexed on one QUIC connection (§4.1, §6.1), RFC 9001 §5 secrets (key log) for decryption,
 * configuration errors and SIGHUP reload without dropping connections.
 *
 * gtlsclient / chromium / tshark tests are skipped when the program is missing, unless CI=true (then they fail).
 * Every process runs under a hard timeout and is stopped by its own PID; every test checks afterwards that the
 * router's and services' ports are free again (nothing left running).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync, createWriteStream } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Http3Client } from '../../src/h3/client.js';
import { loadPemChain } from '../../src/quic/tls/pem.js';
import { jsonLines, missingPrograms, runGtlsClient, waitFor } from '../interop/peers.js';
import { decryptReport, formatReport } from '../../src/obs/capture.js';
import { chromiumPath, runChromiumH3, spkiOfCert } from '../interop/chromium.js';
import {
  QSR,
  allocatePorts,
  portFree,
  runQsr,
  startRouter,
  writeConfig,
  type RouterPorts,
  type RunningRouter,
} from './router-helpers.js';

const CI = process.env.CI === 'true';
const SAMPLE_SENTENCE = 'The quick brown fox jumps over the lazy dog.';

function skipUnless(programs: string[], chromium = false): string | false {
  const { missing, hint } = missingPrograms(programs);
  const reasons = [...(missing.length ? [hint] : []), ...(chromium && chromiumPath() === null ? ['not installed: apt-get install chromium'] : [])];
  return reasons.length > 0 && !CI ? reasons.join('; ') : false;
}

/** The service a path is routed to by the base configuration. */
function serviceFor(path: string): string {
  const m = /^\/(video|text|control)(\/|\?|$)/.exec(path);
  assert.ok(m, `unexpected path ${path}`);
  return m[1]!;
}

/** Stops the router and asserts that nothing of it keeps running (its ports and its services' ports are free). */
async function stopAndCheck(r: RunningRouter): Promise<void> {
  const exit = await r.stop();
  assert.equal(exit.code, 0, `qsr up should exit 0 on SIGTERM (${JSON.stringify(exit)}); stderr: ${r.stderr().slice(-1500)}`);
  await assertPortsFree(r.ports);
}

async function assertPortsFree(ports: RouterPorts): Promise<void> {
  assert.ok(await portFree(ports.router, true), `router port ${ports.router} still bound`);
  for (const name of ['video', 'text', 'control'] as const) {
    assert.ok(await portFree(ports[name]), `${name} service port ${ports[name]} still bound`);
  }
}

/** Runs `body` with a started router; always stops it (by PID) and checks nothing is left. */
async function withRouter(opts: Parameters<typeof startRouter>[0], body: (r: RunningRouter) => Promise<void>): Promise<void> {
  const r = await startRouter(opts);
  let failed = true;
  try {
    await body(r);
    failed = false;
  } finally {
    if (failed) await r.stop();
    else {
      await stopAndCheck(r);
      r.remove(); // kept when the test failed: logs, config and captures stay in r.dir
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------

interface ClientJson {
  url: string;
  streams: { streamId: number | null; method: string; path: string; status: number | null; service: string | null; error: string | null }[];
  failed: number;
}

test('qsr client --streams 12: every stream 200 from the service its route names, all on one connection', { timeout: 90_000 }, async () => {
  await withRouter({}, async (r) => {
    const run = await runQsr(['client', '--url', `https://localhost:${r.port}`, '--ca', r.certPath, '--streams', '12', '--json'], {
      workDir: r.dir,
      timeoutMs: 45_000,
      name: 'client',
    });
    assert.equal(run.exit.code, 0, `client: ${JSON.stringify(run.exit)}\n${run.stdout}\n${run.stderr}`);
    const out = JSON.parse(run.stdout) as ClientJson;
    assert.equal(out.failed, 0);
    assert.equal(out.streams.length, 12);
    const ids = new Set<number>();
    for (const s of out.streams) {
      assert.equal(s.status, 200, JSON.stringify(s));
      assert.equal(s.error, null, JSON.stringify(s));
      assert.equal(s.service, serviceFor(s.path), `x-service for ${s.path}: ${JSON.stringify(s)}`);
      assert.equal(typeof s.streamId, 'number');
      // Client-initiated bidirectional streams (RFC 9000 §2.1).
      assert.equal(s.streamId! % 4, 0, `stream id ${s.streamId}`);
      ids.add(s.streamId!);
    }
    assert.equal(ids.size, 12, 'distinct stream ids');
    assert.deepEqual(new Set(out.streams.map((s) => serviceFor(s.path))), new Set(['video', 'text', 'control']));

    // The router's access log: one line per stream, all with the same QUIC connection, routed as the client saw.
    await waitFor(() => r.accessLog().length >= 12, 5000);
    const log = r.accessLog();
    assert.equal(log.length, 12, r.stdout());
    assert.equal(new Set(log.map((l) => l.connectionId)).size, 1, 'one connection for all streams');
    assert.deepEqual(new Set(log.map((l) => l.streamId)), ids);
    for (const l of log) {
      assert.equal(l.protocol, 'h3');
      assert.equal(l.status, 200);
      assert.equal(l.route, serviceFor(l.path as string));
      assert.equal(l.upstream, `http://127.0.0.1:${r.ports[l.route as 'video' | 'text' | 'control']}`);
    }

    // The services' own log lines reach qsr up's log as structured records at their level, not as escaped JSON text.
    const records = jsonLines(r.stderr());
    const uploads = records.filter((l) => l.service === 'video' && l.event === 'upload');
    assert.ok(uploads.length >= 1, `no video upload record in qsr up's log:\n${r.stderr().slice(-3000)}`);
    assert.equal(uploads[0]!.level, 30, JSON.stringify(uploads[0]));
    assert.equal(typeof uploads[0]!.bytes, 'number');
    assert.equal(typeof uploads[0]!.pid, 'number');
    const escaped = records.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('{'));
    assert.deepEqual(escaped, [], 'no record whose message is a JSON text');
  });
});

test(
  'gtlsclient through the router: GET /text/sample, GET /control/status, 20 MB POST /video hashed by the video service',
  { timeout: 120_000, skip: skipUnless(['gtlsclient']) },
  async () => {
    await withRouter({}, async (r) => {
      const dl = join(r.dir, 'download');
      mkdirSync(dl);
      const gets = await runGtlsClient({
        workDir: r.dir,
        host: '127.0.0.1',
        port: r.port,
        urls: [`https://127.0.0.1:${r.port}/text/sample`, `https://127.0.0.1:${r.port}/control/status`],
        download: dl,
        timeoutMs: 30_000,
        name: 'gtlsclient-get',
      });
      const why = `gtlsclient: ${JSON.stringify(gets.exit)}\n${gets.output.slice(-3000)}`;
      assert.equal(gets.exit.timedOut, false, why);
      assert.ok(gets.result.handshakeCompleted, why);
      assert.equal(gets.result.alpn, 'h3', why);
      assert.deepEqual([...gets.result.statuses.values()], [200, 200], why);
      assert.deepEqual(gets.result.errors, [], why);
      // --download keeps the last path segment as the file name.
      assert.deepEqual(readdirSync(dl).sort(), ['sample', 'status'], why);
      assert.ok(readFileSync(join(dl, 'sample'), 'utf8').includes(SAMPLE_SENTENCE), 'sample page body');
      const status = JSON.parse(readFileSync(join(dl, 'status'), 'utf8')) as { ok?: boolean; service?: string };
      assert.equal(status.ok, true);
      assert.equal(status.service, 'control');

      // 20 MB upload: written in 1 MiB pieces, hashed as written.
      const file = join(r.dir, 'upload.bin');
      const hash = createHash('sha256');
      const ws = createWriteStream(file);
      for (let i = 0; i < 20; i++) {
        const chunk = randomBytes(1 << 20);
        hash.update(chunk);
        if (!ws.write(chunk)) await new Promise<void>((res) => ws.once('drain', () => res()));
      }
      await new Promise<void>((res, rej) => ws.end((e?: Error | null) => (e ? rej(e) : res())));
      const sha = hash.digest('hex');
      const dl2 = join(r.dir, 'download-post');
      mkdirSync(dl2);
      const post = await runGtlsClient({
        workDir: r.dir,
        host: '127.0.0.1',
        port: r.port,
        urls: [`https://127.0.0.1:${r.port}/video`],
        download: dl2,
        extraArgs: ['-d', file, '-m', 'POST'],
        idleTimeout: '15s',
        timeoutMs: 90_000,
        name: 'gtlsclient-post',
      });
      const why2 = `gtlsclient POST: ${JSON.stringify(post.exit)}\n${post.output.slice(-3000)}`;
      assert.equal(post.exit.timedOut, false, why2);
      assert.deepEqual([...post.result.statuses.values()], [200], why2);
      const body = JSON.parse(readFileSync(join(dl2, 'video'), 'utf8')) as { bytes?: number; sha256?: string };
      assert.equal(body.bytes, 20 << 20, why2);
      assert.equal(body.sha256, sha, 'the video service hashed exactly the bytes of the file');
      await waitFor(() => r.accessLog().some((l) => l.path === '/video'), 5000);
      const line = r.accessLog().find((l) => l.path === '/video');
      assert.equal(line?.bytesIn, 20 << 20, JSON.stringify(line));
    });
  },
);

test(
  'headless Chromium loads /text/sample through the router over HTTP/3',
  { timeout: 120_000, skip: skipUnless([], true) },
  async () => {
    await withRouter({}, async (r) => {
      const run = await runChromiumH3({
        url: `https://127.0.0.1:${r.port}/text/sample`,
        spkiBase64: spkiOfCert(r.certPath),
        workDir: join(r.dir, 'chromium'),
        timeoutMs: 60_000,
      });
      const n = run.netlog;
      const why = `exit=${run.exitCode} signal=${run.signal} timedOut=${run.timedOut} sessions=${JSON.stringify(n.quicSessions)} requests=${JSON.stringify(n.h3Requests)} errors=${JSON.stringify(n.errors)}\nDOM: ${run.dom.slice(0, 500)}\nstderr: ${run.stderr.slice(-800)}`;
      assert.equal(run.timedOut, false, why);
      assert.equal(run.exitCode, 0, why);
      assert.ok(run.dom.includes(`<p id="sample">${SAMPLE_SENTENCE}</p>`), why);
      assert.deepEqual(n.quicSessions, [`127.0.0.1:${r.port}`], why);
      assert.deepEqual(
        n.h3Requests.filter((q) => q.path === '/text/sample').map((q) => q.status),
        [200],
        why,
      );
      assert.deepEqual(n.errors, [], why);
      for (const a of n.contactedAddresses) assert.match(a, /^(127\.0\.0\.1|\[::1\]):\d+$/, why);
      // The router saw it as HTTP/3 and sent it to the text service.
      await waitFor(() => r.accessLog().some((l) => l.path === '/text/sample'), 5000);
      const line = r.accessLog().find((l) => l.path === '/text/sample');
      assert.equal(line?.protocol, 'h3', JSON.stringify(line));
      assert.equal(line?.route, 'text');
    });
  },
);

test(
  'qsr capture of qsr client through the router: every QUIC packet decrypts from the embedded secrets, HEADERS and DATA on the request streams',
  { timeout: 120_000, skip: skipUnless(['tshark', 'editcap']) },
  async () => {
    // tshark 4.0 shows an HTTP/3 frame only when it starts and ends inside one STREAM frame it can pair with an http3
    // layer (no reassembly), and decryptReport (src/obs/capture.ts) skips datagrams whose STREAM frames and http3
    // layers do not pair up. So: one QUIC packet per datagram from the router (coalesced packets made whole streams vanish from the
    // report in about one run in four), and --size 1000 so request and response bodies fit in one STREAM frame (with
    // the default 64 KiB bodies only the control streams and sometimes the video replies showed DATA).
    await withRouter({ set: { quic: { onePacketPerDatagram: true } } }, async (r) => {
      const out = join(r.dir, 'router.pcapng');
      const run = await runQsr(
        ['capture', '-o', out, '--port', String(r.port), '--keylog', r.keylogPath, '--', process.execPath, QSR, 'client', '--url', `https://localhost:${r.port}`, '--ca', r.certPath, '--streams', '6', '--size', '1000'],
        { workDir: r.dir, timeoutMs: 90_000, name: 'capture', env: { SSLKEYLOGFILE: undefined } },
      );
      const why = `qsr capture: ${JSON.stringify(run.exit)}\nstdout: ${run.stdout.slice(-2000)}\nstderr: ${run.stderr.slice(-2000)}`;
      assert.equal(run.exit.code, 0, why);
      assert.match(run.stdout, /6 streams on one connection, 6 ok, 0 failed/, why);
      // No key log option: only the secrets embedded in the pcapng can decrypt.
      const rep = await decryptReport(out, null);
      const summary = `${formatReport(rep)} unpaired=${rep.unpaired}\n${why}`;
      assert.ok(rep.quicPackets > 10, summary);
      assert.equal(rep.undecrypted, 0, summary);
      const requestStreams = [...rep.http3Frames.entries()].filter(
        ([sid, frames]) => sid % 4 === 0 && frames.includes('HEADERS') && frames.includes('DATA'),
      );
      assert.ok(requestStreams.length >= 3, `request streams with HEADERS and DATA: ${requestStreams.length}\n${summary}`);
      // Control streams both ways carry SETTINGS.
      assert.ok([...rep.http3StreamTypes.values()].filter((t) => t === 'control').length >= 1, summary);
    });
  },
);

test('a bad configuration: qsr up and qsr check-config exit 2 naming the file and the field path; nothing runs', { timeout: 60_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-e2e-badcfg-'));
  const ports = await allocatePorts();
  const bad = writeConfig(dir, {
    ports,
    file: 'bad.yaml',
    set: {
      routes: [
        { name: 'video', prefix: '/video', upstreams: [`ftp://127.0.0.1:${ports.video}`] },
        { name: 'text', prefix: '/text', upstreams: [`http://127.0.0.1:${ports.text}`] },
      ],
    },
  });
  for (const args of [['up', '--config', bad], ['check-config', bad]]) {
    const run = await runQsr(args, { workDir: dir, timeoutMs: 20_000, name: args[0] });
    const why = `${args.join(' ')}: ${JSON.stringify(run.exit)}\nstdout: ${run.stdout}\nstderr: ${run.stderr}`;
    assert.equal(run.exit.code, 2, why);
    assert.equal(run.exit.timedOut, false, why);
    assert.ok(run.stderr.includes(`${bad}: routes.0.upstreams.0: expected an http:// URL`), why);
    assert.ok(!run.stdout.includes('is up'), why);
    assert.ok(!run.stderr.includes('service started'), why);
  }
  // A second kind of mistake: an unknown key and a bad port in services.
  const bad2 = join(dir, 'bad2.yaml');
  writeFileSync(bad2, readFileSync(writeConfig(dir, { ports, file: 'tmp.yaml' }), 'utf8').replace(`port: ${ports.control}`, 'port: 70000') + 'colour: blue\n');
  const run2 = await runQsr(['up', '--config', bad2], { workDir: dir, timeoutMs: 20_000, name: 'up2' });
  assert.equal(run2.exit.code, 2, run2.stderr);
  assert.ok(run2.stderr.includes(`${bad2}: services.control.port: expected a port number`), run2.stderr);
  assert.ok(run2.stderr.includes(`${bad2}: colour: unknown key`), run2.stderr);
  await assertPortsFree(ports);
  rmSync(dir, { recursive: true, force: true });
});

/** Body of a response as text. */
async function text(res: { body: AsyncIterable<unknown> }): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of res.body) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}

const header = (h: [string, string][], name: string): string | undefined => h.find(([n]) => n === name)?.[1];

test('SIGHUP reloads the routes for new requests on the same connection; an invalid file is rejected and the old routes stay', { timeout: 90_000 }, async () => {
  await withRouter({}, async (r) => {
    const client = await Http3Client.connect(`https://127.0.0.1:${r.port}`, { ca: loadPemChain(readFileSync(r.certPath, 'utf8')), serverName: 'localhost' });
    let closed: Error | null = null;
    client.on('close', (e: Error) => (closed = e));
    try {
      const get = async (path: string): Promise<{ status: number; service: string | undefined; body: string }> => {
        const res = await client.request(path);
        return { status: res.status, service: header(res.headers, 'x-service'), body: await text(res) };
      };
      let a = await get('/text/sample');
      assert.equal(a.status, 200);
      assert.equal(a.service, 'text');
      assert.ok(a.body.includes(SAMPLE_SENTENCE));
      a = await get('/extra/status');
      assert.equal(a.status, 404, 'no route yet');
      assert.equal(a.service, undefined, 'answered by the router itself');
      assert.match(a.body, /no route/);

      // New routing: /text goes to the control service, and a new route /extra to the control service.
      const ctl = [`http://127.0.0.1:${r.ports.control}`];
      writeConfig(r.dir, {
        ports: r.ports,
        set: {
          routes: [
            { name: 'video', prefix: '/video', upstreams: [`http://127.0.0.1:${r.ports.video}`] },
            { name: 'text', prefix: '/text', upstreams: ctl },
            { name: 'control', prefix: '/control', upstreams: ctl },
            { name: 'extra', prefix: '/extra', upstreams: ctl },
          ],
        },
      });
      const reloads = (): number => jsonLines(r.stderr()).filter((l) => l.msg === 'configuration reloaded').length;
      r.proc.signal('SIGHUP');
      assert.ok(await waitFor(() => reloads() === 1, 10_000), `no reload logged: ${r.stderr().slice(-2000)}`);
      a = await get('/text/sample');
      assert.equal(a.service, 'control', 'the /text route now goes to the control service');
      assert.equal(a.status, 404, 'the control service has no /text/sample');
      a = await get('/extra/status');
      assert.equal(a.service, 'control', 'the new route answers');
      a = await get('/control/status');
      assert.equal(a.status, 200);
      assert.equal(a.service, 'control');

      // An invalid file: rejected with the field path, the previous routes stay.
      writeFileSync(r.configPath, readFileSync(r.configPath, 'utf8').replace('prefix: /extra', 'prefix: extra'));
      r.proc.signal('SIGHUP');
      const rejected = (): Record<string, unknown> | undefined =>
        jsonLines(r.stderr()).find((l) => typeof l.msg === 'string' && /reload rejected/.test(l.msg));
      assert.ok(await waitFor(() => rejected() !== undefined, 10_000), `no rejection logged: ${r.stderr().slice(-2000)}`);
      assert.match(String(rejected()!.error), /routes\.3\.prefix: expected a path starting with "\/"/);
      assert.ok(String(rejected()!.error).includes(r.configPath), String(rejected()!.error));
      a = await get('/extra/status');
      assert.equal(a.service, 'control', 'routes of the last good configuration');
      a = await get('/text/sample');
      assert.equal(a.service, 'control');
      assert.equal(reloads(), 1);

      // The connection was never dropped: every request above went over the one QUIC connection.
      assert.equal(closed, null);
      await waitFor(() => r.accessLog().length >= 7, 5000);
      const log = r.accessLog();
      assert.equal(log.length, 7, r.stdout());
      assert.equal(new Set(log.map((l) => l.connectionId)).size, 1, 'one connection');
      assert.equal(new Set(log.map((l) => l.streamId)).size, 7);
      assert.ok(r.proc.isRunning());
    } finally {
      await client.close();
    }
  });
});

test(
  'the services end when qsr up itself is killed (SIGKILL), so a new qsr up can bind their ports',
  {
    timeout: 60_000,
  },
  async () => {
    const r = await startRouter({});
    try {
      r.proc.signal('SIGKILL');
      await r.proc.exited;
      const svc = [r.ports.video, r.ports.text, r.ports.control];
      let free: boolean[] = [false, false, false];
      for (let i = 0; i < 50 && !free.every(Boolean); i++) {
        free = await Promise.all(svc.map((p) => portFree(p)));
        if (!free.every(Boolean)) await new Promise((res) => setTimeout(res, 100));
      }
      assert.deepEqual(free, [true, true, true], 'video, text, control ports free after qsr up was killed');
    } finally {
      // The helper ends orphaned services by the PIDs qsr up logged.
      await r.stop();
      await assertPortsFree(r.ports);
      r.remove();
    }
  },
);

async function readBody(body: AsyncIterable<unknown>): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of body) chunks.push(c as Buffer);
  return Buffer.concat(chunks);
}

/** The "<name> service stopped" records of a qsr up's stderr, by service. */
function serviceStops(stderr: string): Map<string, Record<string, unknown>> {
  const out = new Map<string, Record<string, unknown>>();
  for (const l of jsonLines(stderr)) if (typeof l.msg === 'string' && / service stopped/.test(l.msg)) out.set(String(l.service), l);
  return out;
}

test(
  'Ctrl-C (SIGINT to the whole process group of qsr up) drains like SIGTERM: three live streams finish with 200 and full bodies, exit 0',
  { timeout: 90_000 },
  async () => {
    await withRouter({ processGroup: true, set: { timeouts: { drainMs: 15_000 } } }, async (r) => {
      const client = await Http3Client.connect(`https://127.0.0.1:${r.port}`, { ca: loadPemChain(readFileSync(r.certPath, 'utf8')), serverName: 'localhost' });
      try {
        // 3 s at 100 kbit/s: 37,500 bytes each when they run to their end.
        const paths = [1, 2, 3].map((i) => `/video/stream?seconds=3&kbps=100&ctrl-c=${i}`);
        const responses = await Promise.all(paths.map((p) => client.request(p)));
        const bodies = responses.map((res) => readBody(res.body).then((b) => ({ ok: true as const, b }), (e: Error) => ({ ok: false as const, e })));
        await new Promise((res) => setTimeout(res, 500));
        // What a terminal does on Ctrl-C: SIGINT to every process of the foreground job.
        r.signalGroup('SIGINT');
        const results = await Promise.all(bodies);
        for (const [i, res] of responses.entries()) {
          const got = results[i]!;
          assert.equal(res.status, 200);
          assert.ok(got.ok, `stream ${paths[i]} failed: ${got.ok ? '' : got.e.message}\n${r.stderr().slice(-3000)}`);
          assert.equal(got.b.length, 37_500, `${paths[i]}: the whole stream`);
        }
        const exit = await r.proc.exited;
        assert.equal(exit.code, 0, `${JSON.stringify(exit)}\n${r.stderr().slice(-3000)}`);
        for (const p of paths) {
          const line = r.accessLog().find((l) => l.path === p);
          assert.ok(line, `no access log line for ${p}`);
          assert.equal(line.status, 200);
          assert.equal(line.error, null);
          assert.equal(line.bytesOut, 37_500);
        }
        const stderr = r.stderr();
        assert.ok(!/restarting in/.test(stderr), `no service may be restarted during the shutdown:\n${stderr.slice(-3000)}`);
        const stops = serviceStops(stderr);
        assert.deepEqual([...stops.keys()].sort(), ['control', 'text', 'video'], stderr.slice(-3000));
      } finally {
        await client.close();
      }
    });
  },
);

test('qsr up with nothing in flight stops promptly on SIGTERM: each service exits by itself when asked (not by SIGKILL), exit 0; services.text.maxBodyBytes reaches the text service', { timeout: 60_000 }, async () => {
  const ports = await allocatePorts();
  const services = { video: { port: ports.video }, text: { port: ports.text, maxBodyBytes: 1000 }, control: { port: ports.control } };
  await withRouter({ ports, set: { services } }, async (r) => {
    const client = await Http3Client.connect(`https://127.0.0.1:${r.port}`, { ca: loadPemChain(readFileSync(r.certPath, 'utf8')), serverName: 'localhost' });
    try {
      const ok = await client.request('/text', { method: 'POST', body: 'z'.repeat(1000) });
      assert.equal(ok.status, 200);
      await readBody(ok.body);
      const over = await client.request('/text', { method: 'POST', body: 'z'.repeat(1001) });
      assert.equal(over.status, 413);
      assert.equal((JSON.parse((await readBody(over.body)).toString()) as { limit: number }).limit, 1000);
    } finally {
      await client.close();
    }
    const exit = await r.stop();
    assert.equal(exit.code, 0, r.stderr().slice(-3000));
    const stops = serviceStops(r.stderr());
    assert.deepEqual([...stops.keys()].sort(), ['control', 'text', 'video'], r.stderr().slice(-3000));
    for (const [name, l] of stops) {
      assert.equal(l.signal, null, `${name} service: ${JSON.stringify(l)}`);
      assert.equal(l.code, 0, `${name} service: ${JSON.stringify(l)}`);
    }
  });
});
