/**
 * Client commands against servers that never let the handshake finish (issue 8, defect 3), over real UDP on
 * loopback: a socket that never answers, one that answers with Version Negotiation and one that answers with Retry.
 * The Http3Client library rejects with a HandshakeError naming what happened, and `qsr get`, `qsr client` and
 * `qsr quic-connect` print it and exit 1 (short --handshake-timeout values keep the test quick; every child process
 * and wait is bounded).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket, type Socket } from 'node:dgram';
import { randomBytes } from 'node:crypto';
import { Http3Client } from '../../src/h3/client.js';
import { HandshakeError } from '../../src/io/udp.js';
import { buildRetry, buildVersionNegotiation, parseHeader, PacketType } from '../../src/quic/packet/header.js';
import { QUIC_V1 } from '../../src/quic/types.js';
import { runQsrCaptured, type QsrResult } from './qsr-run.js';



/** Runs `qsr ...args` to completion; SIGKILL (its own PID) after `ms`, which fails the test. */
const qsr = (args: string[], ms = 20_000): Promise<QsrResult> => runQsrCaptured(args, { ms });

type Answer = 'nothing' | 'version_negotiation' | 'retry';

/** A UDP socket on 127.0.0.1 that reads client Initials and answers each as told. */
async function fakeServer(answer: Answer): Promise<{ port: number; received: () => number; close: () => Promise<void> }> {
  const sock: Socket = createSocket('udp4');
  let received = 0;
  sock.on('message', (msg, from) => {
    received++;
    if (answer === 'nothing') return;
    let h;
    try {
      h = parseHeader(msg, 0, 8);
    } catch {
      return;
    }
    if (h.type !== PacketType.Initial) return;
    const reply =
      answer === 'version_negotiation'
        ? buildVersionNegotiation(h.scid, h.dcid, [0x6b3343cf, 0xff00001d])
        : buildRetry(QUIC_V1, h.scid, randomBytes(8), randomBytes(24), h.dcid);
    sock.send(reply, from.port, from.address);
  });
  await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
  return { port: sock.address().port, received: () => received, close: () => new Promise((r) => sock.close(() => r())) };
}

const MESSAGES: Record<Answer, (port: number) => RegExp> = {
  nothing: (port) => new RegExp(`no answer from the server at 127\\.0\\.0\\.1:${port} within 400 ms \\(nothing received\\)`),
  version_negotiation: () => /does not support QUIC version 1: its Version Negotiation offered 0x6b3343cf \(QUIC v2\), 0xff00001d \(draft-29\)/,
  retry: () => /requires address validation \(Retry\), not supported yet/,
};

for (const answer of ['nothing', 'version_negotiation', 'retry'] as const) {
  test(`Http3Client.connect against a server answering ${answer}: rejects with a HandshakeError that says so`, { timeout: 15_000 }, async () => {
    const srv = await fakeServer(answer);
    try {
      const err = await Http3Client.connect(`https://127.0.0.1:${srv.port}/`, { insecure: true, handshakeTimeout: 400 }).then(
        () => assert.fail('connected'),
        (e: unknown) => e,
      );
      assert.ok(err instanceof HandshakeError, `got ${String(err)}`);
      assert.match(err.message, MESSAGES[answer](srv.port));
      assert.equal(err.closeInfo.handshakeFailure?.kind, answer === 'nothing' ? 'timeout' : answer);
      assert.ok(srv.received() >= 1, 'the client did send its Initial');
    } finally {
      await srv.close();
    }
  });
}

test('qsr get / qsr client / qsr quic-connect: exit 1 with the reason when the server never answers or answers Retry', { timeout: 60_000 }, async () => {
  for (const answer of ['nothing', 'retry'] as const) {
    const srv = await fakeServer(answer);
    try {
      const url = `https://127.0.0.1:${srv.port}/`;
      const get = await qsr(['get', url, '--insecure', '--handshake-timeout', '400']);
      assert.equal(get.code, 1, get.stderr);
      assert.match(get.stderr, new RegExp(`qsr get: cannot connect to https://127\\.0\\.0\\.1:${srv.port}: `));
      assert.match(get.stderr, MESSAGES[answer](srv.port));
      const client = await qsr(['client', '--url', url, '--insecure', '--handshake-timeout', '400']);
      assert.equal(client.code, 1, client.stderr);
      assert.match(client.stderr, MESSAGES[answer](srv.port));
      const probe = await qsr(['quic-connect', url, '--insecure', '--handshake-timeout', '400']);
      assert.equal(probe.code, 1, probe.stdout + probe.stderr);
      assert.match(probe.stdout, /"event":"error"/);
      assert.match(probe.stdout, MESSAGES[answer](srv.port));
    } finally {
      await srv.close();
    }
  }
  const bad = await qsr(['get', 'https://127.0.0.1:9/', '--handshake-timeout', 'soon']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--handshake-timeout/);
});
