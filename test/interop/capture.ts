// Packet capture and offline decryption with tshark (Wireshark 4.0), for interop checks.
//
// startCapture: `tshark -q -i lo -f 'udp port P' -w FILE`, waits for "Capturing on", stopped with SIGINT to its own PID.
// decryptReport: reads the pcapng with `-o tls.keylog_file:KEYLOG -T json --no-duplicate-keys` and counts QUIC packets
// that were not decrypted (quic.decryption_failed for long-header packets, quic.remaining_payload for 1-RTT packets
// without keys), and lists, per stream id, the HTTP/3 frame types tshark dissected in each STREAM frame.
// tshark 4.0 does not decode QPACK and does not reassemble an HTTP/3 frame split across STREAM frames, so a large DATA
// frame is seen once (in its first STREAM frame) or not at all.
// injectSecrets: `editcap --inject-secrets tls,KEYLOG in out` (a pcapng that decrypts without a key log option).

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { findProgram, missingPrograms, spawnBounded, waitFor, sleep, type Child } from './peers.js';

export interface Capture {
  pcap: string;
  child: Child;
  /** Stop with SIGINT (tshark flushes and closes the file), SIGKILL after a grace period. */
  stop(): Promise<void>;
}

export interface CaptureOptions {
  workDir: string;
  port: number;
  /** Default 'capture.pcapng' inside workDir. */
  file?: string;
  iface?: string;
  /** Hard limit for tshark. Default 60 s. */
  timeoutMs?: number;
}

/** Start capturing `udp port P` on lo; resolves once tshark reports that it is capturing. */
export async function startCapture(o: CaptureOptions): Promise<Capture> {
  const tshark = findProgram('tshark');
  if (tshark === null) throw new Error(missingPrograms(['tshark']).hint);
  const pcap = o.file ?? join(o.workDir, 'capture.pcapng');
  const child = spawnBounded({
    name: 'tshark-capture',
    cmd: tshark,
    args: ['-q', '-i', o.iface ?? 'lo', '-f', `udp port ${o.port}`, '-w', pcap],
    workDir: o.workDir,
    timeoutMs: o.timeoutMs ?? 60_000,
  });
  const ok = await waitFor(() => !child.isRunning() || /Capturing on/.test(child.output()), 10_000);
  if (!ok || !child.isRunning()) {
    await child.stop('SIGKILL', 1000);
    throw new Error(
      `tshark did not start capturing: ${child.output().slice(-1500)}` +
        ' (as non-root, dumpcap needs cap_net_raw,cap_net_admin: dpkg-reconfigure wireshark-common + group wireshark)',
    );
  }
  await sleep(200); // the BPF filter is attached just before the message; give it a moment
  return {
    pcap,
    child,
    async stop() {
      await sleep(300); // let the last datagrams reach the capture
      await child.stop('SIGINT', 5000);
    },
  };
}

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
  /** Datagrams whose STREAM frames and http3 layers could not be paired one to one (continuation data). */
  unpaired: number;
}

const H3_FRAME_NAMES: Readonly<Record<number, string>> = {
  0x0: 'DATA',
  0x1: 'HEADERS',
  0x3: 'CANCEL_PUSH',
  0x4: 'SETTINGS',
  0x5: 'PUSH_PROMISE',
  0x7: 'GOAWAY',
  0xd: 'MAX_PUSH_ID',
  0xf0700: 'PRIORITY_UPDATE',
  0xf0701: 'PRIORITY_UPDATE_PUSH',
};
const H3_STREAM_TYPES: Readonly<Record<number, string>> = { 0: 'control', 1: 'push', 2: 'qpack-enc', 3: 'qpack-dec' };

/** Name of an HTTP/3 frame type; reserved (GREASE) types 0x1f*N+0x21 become "GREASE". */
export function h3FrameName(t: number): string {
  const n = H3_FRAME_NAMES[t];
  if (n !== undefined) return n;
  if (t >= 0x21 && (t - 0x21) % 0x1f === 0) return 'GREASE';
  return '0x' + t.toString(16);
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObj = { [k: string]: Json };

const asList = (x: Json | undefined): Json[] => (x === undefined || x === null ? [] : Array.isArray(x) ? x : [x]);
const isObj = (x: Json | undefined): x is JsonObj => typeof x === 'object' && x !== null && !Array.isArray(x);

function hasKeyDeep(x: Json | undefined, key: string): boolean {
  if (Array.isArray(x)) return x.some((e) => hasKeyDeep(e, key));
  if (!isObj(x)) return false;
  for (const [k, v] of Object.entries(x)) if (k === key || hasKeyDeep(v, key)) return true;
  return false;
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

const num = (x: Json | undefined): number => (typeof x === 'string' || typeof x === 'number' ? Number(x) : NaN);

/** Run a bounded program to completion and return its stdout (throws on a non-zero exit). */
async function runTool(name: string, prog: string, args: string[], workDir: string, timeoutMs: number): Promise<string> {
  const cmd = findProgram(prog);
  if (cmd === null) throw new Error(missingPrograms([prog]).hint);
  const child = spawnBounded({ name, cmd, args, workDir, timeoutMs });
  const exit = await child.exited;
  if (exit.code !== 0) {
    throw new Error(`${prog} ${args.join(' ')} failed (${JSON.stringify(exit)}): ${child.stderr().slice(-1500)}`);
  }
  return child.stdout();
}

/** Analyse tshark's JSON (as produced by `-T json --no-duplicate-keys`). Exported for unit testing. */
export function analyseTsharkJson(packets: Json): DecryptReport {
  const r: DecryptReport = {
    packets: 0,
    quicPackets: 0,
    undecrypted: 0,
    keyPhase1Packets: 0,
    http3Frames: new Map(),
    http3StreamTypes: new Map(),
    unpaired: 0,
  };
  for (const p of asList(packets)) {
    r.packets++;
    const layers = isObj(p) && isObj(p._source) ? p._source.layers : undefined;
    if (!isObj(layers)) continue;
    const streamIds: number[] = [];
    for (const q of asList(layers.quic)) {
      if (!isObj(q)) continue;
      r.quicPackets++;
      if ('quic.remaining_payload' in q || hasKeyDeep(q, 'quic.decryption_failed')) r.undecrypted++;
      const kp = findDeep(q, 'quic.key_phase');
      if (kp === '1' || kp === 'True' || kp === true) r.keyPhase1Packets++;
      for (const f of asList(q['quic.frame'])) {
        if (!isObj(f)) continue;
        const ft = num(f['quic.frame_type']);
        if (ft >= 0x08 && ft <= 0x0f) streamIds.push(num(f['quic.stream.stream_id']));
      }
    }
    // One http3 layer per STREAM frame, in order (a bare string when tshark found no HTTP/3 frame in it).
    const h3 = asList(layers.http3);
    if (streamIds.length === 0) continue;
    if (h3.length !== streamIds.length) {
      r.unpaired++;
      continue;
    }
    streamIds.forEach((sid, i) => {
      const e = h3[i];
      const list = r.http3Frames.get(sid) ?? [];
      if (isObj(e)) {
        for (const st of asList(e['http3.stream_type'])) {
          r.http3StreamTypes.set(sid, H3_STREAM_TYPES[num(st)] ?? `0x${num(st).toString(16)}`);
        }
        for (const t of asList(e['http3.frame_type'])) list.push(h3FrameName(num(t)));
      }
      r.http3Frames.set(sid, list);
    });
  }
  return r;
}

/** Decrypt `pcap` with an NSS key log and summarise (keylog null: rely on secrets embedded in the pcapng). */
export async function decryptReport(pcap: string, keylog: string | null, workDir: string): Promise<DecryptReport> {
  if (!existsSync(pcap) || statSync(pcap).size === 0) throw new Error(`no capture file ${pcap}`);
  const args = ['-r', pcap];
  if (keylog !== null) args.push('-o', `tls.keylog_file:${keylog}`);
  args.push('-T', 'json', '--no-duplicate-keys');
  const out = await runTool('tshark-decode', 'tshark', args, workDir, 60_000);
  return analyseTsharkJson(out.trim() === '' ? [] : (JSON.parse(out) as Json));
}

/** Embed the key log in a copy of the capture (Decryption Secrets Block). */
export async function injectSecrets(pcap: string, keylog: string, out: string, workDir: string): Promise<void> {
  await runTool('editcap', 'editcap', ['--inject-secrets', `tls,${keylog}`, pcap, out], workDir, 60_000);
}

/** Short text for a report line. */
export function formatReport(r: DecryptReport): string {
  const streams = [...r.http3Frames.entries()]
    .sort((a, b) => a[0] - b[0])
    .map(([sid, f]) => `${sid}${r.http3StreamTypes.has(sid) ? '(' + r.http3StreamTypes.get(sid) + ')' : ''}:[${f.join(',')}]`)
    .join(' ');
  return `packets=${r.packets} quic=${r.quicPackets} undecrypted=${r.undecrypted} kp1=${r.keyPhase1Packets} ${streams}`;
}
