/**
 * The send path of a download in one process, with no sockets: a client Endpoint opens one stream and a server
 * Endpoint answers it with SIZE bytes over an in-memory link, and only the server's work is timed, per sent datagram.
 * The server does what the driver (src/io/udp.ts flush) does each turn: Endpoint.premask and receive the batch of
 * datagrams (the client's ACKs), Connection.pollAckOnly, the application's writes (64 KiB pieces while less than
 * 1 MiB is buffered, as a QuicStream writer does), then Endpoint.poll for up to SEND_BATCH datagrams. The server's
 * datagrams are capped at --datagram bytes (quic-go's client allows 1452), and the client acknowledges once per batch
 * of --ack-every datagrams it receives (quic-go: about every 10).
 *
 *   node dist/bench/tx-path.js [--size MB] [--datagram BYTES] [--ack-every N] [--runs N] [--cpu-prof FILE] [--heap-prof FILE]
 *
 * Prints per run: server µs of CPU per sent datagram (process.cpuUsage around the server's calls only, so other
 * processes on a busy machine do not count), datagrams received per sent one, and with --heap-prof the bytes the
 * server allocated per sent datagram (V8's sampling heap profiler under serverTurn). --cpu-prof writes a .cpuprofile
 * of the last run. node:dgram, HTTP/3 and the upstream are left out: bench/edge.ts measures the router whole. A
 * measurement tool, not a test.
 */
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { Endpoint } from '../src/quic/endpoint.js';
import type { Connection } from '../src/quic/connection.js';
import { loadPemChain, loadPrivateKey } from '../src/quic/tls/pem.js';
import { CERTS, CLIENT, SERVER, own, runProfiled } from './inproc.js';

/** As src/io/udp.ts: datagrams sent per turn before the driver lets received ones in. */
const SEND_BATCH = 64;
const WRITE_PIECE = 64 * 1024;
const WRITE_BUFFERED = 1024 * 1024;

interface Options {
  sizeMB: number;
  datagram: number;
  ackEvery: number;
  runs: number;
  cpuProf: string | null;
  heapProf: string | null;
}

function parseArgs(argv: string[]): Options {
  const o: Options = { sizeMB: 64, datagram: 1452, ackEvery: 10, runs: 3, cpuProf: null, heapProf: null };
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
    else if (a === '--ack-every') o.ackEvery = Math.floor(num(1, 1024));
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
  receivedPerSent: number;
  mbPerSec: number;
}

/** One download; `serverTurn` is the only function the server's work runs under (the heap profile filters on it). */
function download(o: Options): RunResult {
  const size = o.sizeMB * 1e6;
  const server = new Endpoint({
    server: {
      alpn: ['bench'],
      certChain: loadPemChain(readFileSync(`${CERTS}ecdsa.pem`, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(`${CERTS}ecdsa.key`, 'utf8')),
      maxDatagramSize: o.datagram,
    },
  });
  const client = new Endpoint();
  let now = 1000;
  const conn = client.connect({ alpn: ['bench'], insecure: true }, SERVER, now);
  const toServer: Buffer[] = [];
  const toClient: Buffer[] = [];
  let serverConn: Connection | null = null;
  let streamId = -1;
  let requested = false;
  let written = 0;
  let read = 0;
  let serverUs = 0;
  let received = 0;
  let sent = 0;
  const piece = Buffer.alloc(WRITE_PIECE, 0x5a);

  const write = (sc: Connection): void => {
    while (streamId >= 0 && written < size && sc.streamBufferedBytes(streamId) < WRITE_BUFFERED) {
      const n = Math.min(piece.length, size - written);
      sc.streamWrite(streamId, n === piece.length ? piece : piece.subarray(0, n), written + n === size);
      written += n;
    }
  };

  const serverTurn = (batch: Buffer[]): void => {
    let c: Connection | null = null;
    if (batch.length > 0) {
      server.premask(batch);
      for (const d of batch) c = server.receive(d, CLIENT, now) ?? c;
      for (let a = server.pollAccepted(); a; a = server.pollAccepted()) serverConn = a;
      if (c !== null) {
        const ack = c.pollAckOnly(now);
        if (ack) toClient.push(ack);
      }
    }
    const sc = serverConn as Connection | null;
    if (sc !== null) {
      for (let e = sc.pollEvent(); e; e = sc.pollEvent()) {
        if (e.type === 'stream_open') {
          streamId = e.id;
          while (sc.streamRead(e.id)) {
            // the request: read and dropped
          }
        }
      }
      write(sc);
    }
    let n = 0;
    for (let t = server.poll(now); t; t = n < SEND_BATCH ? server.poll(now) : null) {
      toClient.push(t.data);
      n++;
    }
  };

  const clientEvents = (): void => {
    for (let e = conn.pollEvent(); e; e = conn.pollEvent()) {
      if (e.type === 'handshake_complete' && !requested) {
        const id = conn.openStream(true);
        if (id !== null) {
          conn.streamWrite(id, Buffer.from('GET /bytes'), true);
          requested = true;
        }
      } else if (e.type === 'stream_readable') {
        for (let b = conn.streamRead(e.id); b; b = conn.streamRead(e.id)) read += b.length;
      }
    }
  };

  const t0 = performance.now();
  for (let guard = 0; read < size && guard < 5_000_000; guard++) {
    // client: events (the request once the handshake is done, the body read dry), then its datagrams
    clientEvents();
    for (let t = client.poll(now); t; t = client.poll(now)) toServer.push(own(t.data));
    // server: one turn with what arrived
    const batch = toServer.splice(0);
    received += batch.length;
    const c0 = process.cpuUsage();
    serverTurn(batch);
    const c1 = process.cpuUsage(c0);
    serverUs += c1.user + c1.system;
    // client: the server's datagrams in batches of ackEvery, one ACK (its poll) after each
    sent += toClient.length;
    // node:dgram's work, not the server's: each datagram arrives in a buffer of its own (copied out of the timed part)
    const out = toClient.splice(0).map(own);
    for (let i = 0; i < out.length; i += o.ackEvery) {
      const b = out.slice(i, i + o.ackEvery);
      client.premask(b);
      for (const d of b) client.receive(d, SERVER, now);
      clientEvents();
      const ack = conn.pollAckOnly(now);
      if (ack) toServer.push(own(ack));
    }
    // time: 50 µs a loop; jump to the next deadline when neither side has anything to send
    now += 0.05;
    if (out.length === 0 && toServer.length === 0) {
      const next = Math.min(client.nextTimeout() ?? Infinity, server.nextTimeout() ?? Infinity);
      if (next !== Infinity && next > now) now = next;
      client.handleTimeout(now);
      const c2 = process.cpuUsage();
      server.handleTimeout(now);
      const c3 = process.cpuUsage(c2);
      serverUs += c3.user + c3.system;
    }
  }
  const wallMs = performance.now() - t0;
  if (read < size) throw new Error(`download stalled at ${read} of ${size} bytes (client ${conn.state}, request ${requested}, server stream ${streamId}, written ${written})`);
  return { datagrams: sent, usPerDatagram: serverUs / sent, receivedPerSent: received / sent, mbPerSec: size / 1e3 / wallMs };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  console.log(`tx-path: ${o.sizeMB} MB download, server datagrams up to ${o.datagram} B, client ACK every ${o.ackEvery} datagrams`);
  await runProfiled(
    o,
    'sent',
    () => void download({ ...o, sizeMB: Math.min(o.sizeMB, 16) }), // warm-up (JIT)
    () => download(o),
    (res, alloc) =>
      `${res.datagrams} datagrams, server ${res.usPerDatagram.toFixed(2)} µs per sent datagram, ` +
      `${res.receivedPerSent.toFixed(3)} received per sent${alloc} (${res.mbPerSec.toFixed(0)} MB/s both sides)`,
  );
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
