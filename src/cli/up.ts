/**
 * `qsr up` (the three services and the router, one command) and `qsr proxy` (the router alone): flags, the summary
 * printed at start, and signals; the lifecycle itself is the library's startStack (src/proxy/stack.ts).
 * SIGHUP reloads the configuration file; SIGINT/SIGTERM drain and stop (exit 0). SIGINT is the same as SIGTERM:
 * a terminal's Ctrl-C reaches the whole foreground process group, but the services run in groups of their own
 * (see Supervisor), so they keep serving while the router drains and are stopped after it.
 */
import { pino } from 'pino';
import { loadConfig, defaultConfig, ConfigError, type Config } from '../proxy/config.js';
import type { ProxyInfo } from '../proxy/server.js';
import { startStack } from '../proxy/stack.js';
import { resolve } from 'node:path';
import { cryptoBackend } from '../quic/crypto/backend.js';
import { UsageError } from './args.js';
import { CONGESTION_CONTROL_NAMES, type CongestionControlName } from '../quic/recovery/congestion.js';

export interface UpOptions {
  config?: string;
  /** Start the services too (qsr up) or not (qsr proxy). */
  services: boolean;
  /** --qlog DIR: overrides the configuration's qlog directory. */
  qlog?: string;
  /** --congestion-control NAME: overrides the configuration's quic.congestionControl. */
  congestionControl?: string;
}

function readConfig(path: string | undefined): Config {
  if (!path) return defaultConfig();
  try {
    return loadConfig(path);
  } catch (err) {
    if (err instanceof ConfigError) throw new UsageError(err.message);
    throw err;
  }
}

function describe(info: ProxyInfo, config: Config, services: Readonly<Record<string, number>>): string {
  const h3 = info.udp.map((a) => `https://${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`);
  const lines = [
    `quic-stream-router is up (${config.source})`,
    `  HTTP/3 (UDP):          ${h3.join('  ')}`,
    `  HTTPS h2/h1.1 (TCP):   ${info.tcp.map((a) => `${a.address.includes(':') ? `[${a.address}]` : a.address}:${a.port}`).join('  ')}  (alt-svc: h3)`,
  ];
  for (const r of config.routes) lines.push(`  route ${(r.exact ?? r.prefix ?? '').padEnd(16)} -> ${r.upstreams.join(', ')}`);
  for (const [name, port] of Object.entries(services)) lines.push(`  service ${name.padEnd(8)} http://127.0.0.1:${port}`);
  lines.push(`  packet protection:     ${cryptoBackend().description}`);
  lines.push(`  congestion control:    ${config.quic.congestionControl}`);
  lines.push(`  certificate:           ${info.certPath}${info.spkiSha256 ? `  (SPKI sha256 ${info.spkiSha256})` : ''}`);
  if (info.keylog) lines.push(`  key log:               ${info.keylog}`);
  if (info.qlog) lines.push(`  qlog:                  ${info.qlog}  (one <ODCID>_server.sqlog per connection)`);
  const port = info.udp[0]?.port ?? 4433;
  lines.push('', 'Try:');
  lines.push(`  qsr client --url https://localhost:${port}             # streams to all three services on one connection`);
  lines.push(`  qsr capture --port ${port} -- qsr client --url https://localhost:${port}   # a pcapng Wireshark decrypts`);
  return lines.join('\n') + '\n';
}

export async function runUp(o: UpOptions): Promise<void> {
  let config = readConfig(o.config);
  if (o.qlog) config = { ...config, qlog: resolve(o.qlog) };
  if (o.congestionControl !== undefined) {
    const name = o.congestionControl;
    if (!(CONGESTION_CONTROL_NAMES as readonly string[]).includes(name))
      throw new UsageError(`--congestion-control: expected ${CONGESTION_CONTROL_NAMES.join(' or ')}, got "${name}"`);
    config = { ...config, quic: { ...config.quic, congestionControl: name as CongestionControlName } };
  }
  // Until the router runs, a SIGHUP is remembered instead of killing the process (its default action).
  let earlyHup = false;
  const onEarlyHup = (): void => {
    earlyHup = true;
  };
  process.on('SIGHUP', onEarlyHup);
  const log = pino({ base: undefined, timestamp: pino.stdTimeFunctions.isoTime }, pino.destination(2));
  if (config.keylog) {
    process.stderr.write(`WARNING: TLS secrets are being logged to ${config.keylog} (anyone with this file can decrypt the traffic)\n`);
  }
  const stack = await startStack({ config, services: o.services, log });
  process.stdout.write(describe(stack.info, config, stack.services));

  const reload = (): void => {
    if (!o.config) {
      log.warn({}, 'SIGHUP: running on the built-in configuration, nothing to reload');
      return;
    }
    try {
      const next = loadConfig(o.config);
      stack.reload(next);
      log.info({ config: o.config, routes: next.routes.length }, 'configuration reloaded');
    } catch (err) {
      log.error({ config: o.config, error: (err as Error).message }, 'configuration reload rejected; keeping the previous one');
    }
  };
  process.off('SIGHUP', onEarlyHup);
  process.on('SIGHUP', reload);
  if (earlyHup) reload();
  await new Promise<void>((resolve) => {
    let stopping = false;
    const stop = (sig: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal: sig, drainMs: config.timeouts.drainMs }, 'shutting down: GOAWAY sent, draining streams');
      void (async () => {
        // The drain time of the configuration qsr started with (a reload does not change it).
        await stack.close(config.timeouts.drainMs);
        log.info({}, 'stopped');
        resolve();
      })();
    };
    process.once('SIGINT', () => stop('SIGINT'));
    process.once('SIGTERM', () => stop('SIGTERM'));
  });
}
