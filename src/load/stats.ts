/**
 * What a load run measured: counts, bytes, statuses, errors by kind and two HDR histograms (request latency and
 * handshake time, both in microseconds, 3 significant digits: hdr-histogram-js). One LoadStats per process; a
 * worker sends its stats as a StatsWire (histograms as compressed base64, the HdrHistogram interchange format) and
 * the parent merges them, so percentiles of the whole run are exact to the histogram's precision, not averages of
 * percentiles.
 */
import * as hdr from 'hdr-histogram-js';
import { H3ConnectionClosedError, H3Error, H3RequestRejectedError, H3StreamError, h3ErrorName } from '../h3/errors.js';

/** Distinct error kinds kept; more are counted under OTHER_KINDS. */
const MAX_KINDS = 64;
const OTHER_KINDS = 'other (more kinds than listed)';

/** Upper bounds (ms) of the latency distribution's bars; the last bar is everything above the last bound. */
export const LATENCY_BOUNDS_MS = [0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 30_000];

export interface StatsWire {
  ok: number;
  failed: number;
  notSent: number;
  bytesUp: number;
  bytesDown: number;
  /** ms of the measured phase in that process (from the start signal to the last request's end). */
  elapsedMs: number;
  statuses: [number, number][];
  errors: [string, number][];
  handshakeFailures: number;
  /** CPU time (user + system) of that process during the measured phase, ms. */
  cpuMs: number;
  /** Request counts per LATENCY_BOUNDS_MS bar (one more than the bounds). */
  buckets: number[];
  /** Sum and sum of squares of the latencies (ms), for the mean and standard deviation. */
  latencySum: number;
  latencySumSq: number;
  latency: string;
  handshake: string;
}

function histogram(): hdr.Histogram {
  return hdr.build({ lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000, numberOfSignificantValueDigits: 3, autoResize: true });
}

/** The error kind a failed request is counted under (the keys of LoadReport.errors). */
export function errorKind(err: unknown): string {
  if (err instanceof H3StreamError) return `stream reset ${h3ErrorName(err.code)}`;
  if (err instanceof H3RequestRejectedError) return 'request rejected (not processed; GOAWAY or H3_REQUEST_REJECTED)';
  if (err instanceof H3ConnectionClosedError) return `connection closed: ${err.message.replace(/^HTTP\/3 connection /, '')}`;
  if (err instanceof H3Error) return `protocol error ${err.message}`;
  if (err instanceof Error && err.name === 'HandshakeError') return `connect: ${err.message}`;
  const msg = err instanceof Error ? err.message : String(err);
  // Stream numbers make every message unique; the kind is the same.
  return `other: ${msg.replace(/\bstream \d+/g, 'stream N')}`;
}

export function statusKind(status: number): string {
  return `status ${Math.floor(status / 100)}xx`;
}

export class LoadStats {
  ok = 0;
  failed = 0;
  /** Requests of a --requests run never sent (interrupted, or no connection left to send them on). */
  notSent = 0;
  bytesUp = 0;
  bytesDown = 0;
  elapsedMs = 0;
  handshakeFailures = 0;
  /** Sum over processes of CPU ms during the measured phase; cpuMaxMs: the busiest process's. */
  cpuMs = 0;
  cpuMaxMs = 0;
  latencySum = 0;
  latencySumSq = 0;
  readonly buckets = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
  readonly statuses = new Map<number, number>();
  readonly errors = new Map<string, number>();
  readonly latency = histogram();
  readonly handshake = histogram();

  /** A response read to its end. Latency in ms (fractional). */
  response(status: number, ms: number): void {
    this.statuses.set(status, (this.statuses.get(status) ?? 0) + 1);
    this.latency.recordValue(Math.max(1, Math.round(ms * 1000)));
    this.latencySum += ms;
    this.latencySumSq += ms * ms;
    let b = 0;
    while (b < LATENCY_BOUNDS_MS.length && ms > LATENCY_BOUNDS_MS[b]) b++;
    this.buckets[b]++;
    if (status >= 400) {
      this.failed++;
      this.error(statusKind(status));
    } else {
      this.ok++;
    }
  }

  /** A request that got no complete response. */
  failure(kind: string): void {
    this.failed++;
    this.error(kind);
  }

  handshakeDone(ms: number): void {
    this.handshake.recordValue(Math.max(1, Math.round(ms * 1000)));
  }

  handshakeFailed(kind: string): void {
    this.handshakeFailures++;
    this.error(kind);
  }

  private error(kind: string): void {
    if (!this.errors.has(kind) && this.errors.size >= MAX_KINDS) kind = OTHER_KINDS;
    this.errors.set(kind, (this.errors.get(kind) ?? 0) + 1);
  }

  toWire(): StatsWire {
    return {
      ok: this.ok,
      failed: this.failed,
      notSent: this.notSent,
      bytesUp: this.bytesUp,
      bytesDown: this.bytesDown,
      elapsedMs: this.elapsedMs,
      statuses: [...this.statuses],
      errors: [...this.errors],
      handshakeFailures: this.handshakeFailures,
      cpuMs: this.cpuMs,
      buckets: this.buckets,
      latencySum: this.latencySum,
      latencySumSq: this.latencySumSq,
      latency: hdr.encodeIntoCompressedBase64(this.latency),
      handshake: hdr.encodeIntoCompressedBase64(this.handshake),
    };
  }

  /** Adds another process's stats; the measured time is the longest of them (they ran side by side). */
  merge(w: StatsWire): void {
    this.ok += w.ok;
    this.failed += w.failed;
    this.notSent += w.notSent;
    this.bytesUp += w.bytesUp;
    this.bytesDown += w.bytesDown;
    this.elapsedMs = Math.max(this.elapsedMs, w.elapsedMs);
    this.handshakeFailures += w.handshakeFailures;
    this.cpuMs += w.cpuMs;
    this.cpuMaxMs = Math.max(this.cpuMaxMs, w.cpuMs);
    this.latencySum += w.latencySum;
    this.latencySumSq += w.latencySumSq;
    w.buckets.forEach((n, i) => (this.buckets[i] += n));
    for (const [s, n] of w.statuses) this.statuses.set(s, (this.statuses.get(s) ?? 0) + n);
    for (const [k, n] of w.errors) {
      const kind = this.errors.has(k) || this.errors.size < MAX_KINDS ? k : OTHER_KINDS;
      this.errors.set(kind, (this.errors.get(kind) ?? 0) + n);
    }
    for (const [mine, theirs] of [
      [this.latency, w.latency],
      [this.handshake, w.handshake],
    ] as const) {
      const h = hdr.decodeFromCompressedBase64(theirs);
      if (h.totalCount > 0) mine.add(h);
      h.destroy();
    }
  }
}
