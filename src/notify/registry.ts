// The proxy's cache of the registrations stored in Redis (one hash per database). It only proposes
// candidates: every (pattern, list) pair is verified by the function library against Redis at the
// moment the write runs, so a stale cache costs a lookup, never a wrong event.
import { PatternIndex } from './pattern-index.js';

/** pattern -> list, per database; binary strings (latin1), as stored in Redis. */
export type RegistrySnapshot = Map<number, Map<string, string>>;

export class Registry {
  /** Every database's registrations together: sessions do not track their selected database. */
  readonly all = new PatternIndex();
  private byDb = new Map<number, PatternIndex>();
  private snapshot: RegistrySnapshot = new Map();
  /** Bumped on every replace(), so holders of derived state know when to refresh it. */
  version = 0;

  replace(snapshot: RegistrySnapshot): void {
    const all = this.all;
    all.clear();
    const byDb = new Map<number, PatternIndex>();
    for (const [db, patterns] of snapshot) {
      if (patterns.size === 0) continue;
      const index = new PatternIndex();
      for (const [pattern, list] of patterns) {
        index.add(pattern, list);
        all.add(pattern, list);
      }
      byDb.set(db, index);
    }
    this.byDb = byDb;
    this.snapshot = snapshot;
    this.version++;
  }

  forDb(db: number): PatternIndex | undefined {
    return this.byDb.get(db);
  }

  /** Databases that have at least one registration. */
  databases(): number[] {
    return [...this.byDb.keys()].sort((a, b) => a - b);
  }

  /** True if some database registers exactly this pattern -> list. */
  has(pattern: string, list: string): boolean {
    for (const patterns of this.snapshot.values()) if (patterns.get(pattern) === list) return true;
    return false;
  }
}
