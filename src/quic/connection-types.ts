/** Public types of a QUIC connection: configuration, addresses and the events it gives to the layer above. */
import type { KeyObject } from 'node:crypto';
import type { CipherSuite } from './crypto/suites.js';
import type { CongestionControllerFactory } from './recovery/congestion.js';
import type { Group } from './tls/tls.js';
import type { QuicTraceEvent } from './trace.js';

export interface Address {
  address: string;
  port: number;
}

export interface ConnectionConfig {
  /** ALPN protocols: offered by a client, accepted by a server (preference order). */
  alpn: string[];
  /** Server: certificate chain (DER, leaf first) and key. */
  certChain?: Buffer[];
  privateKey?: KeyObject;
  /** Client: SNI and the name the certificate must match. */
  serverName?: string;
  /** Client: trusted roots (DER); undefined means the system roots. */
  ca?: Buffer[];
  /** Client: accept any certificate (development only). */
  insecure?: boolean;
  /** Wall-clock time for certificate validity checks (the driver supplies it). */
  certificateTime?: Date;
  cipherSuites?: CipherSuite[];
  groups?: Group[];
  keyLog?: (line: string) => void;
  /**
   * Receives the connection's trace events (qlog's QUIC events, src/quic/trace.ts). Undefined (the default): no event
   * is built at all.
   */
  trace?: (e: QuicTraceEvent) => void;

  /** Idle timeout we advertise, ms (0 disables). Default 30 000. */
  maxIdleTimeout?: number;
  /** Default 16 MiB. */
  initialMaxData?: number;
  /** Default 2 MiB. */
  initialMaxStreamDataBidiLocal?: number;
  /**
   * Default 128 KiB: what a peer may send on a stream it opened (a request body, for a server) beyond what we have
   * processed waits in our socket queue, so a small window keeps our ACKs prompt; auto-tuning grows it when the
   * path's (minimum) RTT needs more.
   */
  initialMaxStreamDataBidiRemote?: number;
  /** Default 2 MiB. */
  initialMaxStreamDataUni?: number;
  /**
   * Receive windows auto-tune (double when the application consumes a window faster than about two minimum round
   * trips per window) from the initial values up to these ceilings. Defaults 16 MiB per stream, 32 MiB per connection.
   */
  maxStreamReceiveWindow?: number;
  maxConnectionReceiveWindow?: number;
  initialMaxStreamsBidi?: number;
  initialMaxStreamsUni?: number;
  /**
   * Largest UDP payload we may send. Connections start at 1200 bytes (the QUIC minimum) and probe upwards to this
   * ceiling after the handshake (PMTU discovery, RFC 9000 §14.3). Default 1452 (a 1500-byte Ethernet path); the
   * I/O driver raises it for loopback peers.
   */
  maxDatagramSize?: number;
  /**
   * Put each QUIC packet in its own UDP datagram instead of coalescing Initial/Handshake/1-RTT packets
   * (RFC 9000 §12.2), so that every packet in a capture is decodable on its own. Default false.
   */
  onePacketPerDatagram?: boolean;
  /** Length of the connection IDs we issue. Default 8. */
  cidLength?: number;
  /** Our max_ack_delay, ms. Default 25. */
  maxAckDelay?: number;
  /** Congestion/pacing switch for tests and benchmarks; default true. */
  pacing?: boolean;
  /** The congestion controller (recovery/congestion.ts interface); default NewReno (recovery/new-reno.ts). */
  congestionControl?: CongestionControllerFactory;
  /**
   * Give up on a handshake that has not completed this many ms after the connection started (0: no limit but the idle
   * timeout). The connection then closes with `handshakeFailure: { kind: 'timeout' }`. Default 10 000 for clients, 0
   * for servers.
   */
  handshakeTimeout?: number;
}

/** Counters of one connection (Connection.stats). `packetsSent` counts datagrams sent (their packets coalesced). */
export interface ConnectionStats {
  packetsSent: number;
  packetsReceived: number;
  packetsLost: number;
  bytesSent: number;
  bytesReceived: number;
  undecryptable: number;
  datagramsReceived: number;
}

export type ConnectionState = 'handshake' | 'established' | 'closing' | 'draining' | 'closed';

/**
 * Why a client gave up on a handshake that no error code describes: its handshake timeout expired (`datagrams`
 * counts what arrived from the server, `decrypted` the packets of it that authenticated), the server answered with
 * Version Negotiation (RFC 9000 §6.2; `versions` is the list it offered), or with a Retry (RFC 9000 §8.1.2), which
 * this client does not follow yet.
 */
export type HandshakeFailure =
  | { kind: 'timeout'; timeoutMs: number; datagrams: number; decrypted: number }
  | { kind: 'version_negotiation'; versions: number[] }
  | { kind: 'retry' };

export interface CloseInfo {
  /** Who closed: 'local', 'peer', 'idle' (idle timeout), 'stateless' (never happens yet). */
  by: 'local' | 'peer' | 'idle';
  application: boolean;
  code: number;
  reason: string;
  frameType?: number;
  /** Set when a client abandoned its handshake for a reason that has no error code (see HandshakeFailure). */
  handshakeFailure?: HandshakeFailure;
}

export type ConnectionEvent =
  | { type: 'handshake_complete'; alpn: string; cipher: string }
  | { type: 'handshake_confirmed' }
  | { type: 'stream_open'; id: number }
  | { type: 'stream_readable'; id: number }
  | { type: 'stream_drain'; id: number }
  | { type: 'stream_reset'; id: number; code: number }
  | { type: 'stop_sending'; id: number; code: number }
  | { type: 'streams_available'; bidi: boolean }
  | { type: 'key_update'; generation: number; initiatedBy: 'local' | 'peer' }
  | { type: 'closed'; info: CloseInfo };
