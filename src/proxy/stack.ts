/**
 * The whole router as one library call: the backend services as supervised child processes (when asked), the
 * ProxyServer (HTTP/3 on UDP, HTTPS h2/h1.1 on TCP) and its access log. `startStack` resolves once all of it
 * listens; the handle's `close()` drains and stops it in order: no service is restarted from the first moment of the
 * shutdown, the router sends GOAWAY and lets streams finish for up to drainMs, then the services are stopped (they
 * keep serving while the router drains) and the access log is flushed and closed.
 *
 * `qsr up` and `qsr proxy` (src/cli/up.ts) are this plus flags, printing and signals.
 */
import type { Config, ServiceName } from './config.js';
import { ProxyServer, type ProxyInfo, type ProxyLog } from './server.js';
import { Supervisor, type ServiceSpec, type SupervisorLog } from './supervisor.js';
import { createAccessLog } from './access-log.js';

/** Where each service listens when the configuration lists none (the built-in routes point there). */
export const DEFAULT_SERVICE_PORTS: Readonly<Record<ServiceName, number>> = { video: 5001, text: 5002, control: 5003 };

/**
 * The services to run for `config`: those it lists (on their ports, the text service with its body limit), or all
 * three on DEFAULT_SERVICE_PORTS when it lists none.
 */
export function serviceSpecs(config: Config): ServiceSpec[] {
  const listed = Object.keys(config.services).length > 0;
  return (Object.keys(DEFAULT_SERVICE_PORTS) as ServiceName[])
    .filter((n) => !listed || config.services[n])
    .map((name) => {
      const limit = config.services[name]?.maxBodyBytes;
      return { name, port: config.services[name]?.port ?? DEFAULT_SERVICE_PORTS[name], args: limit !== undefined ? ['--max-body-bytes', String(limit)] : undefined };
    });
}

export interface StackOptions {
  config: Config;
  /** Start the services too (`qsr up`) or not (`qsr proxy`: they run elsewhere). */
  services: boolean;
  /** Router and supervisor records (a pino logger fits). */
  log: ProxyLog & SupervisorLog;
  /** How a service is started: `<cmd> <args...> service NAME --port N` (default: this Node with dist/src/cli/qsr.js). */
  serviceCommand?: { cmd: string; args: string[] };
}

export interface Stack {
  /** Where the router listens, its certificate, key log and qlog directory. */
  readonly info: ProxyInfo;
  /** The services started, by name: their ports (empty without services). */
  readonly services: Readonly<Record<string, number>>;
  /** PIDs of the running service processes, by name (null while one is being restarted). */
  servicePids(): Record<string, number | null>;
  /** Routes, upstreams, timeouts and health checks from `next` for new requests (see ProxyServer.reload). */
  reload(next: Config): void;
  /**
   * Drain and stop everything (idempotent: later calls get the same promise). `drainMs`: how long in-flight streams
   * may take (default: the configuration's timeouts.drainMs, the one in force now).
   */
  close(drainMs?: number): Promise<void>;
}

/** Starts the services (if asked) and the router. On failure whatever was started is stopped before it rejects. */
export async function startStack(o: StackOptions): Promise<Stack> {
  const supervisor = new Supervisor(o.log, o.serviceCommand);
  const services: Record<string, number> = {};
  if (o.services) {
    const specs = serviceSpecs(o.config);
    for (const s of specs) services[s.name] = s.port;
    await supervisor.start(specs);
  }
  const accessLog = o.config.accessLog === false ? null : createAccessLog(o.config.accessLog);
  const proxy = new ProxyServer(o.config, o.log, accessLog);
  let info: ProxyInfo;
  try {
    info = await proxy.start();
  } catch (err) {
    // Listeners bound before the failure, the upstream pools' health checks, the services, the log file.
    await proxy.close(0).catch(() => undefined);
    await supervisor.stop();
    await accessLog?.close().catch(() => undefined);
    throw new Error(`cannot start the router: ${(err as Error).message}`);
  }
  let config = o.config;
  let closing: Promise<void> | null = null;
  return {
    info,
    services,
    servicePids: () => supervisor.pids(),
    reload(next: Config): void {
      proxy.reload(next);
      config = next;
    },
    close(drainMs = config.timeouts.drainMs): Promise<void> {
      if (closing) return closing;
      // No service is restarted while the streams drain and the services stop.
      supervisor.freeze();
      closing = (async () => {
        await proxy.close(drainMs);
        await supervisor.stop();
        await accessLog?.close();
      })();
      return closing;
    },
  };
}
