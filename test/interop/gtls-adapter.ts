// Stand-in for "our side" that speaks the ours.ts JSON-lines contract by wrapping gtlsserver / gtlsclient and
// translating their ngtcp2 debug log into events. It exists only to validate the harness's our-server / our-client
// paths before our own QUIC stack is built: run the matrix with QSR_INTEROP_FAKE_OURS=gtls. It is never "ours".
//
//   node dist/test/interop/gtls-adapter.js server ADDR PORT KEY CERT KEYLOG DOCROOT [--ciphers=...]
//   node dist/test/interop/gtls-adapter.js client HOST PORT KEYLOG URL... [--ciphers=...]
// Without arguments it does nothing (node --test dist/test/ executes every file under test/).

import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { findProgram, suiteFromGnutlsName, udpPortBound, waitFor } from './peers.js';

function emit(ev: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(ev) + '\n');
}

function run(prog: string, args: string[], keylog: string): void {
  const cmd = findProgram(prog);
  if (cmd === null) {
    emit({ event: 'error', message: `${prog} not installed` });
    process.exit(2);
  }
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SSLKEYLOGFILE: keylog } });
  const hard = setTimeout(() => child.kill('SIGKILL'), 60_000);
  for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => child.kill(sig));
  child.on('exit', (code) => {
    clearTimeout(hard);
    emit({ event: 'closed', exitCode: code });
    process.exit(0);
  });

  let cipher: string | undefined;
  const rx = new Map<number, { offset: number; length: number; fin: boolean }>();
  let pendingDump: number | null = null;
  const onLine = (line: string): void => {
    let m = /^Negotiated cipher suite is (\S+)/.exec(line);
    if (m) cipher = suiteFromGnutlsName(m[1]!) ?? m[1];
    m = /^Negotiated ALPN is (\S+)/.exec(line);
    if (m) emit({ event: 'handshake', alpn: m[1], cipher });
    if (/ pkt decrypting with new key/.test(line)) emit({ event: 'key_update', initiator: 'peer' });
    m = / frm rx \d+ 1RTT STREAM\(0x[0-9a-f]+\) id=0x([0-9a-f]+) fin=(\d) offset=(\d+) len=(\d+)/.exec(line);
    if (m) rx.set(parseInt(m[1]!, 16), { offset: Number(m[3]), length: Number(m[4]), fin: m[2] === '1' });
    m = /^Ordered STREAM data stream_id=0x([0-9a-f]+)/.exec(line);
    if (m) {
      pendingDump = parseInt(m[1]!, 16);
      return;
    }
    if (pendingDump !== null) {
      const sid = pendingDump;
      pendingDump = null;
      const d = /^[0-9a-f]{8} {2}((?:[0-9a-f]{2} {1,2})+)/.exec(line);
      const f = rx.get(sid);
      const initiatedByServer = (sid & 1) === 1;
      // only streams the PEER opened: the adapter's role decides which initiator bit that is
      if (initiatedByServer === (role === 'client')) {
        emit({
          event: 'peer_stream_data',
          streamId: sid,
          offset: f?.offset,
          length: f?.length,
          fin: f?.fin,
          headHex: d ? d[1]!.replace(/\s+/g, '') : '',
        });
      }
    }
  };
  if (role === 'server') {
    const port = Number(args[args.length - 3]);
    void waitFor(() => udpPortBound(port), 5000).then((ok) => ok && emit({ event: 'listening', port }));
  }
  createInterface({ input: child.stdout }).on('line', onLine);
  createInterface({ input: child.stderr }).on('line', onLine);
}

const [role, ...rest] = process.argv.slice(2);
const opts = rest.filter((a) => a.startsWith('--'));
const pos = rest.filter((a) => !a.startsWith('--'));
if (role === 'server') {
  const [addr, port, key, cert, keylog, docroot] = pos as [string, string, string, string, string, string];
  run('gtlsserver', ['--max-gso-dgrams=1', '--no-http-dump', ...opts, '-d', docroot, addr, port, key, cert], keylog);
} else if (role === 'client') {
  const [host, port, keylog, ...urls] = pos as [string, string, string, ...string[]];
  run('gtlsclient', ['--no-http-dump', '--exit-on-all-streams-close', '--timeout=5s', ...opts, host, port, ...urls], keylog);
}
