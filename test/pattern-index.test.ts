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

  it('runs globMatch only on general patterns whose literal prefix the key starts with', () => {
    const index = new PatternIndex();
    for (let i = 0; i < 10_000; i++) index.add(`job:${i}:?`, 'list');
    index.add('*:?', 'list');
    let visits = 0;
    index.match('job:42:x', () => visits++);
    expect(visits).toBe(2);
    // One literal lookup, trie steps along "job:42:x" (8 bytes, the last finds no child), and
    // globMatch only for `*:?` and `job:42:?`.
    expect(index.lastProbeCount).toBe(1 + 8 + 2);
  });
});
