/**
 * Stream IDs and stream-count limits (RFC 9000 §2.1 ID layout, §3.2 implicit opening, §4.6 MAX_STREAMS /
 * STREAMS_BLOCKED, §19.11 the 2^60 cap).
 *
 * Bit 0 of an ID: 0 client-initiated, 1 server-initiated. Bit 1: 0 bidirectional, 1 unidirectional.
 */
import { TransportError, TransportErrorCode } from '../errors.js';

export type Role = 'client' | 'server';

/** Largest stream count a MAX_STREAMS frame may carry (RFC 9000 §4.6). */
export const MAX_STREAMS_LIMIT = 2 ** 60;

export function isBidi(id: number): boolean {
  return (id & 2) === 0;
}

export function isClientInitiated(id: number): boolean {
  return (id & 1) === 0;
}

export function isLocal(id: number, role: Role): boolean {
  return isClientInitiated(id) === (role === 'client');
}

/** The n-th (0-based) stream ID of a type. IDs can exceed 2^32, so no bit shifts on them. */
export function streamId(index: number, initiator: Role, bidi: boolean): number {
  return index * 4 + (initiator === 'server' ? 1 : 0) + (bidi ? 0 : 2);
}

/** 0-based index of a stream among those of its type. */
export function streamIndex(id: number): number {
  return Math.floor(id / 4);
}

export interface StreamLimits {
  /** Our initial_max_streams_bidi / _uni: how many streams of each type the peer may open. */
  localMaxStreamsBidi: number;
  localMaxStreamsUni: number;
  /** The peer's initial_max_streams_bidi / _uni: how many we may open. */
  peerMaxStreamsBidi: number;
  peerMaxStreamsUni: number;
}

class TypeState {
  /** Local side: streams we opened, the peer's limit, the limit STREAMS_BLOCKED was last sent for. */
  localOpened = 0;
  peerMax: number;
  blockedSentFor = -1;
  /** Remote side: streams the peer opened (implicitly or not), how many closed, our limit, its window. */
  remoteOpened = 0;
  remoteClosed = 0;
  ourMax: number;
  readonly window: number;

  constructor(ourMax: number, peerMax: number) {
    this.ourMax = ourMax;
    this.window = ourMax;
    this.peerMax = peerMax;
  }
}

/** Stream ID allocation and stream-count limits for one connection, both stream types. */
export class StreamIdManager {
  private readonly bidi: TypeState;
  private readonly uni: TypeState;

  constructor(
    readonly role: Role,
    limits: StreamLimits,
  ) {
    this.bidi = new TypeState(limits.localMaxStreamsBidi, limits.peerMaxStreamsBidi);
    this.uni = new TypeState(limits.localMaxStreamsUni, limits.peerMaxStreamsUni);
  }

  private t(bidi: boolean): TypeState {
    return bidi ? this.bidi : this.uni;
  }

  // ---- streams we open ----

  /** ID for a new local stream, or null when the peer's MAX_STREAMS forbids it (send STREAMS_BLOCKED). */
  nextLocalId(bidi: boolean): number | null {
    const t = this.t(bidi);
    if (t.localOpened >= t.peerMax) return null;
    return streamId(t.localOpened++, this.role, bidi);
  }

  /** How many more local streams of this type may be opened now. */
  localCredit(bidi: boolean): number {
    const t = this.t(bidi);
    return t.peerMax - t.localOpened;
  }

  /** MAX_STREAMS from the peer (never decreases). Above 2^60 is FRAME_ENCODING_ERROR (RFC 9000 §19.11). */
  setPeerMaxStreams(bidi: boolean, n: number): void {
    if (n > MAX_STREAMS_LIMIT) {
      throw new TransportError(TransportErrorCode.FRAME_ENCODING_ERROR, `MAX_STREAMS ${n} above 2^60`, bidi ? 0x12 : 0x13);
    }
    const t = this.t(bidi);
    if (n > t.peerMax) t.peerMax = n;
  }

  /** When opening is blocked and STREAMS_BLOCKED hasn't been sent for this limit, the limit; else null. */
  blockedLimit(bidi: boolean): number | null {
    const t = this.t(bidi);
    return t.localOpened >= t.peerMax && t.blockedSentFor !== t.peerMax ? t.peerMax : null;
  }

  markBlockedSent(bidi: boolean, limit: number): void {
    this.t(bidi).blockedSentFor = limit;
  }

  /** True when `id` is a local stream we have already opened (a frame for an unopened one is STREAM_STATE_ERROR). */
  isLocalOpened(id: number): boolean {
    return isLocal(id, this.role) && streamIndex(id) < this.t(isBidi(id)).localOpened;
  }

  // ---- streams the peer opens ----

  /**
   * A frame referenced remote stream `id`. Returns the IDs it newly opens, in order: every lower-numbered stream of
   * the same type not yet opened, then `id` itself (RFC 9000 §3.2); empty when already open (or closed).
   * Throws STREAM_LIMIT_ERROR past our MAX_STREAMS (RFC 9000 §4.6).
   */
  onRemoteStream(id: number): number[] {
    if (isLocal(id, this.role)) throw new Error(`stream ${id} is locally initiated`);
    const bidi = isBidi(id);
    const t = this.t(bidi);
    const index = streamIndex(id);
    if (index >= t.ourMax) {
      throw new TransportError(TransportErrorCode.STREAM_LIMIT_ERROR, `stream ${id} beyond MAX_STREAMS ${t.ourMax}`);
    }
    const out: number[] = [];
    const initiator: Role = this.role === 'client' ? 'server' : 'client';
    for (let i = t.remoteOpened; i <= index; i++) out.push(streamId(i, initiator, bidi));
    if (index >= t.remoteOpened) t.remoteOpened = index + 1;
    return out;
  }

  /** Number of remote streams of this type opened so far (IDs below that index exist or existed). */
  remoteOpenedCount(bidi: boolean): number {
    return this.t(bidi).remoteOpened;
  }

  /** A peer-initiated stream is fully closed: its slot may be given back through MAX_STREAMS. */
  onRemoteStreamClosed(bidi: boolean): void {
    this.t(bidi).remoteClosed++;
  }

  /** New MAX_STREAMS to advertise once half the window has been given back by closed streams, else null. */
  maxStreamsUpdate(bidi: boolean): number | null {
    const t = this.t(bidi);
    const next = Math.min(MAX_STREAMS_LIMIT, t.remoteClosed + t.window);
    return next - t.ourMax >= Math.max(1, t.window / 2) ? next : null;
  }

  markMaxStreamsSent(bidi: boolean, v: number): void {
    const t = this.t(bidi);
    if (v > t.ourMax) t.ourMax = v;
  }

  /** Our current MAX_STREAMS for this type. */
  ourMaxStreams(bidi: boolean): number {
    return this.t(bidi).ourMax;
  }
}
