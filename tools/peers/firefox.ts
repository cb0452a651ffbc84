// Firefox ESR (its HTTP/3 stack is neqo) as an HTTP/3 interop client: headless, driven over WebDriver BiDi, loopback only.
//
// runFirefox(options) refuses to run unless this process is in a private network namespace with only loopback
// (tools/peers/netns.ts: start the caller under netnsArgv). Then, per run:
//  * a fresh profile whose user.js switches off every background service (telemetry, updates, captive portal,
//    connectivity checks, safe browsing, normandy/nimbus, push, prefetch/speculative connections, remote settings,
//    which is pointed at a dummy loopback URL) and enables HTTP/3 with the alt-svc mapping for testing
//    ("HOST;h3=:PORT", forced), also when the trusted root is not a built-in one; network.http.http3.max_gso_segments
//    when asked (1 for a capture: tshark 4.0 cannot split GSO super-datagrams);
//  * the given certificate PEM trusted in the profile's NSS database (certutil);
//  * `firefox-esr --headless --remote-debugging-port 0 --profile DIR` with MOZ_DISABLE_NONLOCAL_CONNECTIONS=1 (it
//    ignores the remote-settings pref without it and tries Mozilla's servers) and MOZ_REMOTE_SETTINGS_DEVTOOLS=1 (a
//    release build honours services.settings.server only with it), HOME in the work directory, and SSLKEYLOGFILE
//    only when a key log is asked for;
//  * the BiDi driver (firefox-bidi.ts) as a child `node --experimental-websocket`: it loads the page until the page
//    itself came over h3 (the first load of a fresh profile goes over h2, or fails when the server has no TCP
//    listener, while the alt-svc store loads), evaluates the scripts in the page, and closes the browser;
//  * the profile is removed; Firefox runs in its own process group, which is ended by its id (never by name) if it
//    does not exit by itself. Everything is bounded by timeoutMs.
// Judge only requests whose nextHopProtocol is 'h3': the page helpers below report it per request, and the run
// reports the protocols of every entry in the page's performance timeline.
//
// Page helpers: fetchManyScript (N URLs at once on the page's connection: status, bytes, SHA-256, protocol),
// uploadScript (POST of N bytes of the video service's deterministic pattern, src/services/pattern.ts, with the
// response's JSON), downloadScript (GET, SHA-256 of the body against the x-content-sha256 header).

import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { accessSync, closeSync, constants, existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { findProgram, jsonLines, sleep, spawnBounded, waitFor, type ExitInfo } from '../process.js';
import { inPrivateNetns } from './netns.js';
import { loopbackOrigin } from './loopback.js';
import type { BidiEvent, BidiJob, BidiScript } from './firefox-bidi.js';

/** Debian's firefox-esr (a link to /usr/lib/firefox-esr/firefox-esr). */
export const FIREFOX_BIN = '/usr/bin/firefox-esr';
export const FIREFOX_HINT = 'not installed: apt-get install firefox-esr libnss3-tools';

/** Path of firefox-esr when installed and executable, else null. */
export function firefoxPath(): string | null {
  try {
    accessSync(FIREFOX_BIN, constants.X_OK);
    return FIREFOX_BIN;
  } catch {
    return findProgram('firefox-esr');
  }
}

/** NSS's certutil (Debian libnss3-tools), or null. */
export function certutilPath(): string | null {
  return findProgram('certutil');
}

/** Why runFirefox cannot run in this process (missing programs, not in a private network namespace), or null. */
export function firefoxUnavailable(): string | null {
  if (firefoxPath() === null || certutilPath() === null) return FIREFOX_HINT;
  if (!inPrivateNetns()) return 'not in a private network namespace (start the caller under netnsArgv, tools/peers/netns.ts)';
  return null;
}

// ---------------------------------------------------------------------------------------------------------------------
// Profile

export type PrefValue = boolean | number | string;

/** Remote settings go here: a loopback port nothing listens on (discard), so every attempt fails at once. */
export const DUMMY_SERVER = 'http://127.0.0.1:9/';

export interface FirefoxPrefOptions {
  /** Host of the alt-svc mapping (the page's host): 'localhost' or '127.0.0.1'. */
  host: string;
  /** UDP port of the HTTP/3 server. */
  h3Port: number;
  /** network.http.http3.max_gso_segments (1 when a capture must be dissected). */
  maxGsoSegments?: number;
  /** More prefs, applied last. */
  extra?: Readonly<Record<string, PrefValue>>;
}

/** The prefs of a run's user.js: background services off, HTTP/3 on and mapped to the server. */
export function firefoxPrefs(o: FirefoxPrefOptions): Record<string, PrefValue> {
  if (!Number.isInteger(o.h3Port) || o.h3Port < 1 || o.h3Port > 65535) throw new Error(`h3Port must be a port number, got ${o.h3Port}`);
  if (o.host !== 'localhost' && o.host !== '127.0.0.1') throw new Error(`the alt-svc mapping host must be localhost or 127.0.0.1, got ${o.host}`);
  const p: Record<string, PrefValue> = {
    // Telemetry and data reporting
    'toolkit.telemetry.enabled': false,
    'toolkit.telemetry.unified': false,
    'toolkit.telemetry.archive.enabled': false,
    'toolkit.telemetry.server': DUMMY_SERVER,
    'toolkit.telemetry.newProfilePing.enabled': false,
    'toolkit.telemetry.shutdownPingSender.enabled': false,
    'toolkit.telemetry.firstShutdownPing.enabled': false,
    'toolkit.telemetry.updatePing.enabled': false,
    'toolkit.telemetry.bhrPing.enabled': false,
    'datareporting.healthreport.uploadEnabled': false,
    'datareporting.policy.dataSubmissionEnabled': false,
    'datareporting.policy.firstRunURL': '',
    'browser.ping-centre.telemetry': false,
    'browser.newtabpage.activity-stream.telemetry': false,
    'browser.newtabpage.activity-stream.feeds.telemetry': false,
    'app.shield.optoutstudies.enabled': false,
    'breakpad.reportURL': '',
    'browser.tabs.crashReporting.sendReport': false,
    // Updates (application, add-ons, search engines, system add-ons, region)
    'app.update.auto': false,
    'app.update.disabledForTesting': true,
    'app.update.url': DUMMY_SERVER,
    'extensions.update.enabled': false,
    'extensions.update.autoUpdateDefault': false,
    'extensions.getAddons.cache.enabled': false,
    'extensions.systemAddon.update.enabled': false,
    'extensions.systemAddon.update.url': DUMMY_SERVER,
    'extensions.blocklist.enabled': false,
    'browser.search.update': false,
    'browser.region.update.enabled': false,
    'browser.region.network.url': '',
    'media.gmp-manager.url': DUMMY_SERVER,
    'media.gmp-gmpopenh264.enabled': false,
    'media.gmp-widevinecdm.enabled': false,
    // Captive portal and connectivity checks
    'network.captive-portal-service.enabled': false,
    'captivedetect.canonicalURL': '',
    'network.connectivity-service.enabled': false,
    // Safe browsing
    'browser.safebrowsing.malware.enabled': false,
    'browser.safebrowsing.phishing.enabled': false,
    'browser.safebrowsing.downloads.enabled': false,
    'browser.safebrowsing.downloads.remote.enabled': false,
    'browser.safebrowsing.blockedURIs.enabled': false,
    'browser.safebrowsing.provider.google4.updateURL': '',
    'browser.safebrowsing.provider.google4.gethashURL': '',
    'browser.safebrowsing.provider.mozilla.updateURL': '',
    'browser.safebrowsing.provider.mozilla.gethashURL': '',
    // Normandy, Nimbus experiments, recommendations
    'app.normandy.enabled': false,
    'app.normandy.api_url': '',
    'messaging-system.rsexperimentloader.enabled': false,
    'browser.discovery.enabled': false,
    'extensions.htmlaboutaddons.recommendations.enabled': false,
    'browser.newtabpage.enabled': false,
    'browser.newtabpage.activity-stream.feeds.topsites': false,
    'browser.topsites.contile.enabled': false,
    'browser.aboutwelcome.enabled': false,
    'browser.startup.page': 0,
    'browser.startup.homepage_override.mstone': 'ignore',
    'startup.homepage_welcome_url': '',
    'browser.shell.checkDefaultBrowser': false,
    'identity.fxaccounts.enabled': false,
    'geo.provider.network.url': '',
    // Push
    'dom.push.enabled': false,
    'dom.push.connection.enabled': false,
    'dom.push.serverURL': '',
    // Prefetch, predictor and speculative connections
    'network.prefetch-next': false,
    'network.dns.disablePrefetch': true,
    'network.predictor.enabled': false,
    'network.predictor.enable-prefetch': false,
    'network.http.speculative-parallel-limit': 0,
    'browser.urlbar.speculativeConnect.enabled': false,
    'browser.places.speculativeConnect.enabled': false,
    // Remote settings (also CRLite / intermediates), OCSP, DNS over HTTPS
    'services.settings.server': `${DUMMY_SERVER}v1`,
    'security.remote_settings.crlite_filters.enabled': false,
    'security.remote_settings.intermediates.enabled': false,
    'security.OCSP.enabled': 0,
    'network.trr.mode': 5,
    'doh-rollout.disable-heuristics': true,
    // HTTP/3
    'network.http.http3.enable': true,
    'network.http.http3.alt-svc-mapping-for-testing': `${o.host};h3=:${o.h3Port}`,
    'network.http.http3.force-use-alt-svc-mapping-for-testing': true,
    'network.http.http3.disable_when_third_party_roots_found': false,
    // Wait long for the QUIC handshake before racing a TCP connection: on a busy machine the default lets h2 win
    // the race, and the requests of that run never use HTTP/3.
    'network.http.http3.backup_timer_delay': 10_000,
  };
  if (o.maxGsoSegments !== undefined) {
    if (!Number.isInteger(o.maxGsoSegments) || o.maxGsoSegments < 1) throw new Error(`maxGsoSegments must be a whole number >= 1, got ${o.maxGsoSegments}`);
    p['network.http.http3.max_gso_segments'] = o.maxGsoSegments;
  }
  return { ...p, ...(o.extra ?? {}) };
}

/**
 * Prefs for Firefox's own receive windows (neqo's initial MAX_DATA and MAX_STREAM_DATA for the streams it opens;
 * it grows them as data arrives), e.g. windowPrefs(65536, 16384) for the small-window cases.
 */
export function windowPrefs(maxData: number, maxStreamData: number): Record<string, number> {
  for (const [name, v] of [['maxData', maxData], ['maxStreamData', maxStreamData]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`${name} must be a whole number of bytes >= 1, got ${v}`);
  }
  return { 'network.http.http3.max_data': maxData, 'network.http.http3.max_stream_data': maxStreamData };
}

/** user.js text for `prefs` (one user_pref line each). */
export function userJs(prefs: Readonly<Record<string, PrefValue>>): string {
  return Object.entries(prefs)
    .map(([k, v]) => `user_pref(${JSON.stringify(k)}, ${JSON.stringify(v)});`)
    .join('\n') + '\n';
}

/**
 * NSS trust flags for the certificate given to trust: "C,," (a trusted CA for TLS servers). That also works for a
 * self-signed server certificate with cA=false (the development certificate of `qsr up`): mozilla::pkix takes it as its
 * own trust anchor. "P,," (trusted peer) does not: Firefox answers MOZILLA_PKIX_ERROR_SELF_SIGNED_CERT.
 */
export const TRUST_FLAGS = 'C,,';

async function runCertutil(certutil: string, args: string[], workDir: string): Promise<void> {
  const c = spawnBounded({ name: 'certutil', cmd: certutil, args, workDir, timeoutMs: 20_000 });
  const exit = await c.exited;
  if (exit.code !== 0) throw new Error(`certutil ${args.join(' ')} failed (${JSON.stringify(exit)}): ${c.output().slice(-1000)}`);
}

/** Make a profile directory: user.js plus an NSS database that trusts `certPem`. */
export async function makeProfile(dir: string, prefs: Readonly<Record<string, PrefValue>>, certPem: string, workDir: string): Promise<void> {
  const certutil = certutilPath();
  if (certutil === null) throw new Error(FIREFOX_HINT);
  try {
    new X509Certificate(readFileSync(certPem));
  } catch (e) {
    throw new Error(`certPem ${certPem}: not a readable PEM certificate (${(e as Error).message})`);
  }
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'user.js'), userJs(prefs));
  await runCertutil(certutil, ['-N', '-d', `sql:${dir}`, '--empty-password'], workDir);
  await runCertutil(certutil, ['-A', '-d', `sql:${dir}`, '-n', 'qsr-interop', '-t', TRUST_FLAGS, '-i', certPem], workDir);
}

// ---------------------------------------------------------------------------------------------------------------------
// Running Firefox

export interface PageScript {
  name: string;
  /** A JavaScript expression evaluated in the page, evaluating to (a promise of) a JSON string (the helpers below). */
  expression: string;
  /** Limit for this script; default 60 s (and never past the run's timeout). */
  timeoutMs?: number;
}

export interface FirefoxOptions {
  /** Directory for the profile (removed afterwards unless keepProfile), logs and the driver's job file. */
  workDir: string;
  /** The page, https://localhost:PORT/... or https://127.0.0.1:PORT/...; the scripts run in it. */
  pageUrl: string;
  /** UDP port of the HTTP/3 server for the alt-svc mapping (default: the page's port). */
  h3Port?: number;
  /** PEM certificate to trust: the CA, or the server's self-signed certificate. */
  certPem: string;
  scripts?: PageScript[];
  /** Write Firefox's TLS secrets here (SSLKEYLOGFILE). */
  keylogFile?: string;
  /** network.http.http3.max_gso_segments: set 1 when a capture is judged. */
  maxGsoSegments?: number;
  /** Loads of the page until it comes over h3 (default 3). */
  maxLoads?: number;
  /** More prefs for user.js. */
  prefs?: Readonly<Record<string, PrefValue>>;
  /** MOZ_LOG modules, e.g. 'nsHttp:3,neqo_transport::*:3' (written to <workDir>/<run>.mozlog*). */
  mozLog?: string;
  /** Hard limit for the whole run; Firefox's process group gets SIGKILL after it. */
  timeoutMs: number;
  keepProfile?: boolean;
}

export interface FirefoxLoad {
  attempt: number;
  ok: boolean;
  error?: string;
  /** nextHopProtocol of the page document (null when the load failed). */
  protocol: string | null;
  /** [url, nextHopProtocol] of the document and the page's resources. */
  entries: [string, string][];
}

export interface FirefoxScriptResult {
  ok: boolean;
  /** The script's JSON value (when ok). */
  value?: unknown;
  error?: string;
  ms: number;
}

export interface FirefoxRun {
  /** True when the last page load came over h3 (then the scripts ran). */
  h3: boolean;
  loads: FirefoxLoad[];
  /** nextHopProtocol -> number of performance entries (document + resources) of the page after the scripts ran. */
  protocols: Record<string, number>;
  scripts: Record<string, FirefoxScriptResult>;
  browserVersion?: string;
  /** Why the driver gave up, when it did. */
  fatal?: string;
  /** Firefox's exit: code/signal; timedOut when the hard limit fired. */
  exit: ExitInfo;
  /** Firefox did not exit by itself after browser.close and its group was signalled. */
  killed: boolean;
  ms: number;
  /** Tail of Firefox's stderr. */
  stderr: string;
  /** Files of this run (stderr, driver output) start with this path. */
  logBase: string;
  keylogFile?: string;
}

/** Name of the script the adapter appends to count the protocols of the page's performance entries. */
const PROTOCOLS_SCRIPT = '__protocols';
const PROTOCOLS_EXPR =
  "JSON.stringify(performance.getEntriesByType('navigation').concat(performance.getEntriesByType('resource'))" +
  '.reduce((m, e) => { m[e.nextHopProtocol] = (m[e.nextHopProtocol] || 0) + 1; return m; }, {}))';

const driverJs = fileURLToPath(new URL('./firefox-bidi.js', import.meta.url));

/** argv for the driver: Node < 22 needs the flag for its WebSocket client. */
function driverArgs(jobFile: string): string[] {
  const major = Number(process.versions.node.split('.')[0]);
  return [...(major < 22 ? ['--experimental-websocket', '--no-warnings'] : []), driverJs, jobFile];
}

const liveGroups = new Set<number>();
let exitHookInstalled = false;

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

let runCounter = 0;

/**
 * Load a page in headless Firefox over HTTP/3 and run scripts in it. Throws before starting anything when not in a
 * private network namespace, for a non-loopback URL, or when Firefox or certutil is missing; after that it never
 * throws: what went wrong is in the result (fatal, loads, scripts[name].error, exit).
 */
export async function runFirefox(o: FirefoxOptions): Promise<FirefoxRun> {
  if (!inPrivateNetns()) {
    throw new Error('runFirefox: refusing to start Firefox outside a private network namespace (run the caller under netnsArgv, tools/peers/netns.ts)');
  }
  const { host, port } = loopbackOrigin(o.pageUrl);
  const bin = firefoxPath();
  if (bin === null || certutilPath() === null) throw new Error(FIREFOX_HINT);
  if (!existsSync(driverJs)) throw new Error(`${driverJs} is not built (npx tsc -p tsconfig.json)`);
  const t0 = Date.now();
  const deadline = t0 + o.timeoutMs;
  mkdirSync(o.workDir, { recursive: true });
  const base = join(o.workDir, `firefox-${process.pid}-${++runCounter}`);
  const profile = `${base}.profile`;
  const home = `${base}.home`;
  mkdirSync(home, { recursive: true });
  const prefs = firefoxPrefs({ host, h3Port: o.h3Port ?? port, maxGsoSegments: o.maxGsoSegments, extra: o.prefs });
  await makeProfile(profile, prefs, o.certPem, o.workDir);

  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (v === undefined || k === 'SSLKEYLOGFILE' || k.startsWith('MOZ_') || k === 'DISPLAY' || k === 'WAYLAND_DISPLAY') continue;
    env[k] = v;
  }
  Object.assign(env, {
    MOZ_DISABLE_NONLOCAL_CONNECTIONS: '1',
    MOZ_REMOTE_SETTINGS_DEVTOOLS: '1',
    MOZ_CRASHREPORTER_DISABLE: '1',
    MOZ_HEADLESS: '1',
    HOME: home,
    XDG_CACHE_HOME: join(home, '.cache'),
    XDG_CONFIG_HOME: join(home, '.config'),
  });
  if (o.keylogFile !== undefined) env.SSLKEYLOGFILE = o.keylogFile;
  if (o.mozLog !== undefined) {
    env.MOZ_LOG = o.mozLog;
    env.MOZ_LOG_FILE = `${base}.mozlog`;
  }
  const args = ['--headless', '--no-remote', '--remote-debugging-port', '0', '--profile', profile];
  writeFileSync(`${base}.cmdline`, [bin, ...args].join(' ') + '\n');
  const errFile = `${base}.stderr`;
  const outFd = openSync(`${base}.stdout`, 'w');
  const errFd = openSync(errFile, 'w');
  installExitHook();
  const child = spawn(bin, args, { stdio: ['ignore', outFd, errFd], env, cwd: o.workDir, detached: true });
  closeSync(outFd);
  closeSync(errFd);
  const pgid = child.pid;
  if (pgid !== undefined) liveGroups.add(pgid);

  let timedOut = false;
  const hard = setTimeout(() => {
    timedOut = true;
    if (pgid !== undefined) killGroup(pgid, 'SIGKILL');
  }, o.timeoutMs + 5000);
  const exited = new Promise<ExitInfo>((resolve) => {
    child.once('error', (e) => {
      if (child.pid === undefined) resolve({ code: null, signal: null, timedOut, spawnError: e.message });
    });
    child.once('exit', (code, signal) => resolve({ code, signal, timedOut }));
  });
  let firefoxGone = false;
  void exited.then(() => (firefoxGone = true));

  const run: FirefoxRun = {
    h3: false,
    loads: [],
    protocols: {},
    scripts: {},
    exit: { code: null, signal: null, timedOut: false },
    killed: false,
    ms: 0,
    stderr: '',
    logBase: base,
  };
  if (o.keylogFile !== undefined) run.keylogFile = o.keylogFile;
  try {
    let wsUrl: string | undefined;
    await waitFor(() => {
      wsUrl = /WebDriver BiDi listening on (ws:\/\/127\.0\.0\.1:\d+)/.exec(readText(errFile))?.[1];
      return wsUrl !== undefined || firefoxGone;
    }, Math.max(0, Math.min(30_000, deadline - Date.now())));
    if (wsUrl === undefined) {
      run.fatal = firefoxGone ? 'Firefox exited before its WebDriver BiDi endpoint was up' : 'no WebDriver BiDi endpoint within the time limit';
    } else {
      const scripts: BidiScript[] = (o.scripts ?? []).map((s) => ({ name: s.name, expression: s.expression, timeoutMs: s.timeoutMs ?? 60_000 }));
      scripts.push({ name: PROTOCOLS_SCRIPT, expression: PROTOCOLS_EXPR, timeoutMs: 10_000 });
      const job: BidiJob = { wsUrl, pageUrl: o.pageUrl, maxLoads: o.maxLoads ?? 3, scripts, deadline: deadline - 1000 };
      const jobFile = `${base}.job.json`;
      writeFileSync(jobFile, JSON.stringify(job));
      const driver = spawnBounded({
        name: `${base.slice(o.workDir.length + 1)}.driver`,
        cmd: process.execPath,
        args: driverArgs(jobFile),
        workDir: o.workDir,
        timeoutMs: Math.max(1000, deadline - Date.now() + 3000),
      });
      await driver.exited;
      for (const line of jsonLines(driver.stdout())) {
        const e = line as unknown as BidiEvent;
        if (e.event === 'session') run.browserVersion = e.browserVersion;
        else if (e.event === 'load') {
          const l: FirefoxLoad = { attempt: e.attempt, ok: e.ok, protocol: e.protocol, entries: e.entries };
          if (e.error !== undefined) l.error = e.error;
          run.loads.push(l);
          run.h3 = e.protocol === 'h3';
        } else if (e.event === 'script') {
          if (e.name === PROTOCOLS_SCRIPT) {
            if (e.ok) run.protocols = e.value as Record<string, number>;
            continue;
          }
          const r: FirefoxScriptResult = { ok: e.ok, ms: e.ms };
          if (e.ok) r.value = e.value;
          if (e.error !== undefined) r.error = e.error;
          run.scripts[e.name] = r;
        } else if (e.event === 'fatal') run.fatal = e.error;
      }
      if (run.loads.length === 0 && run.fatal === undefined) run.fatal = `the driver reported nothing: ${driver.stderr().slice(-1000)}`;
      else if (!run.h3 && run.fatal === undefined) {
        run.fatal = `the page did not come over h3 in ${run.loads.length} loads: ${run.loads.map((l) => l.error ?? l.protocol).join(', ')}`;
      }
    }
    // After browser.close Firefox exits by itself; give it a moment, then end its group.
    await Promise.race([exited, sleep(Math.max(0, Math.min(15_000, deadline + 3000 - Date.now())))]);
  } finally {
    if (!firefoxGone && pgid !== undefined) {
      run.killed = true;
      killGroup(pgid, 'SIGTERM');
      await Promise.race([exited, sleep(3000)]);
    }
    // Content processes may outlive the parent by a moment: end the whole group we created.
    if (pgid !== undefined) {
      killGroup(pgid, 'SIGKILL');
      liveGroups.delete(pgid);
    }
    clearTimeout(hard);
    run.exit = await Promise.race([exited, sleep(2000).then((): ExitInfo => ({ code: null, signal: null, timedOut }))]);
    run.ms = Date.now() - t0;
    run.stderr = readText(errFile).slice(-3000);
    if (o.keepProfile !== true) rmSync(profile, { recursive: true, force: true });
    rmSync(home, { recursive: true, force: true });
  }
  return run;
}

// ---------------------------------------------------------------------------------------------------------------------
// Page-side helpers. The functions below are serialised with Function.prototype.toString and evaluated in the page:
// they use only their arguments and the page's globals. pageLib builds the helpers they share; every request has a
// deadline (AbortController) and its body is read chunk by chunk, so a stalled response is reported with how many
// bytes had arrived instead of hanging the script.

/** What a page script sees of the browser globals (only the parts used here). */
interface PageGlobals {
  fetch(url: string, init?: { method?: string; body?: Uint8Array; cache?: string; headers?: Record<string, string>; signal?: unknown }): Promise<PageResponse>;
  crypto: { subtle: { digest(alg: string, data: ArrayBuffer | Uint8Array): Promise<ArrayBuffer> } };
  performance: {
    now(): number;
    clearResourceTimings(): void;
    setResourceTimingBufferSize(n: number): void;
    getEntriesByName(name: string): { nextHopProtocol: string }[];
  };
  location: { href: string };
  URL: typeof URL;
  AbortController: new () => { signal: { aborted: boolean }; abort(): void };
  TextDecoder: typeof TextDecoder;
  setTimeout(fn: () => void, ms: number): number;
  clearTimeout(id: number): void;
}

interface PageResponse {
  status: number;
  headers: { get(name: string): string | null };
  body: { getReader(): { read(): Promise<{ done: boolean; value?: Uint8Array }> } } | null;
}

interface PageFetched {
  status: number;
  headers: PageResponse['headers'] | null;
  /** The whole body, or null when the request failed or timed out. */
  body: Uint8Array | null;
  /** Body bytes received (also when it failed part way). */
  bytes: number;
  /** Page time from the request to the end of the body. */
  ms: number;
  error?: string;
}

interface PageLib {
  hex(b: ArrayBuffer): string;
  sha256(b: Uint8Array): Promise<string>;
  request(url: string, init: { method?: string; body?: Uint8Array; headers?: Record<string, string> }, timeoutMs: number): Promise<PageFetched>;
  /** nextHopProtocol of the last timing entry of `url` ('' when there is none). */
  protocolOf(url: string): string;
  performance: PageGlobals['performance'];
}

function pageLib(): PageLib {
  const g = globalThis as unknown as PageGlobals;
  const hex = (b: ArrayBuffer): string => Array.from(new Uint8Array(b), (x) => x.toString(16).padStart(2, '0')).join('');
  const request = async (url: string, init: { method?: string; body?: Uint8Array; headers?: Record<string, string> }, timeoutMs: number): Promise<PageFetched> => {
    const ac = new g.AbortController();
    const timer = g.setTimeout(() => ac.abort(), timeoutMs);
    const t0 = g.performance.now();
    const out: PageFetched = { status: 0, headers: null, body: null, bytes: 0, ms: 0 };
    try {
      const r = await g.fetch(url, { ...init, cache: 'no-store', signal: ac.signal });
      out.status = r.status;
      out.headers = r.headers;
      const chunks: Uint8Array[] = [];
      if (r.body !== null) {
        const reader = r.body.getReader();
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          if (value !== undefined) {
            chunks.push(value);
            out.bytes += value.byteLength;
          }
        }
      }
      const body = new Uint8Array(out.bytes);
      let off = 0;
      for (const c of chunks) {
        body.set(c, off);
        off += c.byteLength;
      }
      out.body = body;
    } catch (e) {
      out.error = ac.signal.aborted ? `no complete response within ${timeoutMs} ms (status ${out.status}, ${out.bytes} body bytes received)` : String(e);
    } finally {
      g.clearTimeout(timer);
      out.ms = g.performance.now() - t0;
    }
    return out;
  };
  const protocolOf = (url: string): string => {
    const entries = g.performance.getEntriesByName(new g.URL(url, g.location.href).href);
    return entries.length > 0 ? entries[entries.length - 1]!.nextHopProtocol : '';
  };
  return { hex, sha256: async (b) => hex(await g.crypto.subtle.digest('SHA-256', b)), request, protocolOf, performance: g.performance };
}

export interface FetchResult {
  url: string;
  status: number;
  /** Body bytes received (all of them when there is no error). */
  bytes: number;
  /** SHA-256 of the body (hex); '' when hashing was off or the body is incomplete. */
  sha256: string;
  /** nextHopProtocol of this request ('' when the browser recorded no timing entry). */
  protocol: string;
  error?: string;
}

export interface FetchManyValue {
  results: FetchResult[];
  /** Wall time in the page from the first request to the last body (informational). */
  ms: number;
}

async function pageFetchMany(arg: { urls: string[]; hash: boolean; timeoutMs: number }, lib: PageLib): Promise<string> {
  lib.performance.clearResourceTimings();
  lib.performance.setResourceTimingBufferSize(arg.urls.length + 100);
  const t0 = lib.performance.now();
  const results: FetchResult[] = await Promise.all(
    arg.urls.map(async (url) => {
      const f = await lib.request(url, {}, arg.timeoutMs);
      const sha256 = arg.hash && f.body !== null ? await lib.sha256(f.body) : '';
      const r: FetchResult = { url, status: f.status, bytes: f.bytes, sha256, protocol: '' };
      if (f.error !== undefined) r.error = f.error;
      return r;
    }),
  );
  const ms = lib.performance.now() - t0;
  for (const r of results) r.protocol = lib.protocolOf(r.url);
  return JSON.stringify({ results, ms });
}

export interface UploadValue {
  status: number;
  protocol: string;
  bytes: number;
  /** SHA-256 (hex) of the body the page sent. */
  sentSha256: string;
  /** The response body, parsed as JSON when it is JSON, else the text. */
  response: unknown;
  /** Page time from the start of the request to the end of the response (not the body generation or hashing). */
  ms: number;
  error?: string;
}

async function pageUpload(arg: { url: string; bytes: number; timeoutMs: number }, lib: PageLib): Promise<string> {
  // The pattern of src/services/pattern.ts: 64 KiB blocks of a base pattern, block k stamped with k (u64 LE).
  const BLOCK = 65536;
  const basePattern = new Uint8Array(BLOCK);
  for (let i = 0; i < BLOCK; i++) basePattern[i] = (i * 251 + (i >>> 8) * 13 + 7) & 0xff;
  const body = new Uint8Array(arg.bytes);
  for (let off = 0, k = 0; off < arg.bytes; off += BLOCK, k++) {
    const len = Math.min(BLOCK, arg.bytes - off);
    body.set(len === BLOCK ? basePattern : basePattern.subarray(0, len), off);
    for (let j = 0; j < 8 && j < len; j++) body[off + j] = Math.floor(k / 2 ** (8 * j)) % 256;
  }
  const sentSha256 = await lib.sha256(body);
  lib.performance.clearResourceTimings();
  const f = await lib.request(arg.url, { method: 'POST', body, headers: { 'content-type': 'application/octet-stream' } }, arg.timeoutMs);
  const text = f.body === null ? '' : new TextDecoder().decode(f.body);
  let response: unknown = f.body === null ? null : text;
  try {
    response = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  const v: UploadValue = { status: f.status, protocol: lib.protocolOf(arg.url), bytes: arg.bytes, sentSha256, response, ms: f.ms };
  if (f.error !== undefined) v.error = f.error;
  return JSON.stringify(v);
}

export interface DownloadValue {
  status: number;
  protocol: string;
  /** Body bytes received. */
  bytes: number;
  /** SHA-256 (hex) of the body as received ('' when incomplete). */
  sha256: string;
  /** The x-content-sha256 response header (null when absent). */
  headerSha256: string | null;
  /** sha256 === headerSha256, checked in the page. */
  match: boolean;
  /** Page time from the start of the request to the end of the body (not the hashing). */
  ms: number;
  error?: string;
}

async function pageDownload(arg: { url: string; timeoutMs: number }, lib: PageLib): Promise<string> {
  lib.performance.clearResourceTimings();
  const f = await lib.request(arg.url, {}, arg.timeoutMs);
  const sha256 = f.body === null ? '' : await lib.sha256(f.body);
  const headerSha256 = f.headers?.get('x-content-sha256') ?? null;
  const v: DownloadValue = { status: f.status, protocol: lib.protocolOf(arg.url), bytes: f.bytes, sha256, headerSha256, match: sha256 !== '' && sha256 === headerSha256, ms: f.ms };
  if (f.error !== undefined) v.error = f.error;
  return JSON.stringify(v);
}

/** `(fn)(arg, (pageLib)())` as an expression for script.evaluate. */
function call<A>(fn: (arg: A, lib: PageLib) => Promise<string>, arg: A): string {
  return `(${fn.toString()})(${JSON.stringify(arg)}, (${pageLib.toString()})())`;
}

/** Page-side deadline of the helpers' requests: a little less than a script's default limit, so the page answers first. */
export const PAGE_REQUEST_TIMEOUT_MS = 50_000;

/**
 * Fetch all `urls` at once (relative to the page: same origin, so on the page's connection); value: FetchManyValue.
 * Each request gives up after timeoutMs (default PAGE_REQUEST_TIMEOUT_MS) with what it had received.
 */
export function fetchManyScript(urls: readonly string[], o: { hash?: boolean; timeoutMs?: number } = {}): string {
  return call(pageFetchMany, { urls: [...urls], hash: o.hash !== false, timeoutMs: o.timeoutMs ?? PAGE_REQUEST_TIMEOUT_MS });
}

/** POST `bytes` bytes of the pattern (src/services/pattern.ts) to `url`; value: UploadValue. */
export function uploadScript(url: string, bytes: number, o: { timeoutMs?: number } = {}): string {
  if (!Number.isInteger(bytes) || bytes < 0) throw new Error(`upload size must be a whole number of bytes, got ${bytes}`);
  return call(pageUpload, { url, bytes, timeoutMs: o.timeoutMs ?? PAGE_REQUEST_TIMEOUT_MS });
}

/** GET `url` and hash the body against x-content-sha256; value: DownloadValue. */
export function downloadScript(url: string, o: { timeoutMs?: number } = {}): string {
  return call(pageDownload, { url, timeoutMs: o.timeoutMs ?? PAGE_REQUEST_TIMEOUT_MS });
}
