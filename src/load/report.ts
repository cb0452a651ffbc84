/**
 * The result of a load run (LoadReport, also what `qsr load --json` prints) built from the merged LoadStats, its
 * text form, and the live progress line.
 */
import * as hdr from 'hdr-histogram-js';
import type { LoadPlan } from './options.js';
import { LATENCY_BOUNDS_MS, type LoadStats } from './stats.js';

export interface LatencySummary {
  min: number;
  mean: number;
  stdev: number;
  p50: number;
  p90: number;
  p99: number;
  p99_9: number;
  max: number;
}

/** `qsr load --json`: one object of this shape. Times in ms, rates per second, MB = 10^6 bytes. */
export interface LoadReport {
  url: string;
  method: string;
  connections: number;
  streams: number;
  workers: number;
  /** What ended the run: a request count, or a duration (ms). */
  target: { requests: number } | { durationMs: number };
  /** The measured phase: from the start (every connection's handshake done) to the last response's end. */
  durationMs: number;
  requests: { total: number; ok: number; failed: number; notSent: number };
  /** Response counts by status code (failed requests without a response are not here). */
  statuses: Record<string, number>;
  requestsPerSec: number;
  bytesUp: number;
  bytesDown: number;
  mbPerSecUp: number;
  mbPerSecDown: number;
  /** Of every response read to its end (including 4xx/5xx), from just before the request to its last byte. */
  latencyMs: LatencySummary;
  /** Responses by latency: count with latency <= leMs (and above the previous bar); leMs null is the rest. */
  latencyDistribution: { leMs: number | null; count: number }[];
  /** The QUIC + TLS handshake of every connection made (reconnects included). */
  handshakeMs: { count: number; failed: number; min: number; p50: number; max: number };
  /**
   * Failed requests (and failed connection attempts) by kind: "status 4xx", "status 5xx", "stream reset H3_...",
   * "request rejected (...)", "connection closed: ...", "timeout", "connect: ...", "protocol error ...", "other: ...".
   */
  errors: Record<string, number>;
  /** CPU time the generator's processes used during the measured phase, and the busiest one's share of a core. */
  generator: { processes: number; cpuSeconds: number; busiestProcessCpuPercent: number };
  /** The latency histogram (µs) in the HdrHistogram compressed base64 format, for merging or plotting. */
  latencyHistogram: string;
}

const r3 = (x: number): number => Math.round(x * 1000) / 1000;
const r2 = (x: number): number => Math.round(x * 100) / 100;

/**
 * Percentiles from the histogram; mean and standard deviation from the exact sums when given (the histogram's own
 * walk over every bucket costs a noticeable fraction of a short run's CPU).
 */
function summary(h: hdr.Histogram, sums?: { sum: number; sumSq: number }): LatencySummary {
  const n = h.totalCount;
  if (n === 0) return { min: 0, mean: 0, stdev: 0, p50: 0, p90: 0, p99: 0, p99_9: 0, max: 0 };
  // A percentile is reported as the highest value equivalent to it at the histogram's precision, which can be a
  // little above the largest value recorded: never above the max.
  const max = h.maxValue;
  const at = (p: number): number => r3(Math.min(h.getValueAtPercentile(p), max) / 1000);
  return {
    min: r3(h.minNonZeroValue / 1000),
    mean: r3(sums ? sums.sum / n : h.mean / 1000),
    stdev: r3(sums ? Math.sqrt(Math.max(0, sums.sumSq / n - (sums.sum / n) ** 2)) : h.stdDeviation / 1000),
    p50: at(50),
    p90: at(90),
    p99: at(99),
    p99_9: at(99.9),
    max: r3(max / 1000),
  };
}

export function buildReport(plan: LoadPlan, s: LoadStats): LoadReport {
  const sec = s.elapsedMs / 1000;
  const per = (x: number): number => (sec > 0 ? x / sec : 0);
  const hs = summary(s.handshake);
  return {
    url: plan.url,
    method: plan.method,
    connections: plan.connections,
    streams: plan.streams,
    workers: plan.workers,
    target: plan.requests !== null ? { requests: plan.requests } : { durationMs: plan.durationMs ?? 0 },
    durationMs: r3(s.elapsedMs),
    requests: { total: s.ok + s.failed, ok: s.ok, failed: s.failed, notSent: s.notSent },
    statuses: Object.fromEntries([...s.statuses].sort((a, b) => a[0] - b[0]).map(([k, v]) => [String(k), v])),
    requestsPerSec: r2(per(s.ok + s.failed)),
    bytesUp: s.bytesUp,
    bytesDown: s.bytesDown,
    mbPerSecUp: r3(per(s.bytesUp) / 1e6),
    mbPerSecDown: r3(per(s.bytesDown) / 1e6),
    latencyMs: summary(s.latency, { sum: s.latencySum, sumSq: s.latencySumSq }),
    latencyDistribution: s.buckets.map((count, i) => ({ leMs: i < LATENCY_BOUNDS_MS.length ? LATENCY_BOUNDS_MS[i] : null, count })),
    handshakeMs: { count: s.handshake.totalCount, failed: s.handshakeFailures, min: hs.min, p50: hs.p50, max: hs.max },
    errors: Object.fromEntries([...s.errors].sort((a, b) => b[1] - a[1])),
    generator: {
      processes: plan.workers,
      cpuSeconds: r3(s.cpuMs / 1000),
      busiestProcessCpuPercent: s.elapsedMs > 0 ? Math.round((100 * s.cpuMaxMs) / s.elapsedMs) : 0,
    },
    latencyHistogram: hdr.encodeIntoCompressedBase64(s.latency),
  };
}

const num = (x: number): string => x.toLocaleString('en-US', { maximumFractionDigits: 0 });
const ms = (x: number): string => (x >= 100 ? x.toFixed(0) : x >= 10 ? x.toFixed(1) : x.toFixed(2));

/** The report as text (what `qsr load` prints without --json). */
export function formatReport(r: LoadReport): string {
  const out: string[] = [];
  const target = 'requests' in r.target ? `${num(r.target.requests)} requests` : `${r.target.durationMs / 1000} s`;
  out.push(
    `${r.method} ${r.url}: ${r.connections} connection${r.connections === 1 ? '' : 's'} x ${r.streams} stream${r.streams === 1 ? '' : 's'}` +
      `${r.workers > 1 ? ` over ${r.workers} worker processes` : ''}, ${target}`,
  );
  out.push(
    `requests:   ${num(r.requests.total)} in ${(r.durationMs / 1000).toFixed(2)} s, ${num(r.requests.ok)} ok, ${num(r.requests.failed)} failed` +
      (r.requests.notSent ? `, ${num(r.requests.notSent)} not sent` : ''),
  );
  out.push(`throughput: ${r.requestsPerSec.toFixed(1)} req/s, ${r.mbPerSecUp.toFixed(2)} MB/s up, ${r.mbPerSecDown.toFixed(2)} MB/s down (${num(r.bytesUp)} / ${num(r.bytesDown)} bytes)`);
  const st = Object.entries(r.statuses);
  if (st.length) out.push(`statuses:   ${st.map(([k, v]) => `${k}: ${num(v)}`).join(', ')}`);
  const l = r.latencyMs;
  out.push(`latency ms: p50 ${ms(l.p50)}  p90 ${ms(l.p90)}  p99 ${ms(l.p99)}  p99.9 ${ms(l.p99_9)}  max ${ms(l.max)}  (min ${ms(l.min)}, mean ${ms(l.mean)}, stdev ${ms(l.stdev)})`);
  const total = r.latencyDistribution.reduce((a, b) => a + b.count, 0);
  if (total > 0) {
    // The bars from the first to the last non-empty one.
    const d = r.latencyDistribution;
    const first = d.findIndex((b) => b.count > 0);
    let last = d.length - 1;
    while (d[last].count === 0) last--;
    const peak = Math.max(...d.map((b) => b.count));
    for (let i = first; i <= last; i++) {
      const label = d[i].leMs === null ? `> ${d[i - 1]?.leMs ?? 0} ms` : `<= ${d[i].leMs} ms`;
      const bar = '#'.repeat(Math.round((40 * d[i].count) / peak));
      out.push(`  ${label.padStart(11)}  ${num(d[i].count).padStart(10)}  ${((100 * d[i].count) / total).toFixed(1).padStart(5)} %  ${bar}`);
    }
  }
  const h = r.handshakeMs;
  out.push(`handshake:  ${h.count} connection${h.count === 1 ? '' : 's'}, min ${ms(h.min)} ms, p50 ${ms(h.p50)} ms, max ${ms(h.max)} ms${h.failed ? `, ${h.failed} failed` : ''}`);
  const errs = Object.entries(r.errors);
  if (errs.length) {
    out.push('errors:');
    for (const [k, v] of errs) out.push(`  ${num(v).padStart(10)}  ${k}`);
  } else {
    out.push('errors:     none');
  }
  out.push(`generator:  ${r.generator.processes} process${r.generator.processes === 1 ? '' : 'es'}, ${r.generator.cpuSeconds.toFixed(2)} s CPU, busiest at ${r.generator.busiestProcessCpuPercent} % of a core`);
  return out.join('\n') + '\n';
}

export interface Progress {
  /** Since the start of the measured phase, ms. */
  elapsedMs: number;
  ok: number;
  failed: number;
  bytesUp: number;
  bytesDown: number;
}

/** One live line: rates over the last interval, totals so far. */
export function progressLine(now: Progress, prev: Progress, target: LoadPlan): string {
  const dt = Math.max(1, now.elapsedMs - prev.elapsedMs) / 1000;
  const done = now.ok + now.failed;
  const rate = (done - prev.ok - prev.failed) / dt;
  const up = (now.bytesUp - prev.bytesUp) / dt / 1e6;
  const down = (now.bytesDown - prev.bytesDown) / dt / 1e6;
  const of = target.requests !== null ? `${num(done)}/${num(target.requests)}` : `${num(done)}`;
  const t = target.durationMs !== null ? `${(now.elapsedMs / 1000).toFixed(0)}/${(target.durationMs / 1000).toFixed(0)} s` : `${(now.elapsedMs / 1000).toFixed(0)} s`;
  return `${t}  ${num(rate)} req/s  ${up.toFixed(2)} MB/s up  ${down.toFixed(2)} MB/s down  ${of} requests  ${num(now.failed)} errors`;
}
