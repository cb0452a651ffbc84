/**
 * The text service (plain HTTP/1.1):
 * - `POST /text`: a UTF-8 body of at most `maxBodyBytes` (default TEXT_LIMIT, 10 MiB; more is 413), answered with
 *   `{"chars", "words", "lines", "bytes", "uppercase"}`. `chars` counts Unicode code points, `words` runs of
 *   non-whitespace, `lines` is 0 for an empty text and otherwise the number of line feeds plus one unless the text
 *   ends with a line feed (so "a\nb" and "a\nb\n" both have 2). A body that is not valid UTF-8 gets 400; a declared
 *   charset other than UTF-8 gets 415 (RFC 9110 §15.5.16).
 * - `GET /text/sample`: a small HTML page with `<p id="sample">The quick brown fox jumps over the lazy dog.</p>`.
 */
import type http from 'node:http';
import { ServiceServer, readBody, sendJson, type ServiceOptions } from './common.js';

/** The default body limit of POST /text (10 MiB); `maxBodyBytes` / `--max-body-bytes` / `services.text.maxBodyBytes` change it. */
export const TEXT_LIMIT = 10 * 1024 * 1024;
export const SAMPLE_SENTENCE = 'The quick brown fox jumps over the lazy dog.';

const SAMPLE_PAGE = Buffer.from(
  `<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>qsr text sample</title></head>
<body>
<h1>Text service</h1>
<p id="sample">${SAMPLE_SENTENCE}</p>
</body>
</html>
`,
  'utf8',
);

export interface TextStats {
  chars: number;
  words: number;
  lines: number;
  bytes: number;
}

const SPACE = /\s/u;

function isSpace(code: number): boolean {
  if (code === 0x20 || (code >= 0x09 && code <= 0x0d)) return true;
  return code > 0x7f && SPACE.test(String.fromCharCode(code)); // every \s is in the BMP
}

/** Counts for a text as documented above (one pass over UTF-16 code units, no per-character strings for ASCII). */
export function countText(text: string): TextStats {
  let chars = 0;
  let words = 0;
  let newlines = 0;
  let inWord = false;
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    // A low surrogate after a high surrogate is the second half of one code point.
    if (!(code >= 0xdc00 && code <= 0xdfff && i > 0 && (text.charCodeAt(i - 1) & 0xfc00) === 0xd800)) chars++;
    if (code === 0x0a) newlines++;
    const space = isSpace(code);
    if (!space && !inWord) words++;
    inWord = !space;
  }
  const lines = text.length === 0 ? 0 : newlines + (text.endsWith('\n') ? 0 : 1);
  return { chars, words, lines, bytes: Buffer.byteLength(text, 'utf8') };
}

async function analyse(req: http.IncomingMessage, res: http.ServerResponse, limit: number): Promise<void> {
  const charset = /;\s*charset\s*=\s*"?([^";\s]+)/i.exec(req.headers['content-type'] ?? '')?.[1]?.toLowerCase();
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8') {
    req.resume();
    sendJson(res, 415, { error: `only UTF-8 text is accepted, got charset=${charset}` });
    return;
  }
  const body = await readBody(req, res, limit);
  if (!body) return;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false }).decode(body);
  } catch {
    sendJson(res, 400, { error: 'request body is not valid UTF-8' });
    return;
  }
  sendJson(res, 200, { ...countText(text), uppercase: text.toUpperCase() });
}

/** The text service as an http.Server, not yet listening. */
export function createTextService(options: ServiceOptions = {}): ServiceServer {
  const limit = options.maxBodyBytes ?? TEXT_LIMIT;
  if (!Number.isSafeInteger(limit) || limit < 1) throw new RangeError(`maxBodyBytes: expected a positive whole number of bytes, got ${limit}`);
  return new ServiceServer(
    'text',
    {
      '/text': { POST: (req, res) => analyse(req, res, limit) },
      '/text/sample': {
        GET: (_req, res) => {
          res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': SAMPLE_PAGE.length });
          res.end(SAMPLE_PAGE);
        },
      },
    },
    options,
  );
}
