/**
 * A simulated network for sans-I/O endpoints: a fake clock, a seeded PRNG, one-way delay with jitter (which
 * reorders), random loss, duplication and blackout windows. Deterministic for a given seed.
 */
import type { Endpoint } from '../../src/quic/endpoint.js';
import type { Address } from '../../src/quic/connection-types.js';
import { prng } from '../util/prng.js';

export interface LinkOptions {
  /** One-way delay, ms. */
  delay?: number;
  /** Extra random delay up to this many ms for every datagram (reorders datagrams sent close together). */
  jitter?: number;
  /** Probability that a datagram is held back by `reorderDelay` ms (default 3) and so overtaken by later ones. */
  reorder?: number;
  reorderDelay?: number;
  /** Probability that a datagram is lost. */
  loss?: number;
  /** Probability that a datagram is delivered twice. */
  duplicate?: number;
  /** Link rate in bytes per ms (a queue forms when exceeded; 0 = unlimited). */
  rate?: number;
  /** Queue limit in bytes before tail drop (with rate). */
  queueLimit?: number;
  /** Datagrams larger than this many bytes are dropped (a path MTU). */
  mtu?: number;
  /** Windows [from, to) in ms of simulated time where every datagram is lost. */
  blackouts?: [number, number][];
}

/**
 * What a link does to a datagram: loss, blackouts, MTU drops, rate and queue limit, duplication, delay with jitter and
 * reordering, drawn from a seeded PRNG. Shared by SimNetwork (sans-I/O endpoints) and SimUdpNetwork (test/sim/runtime.ts,
 * the I/O runtime over it).
 */
export class LinkModel {
  private readonly linkFreeAt = new Map<string, number>();

  constructor(
    readonly link: LinkOptions,
    private readonly rand: () => number,
  ) {}

  /** The arrival times of a datagram of `size` bytes sent at `now` by `from`: none when lost, two when duplicated. */
  fate(now: number, from: string, size: number): number[] {
    const l = this.link;
    if (l.blackouts?.some(([a, b]) => now >= a && now < b)) return [];
    if ((l.mtu && size > l.mtu) || (l.loss && this.rand() < l.loss)) return [];
    let depart = now;
    if (l.rate) {
      const free = Math.max(this.linkFreeAt.get(from) ?? 0, now);
      const queued = (free - now) * l.rate;
      if (l.queueLimit && queued + size > l.queueLimit) return [];
      depart = free + size / l.rate;
      this.linkFreeAt.set(from, depart);
    }
    const copies = l.duplicate && this.rand() < l.duplicate ? 2 : 1;
    const out: number[] = [];
    for (let i = 0; i < copies; i++) {
      let at = depart + (l.delay ?? 10) + (l.jitter ? this.rand() * l.jitter : 0);
      if (l.reorder && this.rand() < l.reorder) at += l.reorderDelay ?? 3;
      out.push(at);
    }
    return out;
  }
}

interface InFlight {
  at: number;
  seq: number;
  data: Buffer;
  from: Address;
  to: Address;
}

export class SimNetwork {
  now = 0;
  private queue: InFlight[] = [];
  private seq = 0;
  private readonly model: LinkModel;
  private readonly nodes = new Map<string, Endpoint>();
  stats = { sent: 0, lost: 0, duplicated: 0, delivered: 0, bytes: 0 };
  /**
   * When set (to an empty map), the fate of every datagram by sender "addr:port", in sending order: true when the
   * network lost it. Tests match it with what the endpoints say they sent and lost.
   */
  fates: Map<string, boolean[]> | null = null;

  constructor(
    seed: number,
    readonly link: LinkOptions = {},
  ) {
    this.model = new LinkModel(link, prng(seed));
  }

  attach(addr: Address, ep: Endpoint): void {
    this.nodes.set(`${addr.address}:${addr.port}`, ep);
  }

  private addrOf(ep: Endpoint): Address {
    for (const [k, v] of this.nodes) {
      if (v === ep) {
        const i = k.lastIndexOf(':');
        return { address: k.slice(0, i), port: Number(k.slice(i + 1)) };
      }
    }
    throw new Error('endpoint not attached');
  }

  private send(from: Address, to: Address, data: Buffer): void {
    this.stats.sent++;
    const arrivals = this.model.fate(this.now, `${from.address}:${from.port}`, data.length);
    if (arrivals.length === 0) this.stats.lost++;
    if (this.fates !== null) this.fatesOf(from).push(arrivals.length === 0);
    if (arrivals.length === 2) this.stats.duplicated++;
    // Copy: the receiver unprotects packets in place.
    for (const at of arrivals) this.queue.push({ at, seq: this.seq++, data: Buffer.from(data), from, to });
  }

  private fatesOf(a: Address): boolean[] {
    const k = `${a.address}:${a.port}`;
    let f = this.fates!.get(k);
    if (!f) this.fates!.set(k, (f = []));
    return f;
  }

  /** Sends everything every endpoint has to send now. */
  flush(): void {
    for (const ep of this.nodes.values()) {
      const from = this.addrOf(ep);
      for (let t = ep.poll(this.now); t; t = ep.poll(this.now)) this.send(from, t.to, t.data);
    }
  }

  private wakeups: number[] = [];

  /** The application wants to run (onTick) at simulated time `t`, even if no datagram or timer is due then. */
  wakeAt(t: number): void {
    this.wakeups.push(t);
  }

  /**
   * Runs until `done()` is true or `maxTime` ms of simulated time pass. `onTick` runs after every step
   * (the application: accept connections, read and write streams). Returns true when done.
   */
  run(done: () => boolean, maxTime: number, onTick: () => void = () => {}): boolean {
    const end = this.now + maxTime;
    for (let steps = 0; steps < 50_000_000; steps++) {
      onTick();
      this.flush();
      onTick();
      if (done()) return true;
      let next = Infinity;
      for (const q of this.queue) if (q.at < next) next = q.at;
      this.wakeups = this.wakeups.filter((t) => t > this.now);
      for (const t of this.wakeups) if (t < next) next = t;
      for (const ep of this.nodes.values()) {
        const t = ep.nextTimeout();
        if (t !== null && t < next) next = t;
      }
      if (next === Infinity || next > end) {
        this.now = end;
        return done();
      }
      this.now = Math.max(this.now, next);
      // Deliver everything due, in arrival order.
      const due = this.queue.filter((q) => q.at <= this.now).sort((a, b) => a.at - b.at || a.seq - b.seq);
      if (due.length) this.queue = this.queue.filter((q) => q.at > this.now);
      // Like the UDP driver, announce each endpoint's batch first (batched header protection masks).
      const batches = new Map<Endpoint, Buffer[]>();
      for (const q of due) {
        const ep = this.nodes.get(`${q.to.address}:${q.to.port}`);
        if (!ep) continue;
        let b = batches.get(ep);
        if (!b) batches.set(ep, (b = []));
        b.push(q.data);
      }
      for (const [ep, b] of batches) ep.premask(b);
      for (const q of due) {
        const ep = this.nodes.get(`${q.to.address}:${q.to.port}`);
        if (!ep) continue;
        this.stats.delivered++;
        this.stats.bytes += q.data.length;
        ep.receive(q.data, q.from, this.now);
      }
      for (const ep of this.nodes.values()) {
        const t = ep.nextTimeout();
        if (t !== null && t <= this.now) ep.handleTimeout(this.now);
      }
    }
    return done();
  }
}
