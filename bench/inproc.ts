/**
 * What the in-process path benchmarks (rx-path.ts: the receive path of an upload, tx-path.ts: the send path of a
 * download) share: the endpoints' certificates and addresses, datagram copies as node:dgram delivers them, and the
 * run loop with the inspector's CPU profile and sampling heap profile of the last run.
 */
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { fileURLToPath } from 'node:url';

export const CERTS = fileURLToPath(new URL('../../test/fixtures/certs/', import.meta.url));
export const SERVER = { address: '127.0.0.1', port: 4433 };
export const CLIENT = { address: '127.0.0.1', port: 50000 };

/** A copy in an ArrayBuffer of its own, as node:dgram hands each received datagram over (not a pooled slice). */
export function own(d: Buffer): Buffer {
  const b = Buffer.from(new ArrayBuffer(d.length));
  d.copy(b);
  return b;
}

export interface ProfileOptions {
  runs: number;
  cpuProf: string | null;
  heapProf: string | null;
}

/** One run's figures: the server's CPU per datagram of the direction measured. */
export interface PathResult {
  datagrams: number;
  usPerDatagram: number;
}

function post<T>(s: Session, method: string, params?: object): Promise<T> {
  return new Promise((res, rej) => s.post(method, params ?? {}, (err, r) => (err ? rej(err) : res(r as T))));
}

interface HeapNode {
  callFrame: { functionName: string };
  selfSize: number;
  children: HeapNode[];
}

/** Bytes allocated under a frame named `name` (sampled), and the top allocating frames beneath it. */
function allocatedUnder(root: HeapNode, name: string): { bytes: number; top: [string, number][] } {
  const bySite = new Map<string, number>();
  let bytes = 0;
  const walk = (n: HeapNode, inside: boolean, path: string): void => {
    const here = inside || n.callFrame.functionName === name;
    if (here && n.selfSize > 0) {
      bytes += n.selfSize;
      bySite.set(path, (bySite.get(path) ?? 0) + n.selfSize);
    }
    for (const c of n.children) walk(c, here, here ? `${path ? `${path} > ` : ''}${c.callFrame.functionName || '(anon)'}` : '');
  };
  walk(root, false, '');
  const top = [...bySite].sort((a, b) => b[1] - a[1]).slice(0, 25);
  return { bytes, top };
}

/**
 * Runs `one` o.runs times after a warm-up (`warmUp`, for the JIT), profiling the last run as asked (the heap profile
 * counts allocations under the frame `serverTurn` only), and prints each run (`describe`, given the allocation note)
 * and the median µs per `per` datagram.
 */
export async function runProfiled<R extends PathResult>(
  o: ProfileOptions,
  per: 'received' | 'sent',
  warmUp: () => void,
  one: () => R,
  describe: (r: R, alloc: string) => string,
): Promise<void> {
  warmUp();
  const session = o.cpuProf || o.heapProf ? new Session() : null;
  session?.connect();
  const rows: R[] = [];
  for (let r = 1; r <= o.runs; r++) {
    const last = r === o.runs;
    if (session && last && o.cpuProf) {
      await post(session, 'Profiler.enable');
      await post(session, 'Profiler.setSamplingInterval', { interval: 100 });
      await post(session, 'Profiler.start');
    }
    if (session && last && o.heapProf) await post(session, 'HeapProfiler.startSampling', { samplingInterval: 256, includeObjectsCollectedByMinorGC: true, includeObjectsCollectedByMajorGC: true });
    const res = one();
    rows.push(res);
    let alloc = '';
    if (session && last && o.heapProf) {
      const { profile } = await post<{ profile: { head: HeapNode } }>(session, 'HeapProfiler.stopSampling');
      writeFileSync(o.heapProf, JSON.stringify(profile));
      const a = allocatedUnder(profile.head, 'serverTurn');
      alloc = `, server allocated ~${(a.bytes / res.datagrams).toFixed(0)} B per ${per} datagram`;
      for (const [site, b] of a.top) console.log(`    ${(b / res.datagrams).toFixed(1).padStart(7)} B/dgram  ${site}`);
    }
    if (session && last && o.cpuProf) {
      const { profile } = await post<{ profile: unknown }>(session, 'Profiler.stop');
      writeFileSync(o.cpuProf, JSON.stringify(profile));
    }
    console.log(`run ${r}: ${describe(res, alloc)}`);
  }
  const med = rows.map((r) => r.usPerDatagram).sort((a, b) => a - b)[rows.length >> 1];
  console.log(`median: ${med.toFixed(2)} µs per ${per} datagram`);
  session?.disconnect();
}
