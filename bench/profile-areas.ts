/**
 * A V8 .cpuprofile (node --cpu-prof) broken down by area of the router: self time of every sample attributed to the
 * area of the function it was taken in (by source file, for Node internals by module), and inclusive time under a few
 * entry points (a function's own samples and those of everything it called, each sample counted once).
 *
 *   node dist/bench/profile-areas.js DIR_OR_FILE...
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples?: number[];
  timeDeltas?: number[];
}

/** Areas, first match wins: [label, test on "url functionName"]. */
const AREAS: [string, RegExp][] = [
  ['(idle)', /^ \(idle\)$/],
  ['(garbage collector)', /^ \(garbage collector\)$/],
  ['(program)', /^ \(program\)$/],
  ['qpack', /\/src\/h3\/qpack\//],
  ['h3 validate', /\/src\/h3\/validate\.js/],
  ['h3 frames', /\/src\/h3\/frames\.js/],
  ['h3 request stream', /\/src\/h3\/request-stream\.js/],
  ['h3 session', /\/src\/h3\/session\.js/],
  ['h3 server (req/res objects)', /\/src\/h3\/server\.js/],
  ['proxy forward', /\/src\/proxy\/forward\.js/],
  ['proxy headers', /\/src\/proxy\/headers\.js/],
  ['proxy routes', /\/src\/proxy\/routes\.js/],
  ['proxy server (exchange)', /\/src\/proxy\/server\.js/],
  ['proxy upstream (ours)', /\/src\/proxy\/upstream\.js/],
  ['proxy access log', /\/src\/proxy\/access-log\.js|sonic-boom/],
  ['undici', /node_modules\/undici\//],
  ['io stream (QuicStream)', /\/src\/io\/stream\.js/],
  ['io udp / runtime', /\/src\/io\//],
  ['quic crypto', /\/src\/quic\/crypto\/|sodium/],
  ['quic', /\/src\/quic\//],
  ['node streams', /node:internal\/streams\//],
  ['node net / sockets', /node:net|node:internal\/stream_base_commons|node:internal\/net|node:internal\/dgram|node:dgram/],
  ['node events', /node:events|node:internal\/event_target/],
  ['node timers / ticks', /node:internal\/timers|node:internal\/process\/task_queues|node:timers/],
  ['node crypto', /node:internal\/crypto/],
  ['node other', /node:/],
  ['native / builtins', /^ /],
];

function areaOf(cf: CallFrame): string {
  const key = `${cf.url} ${cf.functionName || '(anonymous)'}`;
  for (const [label, re] of AREAS) if (re.test(key)) return label;
  return 'other js';
}

/** Inclusive-time roots: [label, functionName, url fragment]. */
const ROOTS: [string, string, string][] = [
  ['UdpEndpoint flush (QUIC receive + send)', 'flush', '/src/io/udp.js'],
  ['Forwarder.handle (sync part)', 'handle', '/src/proxy/forward.js'],
  ['UpstreamPool.request (sync part)', 'request', '/src/proxy/upstream.js'],
  ['H3RequestStream.pump', 'pump', '/src/h3/request-stream.js'],
  ['Http3Session.onPeerRequestStream', 'onPeerRequestStream', '/src/h3/session.js'],
  ['Http3Session.encodeFieldSection', 'encodeFieldSection', '/src/h3/session.js'],
  ['Http3Session.decodeFieldSection', 'decodeFieldSection', '/src/h3/session.js'],
  ['validateRequest', 'validateRequest', '/src/h3/validate.js'],
  ['Http3Response.respond', 'respond', '/src/h3/server.js'],
  ['upstreamRequestHeaders', 'upstreamRequestHeaders', '/src/proxy/headers.js'],
  ['downstreamResponseHeaders', 'downstreamResponseHeaders', '/src/proxy/headers.js'],
  ['Router.match', 'match', '/src/proxy/routes.js'],
  ['AccessLog.logStream', 'logStream', '/src/proxy/access-log.js'],
  ['undici Pool.request (dispatch)', 'request', 'undici/lib/api/api-request.js'],
  ['undici parser (socket data)', 'onHttpSocketData', 'undici/'],
  ['undici execute (llhttp)', 'execute', 'undici/'],
  ['socket writes (writeGeneric/writev)', 'writeGeneric', 'node:internal/stream_base_commons'],
  ['process.nextTick queue', 'processTicksAndRejections', 'node:internal/process/task_queues'],
  ['timers (listOnTimeout)', 'listOnTimeout', 'node:internal/timers'],
  ['setImmediate (processImmediate)', 'processImmediate', 'node:internal/timers'],
];

function files(args: string[]): string[] {
  const out: string[] = [];
  for (const a of args) {
    if (!statSync(a).isDirectory()) {
      out.push(a);
      continue;
    }
    for (const f of readdirSync(a)) if (f.endsWith('.cpuprofile')) out.push(join(a, f));
  }
  return out;
}

export function profileAreas(...paths: string[]): string[] {
  const lines: string[] = [];
  for (const file of files(paths)) {
    const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
    const byId = new Map<number, ProfileNode>();
    const parent = new Map<number, number>();
    for (const n of p.nodes) byId.set(n.id, n);
    for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
    const hits = new Map<number, number>();
    let total = 0;
    for (const n of p.nodes) {
      const h = n.hitCount ?? 0;
      if (h > 0) hits.set(n.id, h);
      total += h;
    }
    const idle = [...hits].filter(([id]) => byId.get(id)!.callFrame.functionName === '(idle)').reduce((s, [, h]) => s + h, 0);
    const busy = total - idle;
    const ms = (p.endTime - p.startTime) / 1000;
    const msPerHit = ms / Math.max(1, total);
    lines.push(`${file}: ${total} samples over ${ms.toFixed(0)} ms, ${busy} not idle (${(busy * msPerHit).toFixed(0)} ms); shares of the non-idle samples:`);
    const areas = new Map<string, number>();
    for (const [id, h] of hits) {
      const a = areaOf(byId.get(id)!.callFrame);
      if (a === '(idle)') continue;
      areas.set(a, (areas.get(a) ?? 0) + h);
    }
    lines.push('  self time by area:');
    for (const [a, h] of [...areas].sort((x, y) => y[1] - x[1])) lines.push(`    ${((100 * h) / Math.max(1, busy)).toFixed(1).padStart(5)} %  ${a}`);
    lines.push('  inclusive time under:');
    for (const [label, fn, frag] of ROOTS) {
      let inc = 0;
      for (const [id, h] of hits) {
        // Counted once if any ancestor (or itself) is the root.
        for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
          const cf = byId.get(cur)!.callFrame;
          if (cf.functionName === fn && cf.url.includes(frag)) {
            inc += h;
            break;
          }
        }
      }
      if (inc > 0) lines.push(`    ${((100 * inc) / Math.max(1, busy)).toFixed(1).padStart(5)} %  ${label}`);
    }
  }
  return lines;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  if (process.argv.length < 3) {
    console.error('usage: node dist/bench/profile-areas.js DIR_OR_FILE...');
    process.exit(2);
  }
  for (const l of profileAreas(...process.argv.slice(2))) console.log(l);
}
