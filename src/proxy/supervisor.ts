/**
 * Runs the backend services as child processes (`qsr service NAME --port N`) and restarts one that exits, with
 * exponential backoff (reset after it has stayed up for a while). Every start, exit and restart is logged.
 *
 * Each service runs in a process group of its own, so the signals a terminal sends to the foreground job (Ctrl-C's
 * SIGINT, SIGQUIT) reach `qsr up` only, which then drains before it stops the services itself. An IPC channel is
 * each service's lifeline: when `qsr up` dies (even by SIGKILL) the channel closes and the service exits.
 *
 * What a service writes to stderr is passed on as records of this log: a JSON line becomes a record with its own
 * fields at its own level (`level`: a pino number or a name; info when absent), anything else a warning with the
 * line as its message.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ServiceSpec {
  name: string;
  port: number;
  host?: string;
  /** Extra arguments for `qsr service NAME` (e.g. ['--max-body-bytes', '1000']). */
  args?: string[];
}

export interface SupervisorLog {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
  error?(fields: Record<string, unknown>, msg: string): void;
  debug?(fields: Record<string, unknown>, msg: string): void;
}

type Level = 'debug' | 'info' | 'warn' | 'error';
const PINO_LEVELS: [number, Level][] = [
  [50, 'error'], // error and fatal
  [40, 'warn'],
  [30, 'info'],
  [0, 'debug'], // debug and trace
];

function levelOf(v: unknown): Level {
  if (typeof v === 'number') return PINO_LEVELS.find(([n]) => v >= n)?.[1] ?? 'info';
  if (typeof v === 'string') {
    const l = v.toLowerCase();
    if (l === 'fatal' || l === 'error') return 'error';
    if (l === 'warn' || l === 'warning') return 'warn';
    if (l === 'debug' || l === 'trace') return 'debug';
  }
  return 'info';
}

/**
 * One line a service wrote to stderr as a log record: the fields of its JSON object (without its time and level,
 * which the record gets from our log) at its level, or the text as a warning.
 */
export function serviceRecord(line: string): { level: Level; fields: Record<string, unknown>; msg: string } {
  if (line.startsWith('{')) {
    try {
      const o = JSON.parse(line) as unknown;
      if (o !== null && typeof o === 'object' && !Array.isArray(o)) {
        const { time, level, msg, ...fields } = o as Record<string, unknown>;
        if (time !== undefined) fields.serviceTime = time;
        const text = typeof msg === 'string' ? msg : typeof fields.event === 'string' ? fields.event : '';
        return { level: levelOf(level), fields, msg: text };
      }
    } catch {
      // not JSON after all: kept as text
    }
  }
  return { level: 'warn', fields: {}, msg: line };
}

interface Running {
  spec: ServiceSpec;
  child: ChildProcess | null;
  restarts: number;
  backoffMs: number;
  startedAt: number;
  timer: NodeJS.Timeout | null;
  ready: Promise<void>;
  /** stop() sent it SIGTERM / had to SIGKILL it. */
  stopAsked: boolean;
  killed: boolean;
}

const QSR = fileURLToPath(new URL('../cli/qsr.js', import.meta.url));
const MIN_BACKOFF = 200;
const MAX_BACKOFF = 10_000;
/** A service that stayed up this long gets its backoff reset. */
const STABLE_MS = 10_000;

export class Supervisor {
  private readonly running = new Map<string, Running>();
  private stopping = false;

  constructor(
    private readonly log: SupervisorLog,
    private readonly command: { cmd: string; args: string[] } = { cmd: process.execPath, args: [QSR] },
  ) {}

  /** Starts every service; resolves once each has printed its "listening" line (or after 5 s). */
  async start(specs: ServiceSpec[]): Promise<void> {
    for (const spec of specs) {
      const r: Running = { spec, child: null, restarts: 0, backoffMs: MIN_BACKOFF, startedAt: 0, timer: null, ready: Promise.resolve(), stopAsked: false, killed: false };
      this.running.set(spec.name, r);
      this.launch(r);
    }
    await Promise.all([...this.running.values()].map((r) => r.ready));
  }

  /** PIDs of the running services, by name. */
  pids(): Record<string, number | null> {
    const out: Record<string, number | null> = {};
    for (const [name, r] of this.running) out[name] = r.child?.pid ?? null;
    return out;
  }

  restarts(name: string): number {
    return this.running.get(name)?.restarts ?? 0;
  }

  private launch(r: Running): void {
    const { name, port, host } = r.spec;
    const args = [...this.command.args, 'service', name, '--port', String(port)];
    if (host) args.push('--host', host);
    // The 'ipc' channel is the service's lifeline: it closes when this process dies, and the service then exits.
    if (r.spec.args) args.push(...r.spec.args);
    // detached: a process group (and session) of its own, out of reach of the terminal's job-control signals.
    const child = spawn(this.command.cmd, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'], detached: true });
    child.channel?.unref();
    r.child = child;
    r.startedAt = Date.now();
    r.ready = new Promise<void>((resolve) => {
      const t = setTimeout(resolve, 5000);
      t.unref();
      child.stdout!.on('data', (d: Buffer) => {
        if (/listening/.test(d.toString())) {
          clearTimeout(t);
          resolve();
        }
      });
      child.once('exit', () => resolve());
    });
    // Whole lines only: a chunk may end in the middle of one.
    let partial = '';
    const emit = (line: string): void => {
      const t = line.trim();
      if (!t) return;
      const rec = serviceRecord(t);
      const fields = { service: name, pid: child.pid, ...rec.fields };
      const log = this.log;
      if (rec.level === 'error') (log.error ?? log.warn).call(log, fields, rec.msg);
      else if (rec.level === 'debug') log.debug?.call(log, fields, rec.msg);
      else log[rec.level].call(log, fields, rec.msg);
    };
    child.stderr!.setEncoding('utf8');
    child.stderr!.on('data', (d: string) => {
      const lines = (partial + d).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) emit(line);
    });
    child.stderr!.once('end', () => {
      emit(partial);
      partial = '';
    });
    this.log.info({ service: name, pid: child.pid, port }, `${name} service started`);
    child.once('exit', (code, signal) => {
      r.child = null;
      if (this.stopping) {
        const f = { service: name, pid: child.pid, code, signal };
        if (r.killed) this.log.warn(f, `${name} service did not exit when asked; killed (SIGKILL)`);
        else if (r.stopAsked) this.log.info(f, `${name} service stopped (${signal ?? `code ${code}`})`);
        else this.log.warn(f, `${name} service exited during the shutdown (${signal ?? `code ${code}`}); not restarted`);
        return;
      }
      if (Date.now() - r.startedAt > STABLE_MS) r.backoffMs = MIN_BACKOFF;
      const delay = r.backoffMs;
      r.backoffMs = Math.min(MAX_BACKOFF, r.backoffMs * 2);
      r.restarts++;
      this.log.warn(
        { service: name, code, signal, restartInMs: delay, restarts: r.restarts },
        `${name} service exited (${signal ?? `code ${code}`}); restarting in ${delay} ms`,
      );
      r.timer = setTimeout(() => {
        r.timer = null;
        if (!this.stopping) this.launch(r);
      }, delay);
    });
  }

  /**
   * The shutdown has begun: no service is restarted from now on (one that exits stays down, and that is logged).
   * stop() implies it; `qsr up` calls it first thing, before the drain.
   */
  freeze(): void {
    if (this.stopping) return;
    this.stopping = true;
    for (const r of this.running.values()) {
      if (r.timer) clearTimeout(r.timer);
      r.timer = null;
    }
  }

  /** Stops every service (SIGTERM, then SIGKILL after `graceMs`). */
  async stop(graceMs = 3000): Promise<void> {
    this.freeze();
    await Promise.all(
      [...this.running.values()].map(async (r) => {
        if (r.timer) clearTimeout(r.timer);
        const c = r.child;
        if (!c || c.exitCode !== null) return;
        const gone = new Promise<void>((res) => c.once('exit', () => res()));
        r.stopAsked = true;
        c.kill('SIGTERM');
        const t = setTimeout(() => {
          r.killed = true;
          c.kill('SIGKILL');
        }, graceMs);
        await gone;
        clearTimeout(t);
      }),
    );
  }
}
