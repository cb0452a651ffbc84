/**
 * The connection's deadlines, one named slot each (as quinn's TimerTable): the connection wakes at the earliest one
 * (`next`). Times are milliseconds on the caller's clock (any value, 0 included, is a time); a slot not armed holds Infinity. Some slots are set when their cause
 * happens (handshake timeout, key discard, pacing, closing/draining); the idle, loss/PTO and ACK-delay slots are
 * derived from other state and refreshed by the connection before it reads the table.
 */

/** The slots. */
export const Timer = {
  /** RFC 9000 §10.1: no packet received (or ack-eliciting one sent) for the idle timeout. */
  idle: 0,
  /** ConnectionConfig.handshakeTimeout: an unfinished handshake is given up. */
  handshake: 1,
  /** RFC 9002 §6.1.2, §6.2: loss detection or probe timeout. */
  loss: 2,
  /** RFC 9000 §13.2.1: the earliest max_ack_delay of the packet number spaces. */
  ack: 3,
  /** RFC 9001 §6.5: the previous generation's read keys are dropped. */
  keyDiscard: 4,
  /** RFC 9002 §7.7: the pacer allows the next packet. */
  pacing: 5,
  /** RFC 9000 §10.2: the end of the closing or draining period. */
  close: 6,
} as const;

export type TimerName = keyof typeof Timer;
export type TimerSlot = (typeof Timer)[TimerName];

const SLOTS = 7;

export class TimerTable {
  private readonly at = new Float64Array(SLOTS).fill(Infinity);

  get(t: TimerSlot): number {
    return this.at[t];
  }

  /** Arms slot `t` at `when` (null disarms it). */
  set(t: TimerSlot, when: number | null): void {
    this.at[t] = when ?? Infinity;
  }

  stop(t: TimerSlot): void {
    this.at[t] = Infinity;
  }

  isArmed(t: TimerSlot): boolean {
    return this.at[t] !== Infinity;
  }

  /** Slot `t` is armed and its time has come. */
  expired(t: TimerSlot, now: number): boolean {
    return now >= this.at[t];
  }

  /** The earliest armed deadline, or null. */
  next(): number | null {
    let t = Infinity;
    const at = this.at;
    for (let i = 0; i < SLOTS; i++) {
      const v = at[i];
      if (v < t) t = v;
    }
    return t === Infinity ? null : t;
  }
}
