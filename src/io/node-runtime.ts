/**
 * The Node runtime: node:dgram sockets, performance.now() and real timers. The only file of the project's I/O
 * layer that touches a socket or reads the clock (src/io/runtime.ts has the interfaces).
 */
import { createSocket, type Socket } from 'node:dgram';
import { lookup as dnsLookup, type LookupOneOptions } from 'node:dns';
import { isIP } from 'node:net';
import { performance } from 'node:perf_hooks';
import type { Clock, DatagramSocket, IoRuntime, RemoteInfo, TimerHandle } from './runtime.js';

type LookupCallback = (err: NodeJS.ErrnoException | null, address: string, family: number) => void;

/**
 * node:dgram resolves the address of every send() with dns.lookup, which answers an IP literal on the next tick: each
 * datagram then cost a closure and a tick, and left the socket only after the rest of the turn's work (an ACK built
 * before the application's work went out after it). Addresses here are IP literals: answered at once; names still go
 * to dns.lookup.
 */
export function literalLookup(address: string, family: number | LookupOneOptions, cb: LookupCallback): void {
  const f = isIP(address);
  if (f !== 0) cb(null, address, f);
  else dnsLookup(address, family as LookupOneOptions, cb);
}

class NodeDatagramSocket implements DatagramSocket {
  private readonly sock: Socket;

  constructor(family: 'IPv4' | 'IPv6') {
    this.sock = createSocket({ type: family === 'IPv6' ? 'udp6' : 'udp4', ipv6Only: family === 'IPv6', lookup: literalLookup });
  }

  bind(port: number, address: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.bind(port, address, () => {
        this.sock.off('error', reject);
        resolve();
      });
    });
  }

  private connected = false;

  send(buf: Buffer, port: number, address: string): void {
    if (this.connected) this.sock.send(buf);
    else this.sock.send(buf, port, address);
  }

  connect(port: number, address: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.sock.once('error', reject);
      this.sock.connect(port, address, () => {
        this.sock.off('error', reject);
        this.connected = true;
        resolve();
      });
    });
  }

  onMessage(handler: (buf: Buffer, rinfo: RemoteInfo) => void): void {
    // Node's rinfo has the RemoteInfo fields (and size): pass the handler itself, no wrapper per datagram.
    this.sock.on('message', handler as (msg: Buffer, rinfo: unknown) => void);
  }

  onError(handler: (err: Error) => void): void {
    this.sock.on('error', handler);
  }

  address(): RemoteInfo {
    const a = this.sock.address();
    return { address: a.address, port: a.port, family: a.family === 'IPv6' ? 'IPv6' : 'IPv4' };
  }

  setBufferSizes(bytes: number): number {
    try {
      this.sock.setRecvBufferSize(bytes);
      this.sock.setSendBufferSize(bytes);
    } catch {
      // The kernel refused the size; keep its default.
    }
    return this.sock.getRecvBufferSize();
  }

  close(): Promise<void> {
    return new Promise<void>((r) => this.sock.close(() => r()));
  }
}

/** performance.now(), Date, and Node's timers. */
export const nodeClock: Clock = {
  now: () => performance.now(),
  date: () => new Date(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t: TimerHandle) => clearTimeout(t as NodeJS.Timeout),
  setImmediate: (fn) => {
    setImmediate(fn);
  },
};

export const nodeRuntime: IoRuntime = {
  clock: nodeClock,
  createDatagramSocket: (family) => new NodeDatagramSocket(family),
};
