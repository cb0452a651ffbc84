/**
 * Rate-limited logging of the Initial packets the QUIC endpoint dropped because they did not decrypt (garbage,
 * corruption or a flood of forged Initials: they create no connection state, see src/quic/endpoint.ts). At most one
 * warning per interval, saying how many arrived in it; nothing when none did.
 */
import type { ProxyLog } from './server.js';

export class DroppedInitialsLog {
  private reported = 0;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    /** Reads the endpoint's counter (Endpoint.stats.undecryptableInitials). */
    private readonly read: () => number,
    private readonly log: ProxyLog,
    readonly intervalMs = 10_000,
  ) {}

  /** One check: a warning with the count since the previous check, if there were any. */
  tick(): void {
    const total = this.read();
    const n = total - this.reported;
    if (n <= 0) return;
    this.reported = total;
    this.log.warn(
      { droppedInitials: n, totalDroppedInitials: total, intervalMs: this.intervalMs },
      `dropped ${n} Initial packet${n === 1 ? '' : 's'} that did not decrypt in the last ${this.intervalMs / 1000} s ` +
        '(corrupted or forged; no connection state was created)',
    );
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.tick(), this.intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.tick();
  }
}
