/**
 * The I/O runtime (src/io/runtime.ts) over a simulated network, so that UdpEndpoint, HTTP/3 and the router run
 * unchanged over seeded loss, reordering, duplication and delay (LinkModel, network.ts).
 *
 * Two clocks:
 * - VirtualClock: time stands still while the program has work in the current turn and jumps to the next timer
 *   (a datagram's arrival, a QUIC deadline) once it has none. For code that is all in-process (HTTP/3 client and
 *   server): a 5 MB transfer over a lossy 10 ms link takes a fraction of its simulated time, and nothing depends on
 *   the machine's speed.
 * - nodeClock (src/io/node-runtime.ts): real time, with the simulated network's loss and delay on top. For code that
 *   also waits on real I/O, such as the router and its node:http upstreams on 127.0.0.1: a virtual clock would jump
 *   ahead while an upstream is answering over TCP (firing idle timeouts and retransmissions that real time would not),
 *   and advancing it in fixed real-time steps would only make it a slower real clock.
 */
import type { Address } from '../../src/quic/connection-types.js';
import type { Clock, DatagramSocket, IoRuntime, RemoteInfo, TimerHandle } from '../../src/io/runtime.js';
import { prng } from '../util/prng.js';
import { LinkModel, type LinkOptions } from './network.js';

interface VirtualTimer {
  at: number;
  seq: number;
  fn: () => void;
  cancelled: boolean;
}

/**
 * A fake monotonic clock. It is driven from real setImmediate turns: a turn runs the immediates queued so far
 * (process.nextTick and promise jobs they start run in between, as in Node); after two turns with no immediate
 * (everything the program could do without time passing is done) time jumps to the earliest timer and every timer
 * due then fires. The driver stops when nothing is scheduled, so a finished test exits.
 */
export class VirtualClock implements Clock {
  private t = 0;
  private seq = 0;
  private timers: VirtualTimer[] = [];
  private immediates: (() => void)[] = [];
  private driving = false;
  private idleTurns = 0;
  private readonly epoch = Date.now();
  /** How many times time jumped forward. */
  jumps = 0;

  now(): number {
    return this.t;
  }

  date(): Date {
    return new Date(this.epoch + this.t);
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: VirtualTimer = { at: this.t + Math.max(0, ms), seq: this.seq++, fn, cancelled: false };
    // Keep the list sorted by (at, seq): binary search for the insertion point.
    let lo = 0;
    let hi = this.timers.length;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (this.timers[mid].at <= timer.at) lo = mid + 1;
      else hi = mid;
    }
    this.timers.splice(lo, 0, timer);
    this.drive();
    return timer;
  }

  clearTimeout(t: TimerHandle): void {
    const timer = t as VirtualTimer;
    if (timer.cancelled) return;
    timer.cancelled = true;
    const i = this.timers.indexOf(timer);
    if (i >= 0) this.timers.splice(i, 1);
  }

  setImmediate(fn: () => void): void {
    this.immediates.push(fn);
    this.drive();
  }

  /** Resolves after `ms` of virtual time. */
  sleep(ms: number): Promise<void> {
    return new Promise((r) => this.setTimeout(r, ms));
  }

  private drive(): void {
    if (this.driving) return;
    this.driving = true;
    setImmediate(() => this.turn());
  }

  private turn(): void {
    if (this.immediates.length) {
      this.idleTurns = 0;
      const run = this.immediates;
      this.immediates = [];
      for (const fn of run) fn();
    } else if (++this.idleTurns >= 2) {
      this.idleTurns = 0;
      const first = this.timers[0];
      if (!first) {
        this.driving = false;
        return;
      }
      if (first.at > this.t) {
        this.t = first.at;
        this.jumps++;
      }
      // Timers due now, in order; the ones they arm (even for "now") wait for a later turn, as in Node.
      let n = 0;
      while (n < this.timers.length && this.timers[n].at <= this.t) n++;
      const due = this.timers.splice(0, n);
      for (const timer of due) {
        timer.cancelled = true;
        timer.fn();
      }
    }
    setImmediate(() => this.turn());
  }
}

export interface SimUdpStats {
  sent: number;
  lost: number;
  duplicated: number;
  delivered: number;
  /** Datagrams that arrived where no socket was bound. */
  unreachable: number;
}

/** UDP over a LinkModel, on a clock: each datagram's copies are delivered by timers at their arrival times. */
export class SimUdpNetwork {
  readonly model: LinkModel;
  readonly stats: SimUdpStats = { sent: 0, lost: 0, duplicated: 0, delivered: 0, unreachable: 0 };
  private readonly bound = new Map<string, SimSocket>();
  private nextPort = 49152;
  readonly runtime: IoRuntime;

  constructor(
    seed: number,
    link: LinkOptions,
    readonly clock: Clock,
  ) {
    this.model = new LinkModel(link, prng(seed));
    this.runtime = { clock, createDatagramSocket: (family) => new SimSocket(this, family) };
  }

  /** Binds `sock` (port 0: the next free ephemeral port); throws EADDRINUSE like a real socket. */
  bind(sock: SimSocket, address: string, port: number): number {
    if (port === 0) {
      while (this.bound.has(`${address}:${this.nextPort}`)) this.nextPort++;
      port = this.nextPort++;
    }
    const key = `${address}:${port}`;
    if (this.bound.has(key)) throw Object.assign(new Error(`bind EADDRINUSE ${key}`), { code: 'EADDRINUSE' });
    this.bound.set(key, sock);
    return port;
  }

  unbind(sock: SimSocket): void {
    for (const [k, v] of this.bound) if (v === sock) this.bound.delete(k);
  }

  transmit(from: RemoteInfo, to: Address, data: Buffer): void {
    this.stats.sent++;
    const now = this.clock.now();
    const arrivals = this.model.fate(now, `${from.address}:${from.port}`, data.length);
    if (arrivals.length === 0) this.stats.lost++;
    if (arrivals.length === 2) this.stats.duplicated++;
    for (const at of arrivals) {
      // A copy per arrival: the sender reuses its buffers and the receiver unprotects packets in place.
      const copy = Buffer.from(data);
      this.clock.setTimeout(() => this.deliver(from, to, copy), at - now);
    }
  }

  private deliver(from: RemoteInfo, to: Address, data: Buffer): void {
    const wildcard = to.address.includes(':') ? '::' : '0.0.0.0';
    const sock = this.bound.get(`${to.address}:${to.port}`) ?? this.bound.get(`${wildcard}:${to.port}`);
    if (!sock) {
      this.stats.unreachable++;
      return;
    }
    this.stats.delivered++;
    sock.receive(data, from);
  }
}

class SimSocket implements DatagramSocket {
  private local: RemoteInfo | null = null;
  private handler: ((buf: Buffer, rinfo: RemoteInfo) => void) | null = null;

  constructor(
    private readonly net: SimUdpNetwork,
    private readonly family: 'IPv4' | 'IPv6',
  ) {}

  async bind(port: number, address: string): Promise<void> {
    const p = this.net.bind(this, address, port);
    this.local = { address, port: p, family: this.family };
  }

  send(buf: Buffer, port: number, address: string): void {
    if (!this.local) throw new Error('send on an unbound socket');
    // A wildcard socket sends from loopback (the only interface of the simulated host).
    const from = this.local.address === '0.0.0.0' ? { ...this.local, address: '127.0.0.1' } : this.local.address === '::' ? { ...this.local, address: '::1' } : this.local;
    this.net.transmit(from, { address, port }, buf);
  }

  receive(buf: Buffer, from: RemoteInfo): void {
    this.handler?.(buf, { ...from });
  }

  onMessage(handler: (buf: Buffer, rinfo: RemoteInfo) => void): void {
    this.handler = handler;
  }

  onError(): void {
    // A simulated socket has no asynchronous errors.
  }

  address(): RemoteInfo {
    if (!this.local) throw new Error('socket not bound');
    return { ...this.local };
  }

  setBufferSizes(bytes: number): number {
    return bytes;
  }

  async close(): Promise<void> {
    this.net.unbind(this);
    this.handler = null;
  }
}
