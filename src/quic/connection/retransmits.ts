/**
 * Frames that are repeated, not packets (RFC 9000 §13.3): one type, `Retransmits` (as quinn's), is both what waits to
 * be sent (the connection's pending control frames) and what a sent packet carried of them. A lost packet's
 * Retransmits is merged back into the pending one (`mergeLost`); an acknowledged packet's record is dropped.
 *
 * `SentPacketContents` is the rest of what the loss detector keeps for a sent packet: the ranges of stream and CRYPTO
 * data it carried (those live on in the send buffers, which resend or release them), the largest packet number of
 * the ACK it carried, and the size of a PMTU probe.
 */
/** Receives the per-stream and per-connection-ID entries of a lost packet, to requeue those that still apply. */
export interface LostFrameOwner {
  /** Puts the still-valid entries of `lost` (its kinds of this owner) back in `pending`. */
  requeueLost(lost: Retransmits, pending: Retransmits): void;
}

const NO_IDS: ReadonlySet<number> = new Set<number>();

/**
 * A set of stream IDs whose Set is made on the first add: most sent packets carry none of a kind, and a packet's
 * record is made for every packet with a control frame (a Set costs a hash table; this object, one field).
 */
export class StreamIdSet {
  private ids: Set<number> | null = null;

  add(id: number): void {
    (this.ids ??= new Set()).add(id);
  }

  delete(id: number): boolean {
    return this.ids !== null && this.ids.delete(id);
  }

  has(id: number): boolean {
    return this.ids !== null && this.ids.has(id);
  }

  clear(): void {
    this.ids?.clear();
  }

  get size(): number {
    return this.ids === null ? 0 : this.ids.size;
  }

  /** In insertion order; deleting the current entry while iterating is allowed (as with a Set). */
  [Symbol.iterator](): IterableIterator<number> {
    return (this.ids ?? NO_IDS).values();
  }
}

/**
 * Control frames, one field per kind. Per-stream kinds are sets of stream IDs: a stream is written at most once per
 * packet. The frame writers take from the pending one and record into the packet's.
 */
export class Retransmits {
  maxData = false;
  dataBlocked = false;
  /** [uni, bidi] */
  readonly maxStreams = [false, false];
  readonly streamsBlocked = [false, false];
  readonly maxStreamData = new StreamIdSet();
  readonly streamDataBlocked = new StreamIdSet();
  readonly resets = new StreamIdSet();
  readonly stopSending = new StreamIdSet();
  /** Sequence numbers of our connection IDs to announce (NEW_CONNECTION_ID), and of the peer's to retire. */
  readonly newCids: number[] = [];
  readonly retireCids: number[] = [];
  handshakeDone = false;
  /** Pending only (a PING is never repeated). */
  ping = false;
  /** Pending only: PATH_CHALLENGE data to echo (a PATH_RESPONSE is never repeated: RFC 9000 §13.3). */
  readonly pathResponses: Buffer[] = [];

  /**
   * `this |= lost` for what a lost (or PTO-probed) packet carried: the connection-level kinds here, the per-stream
   * and per-connection-ID kinds through their owners, which drop what no longer applies (a stream gone, an ID
   * retired).
   */
  mergeLost(lost: Retransmits, streams: LostFrameOwner, cids: LostFrameOwner): void {
    if (lost.maxData) this.maxData = true;
    if (lost.dataBlocked) this.dataBlocked = true;
    for (let t = 0; t < 2; t++) {
      if (lost.maxStreams[t]) this.maxStreams[t] = true;
      if (lost.streamsBlocked[t]) this.streamsBlocked[t] = true;
    }
    if (lost.handshakeDone) this.handshakeDone = true;
    streams.requeueLost(lost, this);
    cids.requeueLost(lost, this);
  }

  /** Closing: stream data and its credit and signals are no longer sent. */
  clearStreamFrames(): void {
    this.maxStreamData.clear();
    this.stopSending.clear();
    this.resets.clear();
  }
}

/** A STREAM frame's range of stream data (CRYPTO frames use id -1). */
export interface SentRange {
  id: number;
  offset: number;
  len: number;
  fin: boolean;
}

/** What the loss detector keeps for each sent packet. */
export class SentPacketContents {
  /** Largest packet number acknowledged by the ACK frame this packet carried, or -1. */
  ackLargest = -1;
  /** CRYPTO data of the packet's level (id and fin unused). */
  crypto: SentRange[] | null = null;
  /**
   * The first STREAM frame, inline (a bulk packet carries one: no array and range object per packet): its stream ID,
   * or -1 when the packet carried none.
   */
  streamId = -1;
  streamOffset = 0;
  streamLen = 0;
  streamFin = false;
  /** The STREAM frames after the first. */
  stream: SentRange[] | null = null;
  /** The control frames, made when the first one is written. */
  retransmits: Retransmits | null = null;
  /** A PMTU probe's datagram size, or 0. */
  pmtuProbe = 0;
}
