// Programmatic entry point: start a proxy in this process (the CLI and the tests use it).
import type { ProxyConfig } from './config.js';
import { missingControlPermissions } from './notify/control-permissions.js';
import { ControlPlane, StartupError } from './notify/control-plane.js';
import { isLoopbackBind, ProtectedMode } from './proxy/protected-mode.js';
import { ProxyServer } from './proxy/server.js';
import { redact, upstreamName } from './redact.js';

export { parseConfig, ConfigError, type ProxyConfig } from './config.js';
export { StartupError } from './notify/control-plane.js';

export interface RunningProxy {
  host: string;
  port: number;
  controlPlane: ControlPlane;
  server: ProxyServer;
  close(): Promise<void>;
}

/** Refuses a control user that lacks a permission the proxy needs, naming every one missing. */
async function checkControlUser(config: ProxyConfig): Promise<void> {
  const { upstream } = config;
  // Unreachable, wrong password, ...: the control plane's own start says so in its words.
  const missing = await missingControlPermissions(upstream, config.prefix, config.connectTimeoutMs).catch(() => []);
  if (missing.length > 0) {
    throw new StartupError(
      `the Redis user '${upstream.username ?? 'default'}' at ${upstreamName(upstream)} lacks what the proxy needs: ${missing.join(' ')} (README, Configuration)`,
    );
  }
}

export async function startProxy(config: ProxyConfig, output: (line: string) => void = () => undefined): Promise<RunningProxy> {
  // Log lines may quote errors of ioredis or Node: no credentials in them.
  const log = (line: string): void => output(redact(line));
  const controlPlane = new ControlPlane(config, log);
  const protectedMode = config.protectedMode ? new ProtectedMode(controlPlane.control, () => controlPlane.authRequiredNow(), log) : null;
  const starting = (async () => {
    await checkControlUser(config);
    await controlPlane.start();
    // Only loopback clients can reach a loopback bind: then Redis is asked only if another one comes.
    if (protectedMode && !isLoopbackBind(config.bind)) await protectedMode.start();
  })();
  // An upstream that accepts the connection but never answers must not hang the start.
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      reject(new StartupError(`Redis at ${upstreamName(config.upstream)} did not answer within ${config.connectTimeoutMs} ms (--connect-timeout-ms)`));
    }, config.connectTimeoutMs);
  });
  try {
    await Promise.race([starting, timeout]);
  } catch (error) {
    starting.catch(() => undefined);
    // Disconnect first: a polite QUIT would wait for ever on a Redis that does not answer.
    controlPlane.control.disconnect();
    controlPlane.subscriber.disconnect();
    await controlPlane.stop().catch(() => undefined);
    if (error instanceof Error) error.message = redact(error.message);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  const server = new ProxyServer(config, controlPlane, protectedMode);
  let address: { host: string; port: number };
  try {
    address = await server.listen(config.port, config.bind);
  } catch (error) {
    await controlPlane.stop();
    throw error;
  }
  return {
    ...address,
    controlPlane,
    server,
    async close() {
      await server.close();
      await controlPlane.stop();
    },
  };
}
