// A Sentinel group for tests: one master, one replica, three sentinels (the same redis-server
// binary with --sentinel), all on free ports. Timeouts are short (down-after, failover-timeout)
// and Sentinel's own periods are shortened with SENTINEL DEBUG (as Redis's sentinel tests do),
// so that a failover takes a few seconds.
import { Redis, type RedisOptions } from 'ioredis';
import { readFileSync } from 'node:fs';
import { RedisServer, SentinelServer, type RedisTlsOptions } from './redis-server.js';
import { waitFor } from './wait.js';

export const MASTER_NAME = 'mymaster';

export interface SentinelGroupOptions {
  downAfterMs?: number;
  failoverTimeoutMs?: number;
  /** TLS everywhere: Redis servers (TLS port and replication) and sentinels (TLS only). */
  tls?: RedisTlsOptions;
  /** requirepass of the sentinels. */
  password?: string;
  /** requirepass of the Redis servers (and masterauth, sentinel auth-pass). */
  redisPassword?: string;
}

export class SentinelGroup {
  readonly servers: RedisServer[];
  readonly sentinels: SentinelServer[] = [];

  private constructor(private readonly options: SentinelGroupOptions) {
    const config: Record<string, string> = { 'repl-ping-replica-period': '1', 'repl-timeout': '5' };
    if (options.redisPassword) Object.assign(config, { requirepass: options.redisPassword, masterauth: options.redisPassword });
    this.servers = [new RedisServer({ config, tls: options.tls }), new RedisServer({ config, tls: options.tls })];
  }

  static async start(options: SentinelGroupOptions = {}): Promise<SentinelGroup> {
    const group = new SentinelGroup(options);
    const [master, replica] = group.servers;
    await master.start();
    await replica.start();
    await group.admin(replica).call('REPLICAOF', '127.0.0.1', String(group.redisPort(master)));
    await group.waitForSync(replica);
    for (let i = 0; i < 3; i++) {
      group.sentinels.push(
        await new SentinelServer({
          masterName: MASTER_NAME,
          masterPort: group.redisPort(master),
          quorum: 2,
          downAfterMs: options.downAfterMs ?? 1000,
          failoverTimeoutMs: options.failoverTimeoutMs ?? 3000,
          tls: options.tls,
          password: options.password,
          masterPassword: options.redisPassword,
        }).start(),
      );
    }
    for (const sentinel of group.sentinels) {
      // Faster discovery and reconfiguration than Sentinel's defaults (10 s INFO, 2 s hello),
      // and a short TILT should a loaded machine delay a sentinel's timer.
      await group.sentinelAdmin(sentinel).call('SENTINEL', 'DEBUG', 'info-period', '200', 'publish-period', '200', 'ask-period', '200', 'tilt-period', '1000');
    }
    await group.waitUntilSettled();
    return group;
  }

  /** --sentinel's value. */
  get sentinelList(): string {
    return this.sentinels.map((sentinel) => `127.0.0.1:${sentinel.port}`).join(',');
  }

  /** The port clients (and sentinels) use for this server: its TLS port under TLS. */
  redisPort(server: RedisServer): number {
    return this.options.tls ? server.tlsPort : server.port;
  }

  /**
   * A direct connection (plain port, also under TLS: the test's own view). It reconnects: Sentinel
   * kills every normal client of a server it reconfigures.
   */
  admin(server: RedisServer, extra: RedisOptions = {}): Redis {
    const redis = new Redis({ port: server.port, password: this.options.redisPassword, maxRetriesPerRequest: 1, retryStrategy: () => 50, ...extra });
    redis.on('error', () => undefined);
    return redis;
  }

  sentinelAdmin(sentinel: SentinelServer): Redis {
    const tls = this.options.tls;
    const certificates = tls?.certificates;
    const redis = new Redis({
      port: sentinel.port,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
      password: this.options.password,
      tls: certificates ? { ca: readFileSync(certificates.ca.cert) } : undefined,
    });
    redis.on('error', () => undefined);
    return redis;
  }

  /** What a sentinel names as the master's port (null if it cannot be asked). */
  async masterPortSeenBy(sentinel: SentinelServer): Promise<number | null> {
    const admin = this.sentinelAdmin(sentinel);
    try {
      const reply = (await admin.call('SENTINEL', 'GET-MASTER-ADDR-BY-NAME', MASTER_NAME)) as [string, string] | null;
      return reply ? Number(reply[1]) : null;
    } catch {
      return null;
    } finally {
      admin.disconnect();
    }
  }

  /** The server every sentinel names as master, once they all agree. */
  async agreedMaster(timeoutMs = 20_000): Promise<RedisServer> {
    const ports = await waitFor(
      () => Promise.all(this.sentinels.map((sentinel) => this.masterPortSeenBy(sentinel))),
      (seen) => seen.every((port) => port !== null && port === seen[0]),
      timeoutMs,
      50,
    );
    const master = this.servers.find((server) => this.redisPort(server) === ports[0]);
    if (!master) throw new Error(`the sentinels do not agree on a master: ${ports.join(', ')}`);
    return master;
  }

  /** The other server. */
  other(server: RedisServer): RedisServer {
    return this.servers.find((s) => s !== server)!;
  }

  async role(server: RedisServer): Promise<string | null> {
    const admin = this.admin(server);
    try {
      return String(((await admin.call('ROLE')) as unknown[])[0]);
    } catch {
      return null;
    } finally {
      admin.disconnect();
    }
  }

  /** Until `server` is a replica with its link to the master up and the initial sync done. */
  async waitForSync(server: RedisServer, timeoutMs = 20_000): Promise<void> {
    const admin = this.admin(server);
    try {
      const info = await waitFor(
        () => admin.info('replication').catch(() => ''),
        (text) => text.includes('role:slave') && text.includes('master_link_status:up') && !text.includes('master_sync_in_progress:1'),
        timeoutMs,
        50,
      );
      if (!info.includes('master_link_status:up')) throw new Error(`replica ${server.port} never synced: ${info}`);
    } finally {
      admin.disconnect();
    }
  }

  /** Every sentinel sees the master's replica and the two other sentinels (a failover can happen). */
  async waitUntilSettled(timeoutMs = 20_000): Promise<void> {
    for (const sentinel of this.sentinels) {
      const admin = this.sentinelAdmin(sentinel);
      try {
        const fields = await waitFor(
          async () => {
            const reply = (await admin.call('SENTINEL', 'MASTER', MASTER_NAME).catch(() => [])) as string[];
            const map = new Map<string, string>();
            for (let i = 0; i + 1 < reply.length; i += 2) map.set(reply[i], reply[i + 1]);
            return map;
          },
          (map) => map.get('num-slaves') === '1' && map.get('num-other-sentinels') === '2' && map.get('flags') === 'master',
          timeoutMs,
          50,
        );
        if (fields.get('num-other-sentinels') !== '2') throw new Error(`sentinel ${sentinel.port} not settled: ${[...fields].join(' ')}`);
      } finally {
        admin.disconnect();
      }
    }
  }

  async destroy(): Promise<void> {
    await Promise.all([...this.sentinels.map((s) => s.destroy()), ...this.servers.map((s) => s.destroy())]);
  }
}
