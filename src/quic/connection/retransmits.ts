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
