// The proxy's control plane: loads the function library, keeps the registry cache in step with
// Redis (change channel, reload after any reconnect), makes Redis publish `expired`, listens to
// it for every database, and runs the reaper.
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { ProxyConfig } from '../config.js';
import { ExpiryReporter, Reaper } from './expiry.js';
import { createControlClient, inEveryDatabase, parseRedisVersion, probeAuthRequired, withExpiredEvents } from './redis-control.js';
import { Registry, type RegistrySnapshot } from './registry.js';
import { RegistrationKeeper } from './restore.js'; // startup branch: restore after a Redis restart
import type { ControlHooks } from '../proxy/rewrite.js';

/** Start-up failures worth one clear line and exit code 1. */
export class StartupError extends Error {}

const KEYEVENT_EXPIRED = '__keyevent@*__:expired';
const KEYEVENT_CHANNEL = /^__keyevent@(\d+)__:expired$/;

/** The library source with the internal prefix baked in (a Lua single-quoted string). */
export function librarySource(prefix: string): string {
  const source = readFileSync(new URL('./notifylist.lua', import.meta.url), 'utf8');
  const quoted = prefix.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n');
  return source.replace(/__PREFIX__/g, () => quoted);
}

export class ControlPlane implements ControlHooks {
  readonly registry = new Registry();
  readonly control: Redis;
  readonly subscriber: Redis;
  readonly reporter: ExpiryReporter;
  readonly reaper: Reaper;
  /** True while the keyevent subscription is in place. */
  subscribed = false;
  /** New connections must AUTH first (see Rewriter: such clients' writes stay unchanged until they try). */
  private authIsRequired = false;
  private lastControlError: string | null = null;
  private maintenanceTimer: NodeJS.Timeout | null = null;
  private running = false;
  private databaseCount = 16;
  private reloading: Promise<void> | null = null;
  private reloadAgain = false;
  /** startup branch: registrations lost by a Redis restart come back (restore.ts). */
  private readonly keeper: RegistrationKeeper;

  constructor(
    private readonly config: ProxyConfig,
    private readonly log: (line: string) => void,
  ) {
    const retry = (): boolean => this.running;
    this.control = createControlClient(config.upstream, 'notifylist-proxy:control', retry);
    this.subscriber = createControlClient(config.upstream, 'notifylist-proxy:events', retry);
    // ioredis reconnects by itself; errors in between are reported by the events below. The last
    // one says why a start-up connection failed (connect() itself only says "Connection is closed").
    this.control.on('error', (error: Error) => {
      this.lastControlError = error.message;
    });
    this.subscriber.on('error', () => undefined);
    this.keeper = new RegistrationKeeper(this.control, config.prefix, log, () => void this.reload()); // startup branch
    this.reporter = new ExpiryReporter(this.control, this.registry, config.prefix, log);
    this.reaper = new Reaper(this.control, this.registry, this.reporter, config.prefix, config.leaseMs, log);
  }

  databases(): number {
    return this.databaseCount;
  }

  libraryMayBeGone(): void {
    // The command is still on its way to Redis: look shortly after it, and once more later.
    for (const delay of [5, 100]) setTimeout(() => void this.ensureLibrary(), delay).unref();
  }

  authRequired(): boolean {
    return this.authIsRequired;
  }

  private async probeAuth(): Promise<void> {
    this.authIsRequired = await probeAuthRequired(this.config.upstream);
  }

  /**
   * Things that change without a reconnect: requirepass / the ACL default user, databases that
   * hold index entries but no registrations any more, and the function library (FUNCTION FLUSH,
   * or a restart without persistence that ioredis did not notice).
   */
  private async maintain(): Promise<void> {
    await this.probeAuth();
    await this.reaper.findIndexedDatabases(this.databaseCount).catch(() => undefined);
    await this.ensureLibrary();
  }

  private async ensureLibrary(): Promise<void> {
    try {
      const libraries = (await this.control.call('FUNCTION', 'LIST', 'LIBRARYNAME', 'notifylist')) as unknown[];
      if (libraries.length === 0) {
        this.log('function library missing; loading it again');
        await this.prepare();
      }
    } catch {
      // Disconnected: the ready handler prepares everything again.
    }
  }

  infoFields(): string[] {
    return [this.reaper.id, this.reaper.isLeader ? '1' : '0', this.subscribed ? 'up' : 'down'];
  }

  get upstreamName(): string {
    return `${this.config.upstream.host}:${this.config.upstream.port}`;
  }

  async start(): Promise<void> {
    try {
      await this.control.connect();
    } catch (error) {
      const reason = this.lastControlError ?? (error as Error).message;
      const refusedAuth = /NOAUTH|WRONGPASS|NOPERM|invalid password|AUTH/i.test(reason);
      throw new StartupError(
        refusedAuth
          ? `Redis at ${this.upstreamName} refused the proxy's authentication: ${reason}`
          : `cannot reach Redis at ${this.upstreamName}: ${reason}`,
      );
    }
    const info = await this.control.info('server').catch((error: Error) => {
      throw new StartupError(`Redis at ${this.upstreamName} refused INFO: ${error.message}`);
    });
    const version = parseRedisVersion(info);
    if (!version || version[0] < 7) {
      throw new StartupError(
        `Redis at ${this.upstreamName} is version ${version?.join('.') ?? 'unknown'}; notifylist-proxy needs Redis 7.0 or newer (functions)`,
      );
    }
    try {
      await this.prepare();
    } catch (error) {
      throw new StartupError(`cannot prepare Redis at ${this.upstreamName}: ${(error as Error).message}`);
    }
    this.running = true;
    this.maintenanceTimer = setInterval(() => void this.maintain(), 5000);
    this.maintenanceTimer.unref();

    // After any reconnect: library and flags again (Redis may have restarted), then registrations,
    // then the reaper catches up on everything that fell due meanwhile.
    this.control.on('ready', () => {
      void this.prepare()
        .then(() => this.reaper.wake())
        .catch((error: Error) => this.log(`after reconnect: ${error.message}`));
    });
    this.subscriber.on('ready', () => {
      this.subscribed = true;
      void this.reload().then(() => this.reaper.wake());
    });
    this.subscriber.on('close', () => {
      this.subscribed = false;
    });
    this.subscriber.on('pmessageBuffer', (_pattern: Buffer, channel: Buffer, message: Buffer) => {
      const match = KEYEVENT_CHANNEL.exec(channel.toString('latin1'));
      if (match) this.reporter.queue(Number(match[1]), message.toString('latin1'));
    });
    this.subscriber.on('messageBuffer', (channel: Buffer) => {
      const name = channel.toString('latin1');
      if (name === `${this.config.prefix}changes`) void this.reload().then(() => this.reaper.wake());
      else if (name === `${this.config.prefix}wake`) this.reaper.wake();
    });
    await this.subscriber.connect();
    await this.subscriber.psubscribe(KEYEVENT_EXPIRED);
    await this.subscriber.subscribe(`${this.config.prefix}changes`, `${this.config.prefix}wake`);
    this.subscribed = true;
    this.reaper.start();
  }

  async stop(): Promise<void> {
    this.running = false;
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    await this.reaper.stop();
    this.reporter.stop();
    this.subscriber.disconnect();
    await this.control.quit().catch(() => this.control.disconnect());
  }

  /** Library, notification flags, database count, clock, registrations. */
  private async prepare(): Promise<void> {
    await this.control.call('FUNCTION', 'LOAD', 'REPLACE', librarySource(this.config.prefix));
    await this.ensureExpiredEvents();
    const databases = (await this.control.config('GET', 'databases').catch(() => [])) as string[];
    if (databases.length === 2) this.databaseCount = Number(databases[1]);
    await this.reaper.measureClock();
    await this.probeAuth();
    await this.reload();
  }

  /** Adds what we need to notify-keyspace-events without removing what others set. */
  private async ensureExpiredEvents(): Promise<void> {
    try {
      const [, flags] = (await this.control.config('GET', 'notify-keyspace-events')) as string[];
      const merged = withExpiredEvents(flags ?? '');
      if (merged !== flags) await this.control.config('SET', 'notify-keyspace-events', merged);
    } catch (error) {
      this.log(`cannot enable expired notifications (${(error as Error).message}); relying on the reaper alone`);
    }
  }

  /** Reloads every database's registrations; concurrent requests coalesce into one more load. */
  reload(): Promise<void> {
    if (this.reloading) {
      this.reloadAgain = true;
      return this.reloading;
    }
    this.reloading = (async () => {
      do {
        this.reloadAgain = false;
        try {
          this.registry.replace(this.keeper.loaded(await this.loadRegistrations())); // startup branch: keeper.loaded
        } catch (error) {
          this.log(`registry reload failed: ${(error as Error).message}`);
        }
      } while (this.reloadAgain);
      this.reloading = null;
    })();
    return this.reloading;
  }

  private async loadRegistrations(): Promise<RegistrySnapshot> {
    const results = await inEveryDatabase(this.control, this.databaseCount, ['HGETALL', `${this.config.prefix}registry`]);
    const snapshot: RegistrySnapshot = new Map();
    for (const [db, [error, reply]] of results.entries()) {
      if (error) throw error;
      const fields = reply as Buffer[];
      if (fields.length === 0) continue;
      const patterns = new Map<string, string>();
      for (let i = 0; i < fields.length; i += 2) patterns.set(fields[i].toString('latin1'), fields[i + 1].toString('latin1'));
      snapshot.set(db, patterns);
    }
    return snapshot;
  }
}
