// Interop peers: ngtcp2's GnuTLS example programs (gtlsserver / gtlsclient), run as bounded children (tools/process.ts).
//
// Every child we start writes stdout/stderr straight to files in a per-run work directory under os.tmpdir(), has a hard
// timeout (SIGKILL to its own PID), and is only ever signalled through the PID we got from spawn(). Nothing here kills
// by name. Loopback only: helpers refuse addresses other than 127.0.0.1 / ::1 / localhost.
//
// gtlsclient/gtlsserver (ngtcp2 0.12, GnuTLS 3.7) notes, checked against `gtlsclient --help` on Debian 12:
//   --ciphers=<GnuTLS priority string>   e.g. NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305
//   --groups=<GnuTLS priority string>    e.g. -GROUP-ALL:+GROUP-X25519
//   --key-update=<DURATION>              client initiates a key update DURATION after the handshake completes
//   -t/--tx-loss=<P>, -r/--rx-loss=<P>   random loss probability in [0, 1]
//   -n/--nstreams=<N>, --download=<DIR>, --timeout=<DURATION> (idle), --handshake-timeout=<DURATION>,
//   --delay-stream=<DURATION> (hold 1-RTT STREAM data), --exit-on-all-streams-close (else it idles until --timeout).
//   gtlsclient exits 0 even when the handshake times out: always judge it by its output.
//   The key log is written when SSLKEYLOGFILE is set (NSS format); there is no --keylog option.
//   gtlsserver must run with --max-gso-dgrams=1 when captured: GSO super-datagrams are not dissectable by tshark.

import { assertLoopback, findProgram, spawnBounded, udpPortBound, waitFor, type Child, type ExitInfo } from '../../tools/process.js';
import { missingPrograms } from '../../tools/peers/packages.js';

// Program lookup, bounded children, waiting and UDP ports live in tools/process.ts (the benchmarks use them too).
export {
  assertLoopback,
  findProgram,
  freeUdpPort,
  jsonLines,
  makeWorkDir,
  sleep,
  spawnBounded,
  udpPortBound,
  waitFor,
  type Child,
  type ExitInfo,
  type SpawnOptions,
} from '../../tools/process.js';
// The Debian packages of the peers and missingPrograms live in tools/peers/packages.ts (the benchmarks use them too).
export { PEER_FILES, PEER_PACKAGES, missingPrograms } from '../../tools/peers/packages.js';

// ---------------------------------------------------------------------------------------------------------------------
// GnuTLS priority strings for gtlsclient / gtlsserver

/** TLS 1.3 suite name -> GnuTLS cipher keyword. */
export const GNUTLS_CIPHER: Readonly<Record<string, string>> = {
  TLS_AES_128_GCM_SHA256: 'AES-128-GCM',
  TLS_AES_256_GCM_SHA384: 'AES-256-GCM',
  TLS_CHACHA20_POLY1305_SHA256: 'CHACHA20-POLY1305',
  TLS_AES_128_CCM_SHA256: 'AES-128-CCM',
};

/** Named group -> GnuTLS group keyword. */
export const GNUTLS_GROUP: Readonly<Record<string, string>> = {
  x25519: 'GROUP-X25519',
  secp256r1: 'GROUP-SECP256R1',
  secp384r1: 'GROUP-SECP384R1',
  secp521r1: 'GROUP-SECP521R1',
  x448: 'GROUP-X448',
};

/** `--ciphers=` value enabling only the given TLS 1.3 suites, e.g. ['TLS_CHACHA20_POLY1305_SHA256']. */
export function gnutlsCiphers(suites: readonly string[]): string {
  const parts = suites.map((s) => {
    const g = GNUTLS_CIPHER[s];
    if (g === undefined) throw new Error(`unknown TLS 1.3 cipher suite ${s}`);
    return '+' + g;
  });
  return ['NORMAL', '-VERS-ALL', '+VERS-TLS1.3', '-CIPHER-ALL', ...parts].join(':');
}

/** `--groups=` value enabling only the given groups, e.g. ['x25519']. */
export function gnutlsGroups(groups: readonly string[]): string {
  return ['-GROUP-ALL', ...groups.map((g) => {
    const k = GNUTLS_GROUP[g];
    if (k === undefined) throw new Error(`unknown group ${g}`);
    return '+' + k;
  })].join(':');
}

/** GnuTLS's name for a cipher ("CHACHA20-POLY1305", as gtlsclient prints it) -> TLS 1.3 suite name. */
export function suiteFromGnutlsName(name: string): string | undefined {
  for (const [suite, g] of Object.entries(GNUTLS_CIPHER)) if (g === name) return suite;
  return undefined;
}

// ---------------------------------------------------------------------------------------------------------------------
// gtlsserver

export interface GtlsServerOptions {
  workDir: string;
  addr: string;
  port: number;
  docroot: string;
  key: string;
  cert: string;
  /** `-q`: no output at all. Default false (logs handshake and request headers, with --no-quic-dump --no-http-dump). */
  quiet?: boolean;
  keylogFile?: string;
  /** TLS 1.3 suite names to allow. */
  ciphers?: readonly string[];
  groups?: readonly string[];
  extraArgs?: readonly string[];
  /** Hard limit for the server process. Default 60 s. */
  timeoutMs?: number;
  name?: string;
}

export function gtlsServerArgs(o: GtlsServerOptions): string[] {
  assertLoopback(o.addr);
  const a: string[] = o.quiet === true ? ['-q'] : ['--no-quic-dump', '--no-http-dump'];
  a.push('--max-gso-dgrams=1'); // always: tshark cannot split GSO super-datagrams
  if (o.ciphers !== undefined) a.push(`--ciphers=${gnutlsCiphers(o.ciphers)}`);
  if (o.groups !== undefined) a.push(`--groups=${gnutlsGroups(o.groups)}`);
  a.push(...(o.extraArgs ?? []));
  a.push('-d', o.docroot, o.addr === 'localhost' ? '127.0.0.1' : o.addr, String(o.port), o.key, o.cert);
  return a;
}

/** Start gtlsserver and wait until its UDP port is bound (throws with its log if it is not within 5 s). */
export async function startGtlsServer(o: GtlsServerOptions): Promise<Child> {
  const cmd = findProgram('gtlsserver');
  if (cmd === null) throw new Error(missingPrograms(['gtlsserver']).hint);
  const child = spawnBounded({
    name: o.name ?? 'gtlsserver',
    cmd,
    args: gtlsServerArgs(o),
    workDir: o.workDir,
    timeoutMs: o.timeoutMs ?? 60_000,
    env: o.keylogFile !== undefined ? { SSLKEYLOGFILE: o.keylogFile } : {},
  });
  const ok = await waitFor(() => !child.isRunning() || udpPortBound(o.port), 5000);
  if (!ok || !child.isRunning() || /Could not bind/i.test(child.output())) {
    await child.stop('SIGKILL', 1000);
    throw new Error(`gtlsserver did not bind udp ${o.addr}:${o.port}: ${child.output().slice(-2000)}`);
  }
  return child;
}

/** What gtlsserver's (non -q) log says about its connections. */
export interface GtlsServerLog {
  handshakeCompleted: number;
  alpn: string[];
  ciphers: string[];
  /** Decoded request :path values per stream id. */
  paths: Map<number, string>;
  errors: string[];
}

export function parseGtlsServerLog(text: string): GtlsServerLog {
  const r: GtlsServerLog = { handshakeCompleted: 0, alpn: [], ciphers: [], paths: new Map(), errors: [] };
  for (const line of text.split('\n')) {
    if (isErrorLine(line)) r.errors.push(line.trim());
    if (line.startsWith('I0')) continue; // ngtcp2 packet trace
    if (line.includes('QUIC handshake has completed')) r.handshakeCompleted++;
    let m = /^Negotiated ALPN is (\S+)/.exec(line);
    if (m) r.alpn.push(m[1]!);
    m = /^Negotiated cipher suite is (\S+)/.exec(line);
    if (m) r.ciphers.push(m[1]!);
    m = /^http: stream 0x([0-9a-f]+) \[:path: (.*)\]$/.exec(line);
    if (m) r.paths.set(parseInt(m[1]!, 16), m[2]!);
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------------------
// gtlsclient

export interface GtlsClientOptions {
  workDir: string;
  host: string;
  port: number;
  urls: readonly string[];
  keylogFile?: string;
  /** TLS 1.3 suite names, e.g. ['TLS_CHACHA20_POLY1305_SHA256'] -> --ciphers=NORMAL:...:+CHACHA20-POLY1305 */
  ciphers?: readonly string[];
  /** e.g. ['x25519'] -> --groups=-GROUP-ALL:+GROUP-X25519 */
  groups?: readonly string[];
  /** --key-update=<DURATION>, e.g. '100ms' after the handshake completes. */
  keyUpdate?: string;
  /** --delay-stream=<DURATION>: hold 1-RTT STREAM data (use with keyUpdate to send requests under the new keys). */
  delayStream?: string;
  /** -n: total requests, cycling through urls. */
  nstreams?: number;
  /** --download=<DIR> */
  download?: string;
  /** -t / -r loss probabilities in [0, 1]. */
  txLoss?: number;
  rxLoss?: number;
  /** --timeout=<DURATION> idle timeout (gtlsclient default 30s). Default here '5s'. */
  idleTimeout?: string;
  /** --handshake-timeout=<DURATION> (default here '5s'). */
  handshakeTimeout?: string;
  /** Default true: --exit-on-all-streams-close. */
  exitOnAllStreamsClose?: boolean;
  /** -q instead of --no-quic-dump --no-http-dump (then nothing is parseable). */
  quiet?: boolean;
  extraArgs?: readonly string[];
  /** Hard limit for the process. Default 20 s. */
  timeoutMs?: number;
  name?: string;
}

export function gtlsClientArgs(o: GtlsClientOptions): string[] {
  assertLoopback(o.host);
  for (const u of o.urls) {
    if (!/^https:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/|$)/.test(u)) throw new Error(`refusing non-loopback URL ${u}`);
  }
  const a: string[] = o.quiet === true ? ['-q'] : ['--no-quic-dump', '--no-http-dump'];
  if (o.exitOnAllStreamsClose !== false) a.push('--exit-on-all-streams-close');
  a.push(`--timeout=${o.idleTimeout ?? '5s'}`, `--handshake-timeout=${o.handshakeTimeout ?? '5s'}`);
  if (o.ciphers !== undefined) a.push(`--ciphers=${gnutlsCiphers(o.ciphers)}`);
  if (o.groups !== undefined) a.push(`--groups=${gnutlsGroups(o.groups)}`);
  if (o.keyUpdate !== undefined) a.push(`--key-update=${o.keyUpdate}`);
  if (o.delayStream !== undefined) a.push(`--delay-stream=${o.delayStream}`);
  if (o.nstreams !== undefined) a.push(`--nstreams=${o.nstreams}`);
  if (o.download !== undefined) a.push(`--download=${o.download}`);
  if (o.txLoss !== undefined) a.push(`--tx-loss=${o.txLoss}`);
  if (o.rxLoss !== undefined) a.push(`--rx-loss=${o.rxLoss}`);
  a.push(...(o.extraArgs ?? []));
  a.push(o.host === 'localhost' ? '127.0.0.1' : o.host, String(o.port), ...o.urls);
  return a;
}

export interface GtlsClientRun {
  exit: ExitInfo;
  output: string;
  result: GtlsClientResult;
  child: Child;
}

/** Start gtlsclient (bounded) without waiting for it; parse its output later with parseGtlsClientOutput. */
export function startGtlsClient(o: GtlsClientOptions): Child {
  const cmd = findProgram('gtlsclient');
  if (cmd === null) throw new Error(missingPrograms(['gtlsclient']).hint);
  return spawnBounded({
    name: o.name ?? 'gtlsclient',
    cmd,
    args: gtlsClientArgs(o),
    workDir: o.workDir,
    timeoutMs: o.timeoutMs ?? 20_000,
    env: o.keylogFile !== undefined ? { SSLKEYLOGFILE: o.keylogFile } : {},
  });
}

/** Run gtlsclient to completion (bounded) and parse what it printed. */
export async function runGtlsClient(o: GtlsClientOptions): Promise<GtlsClientRun> {
  const child = startGtlsClient(o);
  const exit = await child.exited;
  const output = child.output();
  return { exit, output, result: parseGtlsClientOutput(output), child };
}

export interface GtlsClientResult {
  handshakeCompleted: boolean;
  handshakeConfirmed: boolean;
  alpn?: string;
  /** GnuTLS name as printed, e.g. "AES-128-GCM", "CHACHA20-POLY1305". */
  cipher?: string;
  /** The same as a TLS 1.3 suite name when known, e.g. "TLS_CHACHA20_POLY1305_SHA256". */
  suite?: string;
  /** Number of "Initiate key update" lines (client-initiated key updates). */
  keyUpdatesInitiated: number;
  /** :status per request stream id. */
  statuses: Map<number, number>;
  /** Application error code with which each HTTP stream closed (0x100 = H3_NO_ERROR). */
  streamCloses: Map<number, number>;
  errors: string[];
}

/**
 * Error lines in gtls output. ERR_DRAINING is the normal result of the peer's CONNECTION_CLOSE, so it is not an error
 * by itself; a CONNECTION_CLOSE received with a code other than NO_ERROR (0x0) / H3_NO_ERROR (0x100) is.
 */
function isErrorLine(line: string): boolean {
  if (line.startsWith('I0')) {
    const m = / frm rx .*CONNECTION_CLOSE\(0x1[cd]\) error_code=\S*?\(?(0x[0-9a-f]+)\)?\s/.exec(line);
    return m !== null && Number(m[1]) !== 0 && Number(m[1]) !== 0x100;
  }
  if (/closed with error code|ERR_DRAINING/.test(line)) return false;
  return /\bERR_[A-Z_]+|failed|[Ee]rror:|[Cc]ould not|[Uu]nable to|refused/.test(line);
}

export function parseGtlsClientOutput(text: string): GtlsClientResult {
  const r: GtlsClientResult = {
    handshakeCompleted: false,
    handshakeConfirmed: false,
    keyUpdatesInitiated: 0,
    statuses: new Map(),
    streamCloses: new Map(),
    errors: [],
  };
  for (const line of text.split('\n')) {
    if (isErrorLine(line)) r.errors.push(line.trim());
    if (line.startsWith('I0')) continue; // ngtcp2 packet trace
    if (line.startsWith('QUIC handshake has completed')) r.handshakeCompleted = true;
    if (line.startsWith('QUIC handshake has been confirmed')) r.handshakeConfirmed = true;
    if (line.startsWith('Initiate key update')) r.keyUpdatesInitiated++;
    let m = /^Negotiated ALPN is (\S+)/.exec(line);
    if (m) r.alpn = m[1];
    m = /^Negotiated cipher suite is (\S+)/.exec(line);
    if (m) {
      r.cipher = m[1];
      r.suite = suiteFromGnutlsName(m[1]!);
    }
    m = /^http: stream 0x([0-9a-f]+) \[:status: (\d+)\]/.exec(line);
    if (m) r.statuses.set(parseInt(m[1]!, 16), Number(m[2]));
    m = /^HTTP stream (\d+) closed with error code (\d+)/.exec(line);
    if (m) r.streamCloses.set(Number(m[1]), Number(m[2]));
  }
  return r;
}

/** H3_NO_ERROR (RFC 9114 §8.1). */
export const H3_NO_ERROR = 0x100;
