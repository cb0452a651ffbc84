// The Debian packages that provide the external programs (interop peers, capture tools) the tests and the benchmarks
// use, and a check that names what is missing with the apt-get line that installs it.

import { existsSync } from 'node:fs';
import { findProgram } from '../process.js';

/** The Debian package that provides each external program the harness uses. */
export const PEER_PACKAGES: Readonly<Record<string, string>> = {
  gtlsclient: 'ngtcp2-client',
  gtlsserver: 'ngtcp2-server',
  tshark: 'tshark',
  editcap: 'wireshark-common',
  go: 'golang-go',
  'quic-go': 'golang-github-lucas-clemente-quic-go-dev',
  'firefox-esr': 'firefox-esr',
  certutil: 'libnss3-tools',
};

/** Requirements that are not programs on PATH but files a package installs (checked with existsSync). */
export const PEER_FILES: Readonly<Record<string, string>> = {
  // quic-go 0.29's sources for a GOPATH-mode build (tools/peers/quicgo.ts)
  'quic-go': '/usr/share/gocode/src/github.com/lucas-clemente/quic-go/http3/server.go',
};

/** Names from `names` that are not installed, and the apt-get line that would install them. */
export function missingPrograms(names: readonly string[]): { missing: string[]; hint: string } {
  const missing = names.filter((n) => (PEER_FILES[n] !== undefined ? !existsSync(PEER_FILES[n]) : findProgram(n) === null));
  const pkgs = [...new Set(missing.map((n) => PEER_PACKAGES[n] ?? n))];
  return { missing, hint: missing.length === 0 ? '' : `not installed: apt-get install ${pkgs.join(' ')}` };
}
