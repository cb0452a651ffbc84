import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Supervisor } from '../../src/proxy/supervisor.js';

/** A stand-in for `qsr service`: says it listens, then exits with code 3 after EXIT_MS (or runs until killed). */
function fakeService(): string {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-sup-'));
  const f = join(dir, 'svc.mjs');
  writeFileSync(
    f,
    `const [, , , name, , port] = process.argv;
     console.log(name + ' service listening on http://127.0.0.1:' + port);
     const ms = Number(process.env.EXIT_MS || 0);
     if (ms) setTimeout(() => process.exit(3), ms); else setInterval(() => {}, 1000);
     process.on('SIGTERM', () => process.exit(0));`,
  );
  return f;
}

function collectingLog() {
  const lines: { level: string; fields: Record<string, unknown>; msg: string }[] = [];
  return {
    lines,
    info: (fields: Record<string, unknown>, msg: string) => lines.push({ level: 'info', fields, msg }),
    warn: (fields: Record<string, unknown>, msg: string) => lines.push({ level: 'warn', fields, msg }),
    error: (fields: Record<string, unknown>, msg: string) => lines.push({ level: 'error', fields, msg }),
  };
}

test('supervisor: starts services, restarts one that exits with growing backoff, and logs it', { timeout: 20_000 }, async () => {
  const log = collectingLog();
  process.env.EXIT_MS = '150';
  const sup = new Supervisor(log, { cmd: process.execPath, args: [fakeService()] });
  try {
    await sup.start([{ name: 'video', port: 5999 }]);
    delete process.env.EXIT_MS; // restarted children stay up
    const deadline = Date.now() + 10_000;
    while (sup.restarts('video') < 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(sup.restarts('video') >= 1, 'restarted after exiting');
    const exitLine = log.lines.find((l) => l.level === 'warn' && /exited \(code 3\); restarting in 200 ms/.test(l.msg));
    assert.ok(exitLine, JSON.stringify(log.lines));
    // wait for the restarted process
    while (sup.pids().video === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    assert.ok(sup.pids().video, 'a new process runs');
    assert.ok(log.lines.filter((l) => /video service started/.test(l.msg)).length >= 2);
  } finally {
    await sup.stop();
  }
  assert.equal(sup.pids().video, null, 'stopped');
});

test('supervisor: backoff doubles while a service keeps crashing', { timeout: 20_000 }, async () => {
  const log = collectingLog();
  process.env.EXIT_MS = '50';
  const sup = new Supervisor(log, { cmd: process.execPath, args: [fakeService()] });
  try {
    await sup.start([{ name: 'text', port: 5998 }]);
    const deadline = Date.now() + 10_000;
    while (sup.restarts('text') < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const delays = log.lines.filter((l) => l.level === 'warn').map((l) => l.fields.restartInMs);
    assert.deepEqual(delays.slice(0, 3), [200, 400, 800]);
  } finally {
    delete process.env.EXIT_MS;
    await sup.stop();
  }
});

test('supervisor: service stderr lines become structured records at their own level; other lines stay text', { timeout: 20_000 }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-sup-'));
  const f = join(dir, 'svc.mjs');
  // A service that logs the way ours do (JSON lines with time and level), a pino-style numeric level, a line written
  // in two pieces, a line without a level, and a stack-trace-like text line; it prints its extra arguments too.
  writeFileSync(
    f,
    `const [, , , name, , port, ...rest] = process.argv;
     console.log(name + ' service listening on http://127.0.0.1:' + port);
     const w = (s) => process.stderr.write(s);
     w(JSON.stringify({ time: '2025-01-01T00:00:00.000Z', level: 'error', service: name, event: 'error', path: '/x', error: 'boom' }) + '\\n');
     w(JSON.stringify({ level: 40, msg: 'slow disk', service: name, ms: 12 }) + '\\n');
     const split = JSON.stringify({ service: name, event: 'upload', bytes: 5, args: rest });
     w(split.slice(0, 10));
     setTimeout(() => { w(split.slice(10) + '\\n'); w('Error: not json\\n    at somewhere\\n'); }, 50);
     setInterval(() => {}, 1000);
     process.on('SIGTERM', () => process.exit(0));`,
  );
  const log = collectingLog();
  const sup = new Supervisor(log, { cmd: process.execPath, args: [f] });
  try {
    await sup.start([{ name: 'video', port: 5997, args: ['--max-body-bytes', '123'] }]);
    const deadline = Date.now() + 10_000;
    while (!log.lines.some((l) => l.msg === 'at somewhere') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const fromService = log.lines.filter((l) => !/service (started|stopped)/.test(l.msg));
    assert.deepEqual(
      fromService.map((l) => [l.level, l.msg]),
      [
        ['error', 'error'],
        ['warn', 'slow disk'],
        ['info', 'upload'],
        ['warn', 'Error: not json'],
        ['warn', 'at somewhere'],
      ],
      JSON.stringify(log.lines),
    );
    const [err, slow, upload] = fromService;
    assert.equal(err!.fields.service, 'video');
    assert.equal(err!.fields.path, '/x');
    assert.equal(err!.fields.error, 'boom');
    assert.equal(err!.fields.serviceTime, '2025-01-01T00:00:00.000Z');
    assert.equal(typeof err!.fields.pid, 'number');
    assert.equal('level' in err!.fields, false);
    assert.equal(slow!.fields.ms, 12);
    assert.equal(upload!.fields.bytes, 5);
    assert.deepEqual(upload!.fields.args, ['--max-body-bytes', '123'], 'the spec\'s extra arguments reach the service');
    for (const l of fromService) assert.ok(!l.msg.startsWith('{'), `no JSON escaped into a message: ${l.msg}`);
  } finally {
    await sup.stop();
  }
  const stopped = log.lines.find((l) => /video service stopped/.test(l.msg));
  assert.ok(stopped, JSON.stringify(log.lines));
  assert.equal(stopped.fields.code, 0);
  assert.equal(stopped.fields.signal, null);
});

test('supervisor: once the shutdown has begun (freeze), a service that exits is not restarted, and that is logged', { timeout: 20_000 }, async () => {
  const log = collectingLog();
  process.env.EXIT_MS = '300';
  const sup = new Supervisor(log, { cmd: process.execPath, args: [fakeService()] });
  try {
    await sup.start([{ name: 'control', port: 5996 }]);
    sup.freeze();
    const deadline = Date.now() + 10_000;
    while (!log.lines.some((l) => /exited during the shutdown/.test(l.msg)) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    await new Promise((r) => setTimeout(r, 500)); // longer than the first backoff (200 ms)
    assert.equal(sup.restarts('control'), 0);
    assert.equal(sup.pids().control, null);
    const line = log.lines.find((l) => /control service exited during the shutdown \(code 3\); not restarted/.test(l.msg));
    assert.ok(line, JSON.stringify(log.lines));
    assert.equal(line.level, 'warn');
    assert.equal(log.lines.filter((l) => /service started/.test(l.msg)).length, 1);
  } finally {
    delete process.env.EXIT_MS;
    await sup.stop();
  }
});
