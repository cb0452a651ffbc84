// Our side of interop tests: the `qsr serve` and `qsr get` command lines, and the JSON document `qsr get --json`
// prints (src/cli/get.ts), parsed.

import { fileURLToPath } from 'node:url';
import type { GetResult } from '../../src/cli/get.js';

export interface OurCommand {
  cmd: string;
  args: string[];
  env?: Record<string, string>;
}

/** The built `qsr` command (dist/src/cli/qsr.js), run with this Node. */
function qsr(args: string[]): OurCommand {
  return { cmd: process.execPath, args: [fileURLToPath(new URL('../../src/cli/qsr.js', import.meta.url)), ...args] };
}

const hostPort = (addr: string, port: number): string => `${addr.includes(':') ? `[${addr}]` : addr}:${port}`;

export interface OurServeOptions {
  addr: string;
  port: number;
  /** Document root. */
  dir: string;
  certFile: string;
  keyFile: string;
  keylogFile: string;
  workDir: string;
}

/** `qsr serve --dir DIR --listen ADDR:PORT --cert F --key F --keylog F` (static files over HTTP/3). */
export function ourServeCommand(o: OurServeOptions): OurCommand {
  return qsr(['serve', '--dir', o.dir, '--listen', hostPort(o.addr, o.port), '--cert', o.certFile, '--key', o.keyFile, '--keylog', o.keylogFile]);
}

export interface OurGetOptions {
  /** All on one origin: one connection. */
  urls: string[];
  caFile: string;
  serverName: string;
  keylogFile: string;
  /** -o DIR: save each body. */
  outputDir?: string;
  /** -X METHOD */
  method?: string;
  /** -d @FILE: stream this file as the request body. */
  dataFile?: string;
  /** --timeout for the whole run, ms (qsr get's own limit; the harness adds a hard one). */
  timeoutMs?: number;
  workDir: string;
}

/** `qsr get URL... --json --ca F --server-name N --keylog F [-o DIR] [-X M] [-d @FILE]`. */
export function ourGetCommand(o: OurGetOptions): OurCommand {
  const args = ['get', ...o.urls, '--json', '--ca', o.caFile, '--server-name', o.serverName, '--keylog', o.keylogFile];
  if (o.outputDir !== undefined) args.push('-o', o.outputDir);
  if (o.method !== undefined) args.push('-X', o.method);
  if (o.dataFile !== undefined) args.push('-d', `@${o.dataFile}`);
  if (o.timeoutMs !== undefined) args.push('--timeout', String(o.timeoutMs));
  return qsr(args);
}

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
