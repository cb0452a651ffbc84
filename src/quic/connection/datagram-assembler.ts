/**
 * Datagram assembly (RFC 9000 §12.2, §14): one packet per packet number space with keys, coalesced into one datagram
 * (or one per datagram: ConnectionConfig.onePacketPerDatagram), within the anti-amplification budget, the congestion
 * window and the pacer (PTO probes bypass both); a datagram with an ack-eliciting Initial (and every client Initial)
 * or with a PATH_RESPONSE is padded to 1200 bytes (§14.1, §8.2.2). Each packet sent is recorded with the loss
 * detector. Also the CONNECTION_CLOSE datagram (at every level the peer may read, §10.2.3) and PMTU probes (PING +
 * PADDING, not counted in flight: §14.4).
 *
 * Datagrams are built in the scratch buffer and with the frame writer that all connections share
 * (connection/scratch.ts), so that a poll with nothing to send allocates nothing and an idle connection holds no
 * buffer: the datagram handed out is a view of the scratch slab, whose bytes are not written again.
 */
import { Level, type Role } from '../types.js';
import { TransportErrorCode as E } from '../errors.js';
import type { ConnectionStats } from '../connection-types.js';
import { frameLength, writeFrame, type Frame } from '../frame/frames.js';
import type { LossDetector, PnSpace } from '../recovery/loss.js';
import type { CongestionController } from '../recovery/congestion.js';
import type { Pacer } from '../recovery/pacer.js';
import type { RttEstimator } from '../recovery/rtt.js';
import type { ConnectionTracer } from '../tracer.js';
import { PacketBuilder } from './packet-builder.js';
import { datagramScratch, scratchOffset, sharedFrameWriter, takeDatagram } from './scratch.js';
import type { Framer } from './framer.js';
import { SentPacketContents, type Retransmits } from './retransmits.js';
import type { ConnectionIds } from './cids.js';
import type { KeyUpdate } from './key-update.js';
import type { PathMtu } from './pmtu.js';
import type { LossHandler } from './loss-handler.js';
import type { AddressValidation } from './address-validation.js';
import type { IdleTimer } from './idle.js';
import { Timer, type TimerTable } from './timers.js';
import type { Space } from './space.js';

export const MIN_INITIAL_DATAGRAM = 1200;
const PACING_GRANULARITY = 1;

export interface AssemblerOptions {
  role: Role;
  pacing: boolean;
  onePacketPerDatagram: boolean;
}

/** The collaborators of datagram assembly (the connection's modules, shared). */
export interface AssemblerParts {
  spaces: readonly Space[];
  cids: ConnectionIds;
  keyUpdate: KeyUpdate;
  framer: Framer;
  pending: Retransmits;
  loss: LossDetector<SentPacketContents>;
  losses: LossHandler;
  cc: CongestionController;
  pacer: Pacer;
  rtt: RttEstimator;
  pmtu: PathMtu;
  timers: TimerTable;
  address: AddressValidation;
  idle: IdleTimer;
  stats: ConnectionStats;
  trace: ConnectionTracer | null;
  /** A client sent its first Handshake packet: its Initial keys go (RFC 9001 §4.9.1). */
  discardInitial: () => void;
}

/** One laid-out packet of the datagram being built. */
interface Laid {
  sp: Space;
  pn: number;
  /** null once recorded with the loss detector (the record is reused). */
  contents: SentPacketContents | null;
  size: number;
  eliciting: boolean;
  start: number;
}

export class DatagramAssembler {
  /** 1-RTT packets may be sent: always for a server, once the handshake is complete for a client. */
  oneRttOpen: boolean;
  private firstHandshakeSent = false;
  private readonly builder: PacketBuilder;
  private readonly writer = sharedFrameWriter;
  /** The packets laid out in the datagram being built: laid[0..count), records reused from datagram to datagram. */
  private readonly laid: Laid[] = [];
  /** A record made for a packet that was then abandoned (nothing to write), used for the next one. */
  private spare: SentPacketContents | null = null;
  /** Tracing: the time of the datagram being sealed, and whether it is a PMTU probe. */
  private now = 0;
  private sealingProbe = false;

  constructor(
    private readonly o: AssemblerOptions,
    private readonly p: AssemblerParts,
  ) {
    this.oneRttOpen = o.role === 'server';
    const trace = p.trace;
    this.builder = new PacketBuilder(
      trace
        ? (buf, start, headerLen, payloadEnd, level, pn) =>
            trace.packetSent(buf, start, headerLen, payloadEnd, level, pn, p.cids.dcid, p.cids.scid, p.stats.packetsSent, this.sealingProbe, this.now)
        : null,
    );
  }

  /**
   * The next datagram of packets (ACKs, CRYPTO, control and STREAM frames), or null when there is nothing to send now.
   * `ackOnly`: only the ACK frames due (nothing congestion-controlled).
   */
  datagram(now: number, ackOnly = false): Buffer | null {
    const p = this.p;
    const mds = p.pmtu.size;
    const budget = p.address.budget();
    if (budget < 64) return null;
    const limit = Math.min(mds, budget);
    const probing = p.losses.probing;
    let congestionOk = !ackOnly && (probing || p.cc.canSend(mds));
    if (congestionOk && this.o.pacing && !probing && p.rtt.hasSample) {
      const t = p.pacer.nextSendTime(mds, p.cc.cwnd, p.rtt.smoothed, now);
      // Timers cannot wake us sooner than about a millisecond: within that, send now on credit (the pacer's
      // tokens go negative and later packets wait longer), so pacing never runs below the congestion rate.
      if (t > now + PACING_GRANULARITY) {
        congestionOk = false;
        p.timers.set(Timer.pacing, t);
      }
    }
    const buf = datagramScratch(mds);
    // The datagram is bytes base..off of the scratch; packet offsets are in the scratch.
    const base = scratchOffset();
    const end = base + limit;
    const role = this.o.role;
    let off = base;
    let ackEliciting = false;
    let containsInitial = false;
    const packets = this.laid;
    let count = 0;
    const pathResponse = p.pending.pathResponses.length > 0;
    for (const sp of p.spaces) {
      if (!sp.write || sp.discarded) continue;
      // The server may send 1-RTT data before the handshake completes (0.5-RTT); a client waits until it completes.
      if (sp.level === Level.OneRtt && !this.oneRttOpen) continue;
      const room = end - off;
      if (room < 48) break;
      const start = off;
      const pb = this.builder;
      if (!pb.begin(off, sp, room, p.cids.dcid.length, p.cids.scid.length, p.loss.largestAcked(sp.level as PnSpace))) continue;
      const contents = this.spare ?? new SentPacketContents();
      this.spare = null;
      const w = this.writer;
      w.reset(buf, pb.payloadStart, pb.payloadEnd, contents);
      const eliciting = p.framer.fill(sp, w, congestionOk, p.losses.probeDue(sp.level), now);
      const r = pb.finish(buf, w.off);
      if (r === null) {
        this.spare = contents;
        continue;
      }
      let pk = packets[count];
      if (pk === undefined) packets.push((pk = { sp, pn: 0, contents, size: 0, eliciting, start }));
      count++;
      pk.sp = sp;
      pk.pn = sp.nextPn - 1;
      pk.contents = contents;
      pk.size = r - start;
      pk.eliciting = eliciting;
      pk.start = start;
      if (eliciting) ackEliciting = true;
      if (sp.level === Level.Initial) containsInitial = true;
      off = r;
      if (sp.level === Level.Initial && role === 'client' && !this.firstHandshakeSent && sp.cryptoSend.unsentBytes > 0) break;
      if (this.o.onePacketPerDatagram) break;
    }
    if (off === base) return null;
    // A datagram carrying an ack-eliciting Initial (and every client Initial) is padded to 1200 bytes (RFC 9000 §14.1),
    // and so is one carrying PATH_RESPONSE, within the amplification limit (RFC 9000 §8.2.2).
    const sentPathResponse = pathResponse && p.pending.pathResponses.length === 0;
    if (((containsInitial && (role === 'client' || ackEliciting)) || sentPathResponse) && off - base < MIN_INITIAL_DATAGRAM) {
      const last = packets[count - 1];
      const padTo = base + Math.min(MIN_INITIAL_DATAGRAM, limit);
      if (padTo > off) {
        off = this.builder.padLast(buf, padTo);
        last.size = off - last.start;
      }
    }
    this.now = now;
    this.builder.seal(buf, p.cids.dcid, p.cids.scid, p.keyUpdate.phase);
    if (role === 'client' && !this.firstHandshakeSent) {
      for (let i = 0; i < count; i++) if (packets[i].sp.level === Level.Handshake) this.firstHandshakeSent = true;
    }
    const dgram = this.finishDatagram(buf, base, off);
    const size = off - base;
    for (let i = 0; i < count; i++) {
      const pk = packets[i];
      p.loss.onPacketSent({
        pn: pk.pn,
        space: pk.sp.level as PnSpace,
        timeSent: now,
        size: pk.size,
        ackEliciting: pk.eliciting,
        inFlight: pk.eliciting || (containsInitial && i === count - 1 && size >= MIN_INITIAL_DATAGRAM),
        info: pk.contents!,
      });
      if (pk.eliciting) p.losses.onAckElicitingSent(pk.sp.level);
      pk.contents = null;
    }
    if (ackEliciting) p.pacer.onPacketSent(size, now);
    if (p.trace) p.trace.metrics(now);
    if (role === 'client' && this.firstHandshakeSent && !p.spaces[Level.Initial].discarded) p.discardInitial();
    if (ackEliciting) p.idle.onAckElicitingSent(now);
    return dgram;
  }

  /** A datagram with `close` (CONNECTION_CLOSE) in a packet of every level we have keys for, or null. */
  close(close: Frame, now: number): Buffer | null {
    const p = this.p;
    const buf = datagramScratch(p.pmtu.size);
    const base = scratchOffset();
    let off = base;
    const end = base + Math.min(p.pmtu.size, p.address.budget());
    // Send the close at every level the peer might be able to read (RFC 9000 §10.2.3).
    for (const sp of p.spaces) {
      if (!sp.write || sp.discarded) continue;
      let f = close;
      if (sp.level !== Level.OneRtt && f.type === 'connection_close' && f.application) {
        // An application close is not allowed in Initial/Handshake packets: send APPLICATION_ERROR instead.
        f = { type: 'connection_close', application: false, errorCode: E.APPLICATION_ERROR, frameType: 0, reason: '' };
      }
      const room = end - off;
      const pb = this.builder;
      if (!pb.begin(off, sp, room, p.cids.dcid.length, p.cids.scid.length, p.loss.largestAcked(sp.level as PnSpace))) continue;
      const pEnd = frameLength(f) > pb.payloadEnd - pb.payloadStart ? pb.payloadStart : writeFrame(buf, pb.payloadStart, f);
      const r = pb.finish(buf, pEnd);
      if (r === null) continue;
      off = r;
      if (this.o.onePacketPerDatagram) break;
    }
    if (off === base) return null;
    this.now = now;
    this.builder.seal(buf, p.cids.dcid, p.cids.scid, p.keyUpdate.phase);
    return this.finishDatagram(buf, base, off);
  }

  /**
   * The PMTU probe due now, if any (`ceiling`: the smaller of our and the peer's maximum datagram size): one 1-RTT
   * packet with PING and PADDING filling a datagram of the size tried.
   */
  pmtuProbe(ceiling: number, now: number): Buffer | null {
    const p = this.p;
    const size = p.pmtu.probeDue(ceiling);
    if (!size) return null;
    const sp = p.spaces[Level.OneRtt];
    if (!sp.write) return null;
    const buf = Buffer.allocUnsafe(size);
    const pb = this.builder;
    if (!pb.begin(0, sp, size, p.cids.dcid.length, p.cids.scid.length, p.loss.largestAcked(Level.OneRtt))) return null;
    buf[pb.payloadStart] = 0x01; // PING
    buf.fill(0, pb.payloadStart + 1, pb.payloadEnd); // PADDING to the end
    const end = pb.finish(buf, pb.payloadEnd);
    if (end === null) return null;
    const pn = sp.nextPn - 1;
    this.now = now;
    this.sealingProbe = true;
    this.builder.seal(buf, p.cids.dcid, p.cids.scid, p.keyUpdate.phase);
    this.sealingProbe = false;
    p.pmtu.onProbeSent(size);
    const contents = new SentPacketContents();
    contents.pmtuProbe = size;
    // Not counted in flight: the loss of a probe says nothing about congestion (RFC 9000 §14.4).
    p.loss.onPacketSent({ pn, space: Level.OneRtt, timeSent: now, size: end, ackEliciting: true, inFlight: false, info: contents });
    return this.finishDatagram(buf, 0, end);
  }

  private finishDatagram(buf: Buffer, start: number, end: number): Buffer {
    const stats = this.p.stats;
    this.p.address.onDatagramSent(end - start);
    stats.bytesSent += end - start;
    stats.packetsSent++;
    return takeDatagram(buf, start, end);
  }
}
