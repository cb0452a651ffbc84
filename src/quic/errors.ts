/** Transport error codes (RFC 9000 §20.1) and the error type that closes a connection with one of them. */

export const TransportErrorCode = {
  NO_ERROR: 0x00,
  INTERNAL_ERROR: 0x01,
  CONNECTION_REFUSED: 0x02,
  FLOW_CONTROL_ERROR: 0x03,
  STREAM_LIMIT_ERROR: 0x04,
  STREAM_STATE_ERROR: 0x05,
  FINAL_SIZE_ERROR: 0x06,
  FRAME_ENCODING_ERROR: 0x07,
  TRANSPORT_PARAMETER_ERROR: 0x08,
  CONNECTION_ID_LIMIT_ERROR: 0x09,
  PROTOCOL_VIOLATION: 0x0a,
  INVALID_TOKEN: 0x0b,
  APPLICATION_ERROR: 0x0c,
  CRYPTO_BUFFER_EXCEEDED: 0x0d,
  KEY_UPDATE_ERROR: 0x0e,
  AEAD_LIMIT_REACHED: 0x0f,
  NO_VIABLE_PATH: 0x10,
  /** CRYPTO_ERROR is 0x0100 + TLS alert code. */
  CRYPTO_ERROR_BASE: 0x100,
} as const;

const names = new Map<number, string>(Object.entries(TransportErrorCode).map(([k, v]) => [v, k]));

export function transportErrorName(code: number): string {
  if (code >= 0x100 && code <= 0x1ff) return `CRYPTO_ERROR(alert ${code - 0x100})`;
  return names.get(code) ?? `0x${code.toString(16)}`;
}

/** Thrown anywhere in the transport to close the connection with `code`. */
export class TransportError extends Error {
  constructor(
    readonly code: number,
    message: string,
    /** The frame type that caused the error, 0 when unknown (RFC 9000 §19.19). */
    readonly frameType = 0,
  ) {
    super(`${transportErrorName(code)}: ${message}`);
    this.name = 'TransportError';
  }
}

/** TLS alert descriptions used by our TLS stack (RFC 8446 §6). */
export const TlsAlert = {
  unexpected_message: 10,
  bad_record_mac: 20,
  handshake_failure: 40,
  bad_certificate: 42,
  unsupported_certificate: 43,
  certificate_expired: 45,
  certificate_unknown: 46,
  illegal_parameter: 47,
  unknown_ca: 48,
  decode_error: 50,
  decrypt_error: 51,
  protocol_version: 70,
  internal_error: 80,
  missing_extension: 109,
  unsupported_extension: 110,
  unrecognized_name: 112,
  no_application_protocol: 120,
} as const;

/** Every alert description of RFC 8446 §6 (a peer may send any of them), for messages. */
const ALERT_NAMES: Readonly<Record<number, string>> = {
  0: 'close_notify',
  10: 'unexpected_message',
  20: 'bad_record_mac',
  22: 'record_overflow',
  40: 'handshake_failure',
  42: 'bad_certificate',
  43: 'unsupported_certificate',
  44: 'certificate_revoked',
  45: 'certificate_expired',
  46: 'certificate_unknown',
  47: 'illegal_parameter',
  48: 'unknown_ca',
  49: 'access_denied',
  50: 'decode_error',
  51: 'decrypt_error',
  70: 'protocol_version',
  71: 'insufficient_security',
  80: 'internal_error',
  86: 'inappropriate_fallback',
  90: 'user_canceled',
  109: 'missing_extension',
  110: 'unsupported_extension',
  112: 'unrecognized_name',
  113: 'bad_certificate_status_response',
  115: 'unknown_psk_identity',
  116: 'certificate_required',
  120: 'no_application_protocol',
};

/** The name of a TLS alert description ("bad_certificate"), or "alert N" for one RFC 8446 does not define. */
export function tlsAlertName(alert: number): string {
  return ALERT_NAMES[alert] ?? `alert ${alert}`;
}

/** A TLS failure; the connection closes with CRYPTO_ERROR (0x100 + alert). */
export class TlsError extends TransportError {
  constructor(
    readonly alert: number,
    message: string,
  ) {
    super(TransportErrorCode.CRYPTO_ERROR_BASE + alert, message, 0x06);
    this.name = 'TlsError';
  }
}
