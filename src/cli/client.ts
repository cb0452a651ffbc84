/**
 * `qsr client`: sends sample traffic to all three services at once over ONE QUIC connection through the router,
 * N streams spread over the routes, and prints a table (stream, method, path, status, service, bytes up/down, ms).
 * Exit 1 when any stream failed.
 */
import { readFileSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { Http3Client } from '../h3/client.js';
import { keyLogSink } from '../obs/keylog.js';
import { qlogTracer } from '../obs/qlog.js';
import { loadPemChain } from '../quic/tls/pem.js';
import { UsageError, parseHttpsUrl, parseIntFlag } from './args.js';

export interface ClientOptions {
  url: string;
  streams: string;
  size: string;
  keylog?: string;
  qlog?: string;
  insecure?: boolean;
  ca?: string;
  json?: boolean;
  serverName?: string;
  /** ms; default 10 000. */
  handshakeTimeout?: number;
}

interface Job {
  method: string;
  path: string;
  body: Buffer | null;
  check?: (status: number, body: Buffer) => string | null;
}

export interface StreamResult {
  streamId: number | null;
  method: string;
  path: string;
  status: number | null;
  service: string | null;
  bytesUp: number;
  bytesDown: number;
  ms: number;
  error: string | null;
}

/** The sample requests: round-robin over video upload, text transformation and control commands. */
export function plan(streams: number, size: number): Job[] {
  const jobs: Job[] = [];
  for (let i = 0; i < streams; i++) {
    switch (i % 3) {
      case 0: {
        const body = randomBytes(size);
        const sha = createHash('sha256').update(body).digest('hex');
        jobs.push({
          method: 'POST',
          path: '/video',
          body,
          check: (st, b) => {
            if (st !== 200) return null;
            const j = JSON.parse(b.toString()) as { bytes?: number; sha256?: string };
            return j.sha256 === sha && j.bytes === size ? null : `video service saw ${j.bytes} bytes / ${j.sha256}, sent ${size} / ${sha}`;
          },
        });
        break;
      }
      case 1: {
        const text = `stream ${i}: the quick brown fox jumps over the lazy dog\n`.repeat(Math.max(1, Math.floor(size / 60)));
        jobs.push({
          method: 'POST',
          path: '/text',
          body: Buffer.from(text),
          check: (st, b) => {
            if (st !== 200) return null;
            const j = JSON.parse(b.toString()) as { chars?: number };
            return j.chars === text.length ? null : `text service counted ${j.chars} chars, sent ${text.length}`;
          },
        });
        break;
      }
      default:
        jobs.push(
          i % 2 === 0
            ? { method: 'POST', path: '/control', body: Buffer.from(JSON.stringify({ command: 'set', key: `k${i}`, value: i })) }
            : { method: 'POST', path: '/control', body: Buffer.from(JSON.stringify({ command: 'ping' })) },
        );
    }
  }
  return jobs;
}

export async function runClient(o: ClientOptions): Promise<number> {
  const streams = parseIntFlag('--streams', o.streams, 1, 10_000);
  const size = parseIntFlag('--size', o.size, 0, 1024 * 1024 * 1024);
  const { host, url } = parseHttpsUrl('--url', o.url);
  if (o.insecure && o.ca) throw new UsageError('--insecure and --ca exclude each other');
  let ca: Buffer[] | undefined;
  if (o.ca) {
    try {
      ca = loadPemChain(readFileSync(o.ca, 'utf8'));
    } catch (err) {
      throw new UsageError(`--ca: cannot read '${o.ca}': ${(err as Error).message}`);
    }
  }
  const t0 = performance.now();
  let client: Http3Client;
  try {
    client = await Http3Client.connect(url.origin, {
      ca,
      insecure: o.insecure,
      serverName: o.serverName ?? host,
      keyLog: keyLogSink(o.keylog),
      trace: qlogTracer(o.qlog),
      handshakeTimeout: o.handshakeTimeout,
    });
  } catch (err) {
    process.stderr.write(`qsr client: cannot connect to ${url.origin}: ${(err as Error).message}\n`);
    return 1;
  }
  const jobs = plan(streams, size);
  const results = await Promise.all(
    jobs.map(async (job): Promise<StreamResult> => {
      const start = performance.now();
      const r: StreamResult = {
        streamId: null,
        method: job.method,
        path: job.path,
        status: null,
        service: null,
        bytesUp: job.body?.length ?? 0,
        bytesDown: 0,
        ms: 0,
        error: null,
      };
      try {
        const res = await client.request(job.path, {
          method: job.method,
          body: job.body ?? undefined,
          headers: job.body ? { 'content-type': job.path === '/control' ? 'application/json' : 'application/octet-stream' } : undefined,
        });
        r.streamId = res.streamId;
        r.status = res.status;
        r.service = res.headers.find(([n]) => n === 'x-service')?.[1] ?? null;
        const chunks: Buffer[] = [];
        for await (const c of res.body) {
          r.bytesDown += (c as Buffer).length;
          if (chunks.length < 64) chunks.push(c as Buffer);
        }
        if (res.status >= 400) r.error = `status ${res.status}`;
        else r.error = job.check?.(res.status, Buffer.concat(chunks)) ?? null;
      } catch (err) {
        r.error = (err as Error).message;
      }
      r.ms = Math.round((performance.now() - start) * 10) / 10;
      return r;
    }),
  );
  await client.close();
  const wallMs = performance.now() - t0;
  const failed = results.filter((r) => r.error);
  if (o.json) {
    process.stdout.write(JSON.stringify({ url: url.origin, streams: results, failed: failed.length, wallMs }, null, 2) + '\n');
  } else {
    const rows = [['stream', 'method', 'path', 'status', 'service', 'bytes up', 'bytes down', 'ms', 'error']];
    for (const r of results)
      rows.push([String(r.streamId ?? '-'), r.method, r.path, String(r.status ?? '-'), r.service ?? '-', String(r.bytesUp), String(r.bytesDown), String(r.ms), r.error ?? '']);
    const widths = rows[0].map((_, i) => Math.max(...rows.map((row) => row[i].length)));
    for (const row of rows) process.stdout.write(row.map((c, i) => c.padEnd(widths[i])).join('  ').trimEnd() + '\n');
    const up = results.reduce((a, r) => a + r.bytesUp, 0);
    const down = results.reduce((a, r) => a + r.bytesDown, 0);
    process.stdout.write(
      `${results.length} streams on one connection, ${results.length - failed.length} ok, ${failed.length} failed; ${up} bytes up, ${down} bytes down in ${Math.round(wallMs)} ms\n`,
    );
  }
  return failed.length ? 1 : 0;
}
