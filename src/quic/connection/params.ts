/**
 * The transport parameters of a connection (RFC 9000 §7.4, §18): ours, from the configuration, and the connection
 * ID authentication of the peer's (§7.3).
 */
import type { Role } from '../types.js';
import { TransportError, TransportErrorCode as E } from '../errors.js';
import type { ConnectionConfig } from '../connection-types.js';
import { defaultTransportParameters, type TransportParameters } from '../transport-params.js';

/** The largest UDP payload we accept (max_udp_payload_size). */
export const MAX_DATAGRAM_LIMIT = 65527;
/** How many of the peer's connection IDs we keep (active_connection_id_limit). */
export const ACTIVE_CONNECTION_ID_LIMIT = 4;

/**
 * Our transport parameters. `localCid`: our first connection ID; a server also names the client's original
 * destination connection ID and gives the stateless reset token of `localCid`.
 */
export function localTransportParameters(
  config: ConnectionConfig & { maxIdleTimeout: number; maxAckDelay: number },
  role: Role,
  localCid: Buffer,
  originalDcid: Buffer,
  resetToken: Buffer,
): TransportParameters {
  const p = defaultTransportParameters();
  p.maxIdleTimeout = config.maxIdleTimeout;
  p.initialMaxData = config.initialMaxData ?? 16 * 1024 * 1024;
  p.initialMaxStreamDataBidiLocal = config.initialMaxStreamDataBidiLocal ?? 2 * 1024 * 1024;
  p.initialMaxStreamDataBidiRemote = config.initialMaxStreamDataBidiRemote ?? 128 * 1024;
  p.initialMaxStreamDataUni = config.initialMaxStreamDataUni ?? 2 * 1024 * 1024;
  p.initialMaxStreamsBidi = config.initialMaxStreamsBidi ?? 100;
  p.initialMaxStreamsUni = config.initialMaxStreamsUni ?? 100;
  p.maxAckDelay = config.maxAckDelay;
  p.maxUdpPayloadSize = MAX_DATAGRAM_LIMIT;
  p.activeConnectionIdLimit = ACTIVE_CONNECTION_ID_LIMIT;
  p.disableActiveMigration = true;
  p.initialSourceConnectionId = localCid;
  if (role === 'server') {
    p.originalDestinationConnectionId = originalDcid;
    p.statelessResetToken = resetToken;
  }
  return p;
}

/**
 * Connection ID authentication (RFC 9000 §7.3): the peer's parameters must name the connection IDs the handshake
 * used. `peerScid`: the source connection ID of the peer's first packet (our DCID then).
 */
export function authenticateConnectionIds(role: Role, p: TransportParameters, originalDcid: Buffer, peerScid: Buffer): void {
  if (role === 'client') {
    if (!p.originalDestinationConnectionId || !p.originalDestinationConnectionId.equals(originalDcid))
      throw new TransportError(E.TRANSPORT_PARAMETER_ERROR, 'original_destination_connection_id does not match');
    if (!p.initialSourceConnectionId || !p.initialSourceConnectionId.equals(peerScid))
      throw new TransportError(E.TRANSPORT_PARAMETER_ERROR, 'initial_source_connection_id does not match the server SCID');
    if (p.retrySourceConnectionId) throw new TransportError(E.TRANSPORT_PARAMETER_ERROR, 'retry_source_connection_id without a Retry');
  } else if (!p.initialSourceConnectionId || !p.initialSourceConnectionId.equals(peerScid)) {
    throw new TransportError(E.TRANSPORT_PARAMETER_ERROR, 'initial_source_connection_id does not match the client SCID');
  }
}
