import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  TransportParameterId as ID,
  decodeTransportParameters,
  defaultTransportParameters,
  encodeTransportParameters,
  type TransportParameters,
} from '../../src/quic/transport-params.js';
import { TransportError, TransportErrorCode } from '../../src/quic/errors.js';
import { Reader, encodeVarint } from '../../src/util/varint.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** One raw parameter: id, length, value. */
function param(id: number, value: Buffer): Buffer {
  return Buffer.concat([encodeVarint(id), encodeVarint(value.length), value]);
}
const intParam = (id: number, v: number): Buffer => param(id, encodeVarint(v));

/** The raw (id, value) list of an encoded extension body. */
function rawParams(buf: Buffer): [number, Buffer][] {
  const r = new Reader(buf);
  const out: [number, Buffer][] = [];
  while (!r.atEnd()) {
    const id = r.varint();
    out.push([id, r.bytes(r.varint())]);
  }
  return out;
}

function expectParamError(buf: Buffer, sender: 'client' | 'server', messagePart: RegExp): void {
  assert.throws(
    () => decodeTransportParameters(buf, sender),
    (e: unknown) => {
      assert.ok(e instanceof TransportError, `expected TransportError, got ${String(e)}`);
      assert.equal(e.code, TransportErrorCode.TRANSPORT_PARAMETER_ERROR);
      assert.match(e.message, messagePart);
      return true;
    },
  );
}

const isGrease = (id: number): boolean => id % 31 === 27;

test('transport params: RFC 9001 A.2 client parameters decode', () => {
  // The quic_transport_parameters extension body from the RFC 9001 Appendix A.2 ClientHello.
  const body = hex(`
    0408ffffffffffffffff05048000ffff07048000ffff0801100104800075300901100f088394c8f03e51570806048000ffff`);
  const p = decodeTransportParameters(body, 'client');
  assert.equal(p.initialMaxData, Number(2n ** 62n - 1n));
  assert.equal(p.initialMaxStreamDataBidiLocal, 65535);
  assert.equal(p.initialMaxStreamDataBidiRemote, 65535);
  assert.equal(p.initialMaxStreamDataUni, 65535);
  assert.equal(p.initialMaxStreamsBidi, 16);
  assert.equal(p.initialMaxStreamsUni, 16);
  assert.equal(p.maxIdleTimeout, 30000);
  assert.deepEqual(p.initialSourceConnectionId, hex('8394c8f03e515708'));
  // Everything else stays at its default.
  assert.equal(p.maxUdpPayloadSize, 65527);
  assert.equal(p.ackDelayExponent, 3);
  assert.equal(p.maxAckDelay, 25);
  assert.equal(p.activeConnectionIdLimit, 2);
  assert.equal(p.disableActiveMigration, false);
  assert.equal(p.originalDestinationConnectionId, undefined);
});

test('transport params: defaults match RFC 9000 §18.2', () => {
  assert.deepEqual(defaultTransportParameters(), {
    maxIdleTimeout: 0,
    maxUdpPayloadSize: 65527,
    initialMaxData: 0,
    initialMaxStreamDataBidiLocal: 0,
    initialMaxStreamDataBidiRemote: 0,
    initialMaxStreamDataUni: 0,
    initialMaxStreamsBidi: 0,
    initialMaxStreamsUni: 0,
    ackDelayExponent: 3,
    maxAckDelay: 25,
    disableActiveMigration: false,
    activeConnectionIdLimit: 2,
  });
});

test('transport params: a full server set round trips', () => {
  const p: TransportParameters = {
    originalDestinationConnectionId: hex('8394c8f03e515708'),
    maxIdleTimeout: 30000,
    statelessResetToken: Buffer.alloc(16, 0x5c),
    maxUdpPayloadSize: 1452,
    initialMaxData: 2 ** 40,
    initialMaxStreamDataBidiLocal: 16383,
    initialMaxStreamDataBidiRemote: 16384,
    initialMaxStreamDataUni: 2 ** 30,
    initialMaxStreamsBidi: 2 ** 60,
    initialMaxStreamsUni: 3,
    ackDelayExponent: 20,
    maxAckDelay: 2 ** 14 - 1,
    disableActiveMigration: true,
    preferredAddress: Buffer.concat([
      hex('7f000001 1151'),
      Buffer.alloc(16, 1),
      hex('1151'),
      hex('04 01020304'),
      Buffer.alloc(16, 0xee),
    ]),
    activeConnectionIdLimit: 8,
    initialSourceConnectionId: hex('f067a5502a4262b5'),
    retrySourceConnectionId: Buffer.alloc(20, 0x33),
  };
  assert.deepEqual(decodeTransportParameters(encodeTransportParameters(p), 'server'), p);
});

test('transport params: a client set round trips (zero-length source CID included)', () => {
  const p = { ...defaultTransportParameters(), initialMaxData: 1 << 20, initialSourceConnectionId: Buffer.alloc(0) };
  const enc = encodeTransportParameters(p);
  assert.deepEqual(decodeTransportParameters(enc, 'client'), p);
  const ids = rawParams(enc).map(([id]) => id);
  assert.deepEqual(ids.filter((id) => !isGrease(id)), [ID.initial_max_data, ID.initial_source_connection_id]);
});

test('transport params: parameters equal to their defaults are omitted; exactly one GREASE parameter', () => {
  for (let i = 0; i < 20; i++) {
    const raw = rawParams(encodeTransportParameters(defaultTransportParameters()));
    assert.equal(raw.length, 1, 'only the GREASE parameter');
    const [id, value] = raw[0];
    assert.ok(isGrease(id), `id ${id} is 31*N+27`);
    assert.ok(value.length <= 8);
  }
  // A default value set explicitly is still omitted; a changed one is present.
  const p = { ...defaultTransportParameters(), maxAckDelay: 25, ackDelayExponent: 4 };
  const ids = rawParams(encodeTransportParameters(p)).map(([id]) => id);
  assert.deepEqual(ids.filter((id) => !isGrease(id)), [ID.ack_delay_exponent]);
});

test('transport params: GREASE and unknown parameters are ignored', () => {
  const body = Buffer.concat([
    param(27, Buffer.alloc(0)),
    intParam(ID.initial_max_data, 1000),
    param(31 * 1000 + 27, hex('deadbeef')),
    intParam(0x20, 65535), // max_datagram_frame_size (RFC 9221): not ours, ignored
    param(0x2ab2, Buffer.alloc(0)), // grease_quic_bit (RFC 9287)
    param(2 ** 40, Buffer.alloc(3)),
  ]);
  assert.deepEqual(decodeTransportParameters(body, 'client'), { ...defaultTransportParameters(), initialMaxData: 1000 });
});

test('transport params: an empty extension gives all defaults', () => {
  assert.deepEqual(decodeTransportParameters(Buffer.alloc(0), 'server'), defaultTransportParameters());
});

test('transport params: decoded buffers do not alias the input', () => {
  const body = param(ID.initial_source_connection_id, hex('0102030405'));
  const p = decodeTransportParameters(body, 'client');
  body.fill(0);
  assert.deepEqual(p.initialSourceConnectionId, hex('0102030405'));
});

// ---- rejections: TRANSPORT_PARAMETER_ERROR ----

test('transport params reject: truncated value', () => {
  expectParamError(hex('04 04 8000'), 'client', /truncated/);
});

test('transport params reject: truncated length field', () => {
  expectParamError(hex('04'), 'client', /truncated/);
});

test('transport params reject: integer value length does not match its varint', () => {
  expectParamError(hex('04 02 05 00'), 'client', /initial_max_data/);
  expectParamError(hex('04 00'), 'client', /initial_max_data/);
});

test('transport params reject: duplicate parameter', () => {
  expectParamError(Buffer.concat([intParam(ID.initial_max_data, 1), intParam(ID.initial_max_data, 2)]), 'server', /duplicate/);
});

test('transport params reject: duplicate unknown parameter', () => {
  expectParamError(Buffer.concat([param(0x99, Buffer.alloc(1)), param(0x99, Buffer.alloc(2))]), 'server', /duplicate/);
});

test('transport params reject: client sends original_destination_connection_id', () => {
  const body = param(ID.original_destination_connection_id, Buffer.alloc(8));
  expectParamError(body, 'client', /original_destination_connection_id/);
  assert.ok(decodeTransportParameters(body, 'server').originalDestinationConnectionId);
});

test('transport params reject: client sends stateless_reset_token', () => {
  const body = param(ID.stateless_reset_token, Buffer.alloc(16));
  expectParamError(body, 'client', /stateless_reset_token/);
  assert.ok(decodeTransportParameters(body, 'server').statelessResetToken);
});

test('transport params reject: client sends preferred_address', () => {
  const pa = Buffer.concat([Buffer.alloc(24), hex('01 aa'), Buffer.alloc(16)]);
  expectParamError(param(ID.preferred_address, pa), 'client', /preferred_address/);
  assert.deepEqual(decodeTransportParameters(param(ID.preferred_address, pa), 'server').preferredAddress, pa);
});

test('transport params reject: client sends retry_source_connection_id', () => {
  const body = param(ID.retry_source_connection_id, Buffer.alloc(8));
  expectParamError(body, 'client', /retry_source_connection_id/);
  assert.ok(decodeTransportParameters(body, 'server').retrySourceConnectionId);
});

test('transport params reject: max_udp_payload_size below 1200', () => {
  expectParamError(intParam(ID.max_udp_payload_size, 1199), 'client', /max_udp_payload_size/);
  assert.equal(decodeTransportParameters(intParam(ID.max_udp_payload_size, 1200), 'client').maxUdpPayloadSize, 1200);
});

test('transport params reject: ack_delay_exponent above 20', () => {
  expectParamError(intParam(ID.ack_delay_exponent, 21), 'client', /ack_delay_exponent/);
  assert.equal(decodeTransportParameters(intParam(ID.ack_delay_exponent, 20), 'client').ackDelayExponent, 20);
});

test('transport params reject: max_ack_delay of 2^14 or more', () => {
  expectParamError(intParam(ID.max_ack_delay, 2 ** 14), 'client', /max_ack_delay/);
  assert.equal(decodeTransportParameters(intParam(ID.max_ack_delay, 2 ** 14 - 1), 'client').maxAckDelay, 2 ** 14 - 1);
});

test('transport params reject: active_connection_id_limit below 2', () => {
  expectParamError(intParam(ID.active_connection_id_limit, 1), 'client', /active_connection_id_limit/);
  expectParamError(intParam(ID.active_connection_id_limit, 0), 'client', /active_connection_id_limit/);
});

test('transport params reject: initial_max_streams_bidi above 2^60', () => {
  // 2^60 + 1 rounds to 2^60 as a double: the check must be exact.
  expectParamError(param(ID.initial_max_streams_bidi, hex('d000000000000001')), 'client', /initial_max_streams_bidi/);
  assert.equal(decodeTransportParameters(intParam(ID.initial_max_streams_bidi, 2 ** 60), 'client').initialMaxStreamsBidi, 2 ** 60);
});

test('transport params reject: initial_max_streams_uni above 2^60', () => {
  expectParamError(param(ID.initial_max_streams_uni, hex('ffffffffffffffff')), 'server', /initial_max_streams_uni/);
});

test('transport params reject: stateless_reset_token that is not 16 bytes', () => {
  expectParamError(param(ID.stateless_reset_token, Buffer.alloc(15)), 'server', /stateless_reset_token/);
  expectParamError(param(ID.stateless_reset_token, Buffer.alloc(17)), 'server', /stateless_reset_token/);
});

test('transport params reject: connection ID parameters longer than 20 bytes', () => {
  for (const id of [ID.original_destination_connection_id, ID.initial_source_connection_id, ID.retry_source_connection_id]) {
    expectParamError(param(id, Buffer.alloc(21)), 'server', /more than 20/);
    assert.ok(decodeTransportParameters(param(id, Buffer.alloc(20)), 'server'));
  }
});

test('transport params reject: disable_active_migration with a value', () => {
  expectParamError(param(ID.disable_active_migration, hex('01')), 'client', /disable_active_migration/);
  assert.equal(decodeTransportParameters(param(ID.disable_active_migration, Buffer.alloc(0)), 'client').disableActiveMigration, true);
});

test('transport params reject: malformed preferred_address', () => {
  const zeroCid = Buffer.concat([Buffer.alloc(24), hex('00'), Buffer.alloc(16)]);
  expectParamError(param(ID.preferred_address, zeroCid), 'server', /preferred_address/);
  const short = Buffer.concat([Buffer.alloc(24), hex('04 01020304'), Buffer.alloc(15)]);
  expectParamError(param(ID.preferred_address, short), 'server', /preferred_address/);
});

test('transport params: the encoder refuses values the decoder would reject as malformed', () => {
  const p = defaultTransportParameters();
  assert.throws(() => encodeTransportParameters({ ...p, statelessResetToken: Buffer.alloc(8) }), RangeError);
  assert.throws(() => encodeTransportParameters({ ...p, initialSourceConnectionId: Buffer.alloc(21) }), RangeError);
});
