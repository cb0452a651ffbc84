/**
 * `qsr service video|text|control [--port N] [--host ADDR] [--delay-ms MS] [--max-body-bytes N (text)]`: run one
 * service in the foreground,
 * print one "listening" line on stdout (logs go to stderr as JSON lines), close gracefully on SIGINT/SIGTERM
 * (a second signal drops in-flight connections at once).
 */
import { UsageError, parseIntFlag } from '../cli/args.js';
import { DEFAULT_PORTS, SERVICE_NAMES, isServiceName, startService } from './index.js';

export interface ServiceCommandOptions {
  port?: string;
  host?: string;
  delayMs?: string;
  maxBodyBytes?: string;
}

/** Resolves once the service has closed after a signal. Usage errors throw UsageError (exit 2). */
export async function serviceCommand(name: string, o: ServiceCommandOptions): Promise<void> {
  if (!isServiceName(name)) {
    throw new UsageError(`<name>: unknown service '${name}' (expected ${SERVICE_NAMES.join(', ')})`);
  }
  const port = o.port === undefined ? DEFAULT_PORTS[name] : parseIntFlag('--port', o.port, 0, 65535);
  const delayMs = o.delayMs === undefined ? 0 : parseIntFlag('--delay-ms', o.delayMs, 0, 3_600_000);
  let maxBodyBytes: number | undefined;
  if (o.maxBodyBytes !== undefined) {
    if (name !== 'text') throw new UsageError(`--max-body-bytes: only the text service has a body limit (not ${name})`);
    maxBodyBytes = parseIntFlag('--max-body-bytes', o.maxBodyBytes, 1);
  }
  const host = o.host ?? '127.0.0.1';
  if (host.trim() === '') throw new UsageError('--host: expected an address');
  const { server, url } = await startService(name, { port, host, delayMs, maxBodyBytes });
  process.stdout.write(`${name} service listening on ${url}\n`);
  await new Promise<void>((resolve) => {
    let signalled = false;
    const onSignal = (): void => {
      if (signalled) {
        server.closeAllConnections();
        return;
      }
      signalled = true;
      server.close(() => {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        resolve();
      });
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
    // Under `qsr up` the supervisor holds an IPC channel: when it goes away (killed, crashed), so do we, so that
    // a service never outlives its router and keeps the port.
    if (process.send) {
      // The channel itself must not keep the process alive: once the server has closed, the service exits at once
      // (a ref'd channel held it until the supervisor's SIGKILL).
      process.channel?.unref();
      process.once('disconnect', () => {
        onSignal();
        setTimeout(() => process.exit(0), 2000).unref();
      });
    }
  });
}
