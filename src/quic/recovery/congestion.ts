/**
 * The congestion controller interface the connection and the loss detector use (RFC 9002 §7). Each algorithm is a
 * file of its own implementing it: NewReno in new-reno.ts (the default), CUBIC in cubic.ts; BBR would sit beside them.
 * Sizes are bytes, times milliseconds.
 */
import { cubic } from './cubic.js';
import { newReno } from './new-reno.js';

export interface CongestionPacket {
  size: number;
  timeSent: number;
}

export interface CongestionController {
  readonly cwnd: number;
  readonly bytesInFlight: number;
  readonly ssthresh: number;
  /** An in-flight packet of `bytes` was sent. */
  onPacketSent(bytes: number, now: number): void;
  /** In-flight packets were newly acknowledged. */
  onPacketsAcked(packets: readonly CongestionPacket[], now: number): void;
  /** In-flight packets were declared lost. */
  onPacketsLost(packets: readonly CongestionPacket[], now: number): void;
  /** Persistent congestion was established (RFC 9002 §7.6): collapse to the minimum window. */
  onPersistentCongestion(): void;
  /** In-flight bytes were discarded with their keys: no congestion signal (RFC 9002 §6.4). */
  onPacketDiscarded(bytes: number): void;
  /** bytesInFlight + bytes <= cwnd. */
  canSend(bytes: number): boolean;
  /** True if a packet sent at `sentTime` belongs to the current recovery period. */
  inRecovery(sentTime: number): boolean;
  /** The path allows larger datagrams now (PMTU discovery, RFC 9000 §14.3): window arithmetic uses the new size. */
  setMaxDatagramSize(bytes: number): void;
}

/** What a controller may read of the connection's RTT estimate (recovery/rtt.ts), milliseconds. */
export interface RttView {
  readonly smoothed: number;
}

/**
 * Makes a connection's congestion controller; `maxDatagramSize` is the datagram size it starts with, `rtt` the
 * connection's live RTT estimate.
 */
export type CongestionControllerFactory = (maxDatagramSize: number, rtt: RttView) => CongestionController;

/** The algorithms a configuration can name (ConnectionConfig.congestionControl takes a factory). */
export type CongestionControlName = 'newreno' | 'cubic';
export const CONGESTION_CONTROL_NAMES: readonly CongestionControlName[] = ['newreno', 'cubic'];

/** The factory for a configured algorithm name. */
export function congestionControlFactory(name: CongestionControlName): CongestionControllerFactory {
  return name === 'cubic' ? cubic : newReno;
}
