/** Runs the built `qsr` CLI to completion with its output captured: the e2e tests' one way to call it as a user would. */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const QSR = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));

export interface QsrResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Runs `qsr ...args` (in `cwd`); SIGKILL to its own PID after `ms`, which rejects (and so fails the test). */
export function runQsrCaptured(args: string[], o: { cwd?: string; ms?: number } = {}): Promise<QsrResult> {
  const ms = o.ms ?? 30_000;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [QSR, ...args], { cwd: o.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d));
    child.stderr.on('data', (d: Buffer) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`qsr ${args.join(' ')} did not finish within ${ms} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, ms);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}
