/**
 * One QUIC v1 connection (RFC 9000), sans-I/O: datagrams and `now` in; datagrams, events and a timer deadline out.
 * This file receives and dispatches, glues TLS to the packet number spaces and closes; each other concern is a
 * module under connection/ (streams, retransmits, cids, key-update, pmtu, framer, frame-writer, packet-builder,
 * datagram-assembler, ack-handler, loss-handler, idle, address-validation, header-masks, params, timers, space),
 * given its collaborators in its constructor.
 *
 * - Packet protection and key update: RFC 9001 §5, §6 (crypto/keys.ts, packet/header.ts, connection/key-update.ts)
 * - Handshake over CRYPTO frames, key installation and discard: RFC 9001 §4 (tls/tls.ts)
 * - Streams and flow control: RFC 9000 §2–§4 (connection/streams.ts, stream/*)
 * - ACKs, loss detection, PTO, congestion control and pacing: RFC 9002 (recovery/*, connection/ack-handler.ts,
 *   connection/loss-handler.ts); datagram assembly and padding: RFC 9000 §12.2, §14 (connection/datagram-assembler.ts)
 * - Connection IDs (connection/cids.ts, issued by the endpoint's cid-issuer.ts), path validation responses,
 *   closing/draining, idle timeout (connection/idle.ts): RFC 9000 §5, §8.2, §10
 * - Anti-amplification before address validation: RFC 9000 §8.1 (connection/address-validation.ts)
 */
import { randomBytes } from 'node:crypto';
import { Level, QUIC_V1, type Role } from './types.js';
import { TransportError, TransportErrorCode as E, TlsError, TlsAlert } from './errors.js';
import type { Address, CloseInfo, ConnectionConfig, ConnectionEvent, ConnectionState, ConnectionStats } from './connection-types.js';
import { TlsEndpoint, type TlsSecret } from './tls/tls.js';
import { initialSecrets, serverInitialKeys, type ClientInitialKeys } from './crypto/initial.js';
import { deriveKeys } from './crypto/keys.js';
import { TLS_AES_128_GCM_SHA256 } from './crypto/suites.js';
import { verifyRetryIntegrity } from './crypto/retry.js';
import {
  PacketType,
  parseHeader,
  parseShortHeaderInto,
  removeHeaderProtection,
  type PacketHeader,
  type UnprotectedHeader,
} from './packet/header.js';
import { FrameScratch, parseFrames, isAckEliciting, type Frame } from './frame/frames.js';
import { encodeTransportParameters, decodeTransportParameters, type TransportParameters } from './transport-params.js';
import { ACTIVE_CONNECTION_ID_LIMIT, MAX_DATAGRAM_LIMIT, authenticateConnectionIds, localTransportParameters } from './connection/params.js';
import { RttEstimator } from './recovery/rtt.js';
import { LossDetector } from './recovery/loss.js';
import type { CongestionController } from './recovery/congestion.js';
import { newReno } from './recovery/new-reno.js';
import { Pacer } from './recovery/pacer.js';
import { DecodeError } from '../util/varint.js';
import { ownCopy } from '../util/buffers.js';
import { Streams } from './connection/streams.js';
import { ConnectionIds } from './connection/cids.js';
import { KeyUpdate } from './connection/key-update.js';
import { PathMtu } from './connection/pmtu.js';
import { Timer, TimerTable } from './connection/timers.js';
import { Framer } from './connection/framer.js';
import { CRYPTO_BUFFER_LIMIT, LEVEL_KIND, levelOfType, makeSpace, type Space } from './connection/space.js';
import { Retransmits, type SentPacketContents } from './connection/retransmits.js';
import { DatagramAssembler, MIN_INITIAL_DATAGRAM } from './connection/datagram-assembler.js';
import { AckHandler } from './connection/ack-handler.js';
import { LossHandler } from './connection/loss-handler.js';
import { IdleTimer } from './connection/idle.js';
import { AddressValidation } from './connection/address-validation.js';
import { HeaderMaskBatch } from './connection/header-masks.js';
import type { ConnectionIdIssuer } from './cid-issuer.js';
import { ConnectionTracer } from './tracer.js';
import type { QlogDropTrigger } from './trace.js';

/** Packets that arrive before their keys (reordered across the handshake) are kept this many at most. */
const MAX_UNDECRYPTABLE = 16;
const LOOPBACK_MAX_DATAGRAM = 16384;
const DEFAULT_CLIENT_HANDSHAKE_TIMEOUT = 10_000;

/**
 * Reused by every connection's receive path (it is never re-entered: frames are handled before the next packet is
 * parsed, and packets buffered for later keys are replayed from poll()): the header of a datagram that is one
 * short-header packet, the unprotected header fields, and the frames of a packet (FrameScratch; `busy` guards it).
 */
const EMPTY = Buffer.alloc(0);
const shortHeader: PacketHeader = { type: PacketType.OneRtt, version: QUIC_V1, dcid: EMPTY, scid: EMPTY, token: EMPTY, start: 0, pnOffset: 0, end: 0 };
const unprotected: UnprotectedHeader = { pn: 0, pnLength: 0, keyPhase: 0, headerEnd: 0, firstByte: 0 };
const frameScratch = new FrameScratch();

interface BufferedPacket {
  dgram: Buffer;
  h: PacketHeader;
  datagram: number;
}

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

/** Bytes a connection sends (handshake included) before it starts path MTU discovery. */
const PMTU_PROBE_AFTER_BYTES = 32 * 1024;

export class Connection {
  readonly role: Role;
  state: ConnectionState = 'handshake';
  remote: Address;
  /** Our connection IDs by sequence number. */
  get localCids(): Map<number, Buffer> {
    return this.cids.local;
  }

  /** The connection ID the client first sent to (server: used for routing until the client switches). */
  readonly originalDcid: Buffer;
  closeInfo: CloseInfo | null = null;

  private readonly cfg: Required<
    Pick<
      ConnectionConfig,
      'maxIdleTimeout' | 'maxDatagramSize' | 'cidLength' | 'maxAckDelay' | 'pacing' | 'maxStreamReceiveWindow' | 'maxConnectionReceiveWindow'
    >
  > &
    ConnectionConfig;
  private readonly tls: TlsEndpoint;
  private readonly spaces: Space[];
  private readonly localParams: TransportParameters;
  private peerParams: TransportParameters | null = null;
  private readonly events: ConnectionEvent[] = [];

  // connection IDs
  private readonly cids: ConnectionIds;

  // recovery
  private readonly rtt = new RttEstimator();
  private readonly cc: CongestionController;
  private readonly loss: LossDetector<SentPacketContents>;
  private readonly pacer: Pacer;
  private readonly acks: AckHandler;
  private readonly losses: LossHandler;

  // streams, flow control, and the control frames waiting to be sent
  private readonly pending = new Retransmits();
  private readonly streams: Streams;

  // handshake, keys and timers
  private readonly keyUpdate: KeyUpdate;
  private handshakeDone = false;
  private handshakeConfirmed = false;
  private readonly address: AddressValidation;
  private readonly idle: IdleTimer;
  private pendingClose: Frame | null = null;
  private sendCloseNow = false;
  /** `datagram`: the number of the datagram it came in (stats.datagramsReceived - 1 then), for the trace. */
  private undecryptable: BufferedPacket[] = [];
  /** Client: the server's source CID seen in its first packet, which becomes our DCID. */
  private serverCidLearned = false;
  readonly stats: ConnectionStats = { packetsSent: 0, packetsReceived: 0, packetsLost: 0, bytesSent: 0, bytesReceived: 0, undecryptable: 0, datagramsReceived: 0 };
  /** Every deadline of the connection, by name (connection/timers.ts). */
  private readonly timers = new TimerTable();
  /** Builds and emits trace events; null (and nothing built) unless ConnectionConfig.trace is set. */
  private readonly trace: ConnectionTracer | null;

  private constructor(
    role: Role,
    config: ConnectionConfig,
    remote: Address,
    originalDcid: Buffer,
    cidIssuer: ConnectionIdIssuer<Connection>,
    now: number,
    /** Server: the client's Initial keys and initial_secret, from the endpoint that opened the first Initial. */
    clientInitial?: ClientInitialKeys,
  ) {
    this.role = role;
    this.cfg = {
      maxIdleTimeout: 30_000,
      // Loopback paths carry 64 KiB datagrams; elsewhere assume a 1500-byte Ethernet MTU.
      maxDatagramSize: isLoopback(remote.address) ? LOOPBACK_MAX_DATAGRAM : 1452,
      cidLength: cidIssuer.cidLength,
      maxAckDelay: 25,
      pacing: true,
      maxStreamReceiveWindow: 16 * 1024 * 1024,
      maxConnectionReceiveWindow: 32 * 1024 * 1024,
      ...config,
    };
    if (this.cfg.maxDatagramSize < MIN_INITIAL_DATAGRAM || this.cfg.maxDatagramSize > MAX_DATAGRAM_LIMIT)
      throw new RangeError(`maxDatagramSize must be between 1200 and ${MAX_DATAGRAM_LIMIT}`);
    this.remote = remote;
    this.originalDcid = originalDcid;
    const handshakeTimeout = config.handshakeTimeout ?? (role === 'client' ? DEFAULT_CLIENT_HANDSHAKE_TIMEOUT : 0);
    if (handshakeTimeout > 0) this.timers.set(Timer.handshake, now + handshakeTimeout);
    this.address = new AddressValidation(role === 'client');
    this.cc = (config.congestionControl ?? newReno)(MIN_INITIAL_DATAGRAM, this.rtt);
    this.pacer = new Pacer(MIN_INITIAL_DATAGRAM);
    this.pmtu = new PathMtu(MIN_INITIAL_DATAGRAM, this.cc, this.pacer);
    this.loss = new LossDetector<SentPacketContents>(this.rtt, this.cc, {
      maxAckDelay: () => this.peerParams?.maxAckDelay ?? 25,
      isServer: role === 'server',
    });
    // Our first connection ID (sequence 0) comes from the endpoint's issuer; a client sends to the original DCID.
    this.cids = new ConnectionIds(cidIssuer.sourceFor(this), originalDcid, ACTIVE_CONNECTION_ID_LIMIT, this.pending);
    const localCid = this.cids.scid;
    const p = localTransportParameters(this.cfg, role, localCid, originalDcid, this.cids.resetToken(localCid));
    this.localParams = p;
    this.idle = new IdleTimer(now, p.maxIdleTimeout);
    // Tracing (ConnectionConfig.trace): nothing is built, and no module gets a callback, when it is off.
    const trace = config.trace
      ? new ConnectionTracer(config.trace, role, {
          rtt: this.rtt,
          cc: this.cc,
          largestAcked: (space) => this.loss.largestAcked(space),
          ptoCount: () => this.loss.ptoCount,
          pacing: this.cfg.pacing,
          ackDelayUnitUs: 2 ** p.ackDelayExponent,
        })
      : null;
    this.trace = trace;
    this.streams = new Streams(
      {
        role,
        local: p,
        maxStreamReceiveWindow: this.cfg.maxStreamReceiveWindow,
        maxConnectionReceiveWindow: this.cfg.maxConnectionReceiveWindow,
        onStreamState: trace ? (id, side, state, old) => trace.streamState(id, side, state, old, this.lastNow) : undefined,
      },
      this.events,
      this.pending,
      this.rtt,
    );

    const spaces = [makeSpace(Level.Initial, this.cfg.maxAckDelay), makeSpace(Level.Handshake, this.cfg.maxAckDelay), makeSpace(Level.OneRtt, this.cfg.maxAckDelay)];
    this.spaces = spaces;
    this.keyUpdate = new KeyUpdate(
      spaces[Level.OneRtt],
      this.events,
      this.timers,
      trace ? (generation, by) => trace.keysRotated(generation, by, this.lastNow) : null,
    );
    this.losses = new LossHandler(role, spaces, this.loss, this.pending, this.streams, this.cids, this.pmtu, this.stats, trace);
    this.acks = new AckHandler(spaces, this.loss, this.losses, this.streams, this.keyUpdate, this.pmtu, trace);
    this.assembler = new DatagramAssembler(
      { role, pacing: this.cfg.pacing, onePacketPerDatagram: !!this.cfg.onePacketPerDatagram },
      {
        spaces,
        cids: this.cids,
        keyUpdate: this.keyUpdate,
        framer: new Framer(role, p.ackDelayExponent, this.pending, this.streams, this.cids),
        pending: this.pending,
        loss: this.loss,
        losses: this.losses,
        cc: this.cc,
        pacer: this.pacer,
        rtt: this.rtt,
        pmtu: this.pmtu,
        timers: this.timers,
        address: this.address,
        idle: this.idle,
        stats: this.stats,
        trace,
        discardInitial: () => this.discardSpace(Level.Initial),
      },
    );
    const init = spaces[Level.Initial];
    if (clientInitial !== undefined) {
      // The endpoint derived initial_secret and the client's keys to open the first Initial: only our side is left.
      init.read = clientInitial.keys;
      init.write = serverInitialKeys(clientInitial.initial);
    } else {
      const secrets = initialSecrets(originalDcid);
      const mine = role === 'client' ? secrets.client : secrets.server;
      const theirs = role === 'client' ? secrets.server : secrets.client;
      init.write = deriveKeys(TLS_AES_128_GCM_SHA256, mine);
      init.read = deriveKeys(TLS_AES_128_GCM_SHA256, theirs);
    }

    try {
      this.tls = this.makeTls(role, config, p);
    } catch (err) {
      cidIssuer.forget(this); // the connection never existed: its connection IDs must not route
      throw err;
    }
  }

  private makeTls(role: Role, config: ConnectionConfig, p: TransportParameters): TlsEndpoint {
    return new TlsEndpoint({
      role,
      alpn: config.alpn,
      serverName: config.serverName,
      certChain: config.certChain,
      privateKey: config.privateKey,
      ca: config.ca,
      insecure: config.insecure,
      now: config.certificateTime,
      cipherSuites: config.cipherSuites,
      groups: config.groups,
      keyLog: config.keyLog,
      transportParameters: encodeTransportParameters(p),
    });
  }

  /**
   * A client connection to `remote`, its connection IDs from `cidIssuer` (the endpoint's); call `poll(now)` to get
   * the first datagram. `odcid`: default random.
   */
  static connect(config: ConnectionConfig, remote: Address, now: number, cidIssuer: ConnectionIdIssuer<Connection>, odcid?: Buffer): Connection {
    odcid ??= randomBytes(Math.max(8, cidIssuer.cidLength));
    const c = new Connection('client', config, remote, odcid, cidIssuer, now);
    if (c.trace) c.trace.start(now, remote, c.scid, c.dcid, c.localParams);
    try {
      c.tls.start();
      c.drainTls();
    } catch (err) {
      cidIssuer.forget(c);
      throw err;
    }
    return c;
  }

  /**
   * A server connection for a client's first Initial packet. The endpoint checked version and size and that the packet
   * decrypts with `clientInitialKeys` (derived from clientDcid; its keys and initial_secret are reused here), so
   * clientScid is authenticated.
   */
  static accept(
    config: ConnectionConfig,
    remote: Address,
    clientDcid: Buffer,
    clientScid: Buffer,
    now: number,
    cidIssuer: ConnectionIdIssuer<Connection>,
    clientInitial?: ClientInitialKeys,
  ): Connection {
    const c = new Connection('server', config, remote, clientDcid, cidIssuer, now, clientInitial);
    c.cids.setPeerInitial(clientScid);
    c.serverCidLearned = true;
    if (c.trace) c.trace.start(now, remote, c.scid, c.dcid, c.localParams);
    return c;
  }

  // ---------------------------------------------------------------- public API for the layer above

  get alpn(): string | null {
    return this.tls.alpn;
  }

  get isHandshakeComplete(): boolean {
    return this.handshakeDone;
  }

  get peerTransportParameters(): TransportParameters | null {
    return this.peerParams;
  }

  get cipherSuite(): string | null {
    return this.tls.cipherSuite?.name ?? null;
  }

  get serverName(): string | null {
    return this.tls.serverName;
  }

  get currentKeyGeneration(): number {
    return this.keyUpdate.generation;
  }

  get rttStats(): { smoothed: number; min: number; latest: number } {
    return { smoothed: this.rtt.smoothed, min: this.rtt.min, latest: this.rtt.latest };
  }

  get congestionWindow(): number {
    return this.cc.cwnd;
  }

  /** Bytes it may still send to the peer's address before validation (RFC 9000 §8.1); Infinity once validated. */
  get amplificationBudget(): number {
    return this.address.budget();
  }

  pollEvent(): ConnectionEvent | undefined {
    return this.events.shift();
  }

  /**
   * Set by the endpoint that owns this connection: called by every API call below that may give the connection
   * something to send (a stream opened, written, read (credit), reset or stopped, close, key update, ping), so that
   * the endpoint polls only connections with work to do.
   */
  onWake: ((c: Connection) => void) | null = null;

  hasEvents(): boolean {
    return this.events.length > 0;
  }

  /** Opens a local stream; null when the peer's MAX_STREAMS does not allow one yet (STREAMS_BLOCKED is sent). */
  openStream(bidi: boolean): number | null {
    if (this.state !== 'established' && this.state !== 'handshake') throw new Error('connection is closed');
    this.onWake?.(this);
    return this.streams.open(bidi);
  }

  /** Queues data on a stream (no copy: do not mutate `data` afterwards). Returns the bytes now buffered on it. */
  streamWrite(id: number, data: Buffer, fin = false): number {
    const buffered = this.streams.write(id, data, fin);
    this.onWake?.(this);
    return buffered;
  }

  streamEnd(id: number): void {
    this.streamWrite(id, Buffer.alloc(0), true);
  }

  /** The receive windows credit updates currently extend by (they auto-tune): the connection's, and a stream's. */
  get connectionReceiveWindow(): number {
    return this.streams.connTuner.value;
  }

  streamReceiveWindow(id: number): number | null {
    return this.streams.map.get(id)?.recv?.window ?? null;
  }

  streamBufferedBytes(id: number): number {
    return this.streams.map.get(id)?.send?.bufferedBytes ?? 0;
  }

  /** DATA_BLOCKED / STREAM_DATA_BLOCKED / STREAMS_BLOCKED frames sent (RFC 9000 §4.1, §4.6): for logs and tests. */
  get blockedFramesSent(): { data: number; streamData: number; streams: number } {
    return this.streams.blockedFramesSent;
  }

  /** Reads in-order data; null when nothing is readable now. */
  streamRead(id: number, max?: number): Buffer | null {
    const b = this.streams.read(id, max);
    if (b === undefined) return null;
    this.onWake?.(this); // credit (MAX_STREAM_DATA, MAX_DATA, MAX_STREAMS) may be due
    return b;
  }

  /** True once the peer's FIN has been received and all data read. */
  streamFinished(id: number): boolean {
    return this.streams.finished(id);
  }

  streamReset(id: number, code: number): void {
    if (this.streams.reset(id, code)) this.onWake?.(this);
  }

  streamStopSending(id: number, code: number): void {
    if (this.streams.stopSending(id, code)) this.onWake?.(this);
  }

  hasStream(id: number): boolean {
    return this.streams.map.has(id);
  }

  /** Closes the connection: CONNECTION_CLOSE with an application (default) or transport error code. */
  close(code = 0, reason = '', application = true, now?: number): void {
    if (this.state === 'closing' || this.state === 'draining' || this.state === 'closed') return;
    this.enterClosing({ by: 'local', application, code, reason }, now ?? this.idle.lastActivity);
    this.onWake?.(this);
  }

  /** Starts a key update (RFC 9001 §6.1). False when not allowed yet (handshake not confirmed or previous update unacked). */
  initiateKeyUpdate(): boolean {
    if (!this.handshakeConfirmed || !this.keyUpdate.canInitiate || this.state !== 'established') return false;
    if (!this.keyUpdate.initiate()) return false;
    this.onWake?.(this);
    return true;
  }

  // ---------------------------------------------------------------- input

  /**
   * Announces the datagrams about to be passed to receive(), in that order (a batch that arrived in one event-loop
   * turn), so that the header protection masks of their 1-RTT packets come from one cipher call (header-masks.ts).
   */
  premask(dgrams: readonly Buffer[]): void {
    const sp = this.spaces[Level.OneRtt];
    if (!sp.read || sp.discarded || dgrams.length < 2) this.masks.clear();
    else this.masks.announce(dgrams, sp.read.hp, this.cfg.cidLength);
  }

  private readonly masks = new HeaderMaskBatch();
  /** Offset of the current datagram's precomputed mask in masks.masks, or -1. */
  private premaskAt = -1;

  /** Handles one received UDP datagram. Never throws for bad input: protocol errors close the connection. */
  receive(dgram: Buffer, from: Address, now: number): void {
    this.premaskAt = this.masks.take(dgram);
    this.lastNow = now;
    if (this.state === 'closed' || this.state === 'draining') return;
    this.address.onDatagramReceived(dgram.length);
    this.stats.bytesReceived += dgram.length;
    this.stats.datagramsReceived++;
    if (this.trace === null && dgram.length > 0 && (dgram[0] & 0x80) === 0) {
      // One short-header packet (what a transfer's datagrams are): the same steps as the loop below, with the
      // header in a reused object (the trace, when on, gets the general path with every field).
      let h: PacketHeader;
      try {
        h = parseShortHeaderInto(dgram, 0, this.cfg.cidLength, shortHeader);
      } catch {
        return;
      }
      try {
        this.receivePacket(dgram, h, from, this.stats.datagramsReceived - 1, now);
      } catch (err) {
        this.onError(err, now);
      }
      return;
    }
    let off = 0;
    let firstDcid: Buffer | null = null;
    while (off < dgram.length) {
      let h: PacketHeader;
      try {
        h = parseHeader(dgram, off, this.cfg.cidLength);
      } catch {
        // The rest of the datagram is not a packet: ignore it (RFC 9000 §12.2).
        if (this.trace) this.trace.packetDropped(null, 'header_parse_error', dgram.length - off, now);
        return;
      }
      // Coalesced packets must share the destination CID (RFC 9000 §12.2).
      if (firstDcid === null) firstDcid = h.dcid;
      else if (!firstDcid.equals(h.dcid)) return this.dropped(h, 'unknown_connection_id');
      off = h.end;
      if (h.type === PacketType.VersionNegotiation || h.type === PacketType.Retry) {
        // Either one ends a client's attempt (neither is valid after the first packet from the server).
        if (this.role === 'client' && this.state === 'handshake') this.onVersionNegotiationOrRetry(dgram, h);
        if (this.isTerminal()) return;
        continue;
      }
      if (h.version !== QUIC_V1) {
        this.dropped(h, 'unsupported_version');
        continue;
      }
      try {
        this.receivePacket(dgram, h, from, this.stats.datagramsReceived - 1, now);
      } catch (err) {
        this.onError(err, now);
        return;
      }
      if (this.isTerminal()) return;
    }
  }

  /**
   * A client's answer from a server that will not start this handshake: Version Negotiation without v1 (RFC 9000
   * §6.2) or a Retry (§17.2.5; following it is not supported yet). Either abandons the attempt at once, with no
   * CONNECTION_CLOSE (the server keeps no state). Packets the RFC says to discard change nothing: any packet after
   * one from the server processed, a VN that lists v1 or does not echo our connection IDs (§6.2, RFC 8999 §6), a
   * Retry whose integrity tag does not verify against our original DCID (RFC 9001 §5.8).
   */
  private onVersionNegotiationOrRetry(dgram: Buffer, h: PacketHeader): void {
    if (this.stats.packetsReceived > 0 || this.serverCidLearned) return;
    if (h.type === PacketType.VersionNegotiation) {
      const versions = h.supportedVersions ?? [];
      if (versions.includes(QUIC_V1) || !h.scid.equals(this.originalDcid) || !h.dcid.equals(this.scid)) return;
      this.closeInfo = {
        by: 'peer',
        application: false,
        code: 0,
        reason: 'Version Negotiation without QUIC v1',
        handshakeFailure: { kind: 'version_negotiation', versions },
      };
    } else {
      if (!h.dcid.equals(this.scid) || !verifyRetryIntegrity(this.originalDcid, dgram.subarray(h.start, h.end))) return;
      this.closeInfo = { by: 'peer', application: false, code: 0, reason: 'Retry (not supported yet)', handshakeFailure: { kind: 'retry' } };
    }
    this.finishClose();
  }

  /** Draining or closed: nothing more is sent or processed. */
  private isTerminal(): boolean {
    return this.state === 'closed' || this.state === 'draining';
  }

  /** One packet of datagram number `datagram` (counted from 0 by stats.datagramsReceived; traced as datagram_id). */
  private receivePacket(dgram: Buffer, h: PacketHeader, from: Address, datagram: number, now: number): void {
    const level = levelOfType(h.type);
    if (level === null) return this.dropped(h, 'unexpected_packet'); // 0-RTT is not accepted
    const space = this.spaces[level];
    if (space.discarded) return this.dropped(h, 'key_unavailable');
    if (!space.read) {
      if (this.undecryptable.length < MAX_UNDECRYPTABLE) {
        const copy = Buffer.from(dgram.subarray(h.start, h.end));
        this.undecryptable.push({ dgram: copy, h: { ...h, pnOffset: h.pnOffset - h.start, end: h.end - h.start, start: 0 }, datagram });
        if (this.trace) this.trace.packetBuffered(h, now);
      } else this.dropped(h, 'dos_prevention');
      this.stats.undecryptable++;
      return;
    }
    let un;
    try {
      const pre = level === Level.OneRtt && h.start === 0 && this.premaskAt >= 0;
      un = removeHeaderProtection(dgram, h, space.read.hp, space.acks.largestReceived, pre ? this.masks.masks : null, this.premaskAt, unprotected);
    } catch {
      return this.dropped(h, 'header_parse_error');
    }
    let keys = space.read;
    let phaseChange = false;
    const ku = this.keyUpdate;
    if (level === Level.OneRtt && un.keyPhase !== ku.phase) {
      // Either a reordered packet from the previous phase or the peer's key update (RFC 9001 §6.3).
      const prev = ku.previousKeysFor(un.pn);
      if (prev !== null) keys = prev;
      else {
        if (!this.handshakeConfirmed && this.role === 'server' && !this.handshakeDone) return this.dropped(h, 'key_unavailable');
        keys = ku.nextReadKeys();
        phaseChange = true;
      }
    }
    // In place where the backend can (the payload is then a view of the datagram); the ciphertext is gone either way.
    const payload = keys.aead.openInPlace(un.pn, dgram, h.start, un.headerEnd, h.end);
    if (!payload) {
      this.stats.undecryptable++;
      return this.dropped(h, 'payload_decrypt_error');
    }
    // Reserved bits must be zero after removing protection (RFC 9000 §17.2, §17.3.1).
    const reserved = h.type === PacketType.OneRtt ? un.firstByte & 0x18 : un.firstByte & 0x0c;
    if (reserved !== 0) throw new TransportError(E.PROTOCOL_VIOLATION, 'reserved header bits are not zero');
    if (space.acks.isDuplicate(un.pn)) return this.dropped(h, 'duplicate');

    if (phaseChange) ku.onPeerKeyUpdate(un.pn, now + 3 * this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true));
    else if (level === Level.OneRtt && keys === space.read && ku.discardPending)
      ku.onFirstPacketOfPhase(un.pn, now + 3 * this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true));

    if (this.role === 'client' && !this.serverCidLearned && h.scid.length >= 0 && level !== Level.OneRtt) {
      this.cids.setPeerInitial(ownCopy(h.scid));
      this.serverCidLearned = true;
    }
    if (this.role === 'server' && level === Level.Handshake && !this.address.validated) {
      // A Handshake packet from the client proves it owns the address (RFC 9000 §8.1); Initial keys go (RFC 9001 §4.9.1).
      this.address.validated = true;
      this.discardSpace(Level.Initial);
    }
    if (from.address !== this.remote.address || from.port !== this.remote.port) {
      // Migration is disabled (disable_active_migration): packets from another address are accepted only as NAT
      // rebinding on the same host would be; we keep answering the original address.
    }

    this.stats.packetsReceived++;
    this.idle.onPacketReceived(now);
    const pn = un.pn;
    // The shared frame scratch unless a parse of it is still being handled (never expected; then a fresh array).
    const scratch = frameScratch.busy ? null : frameScratch;
    const frames = parseFrames(payload, LEVEL_KIND[level], scratch);
    if (this.trace) this.trace.packetReceived(h, un, frames, payload.length, this.acks.ackDelayUnit, datagram, now);
    let ackEliciting = false;
    if (scratch !== null) scratch.busy = true;
    try {
      for (let i = 0; i < frames.length; i++) {
        const f = frames[i];
        if (isAckEliciting(f)) ackEliciting = true;
        this.onFrame(f, level, now);
        if (this.isTerminal()) return;
      }
    } finally {
      if (scratch !== null) scratch.busy = false;
    }
    space.acks.onPacketReceived(pn, ackEliciting, now);
    if (this.state === 'closing') this.sendCloseNow = true;
  }

  /** A packet not processed: a trace event when tracing (nothing else). */
  private dropped(h: PacketHeader, why: QlogDropTrigger): void {
    if (this.trace) this.trace.packetDropped(h, why, h.end - h.start, this.lastNow);
  }

  private onFrame(f: Frame, level: Level, now: number): void {
    switch (f.type) {
      case 'padding':
      case 'ping':
        return;
      case 'ack':
        return this.acks.onAck(f.ranges, f.ackDelay, level, now, this.handshakeConfirmed);
      case 'crypto':
        return this.onCrypto(level, f.offset, f.data);
      case 'stream':
        return this.streams.onStreamFrame(f.streamId, f.offset, f.data, f.fin);
      case 'reset_stream':
        return this.streams.onResetStream(f.streamId, f.errorCode, f.finalSize);
      case 'stop_sending':
        return this.streams.onStopSending(f.streamId, f.errorCode);
      case 'max_data':
        return this.streams.onMaxData(f.max);
      case 'max_stream_data':
        return this.streams.onMaxStreamData(f.streamId, f.max);
      case 'max_streams':
        return this.streams.onMaxStreams(f.bidi, f.max);
      case 'data_blocked':
      case 'streams_blocked':
        return; // informational; our credit is extended as the application reads
      case 'stream_data_blocked':
        return this.streams.onStreamDataBlocked(f.streamId);
      case 'new_token':
        if (this.role === 'server') throw new TransportError(E.PROTOCOL_VIOLATION, 'NEW_TOKEN from a client', 0x07);
        return;
      case 'new_connection_id':
        return this.cids.onNewConnectionId(f.seq, f.retirePriorTo, f.cid, f.resetToken);
      case 'retire_connection_id':
        if (this.cids.onRetireConnectionId(f.seq)) this.issueConnectionIds();
        return;
      case 'path_challenge':
        if (this.pending.pathResponses.length < 4) this.pending.pathResponses.push(Buffer.from(f.data));
        return;
      case 'path_response':
        return; // we never send PATH_CHALLENGE (no migration), so any response is unsolicited and ignored
      case 'connection_close':
        this.closeInfo = {
          by: 'peer',
          application: f.application,
          code: f.errorCode,
          reason: f.reason,
          frameType: f.frameType,
        };
        this.enterDraining(now);
        return;
      case 'handshake_done':
        if (this.role === 'server') throw new TransportError(E.PROTOCOL_VIOLATION, 'HANDSHAKE_DONE from a client', 0x1e);
        this.confirmHandshake();
        return;
    }
  }

  private onCrypto(level: Level, offset: number, data: Buffer): void {
    const sp = this.spaces[level];
    try {
      sp.cryptoRecv.onData(offset, data, false);
    } catch (err) {
      if (err instanceof TransportError && err.code === E.FLOW_CONTROL_ERROR)
        throw new TransportError(E.CRYPTO_BUFFER_EXCEEDED, `CRYPTO data beyond ${CRYPTO_BUFFER_LIMIT} buffered bytes`, 0x06);
      throw err;
    }
    for (let b = sp.cryptoRecv.read(); b; b = sp.cryptoRecv.read()) {
      if (level === Level.OneRtt) this.onPostHandshake(b);
      else this.tls.receive(level, b);
      const upd = sp.cryptoRecv.maxStreamDataUpdate();
      if (upd !== null) sp.cryptoRecv.markMaxStreamDataSent(upd);
    }
    if (level !== Level.OneRtt) this.drainTls();
  }

  private postHandshake = Buffer.alloc(0);

  /**
   * Post-handshake TLS messages in 1-RTT CRYPTO frames: a client accepts (and ignores, no resumption yet)
   * NewSessionTicket; a KeyUpdate message is forbidden in QUIC (RFC 9001 §6); anything else is unexpected.
   */
  private onPostHandshake(b: Buffer): void {
    this.postHandshake = this.postHandshake.length ? Buffer.concat([this.postHandshake, b]) : Buffer.from(b);
    while (this.postHandshake.length >= 4) {
      const type = this.postHandshake[0];
      const len = this.postHandshake.readUIntBE(1, 3);
      if (type === 24) throw new TlsError(TlsAlert.unexpected_message, 'TLS KeyUpdate message is not allowed in QUIC');
      if (type !== 4 || this.role !== 'client')
        throw new TlsError(TlsAlert.unexpected_message, `unexpected post-handshake TLS message type ${type}`);
      if (this.postHandshake.length < 4 + len) return;
      this.postHandshake = this.postHandshake.subarray(4 + len);
    }
  }

  /** Moves TLS output into CRYPTO send buffers and installs new keys. */
  private drainTls(): void {
    for (const out of this.tls.takeOutput()) {
      this.spaces[out.level].cryptoSend.write(out.data);
    }
    for (const s of this.tls.takeSecrets()) this.installSecret(s);
    if (!this.peerParams && this.tls.peerTransportParameters) {
      this.applyPeerParams(decodeTransportParameters(this.tls.peerTransportParameters, this.role === 'client' ? 'server' : 'client'));
    }
    if (!this.handshakeDone && this.tls.handshakeComplete) {
      this.handshakeDone = true;
      this.assembler.oneRttOpen = true;
      this.timers.stop(Timer.handshake);
      // Closed before the peer's last handshake flight arrived: the connection stays closing (it was going back to
      // 'established' and polled forever).
      if (this.state !== 'handshake') return;
      this.state = 'established';
      this.events.push({ type: 'handshake_complete', alpn: this.tls.alpn ?? '', cipher: this.tls.cipherSuite?.name ?? '' });
      if (this.trace) this.trace.handshakeComplete(this.tls.cipherSuite?.name ?? '', this.tls.alpn ?? '', this.tls.clientRandom, this.lastNow);
      if (this.role === 'server') {
        this.pending.handshakeDone = true;
        this.confirmHandshake();
      }
      this.issueConnectionIds();
    }
  }

  private installSecret(s: TlsSecret): void {
    const keys = deriveKeys(s.suite, s.secret);
    const sp = this.spaces[s.level];
    if (s.direction === 'read') sp.read = keys;
    else sp.write = keys;
    if (this.trace) this.trace.keyUpdated(s.level, s.direction, this.lastNow);
    if (s.level === Level.OneRtt && s.direction === 'read') this.keyUpdate.onReadKeysInstalled(keys);
    if (s.direction === 'read' && this.undecryptable.length) {
      const pending = this.undecryptable;
      this.undecryptable = [];
      this.replay = pending;
    }
  }

  private replay: BufferedPacket[] | null = null;

  private applyPeerParams(p: TransportParameters): void {
    authenticateConnectionIds(this.role, p, this.originalDcid, this.dcid);
    this.peerParams = p;
    if (this.trace) this.trace.parameters('remote', p, this.lastNow);
    this.acks.ackDelayUnit = 2 ** p.ackDelayExponent;
    if (p.statelessResetToken) this.cids.setPeerInitialResetToken(p.statelessResetToken);
    this.idle.negotiate(p.maxIdleTimeout);
    this.streams.applyPeerParams(p);
  }

  private confirmHandshake(): void {
    if (this.handshakeConfirmed) return;
    this.handshakeConfirmed = true;
    this.discardSpace(Level.Initial);
    this.discardSpace(Level.Handshake);
    this.events.push({ type: 'handshake_confirmed' });
    if (this.trace) this.trace.state('handshake_confirmed', this.lastNow);
  }

  private discardSpace(level: Level): void {
    const sp = this.spaces[level];
    if (sp.discarded) return;
    sp.discarded = true;
    sp.read = null;
    sp.write = null;
    this.loss.discardSpace(level as 0 | 1 | 2);
    this.losses.onSpaceDiscarded(level);
    if (this.trace) this.trace.spaceDiscarded(level, this.lastNow);
  }

  /** Issues NEW_CONNECTION_IDs up to the peer's active_connection_id_limit (at most 3 spare ones). */
  private issueConnectionIds(): void {
    if (!this.handshakeDone || !this.peerParams) return;
    this.cids.issue(this.peerParams.activeConnectionIdLimit);
  }

  // ---------------------------------------------------------------- errors and closing

  private onError(err: unknown, now: number): void {
    if (err instanceof TransportError) {
      this.enterClosing(
        { by: 'local', application: false, code: err.code, reason: err instanceof TlsError ? err.message : err.message, frameType: err.frameType },
        now,
      );
    } else if (err instanceof DecodeError) {
      this.enterClosing({ by: 'local', application: false, code: E.FRAME_ENCODING_ERROR, reason: err.message }, now);
    } else {
      const msg = err instanceof Error ? err.message : String(err);
      this.enterClosing({ by: 'local', application: false, code: E.INTERNAL_ERROR, reason: msg }, now);
    }
  }

  private enterClosing(info: CloseInfo, now: number): void {
    this.closeInfo = info;
    this.state = 'closing';
    const reason = info.reason.length > 200 ? info.reason.slice(0, 200) : info.reason;
    this.pendingClose = {
      type: 'connection_close',
      application: info.application,
      errorCode: info.code,
      frameType: info.application ? 0 : info.frameType ?? 0,
      reason,
    };
    this.sendCloseNow = true;
    this.timers.set(Timer.close, now + 3 * this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true));
    this.clearSendState();
    if (this.trace) this.trace.state('closing', now);
    this.emitClosed();
  }

  private enterDraining(now: number): void {
    if (this.trace) this.trace.state('draining', now);
    if (this.state === 'closing') {
      this.state = 'draining';
      return;
    }
    this.state = 'draining';
    this.timers.set(Timer.close, now + 3 * this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true));
    this.clearSendState();
    this.emitClosed();
  }

  private clearSendState(): void {
    this.streams.clearSendState();
  }

  private finishClose(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    this.emitClosed();
    if (this.trace) this.trace.state('closed', this.lastNow);
  }

  private closedEmitted = false;

  /** The application hears of the close at once; the connection lingers through closing/draining (RFC 9000 §10.2). */
  private emitClosed(): void {
    if (this.closedEmitted) return;
    this.closedEmitted = true;
    const info = this.closeInfo ?? { by: 'local', application: false, code: 0, reason: '' };
    this.events.push({ type: 'closed', info });
    if (this.trace) this.trace.closed(info, this.lastNow);
  }

  // ---------------------------------------------------------------- timers

  /** The time at which `handleTimeout` must be called, or null: the earliest deadline in the table. */
  nextTimeout(): number | null {
    if (this.state === 'closed') return null;
    if (this.state === 'closing' || this.state === 'draining') return this.timers.get(Timer.close);
    this.refreshTimers();
    return this.timers.next();
  }

  /** Sets the deadlines that follow from other state: idle, loss detection / PTO, ACK delay. */
  private refreshTimers(): void {
    const timers = this.timers;
    timers.set(Timer.idle, this.idle.deadline(this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true), this.state === 'handshake'));
    timers.set(Timer.loss, this.loss.timerDeadline(this.handshakeConfirmed, this.peerAddressValidated(), !!this.spaces[Level.Handshake].write, this.lastNow));
    let ack = Infinity;
    for (const sp of this.spaces) {
      if (sp.discarded || !sp.write) continue;
      const a = sp.acks.ackDeadline();
      if (a !== null && a < ack) ack = a;
    }
    timers.set(Timer.ack, ack);
  }

  private readonly pmtu: PathMtu;

  get datagramSize(): number {
    return this.pmtu.size;
  }

  /** The latest `now` we were given (timer queries take no time argument). */
  private lastNow = 0;

  private peerAddressValidated(): boolean {
    // From the client's view (RFC 9002 A.6): the server has validated us once we have Handshake keys acked or 1-RTT keys.
    if (this.role === 'server') return true;
    return this.handshakeConfirmed || !!this.spaces[Level.OneRtt].read;
  }

  handleTimeout(now: number): void {
    this.lastNow = now;
    if (this.state === 'closed') return;
    const timers = this.timers;
    if (this.state === 'closing' || this.state === 'draining') {
      if (timers.expired(Timer.close, now)) this.finishClose();
      return;
    }
    this.refreshTimers();
    if (timers.expired(Timer.idle, now)) {
      this.closeInfo = { by: 'idle', application: false, code: 0, reason: 'idle timeout' };
      this.finishClose();
      return;
    }
    if (timers.expired(Timer.handshake, now)) return this.onHandshakeTimeout(now);
    if (timers.expired(Timer.keyDiscard, now)) {
      this.keyUpdate.discardPrevious();
      if (this.trace) this.trace.oldReadKeyDiscarded(this.keyUpdate.generation - 1, now);
    }
    if (timers.expired(Timer.pacing, now)) timers.stop(Timer.pacing);
    if (timers.expired(Timer.loss, now)) {
      this.losses.onTimeout(now, this.handshakeConfirmed, this.peerAddressValidated(), this.handshakeDone);
    }
  }

  /**
   * The handshake did not complete in time (ConnectionConfig.handshakeTimeout). A peer that never sent anything
   * decryptable holds no state for us and gets nothing; one that did hears CONNECTION_CLOSE (NO_ERROR).
   */
  private onHandshakeTimeout(now: number): void {
    const timeoutMs = this.cfg.handshakeTimeout ?? DEFAULT_CLIENT_HANDSHAKE_TIMEOUT;
    const failure = { kind: 'timeout' as const, timeoutMs, datagrams: this.stats.datagramsReceived, decrypted: this.stats.packetsReceived };
    const info = { by: 'local' as const, application: false, code: E.NO_ERROR, reason: 'handshake timeout', handshakeFailure: failure };
    if (failure.decrypted === 0) {
      this.closeInfo = info;
      this.finishClose();
    } else {
      this.enterClosing(info, now);
    }
  }

  // ---------------------------------------------------------------- output

  /**
   * Builds the next datagram to send, or null when there is nothing to send now
   * (check `nextTimeout()` for when to try again).
   */
  poll(now: number): Buffer | null {
    this.lastNow = now;
    if (this.replay) {
      const r = this.replay;
      this.replay = null;
      for (const { dgram, h, datagram } of r) {
        try {
          this.receivePacket(dgram, h, this.remote, datagram, now);
        } catch (err) {
          this.onError(err, now);
        }
      }
    }
    if (this.state === 'closed' || this.state === 'draining') return null;
    if (this.state === 'closing') {
      if (!this.sendCloseNow || !this.pendingClose) return null;
      this.sendCloseNow = false;
      return this.assembler.close(this.pendingClose, now);
    }
    const d = this.assembler.datagram(now);
    if (d) return d;
    // Path MTU discovery (RFC 9000 §14.3) once the handshake is confirmed and the connection carries more than its
    // handshake did: larger datagrams pay only for bulk data, and an idle or small-request connection (most of them,
    // under a flood) is spared sealing and sending up to five probes of 1.4-16 KB.
    if (!this.handshakeConfirmed || this.state !== 'established' || !this.peerParams) return null;
    if (this.stats.bytesSent < PMTU_PROBE_AFTER_BYTES) return null;
    return this.assembler.pmtuProbe(Math.min(this.cfg.maxDatagramSize, this.peerParams.maxUdpPayloadSize), now);
  }

  /**
   * A datagram carrying only the ACK frames now due (nothing congestion-controlled, no new data), or null. The driver
   * sends it right after a receive batch, before the application's work of that turn, so that our processing does not
   * add to the peer's RTT (io/udp.ts flush). Whatever else is due goes out on the next poll().
   */
  pollAckOnly(now: number): Buffer | null {
    // Not during the handshake: its ACKs ride on the next flight (HANDSHAKE_DONE included).
    if (this.replay || this.state !== 'established' || !this.handshakeConfirmed || this.pending.handshakeDone) return null;
    this.lastNow = now;
    return this.assembler.datagram(now, true);
  }

  /** Builds the datagrams: coalescing, padding, congestion window and pacer, close and PMTU probes. */
  private readonly assembler: DatagramAssembler;

  private get scid(): Buffer {
    return this.cids.scid;
  }

  private get dcid(): Buffer {
    return this.cids.dcid;
  }

  /** Forces an ack-eliciting PING in the next packet (keep-alive, tests). */
  ping(): void {
    this.pending.ping = true;
    this.onWake?.(this);
  }
}
