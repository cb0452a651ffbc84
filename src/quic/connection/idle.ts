/**
 * The idle timeout (RFC 9000 §10.1): the negotiated period (the smaller of both sides' max_idle_timeout, either if
 * the other is 0), restarted by every packet received and by the first ack-eliciting packet sent after one, and never
 * shorter than three PTOs.
 */
export class IdleTimer {
  /** When the period last restarted. */
  lastActivity: number;
  /** The negotiated timeout, 0 until the peer's parameters arrive (or when both sides disable it). */
  private timeout = 0;
  /** When an ack-eliciting packet was last sent. */
  private lastEliciting = 0;

  constructor(
    now: number,
    /** Our max_idle_timeout (it applies alone during the handshake). */
    private readonly local: number,
  ) {
    this.lastActivity = now;
  }

  /** The peer's max_idle_timeout arrived. */
  negotiate(peer: number): void {
    const ours = this.local;
    this.timeout = ours && peer ? Math.min(ours, peer) : ours || peer;
  }

  onPacketReceived(now: number): void {
    this.lastActivity = now;
  }

  onAckElicitingSent(now: number): void {
    // Sending restarts the period only if nothing was sent since the last packet received.
    if (this.lastEliciting < this.lastActivity) this.lastActivity = now;
    this.lastEliciting = now;
  }

  /** When the connection goes idle, or null; `handshaking`: our own timeout applies before negotiation. */
  deadline(pto: number, handshaking: boolean): number | null {
    if (!this.timeout && !(handshaking && this.local)) return null;
    const base = this.timeout || this.local;
    return this.lastActivity + Math.max(base, 3 * pto);
  }
}
