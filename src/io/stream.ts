/**
 * A QUIC stream as a Node Duplex. Reads pull from the connection's receive buffer (reading is what extends the
 * peer's flow-control credit); writes queue on the connection and call back once the stream's unacknowledged
 * data is below the high-water mark, so a fast writer is held back by QUIC flow and congestion control.
 */
import { Duplex } from 'node:stream';
import type { Connection } from '../quic/connection.js';

/**
 * What a stream needs of its connection handle (QuicConnection in udp.ts): the sans-I/O connection and a way to
 * have the driver run after reads and writes. Narrow so that this file does not depend on udp.ts.
 */
export interface StreamHost {
  readonly conn: Connection;
  /** Called after reads/writes: the connection may have something to send. */
  wake(): void;
}

export class StreamResetError extends Error {
  constructor(
    readonly streamId: number,
    readonly errorCode: number,
    how: 'reset' | 'stop_sending',
  ) {
    super(`stream ${streamId} ${how === 'reset' ? 'reset' : 'stopped'} by peer with code 0x${errorCode.toString(16)}`);
    this.name = 'StreamResetError';
  }
}

export class QuicStream extends Duplex {
  private pendingWrite: (() => void) | null = null;
  private wantRead = false;
  private ended = false;
  /** The peer reset its sending side (RESET_STREAM), with this code. */
  resetCode: number | null = null;
  /** The peer asked us to stop sending (STOP_SENDING), with this code. */
  stopSendingCode: number | null = null;

  constructor(
    readonly connection: StreamHost,
    readonly id: number,
  ) {
    super({ allowHalfOpen: true, highWaterMark: 256 * 1024 });
    const c = connection.conn;
    const bidi = (id & 2) === 0;
    const local = (id & 1) === (c.role === 'client' ? 0 : 1);
    // A unidirectional stream has one side only.
    if (!bidi && local) this.push(null);
    if (!bidi && !local) this.end();
  }

  get bidirectional(): boolean {
    return (this.id & 2) === 0;
  }

  /** Moves readable data from the connection into the stream buffer. */
  pump(): void {
    if (this.ended || this.destroyed) return;
    const c = this.connection.conn;
    let read = false;
    while (this.wantRead) {
      const b = c.streamRead(this.id);
      if (!b) break;
      read = true;
      this.wantRead = this.push(b);
    }
    if (read) this.connection.wake(); // credit updates
    if (this.resetCode === null && c.streamFinished(this.id) && !this.ended) {
      this.ended = true;
      this.push(null);
    }
  }

  override _read(): void {
    this.wantRead = true;
    this.pump();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.stopSendingCode !== null) return cb(new StreamResetError(this.id, this.stopSendingCode, 'stop_sending'));
    const c = this.connection.conn;
    if (c.state === 'closed' || c.state === 'closing' || c.state === 'draining') return cb(new Error('connection closed'));
    const buffered = c.streamWrite(this.id, chunk);
    this.connection.wake();
    if (buffered > 1024 * 1024) this.pendingWrite = () => cb();
    else cb();
  }

  /** Whether we have a sending side (all but peer-initiated unidirectional streams). */
  get canSend(): boolean {
    return this.bidirectional || (this.id & 1) === (this.connection.conn.role === 'client' ? 0 : 1);
  }

  override _final(cb: (err?: Error | null) => void): void {
    const c = this.connection.conn;
    if (this.stopSendingCode !== null || !this.canSend) return cb();
    if (c.hasStream(this.id) && c.state !== 'closed') {
      c.streamEnd(this.id);
      this.connection.wake();
    }
    cb();
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const c = this.connection.conn;
    if (c.state !== 'closed' && c.hasStream(this.id)) {
      // An abandoned stream: reset what we send and stop what we receive (application error code 0 unless set).
      if (!this.writableFinished && this.canSend) c.streamReset(this.id, this.abortCode);
      if (!this.ended) c.streamStopSending(this.id, this.abortCode);
      this.connection.wake();
    }
    const p = this.pendingWrite;
    this.pendingWrite = null;
    p?.();
    cb(err);
  }

  /** The application error code used when this stream is destroyed before it finished. */
  abortCode = 0;

  /** Aborts our sending side with RESET_STREAM(code). */
  reset(code: number): void {
    this.connection.conn.streamReset(this.id, code);
    this.connection.wake();
  }

  /** Asks the peer to stop sending with STOP_SENDING(code); further incoming data is discarded. */
  stopSending(code: number): void {
    this.connection.conn.streamStopSending(this.id, code);
    this.connection.wake();
  }

  onDrain(): void {
    const p = this.pendingWrite;
    this.pendingWrite = null;
    p?.();
  }

  onPeerReset(code: number): void {
    this.resetCode = code;
    this.emit('reset', code);
    this.destroy(new StreamResetError(this.id, code, 'reset'));
  }

  onStopSending(code: number): void {
    this.stopSendingCode = code;
    this.emit('stopSending', code);
    const p = this.pendingWrite;
    this.pendingWrite = null;
    p?.();
  }

  onConnectionClosed(err: Error | null): void {
    // Without an 'error' listener nobody can act on the error: end the stream without one rather than crash.
    if (!this.destroyed && !(this.readableEnded && this.writableFinished))
      this.destroy(err && this.listenerCount('error') > 0 ? err : undefined);
  }
}
