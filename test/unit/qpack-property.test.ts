/**
 * Seeded property test: an encoder and a decoder connected by simulated, independently delayed channels.
 * Encoder-stream bytes arrive in order but in random pieces and late; field sections on different streams arrive in
 * any order (each stream's own sections in order), so sections routinely arrive before the inserts they need;
 * decoder-stream bytes reach the encoder at random times and in pieces. Every decoded list must equal the encoded one,
 * and neither side may report an error (the decoder would throw if the encoder blocked too many streams or referenced
 * an evicted entry).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { QpackDecoder } from '../../src/h3/qpack/decoder.js';
import { QpackEncoder } from '../../src/h3/qpack/encoder.js';
import type { Header } from '../../src/h3/qpack/errors.js';
import { prng } from '../util/prng.js';

function rng(seed: number): (n: number) => number {
  const next = prng(seed);
  return (n: number): number => next() * n;
}

const NAMES = [
  ':authority',
  ':path',
  ':method',
  ':scheme',
  ':status',
  'user-agent',
  'accept',
  'accept-encoding',
  'content-type',
  'cookie',
  'authorization',
  'date',
  'server',
  'x-custom-a',
  'x-custom-b',
  'x-custom-c',
  'x-forwarded-for',
  'cache-control',
];
const COMMON_VALUES = ['GET', 'https', '200', '*/*', 'example.com', 'a', '', 'text/html; charset=utf-8', 'no-cache'];

interface Pending {
  bytes: Buffer;
  want: Header[];
}

function randomString(r: (n: number) => number): string {
  const kind = r(10);
  if (kind < 4) return COMMON_VALUES[Math.floor(r(COMMON_VALUES.length))];
  const len = kind === 9 ? 200 + Math.floor(r(3000)) : Math.floor(r(30));
  let s = '';
  for (let i = 0; i < len; i++) {
    // Mostly printable ASCII, some arbitrary octets (non-ASCII, controls) to check byte exactness.
    s += String.fromCharCode(r(4) < 3 ? 0x20 + Math.floor(r(95)) : Math.floor(r(256)));
  }
  return s;
}

function randomHeaders(r: (n: number) => number, valuePool: string[]): Header[] {
  const n = 1 + Math.floor(r(10));
  const out: Header[] = [];
  for (let i = 0; i < n; i++) {
    const name = r(10) < 8 ? NAMES[Math.floor(r(NAMES.length))] : 'x-' + randomString(r).toLowerCase().slice(0, 8);
    // Reuse values often so the dynamic table gets hits.
    let value: string;
    if (r(3) < 2 && valuePool.length > 0) value = valuePool[Math.floor(r(valuePool.length))];
    else {
      value = randomString(r);
      valuePool.push(value);
      if (valuePool.length > 30) valuePool.shift();
    }
    out.push([name, value]);
  }
  return out;
}

function runScenario(seed: number): { sections: number; blockedSeen: number; inserts: number } {
  const r = rng(seed);
  const capacities = [0, 220, 4096, 65536];
  const maxCap = capacities[Math.floor(r(4))];
  const blockedLimit = Math.floor(r(11));
  const encCap = [maxCap, 65536, 1000, 300][Math.floor(r(4))];
  const enc = new QpackEncoder({ maxTableCapacity: encCap, huffman: r(2) < 1 });
  const dec = new QpackDecoder({ maxTableCapacity: maxCap, maxBlockedStreams: blockedLimit, maxFieldSectionSize: 1 << 20 });
  enc.applyPeerSettings(maxCap, blockedLimit);

  let encoderStream = Buffer.alloc(0); // written by the encoder, not yet delivered
  let decoderStream = Buffer.alloc(0);
  const streams = new Map<number, Pending[]>(); // undelivered sections per stream
  const blockedAt = new Map<number, Pending>(); // sections the decoder reported blocked
  const closed = new Set<number>();
  const valuePool: string[] = [];
  let nextStream = 0;
  let sections = 0;
  let blockedSeen = 0;

  const collectEncoder = (): void => {
    const b = enc.takeEncoderStreamData();
    if (b) encoderStream = Buffer.concat([encoderStream, b]);
  };
  const collectDecoder = (): void => {
    const b = dec.takeDecoderStreamData();
    if (b) decoderStream = Buffer.concat([decoderStream, b]);
  };
  const check = (id: number, p: Pending, got: Header[] | 'blocked'): void => {
    assert.notEqual(got, 'blocked', `seed ${seed} stream ${id}`);
    assert.deepEqual(got, p.want, `seed ${seed} stream ${id}`);
    sections++;
  };
  const deliverEncoder = (n: number): void => {
    if (encoderStream.length === 0) return;
    const piece = encoderStream.subarray(0, n);
    encoderStream = encoderStream.subarray(n);
    for (const id of dec.onEncoderStreamData(piece)) {
      const p = blockedAt.get(id);
      assert.ok(p, `seed ${seed}: unexpected unblocked stream ${id}`);
      blockedAt.delete(id);
      check(id, p, r(2) < 1 ? dec.decode(id, p.bytes) : dec.resume(id));
    }
  };
  const deliverSection = (id: number): void => {
    const q = streams.get(id);
    if (!q || q.length === 0 || blockedAt.has(id)) return;
    const p = q.shift() as Pending;
    const got = dec.decode(id, p.bytes);
    if (got === 'blocked') {
      blockedSeen++;
      blockedAt.set(id, p);
    } else check(id, p, got);
  };

  const steps = 60 + Math.floor(r(120));
  for (let step = 0; step < steps; step++) {
    const action = r(100);
    if (action < 35) {
      // Encode on a new stream, or a further section (e.g. trailers) on a live one.
      let id: number;
      const live = [...streams.keys()].filter((s) => !closed.has(s));
      if (live.length > 0 && r(4) < 1) id = live[Math.floor(r(live.length))];
      else {
        id = nextStream;
        nextStream += 4;
      }
      const headers = randomHeaders(r, valuePool);
      const bytes = enc.encode(id, headers);
      assert.ok(enc.blockingStreamCount <= blockedLimit, `seed ${seed}: encoder blocks too many streams`);
      collectEncoder();
      let q = streams.get(id);
      if (!q) {
        q = [];
        streams.set(id, q);
      }
      q.push({ bytes, want: headers.map(([n, v]) => [n, v] as Header) });
    } else if (action < 55) {
      deliverEncoder(1 + Math.floor(r(r(2) < 1 ? 8 : 400)));
    } else if (action < 80) {
      const ids = [...streams.keys()].filter((s) => (streams.get(s) as Pending[]).length > 0);
      if (ids.length > 0) deliverSection(ids[Math.floor(r(ids.length))]);
    } else if (action < 95) {
      collectDecoder();
      const n = Math.min(decoderStream.length, 1 + Math.floor(r(20)));
      if (n > 0) {
        enc.onDecoderStreamData(decoderStream.subarray(0, n));
        decoderStream = decoderStream.subarray(n);
      }
    } else {
      // Reset a stream that still has undelivered or blocked sections.
      const ids = [...streams.keys()].filter((s) => (streams.get(s) as Pending[]).length > 0 || blockedAt.has(s));
      if (ids.length > 0) {
        const id = ids[Math.floor(r(ids.length))];
        dec.cancelStream(id);
        streams.delete(id);
        blockedAt.delete(id);
        closed.add(id);
      }
    }
  }

  // Drain: everything eventually arrives.
  for (let round = 0; round < 1000; round++) {
    collectEncoder();
    deliverEncoder(encoderStream.length);
    for (const id of [...streams.keys()]) while ((streams.get(id) as Pending[]).length > 0 && !blockedAt.has(id)) deliverSection(id);
    collectDecoder();
    if (decoderStream.length > 0) {
      enc.onDecoderStreamData(decoderStream);
      decoderStream = Buffer.alloc(0);
    }
    const left = [...streams.values()].some((q) => q.length > 0) || blockedAt.size > 0;
    if (!left && encoderStream.length === 0) break;
  }
  assert.equal(blockedAt.size, 0, `seed ${seed}: streams left blocked`);
  assert.ok(![...streams.values()].some((q) => q.length > 0), `seed ${seed}: sections left`);
  // Everything acknowledged: nothing blocks any more.
  assert.equal(enc.blockingStreamCount, 0, `seed ${seed}`);
  assert.equal(dec.totalInserts, enc.totalInserts, `seed ${seed}`);
  if (maxCap === 0 || encCap === 0) assert.equal(enc.totalInserts, 0);
  return { sections, blockedSeen, inserts: enc.totalInserts };
}

test('random encode/decode with delayed and reordered streams (seeded)', { timeout: 120_000 }, () => {
  let sections = 0;
  let blockedSeen = 0;
  let inserts = 0;
  for (let seed = 1; seed <= 400; seed++) {
    const s = runScenario(seed);
    sections += s.sections;
    blockedSeen += s.blockedSeen;
    inserts += s.inserts;
  }
  // The scenarios must actually exercise the dynamic table and blocking.
  console.log(`# qpack property: ${sections} sections, ${inserts} inserts, ${blockedSeen} blocked`);
  assert.ok(sections > 5000, `sections ${sections}`);
  assert.ok(inserts > 2000, `inserts ${inserts}`);
  assert.ok(blockedSeen > 200, `blocked ${blockedSeen}`);
});
