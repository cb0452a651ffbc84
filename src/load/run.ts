/**
 * Runs a load plan and returns its report: in this process (workers: 1), or spread over W worker processes
 * (child_process.fork of src/load/worker.ts), each with its share of the connections and of the requests. All
 * connections are made first; the measured phase starts when every process is connected, and the workers' stats
 * (counts, errors, HDR histograms) are merged into one report.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import type { LoadPlan } from './options.js';
import { buildReport, type LoadReport, type Progress } from './report.js';
import { ShareRunner, type Share } from './runner.js';
import { LoadStats } from './stats.js';
import type { FromWorker, ToWorker } from './worker.js';

/** No connection could be made (the message says why), or a worker failed. */
export class LoadRunError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'LoadRunError';
  }
}

export interface LoadHooks {
  /** Called once a second during the measured phase with the totals so far. */
  onProgress?: (p: Progress) => void;
  /** Aborting ends the run early: no new requests, those in flight finish, the report covers what was done. */
  signal?: AbortSignal;
  /** Called with the report as soon as it is ready, before the connections have been closed (runLoad resolves after). */
  onReport?: (r: LoadReport) => void;
}

const PROGRESS_MS = 1000;

/** Connections (and requests) per process: as even as possible, the requests in proportion to the connections. */
export function splitShares(plan: LoadPlan): Share[] {
  const w = plan.workers;
  const shares: Share[] = [];
  let cum = 0;
  for (let i = 0; i < w; i++) {
    const c = Math.floor(plan.connections / w) + (i < plan.connections % w ? 1 : 0);
    const before = plan.requests === null ? 0 : Math.floor((plan.requests * cum) / plan.connections);
    cum += c;
    const after = plan.requests === null ? 0 : Math.floor((plan.requests * cum) / plan.connections);
    shares.push({ connections: c, requests: plan.requests === null ? null : after - before });
  }
  return shares;
}

function cannotConnect(plan: LoadPlan, why: string | null): LoadRunError {
  return new LoadRunError(`cannot connect to ${plan.origin}: ${why ?? 'no connection could be made'}`);
}

export async function runLoad(plan: LoadPlan, hooks: LoadHooks = {}): Promise<LoadReport> {
  return plan.workers <= 1 ? runHere(plan, hooks) : runForked(plan, hooks);
}

async function runHere(plan: LoadPlan, hooks: LoadHooks): Promise<LoadReport> {
  const r = new ShareRunner(plan, splitShares(plan)[0]);
  try {
    const connected = await r.connect();
    if (connected === 0) throw cannotConnect(plan, r.lastConnectError);
    if (hooks.signal?.aborted) r.stop();
    const onAbort = (): void => r.stop();
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    const tick = hooks.onProgress ? setInterval(() => hooks.onProgress?.(r.progress()), PROGRESS_MS) : undefined;
    try {
      await r.run();
    } finally {
      clearInterval(tick);
      hooks.signal?.removeEventListener('abort', onAbort);
    }
    const report = buildReport(plan, r.stats);
    hooks.onReport?.(report);
    return report;
  } finally {
    await r.close();
  }
}

interface Worker {
  child: ChildProcess;
  ready: Promise<{ connected: number; error: string | null }>;
  done: Promise<FromWorker & { type: 'done' }>;
  progress: Progress;
}

function startWorker(plan: LoadPlan, share: Share, index: number): Worker {
  const child = fork(fileURLToPath(new URL('./worker.js', import.meta.url)), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const w: Worker = { child, progress: { elapsedMs: 0, ok: 0, failed: 0, bytesUp: 0, bytesDown: 0 } } as Worker;
  let exited: (e: Error) => void = () => {};
  const gone = new Promise<never>((_, reject) => (exited = reject));
  gone.catch(() => {});
  let onReady: (v: { connected: number; error: string | null }) => void = () => {};
  let onDone: (m: FromWorker & { type: 'done' }) => void = () => {};
  w.ready = Promise.race([new Promise<{ connected: number; error: string | null }>((r) => (onReady = r)), gone]);
  w.done = Promise.race([new Promise<FromWorker & { type: 'done' }>((r) => (onDone = r)), gone]);
  // Awaited when needed; a worker that exits after the run was abandoned (no connection) is no error.
  w.ready.catch(() => {});
  w.done.catch(() => {});
  let finished = false;
  child.on('message', (m: FromWorker) => {
    if (m.type === 'ready') onReady(m);
    else if (m.type === 'progress') w.progress = m.progress;
    else if (m.type === 'done') {
      finished = true;
      onDone(m);
    }
  });
  child.on('error', (e) => exited(new LoadRunError(`worker ${index + 1}: ${e.message}`)));
  child.on('exit', (code, signal) => {
    if (!finished) exited(new LoadRunError(`worker ${index + 1} (pid ${child.pid}) exited before it finished (${signal ?? `code ${code}`})`));
  });
  child.send({ type: 'start', plan, share } satisfies ToWorker);
  return w;
}

async function runForked(plan: LoadPlan, hooks: LoadHooks): Promise<LoadReport> {
  const workers = splitShares(plan).map((share, i) => startWorker(plan, share, i));
  const tell = (m: ToWorker): void => {
    for (const w of workers) if (w.child.connected) w.child.send(m);
  };
  const onAbort = (): void => tell({ type: 'stop' });
  let tick: NodeJS.Timeout | undefined;
  try {
    const ready = await Promise.all(workers.map((w) => w.ready));
    if (ready.every((r) => r.connected === 0)) throw cannotConnect(plan, ready.find((r) => r.error)?.error ?? null);
    hooks.signal?.addEventListener('abort', onAbort, { once: true });
    tell({ type: 'go' });
    if (hooks.signal?.aborted) onAbort();
    const t0 = performance.now();
    if (hooks.onProgress) {
      tick = setInterval(() => {
        const p: Progress = { elapsedMs: performance.now() - t0, ok: 0, failed: 0, bytesUp: 0, bytesDown: 0 };
        for (const w of workers) {
          p.ok += w.progress.ok;
          p.failed += w.progress.failed;
          p.bytesUp += w.progress.bytesUp;
          p.bytesDown += w.progress.bytesDown;
        }
        hooks.onProgress?.(p);
      }, PROGRESS_MS);
    }
    const done = await Promise.all(workers.map((w) => w.done));
    const stats = new LoadStats();
    for (const d of done) stats.merge(d.stats);
    const report = buildReport(plan, stats);
    hooks.onReport?.(report);
    return report;
  } finally {
    clearInterval(tick);
    hooks.signal?.removeEventListener('abort', onAbort);
    tell({ type: 'stop' });
    // Workers exit by themselves once done; one that does not within 5 s is killed (by its PID).
    await Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.child.exitCode !== null || w.child.signalCode !== null) return resolve();
            const t = setTimeout(() => {
              w.child.kill('SIGKILL');
              resolve();
            }, 5000);
            w.child.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
  }
}
