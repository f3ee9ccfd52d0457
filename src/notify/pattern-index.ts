// Maps Redis glob patterns to sets of values (list names) and finds all patterns matching a key.
// Cost per key does not grow with the number of patterns, except for general patterns without a
// literal run of 3 bytes (see the last point):
// - literal patterns: one Map lookup;
// - prefix-only patterns (`P*`): grouped by P in a trie of bytes; a key walks the trie along its
//   own bytes (never further than its length, and it stops at the first byte no prefix continues
//   with), so keys that share no prefix with any pattern cost one step;
// - general patterns with a literal run (glob.ts literalRuns) of 3+ bytes: indexed under one
//   anchor, a window of 3..16 bytes of such a run, which every key the pattern matches contains.
//   Of its windows (as long as its runs allow) the one whose bucket is smallest when it is added:
//   patterns sharing a run such as `:session:` spread over their other runs. A key looks at each
//   of its positions once (counters of anchors by their first 3 bytes skip most), and where one
//   may start an anchor, looks up its windows of each anchor length in use (a hash Map per length,
//   at most 14 lookups), confirms with startsWith and runs globMatch on that anchor's patterns:
//   a constant number of probes per key byte. Add and delete touch one bucket; nothing is rebuilt;
// - general patterns without such a run (`*?*`, `[ab]*`, `a*b`): in the trie bucket of their
//   literal prefix, checked one by one (does the key contain their longest literal run, then
//   globMatch), so their cost grows with their number.
import { classifyPattern, globMatch, literalRuns, requiredSubstring } from './glob.js';

/** Shortest anchor: shorter runs are too common in keys to pick out few patterns. */
const MIN_ANCHOR = 3;
/** Longest anchor: bounds the lookups per key position (one per length in use) and the hashing. */
const MAX_ANCHOR = 16;
// FNV-1a over char codes, computed the same way for anchors and key windows.
const FNV_OFFSET = 0x811c9dc5 | 0;
const FNV_PRIME = 0x01000193;
/** Hash bits kept as Map keys: small integers (Smis), so a lookup allocates nothing. */
const HASH_MASK = 0x3fffffff;
/** 2^16 counters (256 KB) of anchors by hashed first 3 bytes, to skip most key positions cheaply. */
const GRAM_BITS = 16;

type ValuesByPattern = Map<string, Set<string>>;

interface LinearPattern {
  readonly values: Set<string>;
  /** A literal run every matching key contains ("" if none). */
  readonly required: string;
}

interface PrefixBucket {
  /** `P*`, `P**`, ...: every key that starts with P (and is not "") matches. */
  readonly prefixOnly: ValuesByPattern;
  /** General patterns without a 3-byte literal run, whose tail after P needs globMatch. */
  readonly general: Map<string, LinearPattern>;
}

/** A trie node: the prefix spelled by the path from the root. */
interface PrefixNode {
  readonly children: Map<number, PrefixNode>;
  bucket: PrefixBucket | null;
}

/** The general patterns indexed by one anchor. */
interface AnchorBucket {
  readonly anchor: string;
  readonly hash: number;
  /** Unordered (deletes swap the last entry in): the order is still a function of the operations. */
  readonly patterns: AnchoredPattern[];
  /** Another anchor of the same length and hash. */
  next: AnchorBucket | null;
}

interface AnchoredPattern {
  readonly pattern: string;
  readonly values: Set<string>;
  bucket: AnchorBucket;
  /** Its index in bucket.patterns. */
  slot: number;
}

const newNode = (): PrefixNode => ({ children: new Map(), bucket: null });

/** The counter of a 3-byte gram (bytes b0 b1 b2 as b0 << 16 | b1 << 8 | b2). */
function gramSlot(gram: number): number {
  return Math.imul(gram, 0x9e3779b1) >>> (32 - GRAM_BITS);
}

/** The gram of text[start, start + 3). */
function gramAt(text: string, start: number): number {
  return ((text.charCodeAt(start) & 0xff) << 16) | ((text.charCodeAt(start + 1) & 0xff) << 8) | (text.charCodeAt(start + 2) & 0xff);
}

/** The hash of text[start, start + length), as the key scan computes it. */
function windowHash(text: string, start: number, length: number): number {
  let hash = FNV_OFFSET;
  for (let i = start; i < start + length; i++) hash = Math.imul(hash ^ text.charCodeAt(i), FNV_PRIME);
  return hash & HASH_MASK;
}

export class PatternIndex {
  private readonly literals: ValuesByPattern = new Map();
  private root: PrefixNode = newNode();
  /** General patterns with an anchor. */
  private anchored = new Map<string, AnchoredPattern>();
  /** Anchor length -> hash -> bucket chain. */
  private anchorTables: Array<Map<number, AnchorBucket>> = [];
  /** Bit L is set iff some anchor has length L: the lengths a key's windows are probed at. */
  private anchorLengths = 0;
  /** Anchors per gramSlot of their first 3 bytes (allocated with the first anchor). */
  private gramCounts: Uint32Array | null = null;
  private patternCount = 0;
  /** Probes of the last scanAnchors. */
  private scanProbes = 0;

  /**
   * Work done by the last match()/hasAny(): the literal lookup, trie steps, pre-checks of unanchored
   * patterns, key positions looked at, anchor lookups and globMatch calls. A deterministic cost
   * measure for tests (wall clock would flake).
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
    } else if (shape.kind === 'general' && this.anchored.has(pattern)) {
      values = this.anchored.get(pattern)!.values;
    } else {
      const runs = shape.kind === 'general' ? literalRuns(pattern) : [];
      if (runs.some((run) => run.length >= MIN_ANCHOR)) {
        this.addAnchored(pattern, runs, (values = created));
      } else {
        const bucket = this.bucketFor(shape.prefix, true)!;
        if (shape.kind === 'prefix') {
          values = bucket.prefixOnly.get(pattern) ?? bucket.prefixOnly.set(pattern, created).get(pattern);
        } else {
          values = bucket.general.get(pattern)?.values;
          if (!values) bucket.general.set(pattern, { values: (values = created), required: requiredSubstring(pattern) });
        }
      }
    }
    if (values === created) this.patternCount++;
    values!.add(value);
  }

  /** Removes one value of a pattern, or (without `value`) the pattern with all its values. */
  delete(pattern: string, value?: string): void {
    const anchored = this.anchored.get(pattern);
    if (anchored) {
      if (value !== undefined) {
        anchored.values.delete(value);
        if (anchored.values.size > 0) return;
      }
      this.deleteAnchored(anchored);
      this.patternCount--;
      return;
    }
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
    this.anchored = new Map();
    this.anchorTables = [];
    this.anchorLengths = 0;
    this.gramCounts = null;
    this.patternCount = 0;
  }

  /**
   * Calls `visit` once per (pattern, value) whose pattern matches `key`: literal, then prefix trie
   * order, then anchored patterns by the first position of their anchor in the key.
   */
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
          probes++;
          if (general.required.length > 0 && !key.includes(general.required)) continue;
          probes++;
          if (globMatch(pattern, key)) visitAll(pattern, general.values, visit);
        }
      }
      if (depth === key.length) break;
      probes++;
      node = node.children.get(key.charCodeAt(depth));
      if (node === undefined) break;
    }
    this.scanAnchors(key, visit);
    this.lastProbeCount = probes + this.scanProbes;
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
          probes++;
          if (general.required.length > 0 && !key.includes(general.required)) continue;
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
    if (!found) {
      found = this.scanAnchors(key, null);
      probes += this.scanProbes;
    }
    this.lastProbeCount = probes;
    return found;
  }

  /**
   * Finds the anchors `key` contains and runs globMatch on their patterns, each anchor (so each
   * pattern) once: at the anchor's first position in the key. With `visit` null, stops at the first
   * match. Returns whether a pattern matched; leaves the probes made in scanProbes.
   */
  private scanAnchors(key: string, visit: ((pattern: string, value: string) => void) | null): boolean {
    this.scanProbes = 0;
    const lengths = this.anchorLengths;
    if (lengths === 0) return false;
    const shortest = 31 - Math.clz32(lengths & -lengths);
    const longest = 31 - Math.clz32(lengths);
    const tables = this.anchorTables;
    const gramCounts = this.gramCounts!;
    let probes = 0;
    let found = false;
    let gram = ((key.charCodeAt(0) & 0xff) << 8) | (key.charCodeAt(1) & 0xff);
    for (let start = 0; start + shortest <= key.length; start++) {
      // Most positions start no anchor: one look at the counts of their first 3 bytes.
      gram = ((gram << 8) | (key.charCodeAt(start + 2) & 0xff)) & 0xffffff;
      probes++;
      if (gramCounts[gramSlot(gram)] === 0) continue;
      // One FNV pass from `start` yields the hash of every window length at once.
      const end = Math.min(key.length, start + longest);
      let hash = FNV_OFFSET;
      for (let i = start; i < end; i++) {
        hash = Math.imul(hash ^ key.charCodeAt(i), FNV_PRIME);
        const length = i - start + 1;
        if (((lengths >>> length) & 1) === 0) continue;
        probes++;
        for (let bucket = tables[length].get(hash & HASH_MASK) ?? null; bucket !== null; bucket = bucket.next) {
          // Seen already if it occurs earlier in the key (rare, and only on a hit).
          if (!key.startsWith(bucket.anchor, start) || key.indexOf(bucket.anchor) < start) continue;
          for (const entry of bucket.patterns) {
            probes++;
            if (!globMatch(entry.pattern, key)) continue;
            found = true;
            if (visit === null) {
              this.scanProbes = probes;
              return true;
            }
            visitAll(entry.pattern, entry.values, visit);
          }
        }
      }
    }
    this.scanProbes = probes;
    return found;
  }

  /** Indexes a general pattern under the window of its runs whose bucket is smallest now. */
  private addAnchored(pattern: string, runs: readonly string[], values: Set<string>): void {
    let bestRun = '';
    let bestStart = 0;
    let bestLength = 0;
    let bestSize = Infinity;
    for (const run of runs) {
      if (run.length < MIN_ANCHOR) continue;
      const length = Math.min(run.length, MAX_ANCHOR);
      for (let start = 0; start + length <= run.length; start++) {
        const size = this.findBucket(run, start, length)?.patterns.length ?? 0;
        // Ties go to the longer window: fewer keys contain it.
        if (size < bestSize || (size === bestSize && length > bestLength)) {
          bestRun = run;
          bestStart = start;
          bestLength = length;
          bestSize = size;
        }
        if (bestSize === 0 && bestLength === MAX_ANCHOR) break;
      }
    }
    const bucket = this.findBucket(bestRun, bestStart, bestLength);
    const entry: AnchoredPattern = { pattern, values, bucket: bucket!, slot: bucket?.patterns.length ?? 0 };
    if (bucket) bucket.patterns.push(entry);
    else entry.bucket = this.createBucket(bestRun.slice(bestStart, bestStart + bestLength), entry);
    this.anchored.set(pattern, entry);
  }

  private deleteAnchored(entry: AnchoredPattern): void {
    this.anchored.delete(entry.pattern);
    const { bucket } = entry;
    const last = bucket.patterns.pop()!;
    if (last !== entry) {
      bucket.patterns[entry.slot] = last;
      last.slot = entry.slot;
    }
    if (bucket.patterns.length > 0) return;
    // Unlink the empty bucket; drop its table (and its length from the scan) when it was the last.
    const length = bucket.anchor.length;
    const table = this.anchorTables[length];
    const head = table.get(bucket.hash)!;
    if (head === bucket) {
      if (bucket.next !== null) table.set(bucket.hash, bucket.next);
      else table.delete(bucket.hash);
    } else {
      let before = head;
      while (before.next !== bucket) before = before.next!;
      before.next = bucket.next;
    }
    if (table.size === 0) this.anchorLengths &= ~(1 << length);
    this.gramCounts![gramSlot(gramAt(bucket.anchor, 0))]--;
  }

  /** The bucket of anchor text[start, start + length), if any. */
  private findBucket(text: string, start: number, length: number): AnchorBucket | undefined {
    let bucket = this.anchorTables[length]?.get(windowHash(text, start, length));
    while (bucket !== undefined && !(bucket.anchor.length === length && text.startsWith(bucket.anchor, start))) {
      bucket = bucket.next ?? undefined;
    }
    return bucket;
  }

  private createBucket(anchor: string, first: AnchoredPattern): AnchorBucket {
    const hash = windowHash(anchor, 0, anchor.length);
    let table = this.anchorTables[anchor.length];
    if (table === undefined) this.anchorTables[anchor.length] = table = new Map();
    // `[first]`, not a push onto `[]`: most buckets keep one pattern, and a push reserves 17 slots.
    const bucket: AnchorBucket = { anchor, hash, patterns: [first], next: table.get(hash) ?? null };
    table.set(hash, bucket);
    this.anchorLengths |= 1 << anchor.length;
    (this.gramCounts ??= new Uint32Array(1 << GRAM_BITS))[gramSlot(gramAt(anchor, 0))]++;
    return bucket;
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
