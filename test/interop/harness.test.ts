// Self-test of the interop harness (test/interop): gtlsclient -> gtlsserver on loopback, captured with tshark and
// decrypted with gtlsserver's SSLKEYLOGFILE. Checks the output parsers, the capture/decrypt path and the matrix runner.
// Skipped when the peers are not installed, except with CI=true, where that is a failure.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { missingPrograms, makeWorkDir, parseGtlsClientOutput, gtlsClientArgs, gnutlsCiphers, H3_NO_ERROR } from './peers.js';
import { analyseTsharkJson, h3FrameName, decryptReport, formatReport } from './capture.js';
import { parseOurEvents, sawPeerControlStream } from './ours.js';
import { runInterop, selfcheck, defaultCertDir, formatMatrix, PEER_OUR_SERVER, PEER_OUR_CLIENT } from './run.js';

const needed = ['gtlsclient', 'gtlsserver', 'tshark', 'editcap'];
const { missing, hint } = missingPrograms(needed);
const ci = process.env.CI === 'true';
const skipReason = missing.length > 0 && !ci ? hint : false;

test('parsers: gtlsclient output, our JSON events, tshark JSON pairing', () => {
  const out = [
    'I00000000 0x1234 frm tx 0 Initial CRYPTO(0x06) offset=0 len=300',
    'QUIC handshake has completed',
    'Negotiated cipher suite is CHACHA20-POLY1305',
    'Negotiated ALPN is h3',
    'Initiate key update',
    'http: stream 0x4 [:status: 404]',
    'HTTP stream 4 closed with error code 256',
    'ngtcp2_conn_handle_expiry: ERR_HANDSHAKE_TIMEOUT',
    'ngtcp2_conn_read_pkt: ERR_DRAINING',
    'I00000430 0x07e1 frm rx 6 1RTT CONNECTION_CLOSE(0x1d) error_code=(unknown)(0x100) frame_type=0 reason_len=0 reason=[]',
    'I00000431 0x07e1 frm rx 7 1RTT CONNECTION_CLOSE(0x1c) error_code=PROTOCOL_VIOLATION(0xa) frame_type=0 reason_len=0 reason=[]',
  ].join('\n');
  const r = parseGtlsClientOutput(out);
  assert.equal(r.handshakeCompleted, true);
  assert.equal(r.alpn, 'h3');
  assert.equal(r.suite, 'TLS_CHACHA20_POLY1305_SHA256');
  assert.equal(r.keyUpdatesInitiated, 1);
  assert.equal(r.statuses.get(4), 404);
  assert.equal(r.streamCloses.get(4), H3_NO_ERROR);
  assert.equal(r.errors.length, 2, r.errors.join('\n'));
  assert.equal(r.errors[0], 'ngtcp2_conn_handle_expiry: ERR_HANDSHAKE_TIMEOUT');
  assert.match(r.errors[1]!, /PROTOCOL_VIOLATION/);
  assert.equal(parseGtlsClientOutput('').handshakeCompleted, false);

  assert.equal(gnutlsCiphers(['TLS_CHACHA20_POLY1305_SHA256']), 'NORMAL:-VERS-ALL:+VERS-TLS1.3:-CIPHER-ALL:+CHACHA20-POLY1305');
  const args = gtlsClientArgs({ workDir: '/x', host: '127.0.0.1', port: 5, urls: ['https://127.0.0.1:5/'], keyUpdate: '1s', txLoss: 0.1 });
  assert.ok(args.includes('--key-update=1s') && args.includes('--tx-loss=0.1') && args.includes('--exit-on-all-streams-close'));
  assert.throws(() => gtlsClientArgs({ workDir: '/x', host: '10.0.0.1', port: 5, urls: [] }), /non-loopback/);

  const ev = parseOurEvents('noise\n{"event":"handshake","alpn":"h3"}\n{bad json\n{"event":"peer_stream_data","streamId":2,"offset":0,"headHex":"0004"}\n');
  assert.equal(ev.length, 2);
  assert.equal(sawPeerControlStream(ev, true), true);
  assert.equal(sawPeerControlStream(ev, false), false); // stream 2 is client-initiated: not the server's control stream

  // one datagram: a 1-RTT packet with two STREAM frames (http3 layers pair in order) + an undecryptable packet
  const rep = analyseTsharkJson([
    {
      _source: {
        layers: {
          quic: [
            { 'quic.frame': [{ 'quic.frame_type': '11', 'quic.stream.stream_id': '0' }, { 'quic.frame_type': '10', 'quic.stream.stream_id': '3' }] },
            { 'quic.remaining_payload': 'aa:bb' },
          ],
          http3: [{ 'http3.frame_type': ['1', '0'] }, { 'http3.stream_type': '0', 'http3.frame_type': ['4', '33'] }],
        },
      },
    },
  ]);
  assert.equal(rep.quicPackets, 2);
  assert.equal(rep.undecrypted, 1);
  assert.deepEqual(rep.http3Frames.get(0), ['HEADERS', 'DATA']);
  assert.deepEqual(rep.http3Frames.get(3), ['SETTINGS', 'GREASE']);
  assert.equal(rep.http3StreamTypes.get(3), 'control');
  assert.equal(h3FrameName(0x7), 'GOAWAY');
});

test('selfcheck: gtlsclient -> gtlsserver, captured and decrypted', { skip: skipReason, timeout: 60_000 }, async () => {
  assert.deepEqual(missing, [], `${hint} (CI=true: the interop peers must be installed)`);
  const workDir = makeWorkDir('qsr-harness-');
  const out = await selfcheck({ ci, workRoot: workDir, certDir: defaultCertDir() }, join(workDir, 'selfcheck'));
  assert.equal(out.status, 'pass', `${out.reason}\n${JSON.stringify(out.details, null, 1)}`);
  const d = String(out.details?.decrypt);
  assert.match(d, /undecrypted=0 /);
  assert.match(d, / 0:\[HEADERS,[^\]]*DATA/);
  // and the undecrypted count can fail: the same capture with an empty key log leaves the 1-RTT packets opaque
  const empty = join(workDir, 'empty.keylog');
  writeFileSync(empty, '');
  const none = await decryptReport(join(workDir, 'selfcheck', 'capture.pcapng'), empty, workDir);
  assert.ok(none.quicPackets > 0);
  assert.ok(none.undecrypted > 0, formatReport(none));
  assert.equal(none.http3Frames.size, 0);
});

test('interop: our QUIC/HTTP/3 client and server against ngtcp2 (handshake, chacha20, keyupdate, http3, upload, transferloss, decrypt)', { skip: skipReason, timeout: 240_000 }, async () => {
  assert.deepEqual(missing, [], hint);
  const res = await runInterop({ ci });
  const mine = res.filter((r) => r.peer === PEER_OUR_SERVER || r.peer === PEER_OUR_CLIENT);
  const bad = mine.filter((r) => r.status !== 'pass').map((r) => `${r.case} [${r.peer}] ${r.status}: ${r.reason}`);
  assert.deepEqual(bad, [], formatMatrix(res));
  const h3 = ['http3', 'decrypt/http3', 'upload', 'decrypt/upload'];
  for (const c of ['handshake', 'chacha20', 'keyupdate', 'decrypt/handshake', 'decrypt/chacha20', 'decrypt/keyupdate', ...h3, 'transferloss', 'decrypt/transferloss'])
    assert.ok(mine.some((r) => r.case === c && r.peer === PEER_OUR_SERVER), `case ${c} ran against our server`);
  for (const c of ['handshake', 'chacha20', 'decrypt/handshake', 'decrypt/chacha20', ...h3])
    assert.ok(mine.some((r) => r.case === c && r.peer === PEER_OUR_CLIENT), `case ${c} ran with our client`);
});

test('runner our-side paths, with gtls standing in for ours (QSR_INTEROP_FAKE_OURS=gtls)', { skip: skipReason, timeout: 50_000 }, async () => {
  assert.deepEqual(missing, [], hint);
  const saved = process.env.QSR_INTEROP_FAKE_OURS;
  process.env.QSR_INTEROP_FAKE_OURS = 'gtls';
  try {
    const res = await runInterop({ only: ['handshake', 'keyupdate', 'decrypt'], ci });
    const bad = res.filter((r) => r.status !== 'pass').map((r) => `${r.case} [${r.peer}] ${r.reason}`);
    assert.deepEqual(bad, []);
    assert.ok(res.some((r) => r.case === 'decrypt/keyupdate' && r.peer === PEER_OUR_SERVER));
    assert.ok(res.some((r) => r.case === 'handshake' && r.peer === PEER_OUR_CLIENT));
  } finally {
    if (saved === undefined) delete process.env.QSR_INTEROP_FAKE_OURS;
    else process.env.QSR_INTEROP_FAKE_OURS = saved;
  }
});
