// Maps Redis glob patterns to sets of values (list names) and finds all patterns matching a key.
// Cost per key does not grow with the number of literal or prefix-only patterns:
// - literal patterns: one Map lookup;
// - prefix-only (`P*`) and general patterns: bucketed by literal prefix; a key probes one Map
//   lookup per distinct prefix length present (<= key length), and only general patterns in a
//   hit bucket run globMatch.
import { classifyPattern, globMatch } from './glob.js';

type ValuesByPattern = Map<string, Set<string>>;

interface PrefixBucket {
  /** `P*`, `P**`, ...: every key that starts with P (and is not "") matches. */
  readonly prefixOnly: ValuesByPattern;
  /** Patterns whose tail after P needs globMatch. */
  readonly general: ValuesByPattern;
}

export class PatternIndex {
  private readonly literals: ValuesByPattern = new Map();
  private readonly buckets = new Map<string, PrefixBucket>();
  /** How many buckets have a prefix of each length; drives `probeLengths`. */
  private readonly bucketCountByLength = new Map<number, number>();
  /** Distinct bucket prefix lengths, ascending, so probing can stop past the key's length. */
  private probeLengths: number[] = [];
  private patternCount = 0;

  /**
   * Work done by the last match()/hasAny(): Map lookups plus globMatch calls. A deterministic
   * cost measure for tests (wall clock would flake).
   */
  lastProbeCount = 0;

  get size(): number {
    return this.patternCount;
  }

  /** Adds `value` to `pattern`'s set; adding an existing pair changes nothing. */
  add(pattern: string, value: string): void {
    const target = this.valuesMapFor(pattern, true)!;
    let values = target.get(pattern);
    if (!values) {
      values = new Set();
      target.set(pattern, values);
      this.patternCount++;
    }
    values.add(value);
  }

  /** Removes one value of a pattern, or (without `value`) the pattern with all its values. */
  delete(pattern: string, value?: string): void {
    const target = this.valuesMapFor(pattern, false);
    const values = target?.get(pattern);
    if (!target || !values) return;
    if (value !== undefined) {
      values.delete(value);
      if (values.size > 0) return;
    }
    target.delete(pattern);
    this.patternCount--;
    this.dropBucketIfEmpty(pattern);
  }

  clear(): void {
    this.literals.clear();
    this.buckets.clear();
    this.bucketCountByLength.clear();
    this.probeLengths = [];
    this.patternCount = 0;
  }

  /** Calls `visit` once per (pattern, value) whose pattern matches `key`. */
  match(key: string, visit: (pattern: string, value: string) => void): void {
    let probes = 1;
    const literalValues = this.literals.get(key);
    if (literalValues) visitAll(key, literalValues, visit);

    const lengths = this.probeLengths;
    for (let i = 0; i < lengths.length; i++) {
      const length = lengths[i]!;
      if (length > key.length) break;
      probes++;
      const bucket = this.buckets.get(length === key.length ? key : key.slice(0, length));
      if (!bucket) continue;
      // `*` alone (prefix "") does not match the empty key.
      if (key.length > 0) {
        for (const [pattern, values] of bucket.prefixOnly) visitAll(pattern, values, visit);
      }
      for (const [pattern, values] of bucket.general) {
        probes++;
        if (globMatch(pattern, key)) visitAll(pattern, values, visit);
      }
    }
    this.lastProbeCount = probes;
  }

  /** True iff match(key) would visit at least one pair. */
  hasAny(key: string): boolean {
    let probes = 1;
    try {
      if (this.literals.has(key)) return true;
      const lengths = this.probeLengths;
      for (let i = 0; i < lengths.length; i++) {
        const length = lengths[i]!;
        if (length > key.length) break;
        probes++;
        const bucket = this.buckets.get(length === key.length ? key : key.slice(0, length));
        if (!bucket) continue;
        if (key.length > 0 && bucket.prefixOnly.size > 0) return true;
        for (const pattern of bucket.general.keys()) {
          probes++;
          if (globMatch(pattern, key)) return true;
        }
      }
      return false;
    } finally {
      this.lastProbeCount = probes;
    }
  }

  /** The pattern -> values map that holds `pattern`; creates its bucket when asked to. */
  private valuesMapFor(pattern: string, create: boolean): ValuesByPattern | undefined {
    const shape = classifyPattern(pattern);
    if (shape.kind === 'literal') return this.literals;
    let bucket = this.buckets.get(shape.prefix);
    if (!bucket) {
      if (!create) return undefined;
      bucket = { prefixOnly: new Map(), general: new Map() };
      this.buckets.set(shape.prefix, bucket);
      this.countBucketLength(shape.prefix.length, +1);
    }
    return shape.kind === 'prefix' ? bucket.prefixOnly : bucket.general;
  }

  private dropBucketIfEmpty(pattern: string): void {
    const shape = classifyPattern(pattern);
    if (shape.kind === 'literal') return;
    const bucket = this.buckets.get(shape.prefix);
    if (!bucket || bucket.prefixOnly.size > 0 || bucket.general.size > 0) return;
    this.buckets.delete(shape.prefix);
    this.countBucketLength(shape.prefix.length, -1);
  }

  private countBucketLength(length: number, delta: 1 | -1): void {
    const count = (this.bucketCountByLength.get(length) ?? 0) + delta;
    if (count > 0) {
      const isNewLength = !this.bucketCountByLength.has(length);
      this.bucketCountByLength.set(length, count);
      if (isNewLength) this.rebuildProbeLengths();
    } else {
      this.bucketCountByLength.delete(length);
      this.rebuildProbeLengths();
    }
  }

  private rebuildProbeLengths(): void {
    this.probeLengths = [...this.bucketCountByLength.keys()].sort((a, b) => a - b);
  }
}

function visitAll(pattern: string, values: Set<string>, visit: (pattern: string, value: string) => void): void {
  for (const value of values) visit(pattern, value);
}
