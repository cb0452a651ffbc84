/**
 * The receive path of an upload in one process, with no sockets: a client Endpoint sends one stream of SIZE bytes to a
 * server Endpoint over an in-memory link, and only the server's work is timed, per received datagram. The server does
 * what the driver (src/io/udp.ts flush) does with each batch of up to BATCH datagrams: Endpoint.premask, receive each,
 * Connection.pollAckOnly, read the stream dry (the application), then Endpoint.poll until nothing is left.
 *
 *   node dist/bench/rx-path.js [--size MB] [--datagram BYTES] [--batch N] [--runs N] [--cpu-prof FILE] [--heap-prof FILE]
 *
 * Prints per run: server µs of CPU per received datagram (process.cpuUsage around the server's calls only, so
 * other processes on a busy machine do not count; V8's background threads do, which the warm-up run keeps small), server
 * datagrams sent per received one, and with --heap-prof the bytes the server allocated per received datagram (V8's
 * sampling heap profiler, 256-byte interval, counting only allocations under serverTurn). --cpu-prof writes a
 * .cpuprofile of the last run. The figures leave out node:dgram, HTTP/3 and the upstream: bench/edge.ts measures the
 * router whole. A measurement tool, not a test.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Endpoint } from '../src/quic/endpoint.js';
import type { Connection } from '../src/quic/connection.js';
import { loadPemChain, loadPrivateKey } from '../src/quic/tls/pem.js';
import { CERTS, CLIENT, SERVER, own, runProfiled } from './inproc.js';


interface Options {
  sizeMB: number;
  datagram: number;
  batch: number;
  runs: number;
  cpuProf: string | null;
  heapProf: string | null;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { sizeMB: 64, datagram: 1452, batch: 32, runs: 3, cpuProf: null, heapProf: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[++i];
    const num = (lo: number, hi: number): number => {
      const n = Number(v);
      if (!Number.isFinite(n) || n < lo || n > hi) throw new Error(`${a}: ${v} is not a number from ${lo} to ${hi}`);
      return n;
    };
    if (a === '--size') o.sizeMB = num(1, 10_000);
    else if (a === '--datagram') o.datagram = Math.floor(num(1200, 16384));
    else if (a === '--batch') o.batch = Math.floor(num(1, 1024));
    else if (a === '--runs') o.runs = Math.floor(num(1, 100));
    else if (a === '--cpu-prof' && v) o.cpuProf = v;
    else if (a === '--heap-prof' && v) o.heapProf = v;
    else throw new Error(`unknown or incomplete option ${a}`);
  }
  return o;
}

interface RunResult {
  datagrams: number;
  usPerDatagram: number;
  sentPerReceived: number;
  mbPerSec: number;
}

/** One upload; `serverTurn` is the only function the server's work runs under (the heap profile filters on it). */
function upload(o: Options): RunResult {
  const size = o.sizeMB * 1e6;
  const server = new Endpoint({
    server: {
      alpn: ['bench'],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
    },
  });
  const client = new Endpoint();
  let now = 1000;
  const conn = client.connect({ alpn: ['bench'], insecure: true, maxDatagramSize: o.datagram, onePacketPerDatagram: true }, SERVER, now);
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  let serverConn: Connection | null = null;
  let streamId = -1;
  let written = 0;
  let read = 0;
  let serverUs = 0;
  let received = 0;
  let sent = 0;
  const chunk = Buffer.alloc(64 * 1024, 0x5a);

  const serverTurn = (batch: Buffer[]): void => {
    server.premask(batch);
    let c: Connection | null = null;
    for (const d of batch) c = server.receive(d, CLIENT, now) ?? c;
    for (let a = server.pollAccepted(); a; a = server.pollAccepted()) serverConn = a;
    if (c !== null) {
      const ack = c.pollAckOnly(now);
      if (ack) toClient.push(own(ack));
    }
    const sc = serverConn as Connection | null;
    if (sc !== null) {
      for (let e = sc.pollEvent(); e; e = sc.pollEvent()) {
        if (e.type === 'stream_open' || e.type === 'stream_readable') {
          for (let b = sc.streamRead(e.id); b; b = sc.streamRead(e.id)) read += b.length;
        }
      }
    }
    for (let t = server.poll(now); t; t = server.poll(now)) toClient.push(own(t.data));
  };

  const t0 = performance.now();
  for (let guard = 0; read < size && guard < 5_000_000; guard++) {
    // client: events, writes, then its datagrams (copied: poll's buffer is the shared scratch)
    for (let e = conn.pollEvent(); e; e = conn.pollEvent()) {
      if (e.type === 'handshake_complete') streamId = conn.openStream(true) ?? -1;
    }
    while (streamId >= 0 && written < size && conn.streamBufferedBytes(streamId) < 1 << 20) {
      const n = Math.min(chunk.length, size - written);
      conn.streamWrite(streamId, n === chunk.length ? chunk : chunk.subarray(0, n), written + n === size);
      written += n;
    }
    let n = 0;
    for (let t = client.poll(now); t && n < o.batch; t = n < o.batch ? client.poll(now) : null) {
      toServer.push(own(t.data));
      n++;
    }
    // server: one batch at a time
    while (toServer.length > 0) {
      const batch = toServer.splice(0, o.batch);
      received += batch.length;
      const c0 = process.cpuUsage();
      serverTurn(batch);
      const c1 = process.cpuUsage(c0);
      serverUs += c1.user + c1.system;
    }
    sent += toClient.length;
    if (toClient.length > 0) {
      const b = toClient.splice(0);
      client.premask(b);
      for (const d of b) client.receive(d, SERVER, now);
    }
    // time: 20 µs a loop; jump to the next deadline when neither side has anything to send
    now += 0.02;
    if (n === 0 && toClient.length === 0) {
      const next = Math.min(client.nextTimeout() ?? Infinity, server.nextTimeout() ?? Infinity);
      if (next !== Infinity && next > now) now = next;
      client.handleTimeout(now);
      const c0 = process.cpuUsage();
      server.handleTimeout(now);
      for (let t = server.poll(now); t; t = server.poll(now)) toClient.push(own(t.data));
      const c1 = process.cpuUsage(c0);
      serverUs += c1.user + c1.system;
    }
  }
  const wallMs = performance.now() - t0;
  if (read < size) throw new Error(`upload stalled at ${read} of ${size} bytes`);
  return { datagrams: received, usPerDatagram: serverUs / received, sentPerReceived: sent / received, mbPerSec: size / 1e3 / wallMs };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  console.log(`rx-path: ${o.sizeMB} MB upload, client datagrams ${o.datagram} B, server batches of ${o.batch}`);
  await runProfiled(
    o,
    'received',
    () => void upload({ ...o, sizeMB: Math.min(o.sizeMB, 16) }), // warm-up (JIT)
    () => upload(o),
    (res, alloc) =>
      `${res.datagrams} datagrams, server ${res.usPerDatagram.toFixed(2)} µs per received datagram, ` +
      `${res.sentPerReceived.toFixed(3)} sent per received${alloc} (${res.mbPerSec.toFixed(0)} MB/s both sides)`,
  );
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
