// Headless Chromium as an HTTP/3 interop peer (loopback only).
//
// runChromiumH3 loads one https URL on 127.0.0.1/localhost with the origin forced onto QUIC
// (--origin-to-force-quic-on), trusts the server certificate by its SPKI hash
// (--ignore-certificate-errors-spki-list), prints the DOM (--dump-dom), writes a net-log (--log-net-log, capture mode
// Everything) and, when asked, an NSS key log (SSLKEYLOGFILE). parseNetlog summarises the net-log: QUIC sessions,
// HTTP/3 requests paired with the :status of their response, and errors.
//
// Keeping Chromium off the network (both measures are required, see the peers notes):
//  * --host-resolver-rules maps every host name except the loopback ones to ~NOTFOUND, which stops the background
//    requests (time sync, update checks, accounts) that still happen with --disable-background-networking.
//  * A fresh user-data-dir whose Default/Preferences sets alternate_error_pages.enabled=false: otherwise, after a
//    navigation DNS error, DnsProbeService queries the system resolver and 8.8.8.8 directly, past the resolver rules.
// URLs other than https://127.0.0.1:PORT/... and https://localhost:PORT/... are refused before anything is started
// ([::1] literals fail under the MAP rule; use localhost with a server on ::1, which Chromium tries first).
//
// Chromium starts helper processes (zygote, GPU, network service). It is started with detached: true so that it leads
// its own process group; the hard timeout and the final cleanup signal that group (process.kill(-pid)), which holds
// only the processes this module started.

import { spawn } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import { accessSync, closeSync, constants, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loopbackOrigin } from '../../tools/peers/loopback.js';

/** The real Chromium binary (the /usr/bin/chromium wrapper adds extension flags of its own). */
export const CHROMIUM_BIN = '/usr/lib/chromium/chromium';

/** Path of the Chromium binary when it is installed and executable, else null. */
export function chromiumPath(): string | null {
  try {
    accessSync(CHROMIUM_BIN, constants.X_OK);
    return CHROMIUM_BIN;
  } catch {
    return null;
  }
}

/** base64(SHA-256(SubjectPublicKeyInfo DER)) of the first certificate in a PEM file: the --ignore-certificate-errors-spki-list value. */
export function spkiOfCert(pemPath: string): string {
  const cert = new X509Certificate(readFileSync(pemPath));
  const der = cert.publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(der).digest('base64');
}

/** Resolver rules: every name fails to resolve except the loopback ones. */
export const HOST_RESOLVER_RULES = 'MAP * ~NOTFOUND, EXCLUDE localhost, EXCLUDE 127.0.0.1, EXCLUDE ::1';

/** Content of Default/Preferences in the fresh profile (disables DnsProbeService's direct DNS queries). */
export const PREFERENCES_JSON = '{"alternate_error_pages":{"enabled":false}}';

export interface ChromiumH3Options {
  /** https://127.0.0.1:PORT/... or https://localhost:PORT/... only. */
  url: string;
  /** base64 SHA-256 of the server certificate's SPKI (spkiOfCert). */
  spkiBase64: string;
  /** Where the profile, net-log, DOM and stderr go (created if needed). */
  workDir: string;
  /** Hard limit: after this the whole process group gets SIGKILL. */
  timeoutMs: number;
  /** Write the NSS key log here (SSLKEYLOGFILE). */
  keylogFile?: string;
}

/** Command-line arguments for one run (exported for tests; the URL must already have been checked). */
export function chromiumArgs(o: { url: string; spkiBase64: string; userDataDir: string; netlogFile: string }): string[] {
  const { origin } = loopbackOrigin(o.url);
  if (!/^[A-Za-z0-9+/]{43}=$/.test(o.spkiBase64)) throw new Error(`not a base64 SHA-256 SPKI hash: ${o.spkiBase64}`);
  return [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--disable-extensions',
    '--disable-default-apps',
    '--no-default-browser-check',
    '--disable-domain-reliability',
    '--disable-breakpad',
    '--no-pings',
    `--user-data-dir=${o.userDataDir}`,
    `--host-resolver-rules=${HOST_RESOLVER_RULES}`,
    `--origin-to-force-quic-on=${origin}`,
    `--ignore-certificate-errors-spki-list=${o.spkiBase64}`,
    `--log-net-log=${o.netlogFile}`,
    '--net-log-capture-mode=Everything',
    '--dump-dom',
    o.url,
  ];
}

// ---------------------------------------------------------------------------------------------------------------------
// Net-log parsing

export interface H3Request {
  path: string;
  /** :status of the response, or null when none was decoded. */
  status: number | null;
}

export interface NetlogSummary {
  /** "host:port" of each QUIC session, in order of appearance, without duplicates. */
  quicSessions: string[];
  /** HTTP/3 requests (HTTP3_HEADERS_SENT) with the :status of the response on the same stream (HTTP3_HEADERS_DECODED). */
  h3Requests: H3Request[];
  /**
   * Failures that concern the page: loopback URL requests that ended with a net error ("URL: ERR_X(-n)") and QUIC
   * sessions closed with an error ("QUIC_SESSION_CLOSED: QUIC_X(n) details", also CONNECTION_CLOSE frames received).
   * Not included: the name-resolution failures the resolver rules cause on purpose (see blockedRequests) and the
   * QUIC_CONNECTION_CANCELLED close Chromium does for every session when it shuts down.
   */
  errors: string[];
  /** Non-loopback URLs Chromium tried to load (background services) and that failed, as the resolver rules intend. */
  blockedRequests: string[];
  /** Remote addresses that traffic was sent to: TCP connect attempts, and UDP sockets that sent bytes. */
  contactedAddresses: string[];
  /** Events parsed, and whether the file was complete JSON (false: Chromium was killed mid-write). */
  events: number;
  complete: boolean;
}

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObj = { [k: string]: Json };
const isObj = (x: Json | undefined): x is JsonObj => typeof x === 'object' && x !== null && !Array.isArray(x);

/**
 * Split a net-log into its constants and events. Chromium writes `{"constants":{...},` then `"events": [` and one event
 * object per line followed by a comma, and closes the array and object only on a clean exit. A file cut short is read
 * line by line; a partial last line is dropped.
 */
function readNetlog(text: string): { constants: JsonObj; events: JsonObj[]; complete: boolean } {
  try {
    const d = JSON.parse(text) as Json;
    if (isObj(d) && isObj(d.constants) && Array.isArray(d.events)) {
      return { constants: d.constants, events: d.events.filter(isObj), complete: true };
    }
  } catch {
    // truncated: fall through
  }
  const at = text.search(/"events"\s*:\s*\[/);
  if (at < 0) return { constants: {}, events: [], complete: false };
  let constants: JsonObj = {};
  const head = text.slice(0, at).trim().replace(/,$/, '') + '}';
  try {
    const d = JSON.parse(head) as Json;
    if (isObj(d) && isObj(d.constants)) constants = d.constants;
  } catch {
    // no usable constants table: events cannot be named
  }
  const events: JsonObj[] = [];
  const body = text.slice(text.indexOf('[', at) + 1);
  for (const raw of body.split('\n')) {
    const line = raw.trim().replace(/,$/, '');
    if (!line.startsWith('{')) continue;
    try {
      const e = JSON.parse(line) as Json;
      if (isObj(e)) events.push(e);
    } catch {
      // partial line at the cut
    }
  }
  return { constants, events, complete: false };
}

/** Reverse a {NAME: number} constants table. */
function nameTable(t: Json | undefined): Map<number, string> {
  const m = new Map<number, string>();
  if (isObj(t)) for (const [k, v] of Object.entries(t)) if (typeof v === 'number') m.set(v, k);
  return m;
}

function headerList(p: JsonObj): string[] {
  return Array.isArray(p.headers) ? p.headers.filter((h): h is string => typeof h === 'string') : [];
}

function pseudo(headers: string[], name: string): string | undefined {
  const prefix = name + ': ';
  const h = headers.find((x) => x.startsWith(prefix));
  return h === undefined ? undefined : h.slice(prefix.length);
}

/** True for "127.0.0.1:P", "[::1]:P" and the bare addresses. */
export function isLoopbackAddress(a: string): boolean {
  return /^(127\.\d+\.\d+\.\d+|\[::1\]|::1)(:\d+)?$/.test(a);
}

const isLoopbackUrl = (u: string): boolean => /^[a-z]+:\/\/(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(\/|$)/.test(u);

const PHASE_BEGIN = 1;
const PHASE_END = 2;

/** Summarise a Chromium net-log (complete or truncated JSON text). Event ids are named through its constants table. */
export function parseNetlog(text: string): NetlogSummary {
  const { constants, events, complete } = readNetlog(text);
  const eventNames = nameTable(constants.logEventTypes);
  const netErrors = nameTable(constants.netError);
  const quicErrors = nameTable(constants.quicError);
  const netErr = (n: number): string => `${netErrors.get(n) ?? 'net error'}(${n})`;
  const quicErr = (n: Json | undefined): string =>
    typeof n === 'number' ? `${quicErrors.get(n) ?? 'quic error'}(${n})` : String(n);

  const r: NetlogSummary = {
    quicSessions: [],
    h3Requests: [],
    errors: [],
    blockedRequests: [],
    contactedAddresses: [],
    events: events.length,
    complete,
  };
  const addOnce = (list: string[], v: string): void => {
    if (!list.includes(v)) list.push(v);
  };
  const byStream = new Map<string, number>(); // "<source id>/<stream id>" -> index in h3Requests
  const urlOf = new Map<number, string>(); // URL_REQUEST source id -> url
  const udpPeer = new Map<number, string>(); // UDP socket source id -> connected address
  for (const e of events) {
    const type = typeof e.type === 'number' ? (eventNames.get(e.type) ?? `type${e.type}`) : '?';
    const p: JsonObj = isObj(e.params) ? e.params : {};
    const src = isObj(e.source) && typeof e.source.id === 'number' ? e.source.id : -1;
    const phase = e.phase;
    switch (type) {
      case 'QUIC_SESSION':
        if (typeof p.host === 'string') addOnce(r.quicSessions, `${p.host}:${String(p.port)}`);
        break;
      case 'HTTP3_HEADERS_SENT': {
        const path = pseudo(headerList(p), ':path');
        if (path !== undefined) {
          byStream.set(`${src}/${String(p.stream_id)}`, r.h3Requests.length);
          r.h3Requests.push({ path, status: null });
        }
        break;
      }
      case 'HTTP3_HEADERS_DECODED': {
        const status = pseudo(headerList(p), ':status');
        const req = r.h3Requests[byStream.get(`${src}/${String(p.stream_id)}`) ?? -1];
        if (status !== undefined && req !== undefined && req.status === null) req.status = Number(status);
        break;
      }
      case 'URL_REQUEST_START_JOB':
        if (phase === PHASE_BEGIN && typeof p.url === 'string') urlOf.set(src, p.url);
        break;
      case 'REQUEST_ALIVE':
        if (phase === PHASE_END && typeof p.net_error === 'number' && p.net_error !== 0) {
          const url = urlOf.get(src) ?? `request ${src}`;
          if (isLoopbackUrl(url)) r.errors.push(`${url}: ${netErr(p.net_error)}`);
          else addOnce(r.blockedRequests, url);
        }
        break;
      case 'QUIC_SESSION_CLOSED':
      case 'QUIC_SESSION_CONNECTION_CLOSE_FRAME_RECEIVED':
        if (p.quic_error !== 0 && p.quic_error !== undefined && quicErrors.get(Number(p.quic_error)) !== 'QUIC_CONNECTION_CANCELLED') {
          const details = typeof p.details === 'string' && p.details !== '' ? ' ' + p.details : '';
          const wire = typeof p.quic_wire_error === 'number' ? ` wire=0x${p.quic_wire_error.toString(16)}` : '';
          const who = p.from_peer === true ? ' (from peer)' : '';
          addOnce(r.errors, `${type}: ${quicErr(p.quic_error)}${wire}${details}${who}`);
        }
        break;
      case 'TCP_CONNECT_ATTEMPT':
        if (typeof p.address === 'string') addOnce(r.contactedAddresses, p.address);
        break;
      case 'UDP_CONNECT':
        if (typeof p.address === 'string') udpPeer.set(src, p.address);
        break;
      case 'UDP_BYTES_SENT': {
        const a = typeof p.address === 'string' ? p.address : udpPeer.get(src);
        if (a !== undefined) addOnce(r.contactedAddresses, a);
        break;
      }
      default:
        break;
    }
  }
  return r;
}

// ---------------------------------------------------------------------------------------------------------------------
// Running Chromium

export interface ChromiumRun {
  /** What --dump-dom printed (stdout). */
  dom: string;
  netlog: NetlogSummary;
  /** Chromium's exit code; null when it was killed (see signal / timedOut). */
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  /** Wall-clock run time in ms (informational only). */
  ms: number;
  stderr: string;
  netlogFile: string;
  keylogFile?: string;
}

const liveGroups = new Set<number>();
let exitHookInstalled = false;

/** Signal the process group we created (its id is the leader's PID); ignore a group that is already gone. */
function killGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig);
  } catch {
    // ESRCH: nothing left in the group
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const g of liveGroups) killGroup(g, 'SIGKILL');
  });
}

function readText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** Load `url` in headless Chromium over HTTP/3 and summarise the net-log. Never rejects after spawning. */
export async function runChromiumH3(o: ChromiumH3Options): Promise<ChromiumRun> {
  loopbackOrigin(o.url); // refuse before touching anything
  const bin = chromiumPath();
  if (bin === null) throw new Error(`chromium not installed (${CHROMIUM_BIN}): apt-get install chromium`);
  installExitHook();
  mkdirSync(o.workDir, { recursive: true });
  let n = 1;
  while (readText(join(o.workDir, `chromium-${n}.cmdline`)) !== '') n++;
  const base = join(o.workDir, `chromium-${n}`);
  const userDataDir = `${base}.profile`;
  mkdirSync(join(userDataDir, 'Default'), { recursive: true });
  writeFileSync(join(userDataDir, 'Default', 'Preferences'), PREFERENCES_JSON);
  const netlogFile = `${base}.netlog.json`;
  const domFile = `${base}.dom.html`;
  const errFile = `${base}.stderr`;
  const args = chromiumArgs({ url: o.url, spkiBase64: o.spkiBase64, userDataDir, netlogFile });
  writeFileSync(`${base}.cmdline`, [bin, ...args].map((a) => (/[\s*,]/.test(a) ? `'${a}'` : a)).join(' ') + '\n');

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'SSLKEYLOGFILE') env[k] = v;
  if (o.keylogFile !== undefined) env.SSLKEYLOGFILE = o.keylogFile;

  const outFd = openSync(domFile, 'w');
  const errFd = openSync(errFile, 'w');
  const t0 = Date.now();
  const child = spawn(bin, args, { stdio: ['ignore', outFd, errFd], env, cwd: o.workDir, detached: true });
  closeSync(outFd);
  closeSync(errFd);
  const pgid = child.pid;
  if (pgid !== undefined) liveGroups.add(pgid);

  let timedOut = false;
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null; error?: string }>((resolve) => {
    const timer = setTimeout(() => {
      timedOut = true;
      if (pgid !== undefined) killGroup(pgid, 'SIGKILL');
    }, o.timeoutMs);
    child.once('error', (e) => {
      if (child.pid === undefined) {
        clearTimeout(timer);
        resolve({ code: null, signal: null, error: e.message });
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  // Helpers (zygote, network service) may outlive the browser process by a moment: end the whole group.
  if (pgid !== undefined) {
    killGroup(pgid, 'SIGKILL');
    liveGroups.delete(pgid);
  }
  const ms = Date.now() - t0;
  const stderr = readText(errFile) + (exit.error !== undefined ? `\nspawn error: ${exit.error}` : '');
  const run: ChromiumRun = {
    dom: readText(domFile),
    netlog: parseNetlog(readText(netlogFile)),
    exitCode: exit.code,
    signal: exit.signal,
    timedOut,
    ms,
    stderr,
    netlogFile,
  };
  if (o.keylogFile !== undefined) run.keylogFile = o.keylogFile;
  return run;
}

// ---------------------------------------------------------------------------------------------------------------------
// Running a script in a page (the interop matrix): Chromium is driven over the DevTools protocol instead of
// --dump-dom, so a case can fetch many resources, upload and hash bodies in the page, and wait for the answer.
// --remote-debugging-port=0 makes Chromium listen on a free loopback TCP port, written to DevToolsActivePort in the
// profile; one WebSocket to it carries Target.createTarget / attachToTarget and Runtime.evaluate(awaitPromise).

export interface ChromiumScriptOptions extends ChromiumH3Options {
  /** A JavaScript expression evaluated in the page at `url` once it has loaded; a promise is awaited. */
  script: string;
  /**
   * Net-log capture mode: 'Everything' logs every packet (bytes included), which slows a 100 MB transfer down about
   * fourfold; the default 'Default' still has sessions, request heads and errors.
   */
  netlogMode?: 'Everything' | 'Default';
}

export interface ChromiumScriptRun extends ChromiumRun {
  /** The script's value (returnByValue), or undefined when it threw or did not finish. */
  value: unknown;
  /** Why there is no value: the exception, a timeout, a DevTools failure. */
  error?: string;
}

interface CdpSocket {
  addEventListener(type: 'message', l: (ev: { data: unknown }) => void): void;
  addEventListener(type: 'open' | 'close' | 'error', l: () => void): void;
  send(data: string): void;
  close(): void;
}

async function openWebSocket(url: string): Promise<CdpSocket> {
  const g = globalThis as unknown as { WebSocket?: new (u: string) => CdpSocket };
  const Ctor = g.WebSocket ?? ((await import('undici')).WebSocket as unknown as new (u: string) => CdpSocket);
  const ws = new Ctor(url);
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error(`WebSocket to ${url} failed`)));
  });
  return ws;
}

/** A minimal DevTools protocol client: call(method, params, sessionId) resolves with the result or rejects. */
class Cdp {
  private next = 1;
  private readonly pending = new Map<number, { resolve: (v: Record<string, unknown>) => void; reject: (e: Error) => void }>();
  constructor(private readonly ws: CdpSocket) {
    ws.addEventListener('message', (ev) => {
      let m: { id?: number; result?: Record<string, unknown>; error?: { message?: string } };
      try {
        m = JSON.parse(String(ev.data)) as typeof m;
      } catch {
        return;
      }
      if (m.id === undefined) return;
      const p = this.pending.get(m.id);
      if (p === undefined) return;
      this.pending.delete(m.id);
      if (m.error !== undefined) p.reject(new Error(m.error.message ?? JSON.stringify(m.error)));
      else p.resolve(m.result ?? {});
    });
    ws.addEventListener('close', () => {
      for (const p of this.pending.values()) p.reject(new Error('DevTools connection closed'));
      this.pending.clear();
    });
  }
  call(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
    const id = this.next++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.ws.send(JSON.stringify({ id, method, params, ...(sessionId !== undefined ? { sessionId } : {}) }));
    });
  }
  close(): void {
    this.ws.close();
  }
}

/** A delay that does not keep the process alive by itself. */
const pause = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());

/**
 * Open `url` in headless Chromium over HTTP/3, wait for it to load, evaluate `script` there and return its value, with
 * the net-log summary. Bounded by timeoutMs (the whole process group is killed then). Never rejects after spawning.
 */
export async function runChromiumScript(o: ChromiumScriptOptions): Promise<ChromiumScriptRun> {
  loopbackOrigin(o.url);
  const bin = chromiumPath();
  if (bin === null) throw new Error(`chromium not installed (${CHROMIUM_BIN}): apt-get install chromium`);
  installExitHook();
  mkdirSync(o.workDir, { recursive: true });
  let n = 1;
  while (readText(join(o.workDir, `chromium-${n}.cmdline`)) !== '') n++;
  const base = join(o.workDir, `chromium-${n}`);
  const userDataDir = `${base}.profile`;
  mkdirSync(join(userDataDir, 'Default'), { recursive: true });
  writeFileSync(join(userDataDir, 'Default', 'Preferences'), PREFERENCES_JSON);
  const netlogFile = `${base}.netlog.json`;
  const errFile = `${base}.stderr`;
  // The --dump-dom run's flags, with the DevTools endpoint instead of --dump-dom, starting on about:blank.
  const args = chromiumArgs({ url: o.url, spkiBase64: o.spkiBase64, userDataDir, netlogFile })
    .slice(0, -2)
    .map((a) => (a === '--net-log-capture-mode=Everything' ? `--net-log-capture-mode=${o.netlogMode ?? 'Default'}` : a));
  args.push('--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0', 'about:blank');
  writeFileSync(`${base}.cmdline`, [bin, ...args].map((a) => (/[\s*,]/.test(a) ? `'${a}'` : a)).join(' ') + '\n');
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) if (v !== undefined && k !== 'SSLKEYLOGFILE') env[k] = v;
  if (o.keylogFile !== undefined) env.SSLKEYLOGFILE = o.keylogFile;

  const errFd = openSync(errFile, 'w');
  const t0 = Date.now();
  const child = spawn(bin, args, { stdio: ['ignore', 'ignore', errFd], env, cwd: o.workDir, detached: true });
  closeSync(errFd);
  const pgid = child.pid;
  if (pgid !== undefined) liveGroups.add(pgid);
  let timedOut = false;
  let exitInfo: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.once('error', () => {
      if (child.pid === undefined) resolve({ code: null, signal: null });
    });
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  void exited.then((e) => (exitInfo = e));
  const deadline = t0 + o.timeoutMs;
  const hard = setTimeout(() => {
    timedOut = true;
    if (pgid !== undefined) killGroup(pgid, 'SIGKILL');
  }, o.timeoutMs);

  let value: unknown;
  let error: string | undefined;
  let cdp: Cdp | null = null;
  try {
    // DevToolsActivePort: "<port>\n<browser target path>"
    let endpoint: string | null = null;
    while (endpoint === null && Date.now() < deadline && exitInfo === null) {
      const lines = readText(join(userDataDir, 'DevToolsActivePort')).split('\n');
      if (/^\d+$/.test(lines[0] ?? '') && (lines[1] ?? '').startsWith('/devtools/')) endpoint = `ws://127.0.0.1:${lines[0]}${lines[1]}`;
      else await pause(50);
    }
    if (endpoint === null) throw new Error('Chromium did not open its DevTools endpoint');
    cdp = new Cdp(await openWebSocket(endpoint));
    const { targetId } = (await cdp.call('Target.createTarget', { url: o.url })) as { targetId: string };
    const { sessionId } = (await cdp.call('Target.attachToTarget', { targetId, flatten: true })) as { sessionId: string };
    const evaluate = async (expression: string, awaitPromise: boolean): Promise<unknown> => {
      const r = (await cdp!.call('Runtime.evaluate', { expression, awaitPromise, returnByValue: true }, sessionId)) as {
        result?: { value?: unknown };
        exceptionDetails?: { text?: string; exception?: { description?: string } };
      };
      if (r.exceptionDetails !== undefined) {
        throw new Error(`script: ${r.exceptionDetails.exception?.description ?? r.exceptionDetails.text ?? 'exception'}`);
      }
      return r.result?.value;
    };
    const want = JSON.stringify(new URL(o.url).href);
    let loaded = false;
    while (!loaded && Date.now() < deadline) {
      loaded = (await evaluate(`location.href === ${want} && document.readyState === 'complete'`, false)) === true;
      if (!loaded) await pause(50);
    }
    if (!loaded) throw new Error(`page ${o.url} did not load`);
    value = await evaluate(o.script, true);
    await cdp.call('Browser.close').catch(() => undefined);
  } catch (e) {
    error = timedOut ? `timed out after ${o.timeoutMs} ms` : (e as Error).message;
  }
  cdp?.close();
  // A clean Browser.close lets Chromium finish its net-log; give it a moment, then end the whole group.
  await Promise.race([exited, pause(3000)]);
  clearTimeout(hard);
  if (pgid !== undefined) {
    killGroup(pgid, 'SIGKILL');
    liveGroups.delete(pgid);
  }
  const exit = await Promise.race([exited, pause(2000).then(() => ({ code: null, signal: null }))]);
  const run: ChromiumScriptRun = {
    dom: '',
    netlog: parseNetlog(readText(netlogFile)),
    exitCode: exit.code,
    signal: exit.signal,
    timedOut,
    ms: Date.now() - t0,
    stderr: readText(errFile),
    netlogFile,
    value,
  };
  if (error !== undefined) run.error = error;
  if (o.keylogFile !== undefined) run.keylogFile = o.keylogFile;
  return run;
}
