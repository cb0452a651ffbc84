/**
 * Helpers for end-to-end tests of `qsr up` (the router plus its three services) as a user runs it.
 *
 * Never the fixed ports 4433 / 5001-5003: every router gets a temp directory, a YAML configuration with free ports
 * (router port free on both UDP and TCP 127.0.0.1, service ports free on TCP), dataDir inside that directory and the
 * key log on, and runs `node dist/src/cli/qsr.js up --config <dir>/qsr.yaml` with cwd = the directory, under a hard
 * timeout. stop() sends SIGTERM to that PID (qsr up then stops its services), SIGKILL after a grace period; if a
 * service outlived a killed `qsr up`, it is ended by the PID the router logged for it (after checking that PID is
 * still a `qsr ... service` process). Nothing is ever signalled by name.
 */
import { createServer } from 'node:net';
import { createSocket } from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { jsonLines, spawnBounded, waitFor, type Child, type ExitInfo } from '../interop/peers.js';

export const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
/** The built CLI. */
export const QSR = join(ROOT, 'dist', 'src', 'cli', 'qsr.js');

export interface RouterPorts {
  /** The router: UDP (HTTP/3) and TCP (HTTPS) on 127.0.0.1. */
  router: number;
  video: number;
  text: number;
  control: number;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freeTcpPort(port = 0): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(port, '127.0.0.1', () => {
      const a = s.address();
      const p = a !== null && typeof a === 'object' ? a.port : 0;
      s.close(() => res(p));
    });
  });
}

function udpBind(port: number): Promise<number> {
  return new Promise((res, rej) => {
    const s = createSocket('udp4');
    s.once('error', (e) => {
      s.close();
      rej(e);
    });
    s.bind(port, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => res(p));
    });
  });
}

/** A port free on 127.0.0.1 for both UDP and TCP (the router binds both). */
export async function freeUdpTcpPort(): Promise<number> {
  for (let i = 0; i < 20; i++) {
    const p = await udpBind(0);
    try {
      await freeTcpPort(p);
      return p;
    } catch {
      // TCP side taken: try another
    }
  }
  throw new Error('no port free on both UDP and TCP');
}

/** True when nothing listens on TCP `port` and nothing is bound to UDP `port` on 127.0.0.1 (we can bind both). */
export async function portFree(port: number, udp = false): Promise<boolean> {
  try {
    await freeTcpPort(port);
    if (udp) await udpBind(port);
    return true;
  } catch {
    return false;
  }
}

/** Fresh ports for the router and the three services (all distinct). */
export async function allocatePorts(): Promise<RouterPorts> {
  const router = await freeUdpTcpPort();
  const seen = new Set([router]);
  const pick = async (): Promise<number> => {
    for (;;) {
      const p = await freeTcpPort();
      if (!seen.has(p)) {
        seen.add(p);
        return p;
      }
    }
  };
  return { router, video: await pick(), text: await pick(), control: await pick() };
}

/** The configuration every test starts from: /video, /text, /control to their services on `ports`. */
export function baseConfig(ports: RouterPorts): Record<string, unknown> {
  const up = (p: number): string[] => [`http://127.0.0.1:${p}`];
  return {
    listen: [`127.0.0.1:${ports.router}`],
    dataDir: './data',
    keylog: true,
    timeouts: { drainMs: 2000 },
    routes: [
      { name: 'video', prefix: '/video', upstreams: up(ports.video) },
      { name: 'text', prefix: '/text', upstreams: up(ports.text) },
      { name: 'control', prefix: '/control', upstreams: up(ports.control) },
    ],
    services: { video: { port: ports.video }, text: { port: ports.text }, control: { port: ports.control } },
  };
}

export interface ConfigOverrides {
  /** Ports for the base configuration (required). */
  ports: RouterPorts;
  /** Top-level keys replacing those of baseConfig (a value of null removes the key). */
  set?: Record<string, unknown>;
  /** File name inside `dir`. Default 'qsr.yaml'. */
  file?: string;
}

/** Writes baseConfig(ports) with `set` applied as YAML into dir; returns the file's path. */
export function writeConfig(dir: string, overrides: ConfigOverrides): string {
  const cfg = baseConfig(overrides.ports);
  for (const [k, v] of Object.entries(overrides.set ?? {})) {
    if (v === null) delete cfg[k];
    else cfg[k] = v;
  }
  const path = join(dir, overrides.file ?? 'qsr.yaml');
  writeFileSync(path, stringify(cfg));
  return path;
}

export interface StartRouterOptions {
  /** Top-level configuration keys to replace (see writeConfig). */
  set?: Record<string, unknown>;
  /** Ports to use (default: freshly allocated), e.g. when `set` names the service ports itself. */
  ports?: RouterPorts;
  /** Hard limit for the `qsr up` process (SIGKILL to its PID). Default 120 s. */
  timeoutMs?: number;
  /** How long to wait for the "is up" summary. Default 20 s. */
  readyMs?: number;
  /** Run `qsr up` as the leader of its own process group (as a shell does for a foreground job), so that a test can
   * signal the whole group the way a terminal's Ctrl-C does: see RunningRouter.signalGroup. */
  processGroup?: boolean;
  /** More arguments for `qsr up` after `--config FILE`. */
  args?: string[];
}

export interface RunningRouter {
  /** The temp directory (cwd of qsr up; holds the config, data/ and the process logs). */
  dir: string;
  /** The router's port (UDP + TCP on 127.0.0.1). */
  port: number;
  ports: RouterPorts;
  configPath: string;
  dataDir: string;
  /** The development certificate (PEM) qsr up wrote. */
  certPath: string;
  keylogPath: string;
  proc: Child;
  stdout(): string;
  stderr(): string;
  /** Access log lines (JSON objects on stdout). */
  accessLog(): Record<string, unknown>[];
  /** Sends `sig` to the process group of `qsr up` (only with processGroup: true; its PID is the group ID). */
  signalGroup(sig: NodeJS.Signals): void;
  /** SIGTERM, SIGKILL after graceMs (default 8 s); then makes sure no service is left. Idempotent. */
  stop(graceMs?: number): Promise<ExitInfo>;
  /** Deletes `dir` (call after stop(), typically only when the test passed, so failures leave their logs). */
  remove(): void;
}

/** PIDs of the services as `qsr up` logged them ("<name> service started"). */
function servicePids(stderr: string): number[] {
  const pids: number[] = [];
  for (const o of jsonLines(stderr)) if (typeof o.pid === 'number' && / service started$/.test(String(o.msg ?? ''))) pids.push(o.pid);
  return pids;
}

/** Ends a service that survived its killed parent, by its own PID, only if that PID still runs `qsr.js service`. */
function killOrphanService(pid: number): void {
  let cmdline = '';
  try {
    cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ');
  } catch {
    return; // gone
  }
  if (!cmdline.includes(QSR) || !/ service /.test(cmdline)) return;
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone meanwhile
  }
}

/** Runs `qsr up --config` in a fresh temp dir with free ports and waits for its summary. Throws (after cleaning up) if it does not come up. */
export async function startRouter(opts: StartRouterOptions = {}): Promise<RunningRouter> {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-e2e-router-'));
  const ports = opts.ports ?? (await allocatePorts());
  const configPath = writeConfig(dir, { ports, set: opts.set });
  const dataDir = join(dir, 'data');
  const proc = spawnBounded({
    name: 'qsr-up',
    cmd: process.execPath,
    args: [QSR, 'up', '--config', configPath, ...(opts.args ?? [])],
    workDir: dir,
    cwd: dir,
    timeoutMs: opts.timeoutMs ?? 120_000,
    detached: opts.processGroup ?? false,
  });
  let stopped: Promise<ExitInfo> | null = null;
  const r: RunningRouter = {
    dir,
    port: ports.router,
    ports,
    configPath,
    dataDir,
    certPath: join(dataDir, 'certs', 'cert.pem'),
    keylogPath: join(dataDir, 'keylog.txt'),
    proc,
    stdout: () => proc.stdout(),
    stderr: () => proc.stderr(),
    accessLog: () => jsonLines(proc.stdout()).filter((o) => 'streamId' in o && 'connectionId' in o),
    signalGroup(sig) {
      if (!opts.processGroup || proc.pid === undefined || !proc.isRunning()) throw new Error('signalGroup: qsr up is not running as a process group leader');
      process.kill(-proc.pid, sig);
    },
    stop(graceMs = 8000) {
      stopped ??= (async () => {
        const exit = await proc.stop('SIGTERM', graceMs);
        const svc = [ports.video, ports.text, ports.control];
        // A gracefully stopped qsr up (exit 0) has already stopped its services; after a kill or a crash they may be orphans.
        if (exit.code !== 0) for (const pid of servicePids(proc.stderr())) killOrphanService(pid);
        for (let i = 0; i < 50; i++) {
          const free = await Promise.all(svc.map((p) => portFree(p)));
          if (free.every(Boolean)) break;
          await new Promise((res) => setTimeout(res, 100));
        }
        return exit;
      })();
      return stopped;
    },
    remove() {
      if (!proc.isRunning()) rmSync(dir, { recursive: true, force: true });
    },
  };
  const ok = await waitFor(() => !proc.isRunning() || /is up/.test(proc.stdout()), opts.readyMs ?? 20_000);
  if (!ok || !proc.isRunning()) {
    await r.stop(2000);
    throw new Error(`qsr up did not start:\nstdout: ${r.stdout().slice(-2000)}\nstderr: ${r.stderr().slice(-3000)}`);
  }
  return r;
}

export interface QsrRun {
  exit: ExitInfo;
  stdout: string;
  stderr: string;
  child: Child;
}

/** Runs `node qsr.js ARGS` to completion under a hard timeout (SIGKILL to its PID), output kept in files in workDir. */
export async function runQsr(args: string[], o: { workDir: string; cwd?: string; timeoutMs?: number; name?: string; env?: Record<string, string | undefined> }): Promise<QsrRun> {
  const child = spawnBounded({
    name: o.name ?? `qsr-${args[0] ?? 'run'}`,
    cmd: process.execPath,
    args: [QSR, ...args],
    workDir: o.workDir,
    cwd: o.cwd ?? o.workDir,
    timeoutMs: o.timeoutMs ?? 60_000,
    env: o.env,
  });
  const exit = await child.exited;
  return { exit, stdout: child.stdout(), stderr: child.stderr(), child };
}
