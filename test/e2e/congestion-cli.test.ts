/** Picking the router's congestion controller: quic.congestionControl in the file, --congestion-control over it. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startRouter } from './router-helpers.js';
import { runQsrCaptured } from './qsr-run.js';

test('qsr up --congestion-control: an unknown name is a usage error naming the flag (exit 2)', async () => {
  const r = await runQsrCaptured(['up', '--congestion-control', 'bbr'], { ms: 20_000 });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /--congestion-control: expected newreno or cubic, got "bbr"/);
});

for (const [set, args, expected] of [
  [{ quic: { congestionControl: 'cubic' } }, [], 'cubic'],
  [{ quic: { congestionControl: 'cubic' } }, ['--congestion-control', 'newreno'], 'newreno'],
  [{}, ['--congestion-control', 'cubic'], 'cubic'],
] as const) {
  test(`the router runs ${expected} (config ${JSON.stringify(set)}, flags [${args.join(' ')}]) and serves a 4 MB download with it`, { timeout: 60_000 }, async () => {
    const r = await startRouter({ set, args: [...args] });
    try {
      assert.match(r.stdout(), new RegExp(`congestion control: +${expected}\\n`));
      const n = 4_000_000;
      const g = await runQsrCaptured(['get', `https://localhost:${r.port}/video/bytes?n=${n}`, '--ca', r.certPath, '--json'], { cwd: r.dir, ms: 30_000 });
      assert.equal(g.code, 0, g.stderr);
      const rep = JSON.parse(g.stdout) as { requests: { status: number; bytes: number }[] };
      assert.equal(rep.requests[0]?.status, 200);
      assert.equal(rep.requests[0]?.bytes, n);
    } finally {
      await r.stop();
      r.remove();
    }
  });
}
