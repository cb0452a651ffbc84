/**
 * Builds a connection's trace events (trace.ts) from the state the connection hands it, so that the connection's
 * emission points stay one line each. Only ever constructed when a trace sink is configured: with tracing off no
 * code here runs. The recovery collaborators come in through the constructor and are only read.
 */
import { Level, type Role } from './types.js';
import type { Address, CloseInfo } from './connection-types.js';
import type { TransportParameters } from './transport-params.js';
import { PacketType, type PacketHeader, type UnprotectedHeader } from './packet/header.js';
import { parseFrames, type Frame, type PacketKind } from './frame/frames.js';
import type { RttEstimator } from './recovery/rtt.js';
import type { CongestionController } from './recovery/congestion.js';
import { PACKET_THRESHOLD } from './recovery/loss.js';
import { PACING_GAIN } from './recovery/pacer.js';
import { TransportErrorCode } from './errors.js';
import {
  hex,
  type QlogConnectionState,
  type QlogDropTrigger,
  type QlogFrame,
  type QlogKeyTrigger,
  type QlogKeyType,
  type QlogMetrics,
  type QlogPacketHeader,
  type QlogPacketType,
  type QlogParametersSet,
  type QlogPacketSent,
  type QlogStreamState,
  type QlogStreamStateUpdated,
  type QuicTraceEvent,
} from './trace.js';

const AEAD_TAG = 16;
const LEVEL_KIND: PacketKind[] = ['initial', 'handshake', '1rtt'];
const LEVEL_TYPE: QlogPacketType[] = ['initial', 'handshake', '1RTT'];
const LEVEL_KEY: string[] = ['initial', 'handshake', '1rtt'];

/** RFC 9000 §3.1 / §3.2 stream states (stream/send.ts, stream/recv.ts) by their qlog names. */
const SEND_STATE: Record<string, QlogStreamState> = {
  ready: 'ready',
  send: 'send',
  data_sent: 'data_sent',
  data_recvd: 'data_received',
  reset_sent: 'reset_sent',
  reset_recvd: 'reset_received',
};
const RECV_STATE: Record<string, QlogStreamState> = {
  recv: 'receive',
  size_known: 'size_known',
  data_recvd: 'data_received',
  data_read: 'data_read',
  reset_recvd: 'reset_received',
  reset_read: 'reset_read',
};

const TRANSPORT_ERROR_NAMES = new Map<number, string>(
  Object.entries(TransportErrorCode)
    .filter(([k]) => k !== 'CRYPTO_ERROR_BASE')
    .map(([k, v]) => [v, k.toLowerCase()]),
);

/** A transport error code as qlog names it (TransportError / CryptoError), or the number when it has no name. */
export function transportErrorCode(code: number): string | number {
  if (code >= 0x100 && code <= 0x1ff) return `crypto_error_0x${code.toString(16)}`;
  return TRANSPORT_ERROR_NAMES.get(code) ?? code;
}

function packetType(t: PacketType): QlogPacketType {
  switch (t) {
    case PacketType.Initial:
      return 'initial';
    case PacketType.Handshake:
      return 'handshake';
    case PacketType.ZeroRtt:
      return '0RTT';
    case PacketType.OneRtt:
      return '1RTT';
    case PacketType.Retry:
      return 'retry';
    case PacketType.VersionNegotiation:
      return 'version_negotiation';
    default:
      return 'unknown';
  }
}

/** One frame as qlog represents it (no payload bytes: only offsets and lengths). */
export function qlogFrame(f: Frame, ackDelayUnitUs: number): QlogFrame {
  switch (f.type) {
    case 'padding':
      return { frame_type: 'padding', length: f.length, payload_length: f.length };
    case 'ping':
      return { frame_type: 'ping' };
    case 'ack': {
      const ranges = f.ranges.map(([lo, hi]): [number] | [number, number] => (lo === hi ? [lo] : [lo, hi]));
      const a: QlogFrame = { frame_type: 'ack', ack_delay: us((f.ackDelay * ackDelayUnitUs) / 1000), acked_ranges: ranges };
      if (f.ecn) Object.assign(a, { ect0: f.ecn.ect0, ect1: f.ecn.ect1, ce: f.ecn.ce });
      return a;
    }
    case 'reset_stream':
      return { frame_type: 'reset_stream', stream_id: f.streamId, error_code: f.errorCode, final_size: f.finalSize };
    case 'stop_sending':
      return { frame_type: 'stop_sending', stream_id: f.streamId, error_code: f.errorCode };
    case 'crypto':
      return { frame_type: 'crypto', offset: f.offset, length: f.data.length };
    case 'new_token':
      return { frame_type: 'new_token', token: { length: f.token.length, data: hex(f.token) } };
    case 'stream':
      return f.fin
        ? { frame_type: 'stream', stream_id: f.streamId, offset: f.offset, length: f.data.length, fin: true }
        : { frame_type: 'stream', stream_id: f.streamId, offset: f.offset, length: f.data.length };
    case 'max_data':
      return { frame_type: 'max_data', maximum: f.max };
    case 'max_stream_data':
      return { frame_type: 'max_stream_data', stream_id: f.streamId, maximum: f.max };
    case 'max_streams':
      return { frame_type: 'max_streams', stream_type: f.bidi ? 'bidirectional' : 'unidirectional', maximum: f.max };
    case 'data_blocked':
      return { frame_type: 'data_blocked', limit: f.limit };
    case 'stream_data_blocked':
      return { frame_type: 'stream_data_blocked', stream_id: f.streamId, limit: f.limit };
    case 'streams_blocked':
      return { frame_type: 'streams_blocked', stream_type: f.bidi ? 'bidirectional' : 'unidirectional', limit: f.limit };
    case 'new_connection_id':
      return {
        frame_type: 'new_connection_id',
        sequence_number: f.seq,
        retire_prior_to: f.retirePriorTo,
        connection_id_length: f.cid.length,
        connection_id: hex(f.cid),
        stateless_reset_token: hex(f.resetToken),
      };
    case 'retire_connection_id':
      return { frame_type: 'retire_connection_id', sequence_number: f.seq };
    case 'path_challenge':
      return { frame_type: 'path_challenge', data: hex(f.data) };
    case 'path_response':
      return { frame_type: 'path_response', data: hex(f.data) };
    case 'connection_close': {
      const c: QlogFrame = {
        frame_type: 'connection_close',
        error_space: f.application ? 'application' : 'transport',
        error_code: f.application ? f.errorCode : transportErrorCode(f.errorCode),
        raw_error_code: f.errorCode,
        reason: f.reason,
      };
      if (!f.application) c.trigger_frame_type = f.frameType;
      return c;
    }
    case 'handshake_done':
      return { frame_type: 'handshake_done' };
  }
}

/** Transport parameters as qlog's parameters_set fields. */
export function qlogParameters(owner: 'local' | 'remote', p: TransportParameters): QlogParametersSet {
  const q: QlogParametersSet = {
    owner,
    disable_active_migration: p.disableActiveMigration,
    max_idle_timeout: p.maxIdleTimeout,
    max_udp_payload_size: p.maxUdpPayloadSize,
    ack_delay_exponent: p.ackDelayExponent,
    max_ack_delay: p.maxAckDelay,
    active_connection_id_limit: p.activeConnectionIdLimit,
    initial_max_data: p.initialMaxData,
    initial_max_stream_data_bidi_local: p.initialMaxStreamDataBidiLocal,
    initial_max_stream_data_bidi_remote: p.initialMaxStreamDataBidiRemote,
    initial_max_stream_data_uni: p.initialMaxStreamDataUni,
    initial_max_streams_bidi: p.initialMaxStreamsBidi,
    initial_max_streams_uni: p.initialMaxStreamsUni,
  };
  if (p.originalDestinationConnectionId) q.original_destination_connection_id = hex(p.originalDestinationConnectionId);
  if (p.initialSourceConnectionId) q.initial_source_connection_id = hex(p.initialSourceConnectionId);
  if (p.retrySourceConnectionId) q.retry_source_connection_id = hex(p.retrySourceConnectionId);
  if (p.statelessResetToken) q.stateless_reset_token = hex(p.statelessResetToken);
  return q;
}

export interface TracerDeps {
  rtt: RttEstimator;
  cc: CongestionController;
  /** Largest packet number the peer acknowledged in a space (-1 if none), to tell the two loss triggers apart. */
  largestAcked: (space: 0 | 1 | 2) => number;
  ptoCount: () => number;
  pacing: boolean;
  /** Microseconds per unit of the ACK Delay field in the ACKs we send: 2^(our ack_delay_exponent). */
  ackDelayUnitUs: number;
}

export class ConnectionTracer {
  private stateNow: QlogConnectionState | null = null;
  private readonly last: QlogMetrics = {};

  constructor(
    private readonly sink: (e: QuicTraceEvent) => void,
    private readonly role: Role,
    private readonly deps: TracerDeps,
  ) {}

  /** connection_started, our transport parameters, the Initial keys and the first state. */
  start(now: number, remote: Address, scid: Buffer, dcid: Buffer, local: TransportParameters): void {
    const v6 = remote.address.includes(':');
    this.sink({
      time: now,
      name: 'connectivity:connection_started',
      data: { ip_version: v6 ? 'v6' : 'v4', dst_ip: remote.address, dst_port: remote.port, protocol: 'QUIC', src_cid: hex(scid), dst_cid: hex(dcid) },
    });
    this.state('attempted', now);
    this.sink({ time: now, name: 'transport:parameters_set', data: qlogParameters('local', local) });
    this.keyUpdated(Level.Initial, 'write', now);
    this.keyUpdated(Level.Initial, 'read', now);
  }

  state(s: QlogConnectionState, now: number): void {
    if (s === this.stateNow) return;
    const data: { old?: QlogConnectionState; new: QlogConnectionState } = { new: s };
    if (this.stateNow) data.old = this.stateNow;
    this.stateNow = s;
    this.sink({ time: now, name: 'connectivity:connection_state_updated', data });
  }

  closed(info: CloseInfo, now: number): void {
    const data: QuicTraceEvent & { name: 'connectivity:connection_closed' } = {
      time: now,
      name: 'connectivity:connection_closed',
      data: {
        owner: info.by === 'peer' ? 'remote' : 'local',
        trigger: info.by === 'idle' ? 'idle_timeout' : info.application ? 'application' : info.code === 0 ? 'clean' : 'error',
      },
    };
    if (info.by !== 'idle') {
      if (info.application) data.data.application_code = info.code;
      else data.data.connection_code = transportErrorCode(info.code);
    }
    if (info.reason) data.data.reason = info.reason;
    this.sink(data);
  }

  parameters(owner: 'local' | 'remote', p: TransportParameters, now: number): void {
    this.sink({ time: now, name: 'transport:parameters_set', data: qlogParameters(owner, p) });
  }

  /** The TLS handshake completed: the state, and the negotiated TLS values. */
  handshakeComplete(cipher: string, alpn: string, clientRandom: Buffer | null, now: number): void {
    this.state('handshake_complete', now);
    const data: QlogParametersSet = { tls_cipher: cipher, aead_tag_length: AEAD_TAG, alpn };
    if (clientRandom) data.tls_client_random = hex(clientRandom);
    this.sink({ time: now, name: 'transport:parameters_set', data });
  }

  /**
   * A packet laid out in `buf` at `start`, header written and payload still in plaintext (just before sealing):
   * its frames are parsed back out of the payload, so the builder needs no bookkeeping of its own for the trace.
   */
  packetSent(
    buf: Buffer,
    start: number,
    headerLen: number,
    payloadEnd: number,
    level: Level,
    pn: number,
    dcid: Buffer,
    scid: Buffer,
    datagramId: number,
    mtuProbe: boolean,
    now: number,
  ): void {
    const payloadStart = start + headerLen;
    const header: QlogPacketHeader = { packet_type: LEVEL_TYPE[level], packet_number: pn, flags: buf[start] };
    if (level !== Level.OneRtt) {
      header.version = '00000001';
      header.length = payloadEnd + AEAD_TAG - payloadStart + packetNumberLength(buf[start]);
      header.scil = scid.length;
      header.scid = hex(scid);
    }
    header.dcil = dcid.length;
    header.dcid = hex(dcid);
    const frames = parseFrames(buf.subarray(payloadStart, payloadEnd), LEVEL_KIND[level]).map((f) => qlogFrame(f, this.deps.ackDelayUnitUs));
    const data: QlogPacketSent = { header, frames, raw: { length: payloadEnd + AEAD_TAG - start, payload_length: payloadEnd - payloadStart }, datagram_id: datagramId };
    if (mtuProbe) data.is_mtu_probe_packet = true;
    this.sink({ time: now, name: 'transport:packet_sent', data });
  }

  /**
   * A packet that decrypted; `ackDelayUnitUs` scales the peer's ACK Delay fields; `datagramId` numbers the datagrams
   * received (the packets coalesced in one share it).
   */
  packetReceived(h: PacketHeader, un: UnprotectedHeader, frames: Frame[], payloadLength: number, ackDelayUnitUs: number, datagramId: number, now: number): void {
    const header: QlogPacketHeader = { packet_type: packetType(h.type), packet_number: un.pn, flags: un.firstByte };
    if (h.type !== PacketType.OneRtt) {
      header.version = h.version.toString(16).padStart(8, '0');
      header.length = h.end - un.headerEnd + un.pnLength;
      header.scil = h.scid.length;
      header.scid = hex(h.scid);
    }
    header.dcil = h.dcid.length;
    header.dcid = hex(h.dcid);
    this.sink({
      time: now,
      name: 'transport:packet_received',
      data: {
        header,
        frames: frames.map((f) => qlogFrame(f, ackDelayUnitUs)),
        raw: { length: h.end - h.start, payload_length: payloadLength },
        datagram_id: datagramId,
      },
    });
  }

  packetDropped(h: PacketHeader | null, trigger: QlogDropTrigger, length: number, now: number): void {
    const data: { header?: QlogPacketHeader; raw: { length: number }; trigger: QlogDropTrigger } = { raw: { length }, trigger };
    if (h) data.header = { packet_type: packetType(h.type) };
    this.sink({ time: now, name: 'transport:packet_dropped', data });
  }

  packetBuffered(h: PacketHeader, now: number): void {
    this.sink({
      time: now,
      name: 'transport:packet_buffered',
      data: { header: { packet_type: packetType(h.type) }, raw: { length: h.end - h.start }, trigger: 'keys_unavailable' },
    });
  }

  packetLost(space: 0 | 1 | 2, pn: number, mtuProbe: boolean, now: number): void {
    const trigger = this.deps.largestAcked(space) >= pn + PACKET_THRESHOLD ? 'reordering_threshold' : 'time_threshold';
    const data: { header: QlogPacketHeader; is_mtu_probe_packet?: true; trigger: typeof trigger } = {
      header: { packet_type: LEVEL_TYPE[space], packet_number: pn },
      trigger,
    };
    if (mtuProbe) data.is_mtu_probe_packet = true;
    this.sink({ time: now, name: 'recovery:packet_lost', data });
  }

  /** recovery:metrics_updated with the values that changed since the last one (nothing when none did). */
  metrics(now: number): void {
    const { rtt, cc } = this.deps;
    const cur: QlogMetrics = {
      congestion_window: cc.cwnd,
      bytes_in_flight: cc.bytesInFlight,
      pto_count: this.deps.ptoCount(),
    };
    if (Number.isFinite(cc.ssthresh)) cur.ssthresh = cc.ssthresh;
    if (rtt.hasSample) {
      cur.min_rtt = us(rtt.min);
      cur.smoothed_rtt = us(rtt.smoothed);
      cur.latest_rtt = us(rtt.latest);
      cur.rtt_variance = us(rtt.rttvar);
      if (this.deps.pacing && rtt.smoothed > 0) cur.pacing_rate = Math.round(((PACING_GAIN * cc.cwnd) / rtt.smoothed) * 8000);
    }
    let changed: QlogMetrics | null = null;
    const last = this.last as Record<string, number | undefined>;
    for (const [k, v] of Object.entries(cur) as [keyof QlogMetrics, number][]) {
      if (last[k] === v) continue;
      last[k] = v;
      (changed ??= {})[k] = v;
    }
    if (changed) this.sink({ time: now, name: 'recovery:metrics_updated', data: changed });
  }

  /** Keys of one level and direction installed by TLS (Initial keys at the start, then Handshake and 1-RTT). */
  keyUpdated(level: Level, direction: 'read' | 'write', now: number): void {
    const data: { key_type: QlogKeyType; generation?: number; trigger: QlogKeyTrigger } = { key_type: this.keyType(level, direction), trigger: 'tls' };
    if (level === Level.OneRtt) data.generation = 0;
    this.sink({ time: now, name: 'security:key_updated', data });
  }

  /** A key update (RFC 9001 §6): both directions move to `generation`. */
  keysRotated(generation: number, by: 'local' | 'peer', now: number): void {
    const trigger: QlogKeyTrigger = by === 'local' ? 'local_update' : 'remote_update';
    for (const key_type of ['client_1rtt_secret', 'server_1rtt_secret'] as const) {
      this.sink({ time: now, name: 'security:key_updated', data: { key_type, generation, trigger } });
    }
  }

  /** Both keys of a discarded packet number space (RFC 9001 §4.9). */
  spaceDiscarded(level: Level, now: number): void {
    for (const direction of ['write', 'read'] as const) {
      this.sink({ time: now, name: 'security:key_discarded', data: { key_type: this.keyType(level, direction), trigger: 'tls' } });
    }
  }

  /** The previous generation of the peer's 1-RTT keys, kept for reordered packets after a key update, is gone. */
  oldReadKeyDiscarded(generation: number, now: number): void {
    this.sink({
      time: now,
      name: 'security:key_discarded',
      data: { key_type: this.keyType(Level.OneRtt, 'read'), generation, trigger: 'remote_update' },
    });
  }

  /**
   * A stream opened or closed (`side` null: the base states), or one side's state changed (`side` 'send' / 'recv',
   * states named as in RFC 9000 §3.1 / §3.2, reported with qlog's names).
   */
  streamState(id: number, side: 'send' | 'recv' | null, state: string, old: string | null, now: number): void {
    let data: QlogStreamStateUpdated;
    if (side === null) {
      data = { stream_id: id, new: state as 'open' | 'closed' };
      if (state === 'open') data.stream_type = (id & 2) === 0 ? 'bidirectional' : 'unidirectional';
    } else {
      const names = side === 'send' ? SEND_STATE : RECV_STATE;
      data = { stream_id: id, new: names[state] ?? (state as QlogStreamState), stream_side: side === 'send' ? 'sending' : 'receiving' };
      if (old !== null) data.old = names[old] ?? (old as QlogStreamState);
    }
    this.sink({ time: now, name: 'transport:stream_state_updated', data });
  }

  private keyType(level: Level, direction: 'read' | 'write'): QlogKeyType {
    const ours = direction === 'write';
    const side = (this.role === 'client') === ours ? 'client' : 'server';
    return `${side}_${LEVEL_KEY[level]}_secret` as QlogKeyType;
  }
}

/** Milliseconds rounded to the microsecond. */
function us(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/** The packet number length encoded in an unprotected first byte. */
function packetNumberLength(firstByte: number): number {
  return (firstByte & 0x03) + 1;
}
