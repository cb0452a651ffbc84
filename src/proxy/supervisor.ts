/**
 * Runs the backend services as child processes (`qsr service NAME --port N`) and restarts one that exits, with
 * exponential backoff (reset after it has stayed up for a while). Every start, exit and restart is logged.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export interface ServiceSpec {
  name: string;
  port: number;
  host?: string;
}

export interface SupervisorLog {
  info(fields: Record<string, unknown>, msg: string): void;
  warn(fields: Record<string, unknown>, msg: string): void;
}

interface Running {
  spec: ServiceSpec;
  child: ChildProcess | null;
  restarts: number;
  backoffMs: number;
  startedAt: number;
  timer: NodeJS.Timeout | null;
  ready: Promise<void>;
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
      const r: Running = { spec, child: null, restarts: 0, backoffMs: MIN_BACKOFF, startedAt: 0, timer: null, ready: Promise.resolve() };
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
    const child = spawn(this.command.cmd, args, { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
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
    child.stderr!.on('data', (d: Buffer) => {
      for (const line of d.toString().split('\n')) if (line.trim()) this.log.warn({ service: name, pid: child.pid }, line.trim());
    });
    this.log.info({ service: name, pid: child.pid, port }, `${name} service started`);
    child.once('exit', (code, signal) => {
      r.child = null;
      if (this.stopping) return;
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

  /** Stops every service (SIGTERM, then SIGKILL after `graceMs`). */
  async stop(graceMs = 3000): Promise<void> {
    this.stopping = true;
    await Promise.all(
      [...this.running.values()].map(async (r) => {
        if (r.timer) clearTimeout(r.timer);
        const c = r.child;
        if (!c || c.exitCode !== null) return;
        const gone = new Promise<void>((res) => c.once('exit', () => res()));
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
        await gone;
        clearTimeout(t);
      }),
    );
  }
}
