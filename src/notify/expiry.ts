// Reporting expirations, exactly once. Every path that learns of an expiry (the keyevent
// subscription, the reaper) calls the library's notifylist_expired, which removes the key's
// index entry and pushes `expired` only if it removed it and the deadline has passed.
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { InternalNames } from './names.js';
import type { Registry } from './registry.js';
import { binary, inDatabase, type ControlCommand } from './redis-control.js';
import type { Log } from '../operations/logger.js';

/** Keys per FCALL: bounds the time one call blocks Redis. */
const BATCH = 500;
/** SCAN COUNT of one backfill step, and steps per database per pass (then other work runs). */
const BACKFILL_COUNT = 1000;
const BACKFILL_STEPS_PER_PASS = 8;
/** The reaper wakes this long after a deadline, so that keys due together go in one call. */
const REAP_COALESCE_MS = 4;
/** How long a reported key's keyevent is not reported again (it would find nothing to do). */
const RECENT_MS = 2000;
/** How far behind the leader the other proxies reap (see Reaper). */
const FOLLOWER_GRACE_MS = 200;
/** An event list that holds another type is logged at most this often. */
const BLOCKED_LOG_MS = 60_000;

/** What one report did. */
export interface ReportResult {
  /** Events pushed. */
  pushed: number;
  /** Index entries left as they were: held back (event list of another type) or not yet due. */
  unchanged: number;
}

export class ExpiryReporter {
  private queued = new Map<number, Set<string>>();
  private evicted = new Map<number, Set<string>>();
  private flushScheduled = false;
  /**
   * Keys the reaper reported in the last RECENT_MS (two generations). Reporting touches the key,
   * which makes Redis publish `expired` for it: that one echo is skipped (a wasted call
   * otherwise). Skipping is always safe: whatever is not reported stays in the index, for the
   * reaper.
   */
  private recent = new Set<string>();
  private older = new Set<string>();
  private readonly rotation: NodeJS.Timeout;
  /** Event list (per db) -> when it was last logged as holding another type. */
  private blockedLogged = new Map<string, number>();

  constructor(
    private readonly control: Redis,
    private readonly registry: Registry,
    private readonly names: InternalNames,
    /** The deployment's secret, which every call of the library carries. */
    private readonly secret: () => Buffer,
    private readonly log: Log,
    /** Told of every report's expired events and each reported key's lag (ms from its deadline). */
    private readonly reported: (byReaper: boolean, pushed: number, lagsMs: number[]) => void = () => undefined,
    /** Told of the `evicted` events each report pushed. */
    private readonly evictedPushed: (pushed: number) => void = () => undefined,
  ) {
    this.rotation = setInterval(() => {
      this.older = this.recent;
      this.recent = new Set();
    }, RECENT_MS);
    this.rotation.unref();
  }

  stop(): void {
    clearInterval(this.rotation);
  }

  /** From the keyevent subscription: queue, and report in batches on the next tick. */
  queue(db: number, key: string): void {
    const id = `${db}\n${key}`;
    if (this.recent.delete(id) || this.older.delete(id)) return;
    this.enqueue(this.queued, db, key);
  }

  /** From the keyevent subscription (best effort): `evicted`, for registrations that take it. */
  queueEvicted(db: number, key: string): void {
    this.enqueue(this.evicted, db, key);
  }

  private enqueue(into: Map<number, Set<string>>, db: number, key: string): void {
    // Internal keys (the reaper lease expires, for one) never match patterns.
    if (key.startsWith(this.names.prefix) || !this.registry.all.hasAny(key)) return;
    let keys = into.get(db);
    if (!keys) into.set(db, (keys = new Set()));
    keys.add(key);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => void this.flushQueued());
    }
  }

  private async flushEvicted(): Promise<void> {
    const evicted = this.evicted;
    this.evicted = new Map();
    for (const [db, keys] of evicted) {
      const batch = [...keys];
      try {
        for (let start = 0; start < batch.length; start += BATCH) {
          const keysNow = batch.slice(start, start + BATCH);
          const [pushed] = await inDatabase(this.control, db, [['FCALL', 'notifylist_evicted', keysNow.length, ...keysNow.map(binary), this.secret(), ...this.candidates(db, keysNow)]]);
          this.evictedPushed(Number(pushed));
        }
      } catch (error) {
        this.log.warn('evicted_lost', `evicted events for db ${db} not reported (best effort): ${(error as Error).message}`, { db });
      }
    }
  }

  /** Candidate triples of the keys (key index, pattern, list), after their count and the database
   * (`<n>///<db>/`: notifylist.lua set_context, for WITH db). */
  private candidates(db: number, keys: string[]): Buffer[] {
    const triples: Buffer[] = [];
    keys.forEach((key, i) => {
      this.registry.all.match(key, (pattern, list) => {
        // Suspended registrations get nothing the proxy would do under its own login.
        if (!this.registry.isSuspended(db, pattern)) triples.push(binary(String(i + 1)), binary(pattern), binary(list));
      });
    });
    return [binary(`${triples.length / 3}///${db}/`), ...triples];
  }

  private async flushQueued(): Promise<void> {
    this.flushScheduled = false;
    const queued = this.queued;
    this.queued = new Map();
    if (this.evicted.size > 0) await this.flushEvicted();
    for (const [db, keys] of queued) {
      try {
        await this.report(db, [...keys], false);
      } catch (error) {
        // Not lost: the index entry stays, and the reaper reports it.
        this.log.warn('expired_deferred', `expired events for db ${db} deferred to the reaper: ${(error as Error).message}`, { db });
      }
    }
  }

  /**
   * Reports the given keys of one database through the atomic function. `byReaper` false: Redis
   * published `expired` for these keys (the library then knows they expired, even if a write the
   * proxy does not rewrite has created them again since).
   */
  async report(db: number, keys: string[], byReaper: boolean): Promise<ReportResult> {
    // Candidates of every database: the library keeps only those registered in this one.
    const result: ReportResult = { pushed: 0, unchanged: 0 };
    for (let start = 0; start < keys.length; start += BATCH) {
      const batch = keys.slice(start, start + BATCH);
      if (byReaper) for (const key of batch) this.recent.add(`${db}\n${key}`);
      const evidence = byReaper ? [] : [binary('expired')];
      const [reply] = (await inDatabase(this.control, db, [
        ['FCALL', 'notifylist_expired', batch.length, ...batch.map(binary), this.secret(), ...this.candidates(db, batch), ...evidence, 'lags'],
      ])) as [Array<number | Buffer | number[]>];
      result.pushed += Number(reply[0]);
      result.unchanged += Number(reply[1]);
      this.reported(byReaper, Number(reply[0]), reply[2] as number[]);
      for (let i = 3; i + 1 < reply.length; i += 2) this.logBlocked(db, (reply[i] as Buffer).toString('latin1'), (reply[i + 1] as Buffer).toString('latin1'));
    }
    return result;
  }

  /** One bad event list holds back only its own keys' expirations: say so, now and then. */
  private logBlocked(db: number, list: string, kind: string): void {
    const id = `${db}\n${list}`;
    const now = Date.now();
    if (now - (this.blockedLogged.get(id) ?? -Infinity) < BLOCKED_LOG_MS) return;
    this.blockedLogged.set(id, now);
    if (this.blockedLogged.size > 10_000) this.blockedLogged.clear();
    const why =
      kind === 'noperm'
        ? "the proxy's user may not push to it (RPUSH; XADD and XLEN for a stream, LTRIM for a list with a MAXLEN: README, control user); they are reported once it may"
        : `it holds a ${kind}, not the type its registrations push to (a list, or a stream for TARGET stream); they are reported once it holds that type again or is deleted (NOTIFYLIST.INFO: blocked)`;
    this.log.warn('expired_blocked', `expired events held back in db ${db}: the event list ${JSON.stringify(list)}: ${why}`, { db, list, type: kind });
  }
}

/**
 * One reaper at a time among all proxies (a lease in Redis) finds index entries whose deadline
 * has passed and reports them. It sleeps until the next deadline; a write that creates a new
 * earliest deadline wakes it (the library publishes on the wake channel). The other proxies
 * follow the same deadlines FOLLOWER_GRACE_MS later and report only what the leader has left
 * overdue that long: a crashed leader costs that much delay, not a whole lease time. Whoever
 * reports first, the library reports each expiry once.
 */
export class Reaper {
  readonly id = randomUUID();
  /** Redis clock minus local clock, in ms (deadlines are on Redis's clock). */
  private clockOffset = 0;
  private leaseTimer: NodeJS.Timeout | null = null;
  private wakeTimer: NodeJS.Timeout | null = null;
  private running = false;
  private again = false;
  /** Not started yet, or stopped: an idle proxy reaps nothing and holds no lease. */
  private stopped = true;
  /**
   * Local time until which the lease is surely ours: counted from when the renewal was sent, so
   * a reply that is late (or never comes, while the connection is down) cannot make us believe
   * we lead when we do not.
   */
  private leaseValidUntil = 0;
  private leading = false;
  /** Databases with index entries, whether or not they still have registrations. */
  private indexedDatabases: number[] = [];
  /** Databases whose backfill this leader saw pending (its end is logged once: backfill_done). */
  private backfilling = new Set<number>();

  constructor(
    private readonly control: Redis,
    private readonly registry: Registry,
    private readonly reporter: ExpiryReporter,
    private readonly names: InternalNames,
    private readonly secret: () => Buffer,
    private readonly leaseMs: number,
    private readonly log: Log,
  ) {}

  /** Redis's clock now, in ms, as measured (deadlines are on it). */
  redisNow(): number {
    return Date.now() + this.clockOffset;
  }

  /** True only while a renewal of the lease is known to have succeeded less than a lease ago. */
  get isLeader(): boolean {
    return this.leading && Date.now() < this.leaseValidUntil;
  }

  start(): void {
    if (!this.stopped) return;
    this.stopped = false;
    void this.renewLease();
    this.wake();
    this.leaseTimer = setInterval(() => void this.renewLease(), Math.max(50, Math.floor(this.leaseMs / 3)));
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.leaseTimer) clearInterval(this.leaseTimer);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.leaseTimer = null;
    this.wakeTimer = null;
    if (this.leading) {
      this.setLeading(false);
      await inDatabase(this.control, 0, [['FCALL', 'notifylist_release', 1, this.names.reaperLease, this.secret(), this.id]]).catch(() => undefined);
    }
  }

  /** The control connection dropped: whatever we held, we cannot prove it now. */
  connectionLost(): void {
    this.setLeading(false);
  }

  setIndexedDatabases(databases: number[]): void {
    this.indexedDatabases = databases;
  }

  async measureClock(): Promise<void> {
    const before = Date.now();
    const [seconds, micros] = (await this.control.time()) as [string | number, string | number];
    const after = Date.now();
    this.clockOffset = Number(seconds) * 1000 + Math.floor(Number(micros) / 1000) - (before + after) / 2;
  }

  private setLeading(leading: boolean): void {
    if (leading && !this.leading) {
      this.log.info('lease_taken', `reaper lease taken (${this.id})`, { proxy: this.id });
      this.leading = true;
      this.wake();
    } else if (!leading && this.leading) {
      this.log.info('lease_lost', 'reaper lease lost', { proxy: this.id });
      this.leading = false;
    }
  }

  private async renewLease(): Promise<void> {
    if (this.stopped || this.control.status !== 'ready') {
      this.setLeading(false);
      return;
    }
    const sent = Date.now();
    try {
      const [held] = await inDatabase(this.control, 0, [['FCALL', 'notifylist_lease', 1, this.names.reaperLease, this.secret(), this.id, this.leaseMs]]);
      if (this.stopped) return;
      if (Number(held) === 1) this.leaseValidUntil = sent + this.leaseMs;
      this.setLeading(Number(held) === 1);
    } catch {
      this.setLeading(false); // cannot prove we still hold it
    }
  }

  /** Reap now (deadline reached, new earliest deadline, reconnect, registry change). */
  wake(): void {
    if (this.stopped) return;
    if (this.running) {
      this.again = true;
      return;
    }
    this.running = true;
    void this.pass().finally(() => {
      this.running = false;
      if (this.again) {
        this.again = false;
        this.wake();
      }
    });
  }

  /** A few bounded steps of the database's pending backfills; true if some remain. */
  private async backfill(db: number): Promise<boolean> {
    for (let step = 0; step < BACKFILL_STEPS_PER_PASS; step++) {
      const suspended = this.registry.suspendedIn(db).map(binary);
      // Whether one was pending before the first step (a small one ends within it): in the same
      // round trip, and only while none is known to be running.
      const before: ControlCommand[] = step === 0 && !this.backfilling.has(db) ? [['HLEN', this.names.backfill]] : [];
      const replies = await inDatabase(this.control, db, [...before, ['FCALL', 'notifylist_backfill', 0, this.secret(), BACKFILL_COUNT, ...suspended]]);
      if (before.length > 0 && Number(replies[0]) > 0) this.backfilling.add(db);
      if (Number(replies.at(-1)) === 0) {
        if (this.backfilling.delete(db)) this.log.info('backfill_done', `backfill of database ${db} done: keys that had a TTL before their registration are indexed`, { db });
        return false;
      }
    }
    return true;
  }

  private async pass(): Promise<void> {
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeTimer = null;
    let next = Infinity;
    let backfillPending = false;
    const grace = this.isLeader ? 0 : FOLLOWER_GRACE_MS;
    try {
      const databases = new Set([...this.registry.databases(), ...this.indexedDatabases]);
      for (const db of databases) {
        if (this.isLeader && (await this.backfill(db))) backfillPending = true;
        // Due entries that stay (held back, see ExpiryReporter) are skipped in this pass.
        let skip = 0;
        for (;;) {
          // The due entries, and in the same round trip the first entry after them.
          const dueUpTo = String(Math.floor(Date.now() + this.clockOffset) - 1 - grace);
          const [due, after] = (await inDatabase(this.control, db, [
            ['ZRANGE', this.names.expiry, '-inf', dueUpTo, 'BYSCORE', 'LIMIT', skip, BATCH],
            ['ZRANGE', this.names.expiry, `(${dueUpTo}`, '+inf', 'BYSCORE', 'LIMIT', 0, 1, 'WITHSCORES'],
          ])) as [Buffer[], Buffer[]];
          if (due.length > 0) skip += (await this.reporter.report(db, due.map((key) => key.toString('latin1')), true)).unchanged;
          if (due.length < BATCH) {
            if (after.length === 2) next = Math.min(next, Number(after[1].toString()));
            break;
          }
        }
      }
    } catch {
      // Connection lost: try again in a second (and at once after the reconnect).
      next = Date.now() + this.clockOffset + 1000;
    }
    if (this.stopped) return;
    if (backfillPending) next = Math.min(next, Date.now() + this.clockOffset + 5);
    // Due when Redis's clock passes the deadline (now > deadline). A safety poll once a second
    // covers a lost wake message.
    const delay = Number.isFinite(next) ? next + 1 + REAP_COALESCE_MS + grace - (Date.now() + this.clockOffset) : 1000;
    this.wakeTimer = setTimeout(() => this.wake(), Math.min(1000, Math.max(1, delay)));
  }
}
