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
