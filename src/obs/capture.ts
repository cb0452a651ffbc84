/**
 * Capturing QUIC on loopback and reading the capture back with Wireshark's programs (Debian `tshark`, 4.0): what
 * `qsr capture` (src/cli/capture.ts) runs, and what the interop and e2e tests use to check traffic on the wire.
 *
 * - startCapture: `<tshark|dumpcap> -q -i lo -f 'udp port P' -w FILE` in a process group of its own (a terminal's
 *   Ctrl-C reaches only us; we stop it ourselves), ready once it prints "Capturing on"; stop() lets the last
 *   datagrams reach the capture, sends SIGINT to the capturer's own PID, waits for it to flush, SIGKILL after a grace
 *   period. A capture still running when this process exits gets SIGINT.
 * - countPcapngPackets: packets in a pcapng (block headers only).
 * - injectSecrets: `editcap --inject-secrets tls,KEYLOG in out` embeds an NSS key log (RFC 9850 / SSLKEYLOGFILE) as a
 *   Decryption Secrets Block (draft-ietf-opsawg-pcapng §4.7), so Wireshark decrypts QUIC (RFC 9001 §5) unasked.
 * - decryptReport / decryptReportFiltered: tshark's JSON of the capture, summarised by capture-report.ts.
 *
 * Programs are looked up on PATH; every one we run is bounded in time and signalled only through its own PID.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, existsSync, mkdirSync, openSync, readSync, statSync } from 'node:fs';
import { constants as osConstants } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { analyseTsharkJson, type DecryptReport, type Json } from './capture-report.js';

export { analyseTsharkJson, formatReport, h3FrameName, type DecryptReport, type PairBy } from './capture-report.js';

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

export interface Capturer {
  tool: 'tshark' | 'dumpcap';
  path: string;
}

/** tshark, else dumpcap (both write pcapng with `-w`, print "Capturing on" when ready, and stop cleanly on SIGINT). */
export function findCapturer(env: NodeJS.ProcessEnv = process.env): Capturer | null {
  for (const tool of ['tshark', 'dumpcap'] as const) {
    const path = findOnPath(tool, env);
    if (path !== null) return { tool, path };
  }
  return null;
}

export const NO_CAPTURER = 'neither tshark nor dumpcap is installed; install it with: apt-get install tshark';

/** Argument list for the capturer: interface lo, `udp port P` (covers 127.0.0.1 and ::1), quiet, to `file`. */
export function capturerArgs(port: number, file: string, iface = 'lo'): string[] {
  return ['-q', '-i', iface, '-f', `udp port ${port}`, '-w', file];
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

/** Exit status of a finished child the way a shell reports it. */
export function exitStatus(code: number | null, signal: NodeJS.Signals | null): number {
  if (code !== null) return code;
  if (signal !== null) return 128 + (osConstants.signals[signal] ?? 0);
  return 1;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------------------------------------------------------------
// The capturer

export interface CaptureOptions {
  /** UDP port to capture. */
  port: number;
  /** The pcapng to write (its directory is created when missing). */
  file: string;
  /** Default 'lo'. */
  iface?: string;
  /** Default: findCapturer(env). */
  capturer?: Capturer;
  env?: NodeJS.ProcessEnv;
  /** How long to wait for "Capturing on" (default 15 s). */
  readyTimeoutMs?: number;
  /** The pcap filter is attached right before "Capturing on" is printed: a pause before resolving (default 150 ms). */
  settleMs?: number;
  /** Hard limit: SIGKILL to the capturer after this long (default: none; a test passes one). */
  timeoutMs?: number;
}

export interface StopOptions {
  /** Datagrams sent just before the stop are still in the kernel's capture buffer: time to read them (default 300 ms). */
  drainMs?: number;
  /** How long the capturer may take to flush after SIGINT before it gets SIGKILL (default 10 s). */
  graceMs?: number;
}

export interface Capture {
  readonly pcap: string;
  readonly tool: string;
  readonly pid: number | undefined;
  /** Resolves once the capturer has exited (never rejects). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  isRunning(): boolean;
  /** The last 8 KiB the capturer wrote to stdout and stderr. */
  output(): string;
  /**
   * Stops the capture: 'stopped' (it flushed and exited on SIGINT), 'killed' (it did not within graceMs: the file may
   * be truncated) or 'not running' (it had exited already; nothing waited for).
   */
  stop(o?: StopOptions): Promise<'stopped' | 'killed' | 'not running'>;
}

class CaptureProcess implements Capture {
  private out = '';
  private running = true;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private readonly onExit = (): void => {
    // This process is going away without stopping the capture (an exception): do not leave a detached capturer behind.
    if (this.running && this.child.pid !== undefined) {
      try {
        process.kill(this.child.pid, 'SIGINT');
      } catch {
        // already gone
      }
    }
  };

  constructor(
    readonly pcap: string,
    readonly tool: string,
    private readonly child: ChildProcess,
    timeoutMs: number | undefined,
  ) {
    const keep = (d: Buffer): void => {
      this.out = (this.out + d.toString('utf8')).slice(-8192);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    const limit = timeoutMs === undefined ? undefined : setTimeout(() => this.running && child.kill('SIGKILL'), timeoutMs);
    limit?.unref();
    this.exited = new Promise((res) => {
      const done = (r: { code: number | null; signal: NodeJS.Signals | null }): void => {
        this.running = false;
        clearTimeout(limit);
        process.off('exit', this.onExit);
        res(r);
      };
      child.on('exit', (code, signal) => done({ code, signal }));
      child.on('error', (err) => {
        keep(Buffer.from(`\n${err.message}\n`));
        done({ code: null, signal: null });
      });
    });
    process.on('exit', this.onExit);
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  isRunning(): boolean {
    return this.running;
  }

  output(): string {
    return this.out;
  }

  /** Resolves true once "Capturing on" was printed, false if the capturer exits or readyMs passes first. */
  ready(readyMs: number): Promise<boolean> {
    const child = this.child;
    return new Promise<boolean>((res) => {
      const check = (): void => {
        if (/Capturing on/.test(this.out)) done(true);
      };
      const timer = setTimeout(() => done(false), readyMs);
      const done = (ok: boolean): void => {
        clearTimeout(timer);
        child.stderr?.off('data', check);
        child.stdout?.off('data', check);
        res(ok);
      };
      child.stderr?.on('data', check);
      child.stdout?.on('data', check);
      void this.exited.then(() => done(/Capturing on/.test(this.out) && this.running));
    });
  }

  async stop(o: StopOptions = {}): Promise<'stopped' | 'killed' | 'not running'> {
    if (!this.running || this.child.pid === undefined) return 'not running';
    await sleep(o.drainMs ?? 300);
    if (!this.running) return 'not running';
    this.child.kill('SIGINT');
    let timer: NodeJS.Timeout | undefined;
    const timedOut = await Promise.race([this.exited.then(() => false), new Promise<boolean>((res) => (timer = setTimeout(() => res(true), o.graceMs ?? 10_000)))]);
    clearTimeout(timer);
    if (!timedOut) return 'stopped';
    this.child.kill('SIGKILL');
    await this.exited;
    return 'killed';
  }
}

/** Starts capturing `udp port P`; resolves once the capturer reports that it captures (throws if it does not). */
export async function startCapture(o: CaptureOptions): Promise<Capture> {
  const capturer = o.capturer ?? findCapturer(o.env);
  if (capturer === null) throw new Error(NO_CAPTURER);
  mkdirSync(dirname(o.file), { recursive: true });
  const child = spawn(capturer.path, capturerArgs(o.port, o.file, o.iface), { stdio: ['ignore', 'pipe', 'pipe'], detached: true, env: o.env });
  const c = new CaptureProcess(o.file, capturer.tool, child, o.timeoutMs);
  const ready = await c.ready(o.readyTimeoutMs ?? 15_000);
  if (!ready || !c.isRunning()) {
    await c.stop({ drainMs: 0 });
    const hint =
      process.getuid?.() === 0 ? '' : ' (as non-root, dumpcap needs cap_net_raw,cap_net_admin: dpkg-reconfigure wireshark-common, then join group wireshark)';
    throw new Error(`${capturer.tool} did not start capturing: ${c.output().trim().slice(-1500)}${hint}`);
  }
  await sleep(o.settleMs ?? 150);
  return c;
}

// ---------------------------------------------------------------------------------------------------------------------
// Reading captures back

/** A program that exited with a non-zero status (or could not be run). */
export class ToolError extends Error {
  constructor(
    readonly program: string,
    readonly status: number,
    /** The tail of what it wrote to stderr (and stdout, for editcap). */
    readonly output: string,
  ) {
    super(`${program} failed (${status}): ${output.trim().slice(-1500)}`);
    this.name = 'ToolError';
  }
}

export interface ToolOptions {
  env?: NodeJS.ProcessEnv;
  /** SIGKILL after this long (default 60 s; 90 s for decryptReportFiltered's tshark runs). */
  timeoutMs?: number;
}

/** Runs `name` from PATH to completion: its stdout, or a ToolError for a non-zero exit, a signal or the time limit. */
async function runTool(name: string, args: string[], o: ToolOptions, defaultTimeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  const path = findOnPath(name, o.env);
  if (path === null) throw new ToolError(name, 127, `${name} is not installed (apt-get install ${name === 'tshark' ? 'tshark' : 'wireshark-common'})`);
  const child = spawn(path, args, { stdio: ['ignore', 'pipe', 'pipe'], env: o.env });
  const out: Buffer[] = [];
  let err = '';
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString('utf8')).slice(-8192)));
  let timedOut = false;
  const timeoutMs = o.timeoutMs ?? defaultTimeoutMs;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, timeoutMs);
  const status = await new Promise<number>((res) => {
    child.on('error', (e) => {
      err += `\n${e.message}`;
      res(126);
    });
    child.on('close', (code, signal) => res(exitStatus(code, signal)));
  });
  clearTimeout(timer);
  const stdout = Buffer.concat(out).toString('utf8');
  if (status !== 0 || timedOut) {
    throw new ToolError(`${name} ${args.join(' ')}`, status, (timedOut ? `killed after ${timeoutMs} ms\n` : '') + err + (name === 'editcap' ? stdout : ''));
  }
  return { stdout, stderr: err };
}

/** Embeds the key log in a copy of the capture (a Decryption Secrets Block); ToolError when editcap fails. */
export async function injectSecrets(pcap: string, keylog: string, out: string, o: ToolOptions = {}): Promise<void> {
  await runTool('editcap', ['--inject-secrets', `tls,${keylog}`, pcap, out], o, 60_000);
}

const parseJson = (out: string): Json => (out.trim() === '' ? [] : (JSON.parse(out) as Json));

/**
 * Decrypts `pcap` with an NSS key log (null: only secrets embedded in the pcapng) and summarises every datagram,
 * pairing http3 layers with STREAM frames by content: a STREAM frame that ends in part of an HTTP/3 frame gets no
 * http3 layer from tshark, and pairing by position then lost the whole datagram (under load, when a request's
 * HEADERS and DATA and the next request share a packet, up to four of six request streams). For small captures: tshark's full JSON of a 20 MB transfer is
 * ~250 MB (see decryptReportFiltered).
 */
export async function decryptReport(pcap: string, keylog: string | null, o: ToolOptions = {}): Promise<DecryptReport> {
  if (!existsSync(pcap) || statSync(pcap).size === 0) throw new Error(`no capture file ${pcap}`);
  const args = ['-r', pcap];
  if (keylog !== null) args.push('-o', `tls.keylog_file:${keylog}`);
  args.push('-T', 'json', '--no-duplicate-keys');
  const { stdout } = await runTool('tshark', args, o, 60_000);
  return analyseTsharkJson(parseJson(stdout), 'content');
}

/**
 * decryptReport for captures of many megabytes: only the datagrams the check needs are turned into JSON (long-header
 * packets, those with a dissected HTTP/3 frame, and every packet tshark could not decrypt, so `undecrypted` stays
 * exact), paired by content. The datagram and QUIC packet totals come from a cheap fields pass (no keys needed to
 * count packets).
 */
export async function decryptReportFiltered(pcap: string, keylog: string, o: ToolOptions = {}): Promise<DecryptReport> {
  const counts = await runTool('tshark', ['-r', pcap, '-T', 'fields', '-e', 'quic.packet_length', '-E', 'occurrence=a', '-E', 'aggregator=,'], o, 90_000);
  let packets = 0;
  let quicPackets = 0;
  for (const line of counts.stdout.split('\n')) {
    if (line === '') continue;
    packets++;
    quicPackets += line.trim() === '' ? 0 : line.split(',').length;
  }
  const filter = 'quic.long.packet_type || http3.frame_type || quic.decryption_failed || quic.remaining_payload';
  const { stdout } = await runTool('tshark', ['-r', pcap, '-o', `tls.keylog_file:${keylog}`, '-Y', filter, '-T', 'json', '--no-duplicate-keys'], o, 90_000);
  const rep = analyseTsharkJson(parseJson(stdout), 'content');
  return { ...rep, packets, quicPackets };
}
