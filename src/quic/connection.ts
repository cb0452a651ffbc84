/**
 * One QUIC v1 connection (RFC 9000), sans-I/O: datagrams and `now` in; datagrams, events and a timer deadline out.
 * This file receives and dispatches, glues TLS to the packet number spaces, assembles datagrams and closes; each
 * other concern is a module under connection/ (streams, retransmits, cids, key-update, pmtu, framer, frame-writer,
 * packet-builder, timers, space).
 *
 * - Packet protection and key update: RFC 9001 §5, §6 (crypto/keys.ts, packet/header.ts, connection/key-update.ts)
 * - Handshake over CRYPTO frames, key installation and discard: RFC 9001 §4 (tls/tls.ts)
 * - Streams and flow control: RFC 9000 §2–§4 (connection/streams.ts, stream/*)
 * - ACKs, loss detection, PTO, congestion control and pacing: RFC 9002 (recovery/*)
 * - Connection IDs (connection/cids.ts), path validation responses, closing/draining, idle timeout: RFC 9000 §5, §8.2, §10
 * - Anti-amplification before address validation: RFC 9000 §8.1
 */
import { randomBytes } from 'node:crypto';
import { Level, QUIC_V1, type Role } from './types.js';
import { TransportError, TransportErrorCode as E, TlsError, TlsAlert } from './errors.js';
import type { Address, CloseInfo, ConnectionConfig, ConnectionEvent, ConnectionState } from './connection-types.js';
import { TlsEndpoint, type TlsSecret } from './tls/tls.js';
import { initialSecrets } from './crypto/initial.js';
import { deriveKeys, type DirectionKeys } from './crypto/keys.js';
import { TLS_AES_128_GCM_SHA256 } from './crypto/suites.js';
import { verifyRetryIntegrity } from './crypto/retry.js';
import {
  PacketType,
  parseHeader,
  removeHeaderProtection,
  type PacketHeader,
} from './packet/header.js';
import {
  parseFrames,
  writeFrame,
  frameLength,
  isAckEliciting,
  type Frame,
} from './frame/frames.js';
import {
  defaultTransportParameters,
  encodeTransportParameters,
  decodeTransportParameters,
  type TransportParameters,
} from './transport-params.js';
import { RttEstimator } from './recovery/rtt.js';
import { LossDetector, type SentPacket } from './recovery/loss.js';
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
import { Retransmits, type PacketInfo, type SentFrame } from './connection/retransmits.js';
import { datagramScratch, sharedFrameWriter, takeDatagram } from './connection/scratch.js';
import { PacketBuilder } from './connection/packet-builder.js';
import { ConnectionTracer } from './tracer.js';
import type { QlogDropTrigger } from './trace.js';

const MIN_INITIAL_DATAGRAM = 1200;
/** Packets that arrive before their keys (reordered across the handshake) are kept this many at most. */
const MAX_UNDECRYPTABLE = 16;
const MAX_DATAGRAM_LIMIT = 65527;
const PACING_GRANULARITY = 1;
const LOOPBACK_MAX_DATAGRAM = 16384;
const DEFAULT_CLIENT_HANDSHAKE_TIMEOUT = 10_000;

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

export class Connection {
  readonly role: Role;
  state: ConnectionState = 'handshake';
  remote: Address;
  /** Our connection IDs by sequence number. */
  get localCids(): Map<number, Buffer> {
    return this.cids.local;
  }

  /** Incremented whenever localCids changes (the endpoint re-syncs its routing table then). */
  get cidVersion(): number {
    return this.cids.version;
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
  private readonly loss: LossDetector<PacketInfo>;
  private readonly pacer: Pacer;
  private ptoProbes = [0, 0, 0];

  // streams, flow control, and the control frames waiting to be sent
  private readonly pending = new Retransmits();
  private readonly streams: Streams;

  // handshake, keys and timers
  private readonly keyUpdate: KeyUpdate;
  private handshakeDone = false;
  private handshakeConfirmed = false;
  private addressValidated: boolean;
  private bytesReceived = 0;
  private bytesSent = 0;
  private lastActivity: number;
  private idleTimeout = 0;
  private pendingClose: Frame | null = null;
  private sendCloseNow = false;
  private undecryptable: { dgram: Buffer; h: PacketHeader }[] = [];
  private firstHandshakeSent = false;
  /** Client: the server's source CID seen in its first packet, which becomes our DCID. */
  private serverCidLearned = false;
  private retireUnusedOdcid = false;
  stats = { packetsSent: 0, packetsReceived: 0, packetsLost: 0, bytesSent: 0, bytesReceived: 0, undecryptable: 0, datagramsReceived: 0 };
  /** Every deadline of the connection, by name (connection/timers.ts). */
  private readonly timers = new TimerTable();
  /** Builds and emits trace events; null (and nothing built) unless ConnectionConfig.trace is set. */
  private readonly trace: ConnectionTracer | null;

  private constructor(
    role: Role,
    config: ConnectionConfig,
    remote: Address,
    originalDcid: Buffer,
    localCid: Buffer,
    now: number,
    initialRead?: DirectionKeys,
  ) {
    this.role = role;
    this.cfg = {
      maxIdleTimeout: 30_000,
      // Loopback paths carry 64 KiB datagrams; elsewhere assume a 1500-byte Ethernet MTU.
      maxDatagramSize: isLoopback(remote.address) ? LOOPBACK_MAX_DATAGRAM : 1452,
      cidLength: 8,
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
    this.lastActivity = now;
    const handshakeTimeout = config.handshakeTimeout ?? (role === 'client' ? DEFAULT_CLIENT_HANDSHAKE_TIMEOUT : 0);
    if (handshakeTimeout > 0) this.timers.set(Timer.handshake, now + handshakeTimeout);
    this.addressValidated = role === 'client';
    this.cc = (config.congestionControl ?? newReno)(MIN_INITIAL_DATAGRAM);
    this.pacer = new Pacer(MIN_INITIAL_DATAGRAM);
    this.pmtu = new PathMtu(MIN_INITIAL_DATAGRAM, this.cc, this.pacer);
    this.loss = new LossDetector<PacketInfo>(this.rtt, this.cc, {
      maxAckDelay: () => this.peerParams?.maxAckDelay ?? 25,
      isServer: role === 'server',
    });

    const p = defaultTransportParameters();
    p.maxIdleTimeout = this.cfg.maxIdleTimeout;
    p.initialMaxData = config.initialMaxData ?? 16 * 1024 * 1024;
    p.initialMaxStreamDataBidiLocal = config.initialMaxStreamDataBidiLocal ?? 2 * 1024 * 1024;
    p.initialMaxStreamDataBidiRemote = config.initialMaxStreamDataBidiRemote ?? 2 * 1024 * 1024;
    p.initialMaxStreamDataUni = config.initialMaxStreamDataUni ?? 2 * 1024 * 1024;
    p.initialMaxStreamsBidi = config.initialMaxStreamsBidi ?? 100;
    p.initialMaxStreamsUni = config.initialMaxStreamsUni ?? 100;
    p.maxAckDelay = this.cfg.maxAckDelay;
    p.maxUdpPayloadSize = MAX_DATAGRAM_LIMIT;
    p.activeConnectionIdLimit = 4;
    p.disableActiveMigration = true;
    p.initialSourceConnectionId = localCid;
    if (role === 'server') {
      p.originalDestinationConnectionId = originalDcid;
      p.statelessResetToken = randomBytes(16);
    }
    this.localParams = p;
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
    this.builder = new PacketBuilder(
      trace
        ? (buf, start, headerLen, payloadEnd, level, pn) =>
            trace.packetSent(buf, start, headerLen, payloadEnd, level, pn, this.dcid, this.scid, this.stats.packetsSent, this.lastNow)
        : null,
    );
    this.cids = new ConnectionIds(localCid, originalDcid, this.cfg.cidLength, p.activeConnectionIdLimit, this.pending);
    this.streams = new Streams(
      {
        role,
        local: p,
        maxStreamReceiveWindow: this.cfg.maxStreamReceiveWindow,
        maxConnectionReceiveWindow: this.cfg.maxConnectionReceiveWindow,
        onStreamState: trace ? (id, state) => trace.streamState(id, state, this.lastNow) : undefined,
      },
      this.events,
      this.pending,
      this.rtt,
    );
    this.framer = new Framer(role, p.ackDelayExponent, this.pending, this.streams, this.cids);

    const secrets = initialSecrets(originalDcid);
    this.spaces = [makeSpace(Level.Initial, this.cfg.maxAckDelay), makeSpace(Level.Handshake, this.cfg.maxAckDelay), makeSpace(Level.OneRtt, this.cfg.maxAckDelay)];
    this.keyUpdate = new KeyUpdate(
      this.spaces[Level.OneRtt],
      this.events,
      this.timers,
      trace ? (generation, by) => trace.keysRotated(generation, by, this.lastNow) : null,
    );
    const init = this.spaces[Level.Initial];
    const mine = role === 'client' ? secrets.client : secrets.server;
    const theirs = role === 'client' ? secrets.server : secrets.client;
    init.write = deriveKeys(TLS_AES_128_GCM_SHA256, mine);
    init.read = initialRead ?? deriveKeys(TLS_AES_128_GCM_SHA256, theirs);

    this.tls = new TlsEndpoint({
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

  /** A client connection to `remote`; call `poll(now)` to get the first datagram. `odcid`: default random. */
  static connect(config: ConnectionConfig, remote: Address, now: number, odcid?: Buffer): Connection {
    const cidLength = config.cidLength ?? 8;
    odcid ??= randomBytes(Math.max(8, cidLength));
    const c = new Connection('client', config, remote, odcid, randomBytes(cidLength), now);
    if (c.trace) c.trace.start(now, remote, c.scid, c.dcid, c.localParams);
    c.tls.start();
    c.drainTls();
    c.resetIdle(now);
    return c;
  }

  /**
   * A server connection for a client's first Initial packet. The endpoint checked version and size and that the packet
   * decrypts with `clientInitialKeys` (derived from clientDcid, reused here), so clientScid is authenticated.
   */
  static accept(config: ConnectionConfig, remote: Address, clientDcid: Buffer, clientScid: Buffer, now: number, clientInitialKeys?: DirectionKeys): Connection {
    const c = new Connection('server', config, remote, clientDcid, randomBytes(config.cidLength ?? 8), now, clientInitialKeys);
    c.cids.setPeerInitial(clientScid);
    c.serverCidLearned = true;
    if (c.trace) c.trace.start(now, remote, c.scid, c.dcid, c.localParams);
    c.resetIdle(now);
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
    this.enterClosing({ by: 'local', application, code, reason }, now ?? this.lastActivity);
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

  /** Handles one received UDP datagram. Never throws for bad input: protocol errors close the connection. */
  /**
   * Header protection masks for datagrams about to be passed to receive(), in that order (a batch that arrived in one
   * event-loop turn): one cipher call for all their 1-RTT samples instead of one per packet. Only short-header
   * datagrams belong in the list; a datagram not received in the announced order just has its mask computed alone.
   */
  premask(dgrams: readonly Buffer[]): void {
    this.premaskDgrams = null;
    const sp = this.spaces[Level.OneRtt];
    if (!sp.read || sp.discarded || dgrams.length < 2) return;
    const n = dgrams.length;
    const samples = Buffer.allocUnsafe(n * 16);
    const at = 1 + this.cfg.cidLength + 4; // short header: first byte, DCID, then the sample 4 bytes past the pn offset
    for (let i = 0; i < n; i++) {
      const d = dgrams[i];
      if (d.length >= at + 16) d.copy(samples, i * 16, at, at + 16);
      else samples.fill(0, i * 16, i * 16 + 16); // too short: receive() rejects it before any mask is used
    }
    this.premaskBuf = sp.read.hp.masks(samples);
    this.premaskDgrams = dgrams;
    this.premaskNext = 0;
  }

  private premaskDgrams: readonly Buffer[] | null = null;
  private premaskBuf: Buffer | null = null;
  private premaskNext = 0;
  /** Offset of the current datagram's precomputed mask in premaskBuf, or -1. */
  private premaskAt = -1;

  receive(dgram: Buffer, from: Address, now: number): void {
    this.premaskAt = -1;
    const pd = this.premaskDgrams;
    if (pd !== null) {
      const i = this.premaskNext;
      if (pd[i] === dgram) {
        this.premaskAt = i * 16;
        this.premaskNext = i + 1;
        if (i + 1 === pd.length) this.premaskDgrams = null;
      }
    }
    this.lastNow = now;
    if (this.state === 'closed' || this.state === 'draining') return;
    this.bytesReceived += dgram.length;
    this.stats.bytesReceived += dgram.length;
    this.stats.datagramsReceived++;
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
        this.receivePacket(dgram, h, from, now);
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

  private receivePacket(dgram: Buffer, h: PacketHeader, from: Address, now: number): void {
    const level = levelOfType(h.type);
    if (level === null) return this.dropped(h, 'unexpected_packet'); // 0-RTT is not accepted
    const space = this.spaces[level];
    if (space.discarded) return this.dropped(h, 'key_unavailable');
    if (!space.read) {
      if (this.undecryptable.length < MAX_UNDECRYPTABLE) {
        this.undecryptable.push({ dgram: Buffer.from(dgram.subarray(h.start, h.end)), h: { ...h, pnOffset: h.pnOffset - h.start, end: h.end - h.start, start: 0 } });
        if (this.trace) this.trace.packetBuffered(h, now);
      } else this.dropped(h, 'dos_prevention');
      this.stats.undecryptable++;
      return;
    }
    let un;
    try {
      const pre = level === Level.OneRtt && h.start === 0 && this.premaskAt >= 0;
      un = removeHeaderProtection(dgram, h, space.read.hp, space.acks.largestReceived, pre ? this.premaskBuf : null, this.premaskAt);
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
    if (this.role === 'server' && level === Level.Handshake && !this.addressValidated) {
      // A Handshake packet from the client proves it owns the address (RFC 9000 §8.1); Initial keys go (RFC 9001 §4.9.1).
      this.addressValidated = true;
      this.discardSpace(Level.Initial);
    }
    if (from.address !== this.remote.address || from.port !== this.remote.port) {
      // Migration is disabled (disable_active_migration): packets from another address are accepted only as NAT
      // rebinding on the same host would be; we keep answering the original address.
    }

    this.stats.packetsReceived++;
    this.resetIdle(now);
    const frames = parseFrames(payload, LEVEL_KIND[level]);
    if (this.trace) this.trace.packetReceived(h, un, frames, payload.length, this.ackDelayUnit, now);
    let ackEliciting = false;
    for (const f of frames) {
      if (isAckEliciting(f)) ackEliciting = true;
      this.onFrame(f, level, now);
      if (this.isTerminal()) return;
    }
    space.acks.onPacketReceived(un.pn, ackEliciting, now);
    if (this.state === 'closing') this.sendCloseNow = true;
  }

  /** A packet not processed: a trace event when tracing (nothing else). */
  private dropped(h: PacketHeader, why: QlogDropTrigger): void {
    if (this.trace) this.trace.packetDropped(h, why, h.end - h.start, this.lastNow);
  }

  /** Microseconds per unit of the peer's ACK Delay field: 2^ack_delay_exponent (RFC 9000 §18.2), 8 by default. */
  private ackDelayUnit = 8;

  private onFrame(f: Frame, level: Level, now: number): void {
    switch (f.type) {
      case 'padding':
      case 'ping':
        return;
      case 'ack':
        return this.onAck(f.ranges, f.ackDelay, level, now);
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

  private onAck(ranges: [number, number][], rawDelay: number, level: Level, now: number): void {
    const largest = ranges[0][1];
    if (largest >= this.spaces[level].nextPn)
      throw new TransportError(E.PROTOCOL_VIOLATION, `ACK of packet ${largest} that was never sent`, 0x02);
    const delayMs = level === Level.OneRtt ? (rawDelay * this.ackDelayUnit) / 1000 : 0;
    const { acked, lost } = this.loss.onAckReceived(level as 0 | 1 | 2, ranges, delayMs, now, this.handshakeConfirmed);
    for (const p of acked) this.onPacketAcked(p);
    this.onPacketsLost(lost);
    if (acked.length) this.ptoProbes = [0, 0, 0];
    if (this.trace) this.trace.metrics(now);
  }

  private onPacketAcked(p: SentPacket<PacketInfo>): void {
    const space = this.spaces[p.info.level];
    if (p.info.level === Level.OneRtt) this.keyUpdate.onPacketAcked(p.pn);
    for (const f of p.info.frames) {
      switch (f.k) {
        case 'stream':
          this.streams.onStreamAcked(f.id, f.offset, f.len, f.fin);
          break;
        case 'crypto':
          this.spaces[f.level].cryptoSend.onAck(f.offset, f.len, false);
          break;
        case 'ack':
          space.acks.onAckOfAckReceived(f.largest);
          break;
        case 'reset':
          this.streams.onResetAcked(f.id);
          break;
        case 'pmtu':
          this.pmtu.onProbeAcked(f.size);
          break;
        default:
          break;
      }
    }
  }

  private onPacketsLost(lost: SentPacket<PacketInfo>[]): void {
    for (const p of lost) {
      this.stats.packetsLost++;
      if (this.trace) this.trace.packetLost(p.space, p.pn, p.info.frames[0]?.k === 'pmtu', this.lastNow);
      this.requeue(p.info);
    }
  }

  /** Puts what a lost (or probed) packet carried back in the send queues. */
  private requeue(info: PacketInfo): void {
    for (const f of info.frames) {
      switch (f.k) {
        case 'stream':
          this.streams.onStreamLost(f.id, f.offset, f.len, f.fin);
          break;
        case 'crypto': {
          const sp = this.spaces[f.level];
          if (!sp.discarded) sp.cryptoSend.onLost(f.offset, f.len, false);
          break;
        }
        case 'max_data':
          this.pending.maxData = true;
          break;
        case 'max_stream_data':
          this.streams.onMaxStreamDataLost(f.id);
          break;
        case 'max_streams':
          this.pending.maxStreams[f.bidi ? 1 : 0] = true;
          break;
        case 'data_blocked':
          this.pending.dataBlocked = true;
          break;
        case 'stream_data_blocked':
          this.streams.onStreamDataBlockedLost(f.id);
          break;
        case 'streams_blocked':
          this.pending.streamsBlocked[f.bidi ? 1 : 0] = true;
          break;
        case 'reset':
          this.streams.onResetLost(f.id);
          break;
        case 'stop_sending':
          this.streams.onStopSendingLost(f.id);
          break;
        case 'handshake_done':
          this.pending.handshakeDone = true;
          break;
        case 'new_cid':
          this.cids.onNewCidLost(f.seq);
          break;
        case 'retire_cid':
          this.pending.retireCids.push(f.seq);
          break;
        case 'pmtu':
          this.pmtu.onProbeLost(f.size);
          break;
        case 'ack':
        case 'ping':
          break;
      }
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
      this.timers.stop(Timer.handshake);
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

  private replay: { dgram: Buffer; h: PacketHeader }[] | null = null;

  private applyPeerParams(p: TransportParameters): void {
    // Connection ID authentication (RFC 9000 §7.3).
    if (this.role === 'client') {
      if (!p.originalDestinationConnectionId || !p.originalDestinationConnectionId.equals(this.originalDcid))
        throw new TransportError(E.TRANSPORT_PARAMETER_ERROR, 'original_destination_connection_id does not match');
      if (!p.initialSourceConnectionId || !p.initialSourceConnectionId.equals(this.dcid))
        throw new TransportError(E.TRANSPORT_PARAMETER_ERROR, 'initial_source_connection_id does not match the server SCID');
      if (p.retrySourceConnectionId)
        throw new TransportError(E.TRANSPORT_PARAMETER_ERROR, 'retry_source_connection_id without a Retry');
    } else {
      if (!p.initialSourceConnectionId || !p.initialSourceConnectionId.equals(this.dcid))
        throw new TransportError(E.TRANSPORT_PARAMETER_ERROR, 'initial_source_connection_id does not match the client SCID');
    }
    this.peerParams = p;
    if (this.trace) this.trace.parameters('remote', p, this.lastNow);
    this.ackDelayUnit = 2 ** p.ackDelayExponent;
    if (p.statelessResetToken) this.cids.setPeerInitialResetToken(p.statelessResetToken);
    const ours = this.localParams.maxIdleTimeout;
    const theirs = p.maxIdleTimeout;
    this.idleTimeout = ours && theirs ? Math.min(ours, theirs) : ours || theirs;
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
    this.ptoProbes[level] = 0;
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

  private resetIdle(now: number): void {
    this.lastActivity = now;
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
    timers.set(Timer.idle, this.idleDeadline());
    timers.set(Timer.loss, this.loss.timerDeadline(this.handshakeConfirmed, this.peerAddressValidated(), !!this.spaces[Level.Handshake].write, this.lastNow));
    let ack = Infinity;
    for (const sp of this.spaces) {
      if (sp.discarded || !sp.write) continue;
      const a = sp.acks.ackDeadline();
      if (a !== null && a < ack) ack = a;
    }
    timers.set(Timer.ack, ack);
  }

  // ---------------------------------------------------------------- path MTU discovery (RFC 9000 §14.3)

  private readonly pmtu: PathMtu;

  get datagramSize(): number {
    return this.pmtu.size;
  }

  /** The size of the PMTU probe due now, or 0. */
  private pmtuProbeDue(): number {
    if (!this.handshakeConfirmed || this.state !== 'established' || !this.peerParams) return 0;
    return this.pmtu.probeDue(Math.min(this.cfg.maxDatagramSize, this.peerParams.maxUdpPayloadSize));
  }

  /** A PMTU probe: one 1-RTT packet with PING and PADDING filling a datagram of the candidate size. */
  private buildPmtuProbe(size: number, now: number): Buffer | null {
    const sp = this.spaces[Level.OneRtt];
    if (!sp.write) return null;
    const buf = Buffer.allocUnsafe(size);
    const pb = this.builder;
    if (!pb.begin(0, sp, size, this.dcid.length, this.scid.length, this.loss.largestAcked(Level.OneRtt))) return null;
    buf[pb.payloadStart] = 0x01; // PING
    buf.fill(0, pb.payloadStart + 1, pb.payloadEnd); // PADDING to the end
    const end = pb.finish(buf, pb.payloadEnd);
    if (end === null) return null;
    const pn = sp.nextPn - 1;
    this.builder.seal(buf, this.dcid, this.scid, this.keyUpdate.phase);
    this.pmtu.onProbeSent(size);
    // Not counted in flight: the loss of a probe says nothing about congestion (RFC 9000 §14.4).
    this.loss.onPacketSent({
      pn,
      space: Level.OneRtt,
      timeSent: now,
      size: end,
      ackEliciting: true,
      inFlight: false,
      info: { level: Level.OneRtt, frames: [{ k: 'pmtu', size }], keyPhase: this.keyUpdate.phase },
    });
    return this.finishDatagram(buf, end);
  }

  /** The latest `now` we were given (timer queries take no time argument). */
  private lastNow = 0;

  private idleDeadline(): number | null {
    if (!this.idleTimeout && !(this.state === 'handshake' && this.localParams.maxIdleTimeout)) return null;
    const base = this.idleTimeout || this.localParams.maxIdleTimeout;
    const pto = this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true);
    return this.lastActivity + Math.max(base, 3 * pto);
  }

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
      const r = this.loss.onLossTimeout(now, this.handshakeConfirmed, this.peerAddressValidated(), !!this.spaces[Level.Handshake].write);
      this.onPacketsLost(r.lost);
      if (this.trace) this.trace.metrics(now);
      if (r.probe) {
        this.ptoProbes[r.probe.space] = r.probe.count;
        // Probe with data that is still unacknowledged: the oldest in-flight packets of that space.
        let n = 0;
        for (const p of this.loss.unackedPackets(r.probe.space)) {
          if (n++ >= 2) break;
          this.requeue(p.info);
        }
        if (this.role === 'client' && !this.handshakeDone && r.probe.space !== Level.OneRtt) {
          // Client anti-deadlock probe: resend what we have for the handshake.
          const sp = this.spaces[r.probe.space];
          if (sp.write && sp.cryptoSend.highestSent > 0) sp.cryptoSend.onLost(0, sp.cryptoSend.highestSent, false);
        }
      }
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
      for (const { dgram, h } of r) {
        try {
          this.receivePacket(dgram, h, this.remote, now);
        } catch (err) {
          this.onError(err, now);
        }
      }
    }
    if (this.state === 'closed' || this.state === 'draining') return null;
    if (this.state === 'closing') return this.buildClose();
    const d = this.buildDatagram(now);
    if (d) return d;
    const probe = this.pmtuProbeDue();
    return probe ? this.buildPmtuProbe(probe, now) : null;
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
    return this.buildDatagram(now, true);
  }

  private amplificationBudget(): number {
    if (this.addressValidated) return Infinity;
    return 3 * this.bytesReceived - this.bytesSent;
  }

  private buildClose(): Buffer | null {
    if (!this.sendCloseNow || !this.pendingClose) return null;
    this.sendCloseNow = false;
    const buf = this.scratchBuffer(this.pmtu.size);
    let off = 0;
    const budget = this.amplificationBudget();
    // Send the close at every level the peer might be able to read (RFC 9000 §10.2.3).
    for (const sp of this.spaces) {
      if (!sp.write || sp.discarded) continue;
      let f = this.pendingClose;
      if (sp.level !== Level.OneRtt && f.type === 'connection_close' && f.application) {
        // An application close is not allowed in Initial/Handshake packets: send APPLICATION_ERROR instead.
        f = { type: 'connection_close', application: false, errorCode: E.APPLICATION_ERROR, frameType: 0, reason: '' };
      }
      const room = Math.min(buf.length, budget) - off;
      const pb = this.builder;
      if (!pb.begin(off, sp, room, this.dcid.length, this.scid.length, this.loss.largestAcked(sp.level as 0 | 1 | 2))) continue;
      const pEnd = frameLength(f) > pb.payloadEnd - pb.payloadStart ? pb.payloadStart : writeFrame(buf, pb.payloadStart, f);
      const r = pb.finish(buf, pEnd);
      if (r === null) continue;
      off = r;
      if (this.cfg.onePacketPerDatagram) break;
    }
    if (off === 0) return null;
    this.builder.seal(buf, this.dcid, this.scid, this.keyUpdate.phase);
    return this.finishDatagram(buf, off);
  }

  private buildDatagram(now: number, ackOnly = false): Buffer | null {
    const mds = this.pmtu.size;
    const budget = this.amplificationBudget();
    if (budget < 64) return null;
    const limit = Math.min(mds, budget);
    const probing = this.ptoProbes[0] + this.ptoProbes[1] + this.ptoProbes[2] > 0;
    let congestionOk = !ackOnly && (probing || this.cc.canSend(mds));
    if (congestionOk && this.cfg.pacing && !probing && this.rtt.hasSample) {
      const t = this.pacer.nextSendTime(mds, this.cc.cwnd, this.rtt.smoothed, now);
      // Timers cannot wake us sooner than about a millisecond: within that, send now on credit (the pacer's
      // tokens go negative and later packets wait longer), so pacing never runs below the congestion rate.
      if (t > now + PACING_GRANULARITY) {
        congestionOk = false;
        this.timers.set(Timer.pacing, t);
      }
    }
    const buf = this.scratchBuffer(mds);
    let off = 0;
    let ackEliciting = false;
    let containsInitial = false;
    const packets: { sp: Space; pn: number; frames: SentFrame[]; size: number; eliciting: boolean; start: number }[] = [];
    const pathResponse = this.pending.pathResponses.length > 0;
    for (const sp of this.spaces) {
      if (!sp.write || sp.discarded) continue;
      if (sp.level === Level.OneRtt && !this.handshakeDone && this.role === 'server') {
        // The server may send 1-RTT data before the handshake completes (0.5-RTT); we keep it simple and wait.
      }
      if (sp.level === Level.OneRtt && this.role === 'client' && !this.handshakeDone) continue;
      const room = limit - off;
      if (room < 48) break;
      const start = off;
      const pb = this.builder;
      if (!pb.begin(off, sp, room, this.dcid.length, this.scid.length, this.loss.largestAcked(sp.level as 0 | 1 | 2))) continue;
      const frames: SentFrame[] = [];
      const w = this.writer;
      w.reset(buf, pb.payloadStart, pb.payloadEnd, frames);
      const eliciting = this.framer.fill(sp, w, congestionOk, this.ptoProbes[sp.level] > 0, now);
      const r = pb.finish(buf, w.off);
      if (r === null) continue;
      packets.push({ sp, pn: sp.nextPn - 1, frames, size: r - start, eliciting, start });
      if (eliciting) ackEliciting = true;
      if (sp.level === Level.Initial) containsInitial = true;
      off = r;
      if (sp.level === Level.Initial && this.role === 'client' && !this.firstHandshakeSent && sp.cryptoSend.unsentBytes > 0) break;
      if (this.cfg.onePacketPerDatagram) break;
    }
    if (off === 0) return null;
    // A datagram carrying an ack-eliciting Initial (and every client Initial) is padded to 1200 bytes (RFC 9000 §14.1),
    // and so is one carrying PATH_RESPONSE, within the amplification limit (RFC 9000 §8.2.2).
    const sentPathResponse = pathResponse && this.pending.pathResponses.length === 0;
    if (((containsInitial && (this.role === 'client' || ackEliciting)) || sentPathResponse) && off < MIN_INITIAL_DATAGRAM) {
      const last = packets[packets.length - 1];
      const padTo = Math.min(MIN_INITIAL_DATAGRAM, limit);
      if (padTo > off) {
        off = this.builder.padLast(buf, padTo);
        last.size = off - last.start;
      }
    }
    this.builder.seal(buf, this.dcid, this.scid, this.keyUpdate.phase);
    for (const p of packets) {
      if (p.sp.level === Level.Handshake && this.role === 'client' && !this.firstHandshakeSent) {
        this.firstHandshakeSent = true;
      }
    }
    const dgram = this.finishDatagram(buf, off);
    for (const p of packets) {
      this.loss.onPacketSent({
        pn: p.pn,
        space: p.sp.level as 0 | 1 | 2,
        timeSent: now,
        size: p.size,
        ackEliciting: p.eliciting,
        inFlight: p.eliciting || (containsInitial && p === packets[packets.length - 1] && off >= MIN_INITIAL_DATAGRAM),
        info: { level: p.sp.level, frames: p.frames, keyPhase: this.keyUpdate.phase },
      });
      if (p.eliciting) {
        const sp = p.sp.level;
        if (this.ptoProbes[sp] > 0) this.ptoProbes[sp]--;
      }
    }
    if (ackEliciting) this.pacer.onPacketSent(off, now);
    if (this.trace) this.trace.metrics(now);
    if (this.role === 'client' && this.firstHandshakeSent && !this.spaces[Level.Initial].discarded) {
      // RFC 9001 §4.9.1: a client discards Initial keys when it first sends a Handshake packet.
      this.discardSpace(Level.Initial);
    }
    if (ackEliciting) this.resetIdleOnSend(now);
    return dgram;
  }

  private lastEliciting = 0;

  private resetIdleOnSend(now: number): void {
    // RFC 9000 §10.1: sending an ack-eliciting packet restarts the idle timer only if nothing was sent since the last receive.
    if (this.lastEliciting < this.lastActivity) this.lastActivity = now;
    this.lastEliciting = now;
  }

  /**
   * Datagrams are built in a scratch buffer shared by all connections (connection/scratch.ts), so that a poll with
   * nothing to send (or an ACK of a few dozen bytes) allocates nothing and an idle connection holds no buffer.
   */
  private scratchBuffer(size: number): Buffer {
    return datagramScratch(size);
  }

  private finishDatagram(buf: Buffer, off: number): Buffer {
    this.bytesSent += off;
    this.stats.bytesSent += off;
    this.stats.packetsSent++;
    return takeDatagram(buf, off);
  }

  /** Lays out and seals the packets of a datagram; the frame writer fills their payloads (no closures per packet). */
  private readonly builder: PacketBuilder;
  private readonly writer = sharedFrameWriter;
  private readonly framer: Framer;

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
