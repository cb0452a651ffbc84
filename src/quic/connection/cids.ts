/**
 * Connection IDs (RFC 9000 §5.1, §19.15–§19.16): the ones we issue (by sequence number; made, routed and given their
 * stateless reset tokens by the endpoint's issuer, cid-issuer.ts) and retire when asked, and the peer's, with
 * retire_prior_to and the active_connection_id_limit.
 */
import { ownCopy } from '../../util/buffers.js';
import { TransportError, TransportErrorCode as E } from '../errors.js';
import type { CidSource } from '../cid-issuer.js';
import type { FrameWriter } from './frame-writer.js';
import type { LostFrameOwner, Retransmits } from './retransmits.js';

interface PeerCid {
  seq: number;
  cid: Buffer;
  resetToken: Buffer | null;
}

export class ConnectionIds implements LostFrameOwner {
  /** Our connection IDs by sequence number. */
  readonly local = new Map<number, Buffer>();
  /** Incremented whenever `local` changes (the endpoint re-syncs its routing table then). */
  version = 0;
  /** The peer's connection ID we send to. */
  dcid: Buffer;
  private peer: PeerCid[] = [];
  private nextLocalSeq = 1;
  private highestRetirePriorTo = 0;

  constructor(
    /** The endpoint's issuer: new IDs, their reset tokens, retirement. */
    private readonly source: CidSource,
    /** The peer's first connection ID as far as we know it (a client: the original destination CID). */
    dcid: Buffer,
    /** Our active_connection_id_limit: how many of the peer's IDs we keep. */
    private readonly activeLimit: number,
    private readonly pending: Retransmits,
  ) {
    this.local.set(0, source.newCid());
    this.dcid = dcid;
  }

  /** The connection ID we put in long headers as the source. */
  get scid(): Buffer {
    return this.local.get(0) ?? this.local.values().next().value!;
  }

  /** The peer's first connection ID became known (the client's SCID, or the server's from its first packet). */
  setPeerInitial(cid: Buffer): void {
    this.dcid = cid;
    this.peer = [{ seq: 0, cid, resetToken: null }];
  }

  /** The server's stateless_reset_token transport parameter belongs to its first connection ID. */
  setPeerInitialResetToken(token: Buffer): void {
    if (this.peer[0]) this.peer[0].resetToken = token;
  }

  onNewConnectionId(seq: number, retirePriorTo: number, cid: Buffer, token: Buffer): void {
    if (this.dcid.length === 0)
      throw new TransportError(E.PROTOCOL_VIOLATION, 'NEW_CONNECTION_ID while using a zero-length connection ID', 0x18);
    const existing = this.peer.find((c) => c.seq === seq);
    if (existing) {
      if (!existing.cid.equals(cid)) throw new TransportError(E.PROTOCOL_VIOLATION, 'NEW_CONNECTION_ID reuses a sequence number', 0x18);
      return;
    }
    if (seq < this.highestRetirePriorTo) {
      this.pending.retireCids.push(seq);
      return;
    }
    this.peer.push({ seq, cid: ownCopy(cid), resetToken: ownCopy(token) });
    if (retirePriorTo > this.highestRetirePriorTo) {
      this.highestRetirePriorTo = retirePriorTo;
      const keep: PeerCid[] = [];
      for (const c of this.peer) {
        if (c.seq < retirePriorTo) this.pending.retireCids.push(c.seq);
        else keep.push(c);
      }
      this.peer = keep;
      if (!this.peer.some((c) => c.cid.equals(this.dcid)) && this.peer.length) this.dcid = this.peer[0].cid;
    }
    if (this.peer.length > this.activeLimit)
      throw new TransportError(E.CONNECTION_ID_LIMIT_ERROR, `more than ${this.activeLimit} active connection IDs`, 0x18);
  }

  /** RETIRE_CONNECTION_ID: true when one of ours was retired (a replacement may be issued). */
  onRetireConnectionId(seq: number): boolean {
    if (seq >= this.nextLocalSeq) throw new TransportError(E.PROTOCOL_VIOLATION, `RETIRE_CONNECTION_ID for unissued sequence ${seq}`, 0x19);
    const cid = this.local.get(seq);
    if (cid === undefined) return false;
    this.local.delete(seq);
    this.source.retire(cid);
    this.version++;
    return true;
  }

  /** Issues NEW_CONNECTION_IDs up to the peer's active_connection_id_limit (at most 3 spare ones). */
  issue(peerLimit: number): void {
    const want = Math.min(peerLimit, 4);
    while (this.local.size < want) {
      const seq = this.nextLocalSeq++;
      this.local.set(seq, this.source.newCid());
      this.version++;
      this.pending.newCids.push(seq);
    }
  }

  /** Of a lost packet: NEW_CONNECTION_IDs are sent again if the ID was not retired meanwhile; RETIRE_CONNECTION_IDs are. */
  requeueLost(lost: Retransmits, pending: Retransmits): void {
    for (const seq of lost.newCids) if (this.local.has(seq)) pending.newCids.push(seq);
    for (const seq of lost.retireCids) pending.retireCids.push(seq);
  }

  /** The stateless reset token of our connection ID `cid` (the server's transport parameter, for sequence 0). */
  resetToken(cid: Buffer): Buffer {
    return this.source.resetToken(cid);
  }

  /** NEW_CONNECTION_ID and RETIRE_CONNECTION_ID frames that are due. */
  writeFrames(w: FrameWriter): void {
    const pending = this.pending;
    while (pending.newCids.length) {
      const seq = pending.newCids[0];
      const cid = this.local.get(seq);
      if (!cid) {
        pending.newCids.shift();
        continue;
      }
      const r = w.control({ type: 'new_connection_id', seq, retirePriorTo: 0, cid, resetToken: this.source.resetToken(cid) });
      if (!r) break;
      r.newCids.push(seq);
      pending.newCids.shift();
    }
    while (pending.retireCids.length) {
      const seq = pending.retireCids[0];
      const r = w.control({ type: 'retire_connection_id', seq });
      if (!r) break;
      r.retireCids.push(seq);
      pending.retireCids.shift();
    }
  }
}
