#!/usr/bin/env node
// notifylist-proxy command line: flags, environment and config file -> a running proxy (or
// --uninstall, --version, --help); SIGTERM / SIGINT exit 0 promptly, also during start-up; SIGHUP
// reloads the certificate files for new connections. Once the settings are read, everything the
// proxy logs is JSON lines on stdout (src/operations/logger.ts); what ends the process at start
// (exit 1) stays one plain line on stderr, for the human who started it.
import { ConfigError, parseCommandLine, USAGE, type ProxyConfig } from './config.js';
import { StartupError } from './notify/control-plane.js';
import { startProxy, type RunningProxy } from './index.js';
import { drainProxy } from './operations/drain.js';
import { createLogger } from './operations/logger.js';
import { uninstall } from './operations/uninstall.js';
import { isPrimaryOfWorkers, isWorker, runPrimary, workerIndex, workerSide } from './operations/workers.js';
import { redact } from './redact.js';
import { packageVersion } from './version.js';

// Everything printed goes through redact() (also done where messages are made): a last net
// for credentials in URLs quoted by errors.
const fail = (line: string): void => {
  process.stderr.write(`notifylist-proxy: ${redact(line)}\n`);
};
const print = (line: string): void => {
  process.stdout.write(`${redact(line)}\n`);
};

/** What the first SIGTERM / SIGINT does (also a --workers primary's stop message to a worker). */
let requestStop = (): void => undefined;
/** Resolves at the first SIGTERM / SIGINT. Installed before anything else, so that a signal
 * during start-up exits 0 too (instead of the default death by signal, exit 143). */
const signalled = new Promise<void>((resolve) => {
  requestStop = resolve;
  const stop = (): void => {
    process.off('SIGTERM', stop);
    process.off('SIGINT', stop);
    // A second signal ends the process at once.
    const now = (): never => process.exit(0);
    process.on('SIGTERM', now);
    process.on('SIGINT', now);
    resolve();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
});
const STOPPED = Symbol('stopped');

/** SIGHUP does not end the proxy (Redis ignores it too); once running, it reloads certificates. */
let onHangup = (): void => undefined;
process.on('SIGHUP', () => onHangup());

/** `127.0.0.1:6380, tls 127.0.0.1:6381, unix /run/p.sock, upstream rediss://10.0.0.5:6379/0` (never a password). */
function listeningLine(proxy: RunningProxy, config: ProxyConfig): { msg: string; upstream: string } {
  const where = [
    ...(proxy.port !== 0 ? [`${proxy.host}:${proxy.port}`] : []),
    ...(proxy.tlsPort !== undefined ? [`tls ${proxy.host}:${proxy.tlsPort}`] : []),
    ...(proxy.unixSocket !== undefined ? [`unix ${proxy.unixSocket}`] : []),
  ];
  const { upstream, sentinel } = config;
  let target: string;
  if (sentinel) target = `${proxy.upstream.name}, db ${upstream.db}${upstream.tls ? ', TLS' : ''}`;
  else if (upstream.socketPath !== undefined) target = `unix://${upstream.socketPath}?db=${upstream.db}`;
  else target = `${upstream.tls ? 'rediss' : 'redis'}://${proxy.upstream.name}/${upstream.db}`;
  return { msg: `notifylist-proxy listening on ${where.join(', ')}, upstream ${target}`, upstream: target };
}

async function main(): Promise<number> {
  let command;
  try {
    command = parseCommandLine(process.argv.slice(2));
  } catch (error) {
    if (error instanceof ConfigError) {
      fail(error.message);
      return 1;
    }
    throw error;
  }
  if (command.kind === 'help') {
    process.stdout.write(USAGE);
    return 0;
  }
  if (command.kind === 'version') {
    process.stdout.write(`notifylist-proxy ${packageVersion()}\n`);
    return 0;
  }
  const { config } = command;
  if (command.kind === 'uninstall') {
    const done = await Promise.race([uninstall(config, print), signalled.then((): typeof STOPPED => STOPPED)]);
    if (done === STOPPED) return 0;
    if (done !== null) fail(done);
    return done === null ? 0 : 1;
  }
  const worker = isWorker() ? workerSide(requestStop) : null;
  const log = createLogger({ level: config.logLevel, format: config.logFormat, base: worker ? { worker: workerIndex() } : undefined });
  // --workers: this process only runs the workers (src/operations/workers.ts).
  if (isPrimaryOfWorkers(config)) return runPrimary(config, log, signalled);
  if (worker) {
    config.metricsPort = 0; // the primary serves them, for every worker
    // --maxclients bounds the whole proxy: each worker admits its share.
    config.maxClients = Math.ceil(config.maxClients / config.workers);
  }
  let proxy;
  try {
    const started = await Promise.race([startProxy(config, log), signalled.then((): typeof STOPPED => STOPPED)]);
    // Stopped while starting: nothing is served yet, and Redis holds nothing half-done that
    // matters (the library and the flags are loaded again by the next start).
    if (started === STOPPED) return 0;
    proxy = started;
  } catch (error) {
    if (error instanceof StartupError || (error as NodeJS.ErrnoException).code !== undefined) {
      fail((error as Error).message);
      return 1;
    }
    throw error;
  }
  const { msg, upstream } = listeningLine(proxy, config);
  const fields = { host: proxy.host, port: proxy.port, tlsPort: proxy.tlsPort, unixSocket: proxy.unixSocket, upstream };
  // Under --workers the primary logs it, once for all.
  if (worker) worker.started(proxy, { msg, fields });
  else log.info('listening', msg, fields);
  const running = proxy;
  onHangup = () => log.info('certificates_reloaded', `SIGHUP: ${running.reloadCertificates()}`);

  await signalled;
  // Graceful drain within --drain-ms (a second signal exits at once: see `signalled`).
  await drainProxy(proxy, config.drainMs, log);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    fail(`fatal: ${error.stack ?? error.message}`);
    process.exit(1);
  },
);
