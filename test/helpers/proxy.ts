// Proxies for tests: in-process (fast, for most tests) or as a real child process (for kill tests).
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseConfig, startProxy, type LogOutput, type RunningProxy } from '../../src/index.js';
import { freePort, waitForPort, type RedisServer } from './redis-server.js';
import type { Transport } from './transport.js';

export async function startTestProxy(redis: RedisServer, extraFlags: string[] = []): Promise<RunningProxy> {
  return startProxyWith(['--port', String(await freePort()), '--upstream', redis.url, ...extraFlags]);
}

/** An in-process proxy with exactly these flags (no environment). */
export async function startProxyWith(flags: string[], log?: LogOutput): Promise<RunningProxy> {
  return startProxy(parseConfig(flags, {})!, log);
}

/** An in-process proxy in front of `redis` over `transport` (clients reach it over the same). */
export async function startProxyOver(transport: Transport, redis: RedisServer, extraFlags: string[] = []): Promise<RunningProxy> {
  return startProxyWith([...(await transport.proxyFlags(redis)), ...extraFlags]);
}

const CLI = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

/** The built CLI in its own process, so a test can SIGKILL it. */
export class ProxyProcess {
  process: ChildProcess | null = null;
  port = 0;
  output = '';

  constructor(
    private readonly upstreamUrl: string,
    private readonly extraFlags: string[] = [],
  ) {}

  async start(): Promise<this> {
    if (this.port === 0) this.port = await freePort();
    const child = spawn(process.execPath, [CLI, '--port', String(this.port), '--upstream', this.upstreamUrl, ...this.extraFlags], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    this.process = child;
    // A proxy that exits at start (a start-up error) fails this at once, not at the port timeout.
    const exited = new Promise<never>((_, reject) =>
      child.once('exit', (code) => reject(new Error(`proxy exited with code ${code} at start: ${this.output}`))),
    );
    exited.catch(() => undefined); // a later exit (stop, kill) is not an error
    await Promise.race([waitForPort(this.port), exited]);
    return this;
  }

  async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return child?.exitCode ?? null;
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill(signal);
    const code = await exited;
    this.process = null;
    return code;
  }

  kill(): Promise<number | null> {
    return this.stop('SIGKILL');
  }
}
