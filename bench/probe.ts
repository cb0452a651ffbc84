/**
 * A measurement probe preloaded into the router by the edge suite (bench/edge.ts):
 *
 *   QSR_BENCH_PROBE=FILE node --import file:///.../dist/bench/probe.js dist/src/cli/qsr.js proxy --config ...
 *
 * It counts the datagrams (and their bytes) that node:dgram hands to every 'message' listener of the process, i.e.
 * what the router's sockets received, and on SIGUSR2 appends one JSON line to FILE:
 *   {"seq","datagramsIn","bytesIn","datagramsOut","bytesOut","cpuUser","cpuSystem","rss","heapUsed","external","arrayBuffers",
 *    "gcCount","gcMs","majorGcCount","majorGcMs"}
 * (CPU in microseconds since process start; memory in bytes; garbage-collection pauses so far, from a
 * PerformanceObserver on 'gc' entries, major = mark-compact). The bench reads two snapshots around a transfer and
 * divides: CPU per received datagram. The router's code is untouched; the cost of the probe is one counter increment
 * and one extra call per datagram. Nothing here changes behaviour, and without QSR_BENCH_PROBE it does nothing.
 * SIGWINCH writes the same line with "fullGc":true one second after a full garbage collection (V8 made to expose
 * gc() when the probe loads): what the router really holds, as opposed to garbage V8 has not collected yet (the scale row reads it
 * last, after the RSS that counts).
 */
import { appendFileSync } from 'node:fs';
import dgram from 'node:dgram';
import { PerformanceObserver, constants } from 'node:perf_hooks';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

const file = process.env.QSR_BENCH_PROBE;

if (file !== undefined && file !== '') {
  let datagramsIn = 0;
  let bytesIn = 0;
  let datagramsOut = 0;
  let bytesOut = 0;
  let seq = 0;
  const gc = { gcCount: 0, gcMs: 0, majorGcCount: 0, majorGcMs: 0 };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.gcCount++;
      gc.gcMs += e.duration;
      if ((e as unknown as { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) {
        gc.majorGcCount++;
        gc.majorGcMs += e.duration;
      }
    }
  }).observe({ entryTypes: ['gc'] });
  type Listener = (...args: unknown[]) => void;
  const proto = dgram.Socket.prototype as unknown as {
    on: (ev: string | symbol, fn: Listener) => unknown;
    addListener: (ev: string | symbol, fn: Listener) => unknown;
    send: (...args: unknown[]) => unknown;
  };
  const wrap = (orig: (ev: string | symbol, fn: Listener) => unknown) =>
    function (this: unknown, ev: string | symbol, fn: Listener): unknown {
      if (ev !== 'message') return orig.call(this, ev, fn);
      const counted: Listener = (msg, rinfo) => {
        datagramsIn++;
        bytesIn += (msg as Buffer).length;
        fn(msg, rinfo);
      };
      return orig.call(this, ev, counted);
    };
  proto.on = wrap(proto.on);
  proto.addListener = wrap(proto.addListener);
  const send = proto.send;
  proto.send = function (this: unknown, ...args: unknown[]): unknown {
    const m = args[0];
    datagramsOut++;
    if (Buffer.isBuffer(m)) bytesOut += m.length;
    else if (Array.isArray(m)) for (const b of m as Buffer[]) bytesOut += b.length;
    return send.apply(this, args);
  };
  const snapshot = (extra: Record<string, unknown>): void => {
    const c = process.cpuUsage();
    const m = process.memoryUsage();
    const line = { seq: ++seq, datagramsIn, bytesIn, datagramsOut, bytesOut, cpuUser: c.user, cpuSystem: c.system, rss: m.rss, heapUsed: m.heapUsed, external: m.external, arrayBuffers: m.arrayBuffers, ...gc, ...extra };
    appendFileSync(file, JSON.stringify(line) + '\n');
  };
  process.on('SIGUSR2', () => snapshot({}));
  setFlagsFromString('--expose-gc');
  const fullGc = runInNewContext('gc') as () => void;
  process.on('SIGWINCH', () => {
    fullGc();
    fullGc();
    // V8 unmaps the freed pages on background threads: RSS read right after the collection still counts them.
    setTimeout(() => snapshot({ fullGc: true }), 1000);
  });
}
