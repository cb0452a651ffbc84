/**
 * HTTP/3 error codes (RFC 9114 §8.1) and the error type the HTTP/3 layer throws internally. The scope says how
 * the error is applied (§8): a connection error closes the QUIC connection with the code as an application error;
 * a stream error resets the request stream (RESET_STREAM + STOP_SENDING) and leaves the connection alone.
 */

export const H3ErrorCode = {
  H3_NO_ERROR: 0x100,
  H3_GENERAL_PROTOCOL_ERROR: 0x101,
  H3_INTERNAL_ERROR: 0x102,
  H3_STREAM_CREATION_ERROR: 0x103,
  H3_CLOSED_CRITICAL_STREAM: 0x104,
  H3_FRAME_UNEXPECTED: 0x105,
  H3_FRAME_ERROR: 0x106,
  H3_EXCESSIVE_LOAD: 0x107,
  H3_ID_ERROR: 0x108,
  H3_SETTINGS_ERROR: 0x109,
  H3_MISSING_SETTINGS: 0x10a,
  H3_REQUEST_REJECTED: 0x10b,
  H3_REQUEST_CANCELLED: 0x10c,
  H3_REQUEST_INCOMPLETE: 0x10d,
  H3_MESSAGE_ERROR: 0x10e,
  H3_CONNECT_ERROR: 0x10f,
  H3_VERSION_FALLBACK: 0x110,
} as const;

export type H3ErrorScope = 'connection' | 'stream';

const NAMES = new Map<number, string>([
  ...Object.entries(H3ErrorCode).map(([k, v]) => [v, k] as [number, string]),
  [0x200, 'QPACK_DECOMPRESSION_FAILED'],
  [0x201, 'QPACK_ENCODER_STREAM_ERROR'],
  [0x202, 'QPACK_DECODER_STREAM_ERROR'],
]);

/** The RFC name of an HTTP/3 or QPACK error code, or its hex value. */
export function h3ErrorName(code: number): string {
  return NAMES.get(code) ?? `0x${code.toString(16)}`;
}

export class H3Error extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly scope: H3ErrorScope = 'connection',
  ) {
    super(`${h3ErrorName(code)}: ${message}`);
    this.name = 'H3Error';
  }
}

/** The HTTP/3 connection was closed; `code` is the application (or transport) error code from CONNECTION_CLOSE. */
export class H3ConnectionClosedError extends Error {
  constructor(
    readonly code: number,
    readonly by: 'local' | 'peer' | 'idle',
    readonly application: boolean,
    readonly reason: string,
  ) {
    const who = by === 'idle' ? 'idle timeout' : by === 'peer' ? 'closed by peer' : 'closed locally';
    super(
      `HTTP/3 connection ${who}${by === 'idle' ? '' : ` with ${application ? h3ErrorName(code) : `transport error 0x${code.toString(16)}`}`}` +
        (reason ? ` (${reason})` : ''),
    );
    this.name = 'H3ConnectionClosedError';
  }
}

/**
 * A request that the server did not process (its stream is at or beyond the server's GOAWAY id, or the server
 * reset it with H3_REQUEST_REJECTED): it is safe to retry on a new connection (RFC 9114 §5.2, §4.1.1).
 */
export class H3RequestRejectedError extends Error {
  readonly retryable = true;
  constructor(
    readonly streamId: number,
    why: string,
  ) {
    super(`request on stream ${streamId} was not processed (${why}); it can be retried on a new connection`);
    this.name = 'H3RequestRejectedError';
  }
}

/** The peer reset a request stream (or we did, with this code). */
export class H3StreamError extends Error {
  constructor(
    readonly streamId: number,
    readonly code: number,
    how: 'reset by peer' | 'stopped by peer' | 'aborted locally',
  ) {
    super(`stream ${streamId} ${how} with ${h3ErrorName(code)}`);
    this.name = 'H3StreamError';
  }
}
