/**
 * The router with `qlog:` in its configuration (in process, real UDP on loopback, a plain HTTP/1.1 upstream): the
 * HTTP/3 connection's server-side qlog holds the router's route choice for every request stream
 * (router:route_chosen: route name and upstream, null for no route) next to the HTTP/3 frames, and validates
 * against the schema.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../../src/proxy/config.js';
import { ProxyServer, type ProxyLog } from '../../src/proxy/server.js';
import { Http3Client } from '../../src/h3/client.js';
import { loadPemChain } from '../../src/quic/tls/pem.js';
import { readQlog } from '../util/qlog.js';

const quiet: ProxyLog = { info: () => {}, warn: () => {}, error: () => {} };

test('router qlog: router:route_chosen per request stream (route and upstream; null when no route matches)', { timeout: 30_000 }, async () => {
  const work = mkdtempSync(join(tmpdir(), 'qsr-router-qlog-'));
  const upstream: Server = createServer((_req, res) => {
    res.writeHead(200, { 'content-type': 'text/plain' });
    res.end('from upstream\n');
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const up = `http://127.0.0.1:${(upstream.address() as { port: number }).port}`;
  let proxy: ProxyServer | null = null;
  try {
    const yaml = [
      'listen: ["127.0.0.1:0"]',
      'dataDir: data',
      'qlog: qlogs',
      'accessLog: false',
      'healthCheck: false',
      'routes:',
      `  - { name: api, prefix: /api, upstreams: ["${up}"] }`,
    ].join('\n');
    const config = parseConfig(yaml, join(work, 'qsr.yaml'));
    assert.equal(config.qlog, join(work, 'qlogs'));
    proxy = new ProxyServer(config, quiet, null);
    const info = await proxy.start();
    assert.equal(info.qlog, join(work, 'qlogs'));
    const client = await Http3Client.connect(`https://localhost:${info.udp[0].port}/`, {
      ca: loadPemChain(readFileSync(join(work, 'data', 'certs', 'cert.pem'), 'utf8')),
      serverName: 'localhost',
    });
    const read = async (path: string): Promise<[number, number]> => {
      const r = await client.request(path);
      for await (const _ of r.body) void _;
      return [r.streamId, r.status];
    };
    const routed = await read('/api/items');
    const unrouted = await read('/elsewhere');
    assert.equal(routed[1], 200);
    assert.equal(unrouted[1], 404);
    await client.close();
    await proxy.close(200);
    proxy = null;

    const dir = join(work, 'qlogs');
    const files = readdirSync(dir);
    assert.equal(files.length, 1, files.join(' '));
    assert.match(files[0], /^[0-9a-f]{16,40}_server\.sqlog$/);
    // The file is complete once the connection reached its final state (the writer closes it then).
    let events = readQlog(join(dir, files[0])).events;
    for (let i = 0; i < 100 && !events.some((e) => e.name === 'connectivity:connection_state_updated' && e.data.new === 'closed'); i++) {
      await new Promise((r) => setTimeout(r, 50));
      events = readQlog(join(dir, files[0])).events;
    }
    const chosen = events.filter((e) => e.name === 'router:route_chosen').map((e) => e.data);
    assert.deepEqual(chosen, [
      { stream_id: routed[0], route: 'api', upstream: up },
      { stream_id: unrouted[0], route: null, upstream: null },
    ]);
    const parsedPaths = events
      .filter((e) => e.name === 'http:frame_parsed' && (e.data.frame as { frame_type: string }).frame_type === 'headers')
      .map((e) => (e.data.frame as { headers: { name: string; value: string }[] }).headers.find((h) => h.name === ':path')?.value);
    assert.deepEqual(parsedPaths, ['/api/items', '/elsewhere']);
  } finally {
    await proxy?.close(100);
    await new Promise<void>((r) => upstream.close(() => r()));
    rmSync(work, { recursive: true, force: true });
  }
});
