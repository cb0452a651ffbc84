/**
 * The control service (plain HTTP/1.1): JSON commands on `POST /control` (body at most 1 MB, else 413), state in
 * memory for the life of the process.
 * - `{"command":"ping"}` -> `{"ok":true,"pong":true,"service":"control","uptimeMs":n}`
 * - `{"command":"set","key":"k","value":any}` -> `{"ok":true,"key":"k","replaced":bool}`
 * - `{"command":"get","key":"k"}` -> `{"ok":true,"key":"k","found":true,"value":any}`; a key never set gives
 *   `{"ok":true,"key":"k","found":false,"value":null}`.
 * Malformed JSON, a non-object, an unknown command or a missing/invalid field -> 400 `{"ok":false,"error":"..."}`.
 * `GET /control/status` -> `{"ok":true,"service":"control","keys":n,"uptimeMs":n,"requests":n}` (requests counts
 * every request this service has received, this one included).
 */
import type http from 'node:http';
import { ServiceServer, readBody, sendJson, type ServiceOptions } from './common.js';

export const CONTROL_LIMIT = 1024 * 1024;

type Reply = { status: number; body: Record<string, unknown> };

const bad = (error: string): Reply => ({ status: 400, body: { ok: false, error } });

function run(server: ServiceServer, store: Map<string, unknown>, body: Buffer): Reply {
  let msg: unknown;
  try {
    msg = JSON.parse(body.toString('utf8'));
  } catch (err) {
    return bad(`malformed JSON: ${(err as Error).message}`);
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg)) return bad('the body must be a JSON object');
  const m = msg as Record<string, unknown>;
  if (!('command' in m)) return bad("missing field 'command'");
  const key = m.key;
  const needKey = (): string | undefined =>
    typeof key === 'string' && key.length > 0 ? undefined : "field 'key' must be a non-empty string";
  switch (m.command) {
    case 'ping':
      return { status: 200, body: { ok: true, pong: true, service: 'control', uptimeMs: Date.now() - server.startedAt } };
    case 'set': {
      const e = needKey();
      if (e) return bad(e);
      if (!('value' in m)) return bad("missing field 'value'");
      const replaced = store.has(key as string);
      store.set(key as string, m.value);
      return { status: 200, body: { ok: true, key, replaced } };
    }
    case 'get': {
      const e = needKey();
      if (e) return bad(e);
      const found = store.has(key as string);
      return { status: 200, body: { ok: true, key, found, value: found ? store.get(key as string) : null } };
    }
    default:
      return bad(`unknown command ${JSON.stringify(m.command)} (expected ping, set or get)`);
  }
}

/** The control service as an http.Server, not yet listening. */
export function createControlService(options: ServiceOptions = {}): ServiceServer {
  const store = new Map<string, unknown>();
  const server: ServiceServer = new ServiceServer(
    'control',
    {
      '/control': {
        POST: async (req: http.IncomingMessage, res: http.ServerResponse) => {
          const body = await readBody(req, res, CONTROL_LIMIT);
          if (!body) return;
          const reply = run(server, store, body);
          sendJson(res, reply.status, reply.body);
        },
      },
      '/control/status': {
        GET: (_req, res) =>
          sendJson(res, 200, {
            ok: true,
            service: 'control',
            keys: store.size,
            uptimeMs: Date.now() - server.startedAt,
            requests: server.stats.requests,
          }),
      },
    },
    options,
  );
  return server;
}
