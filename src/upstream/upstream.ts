// How the proxy reaches Redis, in one place: every connection to it is opened here (client
// sessions' raw sockets, the control plane's ioredis connections through UpstreamConnector, one-off
// checks), over TCP, TLS or a Unix socket, to the --upstream address or to the master the
// sentinels name (sentinel.ts). When that master moves, every connection to the old one is closed:
// a session after the replies already read (its client reconnects, as after a direct failover),
// a control connection at once (ioredis reconnects it, to the new master). Nothing keeps writing
// to a master that is no longer the one.
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { AbstractConnector, Redis, type RedisOptions } from 'ioredis';
import type { ProxyConfig, UpstreamAddress } from '../config.js';
import { endpointName, openSocket, sameEndpoint, type Endpoint, type OpenSocket, type Reader } from './endpoint.js';
import { MasterLocator } from './sentinel.js';
import { UpstreamTls } from './tls.js';
import type { Log } from '../operations/logger.js';

/** One-off checks (ROLE) must answer within this long. */
const CHECK_TIMEOUT_MS = 2000;
/** A control connection waits this long for a master to be confirmed, then ioredis retries. */
const CONTROL_WAIT_MS = 1000;
/** A demoted or failing master answers these (src/server.c): the sentinels are asked again. */
const NOT_MASTER_REPLY = /^(READONLY|MASTERDOWN)\b/;
const NOT_MASTER_BYTES = [Buffer.from('-READONLY '), Buffer.from('-MASTERDOWN ')];

export interface UpstreamLink extends OpenSocket {
  /** For messages: where the link goes. */
  name: string;
}

interface Tracked {
  endpoint: Endpoint | null;
  onFailover: () => void;
}

export class Upstream extends EventEmitter {
  readonly tls: UpstreamTls | null;
  private readonly address: UpstreamAddress;
  private readonly locator: MasterLocator | null;
  private readonly fixed: Endpoint | null;
  /** Every open connection that follows the master, and where it goes. */
  private readonly links = new Map<Socket, Tracked>();
  private readonly connectTimeoutMs: number;
  private stopped = false;

  /** Throws a CertificateError if a TLS file is unreadable or invalid. */
  constructor(config: Pick<ProxyConfig, 'upstream' | 'sentinel' | 'connectTimeoutMs'>, log: Log) {
    super();
    this.address = config.upstream;
    this.connectTimeoutMs = config.connectTimeoutMs;
    this.tls = config.upstream.tls ? new UpstreamTls(config.upstream.tls) : null;
    if (config.sentinel) {
      this.fixed = null;
      const roleOf = (endpoint: Endpoint): Promise<string> =>
        this.role(endpoint).then(
          (role) => role[0],
          (error: NodeJS.ErrnoException) => {
            throw new Error(this.tls?.describeFailure(error, endpointName(endpoint)) ?? error.message);
          },
        );
      this.locator = new MasterLocator(config.sentinel, this.tls, roleOf, log);
      this.locator.on('master', (master: Endpoint | null, previous: Endpoint | null) => this.moved(master, previous));
    } else {
      this.locator = null;
      const { socketPath, host, port } = config.upstream;
      this.fixed = socketPath !== undefined ? { path: socketPath } : { host, port };
    }
  }

  get username(): string | undefined {
    return this.address.username;
  }

  get password(): string | undefined {
    return this.address.password;
  }

  /** The master connections go to now (null: Sentinel has none confirmed). */
  get master(): Endpoint | null {
    return this.fixed ?? this.locator!.master;
  }

  /** Where Redis is, for messages ("10.0.0.5:6379", "/run/redis.sock", "10.0.0.7:6379 (master 'main')"). */
  get name(): string {
    if (this.fixed) return endpointName(this.fixed);
    const master = this.locator!.master;
    return master ? `${endpointName(master)} (${this.locator!.description})` : this.locator!.description;
  }

  /**
   * Direct: refuses a replica (rather than READONLY later) and tells TLS problems in their own
   * words; other failures (refused, authentication) are left to the control plane's start, which
   * says them in its words. Sentinel: subscribes and waits for a confirmed master.
   */
  async start(): Promise<void> {
    if (this.locator) {
      await this.locator.start(this.connectTimeoutMs);
      return;
    }
    let role: string[];
    try {
      role = await this.role(this.fixed!);
    } catch (error) {
      const tlsFailure = this.tls?.describeFailure(error as NodeJS.ErrnoException, `Redis at ${this.name}`);
      if (tlsFailure) throw new Error(tlsFailure);
      return;
    }
    if (role[0] === 'sentinel') {
      throw new Error(`${this.name} is a sentinel, not Redis: give it with --sentinel (and --sentinel-master)`);
    }
    if (role[0] !== 'master') {
      const of = role[0] === 'slave' ? ` of ${endpointName({ host: String(role[1]), port: Number(role[2]) })}` : '';
      throw new Error(`Redis at ${this.name} is a replica${of} (ROLE ${role[0]}): point --upstream at its master, or follow the master with --sentinel`);
    }
  }

  stop(): void {
    this.stopped = true;
    this.locator?.stop();
  }

  /**
   * A connection for a client session, to the current master (or, while none is confirmed, to the
   * next one, once confirmed, within --connect-timeout-ms). `onFailover` runs when the master
   * moves away from where this connection goes. What Redis sends goes to `reader` (see Reader:
   * no 'data' events on a plain socket).
   */
  open(onFailover: () => void, reader: Reader): UpstreamLink {
    const master = this.master;
    const target = master ?? this.locator!.whenKnown(this.connectTimeoutMs);
    // Sentinel: a reply that only a replica gives means the master moved (cheap: two searches per chunk).
    const read: Reader = this.locator ? (chunk) => (this.scanReply(chunk), reader(chunk)) : reader;
    const link = openSocket(target, this.tls, read);
    this.track(link.socket, target, onFailover);
    return { ...link, name: this.name };
  }

  /** A connection for a one-off exchange (permission check, auth probe), not followed. */
  openOnce(): UpstreamLink {
    return { ...openSocket(this.master ?? this.locator!.whenKnown(this.connectTimeoutMs), this.tls), name: this.name };
  }

  /** ioredis options for the control plane's connections: they follow the master. */
  clientOptions(): RedisOptions {
    return {
      ...this.credentials(),
      Connector: this.connector(() => (this.fixed ? Promise.resolve(this.fixed) : this.locator!.whenKnown(CONTROL_WAIT_MS)), true),
      reconnectOnError: (error: Error) => {
        if (this.locator && NOT_MASTER_REPLY.test(error.message)) this.locator.suspect(`the master answered ${error.message.split(' ')[0]}`);
        return false;
      },
    };
  }

  /** True if `client`'s connection goes to the current master. */
  isOnMaster(client: Redis): boolean {
    const tracked = client.stream ? this.links.get(client.stream) : undefined;
    return tracked !== undefined && sameEndpoint(tracked.endpoint, this.master);
  }

  /** SIGHUP: the TLS files again, for new connections. Throws (keeping the old ones) if one is bad. */
  reloadCertificates(): void {
    if (!this.tls) return;
    this.tls.reload();
    this.locator?.refreshTls();
  }

  private credentials(): RedisOptions {
    return {
      username: this.address.username,
      password: this.address.password,
      // ioredis then waits for the TLS handshake (secureConnect) before it speaks.
      tls: this.tls ? {} : undefined,
    };
  }

  /** ROLE of one server, asked on a connection of its own (with --upstream's credentials). */
  private async role(endpoint: Endpoint): Promise<string[]> {
    const client = new Redis({
      ...this.credentials(),
      Connector: this.connector(() => Promise.resolve(endpoint), false),
      connectionName: 'notifylist-proxy:check',
      disableClientInfo: true,
      enableReadyCheck: false,
      lazyConnect: true,
      retryStrategy: () => null,
      maxRetriesPerRequest: 0,
      connectTimeout: CHECK_TIMEOUT_MS,
      commandTimeout: CHECK_TIMEOUT_MS,
    });
    let failure: Error | null = null;
    client.on('error', (error: Error) => (failure ??= error));
    try {
      await client.connect();
      return (await client.call('ROLE')) as string[];
    } catch (error) {
      // connect() only says "Connection is closed"; the first 'error' says why.
      throw failure ?? error;
    } finally {
      client.disconnect();
    }
  }

  /** An ioredis Connector that opens its stream here (same sockets and TLS as the sessions'). */
  private connector(target: () => Promise<Endpoint>, follows: boolean): NonNullable<RedisOptions['Connector']> {
    const upstream = this;
    return class UpstreamConnector extends AbstractConnector {
      constructor(options: unknown) {
        super((options as RedisOptions).disconnectTimeout ?? 2000);
      }

      async connect(): Promise<Socket> {
        this.connecting = true;
        // A rejected connect ends an ioredis client for good (it retries only after a close): so
        // wait for a master as long as the client wants to connect.
        let endpoint: Endpoint | null = null;
        while (endpoint === null) {
          endpoint = await target().catch(() => null);
          if (!this.connecting) throw new Error('Connection is closed.');
        }
        const { socket } = openSocket(endpoint, upstream.tls);
        this.stream = socket;
        socket.once('error', (error: Error) => (this.firstError = error));
        if (follows) upstream.followControl(socket, endpoint);
        return socket;
      }
    };
  }

  /** A control connection: closed when the master moves; its unexpected end is a suspicion. */
  private followControl(socket: Socket, endpoint: Endpoint): void {
    let moved = false;
    this.track(socket, endpoint, () => {
      moved = true;
      socket.destroy();
    });
    if (this.locator) {
      socket.once('close', () => {
        if (!moved && !this.stopped) this.locator!.suspect('a control connection to the master closed');
      });
    }
  }

  private track(socket: Socket, target: Endpoint | Promise<Endpoint>, onFailover: () => void): void {
    const tracked: Tracked = { endpoint: target instanceof Promise ? null : target, onFailover };
    this.links.set(socket, tracked);
    socket.once('close', () => this.links.delete(socket));
    if (target instanceof Promise) {
      target.then(
        (endpoint) => {
          tracked.endpoint = endpoint;
          // Moved again in between: this one goes to the old master already.
          if (!sameEndpoint(endpoint, this.master)) onFailover();
        },
        () => undefined,
      );
    }
  }

  /** The master moved: nothing may go on writing to the old one. */
  private moved(master: Endpoint | null, previous: Endpoint | null): void {
    this.emit('switch', master, previous);
    if (!previous) return;
    for (const tracked of [...this.links.values()]) {
      if (tracked.endpoint !== null && sameEndpoint(tracked.endpoint, previous)) tracked.onFailover();
    }
  }

  private scanReply(chunk: Buffer): void {
    for (const bytes of NOT_MASTER_BYTES) {
      if (chunk.includes(bytes)) {
        this.locator!.suspect(`a client's reply was ${bytes.toString().trim()}`);
        return;
      }
    }
  }
}
