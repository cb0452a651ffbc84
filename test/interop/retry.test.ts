// Interop: `qsr get` against ngtcp2's gtlsserver with address validation on (-V: every new connection gets a Retry,
// RFC 9000 §8.1.2). Our client does not follow a Retry yet, so it must stop at once and say so, exit code 1, instead
// of hanging silently (issue 8, defect 3). The default handshake timeout (10 s) is left as it is: the answer must
// come from the Retry itself, well before it. Skipped when gtlsserver is missing, except with CI=true.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { freeUdpPort, makeWorkDir, missingPrograms, spawnBounded, startGtlsServer, type Child } from './peers.js';
import { defaultCertDir } from './run.js';

const QSR = fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url));
const { missing, hint } = missingPrograms(['gtlsserver']);
const ci = process.env.CI === 'true';
const skip = missing.length > 0 && !ci ? hint : false;

test('qsr get against gtlsserver -V (Retry): exit 1 with "requires address validation (Retry), not supported yet"', { skip, timeout: 60_000 }, async () => {
  assert.deepEqual(missing, [], `${hint} (CI=true: the interop peers must be installed)`);
  const workDir = makeWorkDir('qsr-retry-');
  const docroot = join(workDir, 'htdocs');
  mkdirSync(docroot, { recursive: true });
  writeFileSync(join(docroot, 'index.html'), '<html><body>retry</body></html>\n');
  const certs = defaultCertDir();
  const port = await freeUdpPort('127.0.0.1');
  let server: Child | null = null;
  try {
    server = await startGtlsServer({
      workDir,
      addr: '127.0.0.1',
      port,
      docroot,
      key: join(certs, 'ecdsa.key'),
      cert: join(certs, 'ecdsa.pem'),
      extraArgs: ['-V'],
      timeoutMs: 50_000,
    });
    const get = spawnBounded({
      name: 'qsr-get',
      cmd: process.execPath,
      args: [QSR, 'get', `https://127.0.0.1:${port}/`, '--ca', join(certs, 'ca.pem'), '--server-name', 'localhost'],
      workDir,
      timeoutMs: 30_000,
    });
    const exit = await get.exited;
    assert.equal(exit.timedOut, false, `qsr get hung until its hard limit:\n${get.output()}`);
    assert.equal(exit.code, 1, get.output());
    assert.match(get.stderr(), new RegExp(`qsr get: cannot connect to https://127\\.0\\.0\\.1:${port}: the server at 127\\.0\\.0\\.1:${port} requires address validation \\(Retry\\), not supported yet`));
    assert.match(get.stdout(), /1 requests, 0 ok, 1 failed/);
    // The server did answer with a Retry (its log shows the Initial it got and nothing of a handshake).
    assert.doesNotMatch(server.output(), /QUIC handshake has completed/);
  } finally {
    await server?.stop('SIGINT', 3000);
  }
});
