// The conservative check behind registration authorization (src/security/acl-rules.ts): when
// `covers(rule, pattern)` says yes, every key the pattern matches is matched by the ACL key rule.
// Checked exhaustively over short keys with the byte-exact glob port (test/glob.test.ts proves it
// against Redis), and against the rules of real users (ACL GETUSER, selectors included).
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { globMatch } from '../src/notify/glob.js';
import { covers, keyRulesOf, readsAll } from '../src/security/acl-rules.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';

const ALPHABET = ['a', 'b', ':', '*', '\\'];
/** Every key of up to `length` bytes over `alphabet`. */
function keysUpTo(length: number, alphabet: string[]): string[] {
  const keys = [''];
  let level = [''];
  for (let n = 1; n <= length; n++) {
    level = level.flatMap((key) => alphabet.map((c) => key + c));
    keys.push(...level);
  }
  return keys;
}
const KEYS = keysUpTo(5, ALPHABET);

describe('covers: a key rule that covers a pattern matches every key the pattern matches', () => {
  const patternArb = fc.array(fc.constantFrom('a', 'b', ':', '*', '?', '[ab]', '\\*', '\\'), { maxLength: 5 }).map((parts) => parts.join(''));
  const ruleArb = fc.oneof(patternArb, patternArb.map((p) => `${p}*`), fc.constantFrom('*', '**', 'a*', 'a:*', 'ab*'));

  it('never says yes wrongly (random rules and patterns, every key of up to 5 bytes)', () => {
    fc.assert(
      fc.property(ruleArb, patternArb, (rule, pattern) => {
        if (!covers(rule, pattern)) return;
        // ACL's `~*` is every key (allkeys), "" too; any other rule is a glob.
        const aclMatch = (key: string): boolean => rule === '*' || globMatch(rule, key);
        for (const key of KEYS) if (globMatch(pattern, key)) expect(aclMatch(key), `${rule} / ${pattern} / ${JSON.stringify(key)}`).toBe(true);
      }),
      { numRuns: 1000 },
    );
  });

  it('says yes where it should', () => {
    for (const [rule, pattern] of [
      ['*', '*'], ['*', ''], ['**', 'x?'], ['app:*', 'app:*'], ['app:*', 'app:orders:*'], ['app:*', 'app:1'], ['app:*', 'app:[ab]'],
      ['app:*', 'app:?'], ['app:*', 'app:\\*'], ['app*', 'app:*'], ['app:x:*', 'app:x:*'], ['a[bc]d', 'a[bc]d'],
    ]) {
      expect(covers(rule, pattern), `${rule} covers ${pattern}`).toBe(true);
    }
    for (const [rule, pattern] of [
      ['app:*', 'app:'], ['app:*', 'ap*'], ['app:*', '*'], ['app:*', 'secret:*'], ['app:1', 'app:*'], ['app:?', 'app:*'], ['a*b', 'a*b*'],
    ]) {
      expect(covers(rule, pattern), `${rule} does not cover ${pattern}`).toBe(false);
    }
  });
});

describe('the rules of real ACL users', () => {
  let redis: RedisServer;
  let direct: Redis;
  beforeAll(async () => {
    redis = await startRedis();
    direct = new Redis(redis.port);
  });
  afterAll(async () => {
    direct?.disconnect();
    await redis?.destroy();
  });

  const rulesOf = async (...rules: string[]) => {
    await direct.call('ACL', 'SETUSER', 'u', 'reset', 'on', 'nopass', '+@all', ...rules);
    return keyRulesOf(await direct.callBuffer('ACL', 'GETUSER', 'u'))!;
  };

  it('read permission from ~, %R~ and %RW~, in the root rules or a selector; not from %W~', async () => {
    expect(readsAll(await rulesOf('~app:*'), 'app:x:*')).toBe(true);
    expect(readsAll(await rulesOf('%R~app:*'), 'app:x:*')).toBe(true);
    expect(readsAll(await rulesOf('%RW~app:*'), 'app:x:*')).toBe(true);
    expect(readsAll(await rulesOf('%W~app:*'), 'app:x:*')).toBe(false);
    expect(readsAll(await rulesOf('~other:*', '(~app:* +get)'), 'app:x:*')).toBe(true);
    expect(readsAll(await rulesOf('allkeys'), 'anything*')).toBe(true);
    expect(readsAll(await rulesOf('~app:*', '~ops:*'), 'ops:1')).toBe(true);
    expect(readsAll(await rulesOf('~app:*'), 'ops:*')).toBe(false);
    expect(readsAll(await rulesOf(), 'app:*')).toBe(false);
    expect(keyRulesOf(await direct.callBuffer('ACL', 'GETUSER', 'nobody'))).toBe(null);
  });
});
