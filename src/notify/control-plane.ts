// The proxy's control plane. Two states:
// - idle (nothing registered, no index entries in any database): after start-up it sends Redis
//   nothing but a plain SUBSCRIBE to the change channel; no library, keys, patterns or timers.
// - active: the function library is loaded, notify-keyspace-events has `Ex`, the keyevent channels
//   of the databases that need them are subscribed, the reaper runs, and a maintenance tick checks
//   the library and the registry counts every MAINTENANCE_MS.
// The first NOTIFYLIST.* command loads the library (its client waits); a registration is announced
// to every proxy and acknowledged by each before it is committed, so that once it has replied OK
// every later write through any proxy is rewritten (registration is a barrier).
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Redis } from 'ioredis';
import type { ProxyConfig } from '../config.js';
import { RegistrationKeeper } from './restore.js';
import { rewrittenCommands, type ControlHooks } from '../proxy/rewrite.js';
import { keyRulesOf, readsAll, registrationRefusal, type KeyRuleSets } from '../security/acl-rules.js';
import { decodeRegistration, loadSecret, secretHash, tag } from '../security/secret.js';
import { ackMessage, announceMessage, parseChange, type ChangeMessage, type Registration } from './changes.js';
import { ExpiryReporter, Reaper } from './expiry.js';
import { EVICTED_CHANNEL, EXPIRED_CHANNEL, evictedChannel, expiredChannel, internalNames, type InternalNames } from './names.js';
import { binary, createControlClient, databaseCount, inDatabase, inEveryDatabase, parseRedisVersion, probeAuthRequired, withKeyeventFlags } from './redis-control.js';
import { Registry, type RegistrySnapshot, type StoredEntry } from './registry.js';
import type { Upstream } from '../upstream/upstream.js';
import { ProxyCounters } from '../operations/proxy-counters.js';
import type { Log } from '../operations/logger.js';

/** Start-up failures worth one clear line and exit code 1. */
export class StartupError extends Error {}

const LIBRARY_TEXT = readFileSync(new URL('./notifylist.lua', import.meta.url), 'utf8');
/** The library's version (defined once, in the Lua source). */
export const LIBRARY_VERSION = Number(/^local LIBRARY_VERSION = (\d+)$/m.exec(LIBRARY_TEXT)?.[1]);

/** A Lua single-quoted string's contents. */
function luaQuoted(text: string): string {
  return text.replace(/\\/g, '\\\\').replace(/'/g, "\\'").replace(/\n/g, '\\n');
}

/**
 * The library source with what the proxy defines baked in: the internal prefix, the SHA1 of the
 * deployment's secret, and the commands rewritten into each write function (rewrite.ts).
 */
export function librarySource(prefix: string, secret: string): string {
  const { denyoom, others } = rewrittenCommands();
  const table = (names: string[]): string => names.map((name) => `['${name}'] = true`).join(', ');
  return LIBRARY_TEXT.replace(/__PREFIX__/g, () => luaQuoted(prefix))
    .replace(/__SECRET_HASH__/g, () => secretHash(secret))
    .replace(/__DENYOOM_WRITES__/g, () => table(denyoom))
    .replace(/__OTHER_WRITES__/g, () => table(others));
}

/** While active: library present, registry counts, index entries, once per this long. */
const MAINTENANCE_MS = 5000;
/** How long a registration waits for every proxy's acknowledgement before it goes ahead anyway. */
const BARRIER_TIMEOUT_MS = 1000;
/** How long a client's requests wait for the registry to become current again before they go on. */
const DOUBT_TIMEOUT_MS = 5000;
/** An auth probe older than this is repeated when a write's fate depends on it (see recheckAuth). */
const AUTH_PROBE_MAX_AGE_MS = 1000;
/** Patterns per HMGET when looking changed registrations up. */
const LOOKUP_BATCH = 1000;
/** Longest wait for Redis when taking the event counts (a scrape must not hang on a lost Redis). */
const TAKE_COUNTS_TIMEOUT_MS = 1000;

interface AckWaiter {
  needed: number;
  /** The proxies that acknowledged (each counts once). */
  received: Set<string>;
  done: () => void;
}

export class ControlPlane implements ControlHooks {
  readonly names: InternalNames;
  readonly registry = new Registry();
  readonly control: Redis;
  readonly subscriber: Redis;
  readonly reporter: ExpiryReporter;
  readonly reaper: Reaper;
  /** Counters for NOTIFYLIST.INFO. */
  readonly counters = { barrierTimeouts: 0, doubtTimeouts: 0 };
  /** The proxy's operational counters (metrics and NOTIFYLIST.INFO): src/operations/proxy-counters.ts. */
  readonly stats = new ProxyCounters();
  /**
   * Names this proxy's counter in the library: its writes' events are added there in Redis (the
   * write's reply must stay the command's) and taken back by takeEventCounts.
   */
  readonly eventCounter = randomUUID().replace(/-/g, '').slice(0, 16);

  get maxValueBytes(): number {
    return this.config.maxValueBytes;
  }
  /** Ever active: counters of ours may be in Redis. */
  private everActive = false;
  private taking: Promise<void> | null = null;
  private active = false;
  private activating: Promise<void> | null = null;
  /** The library with our version and secret is known to be loaded. */
  private libraryReady = false;
  /** The deployment's secret (known once the library has been loaded or the registry read). */
  private deploymentSecret: string | null = null;
  /** Registry entries not made by the library (written by hand), per database, at the last full
   * load: the maintenance tick compares Redis's counts with what it knows plus these. */
  private foreignEntries = new Map<number, number>();
  private libraryLoading: Promise<void> | null = null;
  /** The last ensureLibrary succeeded (readiness: a check in progress is not a missing library). */
  private libraryLastOk = false;
  /** Bumped when the library may have gone: a check that started before does not count. */
  private libraryGeneration = 0;
  /** Subscribed to the change channel, and the registry fully loaded since. */
  private current = false;
  /**
   * A first registration is being announced while the library is not known to be loaded: its
   * pattern is already a candidate, and a write rewritten now would call a function that may not
   * exist yet. Until the library is there, sessions hold their requests as when not current.
   */
  private loadingForAnnouncement = false;
  private currentWaiters: Array<() => void> = [];
  /** Channels subscribed to while active: the wake channel and keyevent channels. */
  private readonly activeChannels = new Set<string>();
  private keyeventSubscribed = false;
  /** The evicted channels were refused (logged once). */
  private evictionsRefused = false;
  /** Databases whose expiry index has entries (last maintenance or full load). */
  private indexedDbs: number[] = [];
  private authIsRequired = false;
  private authProbedAt = 0;
  private authProbe: Promise<void> | null = null;
  private lastControlError: string | null = null;
  private maintenanceTimer: NodeJS.Timeout | null = null;
  private running = false;
  private databaseCount = 16;
  private loading: Promise<void> | null = null;
  private loadAgain = false;
  private lookups = new Set<string>();
  private lookingUp: Promise<void> | null = null;
  private announcing: Registration[] = [];
  private announced: Promise<void> | null = null;
  private readonly ackWaiters = new Map<string, AckWaiter>();
  private announceSequence = 0;
  private readonly id = randomUUID();
  /** Registrations lost by a Redis restart come back (restore.ts). */
  private readonly keeper: RegistrationKeeper;

  constructor(
    private readonly config: ProxyConfig,
    private readonly log: Log,
    /** Where Redis is; under Sentinel it moves (then the control connections follow it). */
    private readonly upstream: Upstream,
  ) {
    this.names = internalNames(config.prefix);
    const retry = (): boolean => this.running;
    this.control = createControlClient(upstream, 'notifylist-proxy:control', retry);
    this.subscriber = createControlClient(upstream, 'notifylist-proxy:events', retry);
    // A new master: its change channel is not subscribed yet, so the registry is not current
    // there (a registration made there now would not wait for us). Synchronous: sessions opened
    // to the new master hold their requests from the start.
    upstream.on('switch', () => {
      this.current = false;
      this.keyeventSubscribed = false;
    });
    // Subscriptions are made again by hand after a reconnect, then the registry is reloaded.
    this.subscriber.options.autoResubscribe = false;
    // ioredis reconnects by itself; errors in between are reported by the events below. The last
    // one says why a start-up connection failed (connect() itself only says "Connection is closed").
    this.control.on('error', (error: Error) => {
      this.lastControlError = error.message;
    });
    this.subscriber.on('error', () => undefined);
    const secret = (): Buffer => binary(this.secret());
    this.reporter = new ExpiryReporter(this.control, this.registry, this.names, secret, log, (byReaper, pushed, lagsMs) => {
      this.stats.addExpired(byReaper ? 'reaper' : 'keyevent', pushed);
      for (const lag of lagsMs) this.stats.observeExpiryLag(lag / 1000);
    }, (pushed) => this.stats.addEvents('evicted', pushed));
    this.reaper = new Reaper(this.control, this.registry, this.reporter, this.names, secret, config.leaseMs, log);
    this.keeper = new RegistrationKeeper(this.control, this.names, () => this.registry.snapshot(), log, () => void this.reload());
  }

  // ---- hooks for sessions (ControlHooks) ----

  databases(): number {
    return this.databaseCount;
  }

  authRequired(): boolean {
    return this.authIsRequired;
  }

  /**
   * A write to a registered key from a client that has not authenticated goes out unchanged
   * while auth is believed required: if Redis stopped requiring it, that write would be lost to
   * events. So such writes, and sessions that see Redis answer otherwise than believed (and
   * nothing periodic), make us ask again, at most every AUTH_PROBE_MAX_AGE_MS, on a new
   * unauthenticated connection (the only way to ask).
   */
  recheckAuth(): void {
    void this.probeAuthIfStale();
  }

  /**
   * authRequired(), asked again first if the last answer is older than AUTH_PROBE_MAX_AGE_MS: for
   * an unauthenticated client's request over Redis's unauthenticated limits, which the session
   * refuses (and closes) only if Redis still requires AUTH, and for protected mode.
   */
  async authRequiredNow(): Promise<boolean> {
    await this.probeAuthIfStale();
    return this.authIsRequired;
  }

  /** (Writes to registered keys also wait until the secret is known: their calls carry it.) */
  registryIsCurrent(): boolean {
    return this.current && !this.loadingForAnnouncement && (this.deploymentSecret !== null || this.registry.empty);
  }

  secret(): string {
    return this.deploymentSecret ?? '';
  }

  async authorizeRegistration(users: string[], pattern: string): Promise<string> {
    for (const user of users) {
      const refusal = await registrationRefusal(this.control, user, pattern);
      if (refusal !== '') return refusal;
    }
    return '';
  }

  /** Resolves when the registry is current again, or after DOUBT_TIMEOUT_MS (counted, logged). */
  whenCurrent(): Promise<void> {
    if (this.registryIsCurrent()) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.counters.doubtTimeouts++;
        this.log.warn('registry_doubt_timeout', `registry not current for ${DOUBT_TIMEOUT_MS} ms (change subscription down); requests go on unverified`);
        resolve();
      }, DOUBT_TIMEOUT_MS);
      this.currentWaiters.push(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }

  libraryMayBeGone(): void {
    this.forgetLibrary();
    // Idle: the library is loaded again when next needed.
    if (!this.active && !this.activating && this.registry.empty) return;
    // The command is still on its way to Redis: look shortly after it, and once more later.
    for (const delay of [5, 100]) setTimeout(() => void this.ensureLibrary().catch(() => undefined), delay).unref();
  }

  /** For NOTIFYLIST.* commands: resolves once the library is loaded (errors: the FCALL reports them). */
  libraryLoaded(): Promise<void> {
    // Idle: nothing watches the library, so it may have been flushed since we last looked.
    if (!this.active) this.forgetLibrary();
    return this.ensureLibrary().catch((error: Error) => this.log.error('library_load_failed', `cannot load the function library: ${error.message}`));
  }

  /**
   * A client sent NOTIFYLIST.SET: the pair is a candidate on this proxy at once; the returned
   * promise resolves when every proxy has acknowledged it (or BARRIER_TIMEOUT_MS passed), and only
   * then may the registration go to Redis. Registrations of the same tick share one announcement.
   */
  announceRegistration(registration: Registration): Promise<void> {
    if (!this.active) this.forgetLibrary(); // as in libraryLoaded
    if (!this.libraryReady) this.loadingForAnnouncement = true;
    this.registry.announce([registration]);
    this.announcing.push(registration);
    if (this.announced === null) {
      this.announced = new Promise<void>((resolve) => {
        setImmediate(() => {
          const batch = this.announcing;
          this.announcing = [];
          this.announced = null;
          this.announce(batch).then(resolve, (error: Error) => {
            this.log.warn('announce_failed', `announcing a registration failed: ${error.message}`);
            resolve();
          });
        });
      });
    }
    return this.announced;
  }

  infoFields(): string[] {
    return [
      `proxy_id:${this.reaper.id}`,
      `reaper_leader:${this.reaper.isLeader ? 1 : 0}`,
      `keyevent_subscription:${!this.active ? 'idle' : this.keyeventSubscribed ? 'up' : 'down'}`,
      `registry_current:${this.current ? 'yes' : 'no'}`,
      `barrier_timeouts:${this.counters.barrierTimeouts}`,
      `doubt_timeouts:${this.counters.doubtTimeouts}`,
      ...this.stats.infoFields(),
    ];
  }

  get upstreamName(): string {
    return this.upstream.name;
  }

  get isActive(): boolean {
    return this.active;
  }

  /** The last check of the library found ours loaded (it is checked again every MAINTENANCE_MS). */
  get libraryIsLoaded(): boolean {
    return this.libraryReady || this.libraryLastOk;
  }

  /** Databases with registrations or expiry index entries. */
  watchedDatabases(): number[] {
    return [...new Set([...this.registry.databases(), ...this.indexedDbs])].sort((a, b) => a - b);
  }

  /** The keyevent subscriptions the proxy needs are up (false while idle: none are needed). */
  get keyeventSubscriptionUp(): boolean {
    return this.active && this.keyeventSubscribed;
  }

  /**
   * Adds to `stats` what this proxy's writes pushed since last time (the library keeps it in
   * Redis, see notifylist_write) and removes it there. Before metrics and NOTIFYLIST.INFO are
   * read; concurrent callers share one; gives up after TAKE_COUNTS_TIMEOUT_MS (counts taken
   * later are added then). Sends nothing while the proxy has never been active.
   */
  takeEventCounts(): Promise<void> {
    if (!this.everActive || this.control.status !== 'ready') return Promise.resolve();
    this.taking ??= inDatabase(this.control, 0, [
      ['FCALL', 'notifylist_take_counts', 0, binary(this.secret()), this.databaseCount, this.eventCounter],
    ])
      .then(([totals]) => {
        const pairs = totals as Array<Buffer | number>;
        for (let i = 0; i + 1 < pairs.length; i += 2) {
          const op = pairs[i].toString();
          if (op === 'expired') this.stats.addExpired('write', Number(pairs[i + 1]));
          else this.stats.addEvents(op, Number(pairs[i + 1]));
        }
      })
      .catch(() => undefined) // (a lost reply loses those counts; never counted twice)
      .finally(() => {
        this.taking = null;
      });
    const timeout = new Promise<void>((resolve) => setTimeout(resolve, TAKE_COUNTS_TIMEOUT_MS).unref());
    return Promise.race([this.taking, timeout]);
  }

  // ---- lifecycle ----

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
    this.databaseCount = await databaseCount(this.control);
    await this.probeAuth();

    this.subscriber.on('messageBuffer', (channel: Buffer, message: Buffer) => this.onMessage(channel, message));
    await this.subscriber.connect();
    await this.subscribeChanges();
    try {
      await this.loadAll(true);
      if (this.needsActivation()) await this.activate();
    } catch (error) {
      throw new StartupError(`cannot prepare Redis at ${this.upstreamName}: ${(error as Error).message}`);
    }
    this.running = true;

    // After any reconnect: library and flags again if active (Redis may have restarted); the
    // subscriber subscribes again and reloads the registry (changes may have been missed).
    this.control.on('ready', () => {
      this.stats.upstreamReconnects++;
      if (!this.active) return;
      this.forgetLibrary();
      void this.prepareActive()
        .then(() => this.reaper.wake())
        .catch((error: Error) => this.log.warn('reconnect_preparation_failed', `after reconnect: ${error.message}`));
    });
    this.control.on('close', () => this.reaper.connectionLost());
    this.subscriber.on('close', () => {
      this.current = false;
      this.keyeventSubscribed = false;
    });
    this.subscriber.on('ready', () => {
      void this.subscribeChanges()
        .then(() => this.loadAll(true))
        .then(() => this.afterRegistryChange())
        .catch((error: Error) => this.log.warn('reconnect_preparation_failed', `after reconnect of the subscriber: ${error.message}`));
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    this.stopMaintenance();
    // Nothing of ours stays in Redis's counters.
    await this.takeEventCounts();
    await this.reaper.stop();
    this.reporter.stop();
    this.subscriber.disconnect();
    await this.control.quit().catch(() => this.control.disconnect());
  }

  // ---- activation ----

  private needsActivation(): boolean {
    return !this.registry.empty || this.indexedDbs.length > 0 || this.foreignEntries.size > 0;
  }

  /** Becomes active (idempotent; concurrent calls share one). */
  private activate(): Promise<void> {
    if (this.active) return Promise.resolve();
    if (!this.activating) {
      this.activating = this.prepareActive()
        .then(() => {
          this.active = true;
          this.everActive = true;
          this.log.info('active', 'active: registrations present');
          this.startMaintenance();
          this.reaper.start();
          void this.syncKeyeventSubscriptions();
        })
        .finally(() => {
          this.activating = null;
        });
    }
    return this.activating;
  }

  private deactivate(): void {
    if (!this.active) return;
    this.active = false;
    this.log.info('idle', 'idle: nothing registered, no index entries');
    this.stopMaintenance();
    void this.reaper.stop();
    void this.syncKeyeventSubscriptions();
  }

  /** Library, notification flags, clock, auth probe (unless one was just made, as at start). */
  private async prepareActive(): Promise<void> {
    await this.ensureLibrary();
    await this.ensureKeyeventFlags();
    await this.reaper.measureClock();
    await this.probeAuthIfStale();
    await this.checkOwners();
  }

  /** After the registry view changed: become active or idle, follow the right keyevent channels. */
  private async afterRegistryChange(): Promise<void> {
    if (this.needsActivation()) {
      await this.activate().catch((error: Error) => this.log.error('activation_failed', `cannot become active: ${error.message}`));
      await this.syncKeyeventSubscriptions();
      this.reaper.wake();
    } else if (!this.registry.hasAnnouncements) {
      this.deactivate();
    }
  }

  private startMaintenance(): void {
    if (this.maintenanceTimer) return;
    this.maintenanceTimer = setInterval(() => void this.maintain(), MAINTENANCE_MS);
    this.maintenanceTimer.unref();
  }

  private stopMaintenance(): void {
    if (this.maintenanceTimer) clearInterval(this.maintenanceTimer);
    this.maintenanceTimer = null;
  }

  /**
   * Things that change without a message: the library (FUNCTION FLUSH, a restart without
   * persistence), registries changed directly on Redis (FLUSHALL, HDEL), index entries. One
   * pipeline on the control connection; a full reload only when the counts differ.
   */
  private async maintain(): Promise<void> {
    try {
      this.forgetLibrary();
      await this.ensureLibrary().catch((error: Error) => this.log.error('library_load_failed', `cannot load the function library: ${error.message}`));
      const results = await inEveryDatabase(this.control, this.databaseCount, [
        ['HLEN', this.names.registry],
        ['ZCARD', this.names.expiry],
      ]);
      const counts = this.registry.countsByDb();
      let differs = false;
      const indexed: number[] = [];
      results.forEach(([registrations, entries], db) => {
        if (Number(registrations) !== (counts.get(db) ?? 0) + (this.foreignEntries.get(db) ?? 0)) differs = true;
        if (Number(entries) > 0) indexed.push(db);
      });
      this.setIndexedDbs(indexed);
      this.registry.expireAnnouncements();
      if (differs) await this.loadAll(false);
      await this.checkOwners();
      await this.afterRegistryChange();
    } catch {
      // Disconnected: the ready handlers prepare everything again.
    }
  }

  /**
   * What the proxy does for a registration under its own login (backfill's SCAN, the reaper, the
   * reports of Redis's own expired events) must stay within what the registration's owner may do
   * now: a registration whose owner may no longer read every key its pattern can match, or push to
   * its list, is suspended for those (writes through the proxies still emit events, with the
   * writer's own rights). Checked when active, every MAINTENANCE_MS (ACL GETUSER per owner, ACL
   * DRYRUN per owner and list). A check that fails (Redis away) changes nothing.
   */
  private async checkOwners(): Promise<void> {
    const byOwner = new Map<string, Array<[number, string, StoredEntry]>>();
    for (const item of this.registry.entries()) {
      const owner = item[2].owner;
      if (owner === '') continue; // registered before owners: the proxy's own user
      const items = byOwner.get(owner) ?? [];
      items.push(item);
      byOwner.set(owner, items);
    }
    const suspended = new Set<string>();
    try {
      for (const [owner, items] of byOwner) {
        const rules = keyRulesOf(await this.control.callBuffer('ACL', 'GETUSER', binary(owner)));
        const mayPush = new Map<string, boolean>();
        for (const [db, pattern, entry] of items) {
          let pushes = mayPush.get(entry.list);
          if (pushes === undefined && rules !== null) {
            const verdict = await this.control.callBuffer('ACL', 'DRYRUN', binary(owner), 'RPUSH', binary(entry.list), 'x');
            pushes = String(verdict) === 'OK';
            mayPush.set(entry.list, pushes);
          }
          if (rules === null || !pushes || !readsAll(rules, pattern)) suspended.add(`${db}\n${pattern}`);
        }
      }
    } catch (error) {
      this.log.warn('owner_check_failed', `cannot check the rights of registration owners: ${(error as Error).message}`);
      return;
    }
    const before = this.registry.suspendedCount;
    this.registry.setSuspended(suspended);
    if (suspended.size !== before) {
      this.log.warn('registrations_suspended', `${suspended.size} registration(s) suspended: their owners may no longer read what they match or push to their lists`, { suspended: suspended.size });
    }
  }

  // ---- library and flags ----

  private forgetLibrary(): void {
    this.libraryReady = false;
    this.libraryGeneration++;
  }

  /**
   * Loads the library unless ours (our version, made for the deployment's secret) is there, and
   * refuses to replace a newer one. Reads the secret first, storing one if Redis has none; when it
   * replaces a library from before tags (version < 3), that library's entries get their tags.
   */
  private ensureLibrary(): Promise<void> {
    if (this.libraryReady) return Promise.resolve();
    if (this.libraryLoading) return this.libraryLoading.then(() => this.ensureLibrary());
    const generation = this.libraryGeneration;
    this.libraryLoading = (async () => {
      const secret = await loadSecret(this.control, this.names.secret, this.deploymentSecret);
      const secretChanged = secret !== this.deploymentSecret;
      this.deploymentSecret = secret;
      const { version, deployment } = await this.loadedLibrary();
      if (version !== null && version > LIBRARY_VERSION) {
        throw new Error(
          `Redis holds function library notifylist version ${version}, newer than this proxy's ${LIBRARY_VERSION}; not replacing it (upgrade this proxy)`,
        );
      }
      let migrated = false;
      if (version !== LIBRARY_VERSION || deployment !== secretHash(secret)) {
        await this.control.call('FUNCTION', 'LOAD', 'REPLACE', librarySource(this.config.prefix, secret));
        this.log.info('library_loaded', `function library notifylist version ${LIBRARY_VERSION} loaded`, { version: LIBRARY_VERSION, previous: version });
        if (version !== null && version < 3) migrated = await this.migrate();
      }
      this.libraryReady = generation === this.libraryGeneration;
      // The registry view holds what the library made: read it again with the secret.
      if (secretChanged || migrated) await this.loadAll(false);
      this.releaseWaiters();
      this.libraryLastOk = true;
    })()
      .catch((error: unknown) => {
        this.libraryLastOk = false;
        throw error;
      })
      .finally(() => {
        this.libraryLoading = null;
      });
    return this.libraryLoading;
  }

  /**
   * Registrations are tagged with the secret: it must be in Redis when one is made (a FLUSHALL sent
   * to Redis directly removed it: a proxy started then would make another, and the registration
   * would count for nothing). If Redis holds another secret than ours, the library follows it.
   */
  private async keepSecretStored(): Promise<void> {
    const stored = await loadSecret(this.control, this.names.secret, this.deploymentSecret);
    if (stored === this.deploymentSecret) return;
    this.deploymentSecret = stored;
    this.forgetLibrary();
    await this.ensureLibrary();
  }

  /** The loaded library's version and the SHA1 of its secret (null: no library, or none such). */
  private async loadedLibrary(): Promise<{ version: number | null; deployment: string | null }> {
    const results = ((await this.control.pipeline().call('FCALL_RO', 'notifylist_version', 0).call('FCALL_RO', 'notifylist_deployment', 0).exec()) ??
      []) as Array<[Error | null, unknown]>;
    const [version, deployment] = results.map(([error, reply]) => {
      // No library, or one from before versions / deployments (no such function).
      if (error && !/Function not found/i.test(error.message)) throw error;
      return error ? null : reply;
    });
    return { version: version === null ? null : Number(version), deployment: deployment === null ? null : String(deployment) };
  }

  /** Tags what a library from before tags made, in every database (once, when replacing it). */
  private async migrate(): Promise<boolean> {
    let tagged = 0;
    for (let db = 0; db < this.databaseCount; db++) {
      const [count] = await inDatabase(this.control, db, [['FCALL', 'notifylist_migrate', 0, binary(this.secret())]]);
      tagged += Number(count);
    }
    this.log.info('library_migrated', `entries of the previous function library tagged: ${tagged}`, { tagged });
    return true;
  }

  /** Adds what we need to notify-keyspace-events without removing what others set. */
  private async ensureKeyeventFlags(): Promise<void> {
    try {
      const [, flags] = (await this.control.config('GET', 'notify-keyspace-events')) as string[];
      const merged = withKeyeventFlags(flags ?? '');
      if (merged !== flags) await this.control.config('SET', 'notify-keyspace-events', merged);
    } catch (error) {
      this.log.warn('keyevents_unavailable', `cannot enable expired and evicted notifications (${(error as Error).message}); relying on the reaper alone, no evicted events`);
    }
  }

  private async probeAuthIfStale(): Promise<void> {
    if (Date.now() - this.authProbedAt > AUTH_PROBE_MAX_AGE_MS) await this.probeAuth();
  }

  /** One probe at a time; every caller waits for it. Without a clear answer the belief stays (a
   * full or unreachable server says nothing about AUTH), and it is not asked again for a while. */
  private probeAuth(): Promise<void> {
    this.authProbe ??= probeAuthRequired(this.upstream)
      .then((required) => {
        if (required !== null) this.authIsRequired = required;
        this.authProbedAt = Date.now();
      })
      .finally(() => {
        this.authProbe = null;
      });
    return this.authProbe;
  }

  // ---- subscriptions and change messages ----

  private async subscribeChanges(): Promise<void> {
    await this.subscriber.subscribe(this.names.changes);
    this.activeChannels.clear();
    this.keyeventSubscribed = false;
  }

  /** While active: the wake channel, and the keyevent `expired` (and, best effort, `evicted`)
   * channels of exactly the databases that have registrations or index entries. None while idle. */
  private async syncKeyeventSubscriptions(): Promise<void> {
    const databases = [...new Set([...this.registry.databases(), ...this.indexedDbs])];
    const wanted = new Set(this.active ? [this.names.wake, ...databases.map(expiredChannel)] : []);
    // (Evictions apart: the control user may lack their channel, an optional rule.)
    const evictions = new Set(this.active ? databases.map(evictedChannel) : []);
    try {
      await this.subscribeExactly(wanted, (channel) => !EVICTED_CHANNEL.test(channel));
      this.keyeventSubscribed = this.active && this.current;
    } catch {
      // Subscriber down: subscribed again after it reconnects.
      return;
    }
    try {
      await this.subscribeExactly(evictions, (channel) => EVICTED_CHANNEL.test(channel));
    } catch (error) {
      if (!this.evictionsRefused) this.log.warn('evicted_unavailable', `no evicted events: cannot subscribe to ${evictedChannel('*')} (${(error as Error).message})`);
      this.evictionsRefused = true;
    }
  }

  /** Subscribes to the `wanted` channels and unsubscribes from the others that `mine` selects. */
  private async subscribeExactly(wanted: Set<string>, mine: (channel: string) => boolean): Promise<void> {
    const add = [...wanted].filter((channel) => !this.activeChannels.has(channel));
    const remove = [...this.activeChannels].filter((channel) => mine(channel) && !wanted.has(channel));
    if (add.length > 0) await this.subscriber.subscribe(...add);
    for (const channel of add) this.activeChannels.add(channel);
    if (remove.length > 0) await this.subscriber.unsubscribe(...remove);
    for (const channel of remove) this.activeChannels.delete(channel);
  }

  private onMessage(channel: Buffer, message: Buffer): void {
    const name = channel.toString('latin1');
    if (name === this.names.changes) this.onChange(parseChange(message.toString('latin1')));
    else if (name === this.names.wake) this.reaper.wake();
    else {
      const expired = EXPIRED_CHANNEL.exec(name);
      if (expired) this.reporter.queue(Number(expired[1]), message.toString('latin1'));
      const evicted = EVICTED_CHANNEL.exec(name);
      if (evicted) this.reporter.queueEvicted(Number(evicted[1]), message.toString('latin1'));
    }
  }

  /** Applied synchronously: sessions see a registration before the next client chunk is read. */
  private onChange(change: ChangeMessage): void {
    switch (change.kind) {
      case 'announce':
        this.registry.announce(change.registrations);
        void this.acknowledge(change.nonce);
        void this.afterRegistryChange();
        break;
      case 'ack': {
        const waiter = this.ackWaiters.get(change.nonce);
        const secret = this.deploymentSecret;
        if (!waiter || secret === null || change.tag !== tag(secret, 'ack', change.nonce, change.proxy)) break;
        waiter.received.add(change.proxy);
        if (waiter.received.size >= waiter.needed) waiter.done();
        break;
      }
      case 'set':
        this.registry.announce(change.registrations);
        this.lookUp(change.registrations.map((registration) => registration.pattern));
        break;
      case 'del':
        this.lookUp([change.pattern]);
        break;
      case 'reload':
        void this.reload().then(() => this.afterRegistryChange());
        break;
    }
  }

  /** Acknowledges an announcement (applied already), tagged with the secret (read first if this
   * proxy does not know it yet: the announcing proxy has just stored it). */
  private async acknowledge(nonce: string): Promise<void> {
    try {
      if (this.deploymentSecret === null) {
        const [stored] = (await inDatabase(this.control, 0, [['GET', this.names.secret]])) as [Buffer | null];
        if (stored === null) return;
        this.deploymentSecret ??= stored.toString('latin1');
      }
      const secret = this.deploymentSecret;
      await this.control.publish(this.names.changes, binary(ackMessage(nonce, this.id, tag(secret, 'ack', nonce, this.id))));
    } catch {
      // Disconnected: the announcing proxy's wait runs out (counted there).
    }
  }

  /** Publishes an announcement and waits for every subscriber of the change channel to ack it. */
  private async announce(registrations: Registration[]): Promise<void> {
    try {
      await this.ensureLibrary(); // before any proxy rewrites a write into a call of it
      await this.keepSecretStored();
    } finally {
      if (this.loadingForAnnouncement) {
        this.loadingForAnnouncement = false;
        this.releaseWaiters();
      }
    }
    const nonce = `${this.id}:${++this.announceSequence}`;
    let timer: NodeJS.Timeout | undefined;
    const acknowledged = new Promise<void>((resolve) => {
      this.ackWaiters.set(nonce, { needed: Infinity, received: new Set(), done: resolve });
      timer = setTimeout(() => {
        this.counters.barrierTimeouts++;
        const waiter = this.ackWaiters.get(nonce);
        this.log.warn('barrier_timeout', `registration barrier: ${waiter?.received.size ?? 0} of ${waiter?.needed} subscribers acknowledged within ${BARRIER_TIMEOUT_MS} ms; going ahead`);
        resolve();
      }, BARRIER_TIMEOUT_MS);
    });
    try {
      const receivers = Number(await this.control.publish(this.names.changes, binary(announceMessage(nonce, registrations))));
      const waiter = this.ackWaiters.get(nonce)!;
      waiter.needed = receivers;
      if (waiter.received.size >= receivers) waiter.done();
      await acknowledged;
    } finally {
      clearTimeout(timer);
      this.ackWaiters.delete(nonce);
    }
  }

  // ---- loading the registry ----

  /** Full reload of every database's registrations (tests and SWAPDB use it). */
  reload(): Promise<void> {
    return this.loadAll(false);
  }

  /**
   * Reads every database's registry and index size in one pipeline. Concurrent requests coalesce
   * into one more load. With `makesCurrent`, a successful load after (re)subscribing makes the
   * registry current and releases the requests that waited for it.
   */
  private loadAll(makesCurrent: boolean): Promise<void> {
    if (this.loading) {
      this.loadAgain = true;
      return this.loading.then(() => (makesCurrent ? this.loadAll(true) : undefined));
    }
    this.loading = (async () => {
      do {
        this.loadAgain = false;
        try {
          const { snapshot, indexed, foreign, secret } = await this.readRegistries();
          // Redis lost the secret (FLUSHALL or FLUSHDB 0 sent to it directly): ours goes back, so
          // that a proxy starting now does not make another (registrations in other databases
          // carry tags made with ours).
          if (secret === null && this.deploymentSecret !== null) await loadSecret(this.control, this.names.secret, this.deploymentSecret);
          if (secret !== null && secret !== this.deploymentSecret) {
            // Another secret than ours (first read, or Redis lost ours and a proxy stored a new
            // one): the library must be made for it.
            if (this.deploymentSecret !== null) this.forgetLibrary();
            this.deploymentSecret = secret;
          }
          this.registry.replace(this.keeper.loaded(snapshot));
          this.foreignEntries = foreign;
          this.setIndexedDbs(indexed);
          if (makesCurrent) this.becomeCurrent();
        } catch (error) {
          this.log.error('registry_reload_failed', `registry reload failed: ${(error as Error).message}`);
          if (makesCurrent) throw error;
        }
      } while (this.loadAgain);
    })().finally(() => {
      this.loading = null;
    });
    return this.loading;
  }

  private becomeCurrent(): void {
    // A load that finishes after the subscriber dropped, or moved to another master, proves nothing.
    if (this.subscriber.status !== 'ready' || !this.upstream.isOnMaster(this.subscriber)) return;
    this.current = true;
    this.releaseWaiters();
  }

  private releaseWaiters(): void {
    if (!this.registryIsCurrent()) return;
    const waiters = this.currentWaiters;
    this.currentWaiters = [];
    for (const waiter of waiters) waiter();
  }

  /**
   * Every database's registrations (those the library made: tagged with the secret, which is read
   * in the same go) and which databases have index entries.
   */
  private async readRegistries(): Promise<{ snapshot: RegistrySnapshot; indexed: number[]; foreign: Map<number, number>; secret: string | null }> {
    const [stored] = (await inDatabase(this.control, 0, [['GET', this.names.secret]])) as [Buffer | null];
    const secret = stored === null ? null : stored.toString('latin1');
    // (Redis lost it: entries are read with ours, which goes back, see loadAll.)
    const decodeWith = secret ?? this.deploymentSecret;
    const results = await inEveryDatabase(this.control, this.databaseCount, [
      ['HGETALL', this.names.registry],
      ['ZCARD', this.names.expiry],
    ]);
    const snapshot: RegistrySnapshot = new Map();
    const indexed: number[] = [];
    const foreign = new Map<number, number>();
    results.forEach(([reply, entries], db) => {
      const fields = reply as Buffer[];
      if (Number(entries) > 0) indexed.push(db);
      if (fields.length === 0) return;
      const patterns = new Map<string, StoredEntry>();
      for (let i = 0; i < fields.length; i += 2) {
        const pattern = fields[i].toString('latin1');
        const entry = decodeWith === null ? null : this.storedEntry(decodeWith, pattern, fields[i + 1]);
        if (entry) patterns.set(pattern, entry);
        else foreign.set(db, (foreign.get(db) ?? 0) + 1);
      }
      if (patterns.size > 0) snapshot.set(db, patterns);
    });
    return { snapshot, indexed, foreign, secret };
  }

  /** A registry value the library made (tag checked), or null. */
  private storedEntry(secret: string, pattern: string, value: Buffer): StoredEntry | null {
    const text = value.toString('latin1');
    const decoded = decodeRegistration(secret, pattern, text);
    return decoded === null ? null : { ...decoded, value: text };
  }

  private setIndexedDbs(indexed: number[]): void {
    this.indexedDbs = indexed;
    this.reaper.setIndexedDatabases(indexed);
  }

  /**
   * Looks changed patterns up in every database (batched: the patterns of one tick in one
   * pipeline of HMGETs), so that the cost of a change does not grow with the registry.
   */
  private lookUp(patterns: string[]): void {
    for (const pattern of patterns) this.lookups.add(pattern);
    if (this.lookingUp) return;
    this.lookingUp = (async () => {
      while (this.lookups.size > 0) {
        const batch = [...this.lookups].slice(0, LOOKUP_BATCH);
        for (const pattern of batch) this.lookups.delete(pattern);
        try {
          const results = await inEveryDatabase(this.control, this.databaseCount, [
            ['HMGET', this.names.registry, ...batch.map(binary)],
          ]);
          const found = batch.map(() => new Map<number, StoredEntry>());
          const secret = this.deploymentSecret;
          results.forEach(([values], db) => {
            (values as Array<Buffer | null>).forEach((value, i) => {
              const entry = value === null || secret === null ? null : this.storedEntry(secret, batch[i], value);
              if (entry !== null) found[i].set(db, entry);
            });
          });
          batch.forEach((pattern, i) => this.registry.replacePattern(pattern, found[i]));
        } catch (error) {
          this.log.warn('registry_lookup_failed', `registry lookup failed (${(error as Error).message}); reloading`);
          this.lookups.clear();
          await this.reload();
        }
      }
    })().finally(() => {
      this.lookingUp = null;
      if (this.lookups.size > 0) this.lookUp([]);
      else void this.afterRegistryChange();
    });
  }
}
