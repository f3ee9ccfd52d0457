// Real redis-server processes for tests: each on a free port, in its own temp dir, never 6379;
// also with TLS (certificates from certificates.ts), a Unix socket, as a replica, and as a
// sentinel (the same binary, --sentinel).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type NetConnectOpts } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TestCertificates } from './certificates.js';

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

/** Resolves once something accepts connections on the port (or Unix socket path). */
export async function waitForPort(port: number | string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  const target: NetConnectOpts = typeof port === 'string' ? { path: port } : { port, host: '127.0.0.1' };
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = connect(target);
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

/** The process id of the Redis that answers on the port (INFO server), or null. */
async function answeringProcess(port: number): Promise<number | null> {
  return new Promise((resolve) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let text = '';
    const done = (pid: number | null): void => {
      socket.destroy();
      resolve(pid);
    };
    socket.setTimeout(2000, () => done(null));
    socket.on('error', () => done(null));
    socket.on('connect', () => socket.write('INFO server\r\n'));
    socket.on('data', (chunk: Buffer) => {
      text += chunk.toString('latin1');
      const match = /process_id:(\d+)/.exec(text);
      if (match) done(Number(match[1]));
      else if (text.startsWith('-')) done(null); // NOAUTH (requirepass): cannot tell
    });
  });
}

export interface RedisTlsOptions {
  certificates: TestCertificates;
  /** Redis's tls-auth-clients (default here: no). */
  authClients?: 'yes' | 'no' | 'optional';
  /** Also the plain port (for the test's own admin connections); default true. */
  plainPort?: boolean;
}

export interface RedisServerOptions {
  /** Extra `--name value` arguments, e.g. { appendonly: 'yes' }. */
  config?: Record<string, string>;
  /** Also a TLS port (tls-replication too: replicas and sentinels speak TLS to it). */
  tls?: RedisTlsOptions;
  /** Also a Unix socket (in its dir). */
  unixSocket?: boolean;
}

/** redis-server arguments for a TLS port with the test certificates. */
export function redisTlsArgs(tls: RedisTlsOptions, tlsPort: number): string[] {
  const { server, ca } = tls.certificates;
  return [
    '--tls-port', String(tlsPort),
    '--tls-cert-file', server.cert,
    '--tls-key-file', server.key,
    '--tls-ca-cert-file', ca.cert,
    '--tls-auth-clients', tls.authClients ?? 'no',
    '--tls-replication', 'yes',
  ];
}

/** One redis-server process owned by a test. Survives restarts in the same dir and port. */
export class RedisServer {
  readonly dir: string;
  /** The plain TCP port (0 while not started; never listened on with tls.plainPort false). */
  port = 0;
  tlsPort = 0;
  process: ChildProcess | null = null;
  private readonly config: Record<string, string>;
  private readonly tls: RedisTlsOptions | undefined;
  private readonly withUnixSocket: boolean;

  constructor(options: RedisServerOptions = {}) {
    this.dir = mkdtempSync(join(tmpdir(), 'notifylist-redis-'));
    // DEBUG (e.g. SET-ACTIVE-EXPIRE) is allowed: tests use it to switch Redis's own expiry off.
    this.config = { save: '', appendonly: 'no', 'enable-debug-command': 'yes', ...options.config };
    this.tls = options.tls;
    this.withUnixSocket = options.unixSocket ?? false;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get tlsUrl(): string {
    return `rediss://127.0.0.1:${this.tlsPort}`;
  }

  /** The Unix socket (with unixSocket). */
  get socketPath(): string {
    return join(this.dir, 'redis.sock');
  }

  get hasPlainPort(): boolean {
    return this.tls?.plainPort !== false;
  }

  async start(): Promise<this> {
    // A port found free can be taken by another test process before this Redis binds it: then
    // this one exits at once, and another Redis answers on the port. Such a start is told by the
    // answering process id, and tried again on another port (a restart keeps its port).
    const fresh = this.port === 0;
    for (let attempt = 1; ; attempt++) {
      if (this.port === 0) this.port = await freePort();
      if (this.tls && this.tlsPort === 0) this.tlsPort = await freePort();
      const args = ['--port', this.hasPlainPort ? String(this.port) : '0', '--bind', '127.0.0.1', '--dir', this.dir, '--daemonize', 'no'];
      if (this.tls) args.push(...redisTlsArgs(this.tls, this.tlsPort));
      if (this.withUnixSocket) args.push('--unixsocket', this.socketPath, '--unixsocketperm', '700');
      for (const [name, value] of Object.entries(this.config)) args.push(`--${name}`, value);
      const child = spawn('redis-server', args, { stdio: ['ignore', 'ignore', 'inherit'] });
      this.process = child;
      await waitForPort(this.hasPlainPort ? this.port : this.tlsPort);
      if (!this.hasPlainPort) break;
      const pid = await answeringProcess(this.port);
      if (pid === child.pid) break;
      if (pid === null) {
        // (requirepass: INFO is refused.) A Redis that could not bind the port exits at once.
        await new Promise((r) => setTimeout(r, 100));
        if (child.exitCode === null && child.signalCode === null) break;
      }
      child.kill('SIGKILL');
      if (!fresh || attempt === 5) throw new Error(`port ${this.port} is answered by another Redis`);
      this.port = 0;
      this.tlsPort = 0;
    }
    if (this.withUnixSocket) await waitForPort(this.socketPath);
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

export interface SentinelOptions {
  masterName: string;
  masterPort: number;
  quorum: number;
  /** Short, for tests: how long the master may not answer before it is down. */
  downAfterMs: number;
  failoverTimeoutMs: number;
  /** TLS only (port 0), with TLS to the Redis servers too. */
  tls?: RedisTlsOptions;
  /** requirepass of the sentinel itself. */
  password?: string;
  /** Redis's credentials (sentinel auth-pass). */
  masterPassword?: string;
}

/** A sentinel: redis-server <conf> --sentinel. Its conf file is its own (Sentinel rewrites it). */
export class SentinelServer {
  readonly dir = mkdtempSync(join(tmpdir(), 'notifylist-sentinel-'));
  port = 0;
  process: ChildProcess | null = null;

  constructor(private readonly options: SentinelOptions) {}

  async start(): Promise<this> {
    if (this.port === 0) this.port = await freePort();
    const { masterName, masterPort, quorum, downAfterMs, failoverTimeoutMs, tls, password, masterPassword } = this.options;
    const lines = [
      `port ${tls ? 0 : this.port}`,
      'bind 127.0.0.1',
      `dir ${this.dir}`,
      `sentinel monitor ${masterName} 127.0.0.1 ${masterPort} ${quorum}`,
      `sentinel down-after-milliseconds ${masterName} ${downAfterMs}`,
      `sentinel failover-timeout ${masterName} ${failoverTimeoutMs}`,
      `sentinel parallel-syncs ${masterName} 1`,
      ...(masterPassword ? [`sentinel auth-pass ${masterName} ${masterPassword}`] : []),
      ...(password ? [`requirepass ${password}`] : []),
    ];
    if (tls) {
      const args = redisTlsArgs(tls, this.port);
      for (let i = 0; i < args.length; i += 2) lines.push(`${args[i].slice(2)} ${args[i + 1]}`);
    }
    const conf = join(this.dir, 'sentinel.conf');
    writeFileSync(conf, lines.join('\n') + '\n');
    const child = spawn('redis-server', [conf, '--sentinel'], { stdio: ['ignore', 'ignore', 'inherit'] });
    this.process = child;
    await waitForPort(this.port);
    return this;
  }

  async kill(): Promise<void> {
    const child = this.process;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.kill('SIGKILL');
    await exited;
    this.process = null;
  }

  async destroy(): Promise<void> {
    await this.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}
