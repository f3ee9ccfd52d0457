// Programmatic entry point: start a proxy in this process (the CLI and the tests use it).
import type { ProxyConfig } from './config.js';
import { ControlPlane } from './notify/control-plane.js';
import { ProxyServer } from './proxy/server.js';

export { parseConfig, ConfigError, type ProxyConfig } from './config.js';
export { StartupError } from './notify/control-plane.js';

export interface RunningProxy {
  host: string;
  port: number;
  controlPlane: ControlPlane;
  server: ProxyServer;
  close(): Promise<void>;
}

export async function startProxy(config: ProxyConfig, log: (line: string) => void = () => undefined): Promise<RunningProxy> {
  const controlPlane = new ControlPlane(config, log);
  try {
    await controlPlane.start();
  } catch (error) {
    await controlPlane.stop().catch(() => undefined);
    throw error;
  }
  const server = new ProxyServer(config, controlPlane);
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
