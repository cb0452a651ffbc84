/**
 * NSS key log writer (RFC 9850 / the SSLKEYLOGFILE format). One writer per file, shared by every connection that
 * logs to it: lines are appended (never truncated), each one written and flushed by a single write(2) call, and the
 * file is created with mode 0600 because it holds secrets.
 */
import { openSync, writeSync, closeSync, fchmodSync, fstatSync } from 'node:fs';

const writers = new Map<string, KeyLogWriter>();

export class KeyLogWriter {
  private fd: number | null;

  private constructor(readonly path: string) {
    this.fd = openSync(path, 'a', 0o600);
    // A file that already existed keeps its mode; tighten it when it is readable by others.
    const mode = fstatSync(this.fd).mode & 0o777;
    if (mode & 0o077) fchmodSync(this.fd, 0o600);
  }

  /** The shared writer for a path (one file descriptor per path per process). */
  static open(path: string): KeyLogWriter {
    let w = writers.get(path);
    if (!w) {
      w = new KeyLogWriter(path);
      writers.set(path, w);
    }
    return w;
  }

  /** Appends one line; a trailing newline is added. Synchronous so a crash never loses a written secret. */
  write(line: string): void {
    if (this.fd === null) return;
    writeSync(this.fd, line + '\n');
  }

  close(): void {
    if (this.fd !== null) {
      closeSync(this.fd);
      this.fd = null;
      writers.delete(this.path);
    }
  }
}

/** The key log sink for a component: an explicit path wins, else SSLKEYLOGFILE, else none. */
export function keyLogSink(path?: string | null, env: NodeJS.ProcessEnv = process.env): ((line: string) => void) | undefined {
  const p = path || env.SSLKEYLOGFILE;
  if (!p) return undefined;
  const w = KeyLogWriter.open(p);
  return (line) => w.write(line);
}
