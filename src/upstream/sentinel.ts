// Which server is the master of a Sentinel group (--sentinel, --sentinel-master). Every sentinel
// is asked (SENTINEL MASTER); the answer with the highest config epoch wins, since Sentinel
// orders configurations by it (a sentinel that missed a failover still names the old master, with
// the old epoch). The master is then confirmed with ROLE before anything connects to it. Asked
// again on +switch-master (subscribed on every sentinel), when a sentinel connection comes back
// (a message may have been missed), and when Upstream suspects the master (it stopped answering,
// or answered READONLY or MASTERDOWN). While no master is confirmed, it asks every RETRY_MS.
// From the moment a sentinel has picked the replica to promote (+selected-slave; SENTINEL MASTER
// then shows a failover-state past wait_start) until the failover is done, no master is
// confirmed: a write to the old master then would be lost when the replica takes over.
import { EventEmitter } from 'node:events';
import { Redis, type RedisOptions } from 'ioredis';
import type { SentinelConfig } from '../config.js';
import { endpointName, sameEndpoint, type Endpoint } from './endpoint.js';
import type { UpstreamTls } from './tls.js';
import type { Log } from '../operations/logger.js';

/** A sentinel's answer must come within this long (connect and reply). */
const QUERY_TIMEOUT_MS = 1000;
/** How often to ask again while no master is confirmed (a failover in progress). */
const RETRY_MS = 100;
/** While no master is confirmed, why not is logged at most this often. */
const WAITING_LOG_INTERVAL_MS = 5000;
/** Suspicions (READONLY in a reply, a closed control connection) are acted on at most this often
 * (a value that merely contains "-READONLY " costs at most one round a second). */
const SUSPECT_INTERVAL_MS = 1000;

export const SWITCH_CHANNEL = '+switch-master';
/** A sentinel picked the replica it promotes next (SLAVEOF NO ONE follows within a timer tick). */
export const PROMOTING_CHANNEL = '+selected-slave';
/** Failover states (sentinel.c sentinelFailoverStateStr) in which a sentinel may still give up. */
const FAILOVER_MAY_ABORT = new Set(['none', 'wait_start']);

interface Answer {
  sentinel: { host: string; port: number };
  endpoint: Endpoint;
  epoch: number;
  /** failover-state, when the sentinel is failing the master over. */
  failoverState?: string;
}

export class MasterLocator extends EventEmitter {
  /** The confirmed master, or null while none is (then sessions and control connections wait). */
  master: Endpoint | null = null;
  /** Config epoch of the answer `master` came from: an answer with a lower one is stale. */
  private epoch = -1;
  /** The last master confirmed (also while none is now): a new one after it is a failover. */
  private lastConfirmed: Endpoint | null = null;
  private readonly subscribers: Redis[] = [];
  private work: Promise<void> = Promise.resolve();
  private locatePending = false;
  private retry: NodeJS.Timeout | null = null;
  private lastSuspicion = 0;
  private stopped = false;
  private lastFailure = '';
  private lastWaitingLog = 0;

  constructor(
    private readonly config: SentinelConfig,
    private readonly tls: UpstreamTls | null,
    /** ROLE of a server: 'master', 'slave', ...; throws if it cannot be asked. */
    private readonly roleOf: (endpoint: Endpoint) => Promise<string>,
    private readonly log: Log,
  ) {
    super();
    this.setMaxListeners(0); // every session that waits for a master listens
  }

  get description(): string {
    return `master '${this.config.masterName}' of sentinels ${this.config.sentinels.map(endpointName).join(',')}`;
  }

  /** Subscribes to failovers and finds the master; rejects (with why) if none is confirmed in time. */
  async start(timeoutMs: number): Promise<Endpoint> {
    for (const sentinel of this.config.sentinels) this.subscribe(sentinel);
    this.locate();
    try {
      return await this.whenKnown(timeoutMs);
    } catch {
      throw new Error(`no ${this.description} confirmed within ${timeoutMs} ms (--connect-timeout-ms)${this.lastFailure ? `: ${this.lastFailure}` : ''}`);
    }
  }

  stop(): void {
    this.stopped = true;
    if (this.retry) clearTimeout(this.retry);
    for (const subscriber of this.subscribers) subscriber.disconnect();
  }

  /** New TLS files (SIGHUP): the sentinel connections use them from their next reconnect. */
  refreshTls(): void {
    for (const subscriber of this.subscribers) subscriber.options.tls = this.tls?.optionsFor(subscriber.options.host ?? '');
  }

  /** The master once one is confirmed, or rejects after `timeoutMs`. */
  whenKnown(timeoutMs: number): Promise<Endpoint> {
    if (this.master) return Promise.resolve(this.master);
    return new Promise((resolve, reject) => {
      const onMaster = (master: Endpoint | null): void => {
        if (!master) return;
        clearTimeout(timer);
        this.off('master', onMaster);
        resolve(master);
      };
      const timer = setTimeout(() => {
        this.off('master', onMaster);
        reject(new Error(`no master confirmed within ${timeoutMs} ms${this.lastFailure ? `: ${this.lastFailure}` : ''}`));
      }, timeoutMs);
      timer.unref();
      this.on('master', onMaster);
    });
  }

  /** The master may have moved or gone: ask again (at most every SUSPECT_INTERVAL_MS). */
  suspect(reason: string): void {
    const now = Date.now();
    if (now - this.lastSuspicion < SUSPECT_INTERVAL_MS) return;
    this.lastSuspicion = now;
    this.log.info('sentinels_asked', `asking the sentinels again: ${reason}`, { reason });
    this.locate();
  }

  /** No master confirmed after a round: say why (rate-limited; rounds repeat every RETRY_MS). */
  private logWaiting(): void {
    const now = Date.now();
    if (now - this.lastWaitingLog < WAITING_LOG_INTERVAL_MS) return;
    this.lastWaitingLog = now;
    this.log.warn('master_waiting', `${this.description}: no master confirmed yet: ${this.lastFailure || 'no sentinel answered'}`, { reason: this.lastFailure || null });
  }

  /** Queues one round of asking (rounds never overlap; one waiting round is enough). */
  private locate(): void {
    if (this.locatePending || this.stopped) return;
    this.locatePending = true;
    this.work = this.work.then(async () => {
      this.locatePending = false;
      if (this.stopped) return;
      const found = await this.round().catch((error: Error) => {
        this.lastFailure = error.message;
        return false;
      });
      if (!found && !this.stopped) this.logWaiting();
      // One retry timer, however many rounds were asked for.
      if (!found && !this.stopped && !this.retry) {
        this.retry = setTimeout(() => {
          this.retry = null;
          this.locate();
        }, RETRY_MS);
        this.retry.unref();
      }
    });
  }

  /** One round: every sentinel's answer, the newest confirmed. True if a master is confirmed. */
  private async round(): Promise<boolean> {
    const answers = (await Promise.all(this.config.sentinels.map((sentinel) => this.ask(sentinel)))).filter((a): a is Answer => a !== null);
    if (answers.length === 0) {
      // No sentinel answers: keep a master that still says it is one.
      if (this.master && (await this.isMaster(this.master))) return true;
      this.setMaster(null);
      return false;
    }
    const failing = answers.find((answer) => answer.failoverState !== undefined && !FAILOVER_MAY_ABORT.has(answer.failoverState));
    if (failing) {
      this.lastFailure = `sentinel ${endpointName(failing.sentinel)} is failing the master over (${failing.failoverState})`;
      this.setMaster(null);
      return false;
    }
    const newest = answers.reduce((best, answer) => (answer.epoch > best.epoch ? answer : best));
    // Only sentinels that missed the last failover answer: never go back to what they name.
    if (newest.epoch < this.epoch) {
      if (this.master && (await this.isMaster(this.master))) return true;
      this.lastFailure = `the sentinels that answer name ${endpointName(newest.endpoint)} of an older configuration (epoch ${newest.epoch} < ${this.epoch})`;
      this.setMaster(null);
      return false;
    }
    if (await this.isMaster(newest.endpoint)) {
      this.epoch = newest.epoch;
      this.setMaster(newest.endpoint);
      return true;
    }
    this.setMaster(null);
    return false;
  }

  private setMaster(master: Endpoint | null): void {
    if (sameEndpoint(master, this.master)) return;
    const previous = this.master;
    this.master = master;
    // A master other than the last confirmed one is the failover (the old one is unconfirmed from
    // +selected-slave on, in between); the first one is part of the start, the same one again the
    // end of a failover that was given up.
    const last = this.lastConfirmed;
    if (master) {
      this.lastConfirmed = master;
      const event = last === null ? 'master_found' : sameEndpoint(master, last) ? 'master_confirmed' : 'failover';
      const was = last && event === 'failover' ? ` (was ${endpointName(last)})` : '';
      this.log.info(event, `${this.description}: ${endpointName(master)}${was}`, { master: endpointName(master), previous: last && endpointName(last) });
    } else if (previous) {
      this.log.warn('master_unconfirmed', `${this.description}: ${endpointName(previous)} is no longer a confirmed master; waiting for the sentinels`, { previous: endpointName(previous) });
    }
    this.emit('master', master, previous);
  }

  private async isMaster(endpoint: Endpoint): Promise<boolean> {
    try {
      const role = await this.roleOf(endpoint);
      if (role !== 'master') this.lastFailure = `${endpointName(endpoint)} answers ROLE ${role}`;
      return role === 'master';
    } catch (error) {
      this.lastFailure = `${endpointName(endpoint)}: ${(error as Error).message}`;
      return false;
    }
  }

  /** SENTINEL MASTER <name> on one sentinel: the address and config epoch it knows, or null. */
  private async ask(sentinel: { host: string; port: number }): Promise<Answer | null> {
    const client = new Redis(this.sentinelOptions(sentinel, { retryStrategy: () => null, commandTimeout: QUERY_TIMEOUT_MS, maxRetriesPerRequest: 0 }));
    // connect() only says "Connection is closed"; the first 'error' says why.
    let failure: Error | null = null;
    client.on('error', (error: Error) => (failure ??= error));
    try {
      await client.connect();
      const reply = (await client.call('SENTINEL', 'MASTER', this.config.masterName)) as string[];
      const fields = new Map<string, string>();
      for (let i = 0; i + 1 < reply.length; i += 2) fields.set(reply[i], reply[i + 1]);
      const host = fields.get('ip');
      const port = Number(fields.get('port'));
      if (!host || !Number.isInteger(port)) return null;
      return { sentinel, endpoint: { host, port }, epoch: Number(fields.get('config-epoch') ?? 0), failoverState: fields.get('failover-state') };
    } catch (error) {
      const what = `sentinel ${endpointName(sentinel)}`;
      const reason = (failure ?? error) as NodeJS.ErrnoException;
      this.lastFailure = this.tls?.describeFailure(reason, what) ?? `${what}: ${reason.message}`;
      return null;
    } finally {
      client.disconnect();
    }
  }

  /** One connection per sentinel, subscribed to +switch-master; ioredis reconnects it. */
  private subscribe(sentinel: { host: string; port: number }): void {
    const subscriber = new Redis(this.sentinelOptions(sentinel, { retryStrategy: (times) => Math.min(100 * times, 1000) }));
    this.subscribers.push(subscriber);
    subscriber.on('error', () => undefined);
    let subscribedBefore = false;
    subscriber.on('ready', () => {
      // Back after a disconnect: a switch may have happened meanwhile.
      if (subscribedBefore) this.locate();
      subscribedBefore = true;
    });
    subscriber.on('message', (channel: string, message: string) => {
      const words = message.split(' ');
      // +switch-master: <master name> <old ip> <old port> <new ip> <new port>
      if (channel === SWITCH_CHANNEL && words[0] === this.config.masterName) {
        this.log.info('sentinel_switch', `sentinel ${endpointName(sentinel)}: ${SWITCH_CHANNEL} ${message}`, { sentinel: endpointName(sentinel) });
        this.locate();
      }
      // +selected-slave: slave <name> <ip> <port> @ <master name> <master ip> <master port>
      if (channel === PROMOTING_CHANNEL && words[4] === '@' && words[5] === this.config.masterName) {
        this.log.info('sentinel_promoting', `sentinel ${endpointName(sentinel)}: ${PROMOTING_CHANNEL} ${message} (a failover: no master until it is done)`, { sentinel: endpointName(sentinel) });
        this.setMaster(null);
        this.locate();
      }
    });
    subscriber.subscribe(SWITCH_CHANNEL, PROMOTING_CHANNEL).catch(() => undefined);
  }

  private sentinelOptions(sentinel: { host: string; port: number }, extra: RedisOptions): RedisOptions {
    return {
      host: sentinel.host,
      port: sentinel.port,
      username: this.config.username,
      password: this.config.password,
      tls: this.tls?.optionsFor(sentinel.host),
      connectionName: 'notifylist-proxy:sentinel',
      disableClientInfo: true,
      enableReadyCheck: false,
      connectTimeout: QUERY_TIMEOUT_MS,
      lazyConnect: true,
      ...extra,
    };
  }
}
