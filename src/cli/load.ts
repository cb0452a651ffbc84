/**
 * `qsr load URL`: HTTP/3 load (src/load). This file only turns the flags into a plan, shows the live progress line
 * on a terminal and prints the report (text, or JSON with --json). Exit 0: the run completed and at least one
 * request succeeded; 1: no connection could be made, a worker failed, or no request succeeded; 2: a bad flag.
 */
import { LoadOptionError, planLoad, type LoadOptions } from '../load/options.js';
import { formatReport, progressLine, type LoadReport, type Progress } from '../load/report.js';
import { LoadRunError, runLoad } from '../load/run.js';
import { UsageError } from './args.js';

export interface LoadCommandOptions extends LoadOptions {
  json?: boolean;
}

export async function runLoadCommand(url: string, o: LoadCommandOptions): Promise<number> {
  let plan;
  try {
    plan = planLoad(url, o);
  } catch (e) {
    if (e instanceof LoadOptionError) throw new UsageError(e.message);
    throw e;
  }
  const tty = process.stderr.isTTY === true;
  let prev: Progress = { elapsedMs: 0, ok: 0, failed: 0, bytesUp: 0, bytesDown: 0 };
  const onProgress = tty
    ? (p: Progress): void => {
        process.stderr.write(`\r\x1b[2K${progressLine(p, prev, plan)}`);
        prev = p;
      }
    : undefined;
  // Ctrl-C once: stop sending and report what was done; twice: leave at once.
  const ac = new AbortController();
  const onSigint = (): void => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort();
  };
  process.on('SIGINT', onSigint);
  try {
    // Printed as soon as it is ready; the connections close afterwards.
    const onReport = (report: LoadReport): void => {
      if (tty && prev.elapsedMs > 0) process.stderr.write('\r\x1b[2K');
      process.stdout.write(o.json ? JSON.stringify(report, null, 2) + '\n' : formatReport(report));
    };
    const report = await runLoad(plan, { onProgress, signal: ac.signal, onReport });
    return report.requests.ok > 0 ? 0 : 1;
  } catch (e) {
    if (tty && prev.elapsedMs > 0) process.stderr.write('\r\x1b[2K');
    if (e instanceof LoadRunError) {
      process.stderr.write(`qsr load: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    process.off('SIGINT', onSigint);
  }
}
