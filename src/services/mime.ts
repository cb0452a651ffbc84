/**
 * Content types for the static-file handler (static.ts, used by `qsr serve`) by file extension: a small built-in table;
 * unknown -> application/octet-stream.
 */
import { extname } from 'node:path';

const TYPES: ReadonlyMap<string, string> = new Map([
  ['.html', 'text/html; charset=utf-8'],
  ['.htm', 'text/html; charset=utf-8'],
  ['.css', 'text/css; charset=utf-8'],
  ['.js', 'text/javascript; charset=utf-8'],
  ['.mjs', 'text/javascript; charset=utf-8'],
  ['.json', 'application/json'],
  ['.txt', 'text/plain; charset=utf-8'],
  ['.png', 'image/png'],
  ['.jpg', 'image/jpeg'],
  ['.jpeg', 'image/jpeg'],
  ['.gif', 'image/gif'],
  ['.svg', 'image/svg+xml'],
  ['.ico', 'image/x-icon'],
  ['.wasm', 'application/wasm'],
  ['.mp4', 'video/mp4'],
  ['.webm', 'video/webm'],
  ['.pdf', 'application/pdf'],
  ['.bin', 'application/octet-stream'],
]);

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

/** The content type for a file name or path (extension matched case-insensitively). */
export function contentType(path: string): string {
  return TYPES.get(extname(path).toLowerCase()) ?? DEFAULT_CONTENT_TYPE;
}
