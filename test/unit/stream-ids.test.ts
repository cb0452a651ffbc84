import { test } from 'node:test';
import assert from 'node:assert/strict';
import { StreamIdManager, isBidi, isClientInitiated, isLocal, streamId, MAX_STREAMS_LIMIT } from '../../src/quic/stream/ids.js';
import { TransportError, TransportErrorCode } from '../../src/quic/errors.js';

const limits = { localMaxStreamsBidi: 4, localMaxStreamsUni: 2, peerMaxStreamsBidi: 2, peerMaxStreamsUni: 1 };

function isCode(code: number) {
  return (e: unknown): boolean => e instanceof TransportError && e.code === code;
}

test('ids: type bits (RFC 9000 §2.1 table 1)', () => {
  assert.deepEqual(
    [0, 1, 2, 3].map((id) => [isClientInitiated(id), isBidi(id)]),
    [
      [true, true],
      [false, true],
      [true, false],
      [false, false],
    ],
  );
  assert.equal(isLocal(4, 'client'), true);
  assert.equal(isLocal(4, 'server'), false);
  assert.equal(isLocal(7, 'server'), true);
  assert.equal(streamId(3, 'server', false), 15);
  assert.equal(isBidi(2 ** 40 + 2), false, 'large IDs keep their type bits');
  assert.equal(isClientInitiated(2 ** 40 + 1), false);
});

test('ids: local IDs respect the peer MAX_STREAMS; STREAMS_BLOCKED once per limit', () => {
  const m = new StreamIdManager('client', limits);
  assert.equal(m.nextLocalId(true), 0);
  assert.equal(m.nextLocalId(true), 4);
  assert.equal(m.blockedLimit(true), 2);
  assert.equal(m.nextLocalId(true), null);
  m.markBlockedSent(true, 2);
  assert.equal(m.blockedLimit(true), null);
  assert.equal(m.nextLocalId(false), 2);
  assert.equal(m.nextLocalId(false), null);
  m.setPeerMaxStreams(true, 1); // never decreases
  assert.equal(m.nextLocalId(true), null);
  m.setPeerMaxStreams(true, 3);
  assert.equal(m.localCredit(true), 1);
  assert.equal(m.nextLocalId(true), 8);
  assert.equal(m.blockedLimit(true), 3);
  assert.ok(m.isLocalOpened(8));
  assert.ok(!m.isLocalOpened(12));
  assert.throws(() => m.setPeerMaxStreams(true, MAX_STREAMS_LIMIT * 2), isCode(TransportErrorCode.FRAME_ENCODING_ERROR));

  const s = new StreamIdManager('server', limits);
  assert.equal(s.nextLocalId(true), 1);
  assert.equal(s.nextLocalId(false), 3);
});

test('ids: remote streams open implicitly, in order (RFC 9000 §3.2)', () => {
  const m = new StreamIdManager('server', limits);
  assert.deepEqual(m.onRemoteStream(8), [0, 4, 8]);
  assert.deepEqual(m.onRemoteStream(4), [], 'already open');
  assert.deepEqual(m.onRemoteStream(12), [12]);
  assert.deepEqual(m.onRemoteStream(6), [2, 6], 'unidirectional counted separately');
  assert.equal(m.remoteOpenedCount(true), 4);
  assert.throws(() => m.onRemoteStream(1), 'our own stream is not a remote one');

  const c = new StreamIdManager('client', limits);
  assert.deepEqual(c.onRemoteStream(5), [1, 5]);
  assert.deepEqual(c.onRemoteStream(3), [3]);
});

test('ids: STREAM_LIMIT_ERROR past our MAX_STREAMS', () => {
  const m = new StreamIdManager('server', limits);
  assert.deepEqual(m.onRemoteStream(12), [0, 4, 8, 12]); // 4 bidi allowed: index 3 is the last
  assert.throws(() => m.onRemoteStream(16), isCode(TransportErrorCode.STREAM_LIMIT_ERROR));
  assert.throws(() => m.onRemoteStream(10), isCode(0x04)); // uni index 2, limit 2
  assert.deepEqual(m.onRemoteStream(6), [2, 6]);
});

test('ids: MAX_STREAMS credit returns as remote streams close', () => {
  const m = new StreamIdManager('server', limits);
  m.onRemoteStream(12);
  assert.equal(m.maxStreamsUpdate(true), null);
  m.onRemoteStreamClosed(true);
  assert.equal(m.maxStreamsUpdate(true), null, 'one of four closed: less than half');
  m.onRemoteStreamClosed(true);
  assert.equal(m.maxStreamsUpdate(true), 6);
  m.markMaxStreamsSent(true, 6);
  assert.equal(m.ourMaxStreams(true), 6);
  assert.equal(m.maxStreamsUpdate(true), null);
  assert.deepEqual(m.onRemoteStream(20), [16, 20]);
  assert.throws(() => m.onRemoteStream(24), isCode(0x04));
  assert.equal(m.maxStreamsUpdate(false), null, 'uni unaffected');
});
