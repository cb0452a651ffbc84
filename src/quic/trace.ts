/**
 * Typed trace events of the QUIC core, in the shape of the qlog QUIC event definitions (qlog 0.3:
 * draft-ietf-quic-qlog-main-schema-03 and draft-ietf-quic-qlog-quic-events-03, what qvis, quiche, neqo and quic-go
 * write as JSON-SEQ). The connection emits them through ConnectionConfig.trace; a writer (src/obs/qlog.ts) turns them
 * into a qlog file. Nothing here does I/O. When no trace is configured the connection builds none of these objects.
 *
 * Deviations from the draft, all because the core cannot or must not know: connection_started has no src_ip /
 * src_port (a sans-I/O connection never sees its local address), and key_updated carries no key material (the
 * secrets belong in the key log, not in a file meant to be shared).
 */
import type { Role } from './types.js';

/** Any qlog-shaped event: `time` in ms on the clock the core is driven with, `name` is "category:type". */
export interface TraceEvent {
  time: number;
  name: string;
  data: object;
}

/** Where one connection's events go (the QUIC core's and those of the layers above it that share the trace). */
export type TraceSink = (e: TraceEvent) => void;

/** Makes the sink of a new connection from its role and original destination connection ID, or undefined: not traced. */
export type TraceFactory = (role: Role, odcid: Buffer) => TraceSink | undefined;

export type QlogPacketType = 'initial' | 'handshake' | '0RTT' | '1RTT' | 'retry' | 'version_negotiation' | 'unknown';

export interface QlogPacketHeader {
  packet_type: QlogPacketType;
  packet_number?: number;
  /** The unprotected first byte. */
  flags?: number;
  /** Long headers: the Length field (packet number plus payload). */
  length?: number;
  version?: string;
  scil?: number;
  dcil?: number;
  scid?: string;
  dcid?: string;
}

export interface QlogRaw {
  /** The whole packet: header, payload and AEAD tag. */
  length: number;
  /** The plaintext payload (the frames). */
  payload_length?: number;
}

export type QlogStreamType = 'unidirectional' | 'bidirectional';

export type QlogFrame =
  | { frame_type: 'padding'; length: number; payload_length: number }
  | { frame_type: 'ping' }
  | { frame_type: 'ack'; ack_delay?: number; acked_ranges: ([number] | [number, number])[]; ect0?: number; ect1?: number; ce?: number }
  | { frame_type: 'reset_stream'; stream_id: number; error_code: number; final_size: number }
  | { frame_type: 'stop_sending'; stream_id: number; error_code: number }
  | { frame_type: 'crypto'; offset: number; length: number }
  | { frame_type: 'new_token'; token: { length: number; data: string } }
  | { frame_type: 'stream'; stream_id: number; offset: number; length: number; fin?: true }
  | { frame_type: 'max_data'; maximum: number }
  | { frame_type: 'max_stream_data'; stream_id: number; maximum: number }
  | { frame_type: 'max_streams'; stream_type: QlogStreamType; maximum: number }
  | { frame_type: 'data_blocked'; limit: number }
  | { frame_type: 'stream_data_blocked'; stream_id: number; limit: number }
  | { frame_type: 'streams_blocked'; stream_type: QlogStreamType; limit: number }
  | {
      frame_type: 'new_connection_id';
      sequence_number: number;
      retire_prior_to: number;
      connection_id_length: number;
      connection_id: string;
      stateless_reset_token: string;
    }
  | { frame_type: 'retire_connection_id'; sequence_number: number }
  | { frame_type: 'path_challenge'; data: string }
  | { frame_type: 'path_response'; data: string }
  | {
      frame_type: 'connection_close';
      error_space: 'transport' | 'application';
      error_code: string | number;
      raw_error_code: number;
      reason: string;
      trigger_frame_type?: number;
    }
  | { frame_type: 'handshake_done' };

export type QlogConnectionState =
  | 'attempted'
  | 'handshake_complete'
  | 'handshake_confirmed'
  | 'closing'
  | 'draining'
  | 'closed';

export type QlogKeyType =
  | 'server_initial_secret'
  | 'client_initial_secret'
  | 'server_handshake_secret'
  | 'client_handshake_secret'
  | 'server_1rtt_secret'
  | 'client_1rtt_secret';

export type QlogKeyTrigger = 'tls' | 'remote_update' | 'local_update';

export type QlogDropTrigger =
  | 'header_parse_error'
  | 'unexpected_packet'
  | 'unsupported_version'
  | 'unknown_connection_id'
  | 'key_unavailable'
  | 'payload_decrypt_error'
  | 'dos_prevention'
  | 'duplicate';

/** transport:parameters_set: the transport parameters of one side, or the negotiated TLS values (no owner). */
export interface QlogParametersSet {
  owner?: 'local' | 'remote';
  original_destination_connection_id?: string;
  initial_source_connection_id?: string;
  retry_source_connection_id?: string;
  stateless_reset_token?: string;
  disable_active_migration?: boolean;
  max_idle_timeout?: number;
  max_udp_payload_size?: number;
  ack_delay_exponent?: number;
  max_ack_delay?: number;
  active_connection_id_limit?: number;
  initial_max_data?: number;
  initial_max_stream_data_bidi_local?: number;
  initial_max_stream_data_bidi_remote?: number;
  initial_max_stream_data_uni?: number;
  initial_max_streams_bidi?: number;
  initial_max_streams_uni?: number;
  tls_cipher?: string;
  aead_tag_length?: number;
  /** Not in the draft (which allows unspecified fields here): the negotiated ALPN. */
  alpn?: string;
  /**
   * Not in the draft: the ClientHello random in hex, the key the NSS key log files the connection's secrets under,
   * so a qlog and a key log line can be matched without a capture.
   */
  tls_client_random?: string;
}

export interface QlogMetrics {
  min_rtt?: number;
  smoothed_rtt?: number;
  latest_rtt?: number;
  rtt_variance?: number;
  pto_count?: number;
  congestion_window?: number;
  bytes_in_flight?: number;
  ssthresh?: number;
  /** Bits per second; only while pacing with an RTT sample. */
  pacing_rate?: number;
}

/**
 * transport:packet_sent. `datagram_id` numbers the datagrams the connection sent (the packets coalesced in one share
 * it); `is_mtu_probe_packet` marks a PMTU probe (RFC 9000 §14.4).
 */
export interface QlogPacketSent {
  header: QlogPacketHeader;
  frames: QlogFrame[];
  raw: QlogRaw;
  datagram_id: number;
  is_mtu_probe_packet?: true;
}

/** Stream states: the base ones (open, closed) and the granular ones of each side (RFC 9000 §3.1, §3.2). */
export type QlogStreamState =
  | 'open'
  | 'closed'
  | 'ready'
  | 'send'
  | 'data_sent'
  | 'reset_sent'
  | 'reset_received'
  | 'receive'
  | 'size_known'
  | 'data_read'
  | 'reset_read'
  | 'data_received';

/** transport:stream_state_updated: `stream_side` (with `old` after the first) for the state of one side. */
export interface QlogStreamStateUpdated {
  stream_id: number;
  stream_type?: QlogStreamType;
  old?: QlogStreamState;
  new: QlogStreamState;
  stream_side?: 'sending' | 'receiving';
}

interface Ev<N extends string, D extends object> {
  time: number;
  name: N;
  data: D;
}

export type QuicTraceEvent =
  | Ev<
      'connectivity:connection_started',
      { ip_version: 'v4' | 'v6'; dst_ip: string; dst_port: number; protocol: 'QUIC'; src_cid: string; dst_cid: string }
    >
  | Ev<'connectivity:connection_state_updated', { old?: QlogConnectionState; new: QlogConnectionState }>
  | Ev<
      'connectivity:connection_closed',
      {
        owner: 'local' | 'remote';
        connection_code?: string | number;
        application_code?: number;
        reason?: string;
        trigger: 'clean' | 'idle_timeout' | 'error' | 'application';
      }
    >
  | Ev<'transport:parameters_set', QlogParametersSet>
  | Ev<'transport:packet_sent', QlogPacketSent>
  | Ev<'transport:packet_received', { header: QlogPacketHeader; frames: QlogFrame[]; raw: QlogRaw; datagram_id: number }>
  | Ev<'transport:packet_dropped', { header?: QlogPacketHeader; raw: QlogRaw; trigger: QlogDropTrigger }>
  | Ev<'transport:packet_buffered', { header: QlogPacketHeader; raw: QlogRaw; trigger: 'keys_unavailable' }>
  | Ev<'transport:stream_state_updated', QlogStreamStateUpdated>
  | Ev<'security:key_updated', { key_type: QlogKeyType; generation?: number; trigger: QlogKeyTrigger }>
  | Ev<'security:key_discarded', { key_type: QlogKeyType; generation?: number; trigger: QlogKeyTrigger }>
  | Ev<'recovery:metrics_updated', QlogMetrics>
  | Ev<
      'recovery:packet_lost',
      { header: QlogPacketHeader; is_mtu_probe_packet?: true; trigger: 'reordering_threshold' | 'time_threshold' }
    >;

/** The one tiny helper: bytes as the lower-case hex string qlog uses for connection IDs, tokens and keys. */
export function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}
