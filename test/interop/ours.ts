// Our side of the interop matrix: the JSON document `qsr get --json` prints (src/cli/get.ts), parsed for the
// qsr-get client of matrix-peers.ts.

import type { GetResult } from '../../src/cli/get.js';

/** One request in `qsr get --json` output. */
export type GetJsonRequest = GetResult;

export interface GetJson {
  origin: string;
  method: string;
  error?: string;
  requests: GetJsonRequest[];
  summary: { requests: number; ok: number; failed: number; bytes: number; wallMs: number; mbPerSec: number };
}

/** The JSON document `qsr get --json` printed (the whole of stdout), or an Error saying why it is not one. */
export function parseGetJson(stdout: string): GetJson | Error {
  let v: unknown;
  try {
    v = JSON.parse(stdout);
  } catch (e) {
    return new Error(`qsr get --json output is not JSON (${(e as Error).message}): ${stdout.slice(0, 300)}`);
  }
  if (typeof v !== 'object' || v === null || !Array.isArray((v as { requests?: unknown }).requests)) {
    return new Error(`qsr get --json output has no requests array: ${stdout.slice(0, 300)}`);
  }
  return v as GetJson;
}
