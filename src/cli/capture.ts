/**
 * `qsr capture`: record the loopback traffic of one UDP port with tshark (or dumpcap) and write a pcapng that carries
 * the TLS secrets in a Decryption Secrets Block (pcapng, draft-ietf-opsawg-pcapng §4.7), so Wireshark decrypts QUIC
 * (RFC 9001 §5) and shows HTTP/3 with no settings. The secrets come from an NSS key log (RFC 9850 / SSLKEYLOGFILE).
 * Capturing, counting and embedding are the library's (src/obs/capture.ts); this file is the command: flags, the key
 * log choice, running COMMAND under the capture, signals, and the report.
 *
 * Flow: choose the capturer, start it (startCapture: ready once it reports "Capturing on"), then run COMMAND (with
 * SSLKEYLOGFILE pointing at the key log) or wait --seconds or Ctrl-C. Stop the capturer, inject the secrets, report.
 *
 * Every message of this command goes to stderr, so the command's stdout stays pipeable.
 */
import { spawn } from 'node:child_process';
import {
  chmodSync,
  closeSync,
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  unlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { countPcapngPackets, exitStatus, findCapturer, findOnPath, injectSecrets, NO_CAPTURER, startCapture, ToolError, type Capture } from '../obs/capture.js';
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
const STOP_TIMEOUT_MS = 10_000;
/** editcap copies the whole capture: generous, but bounded. */
const EDITCAP_TIMEOUT_MS = 10 * 60_000;
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

/** Quote a path for a copy-paste shell line when it needs it. */
export function shellQuote(s: string): string {
  return /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`;
}

const say = (line: string): void => {
  process.stderr.write(`qsr capture: ${line}\n`);
};

/**
 * Wait for the end of the capture: the command's exit, --seconds, or SIGINT/SIGTERM. Returns the command's exit status
 * (0 when no command runs). The capturer dying on its own also ends a timed or interactive capture.
 */
async function waitForEnd(plan: CapturePlan, cap: Capture, env: NodeJS.ProcessEnv): Promise<number> {
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
    say(NO_CAPTURER);
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
    const cap = await startCapture({ port: plan.port, file: raw, capturer, env });
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
    if (cap.isRunning()) {
      const how = await cap.stop({ graceMs: STOP_TIMEOUT_MS });
      if (how === 'killed') say(`${cap.tool} did not exit ${STOP_TIMEOUT_MS / 1000} s after SIGINT; killed it (the capture may be truncated)`);
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
    const r = await injectSecrets(raw, secrets, out, { env, timeoutMs: EDITCAP_TIMEOUT_MS }).then(
      () => ({ status: 0, output: '' }),
      (err: unknown) => (err instanceof ToolError ? { status: err.status, output: err.output } : { status: 1, output: (err as Error).message }),
    );
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
