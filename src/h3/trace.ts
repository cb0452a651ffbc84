/**
 * HTTP/3 trace events in the shape of the qlog HTTP/3 event definitions (draft-ietf-quic-qlog-h3-events-03, the
 * "http" category of qlog 0.3): frames created and parsed on every stream, and stream types. They go to the same
 * sink as the connection's QUIC events (QuicConnection.trace), stamped by the session with the connection's clock;
 * every emission is guarded by `if (trace)`, so with tracing off none of this runs. PRIORITY_UPDATE (RFC 9218), which the -03 draft predates, is logged in the shape
 * later drafts give it.
 */
import { FrameType, SettingId, isGrease } from './frames.js';
import type { HeaderList } from './validate.js';

export type H3StreamType = 'request' | 'control' | 'push' | 'reserved' | 'unknown' | 'qpack_encode' | 'qpack_decode';

export type QlogH3Frame =
  | { frame_type: 'data' }
  | { frame_type: 'headers'; headers: { name: string; value: string }[] }
  | { frame_type: 'settings'; settings: { name: string; value: number }[] }
  | { frame_type: 'goaway'; id: number }
  | { frame_type: 'max_push_id'; push_id: number }
  | { frame_type: 'cancel_push'; push_id: number }
  | { frame_type: 'priority_update'; prioritized_element_type: 'request_stream' | 'push_stream'; element_id: number; priority_field_value: string }
  | { frame_type: 'reserved'; length: number }
  | { frame_type: 'unknown'; raw_frame_type: number; raw_length: number };

interface Ev<N extends string, D extends object> {
  name: N;
  data: D;
}

export type H3TraceEvent =
  | Ev<'http:stream_type_set', { owner: 'local' | 'remote'; stream_id: number; stream_type: H3StreamType; raw_stream_type?: number }>
  | Ev<'http:frame_created' | 'http:frame_parsed', { stream_id: number; length: number; frame: QlogH3Frame }>;

/** The sink as the HTTP/3 layer uses it: events without a time (the session stamps them). */
export type H3Trace = (e: H3TraceEvent) => void;

const SETTING_NAMES = new Map<number, string>([
  [SettingId.QPACK_MAX_TABLE_CAPACITY, 'SETTINGS_QPACK_MAX_TABLE_CAPACITY'],
  [SettingId.MAX_FIELD_SECTION_SIZE, 'SETTINGS_MAX_FIELD_SECTION_SIZE'],
  [SettingId.QPACK_BLOCKED_STREAMS, 'SETTINGS_QPACK_BLOCKED_STREAMS'],
]);

export function frameEvent(name: 'http:frame_created' | 'http:frame_parsed', streamId: number, length: number, frame: QlogH3Frame): H3TraceEvent {
  return { name, data: { stream_id: streamId, length, frame } };
}

export function streamTypeEvent(owner: 'local' | 'remote', streamId: number, rawType: number | null): H3TraceEvent {
  const data: { owner: 'local' | 'remote'; stream_id: number; stream_type: H3StreamType; raw_stream_type?: number } = {
    owner,
    stream_id: streamId,
    stream_type: rawType === null ? 'request' : uniStreamType(rawType),
  };
  if (data.stream_type === 'unknown' || data.stream_type === 'reserved') data.raw_stream_type = rawType!;
  return { name: 'http:stream_type_set', data };
}

function uniStreamType(t: number): H3StreamType {
  switch (t) {
    case 0x00:
      return 'control';
    case 0x01:
      return 'push';
    case 0x02:
      return 'qpack_encode';
    case 0x03:
      return 'qpack_decode';
    default:
      return isGrease(t) ? 'reserved' : 'unknown';
  }
}

export function headersFrame(fields: HeaderList): QlogH3Frame {
  return { frame_type: 'headers', headers: fields.map(([name, value]) => ({ name, value })) };
}

export function settingsFrame(settings: Iterable<[id: number, value: number]>): QlogH3Frame {
  const list: { name: string; value: number }[] = [];
  for (const [id, value] of settings) list.push({ name: SETTING_NAMES.get(id) ?? `0x${id.toString(16)}`, value });
  return { frame_type: 'settings', settings: list };
}

/** A frame type this implementation skips: GREASE (reserved, RFC 9114 §7.2.8) or unknown. */
export function skippedFrame(type: number, length: number): QlogH3Frame {
  return isGrease(type) ? { frame_type: 'reserved', length } : { frame_type: 'unknown', raw_frame_type: type, raw_length: length };
}

export function priorityUpdateFrame(type: number, elementId: number, value: string): QlogH3Frame {
  return {
    frame_type: 'priority_update',
    prioritized_element_type: type === FrameType.PRIORITY_UPDATE_PUSH ? 'push_stream' : 'request_stream',
    element_id: elementId,
    priority_field_value: value,
  };
}
