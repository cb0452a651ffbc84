/**
 * A QUIC endpoint: the connections behind one UDP socket (RFC 9000 §5.2). Routes datagrams by destination
 * connection ID, creates server connections for new clients once their first Initial has decrypted, answers unknown
 * versions with Version Negotiation (§6), and gathers the datagrams and timers of its connections. Sans-I/O like the
 * connection.
 *
 * No state is created, and nothing is taken from a packet, before it authenticates: a new connection's first Initial
 * is decrypted with the Initial keys of its DCID (RFC 9001 §5.2) first; one that does not decrypt is dropped and
 * counted (stats.undecryptableInitials), and the client's SCID comes from the packet that did.
 *
 * The endpoint owns the connection IDs (cid-issuer.ts): one issuer makes every ID its connections hand out, routes
 * them, and derives their stateless reset tokens from one static key (EndpointOptions.statelessResetKey).
 *
 * The work per turn follows the connections that have something to do, not the number open: `poll` visits only
 * connections that may have output (a datagram arrived for it, a timer fired, or the application called it:
 * Connection.onWake), and every other connection's next deadline sits in a heap, so `nextTimeout` is O(1) and
 * `handleTimeout` visits only the connections that are due (stats.connectionVisits counts the visits).
 *
 * A connection that enters its closing or draining period (RFC 9000 §10.2) leaves the endpoint at once: once its
 * CONNECTION_CLOSE datagram is built (closing) or the peer's arrived (draining), a ClosingRecord (closing-record.ts)
 * takes over its connection IDs, with that datagram, its deadline and nothing else, and the connection with its
 * streams, recovery, TLS and key state is the application's to drop. The record answers the peer (rate-limited) or
 * absorbs its datagrams until the period ends, then goes with its IDs.
 */
import { randomBytes } from 'node:crypto';
import { ownCopy } from '../util/buffers.js';
import { Connection } from './connection.js';
import type { Address, ConnectionConfig } from './connection-types.js';
import { QUIC_V1 } from './types.js';
import { PacketType, buildVersionNegotiation, openPayload, parseHeader, removeHeaderProtection, type PacketHeader } from './packet/header.js';
import { clientInitialKeys, type ClientInitialKeys } from './crypto/initial.js';
import { DeadlineHeap } from './deadline-heap.js';
import { ConnectionIdIssuer } from './cid-issuer.js';
import { ClosingRecord } from './closing-record.js';
import type { TraceFactory, TraceSink } from './trace.js';

export interface EndpointOptions {
  /** When set, the endpoint accepts new connections with this configuration. */
  server?: ConnectionConfig;
  /** Length of the connection IDs this endpoint issues (short headers are parsed with it). Default 8. */
  cidLength?: number;
  /**
   * The static key stateless reset tokens are derived from (HMAC-SHA256 of each connection ID, RFC 9000 §10.3.2):
   * endpoints given the same key give the same token for the same connection ID. At least 16 bytes; random by default.
   */
  statelessResetKey?: Buffer;
  /** Refuse new connections beyond this many at once. Default 10 000. */
  maxConnections?: number;
  /**
   * Gives each new connection (client or server) its trace sink, from its role and original destination connection
   * ID (a qlog writer names its file by them). Not called for a client connection whose config has its own trace.
   */
  trace?: TraceFactory;
}

export interface Transmit {
  data: Buffer;
  to: Address;
  conn: Connection | null;
}

const MIN_INITIAL = 1200;
const EMPTY_CID = Buffer.alloc(0);

/** Whether the short-header DCID at dgram[1..] equals cid (the caller checked the datagram is long enough). */
function sameCid(dgram: Buffer, cid: Buffer): boolean {
  const n = cid.length;
  if (n === 0) return false;
  for (let i = 0; i < n; i++) if (dgram[1 + i] !== cid[i]) return false;
  return true;
}

/**
 * Opens the first packet of a datagram as a client's Initial to `dcid` (on a copy: header protection comes off in
 * place). Returns the keys (the new connection reuses them) and the now authenticated SCID, or null when it does not
 * decrypt.
 */
function openFirstInitial(dgram: Buffer, dcid: Buffer, cidLength: number): { initial: ClientInitialKeys; scid: Buffer } | null {
  let h: PacketHeader;
  try {
    h = parseHeader(dgram, 0, cidLength);
  } catch {
    return null;
  }
  if (h.type !== PacketType.Initial || h.version !== QUIC_V1) return null;
  const initial = clientInitialKeys(dcid);
  const keys = initial.keys;
  const copy = Buffer.from(dgram.subarray(0, h.end));
  try {
    const un = removeHeaderProtection(copy, h, keys.hp, -1);
    if (openPayload(copy, h, un, keys.aead) === null) return null;
  } catch {
    return null; // too short for a header protection sample
  }
  return { initial, scid: ownCopy(h.scid) };
}

export class Endpoint {
  readonly connections = new Set<Connection>();
  /** Every connection ID of every connection, routed to it (or to its closing record), and their reset tokens. */
  readonly cids: ConnectionIdIssuer<Connection, ClosingRecord>;
  /** Connections in their closing or draining period, as records, by the end of the period. */
  private readonly closing = new DeadlineHeap<ClosingRecord>();
  private readonly accepted: Connection[] = [];
  private readonly stateless: Transmit[] = [];
  private readonly cidLength: number;
  /** Connections that may have output, polled round-robin; one polled dry leaves the set. */
  private readonly active = new Set<Connection>();
  /**
   * The next deadline of every connection that is not in `active` (those are rescheduled when polled dry, and may
   * have an older entry meanwhile: a timer that fires early is harmless).
   */
  private readonly timers = new DeadlineHeap<Connection>();
  private readonly onWake = (c: Connection): void => {
    if (this.connections.has(c)) this.active.add(c);
  };
  stats = {
    datagramsIn: 0,
    dropped: 0,
    versionNegotiation: 0,
    /** Would-be first Initials that did not decrypt with the Initial keys of their DCID: dropped, no state. */
    undecryptableInitials: 0,
    /** Connections polled, rescheduled or timed out: the endpoint's per-connection work outside received datagrams. */
    connectionVisits: 0,
    /** Datagrams to connections in their closing or draining period (closing records), and CONNECTION_CLOSEs sent back. */
    closingDatagrams: 0,
    closingReplies: 0,
  };

  constructor(readonly options: EndpointOptions = {}) {
    this.cidLength = options.cidLength ?? 8;
    this.cids = new ConnectionIdIssuer<Connection, ClosingRecord>(this.cidLength, options.statelessResetKey);
  }

  /** Connections in their closing or draining period (held as records, not as connections). */
  get closingCount(): number {
    return this.closing.size;
  }

  /** Starts a client connection. */
  connect(config: ConnectionConfig, remote: Address, now: number): Connection {
    let odcid: Buffer | undefined;
    let sink: TraceSink | undefined;
    if (this.options.trace && !config.trace) {
      odcid = randomBytes(Math.max(8, this.cidLength));
      sink = this.options.trace('client', odcid);
    }
    const c = Connection.connect({ ...config, cidLength: this.cidLength, ...(sink && { trace: sink }) }, remote, now, this.cids, odcid);
    if (sink) this.traceSinks.set(c, sink);
    this.add(c);
    return c;
  }

  private readonly traceSinks = new WeakMap<Connection, TraceSink>();

  /** The trace sink the factory gave a connection (the layers above log their events into the same trace). */
  traceSink(c: Connection): TraceSink | undefined {
    return this.traceSinks.get(c);
  }

  /** New server connections, in arrival order. */
  pollAccepted(): Connection | undefined {
    return this.accepted.shift();
  }

  /** Handles one datagram; returns the connection it went to (null when dropped or answered statelessly). */
  receive(dgram: Buffer, from: Address, now: number): Connection | null {
    this.stats.datagramsIn++;
    if (dgram.length < 1) return null;
    const first = dgram[0];
    let dcid: Buffer;
    if (first & 0x80) {
      if (dgram.length < 7) return this.drop();
      const version = dgram.readUInt32BE(1);
      const dl = dgram[5];
      if (dl > 255 || 6 + dl >= dgram.length) return this.drop();
      dcid = dgram.subarray(6, 6 + dl);
      const conn = this.cids.lookup(dcid);
      if (conn) return this.deliver(conn, dgram, from, now);
      const rec = this.cids.lookupParked(dcid);
      if (rec) return this.toClosing(rec, dgram);
      if (!this.options.server) return this.drop();
      const sl = dgram[6 + dl];
      if (7 + dl + sl > dgram.length) return this.drop();
      if (version !== QUIC_V1) {
        // Version Negotiation only in answer to datagrams big enough to be a client's first (RFC 9000 §6.1).
        if (version !== 0 && dgram.length >= MIN_INITIAL) {
          this.stats.versionNegotiation++;
          const scid = dgram.subarray(7 + dl, 7 + dl + sl);
          this.stateless.push({ data: buildVersionNegotiation(scid, dcid, [QUIC_V1]), to: from, conn: null });
        }
        return null;
      }
      // Only an Initial (type 0) of a full-size datagram with an 8+ byte DCID starts a connection (RFC 9000 §7.2, §14.1).
      if (((first & 0x30) >> 4) !== 0 || dgram.length < MIN_INITIAL || dl < 8 || dl > 20) return this.drop();
      if (this.connections.size >= (this.options.maxConnections ?? 10_000)) return this.drop();
      const opened = openFirstInitial(dgram, dcid, this.cidLength);
      if (opened === null) {
        this.stats.undecryptableInitials++;
        return this.drop();
      }
      const odcid = ownCopy(dcid);
      const sink = this.options.trace?.('server', odcid);
      const c = Connection.accept({ ...this.options.server, cidLength: this.cidLength, ...(sink && { trace: sink }) }, from, odcid, opened.scid, now, this.cids, opened.initial);
      if (sink) this.traceSinks.set(c, sink);
      this.add(c);
      this.cids.route(c, odcid);
      this.accepted.push(c);
      return this.deliver(c, dgram, from, now);
    }
    if (dgram.length < 1 + this.cidLength) return this.drop();
    // Most short-header datagrams belong to the connection of the one before: compare the bytes in place before
    // building a map key.
    const last = this.lastConn;
    if (last !== null && last.state !== 'closed' && sameCid(dgram, this.lastCid)) return this.deliver(last, dgram, from, now);
    dcid = dgram.subarray(1, 1 + this.cidLength);
    const conn = this.cids.lookup(dcid);
    if (!conn) {
      const rec = this.cids.lookupParked(dcid);
      return rec ? this.toClosing(rec, dgram) : this.drop(); // stateless reset is not sent yet
    }
    this.lastCid = Buffer.from(dcid);
    this.lastConn = conn;
    return this.deliver(conn, dgram, from, now);
  }

  /** The destination CID of the last routed short-header datagram and its connection. */
  private lastCid = EMPTY_CID;
  private lastConn: Connection | null = null;

  /**
   * Announces the datagrams that will be passed to receive() next, in that order, so that each connection can compute
   * the header protection masks of its short-header packets in one batch (Connection.premask).
   */
  premask(dgrams: readonly Buffer[]): void {
    if (dgrams.length < 2) return;
    let first: Connection | null = null;
    const firstList: Buffer[] = [];
    let others: Map<Connection, Buffer[]> | null = null;
    const min = 1 + this.cidLength + 4 + 16;
    for (const d of dgrams) {
      if (d.length < min || (d[0] & 0x80) !== 0) continue;
      let c: Connection | undefined;
      if (this.lastConn !== null && sameCid(d, this.lastCid)) c = this.lastConn;
      else c = this.cids.lookup(d.subarray(1, 1 + this.cidLength));
      if (c === undefined || c.state === 'closed') continue;
      if (first === null || first === c) {
        first = c;
        firstList.push(d);
      } else {
        others ??= new Map();
        let l = others.get(c);
        if (!l) others.set(c, (l = []));
        l.push(d);
      }
    }
    if (first !== null) first.premask(firstList);
    if (others !== null) for (const [c, l] of others) c.premask(l);
  }

  private drop(): null {
    this.stats.dropped++;
    return null;
  }

  private deliver(conn: Connection, dgram: Buffer, from: Address, now: number): Connection {
    conn.receive(dgram, from, now);
    if (conn.state === 'closed') this.forget(conn);
    else if (conn.state === 'draining') this.retire(conn, null, now);
    else this.active.add(conn);
    return conn;
  }

  /** A datagram for a connection in its closing or draining period: answered from its record, or absorbed. */
  private toClosing(rec: ClosingRecord, dgram: Buffer): null {
    this.stats.closingDatagrams++;
    const reply = rec.onDatagram(dgram.length);
    if (reply !== null) {
      this.stats.closingReplies++;
      this.stateless.push({ data: reply, to: rec.remote, conn: null });
    }
    return null;
  }

  /**
   * The connection entered its closing period (`close`: the CONNECTION_CLOSE datagram it just built) or its draining
   * period (null): a record takes over its connection IDs until the period ends, and the endpoint forgets the
   * connection (RFC 9000 §10.2: nothing else is needed).
   */
  private retire(c: Connection, close: Buffer | null, now: number): void {
    const deadline = c.nextTimeout() ?? now;
    const budget = close === null ? 0 : c.amplificationBudget;
    const rec = new ClosingRecord(c, [], c.remote, deadline, close === null ? null : ownCopy(close), budget);
    rec.keys.push(...this.cids.park(c, rec));
    this.forget(c);
    this.closing.set(rec, deadline);
  }

  private add(c: Connection): void {
    this.connections.add(c);
    c.onWake = this.onWake;
    this.active.add(c);
  }

  private forget(c: Connection): void {
    if (this.lastConn === c) {
      this.lastConn = null;
      this.lastCid = EMPTY_CID;
    }
    this.connections.delete(c);
    this.active.delete(c);
    this.timers.delete(c);
    c.onWake = null;
    this.cids.forget(c);
  }

  /** A connection left `active`: its deadline goes into the heap. */
  private reschedule(c: Connection): void {
    if (c.state === 'closed') return this.forget(c);
    this.stats.connectionVisits++;
    const d = c.nextTimeout();
    if (d === null) this.timers.delete(c);
    else this.timers.set(c, d);
  }

  /** The next datagram to send, or null. Call repeatedly until null. */
  poll(now: number): Transmit | null {
    const s = this.stateless.shift();
    if (s) return s;
    for (const c of this.active) {
      this.stats.connectionVisits++;
      this.touched.add(c);
      const data = c.poll(now);
      this.active.delete(c);
      if (data) {
        if (c.state === 'closed') this.forget(c);
        else if (c.state === 'closing' || c.state === 'draining') this.retire(c, c.state === 'closing' ? data : null, now);
        else this.active.add(c); // round robin: to the back of the queue
        return { data, to: c.remote, conn: c };
      }
      if (c.state === 'draining') {
        this.retire(c, null, now);
        continue;
      }
      this.reschedule(c);
    }
    return null;
  }

  /**
   * Connections polled or timed out since the driver last cleared this set: the only ones that can have new events
   * apart from those a datagram was delivered to (receive() returns those), so the driver need not scan them all.
   * The driver clears it after each pass (closed connections stay in it until then, so their last event is seen).
   */
  readonly touched = new Set<Connection>();

  /** Marks a connection as possibly having output (connections also do this themselves: Connection.onWake). */
  wake(c: Connection): void {
    if (this.connections.has(c)) this.active.add(c); // not one closed or handed to a closing record
  }

  /** The earliest timer deadline of any connection or closing record, or null. O(1). */
  nextTimeout(): number | null {
    if (this.timers.size === 0 && this.closing.size === 0) return null;
    return Math.min(this.timers.peekTime(), this.closing.peekTime());
  }

  /** Fires the timers that are due (only those connections are visited); they are polled next. */
  handleTimeout(now: number): void {
    for (let c = this.timers.peekItem(); c !== undefined && this.timers.peekTime() <= now; c = this.timers.peekItem()) {
      this.timers.delete(c);
      this.stats.connectionVisits++;
      c.handleTimeout(now);
      this.touched.add(c);
      if (c.state === 'closed') this.forget(c);
      else this.active.add(c);
    }
    for (let r = this.closing.peekItem(); r !== undefined && this.closing.peekTime() <= now; r = this.closing.peekItem()) {
      this.closing.delete(r);
      this.cids.unpark(r.keys, r);
      r.expire(now);
    }
  }
}
