// The proxy's view of the registrations stored in Redis (one hash per database). It only proposes
// candidates: every (pattern, list) pair is verified by the function library against Redis at the
// moment the write runs, so a view that holds too much costs a lookup, never a wrong event. It must
// never hold too little: a registration is added here as soon as it is announced (before it is
// committed) and when its commit message arrives, synchronously; removals wait for a lookup.
import type { Registration } from './changes.js';
import { PatternIndex } from './pattern-index.js';

/** One registration as stored in Redis: its list, its owner, and the stored value itself (tagged by
 * the library: see src/security/secret.ts). Binary strings (latin1). */
export interface StoredEntry {
  list: string;
  /** The ACL user who registered it ('' for registrations older than owners). */
  owner: string;
  /** Its target's options (secret.ts: StoredRegistration), when decoded from Redis. */
  options?: string;
  value: string;
}

/** pattern -> entry, per database, as stored in Redis (entries the library made). */
export type RegistrySnapshot = Map<number, Map<string, StoredEntry>>;

/** An announced registration whose commit was never seen is dropped after this long. */
const ANNOUNCED_TTL_MS = 60_000;

export class Registry {
  /** Candidates for every database together (sessions do not track their selected database). */
  readonly all = new PatternIndex();
  /** pattern -> (db -> entry), as last read from Redis. */
  private readonly stored = new Map<string, Map<number, StoredEntry>>();
  /** pattern -> (list -> when announced): announced or committed, not yet seen in Redis. */
  private readonly announced = new Map<string, Map<string, number>>();
  /** Registrations per database, as last read from Redis. */
  private readonly perDb = new Map<number, number>();
  /** `db\npattern` of registrations whose owner may no longer read what they match or write their
   * list: the proxy does nothing for them under its own login (see ControlPlane.checkOwners). */
  private suspended = new Set<string>();

  /** Replaces what was read from Redis (a full load); announced registrations stay. */
  replace(snapshot: RegistrySnapshot): void {
    const patterns = new Set<string>(this.stored.keys());
    this.stored.clear();
    this.perDb.clear();
    for (const [db, registrations] of snapshot) {
      for (const [pattern, entry] of registrations) {
        let entries = this.stored.get(pattern);
        if (!entries) this.stored.set(pattern, (entries = new Map()));
        entries.set(db, entry);
        patterns.add(pattern);
      }
      if (registrations.size > 0) this.perDb.set(db, registrations.size);
    }
    for (const pattern of patterns) this.reindex(pattern);
  }

  /** What Redis now holds for one pattern in every database (after a lookup). */
  replacePattern(pattern: string, entriesByDb: Map<number, StoredEntry>): void {
    const before = this.stored.get(pattern);
    for (const db of before?.keys() ?? []) this.countIn(db, -1);
    for (const db of entriesByDb.keys()) this.countIn(db, +1);
    if (entriesByDb.size > 0) this.stored.set(pattern, entriesByDb);
    else this.stored.delete(pattern);
    this.reindex(pattern);
  }

  /** Every stored registration: (db, pattern, entry). */
  *entries(): Generator<[number, string, StoredEntry]> {
    for (const [pattern, entries] of this.stored) for (const [db, entry] of entries) yield [db, pattern, entry];
  }

  /** Registrations the proxy does nothing for under its own login, as `db\npattern`. */
  setSuspended(suspended: Set<string>): void {
    this.suspended = suspended;
  }

  get suspendedCount(): number {
    return this.suspended.size;
  }

  isSuspended(db: number, pattern: string): boolean {
    return this.suspended.size > 0 && this.suspended.has(`${db}\n${pattern}`);
  }

  /** The suspended patterns of one database. */
  suspendedIn(db: number): string[] {
    const patterns: string[] = [];
    for (const id of this.suspended) if (id.startsWith(`${db}\n`)) patterns.push(id.slice(id.indexOf('\n') + 1));
    return patterns;
  }

  /** What was last read from Redis (full loads and lookups), per database. */
  snapshot(): RegistrySnapshot {
    const snapshot: RegistrySnapshot = new Map();
    for (const [db, pattern, entry] of this.entries()) {
      let patterns = snapshot.get(db);
      if (!patterns) snapshot.set(db, (patterns = new Map()));
      patterns.set(pattern, entry);
    }
    return snapshot;
  }

  /** A registration announced or committed somewhere: a candidate from now on. */
  announce(registrations: Registration[]): void {
    const now = Date.now();
    for (const { pattern, list } of registrations) {
      let lists = this.announced.get(pattern);
      if (!lists) this.announced.set(pattern, (lists = new Map()));
      lists.set(list, now);
      this.all.add(pattern, list);
    }
  }

  /** Some registration was announced and not seen in Redis yet. */
  get hasAnnouncements(): boolean {
    return this.announced.size > 0;
  }

  /** Databases that have at least one registration. */
  databases(): number[] {
    return [...this.perDb.keys()].sort((a, b) => a - b);
  }

  /** Registrations per database, as last read from Redis. */
  countsByDb(): ReadonlyMap<number, number> {
    return this.perDb;
  }

  /** No candidate at all: no write needs the library. */
  get empty(): boolean {
    return this.all.size === 0;
  }

  /** Drops announcements that were never committed (a refused NOTIFYLIST.SET, a DISCARD). */
  expireAnnouncements(now = Date.now()): void {
    for (const [pattern, lists] of this.announced) {
      let changed = false;
      for (const [list, since] of lists) {
        if (now - since > ANNOUNCED_TTL_MS) {
          lists.delete(list);
          changed = true;
        }
      }
      if (changed) this.reindex(pattern);
    }
  }

  private countIn(db: number, delta: number): void {
    const count = (this.perDb.get(db) ?? 0) + delta;
    if (count > 0) this.perDb.set(db, count);
    else this.perDb.delete(db);
  }

  /** Rebuilds one pattern's candidates: its lists in Redis plus its pending announcements. */
  private reindex(pattern: string): void {
    const stored = this.stored.get(pattern);
    const announced = this.announced.get(pattern);
    if (announced && stored) {
      for (const { list } of stored.values()) announced.delete(list); // seen committed
    }
    if (announced?.size === 0) this.announced.delete(pattern);
    this.all.delete(pattern);
    for (const { list } of stored?.values() ?? []) this.all.add(pattern, list);
    for (const list of this.announced.get(pattern)?.keys() ?? []) this.all.add(pattern, list);
  }
}
