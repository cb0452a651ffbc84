/**
 * `qsr serve`: static files over HTTP/3 (RFC 9114 §4: one request per bidirectional stream). The handler and its
 * cache are the library's (src/services/static.ts); this file is the command: flags, TLS material (given, or the
 * development certificate), the Http3Server, access log lines, graceful shutdown on SIGINT/SIGTERM.
 */
import { readFileSync, realpathSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate, type KeyObject } from 'node:crypto';
// Type-only: the HTTP/3 server is loaded when the command runs.
import type { Http3Server, Http3Request, Http3Response } from '../h3/server.js';
import { keyLogSink } from '../obs/keylog.js';
import { qlogTracer } from '../obs/qlog.js';
import { cryptoBackend } from '../quic/crypto/backend.js';
import { loadPemChain, loadPrivateKey } from '../quic/tls/pem.js';
import { UsageError, parseHostPort, parseSuites } from './args.js';
import { ensureDevCert } from '../io/devcert.js';
import { staticHandler } from '../services/static.js';

export interface ServeOptions {
  dir: string;
  /** HOST:PORT, repeatable; default 127.0.0.1:4433 and [::1]:4433. */
  listen?: string[];
  cert?: string;
  key?: string;
  keylog?: string;
  qlog?: string;
  /** Where the development certificate lives (DIR/certs); default ./.qsr. */
  dataDir?: string;
  /** TLS 1.3 suites to accept, comma-separated, in order of preference (default: all three). */
  ciphers?: string;
}

const DEFAULT_LISTEN = ['127.0.0.1:4433', '[::1]:4433'];

function log(line: string): void {
  process.stderr.write(line + '\n');
}

let pendingLog = '';

/** Access lines are written once per event-loop turn: one write(2) for a burst of requests, not one each. */
function accessLine(line: string): void {
  if (!pendingLog) {
    setImmediate(() => {
      const out = pendingLog;
      pendingLog = '';
      process.stderr.write(out);
    });
  }
  pendingLog += line + '\n';
}

function readFlagFile(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag}: cannot read '${path}': ${(err as Error).message}`);
  }
}

/** Certificate chain and key from --cert/--key, checked against each other, or the development certificate. */
async function tlsMaterial(o: ServeOptions): Promise<{ certChain: Buffer[]; privateKey: KeyObject }> {
  if (!!o.cert !== !!o.key) throw new UsageError(o.cert ? '--cert needs --key' : '--key needs --cert');
  let certPath = o.cert;
  let keyPath = o.key;
  if (!certPath || !keyPath) {
    const dir = join(o.dataDir ?? '.qsr', 'certs');
    const dc = await ensureDevCert(dir);
    log(`qsr serve: ${dc.created ? 'created' : 'using'} development certificate ${dc.certPath} (localhost, 127.0.0.1, ::1; valid until ${dc.notAfter.toISOString().slice(0, 10)})`);
    log(`qsr serve: trust it with --ca ${dc.certPath}; Chromium: --ignore-certificate-errors-spki-list=${dc.spkiSha256}`);
    certPath = dc.certPath;
    keyPath = dc.keyPath;
  }
  let certChain: Buffer[];
  try {
    certChain = loadPemChain(readFlagFile('--cert', certPath));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--cert: '${certPath}': ${(e as Error).message}`);
  }
  let privateKey: KeyObject;
  try {
    privateKey = loadPrivateKey(readFlagFile('--key', keyPath));
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`--key: '${keyPath}': ${(e as Error).message}`);
  }
  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(certChain[0]);
  } catch (e) {
    throw new UsageError(`--cert: '${certPath}': ${(e as Error).message}`);
  }
  if (!leaf.checkPrivateKey(privateKey)) throw new UsageError(`--key: '${keyPath}' does not belong to the certificate in '${certPath}'`);
  return { certChain, privateKey };
}

function formatAddress(a: { address: string; port: number }): string {
  return a.address.includes(':') ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

function isAddressUnavailable(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EADDRNOTAVAIL' || code === 'EAFNOSUPPORT';
}

/** `qsr serve`: runs until SIGINT/SIGTERM, then drains for up to 5 s and resolves. */
export async function runServe(o: ServeOptions): Promise<void> {
  let isDir = false;
  try {
    isDir = statSync(o.dir).isDirectory();
  } catch (e) {
    throw new UsageError(`--dir: cannot use '${o.dir}': ${(e as Error).message}`);
  }
  if (!isDir) throw new UsageError(`--dir: '${o.dir}' is not a directory`);
  const explicit = o.listen !== undefined && o.listen.length > 0;
  const listen = (explicit ? (o.listen as string[]) : DEFAULT_LISTEN).map((v) => parseHostPort('--listen', v));
  const tls = await tlsMaterial(o);
  const cipherSuites = parseSuites('--ciphers', o.ciphers);
  const handler = staticHandler(o.dir, {
    onDone: (e) => accessLine(`${e.method} ${e.path} ${e.status || '-'} ${e.bytes} ${e.ms.toFixed(1)}ms`),
  });
  const onRequest = (req: Http3Request, res: Http3Response): void => handler(req, res);
  const { Http3Server: Server } = await import('../h3/server.js');
  const start = (addrs: { address: string; port: number }[]): Promise<Http3Server> =>
    Server.listen({ listen: addrs, ...tls, keyLog: keyLogSink(o.keylog), trace: qlogTracer(o.qlog), quic: cipherSuites ? { cipherSuites } : undefined }, onRequest);

  let server: Http3Server;
  try {
    server = await start(listen);
  } catch (e) {
    // The default includes ::1; a host without IPv6 still serves on 127.0.0.1.
    if (explicit || !isAddressUnavailable(e)) throw e;
    log(`qsr serve: [::1] is not available (${(e as Error).message}); IPv4 only`);
    server = await start(listen.filter((a) => !a.address.includes(':')));
  }
  server.on('error', (e: Error) => log(`qsr serve: error: ${e.message}`));
  const root = realpathSync(o.dir);
  for (const a of server.addresses()) log(`qsr serve: serving ${root} on https://${formatAddress(a)}/ (HTTP/3)`);
  log(`qsr serve: packet protection: ${cryptoBackend().description}`);

  await new Promise<void>((resolveStop) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) {
        log(`qsr serve: ${signal} again, exiting without waiting`);
        process.exit(1);
      }
      stopping = true;
      log(`qsr serve: ${signal}, closing (draining for up to 5 s)`);
      server.close({ drainMs: 5000 }).then(resolveStop, (e: Error) => {
        log(`qsr serve: close: ${e.message}`);
        resolveStop();
      });
    };
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGTERM', () => stop('SIGTERM'));
  });
}
