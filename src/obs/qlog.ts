/**
 * qlog writer: one file per connection, `<ODCID hex>_<client|server>.sqlog` (the naming draft-ietf-quic-qlog-quic-events
 * recommends, so a qlog file, the access log's connectionId and a capture's first Initial DCID name the same
 * connection), in the JSON-SEQ serialization of qlog 0.3 (draft-ietf-quic-qlog-main-schema-03 §6.2, RFC 7464: every
 * record is RS 0x1E, one JSON text, LF): a header record with the trace's vantage point and common fields
 * (ODCID, reference_time, time_format "relative"), then one record per event.
 *
 * Written asynchronously with bounded memory, so a slow disk never stalls packet processing: events are serialized
 * into a queue and written once per event-loop turn with positional fs.write; when the queue holds more than its
 * byte bound, events are dropped and counted, and a `qlog:events_dropped` record with the count is written once the
 * queue has drained below half the bound (or when the file is closed). The file is flushed and closed when the
 * connection reaches its final state ("closed"); at process exit whatever is still queued is written synchronously.
 */
import { close, closeSync, mkdirSync, open, openSync, write, writeSync } from 'node:fs';
import { join } from 'node:path';
import type { Role } from '../quic/types.js';
import type { TraceEvent, TraceFactory, TraceSink } from '../quic/trace.js';

export const QLOG_VERSION = '0.3';
const RS = '\x1e';
/** Default bound of the queue of serialized events not yet written, in characters (≈ bytes: the JSON is ASCII). */
export const DEFAULT_MAX_QUEUE = 8 * 1024 * 1024;

export interface QlogWriterOptions {
  /** Queue bound (characters of serialized events waiting for the disk). Default 8 MiB. */
  maxQueueBytes?: number;
  /** Where write errors go (default: one line on stderr per file). */
  onError?: (err: Error, path: string) => void;
}

/** The file name of a connection's qlog: ODCID in hex and the vantage point. */
export function qlogFileName(odcid: Buffer, role: Role): string {
  return `${odcid.toString('hex')}_${role}.sqlog`;
}

const live = new Set<QlogWriter>();
let exitHookInstalled = false;

function flushAllAtExit(): void {
  for (const w of [...live]) w.flushSync();
}

export class QlogWriter {
  readonly path: string;
  /** Events accepted, events dropped because the queue was full (in total). */
  readonly stats = { events: 0, dropped: 0, bytesWritten: 0 };
  /** Resolves once the file is closed. */
  readonly closed: Promise<void>;

  private readonly maxQueue: number;
  private readonly onError: (err: Error, path: string) => void;
  private fd: number | null = null;
  private opening = false;
  private queue: string[] = [];
  private queued = 0;
  /** The write in progress: its bytes and file position (rewritten by flushSync if the process exits first). */
  private inflight: { buf: Buffer; pos: number } | null = null;
  private pos = 0;
  private scheduled = false;
  private closing = false;
  private done = false;
  private failed = false;
  /** Events dropped since the last marker. */
  private droppedRun = 0;
  private t0 = NaN;
  private lastTime = 0;
  private resolveClosed!: () => void;

  constructor(
    dir: string,
    readonly role: Role,
    readonly odcid: Buffer,
    opts: QlogWriterOptions = {},
  ) {
    this.path = join(dir, qlogFileName(odcid, role));
    this.maxQueue = opts.maxQueueBytes ?? DEFAULT_MAX_QUEUE;
    this.onError = opts.onError ?? ((err, path) => process.stderr.write(`qlog: cannot write ${path}: ${err.message}\n`));
    this.closed = new Promise((r) => (this.resolveClosed = r));
    live.add(this);
    if (!exitHookInstalled) {
      exitHookInstalled = true;
      process.once('exit', flushAllAtExit);
    }
  }

  /** The sink to give the connection (and the layers above it). */
  readonly sink: TraceSink = (e) => this.write(e);

  /** Queues one event (dropped and counted when the queue is full). Closes the file after the connection's last state. */
  write(e: TraceEvent): void {
    if (this.closing || this.failed) return;
    if (Number.isNaN(this.t0)) this.start(e.time);
    let t = Math.round((e.time - this.t0) * 1000) / 1000;
    // Events SHOULD be in ascending time order (main schema §3.4.1): the layers above stamp their own times.
    if (t < this.lastTime) t = this.lastTime;
    this.lastTime = t;
    if (this.droppedRun > 0 && this.queued <= this.maxQueue / 2) this.marker(t);
    const rec = RS + JSON.stringify({ time: t, name: e.name, data: e.data }) + '\n';
    if (this.queued + rec.length > this.maxQueue) {
      this.droppedRun++;
      this.stats.dropped++;
      return;
    }
    this.enqueue(rec);
    this.stats.events++;
    if (e.name === 'connectivity:connection_state_updated' && (e.data as { new?: string }).new === 'closed') this.close();
  }

  /** Writes what is queued, then closes the file. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = true;
      if (this.droppedRun > 0) this.marker(this.lastTime);
      this.kick();
    }
    return this.closed;
  }

  /** Process exit: write everything still queued (and the write in flight) synchronously, then close. */
  flushSync(): void {
    if (this.done) return;
    try {
      if (this.droppedRun > 0) this.marker(this.lastTime);
      if (this.queue.length === 0 && this.inflight === null && this.fd === null) {
        this.finish();
        return;
      }
      const fd = this.fd ?? openSync(this.path, 'w', 0o644);
      if (this.inflight) writeSync(fd, this.inflight.buf, 0, this.inflight.buf.length, this.inflight.pos);
      const rest = Buffer.from(this.queue.join(''));
      this.queue = [];
      this.queued = 0;
      writeSync(fd, rest, 0, rest.length, this.pos);
      closeSync(fd);
    } catch {
      // Exiting: nothing more can be done about it.
    }
    this.fd = null;
    this.finish();
  }

  private start(time: number): void {
    this.t0 = time;
    const header = {
      qlog_version: QLOG_VERSION,
      qlog_format: 'JSON-SEQ',
      title: `quic-stream-router ${this.role} qlog`,
      trace: {
        vantage_point: { name: 'quic-stream-router', type: this.role },
        common_fields: {
          ODCID: this.odcid.toString('hex'),
          group_id: this.odcid.toString('hex'),
          protocol_type: ['QUIC', 'HTTP3'],
          reference_time: Date.now(),
          time_format: 'relative',
        },
      },
    };
    this.enqueue(RS + JSON.stringify(header) + '\n');
  }

  private marker(time: number): void {
    const rec = RS + JSON.stringify({ time, name: 'qlog:events_dropped', data: { count: this.droppedRun } }) + '\n';
    this.droppedRun = 0;
    this.enqueue(rec);
  }

  private enqueue(rec: string): void {
    this.queue.push(rec);
    this.queued += rec.length;
    this.kick();
  }

  /** Writes are batched per event-loop turn. */
  private kick(): void {
    if (this.scheduled || this.done) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.pump();
    });
  }

  private pump(): void {
    if (this.done || this.failed || this.inflight !== null || this.opening) return;
    if (this.fd === null) {
      if (this.queue.length === 0 && this.closing) return this.finish();
      this.opening = true;
      open(this.path, 'w', 0o644, (err, fd) => {
        this.opening = false;
        if (err) return this.fail(err);
        if (this.done) {
          close(fd, () => {});
          return;
        }
        this.fd = fd;
        this.pump();
      });
      return;
    }
    if (this.queue.length === 0) {
      if (this.closing) {
        const fd = this.fd;
        this.fd = null;
        close(fd, () => this.finish());
        this.done = true;
      }
      return;
    }
    const buf = Buffer.from(this.queue.join(''));
    this.queue = [];
    this.queued = 0;
    this.writeAt(buf, this.pos);
  }

  private writeAt(buf: Buffer, pos: number): void {
    this.inflight = { buf, pos };
    write(this.fd!, buf, 0, buf.length, pos, (err, n) => {
      if (this.done) return; // flushed synchronously at exit, or failed
      if (err) return this.fail(err);
      this.stats.bytesWritten += n;
      if (n < buf.length) return this.writeAt(buf.subarray(n), pos + n);
      this.pos = pos + buf.length;
      this.inflight = null;
      this.pump();
    });
  }

  private fail(err: Error): void {
    if (this.failed) return;
    this.failed = true;
    this.queue = [];
    this.queued = 0;
    this.inflight = null;
    this.onError(err, this.path);
    if (this.fd !== null) close(this.fd, () => {});
    this.fd = null;
    this.finish();
  }

  private finish(): void {
    this.done = true;
    live.delete(this);
    this.resolveClosed();
  }
}

/**
 * The trace factory for a qlog directory: an explicit `dir` wins, else the QLOGDIR environment variable, else none
 * (tracing off). The directory is created when missing.
 */
export function qlogTracer(dir?: string | null, env: NodeJS.ProcessEnv = process.env, opts: QlogWriterOptions = {}): TraceFactory | undefined {
  const d = dir || env.QLOGDIR;
  if (!d) return undefined;
  try {
    mkdirSync(d, { recursive: true });
  } catch (err) {
    throw new Error(`qlog directory ${d}: ${(err as Error).message}`);
  }
  return (role, odcid) => new QlogWriter(d, role, odcid, opts).sink;
}
