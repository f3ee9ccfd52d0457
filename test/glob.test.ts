// globMatch must agree with Redis's own matcher byte for byte: table cases for every subtle rule,
// a differential test against a real redis-server (SCAN MATCH), and pathological patterns.
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_STAR_NESTING, classifyPattern, globMatch, literalPrefix, literalRuns, prefixClassMatches, requiredSubstring } from '../src/notify/glob.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';

/** [pattern, key, expected]; binary strings (one char per byte). Every row is also checked on Redis. */
const TABLE: ReadonlyArray<readonly [string, string, boolean]> = [
  // empty pattern / empty key
  ['', '', true],
  ['', 'a', false],
  ['a', '', false],
  ['*', '', false], // `*` does not match the empty key
  ['**', '', false],
  ['?', '', false],
  ['[^]', '', false],
  ['*', 'a', true],
  // `*`: any bytes including `/`, `.`, newline, braces; runs collapse; trailing `*` matches at once
  ['*', 'a/b\n.c{d}', true],
  ['a*b', 'a\nb', true],
  ['a*b', 'ab', true],
  ['a*b', 'a/x/b', true],
  ['a*b', 'a/x/bc', false],
  ['abc*', 'abc', true],
  ['abc**', 'abc', true],
  ['abc*', 'abcd', true],
  ['abc*', 'ab', false],
  ['*a', 'ba', true],
  ['*a', 'ab', false],
  ['a***b', 'ab', true],
  ['a*b*c', 'aXbYc', true],
  ['a*b*c', 'aXbYd', false],
  ['*?', 'a', true],
  ['*?', '', false],
  ['?*', 'a', true],
  ['*?*', 'ab', true],
  // `?` is exactly one byte
  ['?', 'a', true],
  ['?', 'ab', false],
  ['??', '\xc3\xa9', true], // "é" in UTF-8 is two bytes
  ['?', '\xc3\xa9', false],
  ['?', '\x00', true],
  ['a?c', 'abc', true],
  // classes: only `^` negates, `!` is literal
  ['[abc]', 'b', true],
  ['[abc]', 'd', false],
  ['[abc]', 'ab', false],
  ['[^abc]', 'd', true],
  ['[^abc]', 'a', false],
  ['[!a]', '!', true],
  ['[!a]', 'a', true],
  ['[!a]', 'b', false],
  ['[a^]', '^', true],
  // `]` right after `[` or `[^` closes the class
  ['[]', ']', false],
  ['[]', 'a', false],
  ['[]]', ']', false],
  ['[]a', 'a', false],
  ['[^]', 'x', true],
  ['[^]', ']', true],
  ['[^]', 'xy', false],
  ['[^]]', 'x]', true],
  ['[^]]', 'x', false],
  // ranges, either order
  ['[a-c]', 'b', true],
  ['[c-a]', 'b', true],
  ['[a-c]', 'd', false],
  ['[a-c]', '-', false],
  ['[a-a]', 'a', true],
  ['[-a]', '-', true],
  ['[-a]', 'a', true],
  ['[a-c-e]', '-', true], // `a-c` then literal `-` and `e`
  ['[a-c-e]', 'd', false],
  // `x-y` is a range only with >= 3 pattern bytes left: `[a-]` is the range `]`..`a`, then the
  // class runs to the end of the pattern
  ['[a-]', ']', true],
  ['[a-]', '_', true],
  ['[a-]', 'a', true],
  ['[a-]', 'b', false],
  ['[a-]', '-', false],
  ['[a-]x', 'x', true],
  ['[a-]x', '_x', false],
  ['[a-]]', '_', true],
  ['[a-', 'a', true],
  ['[a-', '-', true],
  ['[a-', 'b', false],
  // escapes inside a class
  ['[\\]]', ']', true],
  ['[\\]]', '\\', false],
  ['[\\^a]', '^', true],
  ['[\\-a]', '-', true],
  ['[\\a-c]', 'b', false], // escaped `a`, then literal `-` and `c`
  ['[\\a-c]', '-', true],
  ['[\\', '\\', true], // lone `\` at the end of a class is literal
  ['[a\\', '\\', true],
  // unterminated classes run to the end of the pattern
  ['[ab', 'a', true],
  ['[ab', 'b', true],
  ['[ab', 'ab', false],
  ['[', '[', false],
  ['[', 'a', false],
  ['[^', 'x', true],
  ['[^', '', false],
  ['a[', 'a', false],
  ['a[b', 'ab', true],
  // escapes outside a class
  ['\\*', '*', true],
  ['\\*', 'a', false],
  ['\\?', '?', true],
  ['\\?', 'a', false],
  ['\\[a]', '[a]', true],
  ['\\a', 'a', true],
  ['\\\\', '\\', true],
  ['\\', '\\', true], // trailing lone `\` matches `\`
  ['a\\', 'a\\', true],
  ['a\\', 'a', false],
  ['a\\*', 'a*', true],
  ['a\\*', 'ab', false],
  // braces, `!`, `/`, dots: literal
  ['{a,b}', '{a,b}', true],
  ['{a,b}', 'a', false],
  ['a/*', 'a/b/c', true],
  ['.*', '.hidden', true],
  ['*', '.hidden', true],
  // range bounds compare as signed char: bytes >= 0x80 are negative
  ['[a-\xff]', 'b', false], // -1..97
  ['[a-\xff]', '\xff', true],
  ['[a-\xff]', '\x00', true],
  ['[a-\xff]', 'A', true],
  ['[a-\xff]', '\x80', false],
  ['[\x80-\xff]', '\x90', true],
  ['[\x80-\xff]', 'a', false],
  ['[\x00-\x7f]', '\x80', false],
  ['[\x01-\x7f]', '\x00', false],
  ['[\x7f-\x80]', '\x81', true], // -128..127: every byte
  ['[\x7f-\x80]', '\x00', true],
  ['[^\x80-\xff]', 'a', true],
  ['[\xc3]', '\xc3', true],
  ['\xc3?', '\xc3\xa9', true],
  // NUL bytes are ordinary bytes (the C code's past-end reads see NUL but never confuse them)
  ['a\x00b', 'a\x00b', true],
  ['a\x00b', 'a', false],
  ['[\x00]', '\x00', true],
  ['[\x00', '\x00', true],
  ['[^\x00]', '\x00', false],
  ['*\x00', 'a\x00', true],
  ['\x00*', '\x00', true],
  ['\\\x00', '\x00', true],
  // cases found by the differential test (none so far: add them here)
];

/** Test keys for the differential: biased towards the bytes that make globbing subtle. */
const SUBTLE_BYTES = [...'*?[]^-\\{}/!\n', '\x00', '\x7f', '\x80', '\xa9', '\xc3', '\xff'];
const LETTERS = ['a', 'b', 'c'];

function byteArbitrary(letterWeight: number): fc.Arbitrary<string> {
  return fc.oneof(
    { arbitrary: fc.constantFrom(...LETTERS), weight: letterWeight },
    { arbitrary: fc.constantFrom(...SUBTLE_BYTES), weight: 4 },
    { arbitrary: fc.integer({ min: 0, max: 255 }).map((b) => String.fromCharCode(b)), weight: 1 },
  );
}

function binaryString(letterWeight: number, maxLength: number): fc.Arbitrary<string> {
  return fc.array(byteArbitrary(letterWeight), { maxLength }).map((bytes) => bytes.join(''));
}

/** Patterns: random bytes, plus shapes that keep classes and escapes well-formed more often. */
const patternArbitrary: fc.Arbitrary<string> = fc.oneof(
  { arbitrary: binaryString(4, 8), weight: 3 },
  {
    arbitrary: fc
      .array(
        fc.oneof(
          fc.constantFrom('*', '?', 'a', 'b', 'c', '\\'),
          fc.tuple(fc.constantFrom('[', '[^'), binaryString(5, 4), fc.constantFrom(']', '')).map((parts) => parts.join('')),
          fc.tuple(byteArbitrary(3), byteArbitrary(3)).map(([from, to]) => `[${from}-${to}]`),
          fc.tuple(fc.constant('\\'), byteArbitrary(2)).map((parts) => parts.join('')),
        ),
        { maxLength: 5 },
      )
      .map((parts) => parts.join('')),
    weight: 2,
  },
);

const toBuffer = (binary: string): Buffer => Buffer.from(binary, 'latin1');
const fromBuffer = (buffer: Buffer): string => buffer.toString('latin1');
const show = (binary: string): string => JSON.stringify(binary);

describe('globMatch table', () => {
  it.each(TABLE.map(([pattern, key, expected]) => ({ pattern, key, expected, name: `${show(pattern)} ~ ${show(key)}` })))(
    '$name -> $expected',
    ({ pattern, key, expected }) => {
      expect(globMatch(pattern, key)).toBe(expected);
    },
  );
});

describe('literalPrefix and classifyPattern', () => {
  it('stop at the first special byte', () => {
    expect(literalPrefix('')).toBe('');
    expect(literalPrefix('abc')).toBe('abc');
    expect(literalPrefix('user:*')).toBe('user:');
    expect(literalPrefix('a?b')).toBe('a');
    expect(literalPrefix('a[b]')).toBe('a');
    expect(literalPrefix('a\\*b')).toBe('a');
    expect(literalPrefix('*abc')).toBe('');
    expect(literalPrefix('a]^-{}!/')).toBe('a]^-{}!/');
  });

  it('classify literal, prefix-only and general patterns', () => {
    expect(classifyPattern('')).toEqual({ kind: 'literal', text: '' });
    expect(classifyPattern('a]b{c}')).toEqual({ kind: 'literal', text: 'a]b{c}' });
    expect(classifyPattern('*')).toEqual({ kind: 'prefix', prefix: '' });
    expect(classifyPattern('**')).toEqual({ kind: 'prefix', prefix: '' });
    expect(classifyPattern('user:*')).toEqual({ kind: 'prefix', prefix: 'user:' });
    expect(classifyPattern('user:***')).toEqual({ kind: 'prefix', prefix: 'user:' });
    expect(classifyPattern('user:*:x')).toEqual({ kind: 'general', prefix: 'user:' });
    expect(classifyPattern('a\\*')).toEqual({ kind: 'general', prefix: 'a' });
    expect(classifyPattern('a*\\')).toEqual({ kind: 'general', prefix: 'a' });
    expect(classifyPattern('?*')).toEqual({ kind: 'general', prefix: '' });
  });

  it('classification agrees with globMatch on random patterns and keys', () => {
    fc.assert(
      fc.property(patternArbitrary, fc.array(binaryString(6, 6), { maxLength: 20 }), (pattern, keys) => {
        const shape = classifyPattern(pattern);
        for (const key of [...keys, pattern, literalPrefix(pattern), '']) {
          const expected = globMatch(pattern, key);
          if (shape.kind === 'literal') expect(key === shape.text).toBe(expected);
          else if (shape.kind === 'prefix') expect(prefixClassMatches(shape.prefix, key)).toBe(expected);
          else if (expected) expect(key.startsWith(shape.prefix)).toBe(true);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('pathological patterns finish fast', () => {
  it('a*a*...*b against a long run of a (CVE-2022-36021)', () => {
    const started = performance.now();
    expect(globMatch('a*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(10_000))).toBe(false);
    expect(globMatch('*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(10_000))).toBe(false);
    expect(globMatch('a*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(10_000) + 'b')).toBe(true);
    expect(globMatch('*?*?*?*?*?*?*?*?*?*?*[b]', 'a'.repeat(10_000))).toBe(false);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it('long runs of `*` collapse', () => {
    const started = performance.now();
    expect(globMatch('*'.repeat(100_000) + 'b', 'a'.repeat(100_000))).toBe(false);
    expect(globMatch('a' + '*'.repeat(100_000), 'a')).toBe(true);
    expect(globMatch('*'.repeat(100_000), '')).toBe(false);
    expect(performance.now() - started).toBeLessThan(2_000);
  });

  it(`bounds star nesting at ${MAX_STAR_NESTING} (deeper branches fail, the stack is safe)`, () => {
    const started = performance.now();
    const atBound = '*a'.repeat(MAX_STAR_NESTING);
    const pastBound = '*a'.repeat(MAX_STAR_NESTING + 1);
    expect(globMatch(atBound, 'a'.repeat(MAX_STAR_NESTING))).toBe(true);
    expect(globMatch(pastBound, 'a'.repeat(MAX_STAR_NESTING + 1))).toBe(false);
    expect(globMatch(pastBound, 'a'.repeat(5_000))).toBe(false);
    // A trailing `*` returns before recursing, so it does not count.
    expect(globMatch('a*'.repeat(MAX_STAR_NESTING + 1), 'a'.repeat(MAX_STAR_NESTING + 1))).toBe(true);
    expect(globMatch('*a'.repeat(100_000), 'a'.repeat(100_000))).toBe(false);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});

describe('differential against redis-server (SCAN MATCH)', () => {
  let server: RedisServer;
  let client: Redis;

  beforeAll(async () => {
    server = await startRedis();
    client = new Redis(server.port, '127.0.0.1', { lazyConnect: true, maxRetriesPerRequest: 0 });
    await client.connect();
  });

  afterAll(async () => {
    client?.disconnect();
    await server?.destroy();
  });

  async function loadKeys(db: number, keys: readonly string[]): Promise<void> {
    await client.select(db);
    await client.flushdb();
    const pipeline = client.pipeline();
    for (const key of keys) pipeline.set(toBuffer(key), '1');
    await pipeline.exec();
  }

  /** Keys of the selected db that Redis's matcher accepts, one set per pattern (pipelined). */
  async function redisMatches(patterns: readonly string[]): Promise<Set<string>[]> {
    const results = patterns.map(() => new Set<string>());
    let pending = patterns.map((_, index) => ({ index, cursor: '0' }));
    while (pending.length > 0) {
      const next: typeof pending = [];
      for (let start = 0; start < pending.length; start += 500) {
        const batch = pending.slice(start, start + 500);
        const pipeline = client.pipeline();
        for (const { index, cursor } of batch) {
          pipeline.callBuffer('SCAN', cursor, 'MATCH', toBuffer(patterns[index]!), 'COUNT', '100000');
        }
        const replies = (await pipeline.exec())!;
        batch.forEach(({ index }, i) => {
          const [error, reply] = replies[i]!;
          if (error) throw error;
          const [cursor, keys] = reply as [Buffer, Buffer[]];
          for (const key of keys) results[index]!.add(fromBuffer(key));
          if (cursor.toString() !== '0') next.push({ index, cursor: cursor.toString() });
        });
      }
      pending = next;
    }
    return results;
  }

  /**
   * What SCAN returns if Redis's matcher is globMatch. SCAN (like KEYS) skips matching for the
   * exact pattern `*`, so that one also returns the empty key, which `*` itself does not match.
   */
  function expectedScan(pattern: string, keys: readonly string[]): Set<string> {
    if (pattern === '*') return new Set(keys);
    return new Set(keys.filter((key) => globMatch(pattern, key)));
  }

  function mismatches(patterns: readonly string[], keys: readonly string[], actual: Set<string>[]): string[] {
    const found: string[] = [];
    patterns.forEach((pattern, index) => {
      const expected = expectedScan(pattern, keys);
      for (const key of keys) {
        if (expected.has(key) !== actual[index]!.has(key)) {
          found.push(`pattern ${show(pattern)} key ${show(key)}: redis ${actual[index]!.has(key)}, globMatch ${expected.has(key)}`);
        }
      }
    });
    return found;
  }

  it('agrees on every table row', async () => {
    const keys = [...new Set(TABLE.map(([, key]) => key))];
    await loadKeys(1, keys);
    const patterns = [...new Set(TABLE.map(([pattern]) => pattern))];
    const actual = await redisMatches(patterns);
    // Checks each row's expectation on Redis, and every table pattern against every table key.
    const rowErrors = TABLE.filter(
      ([pattern, key, expected]) => expectedScan(pattern, [key]).has(key) === expected && actual[patterns.indexOf(pattern)]!.has(key) !== expected,
    ).map(
      ([pattern, key, expected]) => `row ${show(pattern)} ~ ${show(key)} expects ${expected}, redis disagrees`,
    );
    expect(rowErrors).toEqual([]);
    expect(mismatches(patterns, keys, actual)).toEqual([]);
  });

  it('SCAN MATCH * skips the matcher (returns the empty key); `**` goes through it and does not', async () => {
    await loadKeys(4, ['', 'a']);
    const [star, doubleStar] = await redisMatches(['*', '**']);
    expect([...star!].sort()).toEqual(['', 'a']);
    expect([...doubleStar!]).toEqual(['a']);
  });

  it('agrees on thousands of random patterns over hundreds of binary keys', async () => {
    const seed = Number(process.env.GLOB_SEED ?? Date.now() % 2 ** 31);
    const keys = [
      ...new Set([
        '',
        ...fc.sample(binaryString(6, 6), { seed, numRuns: 300 }),
        // Keys shaped like patterns, so escapes and classes meet their own bytes.
        ...fc.sample(patternArbitrary, { seed: seed + 1, numRuns: 150 }),
      ]),
    ];
    await loadKeys(2, keys);
    const patterns = fc.sample(patternArbitrary, { seed: seed + 2, numRuns: 20_000 });
    const actual = await redisMatches(patterns);

    const errors = mismatches(patterns, keys, actual);
    expect(errors.slice(0, 20), `GLOB_SEED=${seed}: ${errors.length} mismatches`).toEqual([]);
    // Guard against a vacuous run: plenty of patterns must match some but not all keys.
    const informative = actual.filter((matched) => matched.size > 0 && matched.size < keys.length).length;
    expect(informative).toBeGreaterThan(patterns.length / 4);
  });

  it('agrees on pathological and deeply nested patterns', async () => {
    const keys = ['a'.repeat(2_000), 'a'.repeat(MAX_STAR_NESTING), 'a'.repeat(MAX_STAR_NESTING + 1), 'a'.repeat(2_000) + 'b', ''];
    await loadKeys(3, keys);
    const patterns = [
      'a*a*a*a*a*a*a*a*a*a*a*b',
      '*a*a*a*a*a*a*a*a*a*a*a*a*b',
      '*'.repeat(10_000) + 'b',
      '*'.repeat(10_000),
      '*a'.repeat(MAX_STAR_NESTING - 1),
      '*a'.repeat(MAX_STAR_NESTING),
      '*a'.repeat(MAX_STAR_NESTING + 1),
      '*a'.repeat(MAX_STAR_NESTING + 2),
      'a*'.repeat(MAX_STAR_NESTING + 1),
      '*a'.repeat(MAX_STAR_NESTING + 1) + '*',
      '*?'.repeat(MAX_STAR_NESTING + 1),
    ];
    const actual = await redisMatches(patterns);
    expect(mismatches(patterns, keys, actual).map((line) => line.slice(0, 200))).toEqual([]);
  });
});

describe('requiredSubstring (the pattern index pre-filter)', () => {
  it('is contained in every key the pattern matches', () => {
    const piece = fc.constantFrom('a', 'b', 'ab', ':', '*', '?', '[ab]', '[^a]', '[a-c]', '[]', '[^]', '\\*', '\\', '[', ']', '-', '\xff');
    const pattern = fc.array(piece, { maxLength: 8 }).map((parts) => parts.join(''));
    const key = fc.array(fc.constantFrom('a', 'b', 'c', ':', '*', '\\', '[', ']', '-', '\xff'), { maxLength: 8 }).map((b) => b.join(''));
    fc.assert(
      fc.property(pattern, key, (p, k) => {
        if (globMatch(p, k)) expect(k.includes(requiredSubstring(p))).toBe(true);
      }),
      { numRuns: 20_000 },
    );
  });

  it('picks the longest literal run (the prefix too), skipping classes, reading escapes as bytes', () => {
    expect(requiredSubstring('user:*:session:?x')).toBe(':session:');
    expect(requiredSubstring('*[abc]def*')).toBe('def');
    expect(requiredSubstring('a*\\*bc*')).toBe('*bc');
    expect(requiredSubstring('*[]x]yz')).toBe('x]yz');
    expect(requiredSubstring('abc')).toBe('abc');
    expect(requiredSubstring('user:*:x')).toBe('user:');
    expect(requiredSubstring('*?*')).toBe('');
  });
});

describe('literalRuns (the pattern index anchors)', () => {
  it('reads runs as globMatch does: escapes are bytes, classes and wildcards split runs', () => {
    expect(literalRuns('')).toEqual([]);
    expect(literalRuns('abc')).toEqual(['abc']);
    expect(literalRuns('*:obj42:*')).toEqual([':obj42:']);
    expect(literalRuns('a?c*:session:*')).toEqual(['a', 'c', ':session:']);
    expect(literalRuns('ab\\*cd')).toEqual(['ab*cd']);
    expect(literalRuns('ab\\\\cd')).toEqual(['ab\\cd']);
    // A trailing lone backslash is a literal backslash.
    expect(literalRuns('*ab\\')).toEqual(['ab\\']);
    // Classes: `]` first closes at once (`[]` is empty), escapes and ranges inside, `^` negates.
    expect(literalRuns('x[]y]z')).toEqual(['x', 'y]z']);
    expect(literalRuns('ab[^\\]]cd[a-]]ef')).toEqual(['ab', 'cd', 'ef']);
    expect(literalRuns('ab[a-]cd')).toEqual(['ab']); // `a-]` is a range: the class never closes
    expect(literalRuns('abc[def')).toEqual(['abc']); // unclosed: the class runs to the end
    expect(literalRuns('abc[de\\')).toEqual(['abc']);
    expect(literalRuns('abc[')).toEqual(['abc']);
    expect(literalRuns('abc[^')).toEqual(['abc']);
  });

  it('every run is in every key the pattern matches, in order and apart', () => {
    const piece = fc.constantFrom('a', 'b', 'abc', ':', '*', '?', '[ab]', '[^a]', '[a-c]', '[]', '[^]', '\\*', '\\a', '\\', '[', ']', '^', '-', '\xff');
    const pattern = fc.array(piece, { maxLength: 8 }).map((parts) => parts.join(''));
    const key = fc.array(fc.constantFrom('a', 'b', 'c', 'abc', ':', '*', '\\', '[', ']', '^', '-', '\xff'), { maxLength: 8 }).map((b) => b.join(''));
    fc.assert(
      fc.property(pattern, key, (p, k) => {
        if (!globMatch(p, k)) return;
        let from = 0;
        for (const run of literalRuns(p)) {
          const at = k.indexOf(run, from);
          expect(at, `${JSON.stringify(p)} ${JSON.stringify(k)} ${JSON.stringify(run)}`).toBeGreaterThanOrEqual(0);
          from = at + run.length;
        }
      }),
      { numRuns: 20_000 },
    );
  });
});
