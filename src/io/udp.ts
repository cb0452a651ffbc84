/**
 * The I/O driver: datagram sockets and timers around the sans-I/O QUIC endpoint. It turns connection events into a
 * Node-style API: QuicConnection (an EventEmitter) and QuicStream (a Duplex with backpressure from QUIC flow
 * control). Sockets and the clock come from an IoRuntime (runtime.ts): node:dgram and real timers by default
 * (node-runtime.ts), a simulated network and a fake clock in tests.
 */
import { EventEmitter } from 'node:events';
import { isIPv6 } from 'node:net';
import { Endpoint, type EndpointOptions } from '../quic/endpoint.js';
import type { Connection } from '../quic/connection.js';
import type { Address, CloseInfo, ConnectionConfig } from '../quic/connection-types.js';
import type { TraceSink } from '../quic/trace.js';
import { describeHandshakeFailure } from '../quic/handshake-failure.js';
import { QuicStream } from './stream.js';
import type { Clock, DatagramSocket, IoRuntime, TimerHandle } from './runtime.js';
import { nodeRuntime } from './node-runtime.js';

export { QuicStream };

/** Datagrams sent per event-loop turn before yielding to receive. */
const SEND_BATCH = 64;
const SOCKET_BUFFER = 8 * 1024 * 1024;

export interface UdpEndpointOptions extends EndpointOptions {
  /** Addresses to bind (one socket each). Default: 127.0.0.1 port 0 (a client). */
  bind?: Address[];
  /** Requested kernel socket buffer sizes; the kernel may cap them (net.core.rmem_max). */
  socketBufferSize?: number;
  /** Sockets and clock (default: node:dgram and real timers). */
  runtime?: IoRuntime;
  /**
   * A client endpoint for one server: its socket is connected to this address when the runtime can (a connected
   * UDP socket costs the kernel less per datagram; datagrams from any other address are no longer received).
   */
  connectTo?: Address;
}

export class UdpEndpoint extends EventEmitter {
  readonly endpoint: Endpoint;
  readonly runtime: IoRuntime;
  readonly clock: Clock;
  private readonly sockets: DatagramSocket[] = [];
  /** Per socket: true for IPv6 (cached: Socket.address() is costly on the send path). */
  private readonly socketIsV6: boolean[] = [];
  private readonly handles = new Map<Connection, QuicConnection>();
  private timer: TimerHandle | null = null;
  private timerAt = Infinity;
  private flushScheduled = false;
  private closed = false;
  /** Effective receive buffer sizes per socket (what the kernel granted). */
  readonly recvBufferSizes: number[] = [];

  private constructor(opts: UdpEndpointOptions) {
    super();
    this.endpoint = new Endpoint(opts);
    this.runtime = opts.runtime ?? nodeRuntime;
    this.clock = this.runtime.clock;
  }

  /** Binds the sockets and starts processing. */
  static async open(opts: UdpEndpointOptions = {}): Promise<UdpEndpoint> {
    const ep = new UdpEndpoint(opts);
    const addrs = opts.bind ?? [{ address: '127.0.0.1', port: 0 }];
    for (const a of addrs) {
      const sock = ep.runtime.createDatagramSocket(isIPv6(a.address) ? 'IPv6' : 'IPv4');
      await sock.bind(a.port, a.address);
      ep.recvBufferSizes.push(sock.setBufferSizes(opts.socketBufferSize ?? SOCKET_BUFFER));
      if (opts.connectTo && sock.connect && isIPv6(opts.connectTo.address) === isIPv6(a.address)) await sock.connect(opts.connectTo.port, opts.connectTo.address);
      sock.onMessage((msg, rinfo) => ep.onMessage(msg, rinfo));
      // Socket errors (e.g. ICMP-triggered ones) must not crash the process: report them to listeners only.
      sock.onError((err) => {
        if (ep.listenerCount('error')) ep.emit('error', err);
      });
      ep.sockets.push(sock);
      ep.socketIsV6.push(sock.address().family === 'IPv6');
    }
    return ep;
  }

  /** The bound addresses. */
  addresses(): Address[] {
    return this.sockets.map((s) => {
      const a = s.address();
      return { address: a.address, port: a.port };
    });
  }

  address(): Address {
    return this.addresses()[0];
  }

  /** Opens a client connection; await `conn.ready` for the handshake. */
  connect(config: ConnectionConfig, remote: Address): QuicConnection {
    const c = this.endpoint.connect({ certificateTime: this.clock.date(), ...config }, remote, this.clock.now());
    const h = new QuicConnection(this, c);
    this.handles.set(c, h);
    this.scheduleFlush();
    return h;
  }

  /** Closes every connection (application close with `code`) and, once they are gone or after `timeoutMs`, the sockets. */
  async close(code = 0, reason = 'endpoint closing', timeoutMs = 2000): Promise<void> {
    if (this.closed) return;
    for (const h of this.handles.values()) h.close(code, reason);
    const clock = this.clock;
    const deadline = clock.now() + timeoutMs;
    // Until every connection has ended its closing or draining period (handles go as soon as they heard the close).
    while ((this.endpoint.connections.size || this.endpoint.closingCount) && clock.now() < deadline) await new Promise<void>((r) => clock.setTimeout(r, 10));
    this.closed = true;
    if (this.timer) clock.clearTimeout(this.timer);
    for (const h of this.handles.values()) h.destroyAll(new Error('endpoint closed'));
    this.handles.clear();
    await Promise.all(this.sockets.map((s) => s.close()));
  }

  /**
   * Datagrams are queued as they arrive and processed together once per event-loop turn (libuv reads up to 32 per
   * turn): the connection computes their header protection masks in one cipher call, and the application then reads
   * larger contiguous chunks, so the per-datagram cost stays in the protocol core.
   */
  private onMessage(msg: Buffer, from: Address): void {
    if (this.closed) return;
    this.rxData.push(msg);
    this.rxFrom.push(from);
    this.scheduleFlush();
  }

  private rxData: Buffer[] = [];
  private rxFrom: Address[] = [];

  /** Feeds the queued datagrams to the endpoint; false when there were none. */
  private processReceived(): boolean {
    const data = this.rxData;
    const from = this.rxFrom;
    const n = data.length;
    if (n === 0) return false;
    this.rxData = [];
    this.rxFrom = [];
    const t = this.clock.now();
    this.endpoint.premask(data);
    for (let i = 0; i < n; i++) {
      const c = this.endpoint.receive(data[i], from[i], t);
      if (c) this.pendingDispatch.add(c);
    }
    for (let a = this.endpoint.pollAccepted(); a; a = this.endpoint.pollAccepted()) {
      const h = new QuicConnection(this, a);
      this.handles.set(a, h);
      this.emit('connection', h);
    }
    return true;
  }

  private readonly pendingDispatch = new Set<Connection>();

  /** Delivers a connection's events to its handle. */
  private dispatch(c: Connection): void {
    const h = this.handles.get(c);
    if (!h) return;
    h.processEvents();
    // A handle that delivered the close has nothing more to deliver: dropping it now lets the application's objects
    // (streams, the HTTP/3 session) go while the connection itself lingers through closing or draining (3 PTOs,
    // seconds when the handshake's RTT samples were slow), holding only what it needs for that.
    if (c.state === 'closed' || h.closeInfo !== null) this.handles.delete(c);
  }

  /** Called by handles after the application wrote, read or closed. */
  wake(c: Connection): void {
    this.endpoint.wake(c);
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    this.clock.setImmediate(() => this.flush());
  }

  private flush(): void {
    this.flushScheduled = false;
    if (this.closed) return;
    const received = this.processReceived();
    if (received) {
      // ACK this batch now, before the application's work of this turn (events to HTTP/3 and the router, upstream
      // writes): the peer's RTT then holds our decryption only. Other frames wait for the poll below.
      const t = this.clock.now();
      for (const c of this.pendingDispatch) {
        const ack = c.pollAckOnly(t);
        if (ack) this.sendDatagram(ack, c.remote);
      }
      for (const c of this.pendingDispatch) this.dispatch(c);
      this.pendingDispatch.clear();
    }
    const t = this.clock.now();
    let n = 0;
    for (let tx = this.endpoint.poll(t); tx; tx = this.endpoint.poll(t)) {
      this.sendDatagram(tx.data, tx.to);
      if (++n >= SEND_BATCH) {
        // Let received datagrams (ACKs) in before sending more.
        this.scheduleFlush();
        break;
      }
    }
    // Events can arise while building packets (e.g. replayed packets) and on timers (idle timeout, draining done):
    // only connections the endpoint polled or timed out can have them.
    const touched = this.endpoint.touched;
    for (const c of touched) if (c.state === 'closed' || c.hasEvents()) this.dispatch(c);
    touched.clear();
    this.armTimer();
  }

  private sendDatagram(data: Buffer, to: Address): void {
    let sock = this.sockets[0];
    if (this.sockets.length > 1) {
      const i = this.socketIsV6.indexOf(to.address.includes(':'));
      if (i >= 0) sock = this.sockets[i];
    }
    sock.send(data, to.port, to.address);
  }

  private armTimer(): void {
    const at = this.endpoint.nextTimeout();
    if (at === null) {
      if (this.timer) this.clock.clearTimeout(this.timer);
      this.timer = null;
      this.timerAt = Infinity;
      return;
    }
    // A timer that fires early is harmless (nothing is due yet; it is re-armed then), so a later deadline keeps the
    // armed timer: re-arming on every event-loop turn costs more than the occasional early wake-up.
    if (this.timer && at >= this.timerAt - 0.5) return;
    if (this.timer) this.clock.clearTimeout(this.timer);
    this.timerAt = at;
    this.timer = this.clock.setTimeout(() => this.onTimer(), Math.max(0, at - this.clock.now()));
  }

  private onTimer(): void {
    this.timer = null;
    this.timerAt = Infinity;
    if (this.closed) return;
    this.endpoint.handleTimeout(this.clock.now());
    this.flush();
  }
}

/**
 * What a QuicConnection hands a stream's events to: a QuicStream, or a lighter handler that reads and writes the
 * sans-I/O connection itself (src/h3/lean-request.ts: a load generator's requests without a Duplex each).
 */
export interface StreamEventSink {
  pump(): void;
  onDrain(): void;
  onPeerReset(code: number): void;
  onStopSending(code: number): void;
  onConnectionClosed(err: Error | null): void;
}

/**
 * A QUIC connection with a Node-style API. Events: 'ready', 'stream' (QuicStream), 'keyupdate', 'close' (CloseInfo),
 * 'streamsAvailable' (the peer raised its stream limit: a stream opened with conn.openStream may succeed again).
 */
export class QuicConnection extends EventEmitter {
  readonly ready: Promise<void>;
  private readonly streams = new Map<number, StreamEventSink>();
  private resolveReady!: () => void;
  private rejectReady!: (e: Error) => void;
  private waitingForStreams: { bidi: boolean; resolve: (s: QuicStream) => void; reject: (e: Error) => void }[] = [];
  closeInfo: CloseInfo | null = null;
  /** True from the handshake's completion on ('ready' emitted, `ready` resolved). */
  established = false;
  /** This connection's trace sink (UdpEndpointOptions.trace), shared with the HTTP/3 layer; undefined: not traced. */
  readonly trace: TraceSink | undefined;

  constructor(
    private readonly owner: UdpEndpoint,
    readonly conn: Connection,
  ) {
    super();
    this.trace = owner.endpoint.traceSink(conn);
    this.ready = new Promise((res, rej) => {
      this.resolveReady = res;
      this.rejectReady = rej;
    });
    // Avoid unhandled rejections for users who only listen to 'close'.
    this.ready.catch(() => {});
  }

  get remoteAddress(): Address {
    return this.conn.remote;
  }

  /** The driver's clock, the one the QUIC core runs on: the layers above stamp the events they add to `trace` with it. */
  now(): number {
    return this.owner.clock.now();
  }

  get alpn(): string | null {
    return this.conn.alpn;
  }

  /** Opens a stream, waiting for stream credit (MAX_STREAMS) when the peer's limit is reached. */
  async openStream(bidi = true): Promise<QuicStream> {
    await this.ready;
    const id = this.conn.openStream(bidi);
    if (id !== null) {
      this.owner.wake(this.conn);
      return this.attach(id);
    }
    this.owner.wake(this.conn); // STREAMS_BLOCKED
    return new Promise((resolve, reject) => this.waitingForStreams.push({ bidi, resolve, reject }));
  }

  /** Opens a stream now or returns null when the peer's stream limit is reached. */
  tryOpenStream(bidi = true): QuicStream | null {
    const id = this.conn.openStream(bidi);
    if (id === null) return null;
    this.owner.wake(this.conn);
    return this.attach(id);
  }

  /**
   * Sends the events of stream `id` (just opened with conn.openStream) to `sink` instead of a QuicStream: the sink
   * reads and writes `conn` directly and calls wake() after. It stays registered until releaseSinkStream(id).
   */
  attachSink(id: number, sink: StreamEventSink): void {
    this.streams.set(id, sink);
  }

  releaseSinkStream(id: number): void {
    this.streams.delete(id);
  }

  close(code = 0, reason = ''): void {
    this.conn.close(code, reason, true, this.owner.clock.now());
    this.owner.wake(this.conn);
  }

  /** Starts a TLS key update (RFC 9001 §6); false when not possible yet. */
  keyUpdate(): boolean {
    const ok = this.conn.initiateKeyUpdate();
    if (ok) this.owner.wake(this.conn);
    return ok;
  }

  /** Called by streams after reads/writes. */
  wake(): void {
    this.owner.wake(this.conn);
  }

  private attach(id: number): QuicStream {
    const s = new QuicStream(this, id);
    this.streams.set(id, s);
    s.once('close', () => this.streams.delete(id));
    return s;
  }

  processEvents(): void {
    for (let e = this.conn.pollEvent(); e; e = this.conn.pollEvent()) {
      switch (e.type) {
        case 'handshake_complete':
          this.established = true;
          this.resolveReady();
          this.emit('ready', e);
          break;
        case 'handshake_confirmed':
          this.emit('confirmed');
          break;
        case 'stream_open': {
          const s = this.attach(e.id);
          this.emit('stream', s);
          s.pump();
          break;
        }
        case 'stream_readable':
          this.streams.get(e.id)?.pump();
          break;
        case 'stream_drain':
          this.streams.get(e.id)?.onDrain();
          break;
        case 'stream_reset':
          this.streams.get(e.id)?.onPeerReset(e.code);
          break;
        case 'stop_sending':
          this.streams.get(e.id)?.onStopSending(e.code);
          break;
        case 'streams_available':
          this.retryOpen();
          this.emit('streamsAvailable');
          break;
        case 'key_update':
          this.emit('keyupdate', e);
          break;
        case 'closed':
          this.closeInfo = e.info;
          // An Error (and its stack) only for someone to receive it: `ready` settled long ago on an established
          // connection, and one without streams has nobody to tell.
          if (!this.established) this.rejectReady(new HandshakeError(e.info, formatAddress(this.conn.remote)));
          // Streams still open when we closed the connection ourselves end without an error; otherwise they fail.
          if (this.streams.size > 0 || this.waitingForStreams.length > 0)
            this.destroyAll(e.info.by === 'local' && e.info.application ? null : withoutStack(() => new Error(`connection closed: ${describeClose(e.info)}`)));
          this.emit('close', e.info);
          break;
      }
    }
  }

  private retryOpen(): void {
    const waiting = this.waitingForStreams;
    this.waitingForStreams = [];
    for (const w of waiting) {
      const id = this.conn.openStream(w.bidi);
      if (id === null) this.waitingForStreams.push(w);
      else w.resolve(this.attach(id));
    }
    this.owner.wake(this.conn);
  }

  destroyAll(err: Error | null): void {
    for (const s of this.streams.values()) s.onConnectionClosed(err);
    for (const w of this.waitingForStreams) w.reject(err ?? new Error('connection closed'));
    this.waitingForStreams = [];
  }
}

/**
 * `make()`'s Error without a captured stack: for errors that report an event (a connection's close), whose stack
 * would only show the driver's dispatch. Node's stream destroy() reads `err.stack`, and formatting a captured stack
 * cost tens of µs per closed connection.
 */
export function withoutStack<T extends Error>(make: () => T): T {
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    return make();
  } finally {
    Error.stackTraceLimit = limit;
  }
}

/** A client connection closed before its handshake completed; the message says why (describeHandshakeFailure). */
export class HandshakeError extends Error {
  constructor(
    readonly closeInfo: CloseInfo,
    /** The server's address as "host:port" ("[::1]:4433" for IPv6). */
    readonly server: string,
  ) {
    super(describeHandshakeFailure(closeInfo, server));
    this.name = 'HandshakeError';
  }
}

/** "127.0.0.1:4433", "[::1]:4433". */
export function formatAddress(a: Address): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

export function describeClose(i: CloseInfo): string {
  const who = i.by === 'idle' ? 'idle timeout' : i.by === 'peer' ? 'closed by peer' : 'closed locally';
  return `${who}, ${i.application ? 'application' : 'transport'} code 0x${i.code.toString(16)}${i.reason ? ` (${i.reason})` : ''}`;
}
