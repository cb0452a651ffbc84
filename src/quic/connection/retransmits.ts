/**
 * What a sent packet carried that must be retransmitted or acted on when it is acknowledged or lost (RFC 9000 §13.3:
 * information is repeated, not packets).
 */
import type { Level } from '../types.js';

export type SentFrame =
  | { k: 'stream'; id: number; offset: number; len: number; fin: boolean }
  | { k: 'crypto'; level: Level; offset: number; len: number }
  | { k: 'ack'; largest: number }
  | { k: 'max_data' }
  | { k: 'max_stream_data'; id: number }
  | { k: 'max_streams'; bidi: boolean }
  | { k: 'data_blocked' }
  | { k: 'stream_data_blocked'; id: number }
  | { k: 'streams_blocked'; bidi: boolean }
  | { k: 'reset'; id: number }
  | { k: 'stop_sending'; id: number }
  | { k: 'handshake_done' }
  | { k: 'new_cid'; seq: number }
  | { k: 'retire_cid'; seq: number }
  | { k: 'ping' }
  | { k: 'pmtu'; size: number };

/** The record the loss detector keeps for each sent packet. */
export interface PacketInfo {
  level: Level;
  frames: SentFrame[];
  keyPhase: number;
}

/**
 * Control frames waiting to be sent (first sends, and repeats of lost ones: RFC 9000 §13.3), one field per kind as in
 * quinn's `Retransmits`. A lost packet's records mark their kinds here again (Connection.requeue), and the frame
 * writers take from here. Per-stream kinds are sets of stream IDs: a stream is written at most once per packet.
 */
export class Retransmits {
  maxData = false;
  dataBlocked = false;
  /** [uni, bidi] */
  readonly maxStreams = [false, false];
  readonly streamsBlocked = [false, false];
  readonly maxStreamData = new Set<number>();
  readonly streamDataBlocked = new Set<number>();
  readonly resets = new Set<number>();
  readonly stopSending = new Set<number>();
  /** Sequence numbers of our connection IDs to announce (NEW_CONNECTION_ID), and of the peer's to retire. */
  readonly newCids: number[] = [];
  readonly retireCids: number[] = [];
  handshakeDone = false;
  ping = false;
  /** PATH_CHALLENGE data to echo (never repeated when lost: RFC 9000 §13.3). */
  readonly pathResponses: Buffer[] = [];

  /** Closing: stream data and its credit and signals are no longer sent. */
  clearStreamFrames(): void {
    this.maxStreamData.clear();
    this.stopSending.clear();
    this.resets.clear();
  }
}
