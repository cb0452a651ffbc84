/**
 * qlog from the CLI as a user runs it: `qsr serve --qlog DIR` and `qsr get --qlog DIR` (child processes, real UDP on
 * loopback). Each side writes exactly one file, `<ODCID>_server.sqlog` and `<ODCID>_client.sqlog` with the same
 * ODCID; both name the connection of the key logs (the ClientHello random in the qlog's parameters_set is the one
 * the key log lines are filed under); every record validates against the schema; the files hold the HTTP/3 frames
 * of the request on both sides. Every child has a timeout; the server is stopped by PID.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { readQlog, type QlogRecord } from '../util/qlog.js';

const QSR = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));
const children: ChildProcess[] = [];

after(() => {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
      try {
        process.kill(c.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
});

function run(args: string[], cwd: string, ms = 30_000): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [QSR, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, QLOGDIR: '', SSLKEYLOGFILE: '' } });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`qsr ${args.join(' ')} did not finish within ${ms} ms\n${stderr}`));
    }, ms);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

interface H3Frame {
  frame_type: string;
  headers?: { name: string; value: string }[];
}

function frames(events: QlogRecord[], name: 'http:frame_created' | 'http:frame_parsed', type: string): { stream_id: number; length: number; frame: H3Frame }[] {
  return events
    .filter((e) => e.name === name && (e.data as { frame: H3Frame }).frame.frame_type === type)
    .map((e) => e.data as { stream_id: number; length: number; frame: H3Frame });
}

const header = (f: H3Frame, n: string): string | undefined => f.headers?.find((h) => h.name === n)?.value;

/** The client random of a key log's connection (every line: LABEL <client_random> <secret>). */
function keyLogRandoms(path: string): Set<string> {
  return new Set(
    readFileSync(path, 'utf8')
      .split('\n')
      .filter((l) => l && !l.startsWith('#'))
      .map((l) => l.split(' ')[1]),
  );
}

test('qsr serve/get --qlog: one file per side named by the key log connection\'s ODCID, with the request\'s HTTP/3 frames', { timeout: 60_000 }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'qsr-e2e-qlog-'));
  try {
    mkdirSync(join(work, 'www'));
    const body = Buffer.alloc(40_000, 'q');
    writeFileSync(join(work, 'www', 'file.txt'), body);
    const srv = spawn(
      process.execPath,
      [QSR, 'serve', '--dir', 'www', '--listen', '127.0.0.1:0', '--data-dir', 'data', '--qlog', 'q/server', '--keylog', 'server-keys.txt'],
      { cwd: work, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, QLOGDIR: '', SSLKEYLOGFILE: '' } },
    );
    children.push(srv);
    const exited = new Promise<number | null>((r) => srv.on('exit', (code) => r(code)));
    let err = '';
    const port = await new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`qsr serve did not start\n${err}`)), 15_000);
      srv.stderr.on('data', (d: Buffer) => {
        err += d;
        const m = /serving .* on https:\/\/127\.0\.0\.1:(\d+)\//.exec(err);
        if (m) {
          clearTimeout(timer);
          resolve(Number(m[1]));
        }
      });
    });
    const get = await run(
      ['get', `https://localhost:${port}/file.txt`, '--ca', join('data', 'certs', 'cert.pem'), '--qlog', 'q/client', '--keylog', 'client-keys.txt', '--json'],
      work,
    );
    assert.equal(get.code, 0, get.stderr);
    assert.equal((JSON.parse(get.stdout) as { requests: { status: number; bytes: number }[] }).requests[0].bytes, body.length);
    // The server's connection file is complete once the connection is gone; stopping the server flushes it at exit.
    srv.kill('SIGTERM');
    assert.equal(await exited, 0);

    const clientFiles = readdirSync(join(work, 'q', 'client'));
    const serverFiles = readdirSync(join(work, 'q', 'server'));
    assert.equal(clientFiles.length, 1, `one client file: ${clientFiles.join(' ')}`);
    assert.equal(serverFiles.length, 1, `one server file: ${serverFiles.join(' ')}`);
    const m = /^([0-9a-f]{16,40})_client\.sqlog$/.exec(clientFiles[0]);
    assert.ok(m, clientFiles[0]);
    const odcid = m[1];
    assert.equal(serverFiles[0], `${odcid}_server.sqlog`, 'the server file carries the same ODCID');

    const client = readQlog(join(work, 'q', 'client', clientFiles[0]));
    const server = readQlog(join(work, 'q', 'server', serverFiles[0]));
    for (const [f, role] of [
      [client, 'client'],
      [server, 'server'],
    ] as const) {
      const tr = f.header.trace as { vantage_point: { type: string }; common_fields: { ODCID: string } };
      assert.equal(tr.vantage_point.type, role);
      assert.equal(tr.common_fields.ODCID, odcid);
    }
    // The client's first packet is an Initial to the ODCID: what a capture shows as its DCID.
    const first = client.events.find((e) => e.name === 'transport:packet_sent')!.data as { header: { packet_type: string; dcid: string } };
    assert.deepEqual([first.header.packet_type, first.header.dcid], ['initial', odcid]);
    // Both qlogs and both key logs name the same TLS connection.
    const randomOf = (events: QlogRecord[]): string =>
      (events.find((e) => e.name === 'transport:parameters_set' && 'tls_client_random' in e.data)!.data as { tls_client_random: string }).tls_client_random;
    const random = randomOf(client.events);
    assert.equal(randomOf(server.events), random);
    assert.deepEqual([...keyLogRandoms(join(work, 'client-keys.txt'))], [random]);
    assert.deepEqual([...keyLogRandoms(join(work, 'server-keys.txt'))], [random]);

    // HTTP/3 frames of the request, on both sides, on the same request stream.
    const reqHeaders = frames(client.events, 'http:frame_created', 'headers').find((f) => header(f.frame, ':path') === '/file.txt');
    assert.ok(reqHeaders, 'client: HEADERS created with :path');
    const sid = reqHeaders.stream_id;
    const parsedReq = frames(server.events, 'http:frame_parsed', 'headers').find((f) => f.stream_id === sid);
    assert.equal(parsedReq && header(parsedReq.frame, ':path'), '/file.txt', 'server: the same HEADERS parsed');
    assert.equal(header(frames(server.events, 'http:frame_created', 'headers').find((f) => f.stream_id === sid)!.frame, ':status'), '200');
    assert.equal(header(frames(client.events, 'http:frame_parsed', 'headers').find((f) => f.stream_id === sid)!.frame, ':status'), '200');
    const sum = (l: { stream_id: number; length: number }[]): number => l.filter((f) => f.stream_id === sid).reduce((n, f) => n + f.length, 0);
    assert.equal(sum(frames(server.events, 'http:frame_created', 'data')), body.length, 'server: DATA frames created for the whole body');
    assert.equal(sum(frames(client.events, 'http:frame_parsed', 'data')), body.length, 'client: DATA frames parsed for the whole body');
    for (const f of [client, server]) {
      const types = f.events.filter((e) => e.name === 'http:stream_type_set').map((e) => (e.data as { stream_type: string }).stream_type);
      for (const t of ['control', 'qpack_encode', 'qpack_decode', 'request']) assert.ok(types.includes(t), `stream type ${t} set`);
      assert.ok(frames(f.events, 'http:frame_created', 'settings').length === 1 && frames(f.events, 'http:frame_parsed', 'settings').length === 1);
    }
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
});
