/**
 * The control service over real HTTP/1.1 on 127.0.0.1: ping, set/get of any JSON value, state per process,
 * /control/status counters, every 400 (malformed JSON, non-object, missing/unknown command, missing or invalid
 * fields), the 1 MB limit (413), and method/path errors.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { startService, type RunningService } from '../../src/services/index.js';
import { CONTROL_LIMIT } from '../../src/services/control.js';
import { request, json } from './services-helpers.js';


let svc: RunningService;
let other: RunningService;

test('start two control services on ephemeral ports', async () => {
  svc = await startService('control', { port: 0, log: () => {} });
  other = await startService('control', { port: 0, log: () => {} });
});

after(() => {
  svc?.server.closeAllConnections();
  other?.server.closeAllConnections();
});
after(() => Promise.all([svc?.server.shutdown(), other?.server.shutdown()]));

const command = (body: unknown, on = svc) =>
  request(on.url, '/control', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

test('ping', async () => {
  const r = await command({ command: 'ping' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-service'], 'control');
  const j = json(r);
  assert.equal(j.ok, true);
  assert.equal(j.pong, true);
  assert.equal(typeof j.uptimeMs, 'number');
});

test('set then get, for several kinds of JSON value', async () => {
  const values: unknown[] = ['text', 42, 0, false, null, [1, 'two', { three: 3 }], { nested: { deep: ['x'] } }];
  for (const [i, value] of values.entries()) {
    const s = await command({ command: 'set', key: `k${i}`, value });
    assert.equal(s.status, 200);
    assert.deepEqual(json(s), { ok: true, key: `k${i}`, replaced: false });
  }
  for (const [i, value] of values.entries()) {
    const g = await command({ command: 'get', key: `k${i}` });
    assert.equal(g.status, 200);
    assert.deepEqual(json(g), { ok: true, key: `k${i}`, found: true, value });
  }
  const again = await command({ command: 'set', key: 'k0', value: 'new' });
  assert.equal(json(again).replaced, true);
  assert.equal(json(await command({ command: 'get', key: 'k0' })).value, 'new');
});

test('get of a key never set: found false, value null', async () => {
  assert.deepEqual(json(await command({ command: 'get', key: 'never' })), { ok: true, key: 'never', found: false, value: null });
});

test('state is per service instance', async () => {
  await command({ command: 'set', key: 'only-here', value: 1 });
  assert.equal(json(await command({ command: 'get', key: 'only-here' }, other)).found, false);
});

test('GET /control/status counts keys and requests', async () => {
  const before = json(await request(svc.url, '/control/status'));
  assert.equal(before.ok, true);
  assert.equal(before.service, 'control');
  assert.equal(typeof before.uptimeMs, 'number');
  const keys = before.keys as number;
  assert.equal(keys, 8); // k0..k6 and only-here
  await command({ command: 'set', key: 'status-test', value: true });
  const after2 = await request(svc.url, '/control/status');
  assert.equal(after2.headers['x-service'], 'control');
  const j = json(after2);
  assert.equal(j.keys, keys + 1);
  assert.equal(j.requests, (before.requests as number) + 2);
  assert.equal(j.requests, svc.server.stats.requests);
});

test('bad commands are 400 with ok:false and a message', async () => {
  const cases: [string, RegExp][] = [
    ['{"command":', /malformed JSON/],
    ['', /malformed JSON/],
    ['[1,2]', /JSON object/],
    ['"ping"', /JSON object/],
    ['null', /JSON object/],
    ['{}', /missing field 'command'/],
    ['{"command":"explode"}', /unknown command "explode"/],
    ['{"command":42}', /unknown command 42/],
    ['{"command":"set","value":1}', /'key'/],
    ['{"command":"set","key":"","value":1}', /'key'/],
    ['{"command":"set","key":7,"value":1}', /'key'/],
    ['{"command":"set","key":"k"}', /missing field 'value'/],
    ['{"command":"get"}', /'key'/],
  ];
  const keysBefore = json(await request(svc.url, '/control/status')).keys;
  for (const [body, message] of cases) {
    const r = await command(body);
    assert.equal(r.status, 400, body);
    assert.equal(r.headers['x-service'], 'control');
    const j = json(r);
    assert.equal(j.ok, false, body);
    assert.match(String(j.error), message, body);
  }
  assert.equal(json(await request(svc.url, '/control/status')).keys, keysBefore, 'no failed command stored anything');
});

test('a body over 1 MB is 413; exactly 1 MB is parsed', { timeout: 20_000 }, async () => {
  const pad = (n: number): string => {
    const head = '{"command":"set","key":"big","value":"';
    return head + 'x'.repeat(n - head.length - 2) + '"}';
  };
  const ok = await command(pad(CONTROL_LIMIT));
  assert.equal(ok.status, 200);
  const big = await command(pad(CONTROL_LIMIT + 1));
  assert.equal(big.status, 413);
  assert.equal(big.headers['x-service'], 'control');
  // chunked, without content-length
  const chunked = await request(svc.url, '/control', {
    method: 'POST',
    headers: { 'transfer-encoding': 'chunked' },
    body: Readable.from([Buffer.from(pad(CONTROL_LIMIT + 1))]),
  });
  assert.equal(chunked.status, 413);
});

test('wrong method and unknown path', async () => {
  const g = await request(svc.url, '/control');
  assert.equal(g.status, 405);
  assert.equal(g.headers.allow, 'POST');
  assert.equal(g.headers['x-service'], 'control');
  const p = await request(svc.url, '/control/status', { method: 'DELETE' });
  assert.equal(p.status, 405);
  assert.equal(p.headers.allow, 'GET, HEAD');
  const n = await request(svc.url, '/controls');
  assert.equal(n.status, 404);
  assert.deepEqual(json(n), { error: 'not found', path: '/controls', service: 'control' });
});
