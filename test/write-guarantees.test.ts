// No write without its event, ever (issue 6, section 2), and every event is valid JSON (section 6):
// event targets never produce events of their own, one target holding another type holds back only
// its own expirations, an indexed key overwritten by a command the proxy does not rewrite is not
// reported as expired, large MSET/DEL calls keep their events, and keys of any bytes give valid
// UTF-8 JSON from which the exact key can be recovered.
import fc from 'fast-check';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { parseConfig, startProxy, type RunningProxy } from '../src/index.js';
import { targetCounts } from './helpers/internal.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

let redis: RedisServer;
let proxy: RunningProxy;
let client: Redis;
let direct: Redis;
const proxyLog: string[] = [];

async function startLoggingProxy(): Promise<RunningProxy> {
  const config = parseConfig(['--port', String(await freePort()), '--upstream', redis.url], {})!;
  return startProxy(config, (line) => proxyLog.push(line));
}

const events = async (list: string): Promise<Array<{ key: string; op: string }>> =>
  (await direct.lrange(list, 0, -1)).map((entry) => JSON.parse(entry));

/** Polls until the expiry index of db 0 is empty (every entry settled one way or the other). */
async function indexSettled(timeoutMs = 5000): Promise<number> {
  return waitFor(() => direct.zcard('notifylist:expiry'), (n) => n === 0, timeoutMs);
}

beforeAll(async () => {
  redis = await startRedis();
  direct = new Redis(redis.port);
  proxy = await startLoggingProxy();
  client = new Redis(proxy.port);
});

afterAll(async () => {
  client?.disconnect();
  direct?.disconnect();
  await proxy?.close();
  await redis?.destroy();
});

beforeEach(async () => {
  await direct.flushall();
  await proxy.controlPlane.reload();
  proxyLog.length = 0;
});

describe('event targets produce no events of their own', () => {
  it("a plain SET to another registration's target gives no event to the list of the pattern it matches", async () => {
    expect(await client.call('NOTIFYLIST.SET', 'tq:*', 'tq-events')).toBe('OK');
    expect(await client.call('NOTIFYLIST.SET', 'other:*', 'tq:list')).toBe('OK');
    expect(await client.set('tq:list', 'v')).toBe('OK'); // a target (of other:*), matching tq:*
    expect(await client.set('tq:1', 'v')).toBe('OK');
    expect(await events('tq-events')).toEqual([{ key: 'tq:1', op: 'set' }]);
  });

  it('a write to a target whose name matches its own pattern runs plainly: no error, no event, and it can be deleted through the proxy', async () => {
    expect(await client.call('NOTIFYLIST.SET', 'lp*', 'lpx')).toBe('OK');
    expect(await client.set('lpx', 'hello')).toBe('OK');
    expect(await direct.get('lpx')).toBe('hello');
    // Its events list holds a string now: writes to lp* keys are refused (not committed without event)...
    await expect(client.set('lp1', 'v')).rejects.toThrow(/^WRONGTYPE notifylist: the event list lpx holds a string/);
    expect(await direct.exists('lp1')).toBe(0);
    // ... until the target is fixed, through the proxy like any key.
    expect(await client.del('lpx')).toBe(1);
    expect(await client.set('lp1', 'v')).toBe('OK');
    expect(await direct.lrange('lpx', 0, -1)).toEqual(['{"key":"lp1","op":"set"}']);
    // A list target written as a list: plain too (no event pushed into itself).
    expect(await client.rpush('lpx', 'mine')).toBe(2);
    expect(await client.set('lpx', 'again', 'PX', 60_000)).toBe('OK');
    expect(await direct.zscore('notifylist:expiry', 'lpx')).toBeNull();
  });

  it('a TTL on a target is not indexed: the target never gets an `expired` event for itself', async () => {
    await client.call('NOTIFYLIST.SET', 'dev:*', 'dev:events');
    await client.set('dev:1', 'v');
    expect(await client.pexpire('dev:events', 200)).toBe(1);
    expect(await direct.zscore('notifylist:expiry', 'dev:events')).toBeNull();
    await waitFor(() => direct.exists('dev:events'), (n) => n === 0, 3000);
    await sleep(300); // a reaper or keyevent report would come now
    expect(await direct.exists('dev:events')).toBe(0);
    expect(await direct.zcard('notifylist:expiry')).toBe(0);
  });

  it('a SET-family write that would overwrite the event list of one of its own keys is refused before anything is written', async () => {
    await client.call('NOTIFYLIST.SET', 'lp*', 'lpx');
    await expect(client.mset('lp1', 'a', 'lpx', 'b')).rejects.toThrow(/^ERR notifylist: .*event list lpx/);
    expect(await direct.exists('lp1', 'lpx')).toBe(0);
    await expect(client.mset('lpx', 'b', 'lp1', 'a')).rejects.toThrow(/^ERR notifylist: .*event list lpx/);
    expect(await direct.exists('lp1', 'lpx')).toBe(0);
    // A DEL of a key and its target together is fine: DEL pushes nothing.
    await client.set('lp1', 'a');
    expect(await client.del('lp1', 'lpx')).toBe(2);
  });

  it('re-pointing, a second registration, NOTIFYLIST.DEL and FLUSHALL keep the set of targets true', async () => {
    await client.call('NOTIFYLIST.SET', 'lp*', 'lpx');
    await client.call('NOTIFYLIST.SET', 'lq*', 'lpx');
    expect(await targetCounts(direct)).toEqual({ lpx: '2' });
    await client.call('NOTIFYLIST.SET', 'lp*', 'lpy'); // re-pointed: lpx is still lq*'s target
    expect(await targetCounts(direct)).toEqual({ lpx: '1', lpy: '1' });
    await client.call('NOTIFYLIST.SET', 'lp*', 'lpy'); // the same again: no change
    expect(await targetCounts(direct)).toEqual({ lpx: '1', lpy: '1' });
    await client.call('NOTIFYLIST.DEL', 'lq*');
    expect(await targetCounts(direct)).toEqual({ lpy: '1' });
    // lpx is an ordinary lp* key now: its write is an event in lpy; lpy's own write is plain.
    expect(await client.set('lpx', 'v')).toBe('OK');
    expect(await client.set('lpy', 'plain')).toBe('OK');
    expect(await direct.get('lpy')).toBe('plain');
    await direct.del('lpy');
    await client.set('lpx', 'w');
    expect(await direct.lrange('lpy', 0, -1)).toEqual(['{"key":"lpx","op":"set"}']);
    // FLUSHALL through the proxy keeps registrations, and with them the targets.
    await client.flushall();
    expect(await targetCounts(direct)).toEqual({ lpy: '1' });
    expect(await client.set('lpy', 'plain')).toBe('OK');
    await client.call('NOTIFYLIST.DEL', 'lp*');
    expect(await direct.exists('notifylist:targets')).toBe(0);
  });

  it('targets are rebuilt from the registry when missing (a registry written by an older library)', async () => {
    await client.call('NOTIFYLIST.SET', 'lp*', 'lpx');
    await direct.del('notifylist:targets');
    await client.call('NOTIFYLIST.SET', 'lr*', 'lrx');
    expect(await targetCounts(direct)).toEqual({ lpx: '1', lrx: '1' });
  });
});

describe('one event target holding another type', () => {
  it('holds back only its own keys, is visible in NOTIFYLIST.INFO and the log, and its keys are reported once it is fixed', async () => {
    await client.call('NOTIFYLIST.SET', 'x:*', 'xl');
    await client.call('NOTIFYLIST.SET', 'y:*', 'yl');
    await client.set('x:1', 'v', 'PX', 400);
    for (let i = 0; i < 50; i++) await client.set(`y:${i}`, 'v', 'PX', 400);
    await direct.del('xl');
    await direct.set('xl', 'not a list');
    // Every key expires while no proxy runs.
    await proxy.close();
    client.disconnect();
    await sleep(600);
    proxy = await startLoggingProxy();
    client = new Redis(proxy.port);

    const yEvents = await waitFor(() => events('yl'), (list) => list.filter((e) => e.op === 'expired').length >= 50, 5000);
    expect(yEvents.filter((e) => e.op === 'expired').length).toBe(50);
    expect(await direct.zrange('notifylist:expiry', 0, -1)).toEqual(['x:1']);
    const info = String(await client.call('NOTIFYLIST.INFO'));
    expect(info).toMatch(/db0:.*blocked=1/);
    await waitFor(async () => proxyLog.join('\n'), (log) => /"xl"/.test(log), 3000);
    expect(proxyLog.join('\n')).toMatch(/held back in db 0: the event list "xl": it holds a string/);

    await direct.del('xl');
    const xEvents = await waitFor(() => events('xl'), (list) => list.length >= 1, 5000);
    await sleep(300);
    expect(await events('xl')).toEqual([{ key: 'x:1', op: 'expired' }]);
    expect(xEvents.length).toBe(1);
    expect(await direct.zcard('notifylist:expiry')).toBe(0);
    expect(String(await client.call('NOTIFYLIST.INFO'))).toMatch(/db0:.*blocked=0/);
  });

  it('more than one reaper batch (500) of held-back keys does not stop the reaper from reporting the others', async () => {
    await client.call('NOTIFYLIST.SET', 'x:*', 'xl');
    await client.call('NOTIFYLIST.SET', 'y:*', 'yl');
    // Via the proxy, each x key gets its TTL (and entry) first; y keys expire a little later.
    const pipeline = client.pipeline();
    // (Long enough for the 600 writes to be done, and xl replaced, before the first x key is due.)
    for (let i = 0; i < 600; i++) pipeline.set(`x:${i}`, 'v', 'PX', 1000);
    await pipeline.exec();
    await direct.del('xl');
    await direct.set('xl', 'not a list');
    for (let i = 0; i < 20; i++) await client.set(`y:${i}`, 'v', 'PX', 1200);
    const yEvents = await waitFor(() => events('yl'), (list) => list.filter((e) => e.op === 'expired').length >= 20, 5000);
    expect(yEvents.filter((e) => e.op === 'expired').length).toBe(20);
    expect(await direct.zcard('notifylist:expiry')).toBe(600);
  });
});

describe('an indexed key overwritten without a TTL (through the proxy, or directly on Redis) is not reported as expired', () => {
  const overwrites: Array<[string, (key: string) => Promise<unknown>]> = [
    ['SUNIONSTORE', (key) => client.sunionstore(key, 'src:set')],
    ['SORT ... STORE', (key) => client.sort('src:list', 'STORE', key)],
    ['BITOP', (key) => client.bitop('OR', key, 'src:str')],
    ['ZUNIONSTORE', (key) => client.zunionstore(key, 1, 'src:zset')],
    [
      'RESTORE REPLACE directly on Redis',
      async (key) => direct.restore(key, 0, (await direct.dumpBuffer('src:str'))!, 'REPLACE'),
    ],
    ['DEL then LPUSH, directly on Redis', async (key) => (await direct.del(key), direct.lpush(key, 'x'))],
    ['LPUSH after DEL through the proxy', async (key) => (await client.del(key), client.lpush(key, 'x'))],
  ];

  it.each(overwrites)('%s', async (name, overwrite) => {
    await client.call('NOTIFYLIST.SET', 's:*', 'slist');
    await direct.sadd('src:set', 'a');
    await direct.rpush('src:list', '1');
    await direct.set('src:str', 'abc');
    await direct.zadd('src:zset', 1, 'a');
    await client.set('s:1', 'v', 'PX', 300);
    await overwrite('s:1');
    expect(await direct.exists('s:1')).toBe(1);
    await sleep(350);
    expect(await indexSettled()).toBe(0);
    await sleep(100);
    expect(await direct.exists('s:1')).toBe(1);
    // (BITOP fires `set` on its destination, like Redis.)
    const bitop = name === 'BITOP' ? [{ key: 's:1', op: 'set' }] : [];
    expect(await events('slist')).toEqual([{ key: 's:1', op: 'set' }, ...bitop]);
  });

  it('an overwrite that keeps a TTL moves the entry to the new deadline, which is then reported', async () => {
    await client.call('NOTIFYLIST.SET', 's:*', 'slist');
    await direct.sadd('src:set', 'a');
    await client.set('s:1', 'v', 'PX', 200);
    await direct.sunionstore('s:1', 'src:set');
    await direct.pexpire('s:1', 700);
    await sleep(400);
    expect(await events('slist')).toEqual([{ key: 's:1', op: 'set' }]);
    const list = await waitFor(() => events('slist'), (l) => l.length >= 2, 5000);
    expect(list).toEqual([{ key: 's:1', op: 'set' }, { key: 's:1', op: 'expired' }]);
  });

  it('a key that really expired and was re-created by a write the proxy does not rewrite still gets its one `expired` event', async () => {
    await client.call('NOTIFYLIST.SET', 's:*', 'slist');
    await client.set('s:1', 'v', 'PX', 100);
    await sleep(200);
    await client.lpush('s:1', 'x'); // Redis expires the old s:1 in this lookup and publishes `expired`
    const list = await waitFor(() => events('slist'), (l) => l.length >= 2, 5000);
    await sleep(200);
    expect(list).toEqual([{ key: 's:1', op: 'set' }, { key: 's:1', op: 'expired' }]);
    expect(await events('slist')).toEqual(list);
  });
});

describe('large MSET and DEL of registered keys', () => {
  it('MSET of 20,000 keys: one `set` per key in argument order, in every matching list; DEL drops their entries without events', async () => {
    await client.call('NOTIFYLIST.SET', 'big:*', 'bigl');
    await client.call('NOTIFYLIST.SET', 'big:1*', 'bigl1');
    const n = 20_000;
    const keys = Array.from({ length: n }, (_, i) => `big:${(i * 7919) % n}`);
    // Some keys have an index entry already: a few due (reported by the reaper or by the MSET itself,
    // before its set events), most not.
    for (let i = 0; i < 100; i++) await client.set(keys[i], 'old', 'PX', i < 10 ? 1 : 60_000);
    await sleep(20);
    expect(await client.mset(...keys.flatMap((k) => [k, 'v']))).toBe('OK');
    const all = await events('bigl');
    expect(all.length).toBe(100 + 10 + n);
    expect(all.filter((e) => e.op === 'expired').length).toBe(10);
    expect(all.slice(110).map((e) => e.key)).toEqual(keys);
    expect(all.slice(110).every((e) => e.op === 'set')).toBe(true);
    const ones = keys.filter((k) => k.startsWith('big:1'));
    expect((await events('bigl1')).slice(-ones.length).map((e) => `${e.op} ${e.key}`)).toEqual(ones.map((k) => `set ${k}`));
    expect(await direct.zcard('notifylist:expiry')).toBe(0); // MSET removed every TTL

    for (let i = 0; i < 100; i++) await client.pexpire(keys[i], 60_000);
    expect(await direct.zcard('notifylist:expiry')).toBe(100);
    const eventsBefore = await direct.llen('bigl');
    expect(await client.del(...keys, 'big:none')).toBe(n);
    expect(await direct.zcard('notifylist:expiry')).toBe(0);
    expect(await direct.llen('bigl')).toBe(eventsBefore);
  });
  it('a large MSET or DEL with a key the user may not touch gets the NOPERM of the plain command, and nothing happens', async () => {
    await client.call('NOTIFYLIST.SET', 'big:*', 'bigl');
    await direct.call('ACL', 'SETUSER', 'bigwriter', 'reset', 'on', '>pw', '+@all', '~big:*', '~bigl', '~notifylist:*', '&*');
    const limited = new Redis(proxy.port, { username: 'bigwriter', password: 'pw' });
    try {
      const keys = Array.from({ length: 3000 }, (_, i) => `big:${i}`);
      const noperm = /^NOPERM this user has no permissions to access one of the keys used as arguments$/;
      await expect(limited.mset([...keys, 'other'].flatMap((k) => [k, 'v']))).rejects.toThrow(noperm);
      expect(await direct.exists(...keys)).toBe(0);
      expect(await direct.llen('bigl')).toBe(0);
      expect(await limited.mset(keys.flatMap((k) => [k, 'v']))).toBe('OK');
      expect(await direct.llen('bigl')).toBe(3000);
      await expect(limited.del(...keys, 'other')).rejects.toThrow(noperm);
      expect(await direct.exists(...keys)).toBe(3000);
      expect(await limited.del(...keys)).toBe(3000);
    } finally {
      limited.disconnect();
      await direct.call('ACL', 'DELUSER', 'bigwriter');
    }
  });
});

describe('the internal rights a write needs are checked before anything is written', () => {
  // A write that leaves its key without a TTL, to a key without an expiry entry, runs nothing on
  // the index: it needs only to read the registry, targets and index and to count its events. Any
  // write that may need more (a TTL, an indexed key, NX/XX reading the key) is refused up front.
  it('without the index rights a plain SET goes through with its event; SET EX, a SET of an indexed key and SET NX are refused and change nothing', async () => {
    await client.call('NOTIFYLIST.SET', 'lean:*', 'lean_events');
    await direct.call('ACL', 'SETUSER', 'leanwriter', 'reset', 'on', '>pw', '+set', '+get', '+fcall', '+hget', '+zscore', '+type', '+rpush', '+hincrby',
      '~lean:*', '~lean_events', '%R~notifylist:registry', '%R~notifylist:targets', '%R~notifylist:expiry', '~notifylist:stats');
    const lean = new Redis(proxy.port, { username: 'leanwriter', password: 'pw' });
    try {
      expect(await lean.set('lean:1', 'v')).toBe('OK');
      expect(await lean.set('lean:1', 'w', 'GET')).toBe('v');
      expect(await events('lean_events')).toEqual([{ key: 'lean:1', op: 'set' }, { key: 'lean:1', op: 'set' }]);

      await expect(lean.set('lean:2', 'v', 'EX', 100)).rejects.toThrow(/^NOPERM notifylist: this user has no permissions to run zrem on notifylist:expiry$/);
      expect(await direct.exists('lean:2')).toBe(0);
      await expect(lean.set('lean:2', 'v', 'KEEPTTL')).rejects.toThrow(/^NOPERM notifylist: /);
      expect(await direct.exists('lean:2')).toBe(0);

      expect(await client.set('lean:3', 'v', 'EX', 100)).toBe('OK'); // indexed
      await expect(lean.set('lean:3', 'w')).rejects.toThrow(/^NOPERM notifylist: this user has no permissions to run zrem on notifylist:expiry$/);
      expect(await direct.get('lean:3')).toBe('v');
      expect(await direct.ttl('lean:3')).toBeGreaterThan(0);

      await expect(lean.set('lean:4', 'v', 'NX')).rejects.toThrow(/^NOPERM notifylist: this user has no permissions to run PEXPIRETIME and OBJECT ENCODING on lean:4$/);
      expect(await direct.exists('lean:4')).toBe(0);
      expect(await direct.llen('lean_events')).toBe(3); // the two of lean:1 and the admin's lean:3
    } finally {
      lean.disconnect();
      await direct.call('ACL', 'DELUSER', 'leanwriter');
    }
  });

  it('without the right to count events, even a plain SET is refused', async () => {
    await client.call('NOTIFYLIST.SET', 'lean:*', 'lean_events');
    await direct.call('ACL', 'SETUSER', 'nocount', 'reset', 'on', '>pw', '+set', '+fcall', '+hget', '+zscore', '+type', '+rpush',
      '~lean:*', '~lean_events', '%R~notifylist:registry', '%R~notifylist:targets', '%R~notifylist:expiry');
    const limited = new Redis(proxy.port, { username: 'nocount', password: 'pw' });
    try {
      await expect(limited.set('lean:1', 'v')).rejects.toThrow(/^NOPERM notifylist: this user has no permissions to run hincrby on notifylist:stats$/);
      expect(await direct.exists('lean:1', 'lean_events')).toBe(0);
    } finally {
      limited.disconnect();
      await direct.call('ACL', 'DELUSER', 'nocount');
    }
  });

  it('WITH fields: a plain SET without +time, or (WITH value) without the rights on the value copies, is refused and changes nothing', async () => {
    await client.call('NOTIFYLIST.SET', 'leanw:*', 'leanw_events', 'WITH', 'value', 'ts');
    const base = ['reset', 'on', '>pw', '+set', '+fcall', '+hget', '+zscore', '+type', '+rpush', '+hincrby',
      '~leanw:*', '~leanw_events', '%R~notifylist:registry', '%R~notifylist:targets', '%R~notifylist:expiry', '~notifylist:stats'];
    await direct.call('ACL', 'SETUSER', 'notime', ...base, '~notifylist:values', '+hset', '+hdel');
    await direct.call('ACL', 'SETUSER', 'novalues', ...base, '+time');
    const notime = new Redis(proxy.port, { username: 'notime', password: 'pw' });
    const novalues = new Redis(proxy.port, { username: 'novalues', password: 'pw' });
    try {
      await expect(notime.set('leanw:1', 'v')).rejects.toThrow(/^NOPERM notifylist: this user has no permissions to run time$/);
      await expect(novalues.set('leanw:1', 'v')).rejects.toThrow(/^NOPERM notifylist: this user has no permissions to run hget on notifylist:values$/);
      expect(await direct.exists('leanw:1', 'leanw_events')).toBe(0);
      expect(await client.set('leanw:1', 'v')).toBe('OK');
      expect((await events('leanw_events')).map((e) => [e.key, e.op])).toEqual([['leanw:1', 'set']]);
    } finally {
      notime.disconnect();
      novalues.disconnect();
      await direct.call('ACL', 'DELUSER', 'notime', 'novalues');
    }
  });
});

describe('every event is valid JSON whatever the key bytes', () => {
  const strict = new TextDecoder('utf-8', { fatal: true });
  const isUtf8 = (bytes: Buffer): boolean => {
    try {
      strict.decode(bytes);
      return true;
    } catch {
      return false;
    }
  };

  it('keys that are valid UTF-8 give exactly {"key":"<key>","op":"set"}; others also carry key64, the exact bytes', async () => {
    await client.call('NOTIFYLIST.SET', 'u:*', 'ulist');
    const byteKey = fc.uint8Array({ minLength: 0, maxLength: 12 }).map((bytes) => Buffer.concat([Buffer.from('u:'), Buffer.from(bytes)]));
    const utf8Key = fc.string({ unit: 'grapheme-composite', maxLength: 6 }).map((s) => Buffer.from(`u:${s}`));
    const special = fc.constantFrom(
      ...['u:\xc3', 'u:\xed\xa0\x80', 'u:\xc0\x80', 'u:\xf4\x90\x80\x80', 'u:\xe2\x82', 'u:\xff', 'u:"\\\n\x00\x1f\x7f', 'u:é\xe9'].map((s) =>
        Buffer.from(s, 'latin1'),
      ),
      Buffer.from('u:é日本𝄞\u2028'),
    );
    await fc.assert(
      fc.asyncProperty(fc.oneof(byteKey, utf8Key, special), async (key) => {
        await direct.del('ulist');
        expect(await client.set(key, 'v')).toBe('OK');
        const [entry] = await direct.lrangeBuffer('ulist', 0, -1);
        const text = strict.decode(entry); // throws if the event is not valid UTF-8
        const event = JSON.parse(text) as { key: string; op: string; key64?: string };
        expect(event.op).toBe('set');
        if (isUtf8(key)) {
          // Today's bytes: JSON.stringify's escaping, and DEL (0x7f) escaped too.
          expect(text).toBe(`{"key":${JSON.stringify(key.toString('utf8')).replace(/\x7f/g, '\\u007f')},"op":"set"}`);
        } else {
          expect(Buffer.from(event.key64!, 'base64').equals(key)).toBe(true);
          expect(Object.keys(event)).toEqual(['key', 'op', 'key64']);
          // The readable key: every byte that is not part of valid UTF-8 becomes U+FFFD.
          expect(event.key.startsWith('u:')).toBe(true);
        }
      }),
      { numRuns: 300 },
    );
  });

  it('a large MSET gives, per key and list, the very bytes one SET per key gives (keys needing escapes or key64 among plain ones)', async () => {
    await client.call('NOTIFYLIST.SET', 'u:*', 'ulist');
    await client.call('NOTIFYLIST.SET', 'u:a*', 'alist');
    const odd = ['u:"q', 'u:a\\', 'u:a\n', 'u:\xe9', 'u:a\xc3\xa9', 'u:\x7f', 'u:a\xff\x00'].map((s) => Buffer.from(s, 'latin1'));
    const keys: Buffer[] = [];
    for (let i = 0; i < 3000; i++) keys.push(i % 500 === 7 ? odd[(i / 500) | 0] : Buffer.from(`u:${i % 2 ? 'a' : 'b'}${i}`));
    for (const key of keys) await client.set(key, 'v');
    const [oneByOne, oneByOneA] = [await direct.lrangeBuffer('ulist', 0, -1), await direct.lrangeBuffer('alist', 0, -1)];
    await direct.del('ulist', 'alist');
    expect(await client.mset(keys.flatMap((key) => [key, 'v']))).toBe('OK');
    expect(await direct.lrangeBuffer('ulist', 0, -1)).toEqual(oneByOne);
    expect(await direct.lrangeBuffer('alist', 0, -1)).toEqual(oneByOneA);
    // All plain: the same bytes again.
    const plain = keys.filter((key) => !odd.includes(key));
    await direct.del('ulist');
    expect(await client.mset(plain.flatMap((key) => [key, 'v']))).toBe('OK');
    expect(await direct.lrange('ulist', 0, -1)).toEqual(plain.map((key) => `{"key":"${key.toString()}","op":"set"}`));
  });

  it('U+FFFD replaces each byte that is not part of valid UTF-8', async () => {
    await client.call('NOTIFYLIST.SET', 'u:*', 'ulist');
    await client.set(Buffer.from('u:a\xe9b\xe2\x82c\xc3\xa9', 'latin1'), 'v');
    const event = JSON.parse(await direct.lindex('ulist', 0) as string);
    expect(event).toEqual({ key: 'u:a\ufffdb\ufffd\ufffdcé', op: 'set', key64: Buffer.from('u:a\xe9b\xe2\x82c\xc3\xa9', 'latin1').toString('base64') });
  });
});
