/**
 * The endpoint's connection IDs (RFC 9000 §5.1): one issuer per endpoint makes every connection ID its connections
 * hand out, keeps the map from connection ID to connection that routes incoming datagrams, and derives the stateless
 * reset token of each ID from one static key (RFC 9000 §10.3.2: HMAC-SHA256(key, connection ID) truncated to 16
 * bytes), so that the token of an ID can be computed again without per-connection state, by this endpoint or by
 * another one given the same key. Connections ask for new IDs when they issue NEW_CONNECTION_ID and say when one is
 * retired; the endpoint forgets all of a connection's IDs when it closes. A connection in its closing or draining
 * period hands its IDs to a small record (`park`, closing-record.ts), which they route to until the period ends.
 */
import { randomBytes } from 'node:crypto';
import { hmac } from './crypto/hkdf.js';
import { randomFill } from '../util/random.js';
import { ownBuffer, ownCopy } from '../util/buffers.js';

/** A connection's view of the issuer: new IDs routed to it, their tokens, retirement. */
export interface CidSource {
  /** A new connection ID (never one in use on the endpoint), routed to this connection from now on. */
  newCid(): Buffer;
  /** The stateless reset token of `cid`. */
  resetToken(cid: Buffer): Buffer;
  /** `cid` was retired: datagrams to it no longer reach this connection. */
  retire(cid: Buffer): void;
}

export const RESET_KEY_LENGTH = 32;

function key(cid: Buffer): string {
  return cid.toString('hex');
}

export class ConnectionIdIssuer<T, P = unknown> {
  private readonly byCid = new Map<string, T>();
  /** The routing keys of each owner (removed with it). */
  private readonly keysOf = new Map<T, string[]>();
  /** Connection IDs of connections in their closing or draining period, routed to what stands in for them. */
  private readonly parkedCids = new Map<string, P>();
  private readonly resetKey: Buffer;

  /**
   * @param cidLength length of the IDs issued
   * @param resetKey the static key stateless reset tokens are derived from (at least 16 bytes); random by default
   */
  constructor(
    readonly cidLength: number,
    resetKey?: Buffer,
  ) {
    if (resetKey !== undefined && resetKey.length < 16) throw new RangeError(`statelessResetKey must be at least 16 bytes, got ${resetKey.length}`);
    this.resetKey = resetKey ? Buffer.from(resetKey) : randomBytes(RESET_KEY_LENGTH);
  }

  /** Connection IDs routed, all owners together. */
  get size(): number {
    return this.byCid.size;
  }

  /** Connection IDs routed to parked records (closing and draining connections). */
  get parkedSize(): number {
    return this.parkedCids.size;
  }

  /** The owner `cid` routes to. */
  lookup(cid: Buffer): T | undefined {
    return this.byCid.get(key(cid));
  }

  /** The parked record `cid` routes to (checked after lookup() found no owner). */
  lookupParked(cid: Buffer): P | undefined {
    return this.parkedCids.size === 0 ? undefined : this.parkedCids.get(key(cid));
  }

  /**
   * Routes every connection ID of `owner` to `record` instead, and forgets the owner; returns the routing keys, for
   * unpark() when the record goes.
   */
  park(owner: T, record: P): string[] {
    const keys = this.keysOf.get(owner) ?? [];
    const moved: string[] = [];
    for (const k of keys) {
      if (this.byCid.get(k) !== owner) continue;
      this.byCid.delete(k);
      this.parkedCids.set(k, record);
      moved.push(k);
    }
    this.keysOf.delete(owner);
    return moved;
  }

  /** Stops routing `keys` to `record` (those since given to someone else stay). */
  unpark(keys: readonly string[], record: P): void {
    for (const k of keys) if (this.parkedCids.get(k) === record) this.parkedCids.delete(k);
  }

  /** A fresh connection ID for `owner`, routed to it. */
  issue(owner: T): Buffer {
    for (;;) {
      const cid = randomFill(ownBuffer(this.cidLength)); // kept as long as the connection uses it
      const k = key(cid);
      if (this.byCid.has(k) || this.parkedCids.has(k)) {
        if (this.cidLength > 0) continue; // taken: draw again
        return cid; // zero-length IDs route nothing
      }
      this.add(owner, k);
      return cid;
    }
  }

  /** Routes `cid` (one we did not issue: a client's original DCID) to `owner`; a key already taken stays put. */
  route(owner: T, cid: Buffer): void {
    const k = key(cid);
    if (!this.byCid.has(k)) this.add(owner, k);
  }

  /** HMAC-SHA256(key, cid), first 16 bytes. */
  resetToken(cid: Buffer): Buffer {
    return ownCopy(hmac('sha256', this.resetKey, cid).subarray(0, 16));
  }

  /** Stops routing `cid` (to whichever owner it routed to). */
  retire(cid: Buffer): void {
    const k = key(cid);
    const owner = this.byCid.get(k);
    if (owner === undefined) return;
    this.byCid.delete(k);
    const keys = this.keysOf.get(owner);
    if (keys) {
      const i = keys.indexOf(k);
      if (i >= 0) keys.splice(i, 1);
    }
  }

  /** Forgets every connection ID of `owner`. */
  forget(owner: T): void {
    for (const k of this.keysOf.get(owner) ?? []) if (this.byCid.get(k) === owner) this.byCid.delete(k);
    this.keysOf.delete(owner);
  }

  /** The view of this issuer a connection is given. */
  sourceFor(owner: T): CidSource {
    return {
      newCid: () => this.issue(owner),
      resetToken: (cid) => this.resetToken(cid),
      retire: (cid) => this.retire(cid),
    };
  }

  private add(owner: T, k: string): void {
    this.byCid.set(k, owner);
    let keys = this.keysOf.get(owner);
    if (!keys) this.keysOf.set(owner, (keys = []));
    keys.push(k);
  }
}
