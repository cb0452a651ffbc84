/**
 * `qsr quic-listen` and `qsr quic-connect`: QUIC-level probes that print one JSON event per line (handshake,
 * peer stream data, key updates, close). They exercise the transport against any QUIC peer before HTTP/3 is
 * involved, and are what the interop matrix runs on our side.
 */
import { readFileSync } from 'node:fs';
import { lookup } from 'node:dns/promises';
import { UdpEndpoint, type QuicConnection } from '../io/udp.js';
import { keyLogSink } from '../obs/keylog.js';
import { qlogTracer } from '../obs/qlog.js';
import { loadPemChain, loadPrivateKey } from '../quic/tls/pem.js';
import type { Group } from '../quic/tls/tls.js';
import { UsageError, parseHostPort, parseHttpsUrl, parseSuites } from './args.js';

function emit(event: string, fields: Record<string, unknown> = {}): void {
  process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

export function parseGroups(flag: string, list: string | undefined): Group[] | undefined {
  if (!list) return undefined;
  return list.split(',').map((g) => {
    if (g !== 'x25519' && g !== 'secp256r1') throw new UsageError(`${flag}: unknown group '${g}' (x25519, secp256r1)`);
    return g;
  });
}

function readFile(flag: string, path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (err) {
    throw new UsageError(`${flag}: cannot read '${path}': ${(err as Error).message}`);
  }
}

/** Prints a connection's events; `peer_stream_data` for every chunk on streams the peer opened. */
function watch(c: QuicConnection): Promise<void> {
  c.on('ready', (e: { alpn: string; cipher: string }) => emit('handshake', { alpn: e.alpn, cipher: e.cipher, remote: c.remoteAddress }));
  c.on('keyupdate', (e: { generation: number; initiatedBy: string }) =>
    emit('key_update', { keyPhase: e.generation % 2, generation: e.generation, initiator: e.initiatedBy }),
  );
  c.on('stream', (s) => {
    let offset = 0;
    s.on('data', (d: Buffer) => {
      emit('peer_stream_data', { streamId: s.id, offset, length: d.length, fin: false, headHex: d.subarray(0, 16).toString('hex') });
      offset += d.length;
    });
    s.on('end', () => emit('peer_stream_fin', { streamId: s.id, length: offset }));
    s.on('error', () => {});
  });
  return new Promise((resolve) =>
    c.on('close', (i: { code: number; reason: string; by: string; application: boolean }) => {
      emit('closed', { errorCode: i.code, application: i.application, reason: i.reason, byPeer: i.by === 'peer', by: i.by });
      resolve();
    }),
  );
}

export interface ListenOptions {
  listen: string;
  cert: string;
  key: string;
  alpn: string;
  keylog?: string;
  qlog?: string;
  ciphers?: string;
  groups?: string;
}

export async function quicListen(o: ListenOptions): Promise<void> {
  const addr = parseHostPort('--listen', o.listen);
  const certChain = loadPemChain(readFile('--cert', o.cert));
  let privateKey;
  try {
    privateKey = loadPrivateKey(readFile('--key', o.key));
  } catch (err) {
    throw new UsageError(`--key: ${(err as Error).message}`);
  }
  const ep = await UdpEndpoint.open({
    bind: [addr],
    trace: qlogTracer(o.qlog),
    server: {
      alpn: o.alpn.split(','),
      certChain,
      privateKey,
      keyLog: keyLogSink(o.keylog),
      cipherSuites: parseSuites('--ciphers', o.ciphers),
      groups: parseGroups('--groups', o.groups),
    },
  });
  const a = ep.address();
  emit('listening', { addr: a.address, port: a.port, recvBuffer: ep.recvBufferSizes[0] });
  ep.on('connection', (c: QuicConnection) => void watch(c));
  await new Promise<void>((resolve) => {
    const stop = (): void => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await ep.close(0x100, 'shutting down', 1000);
}

export interface ConnectOptions {
  alpn: string;
  ca?: string;
  insecure?: boolean;
  serverName?: string;
  keylog?: string;
  qlog?: string;
  ciphers?: string;
  groups?: string;
  keyUpdateAfter?: number;
  duration: number;
  h3Control?: boolean;
  /** ms; default 10 000. */
  handshakeTimeout?: number;
}

export async function quicConnect(target: string, o: ConnectOptions): Promise<number> {
  const { host, port } = parseHttpsUrl('URL', target);
  const address = /^[\d.]+$|:/.test(host) ? host : (await lookup(host)).address;
  if (o.insecure && o.ca) throw new UsageError('--insecure and --ca exclude each other');
  const ep = await UdpEndpoint.open({ bind: [{ address: address.includes(':') ? '::' : '0.0.0.0', port: 0 }], trace: qlogTracer(o.qlog) });
  const c = ep.connect(
    {
      alpn: o.alpn.split(','),
      serverName: o.serverName ?? host,
      ca: o.ca ? loadPemChain(readFile('--ca', o.ca)) : undefined,
      insecure: o.insecure,
      keyLog: keyLogSink(o.keylog),
      cipherSuites: parseSuites('--ciphers', o.ciphers),
      groups: parseGroups('--groups', o.groups),
      handshakeTimeout: o.handshakeTimeout ?? 10_000,
    },
    { address, port },
  );
  const closed = watch(c);
  let failed = false;
  try {
    // The connection gives up by itself after --handshake-timeout; ready then rejects with the reason.
    await c.ready;
    if (o.h3Control) {
      // A minimal HTTP/3 control stream (type 0x00, empty SETTINGS) so an HTTP/3 peer sees a well-behaved client.
      const s = await c.openStream(false);
      s.on('error', () => {});
      s.write(Buffer.from([0x00, 0x04, 0x00]));
    }
    if (o.keyUpdateAfter !== undefined) {
      setTimeout(() => {
        const ok = c.keyUpdate();
        if (!ok) emit('error', { message: 'key update not possible yet' });
      }, o.keyUpdateAfter);
    }
    await Promise.race([closed, new Promise((r) => setTimeout(r, o.duration).unref())]);
  } catch (err) {
    failed = true;
    emit('error', { message: (err as Error).message });
  }
  c.close(o.h3Control ? 0x100 : 0, '');
  await Promise.race([closed, new Promise((r) => setTimeout(r, 500).unref())]);
  await ep.close();
  return failed || (c.closeInfo && c.closeInfo.by !== 'local' && c.closeInfo.code !== 0 && c.closeInfo.code !== 0x100) ? 1 : 0;
}
