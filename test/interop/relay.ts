// A lossy UDP relay for interop cases with peers that cannot simulate loss themselves: clients send to the relay's
// port on 127.0.0.1, the relay forwards each datagram to the server from a socket of its own per client address, and
// the server's answers go back the same way. Each datagram is dropped with probability `loss` in each direction,
// decided by a seeded PRNG (test/util/prng.ts): a failing run can be replayed with the same seed (the sequence of
// drop decisions is the same; which datagrams they hit depends on the peers' timing). Loopback only.

import { createSocket, type Socket } from 'node:dgram';
import { prng } from '../util/prng.js';
import { assertLoopback } from './peers.js';

export interface RelayOptions {
  /** The server's address and port (loopback). */
  target: { address: string; port: number };
  /** Drop probability in [0, 1) for each direction. */
  loss: number;
  seed: number;
  /** Address to listen on; default 127.0.0.1 (port 0: any free port). */
  listen?: { address: string; port: number };
}

export interface RelayStats {
  /** Datagrams client->server received / dropped, and server->client received / dropped. */
  up: { seen: number; dropped: number };
  down: { seen: number; dropped: number };
  /** Distinct client addresses (one per client socket). */
  clients: number;
}

export interface Relay {
  port: number;
  stats: RelayStats;
  close(): Promise<void>;
}

/** Starts the relay; resolves once it is bound. */
export async function startRelay(o: RelayOptions): Promise<Relay> {
  assertLoopback(o.target.address);
  const listenAt = o.listen ?? { address: '127.0.0.1', port: 0 };
  assertLoopback(listenAt.address);
  if (!(o.loss >= 0 && o.loss < 1)) throw new RangeError(`loss must be in [0, 1), got ${o.loss}`);
  const rnd = prng(o.seed);
  const stats: RelayStats = { up: { seen: 0, dropped: 0 }, down: { seen: 0, dropped: 0 }, clients: 0 };
  const family = (a: string): 'udp4' | 'udp6' => (a.includes(':') ? 'udp6' : 'udp4');
  const front = createSocket(family(listenAt.address));
  const backs = new Map<string, Socket>();
  let closed = false;
  front.on('error', () => {});
  front.on('message', (msg, from) => {
    if (closed) return;
    const key = `${from.address}|${from.port}`;
    let back = backs.get(key);
    if (back === undefined) {
      const b = createSocket(family(o.target.address));
      b.on('error', () => {});
      b.on('message', (reply) => {
        if (closed) return;
        stats.down.seen++;
        if (rnd() < o.loss) {
          stats.down.dropped++;
          return;
        }
        front.send(reply, from.port, from.address);
      });
      b.bind(0, o.target.address);
      backs.set(key, b);
      stats.clients++;
      back = b;
    }
    stats.up.seen++;
    if (rnd() < o.loss) {
      stats.up.dropped++;
      return;
    }
    back.send(msg, o.target.port, o.target.address);
  });
  await new Promise<void>((resolve, reject) => {
    front.once('error', reject);
    front.bind(listenAt.port, listenAt.address, () => resolve());
  });
  return {
    port: front.address().port,
    stats,
    async close() {
      if (closed) return;
      closed = true;
      const all = [front, ...backs.values()];
      await Promise.all(all.map((s) => new Promise<void>((r) => s.close(() => r()))));
    },
  };
}
