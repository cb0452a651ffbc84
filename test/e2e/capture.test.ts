/**
 * End-to-end test of `qsr capture` as a user runs it: a QUIC connection between our own probe client and server on
 * loopback is captured with tshark and written as a pcapng with the TLS secrets embedded (editcap --inject-secrets,
 * a pcapng Decryption Secrets Block), so tshark decrypts every QUIC packet (RFC 9001 §5) with no key log option.
 * The same file with the secrets stripped must not decrypt (the check can fail). Also: usage errors exit 2 naming the
 * flag, a missing capturer exits 1 naming the Debian package, the command's exit status and SSLKEYLOGFILE.
 *
 * Needs tshark and editcap (Debian `tshark`): skipped when missing, unless CI=true, where that is a failure.
 * Every child runs under a hard timeout and is killed by its own PID.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
const QSR = join(ROOT, 'dist', 'src', 'cli', 'qsr.js');
const CERTS = join(ROOT, 'test', 'fixtures', 'certs');

function onPath(name: string): boolean {
  return (process.env.PATH ?? '').split(delimiter).some((d) => d !== '' && existsSync(join(d, name)));
}
const TOOLS = onPath('tshark') && onPath('editcap');
const SKIP = !TOOLS && process.env.CI !== 'true' ? 'tshark/editcap not installed (apt-get install tshark)' : false;

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Run a program to completion; SIGKILL to its PID after `timeoutMs` (then the assertion on the exit code fails). */
function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((res, rej) => {
    const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString('utf8')));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString('utf8')));
    const timer = setTimeout(() => {
      stderr += `\n[killed after ${opts.timeoutMs ?? 60_000} ms]`;
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
    }, opts.timeoutMs ?? 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      rej(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout, stderr });
    });
  });
}

const qsr = (args: string[], opts?: Parameters<typeof run>[2]): Promise<Run> => run(process.execPath, [QSR, ...args], opts);

function freeUdpPort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createSocket('udp4');
    s.once('error', rej);
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** Undecrypted QUIC packets per tshark (no key log option: only secrets embedded in the file can decrypt). */
async function quicDecryption(pcap: string): Promise<{ datagrams: number; undecrypted: number; http3: number }> {
  const r = await run('tshark', ['-r', pcap, '-Y', 'quic', '-T', 'fields', '-e', 'quic.decryption_failed', '-e', 'quic.remaining_payload']);
  assert.equal(r.code, 0, r.stderr);
  const rows = r.stdout.split('\n').filter((l) => l !== '');
  // A row is one datagram; a non-empty field means a packet in it was not decrypted.
  const undecrypted = rows.filter((l) => l.replace(/\t/g, '').trim() !== '').length;
  const h = await run('tshark', ['-r', pcap, '-Y', 'http3']);
  assert.equal(h.code, 0, h.stderr);
  const http3 = h.stdout.split('\n').filter((l) => l.trim() !== '').length;
  return { datagrams: rows.length, undecrypted, http3 };
}

/**
 * Copy a pcapng without its Decryption Secrets Blocks (type 0x0000000A). Editcap 4.0 cannot rewrite a file that has
 * one ("can't be written as a pcapng file"), and tshark -w keeps them, so the test drops them itself. Returns how
 * many it dropped. Little-endian sections only (what dumpcap writes on x86/arm64).
 */
function stripSecrets(from: string, to: string): number {
  const buf = readFileSync(from);
  const keep: Buffer[] = [];
  let dropped = 0;
  for (let off = 0; off + 12 <= buf.length; ) {
    const type = buf.readUInt32LE(off);
    if (type === 0x0a0d0d0a) assert.equal(buf.readUInt32LE(off + 8), 0x1a2b3c4d, 'little-endian pcapng section');
    const len = buf.readUInt32LE(off + 4);
    assert.ok(len >= 12 && len % 4 === 0 && off + len <= buf.length, `block at ${off}`);
    if (type === 0x0000000a) dropped++;
    else keep.push(buf.subarray(off, off + len));
    off += len;
  }
  writeFileSync(to, Buffer.concat(keep));
  return dropped;
}

let work = '';
let port = 0;
let keylog = '';
let server: ChildProcess | null = null;
let serverOut = '';

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'qsr-capture-test-'));
  if (!TOOLS) return;
  port = await freeUdpPort();
  keylog = join(work, 'keylog.txt');
  server = spawn(
    process.execPath,
    [QSR, 'quic-listen', '--listen', `127.0.0.1:${port}`, '--cert', join(CERTS, 'ecdsa.pem'), '--key', join(CERTS, 'ecdsa.key'), '--keylog', keylog],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const s = server;
  await new Promise<void>((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`quic-listen did not start: ${serverOut}`)), 15_000);
    const onData = (d: Buffer): void => {
      serverOut += d.toString('utf8');
      if (serverOut.includes('"listening"')) {
        clearTimeout(timer);
        res();
      }
    };
    s.stdout?.on('data', onData);
    s.stderr?.on('data', onData);
    s.once('exit', () => {
      clearTimeout(timer);
      rej(new Error(`quic-listen exited: ${serverOut}`));
    });
  });
});

after(async () => {
  const s = server;
  if (s !== null && s.pid !== undefined && s.exitCode === null && s.signalCode === null) {
    const exited = new Promise<void>((res) => s.once('exit', () => res()));
    process.kill(s.pid, 'SIGTERM');
    const timer = setTimeout(() => {
      if (s.pid !== undefined && s.exitCode === null) process.kill(s.pid, 'SIGKILL');
    }, 5000);
    await exited;
    clearTimeout(timer);
  }
  if (work) rmSync(work, { recursive: true, force: true });
});

test('capture of a QUIC connection decrypts with no key log option (secrets embedded); stripped copy does not', { skip: SKIP, timeout: 90_000 }, async () => {
  assert.ok(TOOLS, 'CI=true: tshark and editcap must be installed (apt-get install tshark)');
  const out = join(work, 'out.pcapng');
  const r = await qsr([
    'capture', '-o', out, '--port', String(port), '--keylog', keylog, '--',
    process.execPath, QSR, 'quic-connect', `https://127.0.0.1:${port}/`,
    '--ca', join(CERTS, 'ca.pem'), '--server-name', 'localhost', '--duration', '300',
  ]);
  assert.equal(r.code, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  assert.match(r.stdout, /"event":"handshake"/, 'the command ran and its stdout passed through');
  assert.ok(existsSync(out), 'output written');
  assert.ok(r.stderr.includes(out), 'prints the output path');
  assert.match(r.stderr, /\(\d+ packets?\)/);
  assert.match(r.stderr, /open it in Wireshark: it decrypts with no settings \(secrets embedded\)/);
  assert.match(r.stderr, /tshark -r \S+ -Y http3/);
  assert.equal(statSync(out).mode & 0o077, 0, 'a pcapng with secrets is not readable by others');

  const embedded = await quicDecryption(out);
  assert.ok(embedded.datagrams >= 4, `QUIC packets captured: ${JSON.stringify(embedded)}`);
  assert.equal(embedded.undecrypted, 0, `every QUIC packet decrypted: ${JSON.stringify(embedded)}`);
  assert.ok(embedded.http3 > 0, `HTTP/3 control stream visible: ${JSON.stringify(embedded)}`);

  // Sanity: the same traffic without the Decryption Secrets Block is not decryptable.
  const stripped = join(work, 'stripped.pcapng');
  assert.ok(stripSecrets(out, stripped) >= 1, 'the output has a Decryption Secrets Block');
  const bare = await quicDecryption(stripped);
  assert.equal(bare.datagrams, embedded.datagrams);
  assert.ok(bare.undecrypted > 0, `without secrets tshark cannot decrypt: ${JSON.stringify(bare)}`);
  assert.equal(bare.http3, 0);
});

test('the command gets SSLKEYLOGFILE (./.qsr/keylog.txt, created 0600) and its exit status is returned', { skip: SKIP, timeout: 60_000 }, async () => {
  const cwd = join(work, 'cwd-command');
  mkdirSync(cwd);
  const env = { ...process.env };
  delete env.SSLKEYLOGFILE;
  const p = await freeUdpPort();
  const r = await qsr(
    ['capture', '-o', 'c.pcapng', '--port', String(p), '--', process.execPath, '-e', 'process.stdout.write(String(process.env.SSLKEYLOGFILE)); process.exit(3)'],
    { cwd, env },
  );
  assert.equal(r.code, 3, r.stderr);
  const expected = join(cwd, '.qsr', 'keylog.txt');
  assert.equal(r.stdout, expected);
  assert.equal(statSync(expected).mode & 0o777, 0o600);
  assert.ok(existsSync(join(cwd, 'c.pcapng')));
  // Nothing was written to the key log, so there is nothing to embed.
  assert.match(r.stderr, /not decryptable/);
});

test('--seconds with no key log keeps the raw capture and says it is not decryptable', { skip: SKIP, timeout: 60_000 }, async () => {
  const cwd = join(work, 'cwd-seconds');
  mkdirSync(cwd);
  const env = { ...process.env };
  delete env.SSLKEYLOGFILE;
  const p = await freeUdpPort();
  const r = await qsr(['capture', '--port', String(p), '--seconds', '0.5'], { cwd, env });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /for 0\.5 s/);
  assert.match(r.stderr, /not decryptable: no key log/);
  const m = /wrote (\S+qsr-capture-\d{8}-\d{6}\.pcapng) \(0 packets\)/.exec(r.stderr);
  assert.ok(m, r.stderr);
  assert.ok(existsSync(m[1]));
  assert.ok(!existsSync(join(cwd, '.qsr')), 'no key log is created when no command runs');
});

test('usage errors exit 2 and name the flag', { timeout: 60_000 }, async () => {
  const cases: Array<[string[], RegExp]> = [
    [['--port', '0'], /--port/],
    [['--port', 'http'], /--port/],
    [['--port', '70000'], /--port/],
    [['--seconds', '0'], /--seconds/],
    [['--seconds', 'soon'], /--seconds/],
    [['--seconds', '1', '--', 'true'], /--seconds and a command/],
    [['-o', join(work, 'no', 'such', 'dir', 'x.pcapng'), '--seconds', '1'], /-o: directory .*no\/such\/dir does not exist/],
    [['-o', work, '--seconds', '1'], /-o: .* is a directory/],
    [['--keylog', join(work, 'missing-dir', 'k.txt'), '--seconds', '1'], /--keylog: directory/],
  ];
  for (const [args, re] of cases) {
    const r = await qsr(['capture', ...args], { timeoutMs: 20_000 });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re, args.join(' '));
  }
});

test('without tshark and dumpcap: exit 1 naming the Debian package', { timeout: 30_000 }, async () => {
  const empty = join(work, 'empty-path');
  mkdirSync(empty, { recursive: true });
  const r = await qsr(['capture', '--seconds', '1', '-o', join(work, 'never.pcapng')], { env: { ...process.env, PATH: empty } });
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /apt-get install tshark/);
  assert.ok(!existsSync(join(work, 'never.pcapng')));
});
