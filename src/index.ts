// Programmatic entry point: start a proxy in this process (the CLI and the tests use it).
import type { ProxyConfig } from './config.js';
import { missingControlPermissions } from './notify/control-permissions.js';
import { ControlPlane, StartupError } from './notify/control-plane.js';
import type { ListeningAddresses } from './proxy/listeners.js';
import { isLoopbackBind, ProtectedMode } from './proxy/protected-mode.js';
import { toLog, type Log, type LogOutput } from './operations/logger.js';
import { UpstreamState } from './operations/upstream-state.js';
import { ProxyServer } from './proxy/server.js';
import { redact } from './redact.js';
import { CertificateError } from './tls-files.js';
import { Upstream } from './upstream/upstream.js';
import type { Registry } from 'prom-client';
import { notReadyReason } from './operations/health.js';
import { startOperationsServer, type OperationsServer } from './operations/http.js';
import { createProxyMetrics } from './operations/metrics.js';

export { parseConfig, ConfigError, type ProxyConfig } from './config.js';
export { StartupError } from './notify/control-plane.js';
export { createLogger, type Log, type LogEntry, type LogOutput } from './operations/logger.js';

export interface RunningProxy extends ListeningAddresses {
  controlPlane: ControlPlane;
  server: ProxyServer;
  upstream: Upstream;
  /** This proxy's metrics (served on --metrics-port; under --workers, by the primary). */
  metrics: Registry;
  /** null when ready (/readyz), else why not. */
  notReadyReason(): Promise<string | null>;
  /** Where /metrics, /healthz and /readyz are served (undefined: --metrics-port 0). */
  metricsPort?: number;
  /** Redis reachable (the control connection), logged on each change. */
  upstreamState: UpstreamState;
  /** The log the proxy writes to. */
  log: Log;
  /** SIGHUP: reads every certificate file again, for new connections; returns what it did. */
  reloadCertificates(): string;
  close(): Promise<void>;
}

/** Refuses a control user that lacks a permission the proxy needs, naming every one missing. */
async function checkControlUser(config: ProxyConfig, upstream: Upstream): Promise<void> {
  // Unreachable, wrong password, ...: the control plane's own start says so in its words.
  const missing = await missingControlPermissions(upstream, config.prefix, config.connectTimeoutMs).catch(() => []);
  if (missing.length > 0) {
    throw new StartupError(
      `the Redis user '${upstream.username ?? 'default'}' at ${upstream.name} lacks what the proxy needs: ${missing.join(' ')} (README, Configuration)`,
    );
  }
}

/** Certificate files are read here, before anything connects: a bad one is one start-up line. */
function certificatesChecked<T>(make: () => T): T {
  try {
    return make();
  } catch (error) {
    if (error instanceof CertificateError) throw new StartupError(error.message);
    throw error;
  }
}

/**
 * `output`: the process's Log (the CLI's pino logger), or a function given each message's text
 * and its whole entry (tests capture lines so); none: nothing is logged. Redacted either way.
 */
export async function startProxy(config: ProxyConfig, output?: LogOutput): Promise<RunningProxy> {
  const log = toLog(output);
  const upstream = certificatesChecked(() => new Upstream(config, log));
  if (upstream.tls?.insecure) {
    log.warn('upstream_tls_insecure', 'warning: --upstream-tls-insecure: the certificates of Redis and the sentinels are not verified (anyone on the way can read and change the traffic)');
  }
  const controlPlane = new ControlPlane(config, log, upstream);
  const protectedMode = config.protectedMode ? new ProtectedMode(controlPlane.control, () => controlPlane.authRequiredNow(), log) : null;
  let server: ProxyServer;
  try {
    server = certificatesChecked(() => new ProxyServer(config, controlPlane, upstream, protectedMode, log));
  } catch (error) {
    upstream.stop();
    throw error;
  }
  const starting = (async () => {
    // A replica, a TLS problem, no master from the sentinels: said here, in their own words.
    await upstream.start().catch((error: Error) => {
      throw new StartupError(error.message);
    });
    await checkControlUser(config, upstream);
    await controlPlane.start();
    // Only loopback clients can reach a loopback bind: then Redis is asked only if another one comes.
    if (protectedMode && !isLoopbackBind(config.bind)) await protectedMode.start();
  })();
  // An upstream that accepts the connection but never answers must not hang the start.
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new StartupError(`Redis at ${upstream.name} did not answer within ${config.connectTimeoutMs} ms (--connect-timeout-ms)`));
    }, config.connectTimeoutMs);
  });
  try {
    await Promise.race([starting, timeout]);
  } catch (error) {
    starting.catch(() => undefined);
    // Disconnect first: a polite QUIT would wait for ever on a Redis that does not answer.
    controlPlane.control.disconnect();
    controlPlane.subscriber.disconnect();
    upstream.stop();
    await controlPlane.stop().catch(() => undefined);
    if (error instanceof Error) error.message = redact(error.message);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const metrics = createProxyMetrics({ controlPlane, connections: () => server.connections });
  const upstreamState = new UpstreamState(controlPlane.control, () => upstream.name, log);
  let addresses: ListeningAddresses;
  let operations: OperationsServer | null = null;
  try {
    addresses = await server.listen();
    if (config.metricsPort !== 0) {
      operations = await startOperationsServer(config.metricsBind, config.metricsPort, {
        metrics: async () => ({ contentType: metrics.contentType, text: await metrics.metrics() }),
        notReadyReason: () => notReadyReason(controlPlane),
      });
    }
  } catch (error) {
    await server.close().catch(() => undefined);
    upstreamState.stop();
    upstream.stop();
    await controlPlane.stop();
    throw error;
  }
  return {
    ...addresses,
    controlPlane,
    server,
    upstream,
    metrics,
    notReadyReason: () => notReadyReason(controlPlane),
    metricsPort: operations?.port,
    upstreamState,
    log,
    reloadCertificates() {
      const reloaded: string[] = [];
      // Each side on its own: a bad file on one side does not hold back the other.
      const failures: string[] = [];
      for (const [side, reload] of [
        ['TLS listener', () => server.reloadCertificates()],
        ['upstream TLS', () => (upstream.tls ? (upstream.reloadCertificates(), true) : false)],
      ] as const) {
        try {
          if (reload()) reloaded.push(side);
        } catch (error) {
          failures.push(`${side}: ${(error as Error).message} (keeping the current files)`);
        }
      }
      if (reloaded.length === 0 && failures.length === 0) return 'no certificate files to reload';
      return [...(reloaded.length > 0 ? [`certificate files reloaded for new connections: ${reloaded.join(', ')}`] : []), ...failures].join('; ');
    },
    async close() {
      await operations?.close();
      await server.close();
      upstreamState.stop();
      // First: the control connections' ends are not a reason to ask the sentinels again.
      upstream.stop();
      await controlPlane.stop();
    },
  };
}
