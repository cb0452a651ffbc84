/**
 * One QUIC v1 connection (RFC 9000), sans-I/O: datagrams and `now` in; datagrams, events and a timer deadline out.
 *
 * - Packet protection and key update: RFC 9001 §5, §6 (crypto/keys.ts, packet/header.ts)
 * - Handshake over CRYPTO frames, key installation and discard: RFC 9001 §4 (tls/tls.ts)
 * - Streams and flow control: RFC 9000 §2–§4 (stream/*)
 * - ACKs, loss detection, PTO, congestion control and pacing: RFC 9002 (recovery/*)
 * - Connection IDs, path validation responses, closing/draining, idle timeout: RFC 9000 §5, §8.2, §10
 * - Anti-amplification before address validation: RFC 9000 §8.1
 */
import { randomBytes } from 'node:crypto';
import { Level, QUIC_V1, type Role } from './types.js';
import { TransportError, TransportErrorCode as E, TlsError, TlsAlert } from './errors.js';
import type { Address, CloseInfo, ConnectionConfig, ConnectionEvent, ConnectionState } from './connection-types.js';
import { TlsEndpoint, type TlsSecret } from './tls/tls.js';
import { initialSecrets } from './crypto/initial.js';
import { deriveKeys, nextGenerationKeys, type DirectionKeys } from './crypto/keys.js';
import { TLS_AES_128_GCM_SHA256 } from './crypto/suites.js';
import { verifyRetryIntegrity } from './crypto/retry.js';
import {
  PacketType,
  parseHeader,
  removeHeaderProtection,
  writeLongHeader,
  writeShortHeader,
  sealPacket,
  packetNumberLength,
  type PacketHeader,
} from './packet/header.js';
import {
  parseFrames,
  writeFrame,
  frameLength,
  streamFrameOverhead,
  writeStreamFrameHeader,
  isAckEliciting,
  type Frame,
  type PacketKind,
} from './frame/frames.js';
import {
  defaultTransportParameters,
  encodeTransportParameters,
  decodeTransportParameters,
  type TransportParameters,
} from './transport-params.js';
import { SendStream } from './stream/send.js';
import { RecvStream } from './stream/recv.js';
import { WindowTuner } from './stream/autotune.js';
import { ConnectionFlowControl } from './stream/flow.js';
import { isBidi, isLocal } from './stream/ids.js';
import { RttEstimator } from './recovery/rtt.js';
import { AckTracker } from './recovery/ack-tracker.js';
import { LossDetector, type SentPacket } from './recovery/loss.js';
import { NewReno } from './recovery/congestion.js';
import { Pacer } from './recovery/pacer.js';
import { DecodeError } from '../util/varint.js';
import { ConnectionTracer } from './tracer.js';
import type { QlogDropTrigger } from './trace.js';

/** What a sent packet carried that must be retransmitted or acted on when it is acknowledged or lost. */
type SentFrame =
  | { k: 'stream'; id: number; offset: number; len: number; fin: boolean }
  | { k: 'crypto'; level: Level; offset: number; len: number }
  | { k: 'ack'; largest: number }
  | { k: 'max_data' }
  | { k: 'max_stream_data'; id: number }
  | { k: 'max_streams'; bidi: boolean }
  | { k: 'data_blocked' }
  | { k: 'stream_data_blocked'; id: number }
  | { k: 'streams_blocked'; bidi: boolean }
  | { k: 'reset'; id: number }
  | { k: 'stop_sending'; id: number }
  | { k: 'handshake_done' }
  | { k: 'new_cid'; seq: number }
  | { k: 'retire_cid'; seq: number }
  | { k: 'ping' }
  | { k: 'pmtu'; size: number };

interface PacketInfo {
  level: Level;
  frames: SentFrame[];
  keyPhase: number;
}

interface Space {
  level: Level;
  read: DirectionKeys | null;
  write: DirectionKeys | null;
  acks: AckTracker;
  cryptoSend: SendStream;
  cryptoRecv: RecvStream;
  nextPn: number;
  discarded: boolean;
}

interface Stream {
  id: number;
  send: SendStream | null;
  recv: RecvStream | null;
  /** bufferedBytes was above the high-water mark: emit stream_drain when it falls. */
  wantDrain: boolean;
  /** A peer-opened stream whose slot was given back to the peer (MAX_STREAMS). */
  creditReturned: boolean;
  /** A stream_readable event is queued and the application has not read since: another would say nothing new. */
  readableQueued: boolean;
  /** Receive-window auto-tuning, made on the stream's first credit update. */
  tuner: WindowTuner | null;
}

interface PeerCid {
  seq: number;
  cid: Buffer;
  resetToken: Buffer | null;
}

const CRYPTO_BUFFER_LIMIT = 64 * 1024;
const STREAM_HIGH_WATER = 1024 * 1024;
const MIN_INITIAL_DATAGRAM = 1200;
const AEAD_TAG = 16;
/** Packets that arrive before their keys (reordered across the handshake) are kept this many at most. */
const MAX_UNDECRYPTABLE = 16;
const MAX_DATAGRAM_LIMIT = 65527;
const PACING_GRANULARITY = 1;
/** Datagrams up to this size are copied out of the scratch buffer into Node's buffer pool (see finishDatagram). */
const SMALL_DATAGRAM = 2048;
/** Datagram sizes PMTU discovery tries, in order, below the ceiling (which is tried last). */
const PMTU_STEPS = [1452, 4096, 8192, 16384];
const LOOPBACK_MAX_DATAGRAM = 16384;
const DEFAULT_CLIENT_HANDSHAKE_TIMEOUT = 10_000;

function isLoopback(address: string): boolean {
  return address.startsWith('127.') || address === '::1' || address.startsWith('::ffff:127.');
}

const LEVEL_KIND: PacketKind[] = ['initial', 'handshake', '1rtt'];

function levelOfType(t: PacketType): Level | null {
  if (t === PacketType.Initial) return Level.Initial;
  if (t === PacketType.Handshake) return Level.Handshake;
  if (t === PacketType.OneRtt) return Level.OneRtt;
  return null;
}

export class Connection {
  readonly role: Role;
  state: ConnectionState = 'handshake';
  remote: Address;
  /** Our connection IDs by sequence number. */
  readonly localCids = new Map<number, Buffer>();
  /** Incremented whenever localCids changes (the endpoint re-syncs its routing table then). */
  cidVersion = 0;
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
  private peerCids: PeerCid[] = [];
  private dcid: Buffer;
  private nextLocalCidSeq = 1;
  private pendingNewCids: number[] = [];
  private pendingRetireCids: number[] = [];
  private highestRetirePriorTo = 0;

  // recovery
  private readonly rtt = new RttEstimator();
  private readonly cc: NewReno;
  private readonly loss: LossDetector<PacketInfo>;
  private readonly pacer: Pacer;
  private ptoProbes = [0, 0, 0];

  // flow control and streams
  private flow: ConnectionFlowControl;
  private readonly connTuner: WindowTuner;
  /** The largest stream receive window auto-tuning reached: later streams start from it. */
  private learnedStreamWindow = 0;
  private readonly streams = new Map<number, Stream>();
  /** Streams with something to send now: new data within both credits, retransmissions, a FIN. */
  private readonly sendQueue = new Set<number>();
  /**
   * Streams whose new data waits only on the peer's connection-level credit (MAX_DATA). They leave the send queue
   * and all come back when MAX_DATA raises the limit; a stream waiting on its own credit comes back on its
   * MAX_STREAM_DATA instead.
   */
  private readonly connBlocked = new Set<number>();
  private readonly pendingMaxStreamData = new Set<number>();
  private readonly pendingStopSending = new Set<number>();
  private readonly pendingResets = new Set<number>();
  private readonly pendingStreamBlocked = new Set<number>();
  private pendingMaxData = false;
  /** DATA_BLOCKED / STREAM_DATA_BLOCKED / STREAMS_BLOCKED frames sent (RFC 9000 §4.1, §4.6): for logs and tests. */
  readonly blockedFramesSent = { data: 0, streamData: 0, streams: 0 };
  private pendingDataBlocked = false;
  private readonly pendingMaxStreams = [false, false]; // [uni, bidi]
  private readonly pendingStreamsBlocked = [false, false];
  private nextLocalStream = [0, 0]; // count of local streams opened [uni, bidi]
  private peerMaxStreams = [0, 0];
  private remoteStreamsOpened = [0, 0]; // highest remote stream index opened + 1
  private remoteStreamsClosed = [0, 0];
  private maxRemoteStreams = [0, 0]; // limits we advertised
  private readonly maxRemoteStreamsInitial = [0, 0];

  // handshake, keys and timers
  private handshakeDone = false;
  private handshakeConfirmed = false;
  private pendingHandshakeDone = false;
  private addressValidated: boolean;
  private bytesReceived = 0;
  private bytesSent = 0;
  private keyPhase = 0;
  private keyGeneration = 0;
  private nextRead: DirectionKeys | null = null;
  private prevRead: DirectionKeys | null = null;
  private prevReadDiscardAt = 0;
  /** The first packet number sent with the current write keys; a key update needs it acknowledged first. */
  private keyPhaseFirstPn = 0;
  private keyPhaseAcked = true;
  private lastActivity: number;
  private idleTimeout = 0;
  private closeDeadline = 0;
  private pendingClose: Frame | null = null;
  private sendCloseNow = false;
  private pendingPing = false;
  private pendingPathResponses: Buffer[] = [];
  private undecryptable: { dgram: Buffer; h: PacketHeader }[] = [];
  private firstHandshakeSent = false;
  /** Client: the server's source CID seen in its first packet, which becomes our DCID. */
  private serverCidLearned = false;
  private retireUnusedOdcid = false;
  stats = { packetsSent: 0, packetsReceived: 0, packetsLost: 0, bytesSent: 0, bytesReceived: 0, undecryptable: 0, datagramsReceived: 0 };
  /** Builds and emits trace events; null (and nothing built) unless ConnectionConfig.trace is set. */
  private readonly trace: ConnectionTracer | null = null;
  /** When an unfinished handshake is given up (0: never; see ConnectionConfig.handshakeTimeout). */
  private handshakeDeadline = 0;

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
    this.localCids.set(0, localCid);
    this.lastActivity = now;
    const handshakeTimeout = config.handshakeTimeout ?? (role === 'client' ? DEFAULT_CLIENT_HANDSHAKE_TIMEOUT : 0);
    if (handshakeTimeout > 0) this.handshakeDeadline = now + handshakeTimeout;
    this.addressValidated = role === 'client';
    this.cc = new NewReno(MIN_INITIAL_DATAGRAM);
    this.pacer = new Pacer(MIN_INITIAL_DATAGRAM);
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
    if (config.trace) {
      this.trace = new ConnectionTracer(config.trace, role, {
        rtt: this.rtt,
        cc: this.cc,
        largestAcked: (space) => this.loss.largestAcked(space),
        ptoCount: () => this.loss.ptoCount,
        pacing: this.cfg.pacing,
        ackDelayUnitUs: 2 ** p.ackDelayExponent,
      });
    }
    this.maxRemoteStreams = [p.initialMaxStreamsUni, p.initialMaxStreamsBidi];
    this.maxRemoteStreamsInitial[0] = p.initialMaxStreamsUni;
    this.maxRemoteStreamsInitial[1] = p.initialMaxStreamsBidi;
    this.flow = new ConnectionFlowControl(p.initialMaxData, 0);
    this.connTuner = new WindowTuner(p.initialMaxData, Math.max(p.initialMaxData, this.cfg.maxConnectionReceiveWindow));

    const secrets = initialSecrets(originalDcid);
    const mk = (level: Level): Space => ({
      level,
      read: null,
      write: null,
      acks: new AckTracker(level as 0 | 1 | 2, this.cfg.maxAckDelay),
      cryptoSend: new SendStream(-1 - level, Number.MAX_SAFE_INTEGER),
      cryptoRecv: new RecvStream(-1 - level, CRYPTO_BUFFER_LIMIT),
      nextPn: 0,
      discarded: false,
    });
    this.spaces = [mk(Level.Initial), mk(Level.Handshake), mk(Level.OneRtt)];
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
    this.dcid = originalDcid;
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
    c.dcid = clientScid;
    c.peerCids = [{ seq: 0, cid: clientScid, resetToken: null }];
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
    return this.keyGeneration;
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
    const t = bidi ? 1 : 0;
    this.onWake?.(this);
    if (this.nextLocalStream[t] >= this.peerMaxStreams[t]) {
      this.pendingStreamsBlocked[t] = true;
      return null;
    }
    const id = this.nextLocalStream[t]++ * 4 + (this.role === 'client' ? 0 : 1) + (bidi ? 0 : 2);
    this.createStream(id);
    return id;
  }

  /** Queues data on a stream (no copy: do not mutate `data` afterwards). Returns the bytes now buffered on it. */
  streamWrite(id: number, data: Buffer, fin = false): number {
    const s = this.sendSide(id);
    if (data.length) s.write(data);
    if (fin) s.end();
    this.sendQueue.add(id);
    this.onWake?.(this);
    const buffered = s.bufferedBytes;
    const st = this.streams.get(id);
    if (st && buffered > STREAM_HIGH_WATER) st.wantDrain = true;
    return buffered;
  }

  streamEnd(id: number): void {
    this.streamWrite(id, Buffer.alloc(0), true);
  }

  /** The receive windows credit updates currently extend by (they auto-tune): the connection's, and a stream's. */
  get connectionReceiveWindow(): number {
    return this.connTuner.value;
  }

  streamReceiveWindow(id: number): number | null {
    return this.streams.get(id)?.recv?.window ?? null;
  }

  streamBufferedBytes(id: number): number {
    return this.streams.get(id)?.send?.bufferedBytes ?? 0;
  }

  /** Reads in-order data; null when nothing is readable now. */
  streamRead(id: number, max?: number): Buffer | null {
    const st = this.streams.get(id);
    if (!st?.recv) return null;
    st.readableQueued = false;
    const b = st.recv.read(max);
    if (b) {
      this.flow.onDataConsumed(b.length);
      if (st.recv.maxStreamDataUpdate() !== null) this.pendingMaxStreamData.add(id);
      if (this.flow.maxDataUpdate() !== null) this.pendingMaxData = true;
    }
    this.maybeRetireStream(st);
    this.onWake?.(this); // credit (MAX_STREAM_DATA, MAX_DATA, MAX_STREAMS) may be due
    return b;
  }

  /** True once the peer's FIN has been received and all data read. */
  streamFinished(id: number): boolean {
    const st = this.streams.get(id);
    if (!st) return true;
    return st.recv ? st.recv.finished : true;
  }

  streamReset(id: number, code: number): void {
    const st = this.streams.get(id);
    if (!st?.send) return;
    if (st.send.state === 'data_recvd' || st.send.state === 'reset_sent' || st.send.state === 'reset_recvd') return;
    st.send.reset(code);
    this.sendQueue.delete(id);
    this.connBlocked.delete(id);
    this.pendingResets.add(id);
    this.onWake?.(this);
  }

  streamStopSending(id: number, code: number): void {
    const st = this.streams.get(id);
    if (!st?.recv) return;
    if (st.recv.finished || st.recv.state === 'reset_recvd' || st.recv.state === 'reset_read') return;
    const unread = st.recv.readableBytes;
    st.recv.stopSending(code);
    // data we will never read no longer holds connection credit
    if (unread) this.flow.onDataConsumed(unread);
    this.pendingStopSending.add(id);
    this.onWake?.(this);
  }

  hasStream(id: number): boolean {
    return this.streams.has(id);
  }

  /** Closes the connection: CONNECTION_CLOSE with an application (default) or transport error code. */
  close(code = 0, reason = '', application = true, now?: number): void {
    if (this.state === 'closing' || this.state === 'draining' || this.state === 'closed') return;
    this.enterClosing({ by: 'local', application, code, reason }, now ?? this.lastActivity);
    this.onWake?.(this);
  }

  /** Starts a key update (RFC 9001 §6.1). False when not allowed yet (handshake not confirmed or previous update unacked). */
  initiateKeyUpdate(): boolean {
    if (!this.handshakeConfirmed || !this.keyPhaseAcked || this.state !== 'established') return false;
    if (!this.rotateKeys('local')) return false;
    // Old-phase packets keep arriving until the peer switches; the first new-phase one sets the boundary.
    this.keyPhaseFirstPnRecv = Number.MAX_SAFE_INTEGER;
    this.prevReadDiscardAt = 0; // set when the first packet of the new phase is received
    this.onWake?.(this);
    return true;
  }

  /** Moves both directions to the next key generation and flips the key phase (RFC 9001 §6). */
  private rotateKeys(by: 'local' | 'peer'): boolean {
    const app = this.spaces[Level.OneRtt];
    if (!app.write || !app.read) return false;
    this.prevRead = app.read;
    app.read = this.nextRead ?? nextGenerationKeys(app.read);
    this.nextRead = nextGenerationKeys(app.read);
    app.write = nextGenerationKeys(app.write);
    this.keyPhase ^= 1;
    this.keyGeneration++;
    this.keyPhaseFirstPn = app.nextPn;
    this.keyPhaseAcked = false;
    this.events.push({ type: 'key_update', generation: this.keyGeneration, initiatedBy: by });
    if (this.trace) this.trace.keysRotated(this.keyGeneration, by, this.lastNow);
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
    const aad = dgram.subarray(h.start, un.headerEnd);
    const ct = dgram.subarray(un.headerEnd, h.end);
    let keys = space.read;
    let phaseChange = false;
    if (level === Level.OneRtt && un.keyPhase !== this.keyPhase) {
      // Either a reordered packet from the previous phase or the peer's key update (RFC 9001 §6.3).
      if (this.prevRead && un.pn < this.keyPhaseFirstPnRecv) keys = this.prevRead;
      else {
        if (!this.handshakeConfirmed && this.role === 'server' && !this.handshakeDone) return this.dropped(h, 'key_unavailable');
        keys = this.nextRead ?? nextGenerationKeys(space.read);
        phaseChange = true;
      }
    }
    const payload = keys.aead.open(un.pn, aad, ct);
    if (!payload) {
      this.stats.undecryptable++;
      return this.dropped(h, 'payload_decrypt_error');
    }
    // Reserved bits must be zero after removing protection (RFC 9000 §17.2, §17.3.1).
    const reserved = h.type === PacketType.OneRtt ? un.firstByte & 0x18 : un.firstByte & 0x0c;
    if (reserved !== 0) throw new TransportError(E.PROTOCOL_VIOLATION, 'reserved header bits are not zero');
    if (space.acks.isDuplicate(un.pn)) return this.dropped(h, 'duplicate');

    if (phaseChange) this.onPeerKeyUpdate(un.pn, now);
    else if (level === Level.OneRtt && keys === space.read && this.prevRead && this.prevReadDiscardAt === 0) {
      this.prevReadDiscardAt = now + 3 * this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true);
      if (this.keyPhaseFirstPnRecv < 0 || un.pn < this.keyPhaseFirstPnRecv) this.keyPhaseFirstPnRecv = un.pn;
    }

    if (this.role === 'client' && !this.serverCidLearned && h.scid.length >= 0 && level !== Level.OneRtt) {
      this.dcid = Buffer.from(h.scid);
      this.peerCids = [{ seq: 0, cid: this.dcid, resetToken: null }];
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

  private keyPhaseFirstPnRecv = -1;
  /** Microseconds per unit of the peer's ACK Delay field: 2^ack_delay_exponent (RFC 9000 §18.2), 8 by default. */
  private ackDelayUnit = 8;

  private onPeerKeyUpdate(pn: number, now: number): void {
    if (!this.keyPhaseAcked) {
      // The peer may not update again before acknowledging our update's packets (RFC 9001 §6.2).
      throw new TransportError(E.KEY_UPDATE_ERROR, 'key update before the previous one was acknowledged');
    }
    if (!this.rotateKeys('peer')) return;
    this.keyPhaseFirstPnRecv = pn;
    this.prevReadDiscardAt = now + 3 * this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true);
  }

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
        return this.onStreamFrame(f.streamId, f.offset, f.data, f.fin);
      case 'reset_stream': {
        const st = this.recvStreamFor(f.streamId, 'RESET_STREAM');
        if (!st?.recv) return;
        const before = st.recv.readableBytes;
        const grew = st.recv.onReset(f.errorCode, f.finalSize);
        this.flow.onDataReceived(grew);
        // Unread data of a reset stream is released back to connection flow control.
        this.flow.onDataConsumed(grew + before);
        if (this.flow.maxDataUpdate() !== null) this.pendingMaxData = true;
        this.events.push({ type: 'stream_reset', id: f.streamId, code: f.errorCode });
        this.maybeRetireStream(st);
        return;
      }
      case 'stop_sending': {
        const st = this.sendStreamFor(f.streamId, 'STOP_SENDING');
        if (!st?.send) return;
        const before = st.send.state;
        st.send.onStopSending(f.errorCode);
        if (before !== st.send.state && st.send.pendingReset) {
          this.sendQueue.delete(f.streamId);
          this.connBlocked.delete(f.streamId);
          this.pendingResets.add(f.streamId);
        }
        this.events.push({ type: 'stop_sending', id: f.streamId, code: f.errorCode });
        return;
      }
      case 'max_data':
        if (this.flow.setPeerMaxData(f.max) && this.connBlocked.size > 0) {
          for (const id of this.connBlocked) this.sendQueue.add(id);
          this.connBlocked.clear();
        }
        return;
      case 'max_stream_data': {
        const st = this.sendStreamFor(f.streamId, 'MAX_STREAM_DATA');
        if (!st?.send) return;
        st.send.setMaxStreamData(f.max);
        if (st.send.hasSendable(Number.MAX_SAFE_INTEGER)) this.sendQueue.add(f.streamId);
        return;
      }
      case 'max_streams': {
        const t = f.bidi ? 1 : 0;
        if (f.max > this.peerMaxStreams[t]) {
          this.peerMaxStreams[t] = f.max;
          this.events.push({ type: 'streams_available', bidi: f.bidi });
        }
        return;
      }
      case 'data_blocked':
      case 'stream_data_blocked':
      case 'streams_blocked':
        // Informational; our credit is extended as the application reads.
        if (f.type === 'stream_data_blocked') this.recvStreamFor(f.streamId, 'STREAM_DATA_BLOCKED');
        return;
      case 'new_token':
        if (this.role === 'server') throw new TransportError(E.PROTOCOL_VIOLATION, 'NEW_TOKEN from a client', 0x07);
        return;
      case 'new_connection_id':
        return this.onNewConnectionId(f.seq, f.retirePriorTo, f.cid, f.resetToken);
      case 'retire_connection_id': {
        if (f.seq >= this.nextLocalCidSeq)
          throw new TransportError(E.PROTOCOL_VIOLATION, `RETIRE_CONNECTION_ID for unissued sequence ${f.seq}`, 0x19);
        const cid = this.localCids.get(f.seq);
        if (cid) {
          this.localCids.delete(f.seq);
          this.cidVersion++;
          this.issueConnectionIds();
        }
        return;
      }
      case 'path_challenge':
        if (this.pendingPathResponses.length < 4) this.pendingPathResponses.push(Buffer.from(f.data));
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
    if (p.info.level === Level.OneRtt && !this.keyPhaseAcked && p.pn >= this.keyPhaseFirstPn) this.keyPhaseAcked = true;
    for (const f of p.info.frames) {
      switch (f.k) {
        case 'stream': {
          const st = this.streams.get(f.id);
          if (!st?.send) break;
          st.send.onAck(f.offset, f.len, f.fin);
          if (st.wantDrain && st.send.bufferedBytes <= STREAM_HIGH_WATER / 2) {
            st.wantDrain = false;
            this.events.push({ type: 'stream_drain', id: f.id });
          }
          this.maybeRetireStream(st);
          break;
        }
        case 'crypto':
          this.spaces[f.level].cryptoSend.onAck(f.offset, f.len, false);
          break;
        case 'ack':
          space.acks.onAckOfAckReceived(f.largest);
          break;
        case 'reset': {
          const st = this.streams.get(f.id);
          if (st?.send) {
            st.send.onResetAcked();
            this.maybeRetireStream(st);
          }
          break;
        }
        case 'pmtu':
          this.onPmtuProbeAcked(f.size);
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
        case 'stream': {
          const st = this.streams.get(f.id);
          if (!st?.send) break;
          st.send.onLost(f.offset, f.len, f.fin);
          if (st.send.hasSendable(0)) this.sendQueue.add(f.id);
          break;
        }
        case 'crypto': {
          const sp = this.spaces[f.level];
          if (!sp.discarded) sp.cryptoSend.onLost(f.offset, f.len, false);
          break;
        }
        case 'max_data':
          this.pendingMaxData = true;
          break;
        case 'max_stream_data':
          if (this.streams.get(f.id)?.recv) this.pendingMaxStreamData.add(f.id);
          break;
        case 'max_streams':
          this.pendingMaxStreams[f.bidi ? 1 : 0] = true;
          break;
        case 'data_blocked':
          this.pendingDataBlocked = true;
          break;
        case 'stream_data_blocked':
          if (this.streams.has(f.id)) this.pendingStreamBlocked.add(f.id);
          break;
        case 'streams_blocked':
          this.pendingStreamsBlocked[f.bidi ? 1 : 0] = true;
          break;
        case 'reset': {
          const st = this.streams.get(f.id);
          if (st?.send) {
            st.send.onResetLost();
            this.pendingResets.add(f.id);
          }
          break;
        }
        case 'stop_sending': {
          const st = this.streams.get(f.id);
          if (st?.recv && st.recv.state !== 'reset_recvd' && st.recv.state !== 'reset_read' && !st.recv.finished)
            this.pendingStopSending.add(f.id);
          break;
        }
        case 'handshake_done':
          this.pendingHandshakeDone = true;
          break;
        case 'new_cid':
          if (this.localCids.has(f.seq)) this.pendingNewCids.push(f.seq);
          break;
        case 'retire_cid':
          this.pendingRetireCids.push(f.seq);
          break;
        case 'pmtu':
          this.onPmtuProbeLost(f.size);
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
      this.state = 'established';
      this.events.push({ type: 'handshake_complete', alpn: this.tls.alpn ?? '', cipher: this.tls.cipherSuite?.name ?? '' });
      if (this.trace) this.trace.handshakeComplete(this.tls.cipherSuite?.name ?? '', this.tls.alpn ?? '', this.tls.clientRandom, this.lastNow);
      if (this.role === 'server') {
        this.pendingHandshakeDone = true;
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
    if (s.level === Level.OneRtt && s.direction === 'read') this.nextRead = nextGenerationKeys(keys);
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
    this.flow.setPeerMaxData(p.initialMaxData);
    this.peerMaxStreams = [p.initialMaxStreamsUni, p.initialMaxStreamsBidi];
    if (p.statelessResetToken && this.peerCids[0]) this.peerCids[0].resetToken = p.statelessResetToken;
    const ours = this.localParams.maxIdleTimeout;
    const theirs = p.maxIdleTimeout;
    this.idleTimeout = ours && theirs ? Math.min(ours, theirs) : ours || theirs;
    // Streams opened before the parameters arrived get their send limits now.
    for (const st of this.streams.values()) if (st.send) st.send.setMaxStreamData(this.peerStreamLimit(st.id));
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

  private onNewConnectionId(seq: number, retirePriorTo: number, cid: Buffer, token: Buffer): void {
    if (this.dcid.length === 0)
      throw new TransportError(E.PROTOCOL_VIOLATION, 'NEW_CONNECTION_ID while using a zero-length connection ID', 0x18);
    const existing = this.peerCids.find((c) => c.seq === seq);
    if (existing) {
      if (!existing.cid.equals(cid)) throw new TransportError(E.PROTOCOL_VIOLATION, 'NEW_CONNECTION_ID reuses a sequence number', 0x18);
      return;
    }
    if (seq < this.highestRetirePriorTo) {
      this.pendingRetireCids.push(seq);
      return;
    }
    this.peerCids.push({ seq, cid: Buffer.from(cid), resetToken: Buffer.from(token) });
    if (retirePriorTo > this.highestRetirePriorTo) {
      this.highestRetirePriorTo = retirePriorTo;
      const keep: PeerCid[] = [];
      for (const c of this.peerCids) {
        if (c.seq < retirePriorTo) this.pendingRetireCids.push(c.seq);
        else keep.push(c);
      }
      this.peerCids = keep;
      if (!this.peerCids.some((c) => c.cid.equals(this.dcid)) && this.peerCids.length) this.dcid = this.peerCids[0].cid;
    }
    if (this.peerCids.length > this.localParams.activeConnectionIdLimit)
      throw new TransportError(E.CONNECTION_ID_LIMIT_ERROR, `more than ${this.localParams.activeConnectionIdLimit} active connection IDs`, 0x18);
  }

  /** Issues NEW_CONNECTION_IDs up to the peer's active_connection_id_limit (at most 3 spare ones). */
  private issueConnectionIds(): void {
    if (!this.handshakeDone || !this.peerParams) return;
    const want = Math.min(this.peerParams.activeConnectionIdLimit, 4);
    while (this.localCids.size < want) {
      const seq = this.nextLocalCidSeq++;
      const cid = randomBytes(this.cfg.cidLength);
      this.localCids.set(seq, cid);
      this.cidVersion++;
      this.pendingNewCids.push(seq);
    }
  }

  private resetTokenFor(seq: number): Buffer {
    // Stateless reset is not implemented yet: tokens are random and unused.
    let t = this.resetTokens.get(seq);
    if (!t) {
      t = randomBytes(16);
      this.resetTokens.set(seq, t);
    }
    return t;
  }

  private readonly resetTokens = new Map<number, Buffer>();

  // ---------------------------------------------------------------- streams

  private streamType(id: number): number {
    return isBidi(id) ? 1 : 0;
  }

  private peerStreamLimit(id: number): number {
    const p = this.peerParams;
    if (!p) return 0;
    if (!isBidi(id)) return p.initialMaxStreamDataUni;
    // For a stream we opened, the peer's "remote" limit applies; for one they opened, their "local" one.
    return isLocal(id, this.role) ? p.initialMaxStreamDataBidiRemote : p.initialMaxStreamDataBidiLocal;
  }

  private ourStreamLimit(id: number): number {
    const p = this.localParams;
    if (!isBidi(id)) return p.initialMaxStreamDataUni;
    return isLocal(id, this.role) ? p.initialMaxStreamDataBidiLocal : p.initialMaxStreamDataBidiRemote;
  }

  private createStream(id: number): Stream {
    const local = isLocal(id, this.role);
    const bidi = isBidi(id);
    const st: Stream = {
      id,
      send: bidi || local ? new SendStream(id, this.peerStreamLimit(id)) : null,
      recv: bidi || !local ? new RecvStream(id, this.ourStreamLimit(id)) : null,
      wantDrain: false,
      creditReturned: false,
      readableQueued: false,
      tuner: null,
    };
    if (st.recv && this.learnedStreamWindow > this.ourStreamLimit(id)) st.recv.setWindow(this.learnedStreamWindow);
    this.streams.set(id, st);
    if (this.trace) this.trace.streamState(id, 'open', this.lastNow);
    return st;
  }

  /** The stream for a frame that carries data to us; opens remote streams implicitly (RFC 9000 §3.2). */
  private recvStreamFor(id: number, frame: string): Stream | null {
    const local = isLocal(id, this.role);
    if (local && !isBidi(id))
      throw new TransportError(E.STREAM_STATE_ERROR, `${frame} on send-only stream ${id}`, 0x04);
    return this.getOrOpen(id, frame);
  }

  /** The stream for a frame about data we send. */
  private sendStreamFor(id: number, frame: string): Stream | null {
    const local = isLocal(id, this.role);
    if (!local && !isBidi(id))
      throw new TransportError(E.STREAM_STATE_ERROR, `${frame} on receive-only stream ${id}`, 0x05);
    return this.getOrOpen(id, frame);
  }

  private getOrOpen(id: number, frame: string): Stream | null {
    const st = this.streams.get(id);
    if (st) return st;
    const t = this.streamType(id);
    const index = Math.floor(id / 4);
    if (isLocal(id, this.role)) {
      if (index >= this.nextLocalStream[t])
        throw new TransportError(E.STREAM_STATE_ERROR, `${frame} on stream ${id} that we have not opened`);
      return null; // already closed and forgotten
    }
    if (index < this.remoteStreamsOpened[t]) return null; // closed and forgotten
    if (index >= this.maxRemoteStreams[t])
      throw new TransportError(E.STREAM_LIMIT_ERROR, `stream ${id} exceeds the limit of ${this.maxRemoteStreams[t]}`);
    let opened: Stream | null = null;
    for (let i = this.remoteStreamsOpened[t]; i <= index; i++) {
      const sid = i * 4 + (this.role === 'client' ? 1 : 0) + (t === 1 ? 0 : 2);
      opened = this.createStream(sid);
      this.events.push({ type: 'stream_open', id: sid });
    }
    this.remoteStreamsOpened[t] = index + 1;
    return opened;
  }

  private sendSide(id: number): SendStream {
    const st = this.streams.get(id);
    if (!st) throw new Error(`stream ${id} is not open`);
    if (!st.send) throw new Error(`stream ${id} is receive-only`);
    return st.send;
  }

  private onStreamFrame(id: number, offset: number, data: Buffer, fin: boolean): void {
    const st = this.recvStreamFor(id, 'STREAM');
    if (!st?.recv) return;
    const grew = st.recv.onData(offset, data, fin, true);
    if (grew) this.flow.onDataReceived(grew);
    if (st.recv.pendingStopSending !== null) {
      // Data for a stream the application stopped is counted and dropped.
      const n = st.recv.readableBytes;
      if (n) {
        st.recv.read();
        this.flow.onDataConsumed(n);
      }
      return;
    }
    if (st.readableQueued) return;
    if (st.recv.readableBytes > 0 || st.recv.finished || (fin && st.recv.readableBytes === 0)) {
      st.readableQueued = true;
      this.events.push({ type: 'stream_readable', id });
    }
  }

  /** Forgets a stream once both directions are finished, and returns stream credit to the peer. */
  private maybeRetireStream(st: Stream): void {
    const recvDone = this.recvDone(st);
    this.maybeReturnCredit(st, recvDone);
    const sendDone = !st.send || st.send.state === 'data_recvd' || st.send.state === 'reset_recvd';
    if (!sendDone || !recvDone) return;
    if (this.pendingResets.has(st.id) || this.pendingStopSending.has(st.id)) return;
    this.streams.delete(st.id);
    if (this.trace) this.trace.streamState(st.id, 'closed', this.lastNow);
    this.sendQueue.delete(st.id);
    this.connBlocked.delete(st.id);
    this.pendingMaxStreamData.delete(st.id);
    this.pendingStreamBlocked.delete(st.id);
  }

  private recvDone(st: Stream): boolean {
    return !st.recv || st.recv.state === 'data_read' || st.recv.state === 'reset_read' || st.recv.state === 'reset_recvd' || st.recv.finished;
  }

  /**
   * Gives a peer-opened stream's slot back (MAX_STREAMS) once the application is done with it: everything read and
   * our side finished sending. Its acknowledgements may still be outstanding; the stream state lives on until then,
   * but the peer need not wait a round trip for the next stream.
   */
  private maybeReturnCredit(st: Stream, recvDone = this.recvDone(st)): void {
    if (st.creditReturned || isLocal(st.id, this.role) || !recvDone) return;
    if (st.send && st.send.state !== 'data_sent' && st.send.state !== 'data_recvd' && st.send.state !== 'reset_sent' && st.send.state !== 'reset_recvd') return;
    st.creditReturned = true;
    const t = this.streamType(st.id);
    this.remoteStreamsClosed[t]++;
    // Extend the peer's stream credit when half of the initial window has been used up.
    const target = this.remoteStreamsClosed[t] + this.maxRemoteStreamsInitial[t];
    if (target - this.maxRemoteStreams[t] >= Math.max(1, this.maxRemoteStreamsInitial[t] / 2)) {
      this.maxRemoteStreams[t] = target;
      this.pendingMaxStreams[t] = true;
    }
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
    this.closeDeadline = now + 3 * this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true);
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
    this.closeDeadline = now + 3 * this.rtt.pto(this.peerParams?.maxAckDelay ?? 25, true);
    this.clearSendState();
    this.emitClosed();
  }

  private clearSendState(): void {
    this.sendQueue.clear();
    this.connBlocked.clear();
    this.pendingMaxStreamData.clear();
    this.pendingStopSending.clear();
    this.pendingResets.clear();
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

  /** The time at which `handleTimeout` must be called, or null. */
  nextTimeout(): number | null {
    if (this.state === 'closed') return null;
    if (this.state === 'closing' || this.state === 'draining') return this.closeDeadline;
    let t = Infinity;
    const idle = this.idleDeadline();
    if (idle !== null) t = Math.min(t, idle);
    if (this.handshakeDeadline && !this.handshakeDone) t = Math.min(t, this.handshakeDeadline);
    const lossT = this.loss.timerDeadline(this.handshakeConfirmed, this.peerAddressValidated(), !!this.spaces[Level.Handshake].write, this.lastNow);
    if (lossT !== null) t = Math.min(t, lossT);
    for (const sp of this.spaces) {
      if (sp.discarded || !sp.write) continue;
      const a = sp.acks.ackDeadline();
      if (a !== null) t = Math.min(t, a);
    }
    if (this.prevReadDiscardAt) t = Math.min(t, this.prevReadDiscardAt);
    if (this.pacingUntil) t = Math.min(t, this.pacingUntil);
    return t === Infinity ? null : t;
  }

  private pacingUntil = 0;

  // ---------------------------------------------------------------- path MTU discovery (RFC 9000 §14.3)

  /** The datagram size in use: 1200 until a larger probe is acknowledged. */
  private mtu = MIN_INITIAL_DATAGRAM;
  /** Sizes still to try, ascending; the probe in flight, and failures of the current size. */
  private pmtuCandidates: number[] | null = null;
  private pmtuProbing = 0;
  private pmtuFailures = 0;

  get datagramSize(): number {
    return this.mtu;
  }

  private pmtuProbeDue(): boolean {
    if (!this.handshakeConfirmed || this.state !== 'established' || this.pmtuProbing || !this.peerParams) return false;
    if (this.pmtuCandidates === null) {
      const ceiling = Math.min(this.cfg.maxDatagramSize, this.peerParams.maxUdpPayloadSize);
      this.pmtuCandidates = PMTU_STEPS.filter((s) => s > this.mtu && s < ceiling);
      if (ceiling > this.mtu) this.pmtuCandidates.push(ceiling);
    }
    return this.pmtuCandidates.length > 0;
  }

  /** A PMTU probe: one 1-RTT packet with PING and PADDING filling a datagram of the candidate size. */
  private buildPmtuProbe(now: number): Buffer | null {
    const size = this.pmtuCandidates![0];
    const sp = this.spaces[Level.OneRtt];
    if (!sp.write) return null;
    const buf = Buffer.allocUnsafe(size);
    const end = this.writePacket(buf, 0, sp, size, (b, o, e) => {
      b[o] = 0x01; // PING
      b.fill(0, o + 1, e); // PADDING to the end
      return e;
    });
    if (end === null) return null;
    const pn = sp.nextPn - 1;
    this.sealPackets(buf);
    this.pmtuProbing = size;
    // Not counted in flight: the loss of a probe says nothing about congestion (RFC 9000 §14.4).
    this.loss.onPacketSent({
      pn,
      space: Level.OneRtt,
      timeSent: now,
      size: end,
      ackEliciting: true,
      inFlight: false,
      info: { level: Level.OneRtt, frames: [{ k: 'pmtu', size }], keyPhase: this.keyPhase },
    });
    return this.finishDatagram(buf, end);
  }

  private onPmtuProbeAcked(size: number): void {
    if (size !== this.pmtuProbing) return;
    this.pmtuProbing = 0;
    this.pmtuFailures = 0;
    this.pmtuCandidates!.shift();
    if (size > this.mtu) {
      this.mtu = size;
      this.cc.setMaxDatagramSize(size);
      this.pacer.maxDatagramSize = size;
    }
  }

  private onPmtuProbeLost(size: number): void {
    if (size !== this.pmtuProbing) return;
    this.pmtuProbing = 0;
    // Three losses in a row: this size does not pass; stop searching (RFC 8899 MAX_PROBES).
    if (++this.pmtuFailures >= 3) this.pmtuCandidates = [];
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
    if (this.state === 'closing' || this.state === 'draining') {
      if (now >= this.closeDeadline) this.finishClose();
      return;
    }
    const idle = this.idleDeadline();
    if (idle !== null && now >= idle) {
      this.closeInfo = { by: 'idle', application: false, code: 0, reason: 'idle timeout' };
      this.finishClose();
      return;
    }
    if (this.handshakeDeadline && !this.handshakeDone && now >= this.handshakeDeadline) return this.onHandshakeTimeout(now);
    if (this.prevReadDiscardAt && now >= this.prevReadDiscardAt) {
      this.prevRead = null;
      this.prevReadDiscardAt = 0;
      if (this.trace) this.trace.oldReadKeyDiscarded(this.keyGeneration - 1, now);
    }
    if (this.pacingUntil && now >= this.pacingUntil) this.pacingUntil = 0;
    const lossT = this.loss.timerDeadline(this.handshakeConfirmed, this.peerAddressValidated(), !!this.spaces[Level.Handshake].write, now);
    if (lossT !== null && now >= lossT) {
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
    if (d || !this.pmtuProbeDue()) return d;
    return this.buildPmtuProbe(now);
  }

  private amplificationBudget(): number {
    if (this.addressValidated) return Infinity;
    return 3 * this.bytesReceived - this.bytesSent;
  }

  private buildClose(): Buffer | null {
    if (!this.sendCloseNow || !this.pendingClose) return null;
    this.sendCloseNow = false;
    const buf = this.scratchBuffer(this.mtu);
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
      const r = this.writePacket(buf, off, sp, room, (b, o, end) => {
        if (frameLength(f) > end - o) return o;
        return writeFrame(b, o, f);
      });
      if (r === null) continue;
      off = r;
      if (this.cfg.onePacketPerDatagram) break;
    }
    if (off === 0) return null;
    this.sealPackets(buf);
    return this.finishDatagram(buf, off);
  }

  private buildDatagram(now: number): Buffer | null {
    const mds = this.mtu;
    const budget = this.amplificationBudget();
    if (budget < 64) return null;
    const limit = Math.min(mds, budget);
    const probing = this.ptoProbes[0] + this.ptoProbes[1] + this.ptoProbes[2] > 0;
    let congestionOk = probing || this.cc.canSend(mds);
    if (congestionOk && this.cfg.pacing && !probing && this.rtt.hasSample) {
      const t = this.pacer.nextSendTime(mds, this.cc.cwnd, this.rtt.smoothed, now);
      // Timers cannot wake us sooner than about a millisecond: within that, send now on credit (the pacer's
      // tokens go negative and later packets wait longer), so pacing never runs below the congestion rate.
      if (t > now + PACING_GRANULARITY) {
        congestionOk = false;
        this.pacingUntil = t;
      }
    }
    const buf = this.scratchBuffer(mds);
    let off = 0;
    let ackEliciting = false;
    let containsInitial = false;
    const packets: { sp: Space; pn: number; frames: SentFrame[]; size: number; eliciting: boolean; start: number }[] = [];
    const pathResponse = this.pendingPathResponses.length > 0;
    for (const sp of this.spaces) {
      if (!sp.write || sp.discarded) continue;
      if (sp.level === Level.OneRtt && !this.handshakeDone && this.role === 'server') {
        // The server may send 1-RTT data before the handshake completes (0.5-RTT); we keep it simple and wait.
      }
      if (sp.level === Level.OneRtt && this.role === 'client' && !this.handshakeDone) continue;
      const room = limit - off;
      if (room < 48) break;
      const frames: SentFrame[] = [];
      let eliciting = false;
      const start = off;
      const r = this.writePacket(buf, off, sp, room, (b, o, end) => {
        const res = this.fillFrames(sp, b, o, end, congestionOk, frames, now);
        eliciting = res.eliciting;
        return res.off;
      });
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
    const sentPathResponse = pathResponse && this.pendingPathResponses.length === 0;
    if (((containsInitial && (this.role === 'client' || ackEliciting)) || sentPathResponse) && off < MIN_INITIAL_DATAGRAM) {
      const last = packets[packets.length - 1];
      const padTo = Math.min(MIN_INITIAL_DATAGRAM, limit);
      if (padTo > off) {
        off = this.padLastPacket(buf, padTo);
        last.size = off - last.start;
      }
    }
    this.sealPackets(buf);
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
        info: { level: p.sp.level, frames: p.frames, keyPhase: this.keyPhase },
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
   * Datagrams are built in a scratch buffer of the current datagram size, so that a poll with nothing to send (or an
   * ACK of a few dozen bytes) does not allocate a fresh 16 KiB buffer. finishDatagram copies a small datagram out
   * (Node's buffer pool makes that cheap) and keeps the scratch; a large one takes the scratch itself.
   */
  private scratch: Buffer | null = null;

  private scratchBuffer(size: number): Buffer {
    let s = this.scratch;
    if (s === null || s.length < size) s = this.scratch = Buffer.allocUnsafe(size);
    return s;
  }

  private finishDatagram(buf: Buffer, off: number): Buffer {
    this.bytesSent += off;
    this.stats.bytesSent += off;
    this.stats.packetsSent++;
    if (buf !== this.scratch) return buf.subarray(0, off);
    if (off <= SMALL_DATAGRAM) {
      const out = Buffer.allocUnsafe(off);
      buf.copy(out, 0, 0, off);
      return out;
    }
    this.scratch = null;
    return buf.subarray(0, off);
  }

  /**
   * Lays out one packet at `off` for space `sp` in at most `room` bytes: header space, then the frames written by
   * `fill` into [o, end), then room for the AEAD tag. The packet is sealed later by sealPackets, so that padding can
   * still be added to the last packet of a datagram. Returns the end of the packet (tag included), or null when
   * `fill` wrote nothing.
   */
  private writePacket(
    buf: Buffer,
    off: number,
    sp: Space,
    room: number,
    fill: (b: Buffer, o: number, end: number) => number,
  ): number | null {
    const pn = sp.nextPn;
    const pnLen = packetNumberLength(pn, this.loss.largestAcked(sp.level as 0 | 1 | 2));
    const long = sp.level !== Level.OneRtt;
    const headerLen = long
      ? 1 + 4 + 1 + this.dcid.length + 1 + this.scid.length + (sp.level === Level.Initial ? 1 : 0) + 2 + pnLen
      : 1 + this.dcid.length + pnLen;
    const payloadStart = off + headerLen;
    const end = off + room - AEAD_TAG;
    if (end - payloadStart < 8) return null;
    let pEnd = fill(buf, payloadStart, end);
    if (pEnd === payloadStart) return null;
    // The header-protection sample needs 4 bytes after the packet number start beyond pnLen (RFC 9001 §5.4.2).
    while (pEnd - payloadStart + pnLen < 4) buf[pEnd++] = 0;
    this.unsealed.push({ start: off, pn, pnLen, headerLen, level: sp.level, payloadEnd: pEnd, keys: sp.write! });
    sp.nextPn++;
    return pEnd + AEAD_TAG;
  }

  private readonly unsealed: {
    start: number;
    pn: number;
    pnLen: number;
    headerLen: number;
    level: Level;
    payloadEnd: number;
    keys: DirectionKeys;
  }[] = [];

  private get scid(): Buffer {
    return this.localCids.get(0) ?? this.localCids.values().next().value!;
  }

  /** Pads the last laid-out packet with PADDING frames so the datagram ends at `padTo`. Returns the new end. */
  private padLastPacket(buf: Buffer, padTo: number): number {
    const p = this.unsealed[this.unsealed.length - 1];
    const newPayloadEnd = padTo - AEAD_TAG;
    if (newPayloadEnd > p.payloadEnd) {
      buf.fill(0, p.payloadEnd, newPayloadEnd);
      p.payloadEnd = newPayloadEnd;
    }
    return p.payloadEnd + AEAD_TAG;
  }

  /** Writes the headers of the laid-out packets and seals them. */
  private sealPackets(buf: Buffer): void {
    for (const p of this.unsealed) {
      let pnOffset: number;
      if (p.level !== Level.OneRtt) {
        const type = p.level === Level.Initial ? PacketType.Initial : PacketType.Handshake;
        const payloadLength = p.payloadEnd - (p.start + p.headerLen) + AEAD_TAG; // after the packet number
        ({ pnOffset } = writeLongHeader(buf, p.start, type, QUIC_V1, this.dcid, this.scid, p.level === Level.Initial ? EMPTY : null, payloadLength, p.pn, p.pnLen));
      } else {
        ({ pnOffset } = writeShortHeader(buf, p.start, this.dcid, p.pn, p.pnLen, this.keyPhase as 0 | 1));
      }
      if (this.trace) this.trace.packetSent(buf, p.start, p.headerLen, p.payloadEnd, p.level, p.pn, this.dcid, this.scid, this.stats.packetsSent, this.lastNow);
      sealPacket(buf, p.start, pnOffset, p.pnLen, p.payloadEnd, p.pn, p.keys);
    }
    this.unsealed.length = 0;
  }

  /** Writes the frames for one packet. Returns the new offset and whether anything ack-eliciting was written. */
  private fillFrames(
    sp: Space,
    b: Buffer,
    o: number,
    end: number,
    congestionOk: boolean,
    sent: SentFrame[],
    now: number,
  ): { off: number; eliciting: boolean } {
    let eliciting = false;
    // ACK first, whenever one is due or we are sending anything else (piggybacked).
    const wantAck = sp.acks.needsAck(now);
    const probe = this.ptoProbes[sp.level] > 0;
    const writeAck = (): void => {
      // Built only when written: most packets of a bulk sender carry no ACK.
      const ack = sp.acks.largestReceived >= 0 ? sp.acks.buildAck(now, this.localParams.ackDelayExponent) : null;
      if (!ack) return;
      const f: Frame = { type: 'ack', ranges: ack.ranges, ackDelay: sp.level === Level.OneRtt ? ack.ackDelay : 0 };
      if (frameLength(f) > end - o) return;
      o = writeFrame(b, o, f);
      sp.acks.onAckSent();
      sent.push({ k: 'ack', largest: ack.ranges[0][1] });
    };
    if (wantAck) writeAck();

    if (congestionOk) {
      const before = sent.length;
      o = this.fillElicitingFrames(sp, b, o, end, sent);
      eliciting = sent.length > before; // everything fillElicitingFrames records is ack-eliciting
      if (probe && !eliciting && end - o >= 1) {
        b[o++] = 0x01; // PING
        sent.push({ k: 'ping' });
        eliciting = true;
      }
      if (!wantAck && eliciting && sp.acks.ackDeadline() !== null && end - o >= 16) {
        // Piggyback a pending ACK in whatever room the data left.
        writeAck();
      }
    }
    return { off: o, eliciting };
  }

  private fillElicitingFrames(sp: Space, b: Buffer, o: number, end: number, sent: SentFrame[]): number {
    // CRYPTO
    while (end - o > 16) {
      const room = end - o - 1 - 8 - 4; // type + offset varint (<=8) + length varint (<=4)
      const ch = sp.cryptoSend.nextChunk(room, Number.MAX_SAFE_INTEGER);
      if (!ch || ch.data.length === 0) break;
      const f: Frame = { type: 'crypto', offset: ch.offset, data: ch.data };
      o = writeFrame(b, o, f);
      sent.push({ k: 'crypto', level: sp.level, offset: ch.offset, len: ch.data.length });
    }
    if (sp.level !== Level.OneRtt) {
      if (this.pendingPing && end - o >= 1) {
        b[o++] = 0x01;
        sent.push({ k: 'ping' });
        this.pendingPing = false;
      }
      return o;
    }
    const put = (f: Frame, rec: SentFrame | null): boolean => {
      if (frameLength(f) > end - o) return false;
      o = writeFrame(b, o, f);
      if (rec) sent.push(rec);
      return true;
    };
    if (this.pendingHandshakeDone && this.role === 'server') {
      if (put({ type: 'handshake_done' }, { k: 'handshake_done' })) this.pendingHandshakeDone = false;
    }
    while (this.pendingPathResponses.length) {
      if (!put({ type: 'path_response', data: this.pendingPathResponses[0] }, null)) break;
      this.pendingPathResponses.shift();
      sent.push({ k: 'ping' }); // ack-eliciting but not retransmitted
    }
    if (this.pendingPing) {
      if (put({ type: 'ping' }, { k: 'ping' })) this.pendingPing = false;
    }
    if (this.pendingMaxData || this.flow.maxDataUpdate() !== null) {
      if (this.flow.maxDataUpdate() !== null) this.flow.setWindow(this.connTuner.onCreditUpdate(this.flow.bytesConsumed, this.lastNow, this.rttForTuning()));
      const v = this.flow.maxDataUpdate();
      const max = v ?? this.flow.currentLimit; // a retransmission repeats the current limit
      if (put({ type: 'max_data', max }, { k: 'max_data' })) {
        if (v !== null) this.flow.markMaxDataSent(v);
        this.pendingMaxData = false;
      }
    }
    for (const t of [0, 1]) {
      if (this.pendingMaxStreams[t] && put({ type: 'max_streams', bidi: t === 1, max: this.maxRemoteStreams[t] }, { k: 'max_streams', bidi: t === 1 }))
        this.pendingMaxStreams[t] = false;
      if (this.pendingStreamsBlocked[t] && put({ type: 'streams_blocked', bidi: t === 1, limit: this.peerMaxStreams[t] }, { k: 'streams_blocked', bidi: t === 1 })) {
        this.pendingStreamsBlocked[t] = false;
        this.blockedFramesSent.streams++;
      }
    }
    for (const id of this.pendingMaxStreamData) {
      const st = this.streams.get(id);
      if (!st?.recv) {
        this.pendingMaxStreamData.delete(id);
        continue;
      }
      if (st.recv.maxStreamDataUpdate() !== null) this.tuneStreamWindow(st, st.recv);
      const v = st.recv.maxStreamDataUpdate() ?? st.recv.currentLimit;
      if (!put({ type: 'max_stream_data', streamId: id, max: v }, { k: 'max_stream_data', id })) break;
      st.recv.markMaxStreamDataSent(v);
      this.pendingMaxStreamData.delete(id);
    }
    for (const id of this.pendingResets) {
      const st = this.streams.get(id);
      const r = st?.send?.pendingReset;
      if (!st || !r) {
        this.pendingResets.delete(id);
        continue;
      }
      if (!put({ type: 'reset_stream', streamId: id, errorCode: r.errorCode, finalSize: r.finalSize }, { k: 'reset', id })) break;
      st.send!.pendingReset = null;
      this.pendingResets.delete(id);
    }
    for (const id of this.pendingStopSending) {
      const st = this.streams.get(id);
      const code = st?.recv?.pendingStopSending;
      if (!st || code === null || code === undefined) {
        this.pendingStopSending.delete(id);
        continue;
      }
      if (!put({ type: 'stop_sending', streamId: id, errorCode: code }, { k: 'stop_sending', id })) break;
      this.pendingStopSending.delete(id);
      this.maybeRetireStream(st);
    }
    while (this.pendingNewCids.length) {
      const seq = this.pendingNewCids[0];
      const cid = this.localCids.get(seq);
      if (!cid) {
        this.pendingNewCids.shift();
        continue;
      }
      if (!put({ type: 'new_connection_id', seq, retirePriorTo: 0, cid, resetToken: this.resetTokenFor(seq) }, { k: 'new_cid', seq })) break;
      this.pendingNewCids.shift();
    }
    while (this.pendingRetireCids.length) {
      const seq = this.pendingRetireCids[0];
      if (!put({ type: 'retire_connection_id', seq }, { k: 'retire_cid', seq })) break;
      this.pendingRetireCids.shift();
    }
    // STREAM frames, round robin over streams with data.
    let rounds = this.sendQueue.size;
    for (const id of this.sendQueue) {
      if (rounds-- <= 0) break;
      const st = this.streams.get(id);
      if (!st?.send) {
        this.sendQueue.delete(id);
        continue;
      }
      const room = end - o;
      if (room < 24) break;
      const overhead = streamFrameOverhead(id, st.send.highestSent + 1, room);
      const ch = st.send.nextChunk(room - overhead, this.flow.sendCredit);
      if (ch) {
        o = writeStreamFrameHeader(b, o, id, ch.offset, ch.data.length, ch.fin);
        ch.data.copy(b, o);
        o += ch.data.length;
        if (ch.isNew) this.flow.onNewDataSent(ch.isNew);
        sent.push({ k: 'stream', id, offset: ch.offset, len: ch.data.length, fin: ch.fin });
        if (ch.fin) this.maybeReturnCredit(st);
      }
      // Rotate to the back if it still has something to send now; else park it where its wake-up will find it.
      this.sendQueue.delete(id);
      if (st.send.hasSendable(this.flow.sendCredit)) this.sendQueue.add(id);
      else if (st.send.waitsOnConnectionCredit()) this.connBlocked.add(id);
      else if (st.send.blockedLimit() !== null) this.pendingStreamBlocked.add(id);
    }
    // Blocked signals (RFC 9000 §4.1, §19.12-13): once per limit when new data waits on the peer's credit, and again
    // while still blocked if the packet that carried one was lost (§13.3). Written after the STREAM frames, so a
    // sender that just ran out says so in the same packet.
    if (this.connBlocked.size > 0 && this.flow.sendCredit <= 0) {
      const limit = this.flow.blockedLimit();
      if ((limit !== null || this.pendingDataBlocked) && put({ type: 'data_blocked', limit: this.flow.peerLimit }, { k: 'data_blocked' })) {
        this.flow.markBlockedSent(this.flow.peerLimit);
        this.pendingDataBlocked = false;
        this.blockedFramesSent.data++;
      }
    } else if (this.flow.sendCredit > 0) this.pendingDataBlocked = false;
    for (const id of this.pendingStreamBlocked) {
      const send = this.streams.get(id)?.send;
      if (!send?.blockedByStreamCredit()) {
        this.pendingStreamBlocked.delete(id);
        continue;
      }
      const limit = send.peerMaxStreamData;
      if (!put({ type: 'stream_data_blocked', streamId: id, limit }, { k: 'stream_data_blocked', id })) break;
      send.markBlockedSent(limit);
      this.pendingStreamBlocked.delete(id);
      this.blockedFramesSent.streamData++;
    }
    return o;
  }

  private rttForTuning(): number {
    return this.rtt.hasSample ? this.rtt.smoothed : 0;
  }

  /**
   * Auto-tunes a stream's receive window before its credit is extended; the connection window is kept at least
   * 1.5 times the largest stream window, so one fast stream is not held by the connection's credit instead.
   */
  private tuneStreamWindow(st: Stream, recv: RecvStream): void {
    st.tuner ??= new WindowTuner(recv.window, Math.max(recv.window, this.cfg.maxStreamReceiveWindow));
    const w = st.tuner.onCreditUpdate(recv.consumedBytes, this.lastNow, this.rttForTuning());
    if (w === recv.window) return;
    recv.setWindow(w);
    if (w > this.learnedStreamWindow) this.learnedStreamWindow = w;
    if (this.connTuner.atLeast(w * 1.5)) {
      this.flow.setWindow(this.connTuner.value);
      if (this.flow.maxDataUpdate() !== null) this.pendingMaxData = true;
    }
  }

  /** Forces an ack-eliciting PING in the next packet (keep-alive, tests). */
  ping(): void {
    this.pendingPing = true;
    this.onWake?.(this);
  }
}

const EMPTY = Buffer.alloc(0);
