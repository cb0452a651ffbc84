// Registry of OUR side of each interop case: the commands that start our QUIC server and client.
//
// CONTRACT for the commands returned here (the harness in run.ts relies on it):
//  * The command runs until it is signalled (server) or until it is done (client); the harness kills it by PID after
//    a hard timeout. It must only use loopback addresses it is given.
//  * It writes an NSS key log (SSLKEYLOGFILE format, RFC 9850 labels) to `keylogFile`, so that tshark can decrypt the
//    capture. The file must be complete (flushed) when the connection's 1-RTT keys are installed.
//  * It prints one JSON object per line on stdout ("JSON lines"); other stdout lines are ignored, stderr is free-form.
//    Events (fields beyond these are allowed and ignored):
//      {"event":"listening","addr":"127.0.0.1","port":4433}                              server, once bound
//      {"event":"handshake","alpn":"h3","cipher":"TLS_AES_128_GCM_SHA256","group":"x25519"}  handshake completed
//      {"event":"peer_stream_data","streamId":2,"offset":0,"length":23,"fin":false,"headHex":"0004..."}
//            data received on a stream the PEER opened; headHex = hex of the first <= 16 bytes of this chunk
//      {"event":"key_update","keyPhase":1,"initiator":"peer"}                          1-RTT key phase changed
//      {"event":"closed","errorCode":0,"reason":"","byPeer":true}                       connection closed
//      {"event":"error","message":"..."}                                                anything fatal
//  * Until HTTP/3 exists the cases pass on the QUIC level: handshake with ALPN h3, and the peer's HTTP/3 control
//    stream data arriving (a peer-initiated unidirectional stream whose first byte at offset 0 is 0x00).
//
// While our server and client are not built, both functions return null and the cases are reported as failures
// ("not implemented"), never as skips.

import { fileURLToPath } from 'node:url';
import { gnutlsCiphers, jsonLines } from './peers.js';
import type { GetResult } from '../../src/cli/get.js';

export interface OurCommand {
  cmd: string;
  args: string[];
  env?: Record<string, string>;
}

export interface OurServerOptions {
  addr: string;
  port: number;
  certFile: string;
  keyFile: string;
  /** ALPN protocols to offer, e.g. ['h3']. */
  alpn: string[];
  /** TLS 1.3 suites to allow (default: all three). */
  ciphers?: string[];
  keylogFile: string;
  workDir: string;
}

export interface OurClientOptions {
  host: string;
  port: number;
  /** SNI / authority, e.g. 'localhost'. */
  serverName: string;
  urls: string[];
  alpn: string[];
  ciphers?: string[];
  caFile: string;
  keylogFile: string;
  /** Initiate a key update this many ms after the handshake (keyupdate case). */
  keyUpdateAfterMs?: number;
  workDir: string;
}

/** The built `qsr` command (dist/src/cli/qsr.js), run with this Node. */
function qsr(args: string[]): OurCommand {
  return { cmd: process.execPath, args: [fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url)), ...args] };
}

/** Our QUIC server: `qsr quic-listen` (HTTP/3 comes with `qsr serve`). */
export function ourServerCommand(opts: OurServerOptions): OurCommand | null {
  if (fakeOurs()) {
    const c = opts.ciphers !== undefined ? [`--ciphers=${gnutlsCiphers(opts.ciphers)}`] : [];
    const docroot = opts.workDir;
    return adapter(['server', opts.addr, String(opts.port), opts.keyFile, opts.certFile, opts.keylogFile, docroot, ...c]);
  }
  const args = ['quic-listen', '--listen', `${opts.addr.includes(':') ? `[${opts.addr}]` : opts.addr}:${opts.port}`];
  args.push('--cert', opts.certFile, '--key', opts.keyFile, '--alpn', opts.alpn.join(','), '--keylog', opts.keylogFile);
  if (opts.ciphers) args.push('--ciphers', opts.ciphers.join(','));
  return qsr(args);
}

/** Our QUIC client: `qsr quic-connect`. */
export function ourClientCommand(opts: OurClientOptions): OurCommand | null {
  if (fakeOurs()) {
    const c = opts.ciphers !== undefined ? [`--ciphers=${gnutlsCiphers(opts.ciphers)}`] : [];
    return adapter(['client', opts.host, String(opts.port), opts.keylogFile, ...opts.urls, ...c]);
  }
  const host = opts.host.includes(':') ? `[${opts.host}]` : opts.host;
  const args = ['quic-connect', `https://${host}:${opts.port}/`, '--server-name', opts.serverName, '--ca', opts.caFile];
  args.push('--alpn', opts.alpn.join(','), '--keylog', opts.keylogFile, '--duration', '1500');
  if (opts.ciphers) args.push('--ciphers', opts.ciphers.join(','));
  if (opts.keyUpdateAfterMs !== undefined) args.push('--key-update-after', String(opts.keyUpdateAfterMs));
  return qsr(args);
}

// ---------------------------------------------------------------------------------------------------------------------
// HTTP/3 commands: `qsr serve`, `qsr get`, and the upload sink (h3-upload-server.ts). They have no JSON-lines event
// stream (qsr serve logs to stderr and binds its port; qsr get --json prints one JSON document at the end), so the
// harness judges them by their port, exit code, output document and the bytes they moved. The gtls stand-in
// (QSR_INTEROP_FAKE_OURS) does not cover them: they return null then, and run.ts leaves the HTTP/3 cases out.

const hostPort = (addr: string, port: number): string => `${addr.includes(':') ? `[${addr}]` : addr}:${port}`;

export interface OurServeOptions {
  addr: string;
  port: number;
  /** Document root. */
  dir: string;
  certFile: string;
  keyFile: string;
  keylogFile: string;
  workDir: string;
}

/** `qsr serve --dir DIR --listen ADDR:PORT --cert F --key F --keylog F` (static files over HTTP/3). */
export function ourServeCommand(o: OurServeOptions): OurCommand | null {
  if (fakeOurs()) return null;
  return qsr(['serve', '--dir', o.dir, '--listen', hostPort(o.addr, o.port), '--cert', o.certFile, '--key', o.keyFile, '--keylog', o.keylogFile]);
}

export interface OurUploadServerOptions {
  addr: string;
  port: number;
  certFile: string;
  keyFile: string;
  keylogFile: string;
  workDir: string;
}

/** test/interop/h3-upload-server.ts: answers every POST with "<bytes> <sha256hex>"; prints a JSON "listening" line. */
export function ourUploadServerCommand(o: OurUploadServerOptions): OurCommand | null {
  if (fakeOurs()) return null;
  const script = fileURLToPath(new URL('./h3-upload-server.js', import.meta.url));
  return {
    cmd: process.execPath,
    args: [script, '--listen', hostPort(o.addr, o.port), '--cert', o.certFile, '--key', o.keyFile, '--keylog', o.keylogFile],
  };
}

export interface OurGetOptions {
  /** All on one origin: one connection. */
  urls: string[];
  caFile: string;
  serverName: string;
  keylogFile: string;
  /** -o DIR: save each body. */
  outputDir?: string;
  /** -X METHOD */
  method?: string;
  /** -d @FILE: stream this file as the request body. */
  dataFile?: string;
  /** --timeout for the whole run, ms (qsr get's own limit; the harness adds a hard one). */
  timeoutMs?: number;
  workDir: string;
}

/** `qsr get URL... --json --ca F --server-name N --keylog F [-o DIR] [-X M] [-d @FILE]`. */
export function ourGetCommand(o: OurGetOptions): OurCommand | null {
  if (fakeOurs()) return null;
  const args = ['get', ...o.urls, '--json', '--ca', o.caFile, '--server-name', o.serverName, '--keylog', o.keylogFile];
  if (o.outputDir !== undefined) args.push('-o', o.outputDir);
  if (o.method !== undefined) args.push('-X', o.method);
  if (o.dataFile !== undefined) args.push('-d', `@${o.dataFile}`);
  if (o.timeoutMs !== undefined) args.push('--timeout', String(o.timeoutMs));
  return qsr(args);
}

/** One request in `qsr get --json` output. */
export type GetJsonRequest = GetResult;

export interface GetJson {
  origin: string;
  method: string;
  error?: string;
  requests: GetJsonRequest[];
  summary: { requests: number; ok: number; failed: number; bytes: number; wallMs: number; mbPerSec: number };
}

/** The JSON document `qsr get --json` printed (the whole of stdout), or an Error saying why it is not one. */
export function parseGetJson(stdout: string): GetJson | Error {
  let v: unknown;
  try {
    v = JSON.parse(stdout);
  } catch (e) {
    return new Error(`qsr get --json output is not JSON (${(e as Error).message}): ${stdout.slice(0, 300)}`);
  }
  if (typeof v !== 'object' || v === null || !Array.isArray((v as { requests?: unknown }).requests)) {
    return new Error(`qsr get --json output has no requests array: ${stdout.slice(0, 300)}`);
  }
  return v as GetJson;
}

/**
 * QSR_INTEROP_FAKE_OURS=gtls puts gtls-adapter.ts (gtlsserver/gtlsclient translated to the contract above) in place of
 * our side, to validate the harness's own code paths. Never set it in CI: the results would not be about our stack.
 */
export function fakeOurs(): boolean {
  return process.env.QSR_INTEROP_FAKE_OURS === 'gtls';
}

function adapter(args: string[]): OurCommand {
  return { cmd: process.execPath, args: [fileURLToPath(new URL('./gtls-adapter.js', import.meta.url)), ...args] };
}

// ---------------------------------------------------------------------------------------------------------------------
// Parsing the JSON-lines event stream

export type OurEvent =
  | { event: 'listening'; addr?: string; port?: number }
  | { event: 'handshake'; alpn?: string; cipher?: string; group?: string }
  | { event: 'peer_stream_data'; streamId: number; offset?: number; length?: number; fin?: boolean; headHex?: string }
  | { event: 'key_update'; keyPhase?: number; initiator?: string }
  | { event: 'closed'; errorCode?: number; reason?: string; byPeer?: boolean }
  | { event: 'error'; message?: string }
  | { event: string; [k: string]: unknown };

/** Every line of `stdout` that is a JSON object with a string "event" field, in order. */
export function parseOurEvents(stdout: string): OurEvent[] {
  return jsonLines(stdout).filter((v): v is OurEvent => typeof v.event === 'string');
}

/**
 * True when the events show the peer's HTTP/3 control stream arriving: data at offset 0 on a unidirectional stream
 * the peer opened, starting with stream type 0x00. `weAreServer` decides which initiator bit the peer has
 * (client-initiated uni streams are 2 mod 4, server-initiated ones 3 mod 4; RFC 9000 §2.1).
 */
export function sawPeerControlStream(events: readonly OurEvent[], weAreServer: boolean): boolean {
  const want = weAreServer ? 2 : 3;
  return events.some(
    (e) =>
      e.event === 'peer_stream_data' &&
      typeof e.streamId === 'number' &&
      e.streamId % 4 === want &&
      (e.offset === undefined || e.offset === 0) &&
      typeof e.headHex === 'string' &&
      e.headHex.startsWith('00'),
  );
}
