/**
 * Anti-amplification before address validation (RFC 9000 §8.1): until the peer's address is validated, a server
 * sends at most three times the bytes it received. A client's view of the server is always validated.
 */
export class AddressValidation {
  validated: boolean;
  private received = 0;
  private sent = 0;

  constructor(validated: boolean) {
    this.validated = validated;
  }

  onDatagramReceived(bytes: number): void {
    this.received += bytes;
  }

  onDatagramSent(bytes: number): void {
    this.sent += bytes;
  }

  /** Bytes that may be sent now. */
  budget(): number {
    if (this.validated) return Infinity;
    return 3 * this.received - this.sent;
  }
}
