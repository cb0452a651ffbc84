#!/usr/bin/env node
/** The `qsr` command. */
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { cryptoBackend } from '../quic/crypto/backend.js';
import { UsageError, parseIntFlag } from './args.js';
import { quicListen, quicConnect } from './quic-tools.js';

// The packet protection backend (QSR_CRYPTO, default auto): named by --version, a bad setting refuses every command.
const backend = cryptoBackend();
const program = new Command();
program
  .name('qsr')
  .description('quic-stream-router: an HTTP/3 stream router on its own QUIC stack')
  .version(`0.1.0\npacket protection: ${backend.description}${backend.error !== null ? ` (${backend.error})` : ''}`);
program.showHelpAfterError();
program.hook('preAction', () => {
  if (backend.error !== null) throw new UsageError(backend.error);
});

const intArg = (flag: string, min: number, max?: number) => (v: string) => {
  try {
    return parseIntFlag(flag, v, min, max);
  } catch (err) {
    throw new InvalidArgumentError((err as Error).message);
  }
};

const CC_HELP = "congestion controller: newreno or cubic (default: the configuration's quic.congestionControl, else newreno)";

program
  .command('up')
  .description('start the three services (video 5001, text 5002, control 5003) and the router on 4433 (UDP HTTP/3 + TCP HTTPS)')
  .option('--config <file>', 'YAML configuration (default: the built-in one)')
  .option('--qlog <dir>', 'write a qlog file per QUIC connection into DIR (default: the configuration\'s qlog:, else $QLOGDIR)')
  .option('--congestion-control <name>', CC_HELP)
  .action(async (o: { config?: string; qlog?: string; congestionControl?: string }) => {
    const { runUp } = await import('./up.js');
    await runUp({ config: o.config, services: true, qlog: o.qlog, congestionControl: o.congestionControl });
    // Drained and stopped: lingering keep-alive sockets (a browser's TCP connection) must not hold the exit.
    process.exit(0);
  });

program
  .command('proxy')
  .description('run the router alone (the upstream services run elsewhere)')
  .option('--config <file>', 'YAML configuration (default: the built-in one)')
  .option('--qlog <dir>', 'write a qlog file per QUIC connection into DIR (default: the configuration\'s qlog:, else $QLOGDIR)')
  .option('--congestion-control <name>', CC_HELP)
  .action(async (o: { config?: string; qlog?: string; congestionControl?: string }) => {
    const { runUp } = await import('./up.js');
    await runUp({ config: o.config, services: false, qlog: o.qlog, congestionControl: o.congestionControl });
    process.exit(0);
  });

program
  .command('client')
  .description('send sample traffic to all three services at once over one QUIC connection and print a table')
  .option('--url <url>', 'the router', 'https://localhost:4433')
  .option('--streams <n>', 'number of streams, spread over the routes', '9')
  .option('--size <bytes>', 'upload size per video/text stream', '65536')
  .option('--keylog <file>', 'append TLS secrets to this key log (default: $SSLKEYLOGFILE)')
  .option('--qlog <dir>', 'write a qlog file per connection into DIR (default: $QLOGDIR)')
  .option('--insecure', 'do not verify the certificate (development only)')
  .option('--ca <file>', 'trust this CA / certificate (PEM); default for qsr up: ./.qsr/certs/cert.pem when present')
  .option('--server-name <name>', 'SNI and the name to verify (default: the URL host)')
  .option('--json', 'print JSON instead of a table')
  .option('--handshake-timeout <ms>', 'give up when the QUIC handshake has not completed after this long', intArg('--handshake-timeout', 1), 10_000)
  .action(async (o) => {
    const { runClient } = await import('./client.js');
    const { existsSync } = await import('node:fs');
    // The dev certificate that `qsr up` made in this directory is trusted by default.
    if (!o.ca && !o.insecure && existsSync('.qsr/certs/cert.pem')) o.ca = '.qsr/certs/cert.pem';
    process.exitCode = await runClient(o);
  });

program
  .command('quic-listen')
  .description('QUIC server probe: accepts connections and prints handshake, stream and close events as JSON lines')
  .option('--listen <addr>', 'address and port to listen on', '127.0.0.1:4433')
  .requiredOption('--cert <file>', 'certificate chain (PEM)')
  .requiredOption('--key <file>', 'private key (PEM)')
  .option('--alpn <list>', 'ALPN protocols, comma-separated', 'h3')
  .option('--keylog <file>', 'append TLS secrets to this NSS key log (default: $SSLKEYLOGFILE)')
  .option('--qlog <dir>', 'write a qlog file per connection into DIR (default: $QLOGDIR)')
  .option('--ciphers <list>', 'TLS 1.3 cipher suites, comma-separated')
  .option('--groups <list>', 'key exchange groups, comma-separated (x25519, secp256r1)')
  .action(async (o) => {
    await quicListen(o);
  });

program
  .command('quic-connect')
  .description('QUIC client probe: connects, prints events as JSON lines, closes after --duration ms')
  .argument('<url>', 'https://HOST:PORT/')
  .option('--alpn <list>', 'ALPN protocols to offer', 'h3')
  .option('--ca <file>', 'trust this CA (PEM) instead of the system roots')
  .option('--insecure', 'do not verify the server certificate (development only)')
  .option('--server-name <name>', 'SNI and the name to verify (default: the URL host)')
  .option('--keylog <file>', 'append TLS secrets to this NSS key log (default: $SSLKEYLOGFILE)')
  .option('--qlog <dir>', 'write a qlog file per connection into DIR (default: $QLOGDIR)')
  .option('--ciphers <list>', 'TLS 1.3 cipher suites to offer, comma-separated')
  .option('--groups <list>', 'key exchange groups, first gets the key share (x25519, secp256r1)')
  .option('--key-update-after <ms>', 'initiate a key update this long after the handshake', intArg('--key-update-after', 0))
  .option('--duration <ms>', 'stay connected this long', intArg('--duration', 0), 1000)
  .option('--no-h3-control', 'do not open a minimal HTTP/3 control stream')
  .option('--handshake-timeout <ms>', 'give up when the handshake has not completed after this long', intArg('--handshake-timeout', 1), 10_000)
  .action(async (url: string, o) => {
    process.exitCode = await quicConnect(url, o);
  });

const collect = (v: string, prev: string[] = []): string[] => [...prev, v];
/** serve/get: commander's own usage errors (unknown option, missing argument, bad value) exit 2 like UsageError. */
const usageExit2 = (err: CommanderError): never => process.exit(err.exitCode === 0 ? 0 : 2);

program
  .command('serve')
  .description('serve static files over HTTP/3 (GET, HEAD); without --cert/--key uses a development certificate')
  .requiredOption('--dir <dir>', 'directory to serve')
  .option('--listen <addr>', 'HOST:PORT to listen on, repeatable (default 127.0.0.1:4433 and [::1]:4433)', collect)
  .option('--cert <file>', 'certificate chain (PEM); needs --key')
  .option('--key <file>', 'private key (PEM); needs --cert')
  .option('--keylog <file>', 'append TLS secrets to this NSS key log (default: $SSLKEYLOGFILE)')
  .option('--qlog <dir>', 'write a qlog file per connection into DIR (default: $QLOGDIR)')
  .option('--data-dir <dir>', 'where the development certificate is kept (in DIR/certs)', '.qsr')
  .option('--ciphers <list>', 'TLS 1.3 cipher suites to accept, in order of preference (default: all three)')
  .exitOverride(usageExit2)
  .action(async (o) => {
    const { runServe } = await import('./serve.js');
    await runServe(o);
    process.exit(0);
  });

program
  .command('get')
  .description('HTTP/3 client: all URLs (one origin) over one connection, requests multiplexed; prints a table')
  .argument('<url...>', 'https:// URLs, all on the same origin')
  .option('-n, --repeat <n>', 'request each URL N times', intArg('-n', 1, 100_000), 1)
  .option('-X, --request <method>', 'request method (default GET, or POST with -d)')
  .option('-d, --data <data>', 'request body: a string, or @FILE to stream a file')
  .option('-H, --header <header>', "request header 'name: value', repeatable", collect)
  .option('-o, --output-dir <dir>', 'save each body as DIR/<name> (index.html for /, .k suffix for repeats)')
  .option('--insecure', 'do not verify the server certificate (development only)')
  .option('--ca <file>', 'trust this CA or certificate (PEM) instead of the system roots')
  .option('--keylog <file>', 'append TLS secrets to this NSS key log (default: $SSLKEYLOGFILE)')
  .option('--qlog <dir>', 'write a qlog file per connection into DIR (default: $QLOGDIR)')
  .option('--server-name <name>', 'SNI and the name to verify (default: the URL host)')
  .option('--json', 'print a JSON document instead of the table')
  .option('--timeout <ms>', 'give up on the whole run after this long', intArg('--timeout', 1), 30_000)
  .option('--handshake-timeout <ms>', 'give up when the QUIC handshake has not completed after this long', intArg('--handshake-timeout', 1), 10_000)
  .option('--ciphers <list>', 'TLS 1.3 cipher suites to offer, comma-separated (default: all three)')
  .option('--max-data <bytes>', 'initial connection receive window (initial_max_data)', intArg('--max-data', 1))
  .option('--max-stream-data <bytes>', 'initial receive window of each request stream', intArg('--max-stream-data', 1))
  .exitOverride(usageExit2)
  .action(async (urls: string[], o) => {
    const { runGet } = await import('./get.js');
    process.exitCode = await runGet(urls, o);
  });

program
  .command('load')
  .description('HTTP/3 load generator: C connections x S streams in flight, N requests or a duration; req/s, MB/s, latency percentiles, errors')
  .argument('<url>', 'https:// URL to request')
  .option('-c, --connections <n>', 'QUIC connections (default 1)')
  .option('-s, --streams <n>', 'requests in flight on each connection (default 10)')
  .option('-n, --requests <n>', 'send N requests in all, then stop')
  .option('--duration <time>', 'send requests for this long, e.g. 10s, 500ms, 2m (default 10s without -n)')
  .option('-X, --method <method>', 'request method (default GET, or POST with -d)')
  .option('-d, --data <data>', 'request body: a string, or @FILE (sent with every request)')
  .option('-H, --header <header>', "request header 'name: value', repeatable", collect)
  .option('-w, --workers <n>', 'spread the connections over N processes (default 1: this one)')
  .option('--timeout <time>', 'give up on a request after this long (default 30s; a bare number is ms)')
  .option('-k, --insecure', 'do not verify the server certificate (development only)')
  .option('--ca <file>', 'trust this CA or certificate (PEM) instead of the system roots')
  .option('--server-name <name>', 'SNI and the name to verify (default: the URL host)')
  .option('--keylog <file>', 'append TLS secrets to this NSS key log (default: $SSLKEYLOGFILE)')
  .option('--qlog <dir>', 'write a qlog file per connection into DIR (default: $QLOGDIR)')
  .option('--handshake-timeout <ms>', 'give up when a QUIC handshake has not completed after this long (default 10000)')
  .option('--ciphers <list>', 'TLS 1.3 cipher suites to offer, comma-separated (default: all three)')
  .option('--max-data <bytes>', 'initial connection receive window (initial_max_data)')
  .option('--max-stream-data <bytes>', 'initial receive window of each request stream')
  .option('--json', 'print the report as one JSON object')
  .exitOverride(usageExit2)
  .action(async (url: string, o) => {
    const { runLoadCommand } = await import('./load.js');
    process.exitCode = await runLoadCommand(url, o);
    // Sockets closed and workers gone: nothing should hold the exit, but a stuck close must not either.
    setTimeout(() => process.exit(), 3000).unref();
  });

program
  .command('capture')
  .description(
    'capture the loopback traffic of a UDP port with tshark and write a pcapng with the TLS secrets embedded ' +
      '(Wireshark decrypts it with no settings); stops when COMMAND exits, after --seconds, or on Ctrl-C',
  )
  .argument('[command...]', 'run this under the capture (after --), with SSLKEYLOGFILE set to the key log')
  .option('-o, --output <file>', 'pcapng to write (default ./qsr-capture-<timestamp>.pcapng)')
  .option('--port <port>', 'UDP port to capture on lo (127.0.0.1 and ::1)', '4433')
  .option('--keylog <file>', 'NSS key log to embed (default: $SSLKEYLOGFILE, else ./.qsr/keylog.txt)')
  .option('--seconds <n>', 'stop after N seconds (instead of a command)')
  .action(async (command: string[], o) => {
    const { runCapture } = await import('./capture.js');
    process.exitCode = await runCapture(o, command);
  });

program
  .command('service')
  .description('run one backend service over HTTP/1.1 (video 5001, text 5002, control 5003) until SIGINT/SIGTERM')
  .argument('<name>', 'video, text or control')
  .option('--port <n>', 'port to listen on (default: the service port)')
  .option('--host <addr>', 'address to listen on', '127.0.0.1')
  .option('--delay-ms <ms>', 'hold every response back this long, except GET /healthz (proxy timeout tests)')
  .option('--max-body-bytes <n>', 'text service: the largest POST /text body in bytes, larger is 413 (default 10485760 = 10 MiB)')
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .action(async (name: string, o) => {
    const { serviceCommand } = await import('../services/command.js');
    await serviceCommand(name, o);
  });

program
  .command('check-config')
  .description('validate a YAML configuration: prints "FILE: ok (N routes)", or every problem on stderr and exits 2')
  .argument('<file>', 'configuration file')
  .exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : 2))
  .action(async (file: string) => {
    const { loadConfig, ConfigError } = await import('../proxy/config.js');
    try {
      const n = loadConfig(file).routes.length;
      process.stdout.write(`${file}: ok (${n} route${n === 1 ? '' : 's'})\n`);
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      process.stderr.write(`${err.message}\n`);
      process.exitCode = 2;
    }
  });

program.parseAsync(process.argv).catch((err: unknown) => {
  if (err instanceof UsageError) {
    process.stderr.write(`qsr: ${err.message}\n`);
    process.exit(2);
  }
  process.stderr.write(`qsr: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
