/**
 * The router's forwarding in process, with its HTTP/3 side on the simulated network (test/sim/runtime.ts): an
 * Http3Client and the ProxyServer exchange datagrams through a seeded lossy, reordering, duplicating link, and the
 * router forwards to real node:http upstreams on 127.0.0.1.
 *
 * The clock is the real one (nodeClock) with the simulated loss and delay on top: the upstreams answer over real TCP,
 * and a virtual clock would jump ahead while they do (firing QUIC idle timeouts and retransmissions that real time
 * would not), while advancing it in real-time steps would only make it a slower real clock. See runtime.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { stringify } from 'yaml';
import { Http3Client } from '../../src/h3/client.js';
import { nodeClock } from '../../src/io/node-runtime.js';
import { loadPemChain } from '../../src/quic/tls/pem.js';
import { parseConfig } from '../../src/proxy/config.js';
import { ProxyServer, type ProxyLog } from '../../src/proxy/server.js';
import type { LinkOptions } from './network.js';
import { SimUdpNetwork } from './runtime.js';
import { CERTS } from './helpers.js';
import { chunked, randomData, readAll } from '../util/data.js';

const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** A TCP port on 127.0.0.1 that was free a moment ago (the router's TCP listener takes the UDP port's number). */
function freeTcpPort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = http.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as AddressInfo).port;
      s.close(() => res(p));
    });
  });
}

/** Upstream: GET /files/blob/N (N bytes, x-sha256), POST /files/hash (JSON of what arrived), GET /files/hello. */
function upstream(): Promise<http.Server> {
  const srv = http.createServer((req, res) => {
    const url = req.url ?? '';
    if (url.startsWith('/files/blob/')) {
      const data = randomData(3, Number(url.slice('/files/blob/'.length)));
      res.writeHead(200, { 'content-length': data.length, 'x-sha256': sha(data) });
      res.end(data);
    } else if (url === '/files/hash' && req.method === 'POST') {
      const h = createHash('sha256');
      let bytes = 0;
      req.on('data', (c: Buffer) => {
        h.update(c);
        bytes += c.length;
      });
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ bytes, sha256: h.digest('hex') }));
      });
    } else if (url === '/files/hello') {
      res.writeHead(200, { 'content-type': 'text/plain', 'x-upstream-forwarded': String(req.headers.forwarded ?? '') });
      res.end('hello from upstream');
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  return new Promise((r) => srv.listen(0, '127.0.0.1', () => r(srv)));
}

const quietLog: ProxyLog = { info: () => {}, warn: () => {}, error: () => {} };

async function start(seed: number, link: LinkOptions) {
  const up = await upstream();
  const dead = await freeTcpPort(); // nothing listens here: the route to it fails
  const port = await freeTcpPort();
  const dir = mkdtempSync(join(tmpdir(), 'qsr-sim-router-'));
  const config = parseConfig(
    stringify({
      listen: [`127.0.0.1:${port}`],
      tls: { cert: `${CERTS}ecdsa.pem`, key: `${CERTS}ecdsa.key` },
      dataDir: dir,
      accessLog: false,
      healthCheck: false,
      timeouts: { connectMs: 2000, drainMs: 1000 },
      routes: [
        { name: 'files', prefix: '/files', upstreams: [`http://127.0.0.1:${(up.address() as AddressInfo).port}`] },
        { name: 'down', prefix: '/down', upstreams: [`http://127.0.0.1:${dead}`] },
      ],
    }),
    '<sim>',
  );
  const net = new SimUdpNetwork(seed, link, nodeClock);
  const proxy = new ProxyServer(config, quietLog, null);
  const info = await proxy.start({ runtime: net.runtime });
  assert.equal(info.udp[0].port, port);
  const cleanup = async (): Promise<void> => {
    await proxy.close(500);
    up.closeAllConnections();
    await new Promise<void>((r) => up.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  };
  let client: Http3Client;
  try {
    client = await Http3Client.connect(`https://127.0.0.1:${port}/`, {
      ca: loadPemChain(readFileSync(`${CERTS}ca.pem`, 'utf8')),
      serverName: 'localhost',
      runtime: net.runtime,
    });
  } catch (e) {
    await cleanup();
    throw e;
  }
  return {
    net,
    client,
    done: async () => {
      await client.close();
      await cleanup();
    },
  };
}

/** 1500-byte path MTU, 2 ms one way with jitter (reordering), 2 % loss, 1 % duplication. */
const LOSSY: LinkOptions = { mtu: 1500, delay: 2, jitter: 1, reorder: 0.02, loss: 0.02, duplicate: 0.01 };

test('sim router: forwards requests, a route miss and a dead upstream over a lossy HTTP/3 link', { timeout: 60_000 }, async () => {
  const t = await start(21, LOSSY);
  try {
    const r = await t.client.request('/files/hello');
    assert.equal(r.status, 200);
    assert.equal((await readAll(r.body)).toString(), 'hello from upstream');
    const fwd = r.headers.find(([n]) => n === 'x-upstream-forwarded')?.[1] ?? '';
    assert.match(fwd, /for="?127\.0\.0\.1"?;proto=https/, 'the upstream saw the client in forwarded');
    assert.ok(r.headers.some(([n, v]) => n === 'via' && v.includes('quic-stream-router')), 'via on the response');

    const miss = await t.client.request('/nowhere');
    assert.equal(miss.status, 404);
    await readAll(miss.body);

    const down = await t.client.request('/down/x');
    assert.equal(down.status, 502);
    await readAll(down.body);

    // Concurrent requests, each its own stream and its own upstream request.
    const many = await Promise.all(
      Array.from({ length: 10 }, async () => {
        const x = await t.client.request('/files/hello');
        return { status: x.status, body: (await readAll(x.body)).toString() };
      }),
    );
    for (const m of many) assert.deepEqual(m, { status: 200, body: 'hello from upstream' });
  } finally {
    await t.done();
  }
});

test('sim router: 2 MB up and 2 MB down through the router at 2 % loss', { timeout: 120_000 }, async () => {
  const t = await start(22, LOSSY);
  try {
    const size = 2 * 1024 * 1024;
    const up = randomData(5, size);
    const u = await t.client.request('/files/hash', { method: 'POST', body: Readable.from(chunked(up, 32 * 1024)) });
    assert.equal(u.status, 200);
    assert.deepEqual(JSON.parse((await readAll(u.body)).toString()), { bytes: size, sha256: sha(up) });

    const d = await t.client.request(`/files/blob/${size}`);
    assert.equal(d.status, 200);
    const body = await readAll(d.body);
    assert.equal(body.length, size);
    assert.equal(sha(body), d.headers.find(([n]) => n === 'x-sha256')?.[1]);
    assert.ok(t.net.stats.lost > 0, 'the network lost datagrams');
  } finally {
    await t.done();
  }
});
