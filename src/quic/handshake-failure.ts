/**
 * One sentence for a client whose handshake never completed, built from the connection's CloseInfo: no answer from
 * the server, Version Negotiation (with the versions offered, RFC 9000 §6.2), a Retry (not followed yet), a TLS alert
 * from either side by name (RFC 8446 §6; RFC 9001 §4.8 carries it as CRYPTO_ERROR 0x100 + alert), certificate
 * verification, or any other transport close. Pure formatting: no I/O.
 */
import type { CloseInfo } from './connection-types.js';
import { TransportErrorCode as E, tlsAlertName, transportErrorName } from './errors.js';

const QUIC_VERSION_NAMES: Readonly<Record<number, string>> = { 0x00000001: 'QUIC v1', 0x6b3343cf: 'QUIC v2' };

/** "0x6b3343cf (QUIC v2)", "0xff00001d (draft-29)", "0x1a2a3a4a (reserved for greasing)". */
export function quicVersionName(v: number): string {
  const hex = `0x${(v >>> 0).toString(16).padStart(8, '0')}`;
  const known = QUIC_VERSION_NAMES[v >>> 0];
  if (known !== undefined) return `${hex} (${known})`;
  if (v >>> 8 === 0xff0000) return `${hex} (draft-${v & 0xff})`;
  if (((v >>> 0) & 0x0f0f0f0f) === 0x0a0a0a0a) return `${hex} (reserved for greasing)`;
  return hex;
}

/** Alerts that mean the certificate did not verify (RFC 8446 §6.2). */
const CERTIFICATE_ALERTS = new Set([42, 43, 44, 45, 46, 48]);

/** Our TransportError messages start with the code's name; the sentence names it in its own words. */
function detail(reason: string): string {
  return reason.replace(/^CRYPTO_ERROR\(alert \d+\): /, '');
}

/**
 * Why the handshake with `server` (an address for the message, e.g. "127.0.0.1:4433") did not complete.
 * `info` is the connection's close; the result is meant to be shown to a user as it is.
 */
export function describeHandshakeFailure(info: CloseInfo, server?: string): string {
  const who = server !== undefined ? `the server at ${server}` : 'the server';
  const f = info.handshakeFailure;
  if (f?.kind === 'timeout') {
    if (f.datagrams === 0) return `no answer from ${who} within ${f.timeoutMs} ms (nothing received)`;
    const got = `${f.datagrams} datagram${f.datagrams === 1 ? '' : 's'} received`;
    if (f.decrypted === 0) return `handshake with ${who} did not complete within ${f.timeoutMs} ms: ${got}, none could be decrypted`;
    return `handshake with ${who} did not complete within ${f.timeoutMs} ms (${got}, the handshake stalled)`;
  }
  if (f?.kind === 'version_negotiation') {
    const offered = f.versions.length ? f.versions.map(quicVersionName).join(', ') : 'no versions';
    return `${who} does not support QUIC version 1: its Version Negotiation offered ${offered}`;
  }
  if (f?.kind === 'retry') {
    return `${who} requires address validation (Retry), not supported yet: this client cannot follow a Retry packet`;
  }
  if (info.by === 'idle') return `handshake with ${who} did not complete: idle timeout`;
  const alert = !info.application && info.code >= E.CRYPTO_ERROR_BASE && info.code <= E.CRYPTO_ERROR_BASE + 0xff ? info.code - E.CRYPTO_ERROR_BASE : null;
  const why = detail(info.reason);
  if (info.by === 'peer') {
    if (alert !== null) return `${who} refused the TLS handshake with alert ${tlsAlertName(alert)} (${alert})${why ? `: ${why}` : ''}`;
    const code = info.application ? `application error 0x${info.code.toString(16)}` : transportErrorName(info.code);
    return `${who} closed the connection during the handshake with ${code}${why ? `: ${why}` : ''}`;
  }
  if (alert !== null) {
    const what = CERTIFICATE_ALERTS.has(alert) ? 'certificate verification failed' : 'TLS handshake failed';
    return `${what}: ${why || 'no detail'} (TLS alert ${tlsAlertName(alert)} sent to ${who})`;
  }
  if (info.application) return 'connection closed before the handshake completed';
  return `handshake with ${who} failed: ${why || transportErrorName(info.code)}`;
}
