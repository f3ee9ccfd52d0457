// Real redis-server processes for tests: each on a free port, in its own temp dir, never 6379.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Asks the kernel for a free TCP port on 127.0.0.1. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** Resolves once something accepts TCP connections on the port. */
export async function waitForPort(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on port ${port}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface RedisServerOptions {
  /** Extra `--name value` arguments, e.g. { appendonly: 'yes' }. */
  config?: Record<string, string>;
}

/** One redis-server process owned by a test. Survives restarts in the same dir and port. */
export class RedisServer {
  readonly dir: string;
  port = 0;
  process: ChildProcess | null = null;
  private readonly config: Record<string, string>;

  constructor(options: RedisServerOptions = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'notifylist-redis-'));
    // DEBUG (e.g. SET-ACTIVE-EXPIRE) is allowed: tests use it to switch Redis's own expiry off.
    this.config = { save: '', appendonly: 'no', 'enable-debug-command': 'yes', ...options.config };
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  async start(): Promise<this> {
    if (this.port === 0) this.port = await freePort();
    const args = ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--daemonize', 'no'];
    for (const [name, value] of Object.entries(this.config)) args.push(`--${name}`, value);
    const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
    this.process = child;
    await waitForPort(this.port);
    return this;
  }

  /** Stops with SIGTERM (Redis saves/fsyncs as configured) and waits for the exit. */
  async stop(): Promise<void> {
    await this.signal('SIGTERM');
  }

  /** Kills with SIGKILL: no save, no goodbye. */
  async kill(): Promise<void> {
    await this.signal('SIGKILL');
  }

  async restart(): Promise<void> {
    await this.stop();
    await this.start();
  }

  /** Stops the process and removes its directory. */
  async destroy(): Promise<void> {
    await this.signal('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  private async signal(signal: NodeJS.Signals): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill(signal);
    await exited;
    this.process = null;
  }
}

/** Starts a fresh redis-server; pair with `destroy()` in afterAll. */
export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  return new RedisServer(options).start();
}
