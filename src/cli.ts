#!/usr/bin/env node
// notifylist-proxy command line: flags and environment -> a running proxy; clean exit on signals.
import { ConfigError, parseConfig, USAGE } from './config.js';
import { StartupError } from './notify/control-plane.js';
import { startProxy } from './index.js';

const log = (line: string): void => {
  process.stderr.write(`notifylist-proxy: ${line}\n`);
};

async function main(): Promise<number> {
  let config;
  try {
    config = parseConfig(process.argv.slice(2));
  } catch (error) {
    if (error instanceof ConfigError) {
      log(error.message);
      return 1;
    }
    throw error;
  }
  if (config === null) {
    process.stdout.write(USAGE);
    return 0;
  }
  let proxy;
  try {
    proxy = await startProxy(config, log);
  } catch (error) {
    if (error instanceof StartupError || (error as NodeJS.ErrnoException).code !== undefined) {
      log((error as Error).message);
      return 1;
    }
    throw error;
  }
  const { host, port } = config.upstream;
  process.stdout.write(`notifylist-proxy listening on ${proxy.host}:${proxy.port}, upstream redis://${host}:${port}/${config.upstream.db}\n`);

  await new Promise<void>((resolve) => {
    const stop = (): void => {
      process.off('SIGTERM', stop);
      process.off('SIGINT', stop);
      resolve();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
  });
  // Stop accepting, close sessions; do not wait for ever on clients that never close.
  await Promise.race([proxy.close(), new Promise((resolve) => setTimeout(resolve, 5000).unref())]);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    log(`fatal: ${error.stack ?? error.message}`);
    process.exit(1);
  },
);
