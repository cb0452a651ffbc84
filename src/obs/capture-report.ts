/**
 * What a decrypted capture shows, from tshark's JSON (`tshark -r FILE -T json --no-duplicate-keys`, Wireshark 4.0):
 * datagrams, QUIC packets, the packets tshark could not decrypt (quic.decryption_failed for long-header packets,
 * quic.remaining_payload for 1-RTT packets without keys), key phase 1 packets (a key update, RFC 9001 §6), and per
 * stream the HTTP/3 frame types (RFC 9114 §7.2) and unidirectional stream types (§6.2) tshark dissected.
 *
 * tshark 4.0 does not decode QPACK and does not reassemble an HTTP/3 frame split across STREAM frames, so a large DATA
 * frame is seen once (in its first STREAM frame) or not at all. It gives one http3 layer per STREAM frame in which it
 * dissected something (a bare string when that was nothing), and pairing those layers with their STREAM frames is the
 * hard part (see PairBy). Pure: no tshark here (src/obs/capture.ts runs it).
 *
 * Frame and stream types are 62-bit varints: they are read as bigint, so that a reserved (GREASE) type near 2^62
 * keeps its exact value.
 */

/** tshark's JSON. */
export type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObj = { [k: string]: Json };

export interface DecryptReport {
  /** Frames (UDP datagrams) in the file. */
  packets: number;
  /** QUIC packets (a datagram can carry several coalesced ones). */
  quicPackets: number;
  /** QUIC packets tshark could not decrypt. */
  undecrypted: number;
  /** Short-header packets with the key phase bit set (evidence of a key update). */
  keyPhase1Packets: number;
  /** Per stream id, the HTTP/3 frame type names tshark dissected, in capture order. */
  http3Frames: Map<number, string[]>;
  /** Per unidirectional stream id, the HTTP/3 stream type (control, qpack-enc, ...), when seen. */
  http3StreamTypes: Map<number, string>;
  /** Datagrams whose STREAM frames and http3 layers could not be paired (continuation data). */
  unpaired: number;
}

const H3_FRAME_NAMES: ReadonlyMap<bigint, string> = new Map([
  [0x0n, 'DATA'],
  [0x1n, 'HEADERS'],
  [0x3n, 'CANCEL_PUSH'],
  [0x4n, 'SETTINGS'],
  [0x5n, 'PUSH_PROMISE'],
  [0x7n, 'GOAWAY'],
  [0xdn, 'MAX_PUSH_ID'],
  [0xf0700n, 'PRIORITY_UPDATE'],
  [0xf0701n, 'PRIORITY_UPDATE_PUSH'],
]);
const H3_STREAM_TYPES: ReadonlyMap<bigint, string> = new Map([
  [0n, 'control'],
  [1n, 'push'],
  [2n, 'qpack-enc'],
  [3n, 'qpack-dec'],
]);

/** Name of an HTTP/3 frame type; reserved (GREASE) types 0x1f * N + 0x21 (RFC 9114 §7.2.8) become "GREASE". */
export function h3FrameName(type: bigint | number): string {
  const t = BigInt(type);
  const n = H3_FRAME_NAMES.get(t);
  if (n !== undefined) return n;
  if (t >= 0x21n && (t - 0x21n) % 0x1fn === 0n) return 'GREASE';
  return '0x' + t.toString(16);
}

/** Name of an HTTP/3 unidirectional stream type (reserved and unknown ones in hex). */
export function h3StreamTypeName(type: bigint | number): string {
  const t = BigInt(type);
  return H3_STREAM_TYPES.get(t) ?? '0x' + t.toString(16);
}

/**
 * An unsigned integer field of tshark's JSON (a decimal string, a 0x hex string, or a number) as a bigint, exactly;
 * null when it is not one.
 */
export function tsharkUint(x: Json | undefined): bigint | null {
  if (typeof x === 'number') return Number.isSafeInteger(x) && x >= 0 ? BigInt(x) : null;
  if (typeof x !== 'string' || !/^(\d+|0x[0-9a-fA-F]+)$/.test(x)) return null;
  return BigInt(x);
}

const asList = (x: Json | undefined): Json[] => (x === undefined || x === null ? [] : Array.isArray(x) ? x : [x]);
const isObj = (x: Json | undefined): x is JsonObj => typeof x === 'object' && x !== null && !Array.isArray(x);
/** Small fields (stream ids, offsets, QUIC frame types) as numbers; NaN when absent. */
const num = (x: Json | undefined): number => (typeof x === 'string' || typeof x === 'number' ? Number(x) : NaN);

function hasKeyDeep(x: Json | undefined, key: string): boolean {
  if (Array.isArray(x)) return x.some((e) => hasKeyDeep(e, key));
  if (!isObj(x)) return false;
  return Object.entries(x).some(([k, v]) => k === key || hasKeyDeep(v, key));
}

function findDeep(x: Json | undefined, key: string): Json | undefined {
  if (Array.isArray(x)) {
    for (const e of x) {
      const r = findDeep(e, key);
      if (r !== undefined) return r;
    }
    return undefined;
  }
  if (!isObj(x)) return undefined;
  if (key in x) return x[key];
  for (const v of Object.values(x)) {
    const r = findDeep(v, key);
    if (r !== undefined) return r;
  }
  return undefined;
}

/** QUIC varint at `pos` (RFC 9000 §16): [value, next position], or null when `b` ends first. */
function varintAt(b: Buffer, pos: number): [bigint, number] | null {
  if (pos >= b.length) return null;
  const len = 1 << (b[pos]! >> 6);
  if (pos + len > b.length) return null;
  let v = BigInt(b[pos]! & 0x3f);
  for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(b[pos + i]!);
  return [v, pos + len];
}

const NO_DATA = Buffer.alloc(0);

interface StreamFrame {
  sid: number;
  offset: number;
  /** The frame's data (content pairing only; empty otherwise or when the JSON has no quic.stream_data). */
  data: Buffer;
}

/**
 * Whether tshark's http3 layer `layer` was dissected from STREAM frame `f`: a typed layer matches when the frame's
 * bytes start with that stream type (a uni stream at offset 0) and/or that HTTP/3 frame (type and length) complete
 * within the STREAM frame; an empty layer (nothing dissected) matches a frame that does not start with a whole HTTP/3
 * frame.
 */
function layerMatches(f: StreamFrame, layer: Json): boolean {
  let pos = 0;
  const uni = f.sid % 4 >= 2;
  const streamType = isObj(layer) ? asList(layer['http3.stream_type']) : [];
  const types = isObj(layer) ? asList(layer['http3.frame_type']).map(tsharkUint) : [];
  const lengths = isObj(layer) ? asList(layer['http3.frame_length']).map(tsharkUint) : [];
  if (streamType.length > 0) {
    if (!uni || f.offset !== 0) return false;
    const st = varintAt(f.data, 0);
    if (st === null || st[0] !== tsharkUint(streamType[0])) return false;
    pos = st[1];
    if (types.length === 0) return true;
  }
  const t = varintAt(f.data, pos);
  const l = t === null ? null : varintAt(f.data, t[1]);
  const whole = t !== null && l !== null && BigInt(l[1]) + l[0] <= BigInt(f.data.length);
  if (types.length === 0) return !whole || (uni && f.offset > 0);
  return whole && t[0] === types[0] && l[0] === lengths[0];
}

/**
 * How http3 layers are paired with STREAM frames within a datagram:
 * - 'position': one layer per STREAM frame, in order; a datagram where the counts differ is unpaired. Good for small
 *   exchanges where every STREAM frame starts an HTTP/3 frame.
 * - 'content': layers are a subsequence of the STREAM frames, each matched by the bytes it starts with (needs
 *   quic.stream_data); with 100 requests in flight most datagrams carry several STREAM frames and end in a split one.
 */
export type PairBy = 'position' | 'content';

/** Analyse tshark's JSON (as produced by `-T json --no-duplicate-keys`). */
export function analyseTsharkJson(packets: Json, pairBy: PairBy = 'position'): DecryptReport {
  const r: DecryptReport = { packets: 0, quicPackets: 0, undecrypted: 0, keyPhase1Packets: 0, http3Frames: new Map(), http3StreamTypes: new Map(), unpaired: 0 };
  for (const p of asList(packets)) {
    r.packets++;
    const layers = isObj(p) && isObj(p._source) ? p._source.layers : undefined;
    if (!isObj(layers)) continue;
    const frames: StreamFrame[] = [];
    for (const q of asList(layers.quic)) {
      if (!isObj(q)) continue;
      r.quicPackets++;
      if ('quic.remaining_payload' in q || hasKeyDeep(q, 'quic.decryption_failed')) r.undecrypted++;
      const kp = findDeep(q, 'quic.key_phase');
      if (kp === '1' || kp === 'True' || kp === true) r.keyPhase1Packets++;
      for (const f of asList(q['quic.frame'])) {
        if (!isObj(f)) continue;
        const ft = num(f['quic.frame_type']);
        if (!(ft >= 0x08 && ft <= 0x0f)) continue;
        const hex = pairBy === 'content' && typeof f['quic.stream_data'] === 'string' ? f['quic.stream_data'].replace(/:/g, '') : '';
        frames.push({ sid: num(f['quic.stream.stream_id']), offset: num(f['quic.stream.offset'] ?? '0'), data: hex === '' ? NO_DATA : Buffer.from(hex, 'hex') });
      }
    }
    const h3 = asList(layers.http3);
    let placed: [StreamFrame, Json][];
    if (pairBy === 'position') {
      if (frames.length === 0) continue;
      if (h3.length !== frames.length) {
        r.unpaired++;
        continue;
      }
      placed = frames.map((f, i) => [f, h3[i]!]);
    } else {
      placed = [];
      let i = 0;
      for (const layer of h3) {
        while (i < frames.length && !layerMatches(frames[i]!, layer)) i++;
        if (i === frames.length) break;
        placed.push([frames[i]!, layer]);
        i++;
      }
      if (placed.length !== h3.length) {
        r.unpaired++;
        continue;
      }
    }
    for (const [f, layer] of placed) {
      const list = r.http3Frames.get(f.sid) ?? [];
      if (isObj(layer)) {
        for (const st of asList(layer['http3.stream_type'])) {
          const t = tsharkUint(st);
          if (t !== null) r.http3StreamTypes.set(f.sid, h3StreamTypeName(t));
        }
        for (const ft of asList(layer['http3.frame_type'])) {
          const t = tsharkUint(ft);
          list.push(t === null ? `?${String(ft)}` : h3FrameName(t));
        }
      }
      r.http3Frames.set(f.sid, list);
    }
  }
  return r;
}

/** Short text for a report line: counts, then per stream `id(type):[frames]`. */
export function formatReport(r: DecryptReport): string {
  const streams = [...r.http3Frames.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([sid, f]) => `${sid}${r.http3StreamTypes.has(sid) ? '(' + r.http3StreamTypes.get(sid) + ')' : ''}:[${f.join(',')}]`)
    .join(' ');
  return `packets=${r.packets} quic=${r.quicPackets} undecrypted=${r.undecrypted} kp1=${r.keyPhase1Packets} ${streams}`;
}
