/**
 * What a connection leaves in its endpoint for its closing or draining period (RFC 9000 §10.2): the endpoint routes
 * the connection's IDs to this record and lets go of the connection itself (its streams, recovery, TLS and key state,
 * and through the driver the layers above), so that a connection that has closed costs a few hundred bytes for the
 * three PTOs it lingers, not the state of an open one.
 *
 * §10.2 asks for no more: the datagram with the CONNECTION_CLOSE frame to send again (§10.2.1 allows repeating the
 * same packet: "Retransmitting the final packet requires less state"), the connection IDs to recognise the peer's
 * packets by (the issuer keeps them), and the end of the period. Nothing received is decrypted or processed (§10.2.1:
 * "An endpoint in the closing state is not required to process any received frame").
 *
 * - closing (we closed): the peer's datagrams are answered with the saved CONNECTION_CLOSE, rate-limited (§10.2.1
 *   SHOULD: "wait for a progressively increasing number of received packets") to the 1st, 2nd, 4th, 8th, ... datagram
 *   after the close, and within the anti-amplification limit while the peer's address is not validated (§8.1);
 * - draining (the peer closed): nothing is sent (§10.2.2 MUST NOT); datagrams are absorbed so that they neither
 *   start a new connection nor reach anyone else.
 *
 * When the period ends the endpoint drops the record and its connection IDs; a connection still held by the
 * application (a WeakRef here, which does not keep it alive) is told then, so that its state becomes 'closed'.
 */
import type { Address } from './connection-types.js';

/** The part of a connection the record needs when its period ends (Connection.handleTimeout). */
export interface Lingering {
  handleTimeout(now: number): void;
}

export class ClosingRecord {
  /** Datagrams received since the record took over, and their bytes; bytes sent back. */
  datagrams = 0;
  private bytesIn = 0;
  private bytesOut = 0;
  private readonly conn: WeakRef<Lingering>;

  /**
   * @param keys the routing keys of the connection's IDs (ConnectionIdIssuer.park)
   * @param remote where the connection sent to
   * @param deadline when the closing or draining period ends (3 PTO after it began)
   * @param close the datagram with CONNECTION_CLOSE (a copy of its own), or null while draining
   * @param budget bytes the connection could still send to an unvalidated address (Infinity once validated)
   */
  constructor(
    conn: Lingering,
    readonly keys: string[],
    readonly remote: Address,
    readonly deadline: number,
    readonly close: Buffer | null,
    private readonly budget: number,
  ) {
    this.conn = new WeakRef(conn);
  }

  get draining(): boolean {
    return this.close === null;
  }

  /** A datagram to one of the connection's IDs arrived (`bytes` long): the CONNECTION_CLOSE to send back, or null. */
  onDatagram(bytes: number): Buffer | null {
    const n = ++this.datagrams;
    this.bytesIn += bytes;
    const close = this.close;
    if (close === null) return null;
    if ((n & (n - 1)) !== 0) return null; // only the 1st, 2nd, 4th, 8th, ... datagram is answered
    if (close.length > this.budget + 3 * this.bytesIn - this.bytesOut) return null;
    this.bytesOut += close.length;
    return close;
  }

  /** The period ended: the connection, if the application still holds it, becomes 'closed'. */
  expire(now: number): void {
    this.conn.deref()?.handleTimeout(Math.max(now, this.deadline));
  }
}
