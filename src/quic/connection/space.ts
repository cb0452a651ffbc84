/** A packet number space (RFC 9000 §12.3): its keys, ACK state, CRYPTO streams and next packet number. */
import { Level } from '../types.js';
import type { DirectionKeys } from '../crypto/keys.js';
import { AckTracker } from '../recovery/ack-tracker.js';
import { SendStream } from '../stream/send.js';
import { RecvStream } from '../stream/recv.js';
import { PacketType } from '../packet/header.js';
import type { PacketKind } from '../frame/frames.js';

/** CRYPTO data buffered ahead of the TLS stack's reading, per level. */
export const CRYPTO_BUFFER_LIMIT = 64 * 1024;

export interface Space {
  level: Level;
  read: DirectionKeys | null;
  write: DirectionKeys | null;
  acks: AckTracker;
  cryptoSend: SendStream;
  cryptoRecv: RecvStream;
  nextPn: number;
  discarded: boolean;
}

export function makeSpace(level: Level, maxAckDelay: number): Space {
  return {
    level,
    read: null,
    write: null,
    acks: new AckTracker(level as 0 | 1 | 2, maxAckDelay),
    cryptoSend: new SendStream(-1 - level, Number.MAX_SAFE_INTEGER),
    cryptoRecv: new RecvStream(-1 - level, CRYPTO_BUFFER_LIMIT),
    nextPn: 0,
    discarded: false,
  };
}

/** The frame-type table (RFC 9000 §12.4) that applies to packets of each level. */
export const LEVEL_KIND: PacketKind[] = ['initial', 'handshake', '1rtt'];

export function levelOfType(t: PacketType): Level | null {
  if (t === PacketType.Initial) return Level.Initial;
  if (t === PacketType.Handshake) return Level.Handshake;
  if (t === PacketType.OneRtt) return Level.OneRtt;
  return null;
}
