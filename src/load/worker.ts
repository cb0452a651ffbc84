/**
 * A `qsr load --workers W` worker process (forked by src/load/run.ts with an IPC channel). It runs one ShareRunner
 * and talks to the parent in messages:
 *
 *   parent → worker   { type: 'start', plan, share }   connect every connection of the share
 *   worker → parent   { type: 'ready', connected, error }
 *   parent → worker   { type: 'go' }                   the measured phase (all workers start together)
 *   worker → parent   { type: 'progress', progress }   every 250 ms
 *   parent → worker   { type: 'stop' }                 stop sending (Ctrl-C); in-flight requests finish
 *   worker → parent   { type: 'done', stats }          StatsWire; then the worker closes its connections and exits
 *
 * SIGINT is ignored (a terminal sends it to the whole process group): the parent decides. A worker whose parent
 * goes away exits.
 */
import type { LoadPlan } from './options.js';
import type { Progress } from './report.js';
import { ShareRunner, type Share } from './runner.js';
import type { StatsWire } from './stats.js';

export type ToWorker = { type: 'start'; plan: LoadPlan; share: Share } | { type: 'go' } | { type: 'stop' };
export type FromWorker =
  | { type: 'ready'; connected: number; error: string | null }
  | { type: 'progress'; progress: Progress }
  | { type: 'done'; stats: StatsWire };

const PROGRESS_MS = 250;

function send(m: FromWorker): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(m, undefined, {}, () => resolve());
  });
}

function main(): void {
  let runner: ShareRunner | null = null;
  process.on('SIGINT', () => {});
  process.on('disconnect', () => process.exit(runner ? 1 : 0));
  process.on('message', (m: ToWorker) => {
    void (async () => {
      if (m.type === 'start') {
        runner = new ShareRunner(m.plan, m.share);
        const connected = await runner.connect();
        await send({ type: 'ready', connected, error: connected === 0 ? runner.lastConnectError : null });
      } else if (m.type === 'go' && runner) {
        const r = runner;
        const tick = setInterval(() => void send({ type: 'progress', progress: r.progress() }), PROGRESS_MS);
        await r.run();
        clearInterval(tick);
        await send({ type: 'done', stats: r.stats.toWire() });
        await r.close();
        process.exit(0);
      } else if (m.type === 'stop') {
        if (runner?.started) runner.stop();
        else {
          await runner?.close();
          process.exit(0);
        }
      }
    })().catch((e: unknown) => {
      process.stderr.write(`qsr load worker ${process.pid}: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    });
  });
}

main();
