// Interop helper: a tiny HTTP/3 upload sink on our Http3Server (src/h3/server.ts), for the "upload [gtlsclient->ours]"
// case. `qsr serve` answers POST with 405, so this answers any POST with the text "<bytes> <sha256hex>\n" computed
// over the request body it received (RFC 9114 §4.1: request body = the DATA frames' payloads); other methods get 405.
//
//   node dist/test/interop/h3-upload-server.js --listen ADDR:PORT --cert F --key F [--keylog F] [--max-datagram N]
//
// Prints JSON lines on stdout (the ours.ts contract): {"event":"listening","addr":..,"port":..} once bound, then
// {"event":"request","method":..,"path":..,"streamId":..,"bytes":..,"sha256":..} per finished request body.
// Exits on SIGTERM/SIGINT after a graceful close. Without arguments it does nothing (`node --test dist/test/` runs
// every .js file under test/).

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Http3Server, type Http3Request, type Http3Response } from '../../src/h3/server.js';
import { keyLogSink } from '../../src/obs/keylog.js';
import { loadPemChain, loadPrivateKey } from '../../src/quic/tls/pem.js';
import { parseHostPort } from '../../src/cli/args.js';

function emit(ev: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(ev) + '\n');
}

interface Flags {
  listen: string;
  cert: string;
  key: string;
  keylog?: string;
  maxDatagram?: number;
}

function parseFlags(argv: readonly string[]): Flags {
  const v: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    const m = /^--(listen|cert|key|keylog|max-datagram)(?:=(.*))?$/.exec(a);
    if (m === null) throw new Error(`unknown argument ${a}`);
    const val = m[2] ?? argv[++i];
    if (val === undefined) throw new Error(`${a} needs a value`);
    v[m[1]!] = val;
  }
  for (const req of ['listen', 'cert', 'key']) if (v[req] === undefined) throw new Error(`--${req} is required`);
  return {
    listen: v.listen!,
    cert: v.cert!,
    key: v.key!,
    keylog: v.keylog,
    maxDatagram: v['max-datagram'] !== undefined ? Number(v['max-datagram']) : undefined,
  };
}

function onRequest(req: Http3Request, res: Http3Response): void {
  if (req.method !== 'POST') {
    req.resume();
    res.respond(405, { allow: 'POST', 'content-type': 'text/plain' });
    res.end('POST only\n');
    return;
  }
  const h = createHash('sha256');
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    bytes += chunk.length;
    h.update(chunk);
  });
  req.on('error', () => {
    if (!res.destroyed) res.reset();
  });
  req.on('end', () => {
    const sha256 = h.digest('hex');
    emit({ event: 'request', method: req.method, path: req.path, streamId: req.streamId, bytes, sha256 });
    const body = `${bytes} ${sha256}\n`;
    res.respond(200, { 'content-type': 'text/plain', 'content-length': String(body.length) });
    res.end(body);
  });
}

async function main(argv: readonly string[]): Promise<void> {
  const f = parseFlags(argv);
  const addr = parseHostPort('--listen', f.listen);
  const server = await Http3Server.listen(
    {
      listen: [addr],
      certChain: loadPemChain(readFileSync(f.cert, 'utf8')),
      privateKey: loadPrivateKey(readFileSync(f.key, 'utf8')),
      keyLog: keyLogSink(f.keylog),
      quic: f.maxDatagram !== undefined ? { maxDatagramSize: f.maxDatagram } : undefined,
    },
    onRequest,
  );
  server.on('error', (e: Error) => emit({ event: 'error', message: e.message }));
  const bound = server.addresses()[0] ?? addr;
  emit({ event: 'listening', addr: bound.address, port: bound.port });
  let stopping = false;
  const stop = (): void => {
    if (stopping) process.exit(1);
    stopping = true;
    server.close({ drainMs: 1000 }).then(
      () => process.exit(0),
      () => process.exit(1),
    );
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

const args = process.argv.slice(2);
if (args.length > 0) {
  main(args).catch((e: unknown) => {
    emit({ event: 'error', message: e instanceof Error ? e.message : String(e) });
    process.exit(2);
  });
}
