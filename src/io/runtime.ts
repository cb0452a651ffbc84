/**
 * The two things the I/O driver needs from the world, as small interfaces: a datagram socket and a clock. The Node
 * implementation (node:dgram and real timers) is in node-runtime.ts, the only file of src/io that touches sockets or
 * reads the clock; tests plug in a simulated network and a fake clock (test/sim/runtime.ts), so the driver, HTTP/3
 * and the router run unchanged over seeded loss, reordering and delay.
 */
import type { Address } from '../quic/connection-types.js';

/** The sender of a received datagram. */
export interface RemoteInfo extends Address {
  family: 'IPv4' | 'IPv6';
}

/** A UDP socket. */
export interface DatagramSocket {
  /** Binds to `address`:`port` (0: any free port). Rejects when the address cannot be bound. */
  bind(port: number, address: string): Promise<void>;
  /** Sends one datagram; delivery is best effort (errors are reported through onError, never thrown). */
  send(buf: Buffer, port: number, address: string): void;
  /**
   * Optional: connects the socket to one peer (a client talking to one server). The kernel then resolves the route
   * once instead of per datagram, and only that peer's datagrams are received; send() must then name that peer.
   */
  connect?(port: number, address: string): Promise<void>;
  /** Sets the handler for received datagrams (one handler per socket). */
  onMessage(handler: (buf: Buffer, rinfo: RemoteInfo) => void): void;
  /** Sets the handler for asynchronous socket errors (e.g. ICMP-triggered ones). */
  onError(handler: (err: Error) => void): void;
  /** The bound address. */
  address(): RemoteInfo;
  /** Requests send and receive buffer sizes (the system may refuse or cap them); returns the receive size granted. */
  setBufferSizes(bytes: number): number;
  close(): Promise<void>;
}

/** An armed timer, as returned by Clock.setTimeout. */
export type TimerHandle = object;

/** Monotonic time and scheduling. */
export interface Clock {
  /** Milliseconds on a monotonic clock (fractions allowed). */
  now(): number;
  /** The wall-clock date (certificate validity). */
  date(): Date;
  setTimeout(fn: () => void, ms: number): TimerHandle;
  clearTimeout(t: TimerHandle): void;
  /**
   * Runs `fn` at the end of this event-loop turn, after the datagrams and timers already due (Node's setImmediate):
   * the driver batches a turn's datagrams and sends once per turn.
   */
  setImmediate(fn: () => void): void;
}

/** Sockets and a clock: what UdpEndpoint (and through it HTTP/3 and the router) runs on. */
export interface IoRuntime {
  readonly clock: Clock;
  /** A new, unbound socket for IPv4 or IPv6 addresses (IPv6 sockets are IPv6-only). */
  createDatagramSocket(family: 'IPv4' | 'IPv6'): DatagramSocket;
}
