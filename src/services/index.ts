/**
 * The three backend services and `startService`, which creates one and listens (default host 127.0.0.1,
 * default ports video 5001, text 5002, control 5003).
 */
import type { AddressInfo } from 'node:net';
import { SERVICE_NAMES, type ServiceName, type ServiceOptions, type ServiceServer } from './common.js';
import { createVideoService } from './video.js';
import { createTextService } from './text.js';
import { createControlService } from './control.js';

export {
  SERVICE_NAMES,
  ServiceServer,
  type ServiceName,
  type ServiceOptions,
  type ServiceStats,
  type ServiceLogEvent,
} from './common.js';
export { createVideoService } from './video.js';
export { createTextService, countText } from './text.js';
export { createControlService } from './control.js';

export const DEFAULT_PORTS: Readonly<Record<ServiceName, number>> = { video: 5001, text: 5002, control: 5003 };

export interface StartOptions extends ServiceOptions {
  /** Default: the service's DEFAULT_PORTS entry; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
}

export interface RunningService {
  server: ServiceServer;
  host: string;
  port: number;
  /** e.g. http://127.0.0.1:5001 (IPv6 hosts in brackets). */
  url: string;
}

export function isServiceName(name: string): name is ServiceName {
  return (SERVICE_NAMES as readonly string[]).includes(name);
}

export function createService(name: ServiceName, options: ServiceOptions = {}): ServiceServer {
  switch (name) {
    case 'video':
      return createVideoService(options);
    case 'text':
      return createTextService(options);
    case 'control':
      return createControlService(options);
  }
}

/** Create the named service and listen; rejects with a readable message if the port is taken. */
export function startService(name: ServiceName, options: StartOptions = {}): Promise<RunningService> {
  const server = createService(name, options);
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? DEFAULT_PORTS[name];
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      server.off('listening', onListening);
      if (err.code === 'EADDRINUSE') reject(new Error(`${name} service: port ${port} on ${host} is already in use`));
      else if (err.code === 'EADDRNOTAVAIL') reject(new Error(`${name} service: address ${host} is not available here`));
      else if (err.code === 'EACCES') reject(new Error(`${name} service: not allowed to listen on ${host}:${port}`));
      else reject(err);
    };
    const onListening = (): void => {
      server.off('error', onError);
      const a = server.address() as AddressInfo;
      const shown = a.family === 'IPv6' ? `[${a.address}]` : a.address;
      resolve({ server, host: a.address, port: a.port, url: `http://${shown}:${a.port}` });
    };
    server.once('error', onError);
    server.once('listening', onListening);
    server.listen(port, host);
  });
}
