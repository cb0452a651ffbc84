/**
 * Private network namespaces for interop tests and benchmarks (`unshare -n`): inside one, only a loopback interface
 * exists, so nothing started there (a browser above all) can reach another machine, and fixed ports never collide with
 * anything else on the host. Needs root (CI runs as root) and util-linux's unshare plus iproute2's ip.
 */
import { readFileSync } from 'node:fs';
import { findProgram } from '../process.js';

/** True when this process sees no network interface but loopback (a private namespace, or a machine without one). */
export function inPrivateNetns(): boolean {
  let text: string;
  try {
    text = readFileSync('/proc/net/dev', 'utf8');
  } catch {
    return false;
  }
  const ifaces = text
    .split('\n')
    .slice(2)
    .map((l) => l.split(':')[0].trim())
    .filter((n) => n !== '');
  return ifaces.length > 0 && ifaces.every((n) => n === 'lo');
}

/** Why a private namespace cannot be made here, or null when it can. */
export function netnsUnavailable(): string | null {
  if (process.getuid?.() !== 0) return 'a private network namespace (unshare -n) needs root';
  if (!findProgram('unshare')) return 'unshare not found (apt-get install util-linux)';
  if (!findProgram('ip')) return 'ip not found (apt-get install iproute2)';
  return null;
}

/**
 * argv that runs `cmd` inside a new network namespace with its loopback up, or null when that is not possible
 * (see netnsUnavailable). Everything of one test (servers, clients, browser, capture) must run in the same one.
 */
export function netnsArgv(cmd: readonly string[]): string[] | null {
  if (netnsUnavailable()) return null;
  return ['unshare', '-n', '--', 'sh', '-c', 'ip link set lo up && exec "$@"', 'netns', ...cmd];
}
