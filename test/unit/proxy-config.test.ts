import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError, defaultConfig, loadConfig, parseConfig } from '../../src/proxy/config.js';

const GOOD = `
listen: ["127.0.0.1:8443", "[::1]:8443"]
tls: { cert: certs/a.pem, key: certs/a.key }
dataDir: ./state
keylog: true
accessLog: logs/access.log
timeouts: { connectMs: 500 }
healthCheck: { path: /ping, unhealthyAfter: 3 }
quic: { onePacketPerDatagram: true }
routes:
  - { name: video, prefix: /video, upstreams: ["http://127.0.0.1:5001", "http://localhost:5011/"], balance: round-robin }
  - { name: text, prefix: /text, upstreams: ["http://127.0.0.1"] }
  - name: control
    exact: /control/status
    host: Example.COM
    methods: [GET, HEAD]
    upstreams: ["http://[::1]:5003"]
    balance: least-outstanding
    headers: { set: { x-a: b }, remove: [x-b] }
services: { video: { port: 5001 }, control: { port: 5003 } }
`;

/** The lines of the ConfigError message parseConfig throws (fails the test if it does not throw one). */
function problems(text: string, source = 'qsr.yaml'): string[] {
  try {
    parseConfig(text, source, { baseDir: '/base' });
  } catch (err) {
    assert.ok(err instanceof ConfigError, `expected ConfigError, got ${String(err)}`);
    return err.message.split('\n');
  }
  assert.fail('expected a ConfigError');
}

const ROUTE = '{ name: r, prefix: /r, upstreams: ["http://127.0.0.1:1"] }';

test('a complete file parses, with paths resolved against the base directory and defaults filled in', () => {
  const c = parseConfig(GOOD, '/etc/qsr/qsr.yaml', { baseDir: '/etc/qsr' });
  assert.deepEqual(c.listen, [
    { host: '127.0.0.1', port: 8443 },
    { host: '::1', port: 8443 },
  ]);
  assert.deepEqual(c.tls, { cert: '/etc/qsr/certs/a.pem', key: '/etc/qsr/certs/a.key' });
  assert.equal(c.dataDir, '/etc/qsr/state');
  assert.equal(c.keylog, '/etc/qsr/state/keylog.txt');
  assert.equal(c.accessLog, '/etc/qsr/logs/access.log');
  assert.deepEqual(c.timeouts, { connectMs: 500, headersMs: 10000, idleBodyMs: 30000, drainMs: 10000 });
  assert.deepEqual(c.healthCheck, { path: '/ping', intervalMs: 2000, timeoutMs: 1000, unhealthyAfter: 3, healthyAfter: 1 });
  assert.deepEqual(c.quic, { maxIdleTimeoutMs: 30000, onePacketPerDatagram: true, congestionControl: 'newreno' });
  assert.equal(c.routes.length, 3);
  assert.deepEqual(c.routes[0], {
    name: 'video',
    prefix: '/video',
    exact: null,
    host: null,
    methods: null,
    upstreams: ['http://127.0.0.1:5001', 'http://localhost:5011'],
    balance: 'round-robin',
    headers: { set: {}, remove: [] },
  });
  assert.deepEqual(c.routes[1]!.upstreams, ['http://127.0.0.1:80']);
  assert.equal(c.routes[1]!.balance, 'round-robin');
  assert.deepEqual(c.routes[2], {
    name: 'control',
    prefix: null,
    exact: '/control/status',
    host: 'example.com',
    methods: ['GET', 'HEAD'],
    upstreams: ['http://[::1]:5003'],
    balance: 'least-outstanding',
    headers: { set: { 'x-a': 'b' }, remove: ['x-b'] },
  });
  assert.deepEqual(c.services, { video: { port: 5001 }, control: { port: 5003 } });
});

test('a minimal file gets every default (keylog off in a user file, stdout access log, no services)', () => {
  const c = parseConfig(`routes: [${ROUTE}]`, 'min.yaml', { baseDir: '/w' });
  assert.deepEqual(c.listen, [
    { host: '127.0.0.1', port: 4433 },
    { host: '::1', port: 4433 },
  ]);
  assert.equal(c.tls, null);
  assert.equal(c.dataDir, '/w/.qsr');
  assert.equal(c.keylog, null);
  assert.equal(c.accessLog, 'stdout');
  assert.deepEqual(c.timeouts, { connectMs: 2000, headersMs: 10000, idleBodyMs: 30000, drainMs: 10000 });
  assert.deepEqual(c.healthCheck, { path: '/healthz', intervalMs: 2000, timeoutMs: 1000, unhealthyAfter: 2, healthyAfter: 1 });
  assert.deepEqual(c.quic, { maxIdleTimeoutMs: 30000, onePacketPerDatagram: false, congestionControl: 'newreno' });
  assert.deepEqual(c.services, {});
});

test('keylog path, accessLog false, healthCheck false', () => {
  const c = parseConfig(`keylog: k.txt\naccessLog: false\nhealthCheck: false\nroutes: [${ROUTE}]`, 'x.yaml', { baseDir: '/w' });
  assert.equal(c.keylog, '/w/k.txt');
  assert.equal(c.accessLog, false);
  assert.equal(c.healthCheck, null);
});

test('defaultConfig: three routes to the local services, key log on, dev cert', () => {
  const c = defaultConfig('/home/u');
  assert.deepEqual(
    c.routes.map((r) => [r.name, r.prefix, r.upstreams]),
    [
      ['video', '/video', ['http://127.0.0.1:5001']],
      ['text', '/text', ['http://127.0.0.1:5002']],
      ['control', '/control', ['http://127.0.0.1:5003']],
    ],
  );
  assert.deepEqual(c.listen, [
    { host: '127.0.0.1', port: 4433 },
    { host: '::1', port: 4433 },
  ]);
  assert.equal(c.dataDir, '/home/u/.qsr');
  assert.equal(c.keylog, '/home/u/.qsr/keylog.txt');
  assert.equal(c.tls, null);
  assert.deepEqual(c.services, { video: { port: 5001 }, text: { port: 5002 }, control: { port: 5003 } });
});

test('each mistake is reported with its file and exact dotted path, all at once', () => {
  const lines = problems(`
listen: ["127.0.0.1:99999", "localhost", "[nothex]:1"]
tls: { cert: a.pem }
keylog: 7
accessLog: true
timeouts: { connectMs: 0, headersMs: 1.5, idleBodyMs: "10", drainMs: -4 }
healthCheck: { path: healthz, intervalMs: 100, timeoutMs: 200 }
quic: { onePacketPerDatagram: "yes" }
routes:
  - { name: a, prefix: /a, upstreams: ["http://127.0.0.1:5001"] }
  - { name: b, prefix: /b, upstreams: ["ftp://x", "http://u:p@h:1", "http://h:1/base"], balance: random, methods: [get] }
  - { name: c, prefix: c, exact: /c, host: "bad host:80", upstreams: [] }
  - { name: a, upstreams: ["http://h:1"], headers: { set: { host: x, X-Up: y }, remove: [transfer-encoding] } }
services: { video: { port: 0 }, text: { port: 70000 } }
`);
  const expected = [
    'qsr.yaml: listen.0: expected "host:port" or "[ipv6]:port", got "127.0.0.1:99999"',
    'qsr.yaml: listen.1: expected "host:port" or "[ipv6]:port", got "localhost"',
    'qsr.yaml: listen.2: expected "host:port" or "[ipv6]:port", got "[nothex]:1"',
    'qsr.yaml: tls.key: missing; expected a file path',
    'qsr.yaml: keylog: expected a file path, true or false, got 7',
    'qsr.yaml: accessLog: expected "stdout", a file path or false, got true',
    'qsr.yaml: timeouts.connectMs: expected a positive integer, got 0',
    'qsr.yaml: timeouts.headersMs: expected a positive integer, got 1.5',
    'qsr.yaml: timeouts.idleBodyMs: expected a positive integer, got "10"',
    'qsr.yaml: timeouts.drainMs: expected a positive integer, got -4',
    'qsr.yaml: healthCheck.path: expected a path starting with "/", got "healthz"',
    'qsr.yaml: quic.onePacketPerDatagram: expected true or false, got "yes"',
    'qsr.yaml: routes.1.upstreams.0: expected an http:// URL, got "ftp://x"',
    'qsr.yaml: routes.1.upstreams.1: expected an http:// URL, got "http://u:p@h:1"',
    'qsr.yaml: routes.1.upstreams.2: expected an http:// URL, got "http://h:1/base"',
    'qsr.yaml: routes.1.balance: expected "round-robin" or "least-outstanding", got "random"',
    'qsr.yaml: routes.1.methods.0: expected an upper-case HTTP method such as "GET", got "get"',
    'qsr.yaml: routes.2.prefix: expected a path starting with "/" (no query), got "c"',
    'qsr.yaml: routes.2.host: expected a host name without port (IPv6 in brackets), got "bad host:80"',
    'qsr.yaml: services.video.port: expected a port number 1..65535, got 0',
    'qsr.yaml: services.text.port: expected a port number 1..65535, got 70000',
    'qsr.yaml: routes.2: expected exactly one of "prefix" or "exact", got both',
    'qsr.yaml: routes.2.upstreams: expected at least one upstream URL',
    'qsr.yaml: routes.3: expected exactly one of "prefix" or "exact"',
    'qsr.yaml: routes.3.name: expected a unique route name, "a" is also routes.0',
    'qsr.yaml: routes.3.headers.set.host: this field is managed by the proxy and cannot be set',
    'qsr.yaml: routes.3.headers.set.X-Up: expected a lower-case header field name',
    'qsr.yaml: routes.3.headers.remove.0: "transfer-encoding" is managed by the proxy and cannot be removed',
    'qsr.yaml: healthCheck.timeoutMs: expected at most intervalMs (100), got 200',
  ];
  assert.deepEqual([...lines].sort(), [...expected].sort());
});

test('unknown keys are rejected at every level', () => {
  const lines = problems(`
colour: blue
timeouts: { connectMs: 1, readMs: 2 }
healthCheck: { path: /h, every: 3 }
quic: { maxIdleTimeout: 1 }
tls: { cert: a, key: b, ca: c }
routes:
  - { name: r, prefix: /r, upstreams: ["http://h:1"], weight: 2, headers: { add: { a: b } } }
services: { audio: { port: 1 }, video: { port: 1, host: x } }
`);
  assert.deepEqual([...lines].sort(), [
    'qsr.yaml: colour: unknown key',
    'qsr.yaml: healthCheck.every: unknown key',
    'qsr.yaml: quic.maxIdleTimeout: unknown key',
    'qsr.yaml: routes.0.headers.add: unknown key',
    'qsr.yaml: routes.0.weight: unknown key',
    'qsr.yaml: services.audio: unknown key',
    'qsr.yaml: services.video.host: unknown key',
    'qsr.yaml: timeouts.readMs: unknown key',
    'qsr.yaml: tls.ca: unknown key',
  ]);
});

test('wrong types and missing required keys', () => {
  assert.deepEqual(problems('listen: []\nroutes: 7'), ['qsr.yaml: routes: expected a list, got 7', 'qsr.yaml: listen: expected at least one address']);
  assert.deepEqual(problems('timeouts: 5\nroutes: []'), [
    'qsr.yaml: timeouts: expected a mapping, got 5',
    'qsr.yaml: routes: expected at least one route',
  ]);
  assert.deepEqual(problems('dataDir: ./x'), ['qsr.yaml: routes: missing; expected a list']);
  assert.deepEqual(problems('routes: [{ prefix: /a }]'), [
    'qsr.yaml: routes.0.name: missing; expected a route name (letters, digits, "_", "-", ".")',
    'qsr.yaml: routes.0.upstreams: missing; expected a list',
  ]);
  assert.deepEqual(problems(`healthCheck: yes\nroutes: [${ROUTE}]`), ['qsr.yaml: healthCheck: expected a mapping or false, got "yes"']);
  assert.deepEqual(problems(`healthCheck: { intervalMs: 0 }\nroutes: [${ROUTE}]`), ['qsr.yaml: healthCheck.intervalMs: expected a positive integer, got 0']);
  assert.deepEqual(problems(`routes: [${ROUTE}, 3]`), ['qsr.yaml: routes.1: expected a mapping, got 3']);
  assert.deepEqual(problems(`routes: [{ name: r, exact: /x, methods: [], upstreams: ["http://h:1"] }]`), [
    'qsr.yaml: routes.0.methods: expected at least one method (or leave methods out)',
  ]);
});

test('YAML syntax errors, duplicate keys and non-mapping documents', () => {
  assert.equal(problems('routes: [\n').length, 1);
  assert.match(problems('routes: [\n')[0]!, /^qsr\.yaml: line \d+, column \d+: YAML syntax error: /);
  assert.match(problems(`routes: [${ROUTE}]\nroutes: []`)[0]!, /^qsr\.yaml: line 2, column 1: YAML syntax error: Map keys must be unique/);
  assert.deepEqual(problems(''), ['qsr.yaml: (top level): expected a mapping with at least "routes", got an empty document']);
  assert.deepEqual(problems('- a\n- b'), ['qsr.yaml: (top level): expected a mapping with at least "routes", got a list']);
});

test('loadConfig reads a file, resolves against its directory, and reports a missing file', () => {
  const dir = mkdtempSync(join(tmpdir(), 'qsr-config-'));
  try {
    const file = join(dir, 'qsr.yaml');
    writeFileSync(file, `keylog: keys.log\nroutes: [${ROUTE}]\n`);
    const c = loadConfig(file);
    assert.equal(c.source, file);
    assert.equal(c.keylog, join(dir, 'keys.log'));
    assert.equal(c.dataDir, join(dir, '.qsr'));
    const missing = join(dir, 'nope.yaml');
    assert.throws(() => loadConfig(missing), (err: unknown) => err instanceof ConfigError && err.message === `${missing}: cannot read the configuration: no such file`);
    writeFileSync(file, 'routes: [{ name: r, prefix: /r, upstreams: ["ftp://x"] }]\n');
    assert.throws(() => loadConfig(file), { message: `${file}: routes.0.upstreams.0: expected an http:// URL, got "ftp://x"` });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('listen port 0 asks for any free port; ports above 65535 are still refused', () => {
  const ok = parseConfig('listen: ["127.0.0.1:0"]\nroutes:\n  - { name: t, prefix: /t, upstreams: ["http://127.0.0.1:1"] }\n', 'p0.yaml');
  assert.deepEqual(ok.listen, [{ host: '127.0.0.1', port: 0 }]);
  assert.throws(
    () => parseConfig('listen: ["127.0.0.1:65536"]\nroutes:\n  - { name: t, prefix: /t, upstreams: ["http://127.0.0.1:1"] }\n', 'p1.yaml'),
    /p1\.yaml: listen\.0: /,
  );
});

test('services.text.maxBodyBytes: the text service body limit, a positive whole number of bytes; only the text service has it', () => {
  const base = 'routes: [{ name: t, prefix: /text, upstreams: ["http://127.0.0.1:5002"] }]\n';
  const c = parseConfig(`${base}services: { text: { port: 5002, maxBodyBytes: 1048576 }, video: { port: 5001 } }\n`, 'qsr.yaml', { baseDir: '/srv' });
  assert.deepEqual(c.services, { text: { port: 5002, maxBodyBytes: 1048576 }, video: { port: 5001 } });
  assert.deepEqual(problems(`${base}services: { text: { port: 5002, maxBodyBytes: "10MB" } }\n`), [
    'qsr.yaml: services.text.maxBodyBytes: expected a positive whole number of bytes, got "10MB"',
  ]);
  assert.deepEqual(problems(`${base}services: { text: { port: 5002, maxBodyBytes: 0 } }\n`), [
    'qsr.yaml: services.text.maxBodyBytes: expected a positive whole number of bytes, got 0',
  ]);
  assert.deepEqual(problems(`${base}services: { video: { port: 5001, maxBodyBytes: 10 } }\n`), ['qsr.yaml: services.video.maxBodyBytes: unknown key']);
});

test('quic.ciphers: suite names in preference order; an unknown name or an empty list is an error naming the entry', () => {
  const base = 'routes: [{ name: a, prefix: /a, upstreams: ["http://127.0.0.1:5001"] }]\n';
  const c = parseConfig(`${base}quic: { ciphers: [TLS_CHACHA20_POLY1305_SHA256, TLS_AES_128_GCM_SHA256] }\n`, 'q.yaml', { baseDir: '/base' });
  assert.deepEqual(c.quic.ciphers, ['TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256']);
  assert.equal(parseConfig(base, 'q.yaml', { baseDir: '/base' }).quic.ciphers, undefined);
  const bad = problems(`${base}quic: { ciphers: [TLS_AES_128_GCM_SHA256, AES128] }\n`);
  assert.equal(bad.length, 1, bad.join('\n'));
  assert.match(bad[0]!, /^qsr\.yaml: quic\.ciphers\.1: expected a TLS 1\.3 cipher suite \(TLS_AES_128_GCM_SHA256, .*\), got "AES128"$/);
  assert.match(problems(`${base}quic: { ciphers: [] }\n`)[0]!, /^qsr\.yaml: quic\.ciphers: /);
});

test('quic.congestionControl: newreno or cubic; anything else is an error naming the key', () => {
  const base = 'routes: [{ name: a, prefix: /a, upstreams: ["http://127.0.0.1:5001"] }]\n';
  assert.equal(parseConfig(`${base}quic: { congestionControl: cubic }\n`, 'q.yaml', { baseDir: '/base' }).quic.congestionControl, 'cubic');
  assert.equal(parseConfig(`${base}quic: { congestionControl: newreno }\n`, 'q.yaml', { baseDir: '/base' }).quic.congestionControl, 'newreno');
  assert.equal(defaultConfig().quic.congestionControl, 'newreno');
  assert.deepEqual(problems(`${base}quic: { congestionControl: bbr }\n`), ['qsr.yaml: quic.congestionControl: expected newreno or cubic, got "bbr"']);
  assert.deepEqual(problems(`${base}quic: { congestionControl: 1 }\n`), ['qsr.yaml: quic.congestionControl: expected newreno or cubic, got 1']);
});
