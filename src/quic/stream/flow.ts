/**
 * Connection-level flow control (RFC 9000 §4.1 MAX_DATA / DATA_BLOCKED, §4.2 credit increments).
 *
 * Send side: new STREAM bytes (never retransmissions) count against the peer's MAX_DATA.
 * Receive side: the sum over streams of highest-offset growth counts against our MAX_DATA; the credit is extended as
 * the application consumes data (or a reset or discarded stream releases it).
 */
import { TransportError, TransportErrorCode } from '../errors.js';

/**
 * A credit update (MAX_DATA, MAX_STREAM_DATA) is due when less than this fraction of the window remains unconsumed:
 * credit in quarter-window steps, so a sender held by it resumes with bursts of a quarter window, not half of one.
 */
export const CREDIT_REMAINING = 0.75;

export class ConnectionFlowControl {
  private peerMaxData: number;
  private sent = 0;
  private blockedSentFor = -1;

  private ourMaxData: number;
  private window: number;
  private received = 0;
  private consumed = 0;

  constructor(ourInitialMaxData: number, peerInitialMaxData: number) {
    this.ourMaxData = ourInitialMaxData;
    this.window = ourInitialMaxData;
    this.peerMaxData = peerInitialMaxData;
  }

  // ---- send side ----

  /** Bytes of new stream data we may still send. */
  get sendCredit(): number {
    return this.peerMaxData - this.sent;
  }

  /** Total new stream bytes sent so far. */
  get bytesSent(): number {
    return this.sent;
  }

  get peerLimit(): number {
    return this.peerMaxData;
  }

  onNewDataSent(n: number): void {
    if (this.sent + n > this.peerMaxData) throw new Error(`connection flow control overrun: ${this.sent + n} > ${this.peerMaxData}`);
    this.sent += n;
  }

  /** MAX_DATA from the peer (never decreases). True when it raised the limit. */
  setPeerMaxData(max: number): boolean {
    if (max <= this.peerMaxData) return false;
    this.peerMaxData = max;
    return true;
  }

  /**
   * When all credit is used and DATA_BLOCKED hasn't been reported for this limit, the limit to report; else null.
   * Ask only when some stream has new data waiting; call markBlockedSent(limit) once the frame is sent.
   */
  blockedLimit(): number | null {
    if (this.sent >= this.peerMaxData && this.blockedSentFor !== this.peerMaxData) return this.peerMaxData;
    return null;
  }

  markBlockedSent(limit: number): void {
    this.blockedSentFor = limit;
  }

  // ---- receive side ----

  /** Our current advertised MAX_DATA. */
  get currentLimit(): number {
    return this.ourMaxData;
  }

  /** Bytes the application read, or that resets and discarded streams released. */
  get bytesConsumed(): number {
    return this.consumed;
  }

  get bytesReceived(): number {
    return this.received;
  }

  /** Highest-offset growth (summed over streams). Throws FLOW_CONTROL_ERROR past our limit. */
  onDataReceived(n: number): void {
    this.received += n;
    if (this.received > this.ourMaxData) {
      throw new TransportError(
        TransportErrorCode.FLOW_CONTROL_ERROR,
        `connection data ${this.received} exceeds MAX_DATA ${this.ourMaxData}`,
      );
    }
  }

  /** The application read n bytes, or a reset / discarded stream released them. */
  onDataConsumed(n: number): void {
    this.consumed += n;
  }

  /** New MAX_DATA once a quarter of the window was consumed since the last one (CREDIT_REMAINING), else null. */
  maxDataUpdate(): number | null {
    if (this.ourMaxData - this.consumed >= this.window * CREDIT_REMAINING) return null;
    return this.consumed + this.window;
  }

  markMaxDataSent(v: number): void {
    if (v > this.ourMaxData) this.ourMaxData = v;
  }

  /** Changes the receive window used for future MAX_DATA updates. */
  setWindow(bytes: number): void {
    this.window = bytes;
  }
}
