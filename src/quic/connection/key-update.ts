/**
 * Key update (RFC 9001 §6): the key phase and generation of the 1-RTT keys, the next read keys made ahead (so that
 * a peer's update costs no derivation on the packet that carries it), the previous read keys kept for reordered
 * packets until a discard deadline, and the rule that a new update waits until the last one was acknowledged.
 */
import type { ConnectionEvent } from '../connection-types.js';
import { nextGenerationKeys, type DirectionKeys } from '../crypto/keys.js';
import { TransportError, TransportErrorCode as E } from '../errors.js';
import type { Space } from './space.js';
import { Timer, type TimerTable } from './timers.js';

export class KeyUpdate {
  /** The key phase bit we send and expect (RFC 9001 §6). */
  phase: 0 | 1 = 0;
  generation = 0;
  /** The previous read keys, kept until the keyDiscard timer (not armed: not scheduled yet). */
  prevRead: DirectionKeys | null = null;
  /** The next generation's read keys. */
  private nextRead: DirectionKeys | null = null;
  /** The first packet number sent with the current write keys; a key update needs it acknowledged first. */
  private firstPnSent = 0;
  private acked = true;
  /** The lowest packet number received in the current phase (packets below it with the other phase bit are old). */
  private firstPnRecv = -1;

  constructor(
    /** The 1-RTT packet number space whose keys are rotated. */
    private readonly app: Space,
    private readonly events: ConnectionEvent[],
    private readonly timers: TimerTable,
    /** Tracing only (null when off): called after each rotation with the new generation. */
    private readonly onRotate: ((generation: number, by: 'local' | 'peer') => void) | null = null,
  ) {}

  /** The previous read keys are held and no discard time is set yet (it is set by the first packet of the phase). */
  get discardPending(): boolean {
    return this.prevRead !== null && !this.timers.isArmed(Timer.keyDiscard);
  }

  /** The 1-RTT read keys were installed: derive the next generation ahead. */
  onReadKeysInstalled(keys: DirectionKeys): void {
    this.nextRead = nextGenerationKeys(keys);
  }

  /** False while the last update is not acknowledged (RFC 9001 §6.1). */
  get canInitiate(): boolean {
    return this.acked;
  }

  /** Starts a key update; false when there are no 1-RTT keys. */
  initiate(): boolean {
    if (!this.rotate('local')) return false;
    // Old-phase packets keep arriving until the peer switches; the first new-phase one sets the boundary.
    this.firstPnRecv = Number.MAX_SAFE_INTEGER;
    this.timers.stop(Timer.keyDiscard); // set when the first packet of the new phase is received
    return true;
  }

  /** For a 1-RTT packet whose key phase bit is not ours: the previous keys if it is a reordered old one, else null. */
  previousKeysFor(pn: number): DirectionKeys | null {
    return this.prevRead !== null && pn < this.firstPnRecv ? this.prevRead : null;
  }

  /** The keys a peer's key update would use. */
  nextReadKeys(): DirectionKeys {
    return this.nextRead ?? nextGenerationKeys(this.app.read!);
  }

  /** A packet of the peer's update decrypted with the next keys: rotate (RFC 9001 §6.2). */
  onPeerKeyUpdate(pn: number, discardAt: number): void {
    if (!this.acked) {
      // The peer may not update again before acknowledging our update's packets (RFC 9001 §6.2).
      throw new TransportError(E.KEY_UPDATE_ERROR, 'key update before the previous one was acknowledged');
    }
    if (!this.rotate('peer')) return;
    this.firstPnRecv = pn;
    this.timers.set(Timer.keyDiscard, discardAt);
  }

  /** The first packet in the current phase after our own update arrived: the previous keys go at `discardAt`. */
  onFirstPacketOfPhase(pn: number, discardAt: number): void {
    this.timers.set(Timer.keyDiscard, discardAt);
    if (this.firstPnRecv < 0 || pn < this.firstPnRecv) this.firstPnRecv = pn;
  }

  /** A 1-RTT packet we sent was acknowledged. */
  onPacketAcked(pn: number): void {
    if (!this.acked && pn >= this.firstPnSent) this.acked = true;
  }

  /** The keyDiscard timer: the previous read keys go (RFC 9001 §6.5). */
  discardPrevious(): void {
    this.prevRead = null;
    this.timers.stop(Timer.keyDiscard);
  }

  /** Moves both directions to the next key generation and flips the key phase (RFC 9001 §6). */
  private rotate(by: 'local' | 'peer'): boolean {
    const app = this.app;
    if (!app.write || !app.read) return false;
    this.prevRead = app.read;
    app.read = this.nextRead ?? nextGenerationKeys(app.read);
    this.nextRead = nextGenerationKeys(app.read);
    app.write = nextGenerationKeys(app.write);
    this.phase ^= 1;
    this.generation++;
    this.firstPnSent = app.nextPn;
    this.acked = false;
    this.events.push({ type: 'key_update', generation: this.generation, initiatedBy: by });
    if (this.onRotate) this.onRotate(this.generation, by);
    return true;
  }
}
