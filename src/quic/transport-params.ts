/**
 * QUIC transport parameters (RFC 9000 §18): the body of the quic_transport_parameters TLS extension.
 *
 * Encoding omits every parameter equal to its default (§18.2) and adds one reserved GREASE parameter (§18.1).
 * Decoding applies the validity rules of §18.2 and §7.4 and throws TransportError(TRANSPORT_PARAMETER_ERROR).
 * Checking that the connection ID parameters match the handshake (§7.3) is the connection's job.
 */

import { randomBelow, randomBuffer } from '../util/random.js';
import { ownCopy } from '../util/buffers.js';
import { DecodeError, Reader, Writer, varintLength } from '../util/varint.js';
import { TransportError, TransportErrorCode } from './errors.js';

export interface TransportParameters {
  originalDestinationConnectionId?: Buffer;
  /** Milliseconds; 0 means no idle timeout. */
  maxIdleTimeout: number;
  statelessResetToken?: Buffer;
  maxUdpPayloadSize: number;
  initialMaxData: number;
  initialMaxStreamDataBidiLocal: number;
  initialMaxStreamDataBidiRemote: number;
  initialMaxStreamDataUni: number;
  initialMaxStreamsBidi: number;
  initialMaxStreamsUni: number;
  ackDelayExponent: number;
  /** Milliseconds. */
  maxAckDelay: number;
  disableActiveMigration: boolean;
  /** The raw preferred_address value (validated for shape when decoded). */
  preferredAddress?: Buffer;
  activeConnectionIdLimit: number;
  initialSourceConnectionId?: Buffer;
  retrySourceConnectionId?: Buffer;
}

/** Transport parameter identifiers (RFC 9000 §18.2). */
export const TransportParameterId = {
  original_destination_connection_id: 0x00,
  max_idle_timeout: 0x01,
  stateless_reset_token: 0x02,
  max_udp_payload_size: 0x03,
  initial_max_data: 0x04,
  initial_max_stream_data_bidi_local: 0x05,
  initial_max_stream_data_bidi_remote: 0x06,
  initial_max_stream_data_uni: 0x07,
  initial_max_streams_bidi: 0x08,
  initial_max_streams_uni: 0x09,
  ack_delay_exponent: 0x0a,
  max_ack_delay: 0x0b,
  disable_active_migration: 0x0c,
  preferred_address: 0x0d,
  active_connection_id_limit: 0x0e,
  initial_source_connection_id: 0x0f,
  retry_source_connection_id: 0x10,
} as const;

const ID = TransportParameterId;

type IntegerKey =
  | 'maxIdleTimeout'
  | 'maxUdpPayloadSize'
  | 'initialMaxData'
  | 'initialMaxStreamDataBidiLocal'
  | 'initialMaxStreamDataBidiRemote'
  | 'initialMaxStreamDataUni'
  | 'initialMaxStreamsBidi'
  | 'initialMaxStreamsUni'
  | 'ackDelayExponent'
  | 'maxAckDelay'
  | 'activeConnectionIdLimit';

type CidKey = 'originalDestinationConnectionId' | 'initialSourceConnectionId' | 'retrySourceConnectionId';

/** Integer parameters in identifier order. */
const INTEGER_PARAMS: ReadonlyArray<[id: number, key: IntegerKey]> = [
  [ID.max_idle_timeout, 'maxIdleTimeout'],
  [ID.max_udp_payload_size, 'maxUdpPayloadSize'],
  [ID.initial_max_data, 'initialMaxData'],
  [ID.initial_max_stream_data_bidi_local, 'initialMaxStreamDataBidiLocal'],
  [ID.initial_max_stream_data_bidi_remote, 'initialMaxStreamDataBidiRemote'],
  [ID.initial_max_stream_data_uni, 'initialMaxStreamDataUni'],
  [ID.initial_max_streams_bidi, 'initialMaxStreamsBidi'],
  [ID.initial_max_streams_uni, 'initialMaxStreamsUni'],
  [ID.ack_delay_exponent, 'ackDelayExponent'],
  [ID.max_ack_delay, 'maxAckDelay'],
  [ID.active_connection_id_limit, 'activeConnectionIdLimit'],
];
const INTEGER_KEY_BY_ID = new Map<number, IntegerKey>(INTEGER_PARAMS);

const CID_PARAMS: ReadonlyArray<[id: number, key: CidKey]> = [
  [ID.original_destination_connection_id, 'originalDestinationConnectionId'],
  [ID.initial_source_connection_id, 'initialSourceConnectionId'],
  [ID.retry_source_connection_id, 'retrySourceConnectionId'],
];
const CID_KEY_BY_ID = new Map<number, CidKey>(CID_PARAMS);

/** Parameters only a server may send (RFC 9000 §18.2). */
const SERVER_ONLY = new Set<number>([
  ID.original_destination_connection_id,
  ID.stateless_reset_token,
  ID.preferred_address,
  ID.retry_source_connection_id,
]);

const NAME_BY_ID = new Map<number, string>(Object.entries(TransportParameterId).map(([k, v]) => [v, k]));

const MAX_CID_LENGTH = 20;
const RESET_TOKEN_LENGTH = 16;
const MIN_UDP_PAYLOAD = 1200;
const MAX_ACK_DELAY_EXPONENT = 20;
const MAX_ACK_DELAY_LIMIT = 2 ** 14;
const MIN_ACTIVE_CID_LIMIT = 2;
const MAX_STREAMS_LIMIT = 2n ** 60n;
/** Transport parameters travel in CRYPTO frames; errors about them name that frame type. */
const CRYPTO_FRAME = 0x06;

/** The values a peer is assumed to use for every parameter it omits (RFC 9000 §18.2). */
export function defaultTransportParameters(): TransportParameters {
  return {
    maxIdleTimeout: 0,
    maxUdpPayloadSize: 65527,
    initialMaxData: 0,
    initialMaxStreamDataBidiLocal: 0,
    initialMaxStreamDataBidiRemote: 0,
    initialMaxStreamDataUni: 0,
    initialMaxStreamsBidi: 0,
    initialMaxStreamsUni: 0,
    ackDelayExponent: 3,
    maxAckDelay: 25,
    disableActiveMigration: false,
    activeConnectionIdLimit: 2,
  };
}

const DEFAULTS: Readonly<TransportParameters> = Object.freeze(defaultTransportParameters());

function paramError(message: string): TransportError {
  return new TransportError(TransportErrorCode.TRANSPORT_PARAMETER_ERROR, message, CRYPTO_FRAME);
}

/**
 * Encodes p, leaving out parameters equal to their defaults, plus one GREASE parameter with a reserved
 * identifier 31*N+27 and a short random value so peers keep ignoring unknown parameters (RFC 9000 §18.1).
 */
export function encodeTransportParameters(p: TransportParameters): Buffer {
  const w = new Writer(128);
  const putBytes = (id: number, value: Buffer): void => {
    w.varint(id).varint(value.length).bytes(value);
  };
  for (const [id, key] of CID_PARAMS) {
    const cid = p[key];
    if (cid === undefined) continue;
    if (cid.length > MAX_CID_LENGTH) throw new RangeError(`${NAME_BY_ID.get(id)} longer than 20 bytes`);
  }
  if (p.originalDestinationConnectionId) putBytes(ID.original_destination_connection_id, p.originalDestinationConnectionId);
  if (p.statelessResetToken) {
    if (p.statelessResetToken.length !== RESET_TOKEN_LENGTH) throw new RangeError('stateless_reset_token must be 16 bytes');
    putBytes(ID.stateless_reset_token, p.statelessResetToken);
  }
  for (const [id, key] of INTEGER_PARAMS) {
    const v = p[key];
    if (v === DEFAULTS[key]) continue;
    w.varint(id).varint(varintLength(v)).varint(v);
  }
  if (p.disableActiveMigration) w.varint(ID.disable_active_migration).varint(0);
  if (p.preferredAddress) putBytes(ID.preferred_address, p.preferredAddress);
  if (p.initialSourceConnectionId) putBytes(ID.initial_source_connection_id, p.initialSourceConnectionId);
  if (p.retrySourceConnectionId) putBytes(ID.retry_source_connection_id, p.retrySourceConnectionId);
  // GREASE: N below 2^24 keeps the identifier in a 4-byte varint; the value is 0..8 random bytes.
  putBytes(31 * randomBelow(2 ** 24) + 27, randomBuffer(randomBelow(9)));
  return w.finish();
}

/** Reads a parameter value that must be exactly one varint; returns it as a bigint (exact beyond 2^53). */
function integerValue(id: number, value: Buffer): bigint {
  const name = NAME_BY_ID.get(id);
  if (value.length === 0) throw paramError(`${name} has an empty value`);
  const len = 1 << (value[0] >>> 6);
  if (len !== value.length) throw paramError(`${name} value is ${value.length} bytes but its varint is ${len}`);
  let v = BigInt(value[0] & 0x3f);
  for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(value[i]);
  return v;
}

/** RFC 9000 §18.2 preferred_address: IPv4 (4) + port (2) + IPv6 (16) + port (2) + CID length (1) + CID + token (16). */
function checkPreferredAddress(value: Buffer): void {
  const fixed = 4 + 2 + 16 + 2 + 1;
  if (value.length < fixed) throw paramError(`preferred_address too short (${value.length} bytes)`);
  const cidLen = value[fixed - 1];
  if (cidLen < 1 || cidLen > MAX_CID_LENGTH) throw paramError(`preferred_address connection ID length ${cidLen}`);
  if (value.length !== fixed + cidLen + RESET_TOKEN_LENGTH) {
    throw paramError(`preferred_address is ${value.length} bytes, expected ${fixed + cidLen + RESET_TOKEN_LENGTH}`);
  }
}

/** Checks the §18.2 bounds of an integer parameter. */
function checkInteger(id: number, v: bigint): void {
  switch (id) {
    case ID.max_udp_payload_size:
      if (v < MIN_UDP_PAYLOAD) throw paramError(`max_udp_payload_size ${v} is below 1200`);
      break;
    case ID.ack_delay_exponent:
      if (v > MAX_ACK_DELAY_EXPONENT) throw paramError(`ack_delay_exponent ${v} is above 20`);
      break;
    case ID.max_ack_delay:
      if (v >= MAX_ACK_DELAY_LIMIT) throw paramError(`max_ack_delay ${v} is not below 2^14`);
      break;
    case ID.active_connection_id_limit:
      if (v < MIN_ACTIVE_CID_LIMIT) throw paramError(`active_connection_id_limit ${v} is below 2`);
      break;
    case ID.initial_max_streams_bidi:
    case ID.initial_max_streams_uni:
      if (v > MAX_STREAMS_LIMIT) throw paramError(`${NAME_BY_ID.get(id)} ${v} is above 2^60`);
      break;
  }
}

/**
 * Decodes a peer's transport parameters. `sender` is the role of the peer that sent them.
 * Unknown (including GREASE) parameters are skipped. Returned Buffers are copies, independent of `buf`.
 */
export function decodeTransportParameters(buf: Buffer, sender: 'client' | 'server'): TransportParameters {
  const p = defaultTransportParameters();
  const seen = new Set<number>();
  const r = new Reader(buf);
  while (!r.atEnd()) {
    let id: number;
    let value: Buffer;
    try {
      id = r.varint();
      value = r.bytes(r.varint());
    } catch (e) {
      if (e instanceof DecodeError) throw paramError(`transport parameters truncated: ${e.message}`);
      throw e;
    }
    const name = NAME_BY_ID.get(id) ?? `parameter 0x${id.toString(16)}`;
    if (seen.has(id)) throw paramError(`duplicate ${name}`);
    seen.add(id);
    if (sender === 'client' && SERVER_ONLY.has(id)) throw paramError(`a client must not send ${name}`);

    const intKey = INTEGER_KEY_BY_ID.get(id);
    if (intKey !== undefined) {
      const v = integerValue(id, value);
      checkInteger(id, v);
      p[intKey] = Number(v);
      continue;
    }
    const cidKey = CID_KEY_BY_ID.get(id);
    if (cidKey !== undefined) {
      if (value.length > MAX_CID_LENGTH) throw paramError(`${name} is ${value.length} bytes, more than 20`);
      p[cidKey] = ownCopy(value);
      continue;
    }
    switch (id) {
      case ID.stateless_reset_token:
        if (value.length !== RESET_TOKEN_LENGTH) throw paramError(`stateless_reset_token is ${value.length} bytes, not 16`);
        p.statelessResetToken = ownCopy(value);
        break;
      case ID.disable_active_migration:
        if (value.length !== 0) throw paramError(`disable_active_migration must be empty, got ${value.length} bytes`);
        p.disableActiveMigration = true;
        break;
      case ID.preferred_address:
        checkPreferredAddress(value);
        p.preferredAddress = ownCopy(value);
        break;
      default:
        // Unknown and reserved (GREASE) parameters are ignored (RFC 9000 §7.4.2, §18.1).
        break;
    }
  }
  return p;
}
