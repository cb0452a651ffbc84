/** Types shared by the QUIC transport modules. */

/** Encryption levels / packet number spaces (0-RTT is not supported yet). */
export const enum Level {
  Initial = 0,
  Handshake = 1,
  OneRtt = 2,
}

export type Role = 'client' | 'server';

export const QUIC_V1 = 0x00000001;
