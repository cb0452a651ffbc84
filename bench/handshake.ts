/**
 * Handshake CPU benchmark: N sequential QUIC + TLS 1.3 handshakes between two sans-I/O endpoints in one process
 * (datagrams handed across directly, no sockets, a fake clock), with the CPU time of every endpoint call charged to
 * the side that made it. This is the cost per new connection the router pays, without the I/O driver.
 *
 *   node dist/bench/handshake.js [--n 2000] [--warmup 200] [--cert ecdsa|rsa|ed25519] [--insecure]
 *       [--group x25519|secp256r1] [--suite aes128|aes256|chacha20] [--cpu-prof FILE.cpuprofile] [--top 25] [--json]
 *
 * Each handshake: the client endpoint connects, the datagrams go back and forth until both sides are established and
 * the client has HANDSHAKE_DONE (handshake confirmed), then the client closes and both run until the connection is
 * gone (closing/draining timers fire on the fake clock). The handshake and the close are timed separately.
 * The client verifies the server's chain against test/fixtures/certs/ca.pem and the name "localhost" unless
 * --insecure (the CertificateVerify signature is checked either way).
 *
 * Prints per-handshake CPU µs (process.cpuUsage around each call: user + system), server and client, medians over
 * the timed handshakes, and the server-side handshakes per second per core that follow (at the medians and at the
 * means: a flood's CPU seconds per handshake, as bench/edge.ts measures the router, is a mean). --cpu-prof writes a
 * V8 CPU profile of the timed handshakes and prints the functions with the most self and total time. A measurement tool,
 * not a test: nothing here asserts, but a handshake that fails stops the run with a message.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { fileURLToPath } from 'node:url';
import { Endpoint } from '../src/quic/endpoint.js';
import type { Connection } from '../src/quic/connection.js';
import type { Address, ConnectionConfig } from '../src/quic/connection-types.js';
import { TLS_AES_128_GCM_SHA256, TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256, type CipherSuite } from '../src/quic/crypto/suites.js';
import { loadPemChain, loadPrivateKey } from '../src/quic/tls/pem.js';
import type { Group } from '../src/quic/tls/tls.js';

const CERTS = fileURLToPath(new URL('../../test/fixtures/certs/', import.meta.url));
const SERVER: Address = { address: '10.0.0.1', port: 443 };
const CLIENT: Address = { address: '10.0.0.2', port: 50000 };

interface Options {
  n: number;
  warmup: number;
  cert: 'ecdsa' | 'rsa' | 'ed25519';
  insecure: boolean;
  group: Group;
  suite: CipherSuite | null;
  cpuProf: string | null;
  top: number;
  json: boolean;
}

function usage(msg: string): never {
  process.stderr.write(`handshake bench: ${msg}\n`);
  process.exit(2);
}

function parseArgs(argv: string[]): Options {
  const o: Options = { n: 2000, warmup: 200, cert: 'ecdsa', insecure: false, group: 'x25519', suite: null, cpuProf: null, top: 25, json: false };
  const int = (flag: string, v: string | undefined, min: number): number => {
    const x = Number(v);
    if (v === undefined || !Number.isInteger(x) || x < min) usage(`${flag} needs an integer >= ${min}, got ${v ?? 'nothing'}`);
    return x;
  };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = argv[i + 1];
    switch (a) {
      case '--n':
        o.n = int(a, v, 1);
        i++;
        break;
      case '--warmup':
        o.warmup = int(a, v, 0);
        i++;
        break;
      case '--top':
        o.top = int(a, v, 1);
        i++;
        break;
      case '--cert':
        if (v !== 'ecdsa' && v !== 'rsa' && v !== 'ed25519') usage(`--cert must be ecdsa, rsa or ed25519, got ${v ?? 'nothing'}`);
        o.cert = v;
        i++;
        break;
      case '--group':
        if (v !== 'x25519' && v !== 'secp256r1') usage(`--group must be x25519 or secp256r1, got ${v ?? 'nothing'}`);
        o.group = v;
        i++;
        break;
      case '--suite':
        if (v === 'aes128') o.suite = TLS_AES_128_GCM_SHA256;
        else if (v === 'aes256') o.suite = TLS_AES_256_GCM_SHA384;
        else if (v === 'chacha20') o.suite = TLS_CHACHA20_POLY1305_SHA256;
        else usage(`--suite must be aes128, aes256 or chacha20, got ${v ?? 'nothing'}`);
        i++;
        break;
      case '--cpu-prof':
        if (!v) usage('--cpu-prof needs a file name');
        o.cpuProf = v;
        i++;
        break;
      case '--insecure':
        o.insecure = true;
        break;
      case '--json':
        o.json = true;
        break;
      default:
        usage(`unknown argument ${a}`);
    }
  }
  return o;
}

/** User + system CPU µs since `start`. */
function cpuSince(start: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(start);
  return d.user + d.system;
}

export class Pair {
  now = 0;
  serverUs = 0;
  clientUs = 0;
  datagrams = 0;
  readonly sep: Endpoint;
  readonly cep = new Endpoint();

  constructor(
    server: ConnectionConfig,
    private readonly client: ConnectionConfig,
  ) {
    this.sep = new Endpoint({ server });
  }

  private onServer<T>(f: () => T): T {
    const t = process.cpuUsage();
    const r = f();
    this.serverUs += cpuSince(t);
    return r;
  }

  private onClient<T>(f: () => T): T {
    const t = process.cpuUsage();
    const r = f();
    this.clientUs += cpuSince(t);
    return r;
  }

  /** Moves datagrams both ways until neither side has anything to send. */
  private exchange(): void {
    for (let rounds = 0; rounds < 100; rounds++) {
      let moved = false;
      for (let tx = this.onClient(() => this.cep.poll(this.now)); tx; tx = this.onClient(() => this.cep.poll(this.now))) {
        const d = tx.data;
        this.datagrams++;
        this.onServer(() => this.sep.receive(d, CLIENT, this.now));
        moved = true;
      }
      for (let tx = this.onServer(() => this.sep.poll(this.now)); tx; tx = this.onServer(() => this.sep.poll(this.now))) {
        const d = tx.data;
        this.datagrams++;
        this.onClient(() => this.cep.receive(d, SERVER, this.now));
        moved = true;
      }
      if (!moved) return;
    }
    throw new Error('datagrams still flowing after 100 rounds');
  }

  /** Fires both endpoints' timers up to `now`. */
  private timers(): void {
    const s = this.sep.nextTimeout();
    if (s !== null && s <= this.now) this.onServer(() => this.sep.handleTimeout(this.now));
    const c = this.cep.nextTimeout();
    if (c !== null && c <= this.now) this.onClient(() => this.cep.handleTimeout(this.now));
  }

  /** One handshake to confirmation; returns the two connections. */
  handshake(): { client: Connection; server: Connection } {
    const client = this.onClient(() => this.cep.connect(this.client, SERVER, this.now));
    let server: Connection | undefined;
    for (let i = 0; i < 20; i++) {
      this.exchange();
      server ??= this.sep.pollAccepted();
      if (client.state !== 'handshake' && server?.state === 'established' && confirmed(client)) break;
      this.now += 1;
      this.timers();
    }
    if (client.state !== 'established' || server?.state !== 'established' || !confirmed(client)) {
      const why = client.closeInfo ?? server?.closeInfo;
      throw new Error(`handshake did not complete: client ${client.state}, server ${server?.state ?? 'none'}${why ? `: ${why.reason} (0x${why.code.toString(16)})` : ''}`);
    }
    return { client, server };
  }

  /** Closes from the client and runs both sides until the connection is forgotten by both endpoints. */
  close(client: Connection): void {
    this.onClient(() => client.close(0, ''));
    this.exchange();
    for (let i = 0; i < 100 && (this.sep.connections.size || this.cep.connections.size); i++) {
      this.now += 10;
      this.timers();
      this.exchange();
    }
    if (this.sep.connections.size || this.cep.connections.size) throw new Error('connections still open after closing');
  }
}

/** Drains a client connection's events; true once HANDSHAKE_DONE arrived. */
const confirmedSet = new WeakSet<Connection>();
function confirmed(c: Connection): boolean {
  for (let e = c.pollEvent(); e; e = c.pollEvent()) if (e.type === 'handshake_confirmed') confirmedSet.add(c);
  return confirmedSet.has(c);
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

interface ProfNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

/** Self and total (inclusive) sample shares per function, the top `top` of each. */
function summarize(prof: { nodes: ProfNode[] }, top: number): string[] {
  const byId = new Map<number, ProfNode>();
  for (const n of prof.nodes) byId.set(n.id, n);
  const parent = new Map<number, number>();
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const name = (n: ProfNode): string => {
    const cf = n.callFrame;
    const where = cf.url ? ` ${cf.url.replace(/^file:\/\//, '').replace(/^.*\/dist\//, '')}:${cf.lineNumber + 1}` : '';
    return `${cf.functionName || '(anonymous)'}${where}`;
  };
  const self = new Map<string, number>();
  const total = new Map<string, number>();
  let all = 0;
  for (const n of prof.nodes) {
    const hits = n.hitCount ?? 0;
    if (!hits) continue;
    all += hits;
    self.set(name(n), (self.get(name(n)) ?? 0) + hits);
    const seen = new Set<string>();
    for (let id: number | undefined = n.id; id !== undefined; id = parent.get(id)) {
      const k = name(byId.get(id)!);
      if (seen.has(k)) continue; // recursion: count once per sample
      seen.add(k);
      total.set(k, (total.get(k) ?? 0) + hits);
    }
  }
  const fmt = (m: Map<string, number>): string[] =>
    [...m.entries()]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([k, v]) => `  ${((100 * v) / Math.max(1, all)).toFixed(1).padStart(5)} %  ${k}`);
  return [`${all} samples; by self time:`, ...fmt(self), 'by total time (the function and what it calls):', ...fmt(total)];
}

function post<T>(s: Session, method: string, params?: object): Promise<T> {
  return new Promise((resolve, reject) => s.post(method, params ?? {}, (err, res) => (err ? reject(err) : resolve(res as T))));
}

/** The server and client configurations for a run (exported with Pair for A/B scripts that load two builds). */
export function configs(o: Pick<Options, 'cert' | 'insecure' | 'group' | 'suite'>): { server: ConnectionConfig; client: ConnectionConfig } {
  const server: ConnectionConfig = {
    alpn: ['h3'],
    certChain: loadPemChain(readFileSync(`${CERTS}${o.cert}.pem`, 'utf8')),
    privateKey: loadPrivateKey(readFileSync(`${CERTS}${o.cert}.key`, 'utf8')),
    pacing: false,
    ...(o.suite && { cipherSuites: [o.suite] }),
  };
  const client: ConnectionConfig = {
    alpn: ['h3'],
    serverName: 'localhost',
    certificateTime: new Date(),
    groups: [o.group],
    pacing: false,
    ...(o.insecure ? { insecure: true } : { ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')) }),
  };
  return { server, client };
}

async function main(): Promise<void> {
  const o = parseArgs(process.argv.slice(2));
  const { server, client } = configs(o);
  const pair = new Pair(server, client);
  for (let i = 0; i < o.warmup; i++) pair.close(pair.handshake().client);

  let session: Session | null = null;
  if (o.cpuProf) {
    session = new Session();
    session.connect();
    await post(session, 'Profiler.enable');
    await post(session, 'Profiler.setSamplingInterval', { interval: 100 });
    await post(session, 'Profiler.start');
  }
  const hsServer: number[] = [];
  const hsClient: number[] = [];
  const closeServer: number[] = [];
  const closeClient: number[] = [];
  let cipher = '';
  let datagrams = 0;
  const wall0 = performance.now();
  const cpu0 = process.cpuUsage();
  for (let i = 0; i < o.n; i++) {
    pair.serverUs = pair.clientUs = pair.datagrams = 0;
    const { client: c, server: s } = pair.handshake();
    hsServer.push(pair.serverUs);
    hsClient.push(pair.clientUs);
    datagrams += pair.datagrams;
    cipher = s.cipherSuite ?? '';
    pair.serverUs = pair.clientUs = 0;
    pair.close(c);
    closeServer.push(pair.serverUs);
    closeClient.push(pair.clientUs);
  }
  const cpuAll = cpuSince(cpu0);
  const wallMs = performance.now() - wall0;
  let profileLines: string[] = [];
  if (session && o.cpuProf) {
    const { profile } = await post<{ profile: { nodes: ProfNode[] } }>(session, 'Profiler.stop');
    writeFileSync(o.cpuProf, JSON.stringify(profile));
    profileLines = summarize(profile, o.top);
    session.disconnect();
  }
  const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0);
  const result = {
    n: o.n,
    cert: o.cert,
    group: o.group,
    cipher,
    verify: !o.insecure,
    datagramsPerHandshake: datagrams / o.n,
    handshakeServerUsMedian: median(hsServer),
    handshakeClientUsMedian: median(hsClient),
    handshakeServerUsMean: sum(hsServer) / o.n,
    handshakeClientUsMean: sum(hsClient) / o.n,
    closeServerUsMedian: median(closeServer),
    closeClientUsMedian: median(closeClient),
    /** Server-side handshakes a core could do per second at the median handshake + close cost. */
    serverHandshakesPerSecPerCore: 1e6 / (median(hsServer) + median(closeServer)),
    /**
     * The same at the mean cost: what a flood's figure (CPU seconds over N handshakes, bench/edge.ts scale) compares
     * with; GC pauses and the slow tail land in a few handshakes, so the mean is well above the median.
     */
    serverHandshakesPerSecPerCoreMean: 1e6 / ((sum(hsServer) + sum(closeServer)) / o.n),
    /** Everything (both sides, the bench's own work) per handshake. */
    totalCpuUsPerHandshake: cpuAll / o.n,
    wallMs,
    heapUsedMB: process.memoryUsage().heapUsed / 1e6,
  };
  if (o.json) {
    process.stdout.write(JSON.stringify(result) + '\n');
  } else {
    const f = (x: number) => x.toFixed(0);
    process.stdout.write(
      [
        `${o.n} handshakes (${o.warmup} warm-up), ${o.cert} certificate, ${o.group}, ${cipher}, chain ${o.insecure ? 'not verified' : 'verified'}, ${result.datagramsPerHandshake.toFixed(1)} datagrams each`,
        `handshake CPU µs, median (mean): server ${f(result.handshakeServerUsMedian)} (${f(result.handshakeServerUsMean)}), client ${f(result.handshakeClientUsMedian)} (${f(result.handshakeClientUsMean)})`,
        `close CPU µs, median: server ${f(result.closeServerUsMedian)}, client ${f(result.closeClientUsMedian)}`,
        `server handshakes/s per core (handshake + close): ${f(result.serverHandshakesPerSecPerCore)} at the medians, ${f(result.serverHandshakesPerSecPerCoreMean)} at the means (a flood's figure is a mean)`,
        `whole process: ${f(result.totalCpuUsPerHandshake)} µs CPU per handshake, ${f(wallMs)} ms wall`,
        ...(o.cpuProf ? [`profile written to ${o.cpuProf}`, ...profileLines] : []),
      ].join('\n') + '\n',
    );
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((e: unknown) => {
    process.stderr.write(`handshake bench: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
