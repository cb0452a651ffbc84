/** Test helpers for qlog files: an RFC 7464 JSON text sequence parser, and the schema compiled with Ajv. */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Ajv, type ValidateFunction } from 'ajv';

/**
 * Parses a JSON text sequence (RFC 7464 §2.2) strictly: the text starts with RS (0x1E), every record is RS, one JSON
 * text, then LF (the qlog mapping requires the LF). Throws naming the record that is not.
 */
export function parseJsonSeq(text: string): unknown[] {
  if (text.length === 0) return [];
  if (text[0] !== '\x1e') throw new Error('a JSON text sequence starts with RS (0x1e)');
  const parts = text.split('\x1e').slice(1);
  return parts.map((p, i) => {
    if (!p.endsWith('\n')) throw new Error(`record ${i} does not end with LF`);
    try {
      return JSON.parse(p) as unknown;
    } catch (err) {
      throw new Error(`record ${i} is not JSON: ${(err as Error).message}`);
    }
  });
}

export const QLOG_SCHEMA_PATH = fileURLToPath(new URL('../../../src/obs/qlog-schema.json', import.meta.url));

export interface QlogValidators {
  header: ValidateFunction;
  event: ValidateFunction;
}

let cached: QlogValidators | null = null;

/** Validators for the first record of a file and for every other one (src/obs/qlog-schema.json). */
export function qlogValidators(): QlogValidators {
  if (cached) return cached;
  const schema = JSON.parse(readFileSync(QLOG_SCHEMA_PATH, 'utf8')) as { $id: string };
  const ajv = new Ajv({ allErrors: true, strict: true });
  ajv.addSchema(schema);
  const get = (p: string): ValidateFunction => {
    const v = ajv.getSchema(`${schema.$id}#/definitions/${p}`);
    if (!v) throw new Error(`schema has no definition ${p}`);
    return v;
  };
  cached = { header: get('header'), event: get('event') };
  return cached;
}

export interface QlogRecord {
  time: number;
  name: string;
  data: Record<string, unknown>;
}

/** Reads a qlog file, checks every record against the schema (assertion message names the first bad one). */
export function readQlog(path: string): { header: Record<string, unknown>; events: QlogRecord[] } {
  const records = parseJsonSeq(readFileSync(path, 'utf8'));
  if (records.length === 0) throw new Error(`${path}: empty`);
  const v = qlogValidators();
  if (!v.header(records[0])) throw new Error(`${path}: header record: ${JSON.stringify(v.header.errors)}`);
  records.slice(1).forEach((r, i) => {
    if (!v.event(r)) throw new Error(`${path}: record ${i + 1} ${JSON.stringify(r).slice(0, 300)}: ${JSON.stringify(v.event.errors?.slice(0, 3))}`);
  });
  return { header: records[0] as Record<string, unknown>, events: records.slice(1) as QlogRecord[] };
}
