// Maps Redis glob patterns to sets of values (list names) and finds all patterns matching a key.
// Cost per key does not grow with the number of literal or prefix-only patterns:
// - literal patterns: one Map lookup;
// - prefix-only (`P*`) and general patterns: grouped by literal prefix P in a trie of bytes; a key
//   walks the trie along its own bytes (never further than its length, and it stops at the first
//   byte no prefix continues with), so keys that share no prefix with any pattern cost one step;
// - general patterns in a reached bucket run globMatch, after a cheap check that the key
//   contains the pattern's longest literal run.
import { classifyPattern, globMatch, requiredSubstring } from './glob.js';

type ValuesByPattern = Map<string, Set<string>>;

interface GeneralPattern {
  readonly values: Set<string>;
  /** A literal run every matching key contains ("" if none). */
  readonly required: string;
}

interface PrefixBucket {
  /** `P*`, `P**`, ...: every key that starts with P (and is not "") matches. */
  readonly prefixOnly: ValuesByPattern;
  /** Patterns whose tail after P needs globMatch. */
  readonly general: Map<string, GeneralPattern>;
}

/** A trie node: the prefix spelled by the path from the root. */
interface PrefixNode {
  readonly children: Map<number, PrefixNode>;
  bucket: PrefixBucket | null;
}

const newNode = (): PrefixNode => ({ children: new Map(), bucket: null });

export class PatternIndex {
  private readonly literals: ValuesByPattern = new Map();
  private root: PrefixNode = newNode();
  private patternCount = 0;

  /**
   * Work done by the last match()/hasAny(): the literal lookup, trie steps and globMatch calls.
   * A deterministic cost measure for tests (wall clock would flake).
   */
  lastProbeCount = 0;

  get size(): number {
    return this.patternCount;
  }

  /** Adds `value` to `pattern`'s set; adding an existing pair changes nothing. */
  add(pattern: string, value: string): void {
    const shape = classifyPattern(pattern);
    let values: Set<string> | undefined;
    const created = new Set<string>();
    if (shape.kind === 'literal') {
      values = this.literals.get(pattern) ?? this.literals.set(pattern, created).get(pattern);
    } else {
      const bucket = this.bucketFor(shape.prefix, true)!;
      if (shape.kind === 'prefix') {
        values = bucket.prefixOnly.get(pattern) ?? bucket.prefixOnly.set(pattern, created).get(pattern);
      } else {
        values = bucket.general.get(pattern)?.values;
        if (!values) bucket.general.set(pattern, { values: (values = created), required: requiredSubstring(pattern) });
      }
    }
    if (values === created) this.patternCount++;
    values!.add(value);
  }

  /** Removes one value of a pattern, or (without `value`) the pattern with all its values. */
  delete(pattern: string, value?: string): void {
    const shape = classifyPattern(pattern);
    const bucket = shape.kind === 'literal' ? null : this.bucketFor(shape.prefix, false);
    const values =
      shape.kind === 'literal'
        ? this.literals.get(pattern)
        : shape.kind === 'prefix'
          ? bucket?.prefixOnly.get(pattern)
          : bucket?.general.get(pattern)?.values;
    if (!values) return;
    if (value !== undefined) {
      values.delete(value);
      if (values.size > 0) return;
    }
    if (shape.kind === 'literal') this.literals.delete(pattern);
    else if (shape.kind === 'prefix') bucket!.prefixOnly.delete(pattern);
    else bucket!.general.delete(pattern);
    this.patternCount--;
    if (shape.kind !== 'literal' && bucket!.prefixOnly.size === 0 && bucket!.general.size === 0) this.dropBucket(shape.prefix);
  }

  clear(): void {
    this.literals.clear();
    this.root = newNode();
    this.patternCount = 0;
  }

  /** Calls `visit` once per (pattern, value) whose pattern matches `key`. */
  match(key: string, visit: (pattern: string, value: string) => void): void {
    let probes = 1;
    const literalValues = this.literals.get(key);
    if (literalValues) visitAll(key, literalValues, visit);
    let node: PrefixNode | undefined = this.root;
    for (let depth = 0; ; depth++) {
      const bucket = node.bucket;
      if (bucket !== null) {
        // `*` alone (prefix "") does not match the empty key.
        if (key.length > 0) for (const [pattern, values] of bucket.prefixOnly) visitAll(pattern, values, visit);
        for (const [pattern, general] of bucket.general) {
          if (general.required.length > 0 && !key.includes(general.required, depth)) continue;
          probes++;
          if (globMatch(pattern, key)) visitAll(pattern, general.values, visit);
        }
      }
      if (depth === key.length) break;
      probes++;
      node = node.children.get(key.charCodeAt(depth));
      if (node === undefined) break;
    }
    this.lastProbeCount = probes;
  }

  /** True iff match(key) would visit at least one pair. */
  hasAny(key: string): boolean {
    let probes = 1;
    let found = this.literals.has(key);
    let node: PrefixNode | undefined = this.root;
    for (let depth = 0; !found; depth++) {
      const bucket = node.bucket;
      if (bucket !== null) {
        if (key.length > 0 && bucket.prefixOnly.size > 0) {
          found = true;
          break;
        }
        for (const [pattern, general] of bucket.general) {
          if (general.required.length > 0 && !key.includes(general.required, depth)) continue;
          probes++;
          if (globMatch(pattern, key)) {
            found = true;
            break;
          }
        }
      }
      if (found || depth === key.length) break;
      probes++;
      node = node.children.get(key.charCodeAt(depth));
      if (node === undefined) break;
    }
    this.lastProbeCount = probes;
    return found;
  }

  /** The bucket of patterns with literal prefix `prefix`; created when asked to. */
  private bucketFor(prefix: string, create: boolean): PrefixBucket | null {
    let node = this.root;
    for (let i = 0; i < prefix.length; i++) {
      const byte = prefix.charCodeAt(i);
      let child = node.children.get(byte);
      if (!child) {
        if (!create) return null;
        node.children.set(byte, (child = newNode()));
      }
      node = child;
    }
    if (node.bucket === null && create) node.bucket = { prefixOnly: new Map(), general: new Map() };
    return node.bucket;
  }

  /** Removes an empty bucket and the trie nodes that lead only to it. */
  private dropBucket(prefix: string): void {
    const path: PrefixNode[] = [this.root];
    for (let i = 0; i < prefix.length; i++) {
      const child = path[i].children.get(prefix.charCodeAt(i));
      if (!child) return;
      path.push(child);
    }
    path[prefix.length].bucket = null;
    for (let i = prefix.length; i > 0; i--) {
      const node = path[i];
      if (node.bucket !== null || node.children.size > 0) break;
      path[i - 1].children.delete(prefix.charCodeAt(i - 1));
    }
  }
}

function visitAll(pattern: string, values: Set<string>, visit: (pattern: string, value: string) => void): void {
  for (const value of values) visit(pattern, value);
}
