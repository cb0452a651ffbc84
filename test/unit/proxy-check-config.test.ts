import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const QSR = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));

function run(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [QSR, 'check-config', ...args], { encoding: 'utf8', timeout: 20000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('qsr check-config: ok, every problem with exit 2, missing file exit 2', { timeout: 60000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-check-'));
  try {
    const good = join(dir, 'good.yaml');
    writeFileSync(
      good,
      'routes:\n  - { name: a, prefix: /a, upstreams: ["http://127.0.0.1:5001"] }\n  - { name: b, exact: /b, upstreams: ["http://127.0.0.1:5002"] }\n',
    );
    let r = run(good);
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout, `${good}: ok (2 routes)\n`);
    assert.equal(r.stderr, '');

    const bad = join(dir, 'bad.yaml');
    writeFileSync(bad, 'extra: 1\nroutes:\n  - { name: a, prefix: /a, upstreams: ["http://127.0.0.1:5001"] }\n  - { name: b, prefix: /b, upstreams: ["ftp://x"] }\n');
    r = run(bad);
    assert.equal(r.status, 2);
    assert.equal(r.stdout, '');
    assert.deepEqual(r.stderr.trim().split('\n').sort(), [`${bad}: extra: unknown key`, `${bad}: routes.1.upstreams.0: expected an http:// URL, got "ftp://x"`]);

    const missing = join(dir, 'missing.yaml');
    r = run(missing);
    assert.equal(r.status, 2);
    assert.equal(r.stderr, `${missing}: cannot read the configuration: no such file\n`);

    r = run();
    assert.equal(r.status, 2, 'a missing argument is a usage error');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
