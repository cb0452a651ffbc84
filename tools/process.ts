// Tools shared by the tests and the benchmarks: program lookup, bounded child processes (output to files, a hard
// timeout, signals only to the PID we spawned: nothing here kills by name), waiting, and loopback UDP ports.
// Loopback only: helpers refuse addresses other than 127.0.0.1 / ::1 / localhost.

import { spawn, type ChildProcess } from 'node:child_process';
import { createSocket } from 'node:dgram';
import { accessSync, constants, existsSync, mkdirSync, mkdtempSync, openSync, closeSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

// ---------------------------------------------------------------------------------------------------------------------
// Work directories and program lookup

/** Create a fresh per-run work directory under os.tmpdir(). */
export function makeWorkDir(prefix = 'qsr-interop-'): string {
  return mkdtempSync(join(tmpdir(), prefix));
}

/** Absolute path of an executable found on PATH (plus /usr/sbin, /sbin for gtlsserver), or null. */
export function findProgram(name: string): string | null {
  const dirs = (process.env.PATH ?? '').split(delimiter).filter((d) => d !== '');
  for (const extra of ['/usr/local/sbin', '/usr/sbin', '/sbin', '/usr/bin']) if (!dirs.includes(extra)) dirs.push(extra);
  for (const d of dirs) {
    const p = join(d, name);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

export function assertLoopback(addr: string): void {
  if (addr !== '127.0.0.1' && addr !== '::1' && addr !== 'localhost') {
    throw new Error(`refusing non-loopback address ${addr}`);
  }
}


// ---------------------------------------------------------------------------------------------------------------------
// Bounded child processes

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the hard timeout fired and we sent SIGKILL. */
  timedOut: boolean;
  /** Set when spawn itself failed (ENOENT, EACCES, ...). */
  spawnError?: string;
}

export interface SpawnOptions {
  /** Short label used for the log file names (`<name>.stdout`, `<name>.stderr`). */
  name: string;
  cmd: string;
  args: readonly string[];
  workDir: string;
  /** Hard limit: after this the child gets SIGKILL (to its own PID). */
  timeoutMs: number;
  env?: Record<string, string | undefined>;
  cwd?: string;
  /** Start it as the leader of a process group of its own (its PID is the group ID), e.g. to signal the group. */
  detached?: boolean;
}

export interface Child {
  readonly name: string;
  readonly pid: number | undefined;
  readonly stdoutPath: string;
  readonly stderrPath: string;
  /** Resolves once the child has exited (never rejects). */
  readonly exited: Promise<ExitInfo>;
  isRunning(): boolean;
  /** Send a signal to this child's PID if it is still running. */
  signal(sig: NodeJS.Signals): void;
  /** Send `sig`, wait up to graceMs, then SIGKILL; resolves with the exit info. */
  stop(sig?: NodeJS.Signals, graceMs?: number): Promise<ExitInfo>;
  stdout(): string;
  stderr(): string;
  /** stdout + stderr (gtls programs mix them). */
  output(): string;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // If the harness itself exits early, do not leave our own children behind.
  process.on('exit', () => {
    for (const c of live) {
      if (c.exitCode === null && c.signalCode === null && c.pid !== undefined) {
        try {
          process.kill(c.pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
  });
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Start a child with stdout/stderr going to files and a hard timeout. */
export function spawnBounded(o: SpawnOptions): Child {
  installExitHook();
  mkdirSync(o.workDir, { recursive: true });
  let stdoutPath = join(o.workDir, `${o.name}.stdout`);
  let stderrPath = join(o.workDir, `${o.name}.stderr`);
  for (let i = 2; existsSync(stdoutPath) || existsSync(stderrPath); i++) {
    stdoutPath = join(o.workDir, `${o.name}-${i}.stdout`);
    stderrPath = join(o.workDir, `${o.name}-${i}.stderr`);
  }
  const outFd = openSync(stdoutPath, 'w');
  const errFd = openSync(stderrPath, 'w');
  writeFileSync(join(o.workDir, `${o.name}.cmdline`), [o.cmd, ...o.args].join(' ') + '\n', { flag: 'a' });
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries({ ...process.env, ...(o.env ?? {}) })) if (v !== undefined) env[k] = v;

  let timedOut = false;
  let spawnError: string | undefined;
  const child = spawn(o.cmd, [...o.args], { stdio: ['ignore', outFd, errFd], env, cwd: o.cwd ?? o.workDir, detached: o.detached ?? false });
  closeSync(outFd);
  closeSync(errFd);
  live.add(child);

  const exited = new Promise<ExitInfo>((resolve) => {
    let done = false;
    const finish = (info: ExitInfo): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      live.delete(child);
      resolve(info);
    };
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }, o.timeoutMs);
    child.on('error', (e) => {
      spawnError = e.message;
      if (child.pid === undefined) finish({ code: null, signal: null, timedOut, spawnError });
    });
    child.on('exit', (code, signal) => finish({ code, signal, timedOut, spawnError }));
  });

  const isRunning = (): boolean => child.pid !== undefined && child.exitCode === null && child.signalCode === null;
  return {
    name: o.name,
    pid: child.pid,
    stdoutPath,
    stderrPath,
    exited,
    isRunning,
    signal(sig) {
      // child.kill() signals exactly child.pid; skip it once the child is gone so a reused PID is never hit.
      if (isRunning()) child.kill(sig);
    },
    async stop(sig = 'SIGTERM', graceMs = 3000) {
      if (isRunning()) child.kill(sig);
      let grace: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((r) => (grace = setTimeout(() => r('late'), graceMs)));
      const first = await Promise.race([exited, late]);
      clearTimeout(grace);
      if (first === 'late' && isRunning()) child.kill('SIGKILL');
      return exited;
    },
    stdout: () => readText(stdoutPath),
    stderr: () => readText(stderrPath),
    output: () => readText(stdoutPath) + readText(stderrPath),
  };
}

/** The lines of a child's output that are JSON objects (starting with '{'), parsed; partial or other lines skipped. */
export function jsonLines(text: string): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line from a killed child, or not JSON after all
    }
  }
  return out;
}

/** Poll `cond` every intervalMs until it is true or timeoutMs elapses. */
export async function waitFor(cond: () => boolean, timeoutMs: number, intervalMs = 50): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  while (Date.now() < end) {
    if (cond()) return true;
    await sleep(intervalMs);
  }
  return cond();
}

// ---------------------------------------------------------------------------------------------------------------------
// UDP ports

/** A UDP port that was free on `addr` a moment ago (bind port 0, read it, close). */
export function freeUdpPort(addr = '127.0.0.1'): Promise<number> {
  assertLoopback(addr);
  return new Promise((resolve, reject) => {
    const s = createSocket(addr.includes(':') ? 'udp6' : 'udp4');
    s.once('error', reject);
    s.bind(0, addr === 'localhost' ? '127.0.0.1' : addr, () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** True when some socket is bound to UDP `port` (reads /proc/net/udp{,6}; Linux only). */
export function udpPortBound(port: number): boolean {
  const hex = ':' + port.toString(16).toUpperCase().padStart(4, '0');
  for (const f of ['/proc/net/udp', '/proc/net/udp6']) {
    const lines = readText(f).split('\n').slice(1);
    for (const l of lines) {
      const local = l.trim().split(/\s+/)[1];
      if (local !== undefined && local.endsWith(hex)) return true;
    }
  }
  return false;
}
