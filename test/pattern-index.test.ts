// PatternIndex must visit exactly what brute-force globMatch over every registration visits, and
// its cost per key must not grow with the number of literal or prefix-only patterns.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { globMatch } from '../src/notify/glob.js';
import { PatternIndex } from '../src/notify/pattern-index.js';

type Model = Map<string, Set<string>>;

function visited(index: PatternIndex, key: string): string[] {
  const pairs: string[] = [];
  index.match(key, (pattern, value) => pairs.push(JSON.stringify([pattern, value])));
  return pairs.sort();
}

function bruteForce(model: Model, key: string): string[] {
  const pairs: string[] = [];
  for (const [pattern, values] of model) {
    if (globMatch(pattern, key)) for (const value of values) pairs.push(JSON.stringify([pattern, value]));
  }
  return pairs.sort();
}

function expectSameAsBruteForce(index: PatternIndex, model: Model, keys: readonly string[]): void {
  expect(index.size).toBe(model.size);
  for (const key of keys) {
    const expected = bruteForce(model, key);
    expect(visited(index, key), `key ${JSON.stringify(key)}`).toEqual(expected);
    expect(index.hasAny(key), `hasAny ${JSON.stringify(key)}`).toBe(expected.length > 0);
  }
}

// Small alphabets so that patterns and keys collide often; every shape of pattern appears:
// literal, `P*`, `*`, general with and without a prefix, escapes, classes, the empty pattern.
const keyByte = fc.constantFrom('a', 'b', 'c', ':', '*', '\\', '\xff');
const keyArbitrary = fc.array(keyByte, { maxLength: 5 }).map((bytes) => bytes.join(''));
const patternArbitrary = fc.oneof(
  keyArbitrary,
  keyArbitrary.map((prefix) => `${prefix}*`),
  keyArbitrary.map((prefix) => `${prefix}**`),
  fc
    .array(fc.constantFrom('a', 'b', ':', '*', '?', '[ab]', '[^a]', '\\*', '\\', '[', '\xff'), { maxLength: 5 })
    .map((parts) => parts.join('')),
);
const valueArbitrary = fc.constantFrom('list-1', 'list-2', 'list-3');

type Operation =
  | { op: 'add'; pattern: string; value: string }
  | { op: 'deleteValue'; pattern: string; value: string }
  | { op: 'deletePattern'; pattern: string }
  | { op: 'replace'; pattern: string; value: string }
  | { op: 'clear' };

const operationArbitrary: fc.Arbitrary<Operation> = fc.oneof(
  { arbitrary: fc.record({ op: fc.constant('add' as const), pattern: patternArbitrary, value: valueArbitrary }), weight: 6 },
  { arbitrary: fc.record({ op: fc.constant('deleteValue' as const), pattern: patternArbitrary, value: valueArbitrary }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('deletePattern' as const), pattern: patternArbitrary }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('replace' as const), pattern: patternArbitrary, value: valueArbitrary }), weight: 2 },
  { arbitrary: fc.record({ op: fc.constant('clear' as const) }), weight: 1 },
);

function apply(index: PatternIndex, model: Model, operation: Operation): void {
  switch (operation.op) {
    case 'add':
      index.add(operation.pattern, operation.value);
      if (!model.has(operation.pattern)) model.set(operation.pattern, new Set());
      model.get(operation.pattern)!.add(operation.value);
      break;
    case 'deleteValue': {
      index.delete(operation.pattern, operation.value);
      const values = model.get(operation.pattern);
      values?.delete(operation.value);
      if (values?.size === 0) model.delete(operation.pattern);
      break;
    }
    case 'deletePattern':
      index.delete(operation.pattern);
      model.delete(operation.pattern);
      break;
    case 'replace': // what NOTIFYLIST.SET does to an existing pattern
      index.delete(operation.pattern);
      index.add(operation.pattern, operation.value);
      model.set(operation.pattern, new Set([operation.value]));
      break;
    case 'clear':
      index.clear();
      model.clear();
      break;
  }
}

describe('PatternIndex', () => {
  it('visits exactly what brute-force globMatch visits, through adds, deletes, replaces and clears', () => {
    fc.assert(
      fc.property(
        fc.array(operationArbitrary, { maxLength: 40 }),
        fc.array(keyArbitrary, { maxLength: 15 }),
        (operations, keys) => {
          const index = new PatternIndex();
          const model: Model = new Map();
          const probeKeys = [...keys, '', '*', ...operations.flatMap((o) => ('pattern' in o ? [o.pattern] : []))];
          for (const operation of operations) {
            apply(index, model, operation);
            expectSameAsBruteForce(index, model, probeKeys);
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  it('handles the empty key exactly: `*` and `**` miss it, "" and `*`-free literals behave', () => {
    const index = new PatternIndex();
    index.add('*', 'star');
    index.add('**', 'stars');
    index.add('', 'empty');
    index.add('a*', 'a-prefix');
    index.add('?', 'one');
    index.add('[^]', 'any-one');
    expect(visited(index, '')).toEqual([JSON.stringify(['', 'empty'])]);
    expect(visited(index, 'a')).toEqual(
      [['*', 'star'], ['**', 'stars'], ['?', 'one'], ['[^]', 'any-one'], ['a*', 'a-prefix']].map((pair) => JSON.stringify(pair)).sort(),
    );
    index.delete('');
    expect(index.hasAny('')).toBe(false);
    expect(index.hasAny('a')).toBe(true);
  });

  it('add is idempotent; delete without a value drops the pattern; size counts patterns', () => {
    const index = new PatternIndex();
    index.add('user:*', 'a');
    index.add('user:*', 'a');
    index.add('user:*', 'b');
    index.add('user:1', 'a');
    expect(index.size).toBe(2);
    expect(visited(index, 'user:1')).toEqual(
      [['user:*', 'a'], ['user:*', 'b'], ['user:1', 'a']].map((pair) => JSON.stringify(pair)).sort(),
    );
    index.delete('user:*', 'a');
    expect(index.size).toBe(2);
    index.delete('user:*', 'missing');
    index.delete('nothing:*');
    expect(index.size).toBe(2);
    index.delete('user:*');
    expect(index.size).toBe(1);
    expect(visited(index, 'user:2')).toEqual([]);
    index.clear();
    expect(index.size).toBe(0);
    expect(index.hasAny('user:1')).toBe(false);
  });

  it('probe count does not grow with 10,000 literal and 10,000 prefix registrations', () => {
    const small = new PatternIndex();
    for (let i = 0; i < 5; i++) {
      small.add(`user:${i}`, 'list');
      small.add(`session:${i}:*`, 'list');
    }
    const large = new PatternIndex();
    for (let i = 0; i < 10_000; i++) {
      large.add(`user:${i}`, 'list');
      large.add(`session:${i}:*`, 'list');
    }

    const keysAndLargeHits: Array<[string, boolean]> = [
      ['session:1234:token', true],
      ['session:7:x', true],
      ['user:9999', true],
      ['user:99999', false],
      ['unrelated:key', false],
      ['x', false],
      ['', false],
    ];
    for (const [key, largeHits] of keysAndLargeHits) {
      small.match(key, () => {});
      large.match(key, () => {});
      const smallProbes = small.lastProbeCount;
      const largeProbes = large.lastProbeCount;
      // One literal lookup plus at most one trie step per byte of the key; the large index walks
      // at most one byte past the longest registered prefix ("session:NNNN:", 13 bytes).
      expect(largeProbes).toBeLessThanOrEqual(1 + Math.min(key.length, 14));
      expect(largeProbes).toBeLessThanOrEqual(smallProbes + 4);
      expect(large.hasAny(key)).toBe(largeHits);
      expect(large.lastProbeCount).toBeLessThanOrEqual(1 + Math.min(key.length, 14));
    }

    let visits = 0;
    large.match('session:1234:token', () => visits++);
    expect(visits).toBe(1);
  });

  it('runs globMatch only on general patterns whose anchor the key contains, and on unanchored ones', () => {
    const index = new PatternIndex();
    for (let i = 0; i < 10_000; i++) index.add(`job:${i}:?`, 'list');
    index.add('*:?', 'list');
    let visits = 0;
    index.match('job:42:x', () => visits++);
    expect(visits).toBe(2);
    // One literal lookup; the trie root holds `*:?` (no 3-byte run): its pre-check and globMatch,
    // then one step that finds no child. Anchors `job:<i>:` have 6 to 9 bytes: 3 positions of
    // "job:42:x" can start a 6-byte window, only the first starts with a known 3-byte gram, and
    // there windows of 6, 7 and 8 bytes are looked up; `job:42:` is found: one globMatch.
    expect(index.lastProbeCount).toBe(1 + 2 + 1 + 3 + 3 + 1);
  });
});

// General patterns (not literal, not `P*`) with a literal run of 3+ bytes: the cost of a key must
// not grow with how many of them are registered.
describe('PatternIndex with many general patterns', () => {
  const N = 100_000;
  /** Pattern families; `a?c*:session:*:<n>` shares its longest run with all the others. */
  const families: Array<(i: number) => string> = [
    (i) => `*:obj${i}:*`,
    (i) => `user:*:session${i}`,
    (i) => `*suffix${i}`,
    (i) => `a?c*:session:*:${i + 1000}`,
  ];
  // Every digit count of 0..N-1, so that the small index has anchors of the same lengths.
  const SPREAD = [0, 7, 12, 99, 123, 4567, 9999, 12345, 54321, 99999];

  function build(numbers: Iterable<number>): PatternIndex {
    const index = new PatternIndex();
    for (const i of numbers) for (const family of families) index.add(family(i), 'list');
    return index;
  }

  function probesOf(index: PatternIndex, key: string): { match: number; hasAny: number } {
    index.match(key, () => {});
    const match = index.lastProbeCount;
    index.hasAny(key);
    return { match, hasAny: index.lastProbeCount };
  }

  const empty = new PatternIndex();
  const small = build(SPREAD);
  const large = build(Array.from({ length: N }, (_, i) => i));

  it('costs a non-matching key a few probes per key byte, however many patterns exist', () => {
    expect(large.size).toBe(4 * N);
    const nonMatching = [
      'key:000000012345',
      'user:x:session',
      'user:x:session:1',
      'x:obj:y',
      'x:obj12a:y',
      'abc:session:x:7',
      'abc:session:x:999',
      'suffix',
      'a-suffix-12',
      'x',
      '',
    ];
    for (const key of nonMatching) {
      expect(large.hasAny(key), key).toBe(false);
      const none = probesOf(empty, key);
      const few = probesOf(small, key);
      const many = probesOf(large, key);
      // A constant number of probes per key byte (one per anchor length in use; 4 families use
      // at most 14 lengths), plus at most two globMatch calls on patterns a key almost matches.
      for (const probes of [many.match, many.hasAny]) {
        expect(probes, key).toBeLessThanOrEqual(none.match + 14 * key.length + 2);
        expect(probes, key).toBeLessThanOrEqual(few.match + 2);
      }
    }
  });

  it('finds exactly the patterns a matching key matches, at the same cost', () => {
    const expectations: Array<[string, string[]]> = [
      ['x:obj42:y', ['*:obj42:*']],
      ['user:1:session42', ['user:*:session42']],
      ['my-suffix77', ['*suffix77']],
      ['abc:session:x:1234', ['a?c*:session:*:1234']],
      ['x:obj42:suffix7', ['*:obj42:*', '*suffix7']],
      [':obj99999::obj99999:', ['*:obj99999:*']],
    ];
    for (const [key, patterns] of expectations) {
      const pairs = patterns.map((pattern) => JSON.stringify([pattern, 'list'])).sort();
      expect(visited(large, key), key).toEqual(pairs);
      expect(large.hasAny(key), key).toBe(true);
      const few = probesOf(small, key);
      const many = probesOf(large, key);
      expect(many.match, key).toBeLessThanOrEqual(few.match + 2 + patterns.length);
      expect(many.hasAny, key).toBeLessThanOrEqual(few.match + 2 + patterns.length);
    }
  });
});

// Random patterns with literal runs of 3+ bytes (so anchored), among the other kinds, against brute
// force, with churn. Pieces make runs across escapes and around classes, unclosed classes, `^`,
// ranges and trailing backslashes.
describe('PatternIndex anchored patterns against brute force', () => {
  const piece = fc.constantFrom(
    'abc', 'bca', 'cab', 'ab', 'a', 'b', 'c', ':', '*', '?', '[', ']', '^', '-', '\\', '[a-c]', '[^b]',
    '[ab]', '\\a', '\\*', '\\[', '[\\]]', '[]', '[^]', '\xff',
  );
  const patternArb = fc.array(piece, { minLength: 1, maxLength: 8 }).map((parts) => parts.join(''));
  const keyArb = fc
    .array(fc.constantFrom('abc', 'bca', 'cab', 'ab', 'a', 'b', 'c', ':', '*', '[', ']', '^', '-', '\\', '\xff'), { maxLength: 10 })
    .map((parts) => parts.join(''));
  const valueArb = fc.constantFrom('list-1', 'list-2');
  const operationArb: fc.Arbitrary<Operation> = fc.oneof(
    { arbitrary: fc.record({ op: fc.constant('add' as const), pattern: patternArb, value: valueArb }), weight: 8 },
    { arbitrary: fc.record({ op: fc.constant('add' as const), pattern: patternArbitrary, value: valueArb }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('deleteValue' as const), pattern: patternArb, value: valueArb }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('deletePattern' as const), pattern: patternArb }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('replace' as const), pattern: patternArb, value: valueArb }), weight: 2 },
    { arbitrary: fc.record({ op: fc.constant('clear' as const) }), weight: 1 },
  );
  /** Keys a pattern is likely to match: its own bytes with wildcards dropped or filled, escapes read. */
  const keysFrom = (pattern: string): string[] => {
    const unescaped = pattern.replace(/\\(.)/gs, '$1');
    return [pattern, unescaped, unescaped.replace(/[*?\[\]^-]/g, ''), unescaped.replace(/[*?]/g, 'a'), `x${unescaped}x`];
  };

  function check(operations: readonly Operation[], keys: readonly string[]): void {
    const index = new PatternIndex();
    const model: Model = new Map();
    const probeKeys = [...keys, '', ...operations.flatMap((o) => ('pattern' in o ? keysFrom(o.pattern) : []))];
    for (const operation of operations) {
      apply(index, model, operation);
      expectSameAsBruteForce(index, model, probeKeys);
    }
    // The same key twice: the same pairs in the same order.
    for (const key of probeKeys) {
      const first: string[] = [];
      const second: string[] = [];
      index.match(key, (pattern, value) => first.push(`${pattern}\n${value}`));
      index.match(key, (pattern, value) => second.push(`${pattern}\n${value}`));
      expect(second).toEqual(first);
    }
  }

  it('visits exactly what brute-force globMatch visits', () => {
    fc.assert(
      fc.property(fc.array(operationArb, { maxLength: 40 }), fc.array(keyArb, { maxLength: 15 }), (operations, keys) =>
        check(operations, keys),
      ),
      { numRuns: 400 },
    );
  });

  it('regression cases', () => {
    const add = (pattern: string, value = 'list-1'): Operation => ({ op: 'add', pattern, value });
    // An anchor that occurs twice in the key: its patterns are visited once.
    check([add('*abc*'), add('abc*abc')], ['abcabc', 'abcabcabc', 'xabcx']);
    // Anchors inside the literal prefix, after escapes, next to classes; trailing lone backslash.
    check([add('abc?'), add('a\\*bc*'), add('*[ab]cab[^a]'), add('*ab\\'), add('x[ab\\]cabc')], ['abcd', 'a*bcx', 'acabc', 'xab\\', 'xbcabc', 'x]cabc']);
    // Unclosed class: its bytes are not literal.
    check([add('ab[abc'), add('*abc[abc')], ['ab', 'aba', 'abc', 'xabca', 'abc[abc']);
    // Anchors `k0009tzx` and `k000g1cd` have the same 30-bit hash: one chain; unlink head and tail.
    const chain = ['*k0009tzx*', '*k000g1cd?', '*:k0009tzx'];
    const keys = ['k0009tzx', 'xk0009tzx', 'k000g1cdx', ':k0009tzx', 'k0009tzxk000g1cd!'];
    check([...chain.map((pattern) => add(pattern)), { op: 'deletePattern', pattern: chain[0] }, add(chain[0]), { op: 'deletePattern', pattern: chain[1] }], keys);
    check([...chain.map((pattern) => add(pattern)), { op: 'deletePattern', pattern: chain[1] }, { op: 'deletePattern', pattern: chain[0] }, { op: 'deletePattern', pattern: chain[2] }], keys);
    // Two patterns share the common run; the second is anchored by its other run.
    check([add('*:abc:*:bca'), add('*:abc:*:cab'), { op: 'deletePattern', pattern: '*:abc:*:bca' }], [':abc:x:cab', ':abc::bca']);
  });
});

describe('PatternIndex patterns without a 3-byte literal run', () => {
  it('still match exactly (checked one by one: their cost grows with their number)', () => {
    const patterns = ['*?*', '[ab]*', 'a*b', '*ab?c*', '??', '*[^a]', 'a\\*', '\\a\\b*', '*:?', 'ab[c', '[abc]'];
    const model: Model = new Map();
    const index = new PatternIndex();
    for (const pattern of patterns) {
      index.add(pattern, 'list');
      model.set(pattern, new Set(['list']));
    }
    const keys = ['', 'a', 'b', 'ab', 'aab', 'axb', 'xaby-c', 'a*', 'ab', 'abx', 'x:y', 'ab[c', 'c', 'zz', 'abc'];
    expectSameAsBruteForce(index, model, keys);
    // Each is pre-checked on a key that misses them all: the cost is linear in their number.
    const many = new PatternIndex();
    for (let i = 0; i < 1_000; i++) many.add(`*${String.fromCharCode(0x41 + (i % 26), 0x41 + Math.floor(i / 26))}?*`, 'list');
    expect(many.hasAny('zzzz')).toBe(false);
    expect(many.lastProbeCount).toBeGreaterThanOrEqual(1_000);
    expect(many.hasAny('zAAzz')).toBe(true);
  });
});

describe('PatternIndex churn', () => {
  it('leaves nothing behind: after deletes, probes are those of an index that only had the rest', () => {
    const keep = ['*:obj7:*', 'user:*:session7'];
    const churned = new PatternIndex();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 10_000; i++) {
        churned.add(`*:obj${i}:*`, 'a');
        churned.add(`*:obj${i}:*`, 'b');
        churned.add(`user:*:session${i}`, 'a');
        churned.add(`*suffix${i}`, 'a');
        churned.add(`*[ab]:${i}x?`, 'a');
      }
      for (let i = 0; i < 10_000; i++) {
        churned.delete(`*:obj${i}:*`, 'a');
        if (i !== 7) churned.delete(`*:obj${i}:*`, 'b');
        if (i !== 7) churned.delete(`user:*:session${i}`);
        churned.delete(`*suffix${i}`, 'a');
        churned.delete(`*[ab]:${i}x?`);
      }
    }
    const fresh = new PatternIndex();
    fresh.add('*:obj7:*', 'b');
    fresh.add('user:*:session7', 'a');
    expect(churned.size).toBe(keep.length);
    for (const key of ['x:obj7:y', 'x:obj42:y', 'user:1:session7', 'user:1:session42', 'my-suffix3', 'a:7xy', 'key:000000012345']) {
      expect(visited(churned, key), key).toEqual(visited(fresh, key));
      expect(churned.lastProbeCount, key).toBe(fresh.lastProbeCount);
      expect(churned.hasAny(key), key).toBe(fresh.hasAny(key));
      expect(churned.lastProbeCount, key).toBe(fresh.lastProbeCount);
    }
    for (const pattern of keep) churned.delete(pattern);
    const empty = new PatternIndex();
    for (const key of ['x:obj7:y', 'user:1:session7', 'abcdefghijklmnopqrstuvwxyz']) {
      churned.hasAny(key);
      empty.hasAny(key);
      expect(churned.lastProbeCount, key).toBe(empty.lastProbeCount);
    }
  });
});
