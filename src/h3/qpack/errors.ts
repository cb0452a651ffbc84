/**
 * QPACK error codes (RFC 9204 §6) and the error types the encoder and decoder throw.
 * The HTTP/3 layer turns a QpackError into a connection error with `code`; a QpackFieldSectionTooLargeError is
 * different: it is a per-stream limit (RFC 9114 §4.2.2), not a broken peer, so HTTP/3 may answer it with a
 * stream error (H3_MESSAGE_ERROR / H3_EXCESSIVE_LOAD) or a 431 instead of closing the connection.
 */

export const QpackErrorCode = {
  QPACK_DECOMPRESSION_FAILED: 0x200,
  QPACK_ENCODER_STREAM_ERROR: 0x201,
  QPACK_DECODER_STREAM_ERROR: 0x202,
} as const;

export class QpackError extends Error {
  constructor(
    readonly code: number,
    message: string,
  ) {
    super(message);
    this.name = 'QpackError';
  }
}

/**
 * The decoded field section would exceed the local maxFieldSectionSize. Decoding stopped before the offending
 * string was allocated. The decoder's shared state is intact (the connection can continue); the HTTP/3 layer should
 * abandon the stream and call QpackDecoder.cancelStream() so the peer's encoder releases its references.
 */
export class QpackFieldSectionTooLargeError extends QpackError {
  readonly fieldSectionTooLarge = true;
  constructor(
    readonly streamId: number,
    readonly limit: number,
  ) {
    super(QpackErrorCode.QPACK_DECOMPRESSION_FAILED, `field section on stream ${streamId} exceeds ${limit} bytes`);
    this.name = 'QpackFieldSectionTooLargeError';
  }
}

/**
 * A field line: [name, value]. Names are lowercase. Both are "binary" latin1 strings: each char is one octet
 * (0..255), so any octet sequence round-trips exactly. Callers holding UTF-8 text convert with
 * Buffer.from(s, 'utf8').toString('latin1'). The encoder rejects chars above 0xff.
 */
export type Header = [name: string, value: string];
