/**
 * Shared pieces of the benchmark suites (bench/run.ts, bench/h3.ts, bench/router.ts): bounded children under
 * /usr/bin/time, reading their JSON lines, free loopback ports, statistics, tables and CPU-profile summaries.
 * Measurement tooling, not tests: nothing here asserts. Children are only ever signalled through their own PIDs.
 */
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findProgram, jsonLines, spawnBounded, waitFor, type Child, type ExitInfo } from '../tools/process.js';

export { findProgram, jsonLines, spawnBounded, waitFor, type Child };

export const HOST = '127.0.0.1';
export const TIME = '/usr/bin/time';
export const CERTS = fileURLToPath(new URL('../../test/fixtures/certs/', import.meta.url));
export const QSR_JS = fileURLToPath(new URL('../src/cli/qsr.js', import.meta.url));
export const LOAD_JS = fileURLToPath(new URL('./load.js', import.meta.url));

/** Prints a line and keeps it for the report. */
export type Say = (line: string) => void;

/** Options every suite receives from bench/run.ts. */
export interface SuiteOptions {
  runs: number;
  /** When set: one extra profiled run of the server process; .cpuprofile files go here. */
  profileDir: string | null;
  /** Scratch directory (removed by run.ts). */
  work: string;
}

export function readTextOr(path: string, dflt: string): string {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return dflt;
  }
}

export const num = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

export function describeExit(c: Child, e: { code: number | null; signal: string | null; timedOut: boolean }): string {
  const tail = c.stderr().trim().split('\n').slice(-3).join(' | ');
  return `${c.name} exited code=${e.code} signal=${e.signal}${e.timedOut ? ' (hard timeout)' : ''}${tail ? `: ${tail.slice(0, 400)}` : ''}`;
}

// ---------------------------------------------------------------------------------------------------------------------
// /usr/bin/time

/** `/usr/bin/time -f '%e %U %S %M' -o FILE`: wall s, user+sys s, max RSS. */
export interface TimeFigures {
  wall: number;
  cpu: number;
  rssMB: number;
}

export function readTimeFile(path: string): TimeFigures | null {
  // GNU time may print "Command exited with non-zero status N" / "Command terminated by signal N" first.
  const lines = readTextOr(path, '').split('\n').filter((l) => /^[\d.]+ [\d.]+ [\d.]+ \d+$/.test(l.trim()));
  const last = lines.at(-1);
  if (last === undefined) return null;
  const [e, u, s, m] = last.trim().split(' ').map(Number) as [number, number, number, number];
  return { wall: e, cpu: u + s, rssMB: (m * 1024) / 1e6 };
}

/** Spawns `prog args` under /usr/bin/time when it exists (timeFile non-null), else directly. */
export function spawnTimed(
  name: string,
  prog: string,
  args: string[],
  work: string,
  timeoutMs: number,
  timeFile: string | null,
  env?: Record<string, string | undefined>,
): Child {
  const timed = timeFile !== null && existsSync(TIME);
  if (!timed) return spawnBounded({ name, cmd: prog, args, workDir: work, timeoutMs, env });
  return spawnBounded({ name, cmd: TIME, args: ['-f', '%e %U %S %M', '-o', timeFile, prog, ...args], workDir: work, timeoutMs, env });
}

/** The PID of the direct child of `parent` (the program /usr/bin/time runs), from /proc. */
export function childPidOf(parent: number | undefined): number | null {
  if (parent === undefined) return null;
  const list = readTextOr(`/proc/${parent}/task/${parent}/children`, '').split(/\s+/).filter(Boolean);
  return list.length > 0 ? Number(list[0]) : null;
}

const delay = (ms: number): Promise<boolean> => new Promise((r) => setTimeout(() => r(false), ms));

/**
 * Stops a server we started, possibly wrapped in /usr/bin/time: `sig` to the program's own PID (the child of
 * our time process, read from /proc), then SIGKILL to it, then SIGKILL to our direct child. Never by name.
 */
export async function stopServer(srv: Child, sig: NodeJS.Signals = 'SIGINT', graceMs = 5000): Promise<ExitInfo> {
  if (!srv.isRunning()) return srv.exited;
  const inner = childPidOf(srv.pid);
  const wrapped = inner !== null && readTextOr(`/proc/${srv.pid}/comm`, '') === 'time';
  const target = wrapped ? inner : (srv.pid ?? null);
  if (target !== null) {
    try {
      process.kill(target, sig);
    } catch {
      // already gone
    }
  }
  const done = await Promise.race([srv.exited.then(() => true), delay(graceMs)]);
  if (!done && target !== null) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // already gone
    }
    await Promise.race([srv.exited, delay(2000)]);
  }
  if (srv.isRunning()) return srv.stop('SIGKILL', 1000);
  return srv.exited;
}

/** Waits until `pred(stdout + stderr)` holds or the child exits; false on timeout or exit. */
export async function waitForOutput(c: Child, pred: (text: string) => boolean, timeoutMs: number): Promise<boolean> {
  let seen = false;
  await waitFor(() => {
    seen = pred(c.output());
    return seen || !c.isRunning();
  }, timeoutMs);
  return seen;
}

// ---------------------------------------------------------------------------------------------------------------------
// Ports

function tcpFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(false));
    s.listen(port, HOST, () => s.close(() => resolve(true)));
  });
}

function udpPort0(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4');
    s.once('error', reject);
    s.bind(0, HOST, () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

/** A port that is free on 127.0.0.1 for both UDP and TCP (routers listen on both). */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const p = await udpPort0();
    if (await tcpFree(p)) return p;
  }
  throw new Error('no free UDP+TCP port found on 127.0.0.1');
}

// ---------------------------------------------------------------------------------------------------------------------
// gtlsclient

/** Program paths, or null when ngtcp2's examples are not installed. */
export function gtlsPrograms(): { server: string | null; client: string | null } {
  return { server: findProgram('gtlsserver'), client: findProgram('gtlsclient') };
}

/**
 * One gtlsclient request without -q: gtlsclient exits 0 even when everything failed, so a bench checks the status
 * and the stream's close code once before timing quiet runs. Returns null when fine, else what went wrong.
 */
export async function gtlsCheck(work: string, port: number, url: string, extra: string[] = [], want = 200): Promise<string | null> {
  const { client } = gtlsPrograms();
  if (client === null) return 'gtlsclient not installed (apt-get install ngtcp2-client)';
  const args = ['--exit-on-all-streams-close', '--timeout=10s', '--handshake-timeout=5s', ...extra, HOST, String(port), url];
  const c = spawnBounded({ name: 'gtls-check', cmd: client, args, workDir: work, timeoutMs: 60_000 });
  const e = await c.exited;
  const out = c.output();
  const status = /http: stream 0x[0-9a-f]+ \[:status: (\d+)\]/.exec(out);
  const closed = /HTTP stream \d+ closed with error code (\d+)/.exec(out);
  if (status === null) return `no response status from ${url} (${describeExit(c, e)})`;
  if (Number(status[1]) !== want) return `${url}: status ${status[1]}, expected ${want}`;
  if (closed === null || Number(closed[1]) !== 0x100) return `${url}: stream closed with ${closed?.[1] ?? 'nothing'}, expected 256 (H3_NO_ERROR)`;
  return null;
}

// ---------------------------------------------------------------------------------------------------------------------
// Statistics and tables

export function median(xs: (number | null | undefined)[]): number | null {
  const v = xs.filter((x): x is number => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m]! : (v[m - 1]! + v[m]!) / 2;
}

/** Nearest-rank percentile of an ascending array. */
export function percentile(sorted: number[], p: number): number | null {
  if (sorted.length === 0) return null;
  const i = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[i]!;
}

export const fmt = (x: number | null | undefined, digits = 2): string => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : x.toFixed(digits));

/** Integer with thousands separators. */
export const fmtInt = (x: number | null | undefined): string => (x === null || x === undefined || !Number.isFinite(x) ? 'n/a' : Math.round(x).toLocaleString('en-US'));

export function table(rows: string[][]): string {
  const w = rows[0]!.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => (i === 0 ? c.padEnd(w[i]!) : c.padStart(w[i]!))).join(' | ')} |`;
  return [line(rows[0]!), `|${w.map((n, i) => (i === 0 ? '-'.repeat(n + 1) + '-' : '-'.repeat(n + 1) + ':')).join('|')}|`, ...rows.slice(1).map(line)].join('\n');
}

/** "met" / "NOT met" / "n/a" for a figure against a target. */
export function verdict(x: number | null, target: number, higherIsBetter = true): string {
  if (x === null) return 'n/a';
  return (higherIsBetter ? x >= target : x <= target) ? 'met' : 'NOT met';
}

// ---------------------------------------------------------------------------------------------------------------------
// CPU profiles (node --cpu-prof)

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
}

/** Top self-time functions of every .cpuprofile in `dir`, as printable lines (sample counts -> % of samples). */
export function summarizeProfiles(dir: string, top = 15): string[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  } catch {
    return [`  (no profile directory ${dir})`];
  }
  if (files.length === 0) return [`  (no .cpuprofile written in ${dir}: the process did not exit normally)`];
  const out: string[] = [];
  for (const f of files) {
    let prof: { nodes: ProfileNode[]; startTime: number; endTime: number; samples?: number[] };
    try {
      prof = JSON.parse(readFileSync(join(dir, f), 'utf8')) as typeof prof;
    } catch (e) {
      out.push(`  ${f}: unreadable (${(e as Error).message})`);
      continue;
    }
    const self = new Map<string, number>();
    let total = 0;
    for (const n of prof.nodes) {
      const hits = n.hitCount ?? 0;
      if (hits === 0) continue;
      total += hits;
      const cf = n.callFrame;
      const where = cf.url ? `${cf.url.replace(/^file:\/\//, '').replace(/^.*\/dist\//, 'dist/')}:${cf.lineNumber + 1}` : '';
      const key = `${cf.functionName || '(anonymous)'} ${where}`.trim();
      self.set(key, (self.get(key) ?? 0) + hits);
    }
    const ms = (prof.endTime - prof.startTime) / 1000;
    out.push(`  ${f}: ${total} samples over ${ms.toFixed(0)} ms; top ${top} by self time:`);
    const sorted = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, top);
    for (const [k, v] of sorted) out.push(`    ${((100 * v) / Math.max(1, total)).toFixed(1).padStart(5)} %  ${k}`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------------------------------
// Running the load generator and timed gtlsclient

/** What bench/load.js printed (see its header); null fields when it failed early. */
export interface LoadResult {
  ok: boolean;
  error?: string;
  requests?: number;
  failed?: number;
  statuses?: Record<string, number>;
  firstError?: string;
  lastBody?: string;
  connectMs?: number;
  wallMs?: number;
  rps?: number;
  mbPerSecIn?: number;
  mbPerSecOut?: number;
  p50?: number | null;
  p90?: number | null;
  p99?: number | null;
  max?: number | null;
  cpu?: number;
  maxRssMB?: number;
}

/** Runs bench/load.js with `args` (bounded) and returns its exit line. */
export async function runLoad(work: string, name: string, args: string[], timeoutMs: number): Promise<LoadResult> {
  const c = spawnBounded({ name, cmd: process.execPath, args: [LOAD_JS, ...args, '--timeout', String(timeoutMs - 5000)], workDir: work, timeoutMs });
  const e = await c.exited;
  const line = jsonLines(c.stdout()).find((j) => j.event === 'exit');
  if (!line) return { ok: false, error: describeExit(c, e) };
  const r = line as unknown as LoadResult;
  if (!r.ok && r.error === undefined) r.error = `${r.failed ?? '?'} failed: ${r.firstError ?? ''} ${JSON.stringify(r.statuses ?? {})}`;
  return r;
}

/** A program run under /usr/bin/time: wall seconds (from time, else the parent's clock), CPU, RSS, and its output. */
export interface TimedRun {
  wall: number;
  cpu: number | null;
  rssMB: number | null;
  exit: ExitInfo;
  child: Child;
}

export async function runTimed(work: string, name: string, prog: string, args: string[], timeoutMs: number): Promise<TimedRun> {
  const tf = join(work, `${name}.time`);
  const t0 = process.hrtime.bigint();
  const child = spawnTimed(name, prog, args, work, timeoutMs, tf);
  const exit = await child.exited;
  const parentWall = Number(process.hrtime.bigint() - t0) / 1e9;
  const t = readTimeFile(tf);
  return { wall: t?.wall ?? parentWall, cpu: t?.cpu ?? null, rssMB: t?.rssMB ?? null, exit, child };
}

/** Per-measure samples over several runs, reduced to medians. */
export class Samples {
  private readonly m = new Map<string, number[]>();
  private readonly errs = new Map<string, string[]>();
  add(key: string, v: number | null | undefined): void {
    if (typeof v !== 'number' || !Number.isFinite(v)) return;
    const a = this.m.get(key) ?? [];
    a.push(v);
    this.m.set(key, a);
  }
  fail(key: string, why: string): void {
    const a = this.errs.get(key) ?? [];
    a.push(why);
    this.errs.set(key, a);
  }
  med(key: string): number | null {
    return median(this.m.get(key) ?? []);
  }
  all(key: string): number[] {
    return this.m.get(key) ?? [];
  }
  failures(key: string): number {
    return this.errs.get(key)?.length ?? 0;
  }
  toJSON(): Record<string, unknown> {
    const out: Record<string, unknown> = {};
    for (const [k, v] of this.m) out[k] = { median: median(v), samples: v };
    for (const [k, v] of this.errs) out[`${k}:errors`] = v;
    return out;
  }
}
