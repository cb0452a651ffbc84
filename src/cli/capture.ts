/**
 * `qsr capture`: record the loopback traffic of one UDP port with tshark (or dumpcap) and write a pcapng that carries
 * the TLS secrets in a Decryption Secrets Block (pcapng, draft-ietf-opsawg-pcapng §4.7), so Wireshark decrypts QUIC
 * (RFC 9001 §5) and shows HTTP/3 with no settings. The secrets come from an NSS key log (RFC 9850 / SSLKEYLOGFILE);
 * `editcap --inject-secrets tls,KEYLOG` embeds them.
 *
 * Flow: choose the capturer, start `<tool> -q -i lo -f 'udp port P' -w RAW` in its own process group, wait until it
 * reports "Capturing on", then run COMMAND (with SSLKEYLOGFILE pointing at the key log) or wait --seconds or Ctrl-C.
 * Stop the capturer with SIGINT to its own PID, wait for it to flush, inject the secrets and report.
 *
 * Every message of this command goes to stderr, so the command's stdout stays pipeable.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import {
  accessSync,
  chmodSync,
  closeSync,
  constants as fsConstants,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { constants as osConstants, tmpdir } from 'node:os';
import { delimiter, dirname, join, resolve } from 'node:path';
import { UsageError, parseIntFlag } from './args.js';

/** The options as commander hands them over (all strings: validation happens here so errors exit 2). */
export interface CaptureCliOptions {
  output?: string;
  port?: string;
  keylog?: string;
  seconds?: string;
}

export type StopMode = { kind: 'command'; argv: string[] } | { kind: 'seconds'; seconds: number } | { kind: 'interrupt' };

/** A validated capture request. */
export interface CapturePlan {
  output: string;
  port: number;
  stop: StopMode;
  /** Absolute key log path given with --keylog, if any. */
  keylogFlag: string | null;
}

/** Where the key log comes from, for messages. */
export type KeyLogSource = '--keylog' | 'SSLKEYLOGFILE' | './.qsr/keylog.txt';

const DEFAULT_PORT = 4433;
const MAX_SECONDS = 1_000_000; // well under the 2^31 ms limit of setTimeout
const READY_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 10_000;
/** Datagrams sent just before the stop are still in the kernel's capture buffer: let the capturer read them. */
const DRAIN_MS = 300;
/** The pcap filter is attached right before "Capturing on" is printed; a short pause before starting the command. */
const SETTLE_MS = 150;
/** A Ctrl-C from the terminal reaches the command too; forward SIGINT only if the command is still running after this. */
const SIGINT_FORWARD_GRACE_MS = 500;

/** `20240131-235959`, local time. */
export function timestampName(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

function parseSeconds(value: string): number {
  if (!/^\d+(\.\d+)?$/.test(value)) throw new UsageError(`--seconds: expected a positive number of seconds, got '${value}'`);
  const n = Number(value);
  if (!(n > 0)) throw new UsageError(`--seconds: must be positive, got '${value}'`);
  if (n > MAX_SECONDS) throw new UsageError(`--seconds: ${value} is more than ${MAX_SECONDS}`);
  return n;
}

function requireDir(flag: string, file: string): void {
  const dir = dirname(file);
  let ok = false;
  try {
    ok = statSync(dir).isDirectory();
  } catch {
    ok = false;
  }
  if (!ok) throw new UsageError(`${flag}: directory ${dir} does not exist`);
}

/** Validate the flags (throws UsageError naming the flag). Pure apart from checking that directories exist. */
export function planCapture(o: CaptureCliOptions, command: readonly string[], cwd: string, now: Date): CapturePlan {
  const port = o.port === undefined ? DEFAULT_PORT : parseIntFlag('--port', o.port, 1, 65535);
  let stop: StopMode;
  if (o.seconds !== undefined) {
    const seconds = parseSeconds(o.seconds);
    if (command.length > 0) {
      throw new UsageError(`--seconds and a command exclude each other: the capture stops when '${command[0]}' exits`);
    }
    stop = { kind: 'seconds', seconds };
  } else if (command.length > 0) {
    stop = { kind: 'command', argv: [...command] };
  } else {
    stop = { kind: 'interrupt' };
  }
  if (o.output === '') throw new UsageError('-o: empty file name');
  const output = resolve(cwd, o.output ?? `qsr-capture-${timestampName(now)}.pcapng`);
  requireDir('-o', output);
  if (existsSync(output) && statSync(output).isDirectory()) throw new UsageError(`-o: ${output} is a directory`);
  let keylogFlag: string | null = null;
  if (o.keylog !== undefined) {
    if (o.keylog === '') throw new UsageError('--keylog: empty file name');
    keylogFlag = resolve(cwd, o.keylog);
    requireDir('--keylog', keylogFlag);
  }
  return { output, port, stop, keylogFlag };
}

/**
 * The key log to embed: --keylog, else SSLKEYLOGFILE, else ./.qsr/keylog.txt. `path` is null when none is configured
 * and the default file does not exist (and will not be created because no command runs under the capture).
 */
export function chooseKeyLog(
  flag: string | null,
  env: NodeJS.ProcessEnv,
  cwd: string,
  willCreate: boolean,
): { path: string | null; source: KeyLogSource | null } {
  if (flag !== null) return { path: flag, source: '--keylog' };
  if (env.SSLKEYLOGFILE) return { path: resolve(cwd, env.SSLKEYLOGFILE), source: 'SSLKEYLOGFILE' };
  const def = join(cwd, '.qsr', 'keylog.txt');
  if (willCreate || existsSync(def)) return { path: def, source: './.qsr/keylog.txt' };
  return { path: null, source: null };
}

/** First executable `name` on PATH. */
export function findOnPath(name: string, env: NodeJS.ProcessEnv = process.env): string | null {
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, name);
    try {
      accessSync(p, fsConstants.X_OK);
      if (statSync(p).isFile()) return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** tshark, else dumpcap (both write pcapng with `-w`, print "Capturing on" when ready, and stop cleanly on SIGINT). */
export function findCapturer(env: NodeJS.ProcessEnv = process.env): { tool: 'tshark' | 'dumpcap'; path: string } | null {
  for (const tool of ['tshark', 'dumpcap'] as const) {
    const path = findOnPath(tool, env);
    if (path !== null) return { tool, path };
  }
  return null;
}

/** Argument list for the capturer: interface lo, `udp port P` (covers 127.0.0.1 and ::1), quiet, to `file`. */
export function capturerArgs(port: number, file: string): string[] {
  return ['-q', '-i', 'lo', '-f', `udp port ${port}`, '-w', file];
}

/**
 * Number of packets in a pcapng file: Enhanced (type 6), Simple (3) and obsolete Packet (2) blocks. Walks the block
 * headers only; the byte order comes from each Section Header Block. Throws on a malformed file.
 */
export function countPcapngPackets(file: string): number {
  const fd = openSync(file, 'r');
  try {
    const size = statSync(file).size;
    const head = Buffer.alloc(12);
    let off = 0;
    let little = true;
    let packets = 0;
    while (off + 12 <= size) {
      if (readSync(fd, head, 0, 12, off) !== 12) break;
      const typeLE = head.readUInt32LE(0);
      if (typeLE === 0x0a0d0d0a) {
        const magic = head.readUInt32LE(8);
        if (magic === 0x1a2b3c4d) little = true;
        else if (magic === 0x4d3c2b1a) little = false;
        else throw new Error(`${file}: bad pcapng byte-order magic at offset ${off}`);
      }
      const type = little ? typeLE : head.readUInt32BE(0);
      const len = little ? head.readUInt32LE(4) : head.readUInt32BE(4);
      if (len < 12 || len % 4 !== 0) throw new Error(`${file}: bad pcapng block length ${len} at offset ${off}`);
      if (type === 6 || type === 3 || type === 2) packets++;
      off += len;
    }
    if (off === 0 && size > 0) throw new Error(`${file}: not a pcapng file`);
    return packets;
  } finally {
    closeSync(fd);
  }
}

/** Quote a path for a copy-paste shell line when it needs it. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const say = (line: string): void => {
  process.stderr.write(`qsr capture: ${line}\n`);
};

/** The capturer process, in its own process group so a terminal Ctrl-C reaches only us; we stop it ourselves. */
class Capturer {
  private out = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private running = true;
  private readonly onExit = (): void => {
    // qsr is going away without stopping the capture (an exception): do not leave a detached capturer behind.
    if (this.running && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGINT');
      } catch {
        // already gone
      }
    }
  };

  private constructor(
    readonly tool: string,
    private readonly child: ChildProcess,
  ) {
    const keep = (d: Buffer): void => {
      this.out = (this.out + d.toString('utf8')).slice(-8192);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    this.exited = new Promise((res) => {
      child.on('exit', (code, signal) => {
        this.running = false;
        process.off('exit', this.onExit);
        res({ code, signal });
      });
      child.on('error', (err) => {
        keep(Buffer.from(`\n${err.message}\n`));
        this.running = false;
        process.off('exit', this.onExit);
        res({ code: null, signal: null });
      });
    });
    process.on('exit', this.onExit);
  }

  get isRunning(): boolean {
    return this.running;
  }

  output(): string {
    return this.out;
  }

  static async start(tool: string, path: string, args: string[]): Promise<Capturer> {
    const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const c = new Capturer(tool, child);
    const ready = await new Promise<boolean>((res) => {
      const check = (): void => {
        if (/Capturing on/.test(c.out)) done(true);
      };
      const timer = setTimeout(() => done(false), READY_TIMEOUT_MS);
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        child.stderr?.off('data', check);
        child.stdout?.off('data', check);
        res(ok);
      };
      child.stderr?.on('data', check);
      child.stdout?.on('data', check);
      void c.exited.then(() => done(/Capturing on/.test(c.out) && c.running));
    });
    if (!ready || !c.running) {
      await c.stop();
      const hint =
        process.getuid?.() === 0
          ? ''
          : ' (as non-root, dumpcap needs cap_net_raw,cap_net_admin: dpkg-reconfigure wireshark-common, then join group wireshark)';
      throw new Error(`${tool} did not start capturing: ${c.out.trim().slice(-1500)}${hint}`);
    }
    await sleep(SETTLE_MS);
    return c;
  }

  /** SIGINT to the capturer's own PID, wait for it to flush and exit; SIGKILL if it does not within 10 s. */
  async stop(): Promise<void> {
    if (!this.running || this.child.pid === undefined) return;
    this.child.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([
      this.exited.then(() => false),
      new Promise<boolean>((res) => (timer = setTimeout(() => res(true), STOP_TIMEOUT_MS))),
    ]);
    clearTimeout(timer);
    if (timedOut) {
      say(`${this.tool} did not exit ${STOP_TIMEOUT_MS / 1000} s after SIGINT; killing it (the capture may be truncated)`);
      this.child.kill('SIGKILL');
      await this.exited;
    }
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Exit status of a finished child the way a shell reports it. */
function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  if (signal !== null) return 128 + (osConstants.signals[signal] ?? 0);
  return 1;
}

/**
 * Wait for the end of the capture: the command's exit, --seconds, or SIGINT/SIGTERM. Returns the command's exit status
 * (0 when no command runs). The capturer dying on its own also ends a timed or interactive capture.
 */
async function waitForEnd(plan: CapturePlan, cap: Capturer, env: NodeJS.ProcessEnv): Promise<number> {
  const signals: NodeJS.Signals[] = ['SIGINT', 'SIGTERM'];
  const handlers = new Map<NodeJS.Signals, () => void>();
  const cleanup = (): void => {
    for (const [s, h] of handlers) process.off(s, h);
  };
  try {
    if (plan.stop.kind === 'command') {
      const [cmd, ...args] = plan.stop.argv;
      const child = spawn(cmd, args, { stdio: 'inherit', env });
      const exited = new Promise<number>((res) => {
        child.on('exit', (code, signal) => res(exitStatus(code, signal)));
        child.on('error', (err) => {
          say(`cannot run ${cmd}: ${err.message}`);
          res((err as NodeJS.ErrnoException).code === 'ENOENT' ? 127 : 126);
        });
      });
      let signalled = 0;
      for (const s of signals) {
        const h = (): void => {
          signalled++;
          if (child.exitCode !== null || child.signalCode !== null) return;
          if (signalled > 1) {
            child.kill('SIGKILL');
          } else if (s === 'SIGINT') {
            // Ctrl-C went to the whole foreground group, command included; forward it only if it was sent to us alone.
            setTimeout(() => {
              if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
            }, SIGINT_FORWARD_GRACE_MS).unref();
          } else {
            child.kill(s);
          }
        };
        handlers.set(s, h);
        process.on(s, h);
      }
      void cap.exited.then(() => {
        if (child.exitCode === null && child.signalCode === null) {
          say(`${cap.tool} stopped while the command was still running: ${cap.output().trim().slice(-500)}`);
        }
      });
      return await exited;
    }
    await new Promise<void>((res) => {
      let timer: NodeJS.Timeout | undefined;
      const done = (): void => {
        clearTimeout(timer);
        res();
      };
      if (plan.stop.kind === 'seconds') timer = setTimeout(done, plan.stop.seconds * 1000);
      for (const s of signals) {
        handlers.set(s, done);
        process.on(s, done);
      }
      void cap.exited.then(done);
    });
    return 0;
  } finally {
    cleanup();
  }
}

/** Move (or copy across file systems) `from` to `to`. */
function moveFile(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    copyFileSync(from, to);
    unlinkSync(from);
  }
}

/** Run editcap to completion; resolves with its exit status and output. */
async function runEditcap(path: string, args: string[]): Promise<{ status: number; output: string }> {
  const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (d: Buffer) => (output += d.toString('utf8')));
  child.stderr.on('data', (d: Buffer) => (output += d.toString('utf8')));
  const [code, signal] = (await once(child, 'close')) as [number | null, NodeJS.Signals | null];
  return { status: exitStatus(code, signal), output };
}

const nonEmptyFile = (p: string): boolean => {
  try {
    const st = statSync(p);
    return st.isFile() && st.size > 0;
  } catch {
    return false;
  }
};

/** Create the key log (0600) when missing, and its `.qsr` directory (0700) for the default location. */
function ensureKeyLog(path: string): void {
  mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
  closeSync(openSync(path, 'a', 0o600));
}

/** `qsr capture`. Returns the process exit status (the command's, when one runs). */
export async function runCapture(
  o: CaptureCliOptions,
  command: readonly string[],
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): Promise<number> {
  const plan = planCapture(o, command, cwd, new Date());
  const capturer = findCapturer(env);
  if (capturer === null) {
    say('neither tshark nor dumpcap is installed; install it with: apt-get install tshark');
    return 1;
  }

  const isCommand = plan.stop.kind === 'command';
  const keylog = chooseKeyLog(plan.keylogFlag, env, cwd, isCommand);
  // Secrets may land in two files: the chosen key log and, if the command's SSLKEYLOGFILE is already set elsewhere, that.
  const keylogs: string[] = keylog.path === null ? [] : [keylog.path];
  let childEnv = env;
  if (isCommand && keylog.path !== null) {
    if (!env.SSLKEYLOGFILE) {
      ensureKeyLog(keylog.path);
      childEnv = { ...env, SSLKEYLOGFILE: keylog.path };
    } else {
      const inherited = resolve(cwd, env.SSLKEYLOGFILE);
      if (inherited !== keylog.path) keylogs.push(inherited);
    }
  }

  const work = mkdtempSync(join(tmpdir(), 'qsr-capture-'));
  try {
    const raw = join(work, 'raw.pcapng');
    const cap = await Capturer.start(capturer.tool, capturer.path, capturerArgs(plan.port, raw));
    const what = `udp port ${plan.port} on lo (127.0.0.1 and ::1) with ${capturer.tool}`;
    if (plan.stop.kind === 'command') {
      const shown = plan.stop.argv.map(shellQuote).join(' ');
      say(`capturing ${what} while running: ${shown}` + (keylog.path ? ` (key log ${keylog.path})` : ''));
    } else if (plan.stop.kind === 'seconds') {
      say(`capturing ${what} for ${plan.stop.seconds} s (Ctrl-C stops earlier)`);
    } else {
      say(`capturing ${what}; press Ctrl-C to stop`);
    }

    const status = await waitForEnd(plan, cap, childEnv);
    if (cap.isRunning) {
      await sleep(DRAIN_MS);
      await cap.stop();
    } else {
      say(`${cap.tool} exited on its own: ${cap.output().trim().slice(-1000)}`);
    }
    if (!existsSync(raw)) {
      say(`${cap.tool} wrote no capture file`);
      return status !== 0 ? status : 1;
    }
    const packets = countPcapngPackets(raw);
    const failed = await finish(plan, raw, work, packets, keylogs, keylog.source, env);
    return status !== 0 ? status : failed ? 1 : 0;
  } catch (err) {
    say((err as Error).message);
    return 1;
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

/** Embed the secrets (or keep the raw capture) and print the report. Returns true when something failed. */
async function finish(
  plan: CapturePlan,
  raw: string,
  work: string,
  packets: number,
  keylogs: string[],
  source: KeyLogSource | null,
  env: NodeJS.ProcessEnv,
): Promise<boolean> {
  const out = plan.output;
  const present = keylogs.filter(nonEmptyFile);
  const summary = `wrote ${out} (${packets} packet${packets === 1 ? '' : 's'})`;
  const lines: string[] = [];
  let failed = false;
  let embedded = false;
  let listHint = true;

  const editcap = findOnPath('editcap', env);
  if (present.length === 0) {
    moveFile(raw, out);
    const why =
      keylogs.length === 0
        ? 'no key log (give --keylog FILE, set SSLKEYLOGFILE, or keep one at ./.qsr/keylog.txt)'
        : `the key log ${keylogs.join(', ')} is missing or empty`;
    lines.push(`not decryptable: ${why}; this is the raw capture`);
  } else if (editcap === null) {
    moveFile(raw, out);
    lines.push('editcap is not installed (apt-get install wireshark-common), so the secrets are NOT embedded;');
    lines.push(`decrypt with: tshark -r ${shellQuote(out)} -o tls.keylog_file:${shellQuote(present[0])} -Y http3`);
    listHint = false;
  } else {
    let secrets = present[0];
    if (present.length > 1) {
      secrets = join(work, 'keylog.txt');
      writeFileSync(secrets, present.map((p) => readFileSync(p, 'utf8').replace(/\n?$/, '\n')).join(''), { mode: 0o600 });
    }
    const r = await runEditcap(editcap, ['--inject-secrets', `tls,${secrets}`, raw, out]);
    if (r.status !== 0) {
      moveFile(raw, out);
      failed = true;
      lines.push(`editcap --inject-secrets failed (${r.status}): ${r.output.trim().slice(-1000)}`);
      lines.push('kept the raw capture without secrets');
    } else {
      embedded = true;
      chmodSync(out, 0o600); // it holds TLS secrets now
    }
  }

  if (embedded) {
    say(`${summary}, TLS secrets from ${present.join(' + ')}${source ? ` (${source})` : ''} embedded`);
    lines.push('open it in Wireshark: it decrypts with no settings (secrets embedded)');
    lines.push('it holds every secret in that key log: share it only with people who may read this traffic');
  } else {
    say(summary);
  }
  if (packets === 0) lines.push(`no packets on udp port ${plan.port}: was anything talking on that port?`);
  if (listHint) lines.push(`list HTTP/3 frames: tshark -r ${shellQuote(out)} -Y http3`);
  for (const l of lines) process.stderr.write(`  ${l}\n`);
  return failed;
}
