// `set` events: atomic with the write, exactly one per (key, list) per successful write, none when
// the write does not happen; NOTIFYLIST.SET/DEL/LIST on the client's own connection.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { startTestProxy } from './helpers/proxy.js';
import { command, RawClient } from './helpers/raw-client.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

let redis: RedisServer;
let proxy: RunningProxy;
let direct: Redis;
let client: Redis;

const events = async (list: string, db = 0): Promise<Array<{ key: string; op: string }>> => {
  const connection = db === 0 ? direct : new Redis(redis.port, { db });
  const entries = await connection.lrange(list, 0, -1);
  if (connection !== direct) connection.disconnect();
  return entries.map((entry) => JSON.parse(entry));
};

beforeAll(async () => {
  redis = await startRedis();
  proxy = await startTestProxy(redis);
  direct = new Redis(redis.port);
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
});

describe('NOTIFYLIST.SET / DEL / LIST', () => {
  it('registers, lists, replaces and deletes patterns, with Redis-style arity errors', async () => {
    expect(await client.call('NOTIFYLIST.SET', 'aa_*', 'aa_list')).toBe('OK');
    expect(await client.call('notifylist.set', 'bb_?', 'bb_list')).toBe('OK');
    expect(await client.call('NOTIFYLIST.SET', 'aa_*', 'other')).toBe('OK'); // replaces the list
    expect(await client.call('NOTIFYLIST.LIST')).toEqual(['aa_*', 'other', 'bb_?', 'bb_list']);
    expect(await client.call('NOTIFYLIST.DEL', 'bb_?')).toBe(1);
    expect(await client.call('NOTIFYLIST.DEL', 'bb_?')).toBe(0);
    await expect(client.call('NOTIFYLIST.SET', 'x')).rejects.toThrow("ERR wrong number of arguments for 'notifylist.set' command");
    await expect(client.call('NOTIFYLIST.DEL')).rejects.toThrow("ERR wrong number of arguments for 'notifylist.del' command");
    await expect(client.call('NOTIFYLIST.LIST', 'x')).rejects.toThrow('ERR syntax error');
    await expect(client.call('NOTIFYLIST.LIST', 'WITHOPTIONS', 'x')).rejects.toThrow("ERR wrong number of arguments for 'notifylist.list' command");
    await expect(client.call('NOTIFYLIST.SET', 'x', 'notifylist:evil')).rejects.toThrow('internal prefix');
  });

  it('applies to the very next pipelined command of the same client', async () => {
    const raw = await RawClient.connect(proxy.port);
    raw.send(Buffer.concat([command('NOTIFYLIST.SET', 'pp_*', 'pp_list'), command('SET', 'pp_1', 'v')]));
    expect((await raw.replies(2)).toString()).toBe('+OK\r\n+OK\r\n');
    raw.close();
    expect(await events('pp_list')).toEqual([{ key: 'pp_1', op: 'set' }]);
  });

  it('applies inside the same MULTI (queued registration, then the write, at EXEC)', async () => {
    const raw = await RawClient.connect(proxy.port);
    raw.send(Buffer.concat([command('MULTI'), command('NOTIFYLIST.SET', 'mm_*', 'mm_list'), command('SET', 'mm_1', 'v'), command('EXEC')]));
    expect((await raw.replies(4)).toString()).toBe('+OK\r\n+QUEUED\r\n+QUEUED\r\n*2\r\n+OK\r\n+OK\r\n');
    // DISCARDed: neither the registration nor an event.
    raw.send(Buffer.concat([command('MULTI'), command('NOTIFYLIST.SET', 'md_*', 'md_list'), command('SET', 'md_1', 'v'), command('DISCARD')]));
    expect((await raw.replies(4)).toString()).toBe('+OK\r\n+QUEUED\r\n+QUEUED\r\n+OK\r\n');
    raw.send(command('SET', 'md_2', 'v')); // the session still proposes md_*: the library refuses it
    expect((await raw.replies(1)).toString()).toBe('+OK\r\n');
    raw.close();
    expect(await events('mm_list')).toEqual([{ key: 'mm_1', op: 'set' }]);
    expect(await direct.exists('md_list')).toBe(0);
    expect(await direct.hexists('notifylist:registry', 'md_*')).toBe(0);
  });

  it('is per database: a registration in db 3 covers db 3 only', async () => {
    const db3 = new Redis(proxy.port, { db: 3 });
    await db3.call('NOTIFYLIST.SET', 'k*', 'list3');
    await db3.set('k1', '1');
    await client.set('k1', '1'); // db 0: not registered there
    await sleep(50);
    await client.set('k2', '1');
    expect(await events('list3', 3)).toEqual([{ key: 'k1', op: 'set' }]);
    expect(await direct.exists('list3')).toBe(0);
    expect(await db3.call('NOTIFYLIST.LIST')).toEqual(['k*', 'list3']);
    expect(await client.call('NOTIFYLIST.LIST')).toEqual([]);
    db3.disconnect();
  });

  it('reaches another proxy in front of the same Redis within milliseconds', async () => {
    const other = await startTestProxy(redis);
    const otherClient = new Redis(other.port);
    try {
      await client.call('NOTIFYLIST.SET', 'xp_*', 'xp_list');
      const seen = await waitFor(async () => other.controlPlane.registry.all.hasAny('xp_1'), (v) => v, 2000, 2);
      expect(seen).toBe(true);
      await otherClient.set('xp_1', 'v');
      expect(await events('xp_list')).toEqual([{ key: 'xp_1', op: 'set' }]);
    } finally {
      otherClient.disconnect();
      await other.close();
    }
  });
});

describe('set events', () => {
  beforeEach(async () => {
    // Registration is a barrier: every connection (the raw clients below too) sees it at once.
    await client.call('NOTIFYLIST.SET', 'k*', 'events');
  });

  const cases: Array<{ name: string; setup?: Array<Array<string>>; run: Array<string>; expect: string[] }> = [
    { name: 'SET', run: ['SET', 'k1', 'v'], expect: ['k1'] },
    { name: 'SET NX on a new key', run: ['SET', 'k1', 'v', 'NX'], expect: ['k1'] },
    { name: 'SET NX on an existing key', setup: [['SET', 'k1', 'old']], run: ['SET', 'k1', 'v', 'NX'], expect: [] },
    { name: 'SET XX on a missing key', run: ['SET', 'k1', 'v', 'XX'], expect: [] },
    { name: 'SET XX on an existing key', setup: [['SET', 'k1', 'old']], run: ['SET', 'k1', 'v', 'XX'], expect: ['k1'] },
    { name: 'SET NX GET on an existing key', setup: [['SET', 'k1', 'old']], run: ['SET', 'k1', 'v', 'NX', 'GET'], expect: [] },
    { name: 'SET GET', setup: [['SET', 'k1', 'old']], run: ['SET', 'k1', 'v', 'GET'], expect: ['k1'] },
    { name: 'SET GET on a list (WRONGTYPE)', setup: [['RPUSH', 'k1', 'x']], run: ['SET', 'k1', 'v', 'GET'], expect: [] },
    { name: 'SET EX', run: ['SET', 'k1', 'v', 'EX', '100'], expect: ['k1'] },
    { name: 'SET PX', run: ['SET', 'k1', 'v', 'PX', '100000'], expect: ['k1'] },
    { name: 'SET EXAT', run: ['SET', 'k1', 'v', 'EXAT', String(Math.floor(Date.now() / 1000) + 100)], expect: ['k1'] },
    { name: 'SET PXAT', run: ['SET', 'k1', 'v', 'PXAT', String(Date.now() + 100000)], expect: ['k1'] },
    { name: 'SET KEEPTTL', setup: [['SET', 'k1', 'v', 'EX', '100']], run: ['SET', 'k1', 'w', 'KEEPTTL'], expect: ['k1'] },
    { name: 'SET EX 0 (invalid expire time)', run: ['SET', 'k1', 'v', 'EX', '0'], expect: [] },
    { name: 'SET syntax error', run: ['SET', 'k1', 'v', 'NX', 'XX'], expect: [] },
    { name: 'SET on a non-matching key', run: ['SET', 'other', 'v'], expect: [] },
    { name: 'SETNX new', run: ['SETNX', 'k1', 'v'], expect: ['k1'] },
    { name: 'SETNX existing', setup: [['SET', 'k1', 'v']], run: ['SETNX', 'k1', 'v'], expect: [] },
    { name: 'SETEX', run: ['SETEX', 'k1', '100', 'v'], expect: ['k1'] },
    { name: 'SETEX invalid time', run: ['SETEX', 'k1', '-1', 'v'], expect: [] },
    { name: 'PSETEX', run: ['PSETEX', 'k1', '100000', 'v'], expect: ['k1'] },
    { name: 'GETSET', run: ['GETSET', 'k1', 'v'], expect: ['k1'] },
    { name: 'GETSET on a hash', setup: [['HSET', 'k1', 'f', 'v']], run: ['GETSET', 'k1', 'v'], expect: [] },
    { name: 'MSET in argument order', run: ['MSET', 'k2', '1', 'other', '2', 'k1', '3'], expect: ['k2', 'k1'] },
    { name: 'MSET same key twice', run: ['MSET', 'k1', '1', 'k1', '2'], expect: ['k1', 'k1'] },
    { name: 'MSETNX all new', run: ['MSETNX', 'k1', '1', 'k2', '2'], expect: ['k1', 'k2'] },
    { name: 'MSETNX one exists', setup: [['SET', 'k2', 'v']], run: ['MSETNX', 'k1', '1', 'k2', '2'], expect: [] },
    { name: 'MSET wrong arity', run: ['MSET', 'k1', '1', 'k2'], expect: [] },
  ];

  for (const testCase of cases) {
    it(`${testCase.name}: same reply as Redis, events ${JSON.stringify(testCase.expect)}`, async () => {
      // The same command against Redis directly, on a copy of the state, is the reply oracle.
      const viaProxy = await RawClient.connect(proxy.port);
      const viaRedis = await RawClient.connect(redis.port);
      for (const setup of testCase.setup ?? []) {
        viaRedis.send(command('SELECT', '9'));
        viaRedis.send(command(...setup));
        viaRedis.send(command('SELECT', '0'));
        await viaRedis.replies(3);
        await direct.call(setup[0], ...setup.slice(1));
      }
      viaRedis.send(command('SELECT', '9'));
      await viaRedis.replies(1);
      viaRedis.send(command(...testCase.run));
      viaProxy.send(command(...testCase.run));
      const expected = await viaRedis.replies(1);
      const actual = await viaProxy.replies(1);
      viaRedis.send(command('FLUSHDB'));
      await viaRedis.replies(1);
      viaProxy.close();
      viaRedis.close();
      expect(actual.toString('latin1')).toBe(expected.toString('latin1'));
      // Setup went to Redis directly: only the command under test can have made events.
      expect(await events('events')).toEqual(testCase.expect.map((key) => ({ key, op: 'set' })));
    });
  }

  it('one event per list even when several patterns point at it; one per list otherwise', async () => {
    await client.call('NOTIFYLIST.SET', 'k?', 'events');
    await client.call('NOTIFYLIST.SET', '*1', 'second');
    await client.set('k1', 'v');
    expect(await events('events')).toEqual([{ key: 'k1', op: 'set' }]);
    expect(await events('second')).toEqual([{ key: 'k1', op: 'set' }]);
  });

  it('inside MULTI: at EXEC; nothing after DISCARD or an aborted WATCH', async () => {
    const multi = await client.multi().set('k1', 'a').set('k2', 'b', 'NX').exec();
    expect(multi).toEqual([[null, 'OK'], [null, 'OK']]);
    expect((await events('events')).map((e) => e.key)).toEqual(['k1', 'k2']);

    const raw = await RawClient.connect(proxy.port);
    raw.send(Buffer.concat([command('MULTI'), command('SET', 'k3', 'v'), command('DISCARD')]));
    expect((await raw.replies(3)).toString()).toBe('+OK\r\n+QUEUED\r\n+OK\r\n');
    raw.send(command('WATCH', 'k1'));
    await raw.replies(1);
    await direct.set('k1', 'changed-by-someone-else');
    raw.send(Buffer.concat([command('MULTI'), command('SET', 'k4', 'v'), command('EXEC')]));
    expect((await raw.replies(3)).toString()).toBe('+OK\r\n+QUEUED\r\n*-1\r\n');
    // A command Redis rejects while queueing (arity) is forwarded unchanged: EXEC aborts as on Redis.
    raw.send(Buffer.concat([command('MULTI'), command('SET', 'k5', 'v'), command('SETNX', 'k6'), command('EXEC')]));
    const reply = (await raw.replies(4)).toString();
    expect(reply).toBe(
      "+OK\r\n+QUEUED\r\n-ERR wrong number of arguments for 'setnx' command\r\n-EXECABORT Transaction discarded because of previous errors.\r\n",
    );
    raw.close();
    expect((await events('events')).map((e) => e.key)).toEqual(['k1', 'k2']);
  });

  it('keys with quotes, backslashes, newlines, control bytes and non-ASCII round-trip through JSON.parse', async () => {
    const keys = ['k\u0000nul\u0000', 'k"quoted"', 'k\\back\\slash', 'k\nnew\r\nline', 'k\ttab\u0001\u001f\u007f', 'kéü日本', 'k{42}/x.y', 'k '];
    for (const key of keys) await client.set(key, '1');
    const entries = await direct.lrange('events', 0, -1);
    expect(entries.map((entry) => JSON.parse(entry).key)).toEqual(keys);
    expect(entries[1]).toBe('{"key":"k\\"quoted\\"","op":"set"}');
    expect(entries[0]).toBe('{"key":"k\\u0000nul\\u0000","op":"set"}');
  });

  it('10,000 registrations (literal, prefix and glob): each write reaches exactly its lists', async () => {
    const pipeline = client.pipeline();
    for (let i = 0; i < 4000; i++) pipeline.call('NOTIFYLIST.SET', `lit:${i}`, `lit_list_${i % 10}`);
    for (let i = 0; i < 4000; i++) pipeline.call('NOTIFYLIST.SET', `pre:${i}:*`, `pre_list_${i % 10}`);
    for (let i = 0; i < 2000; i++) pipeline.call('NOTIFYLIST.SET', `g?o:${i}:[ab]`, `glob_list_${i % 10}`);
    await pipeline.exec();
    expect(await direct.hlen('notifylist:registry')).toBe(10_001); // plus k* from beforeEach
    await waitFor(async () => proxy.controlPlane.registry.countsByDb().get(0), (n) => n === 10_001, 5000);
    await client.mset('lit:17', '1', 'pre:42:x', '1', 'glo:7:b', '1', 'glo:7:c', '1', 'lit:17x', '1');
    expect(await events('lit_list_7')).toEqual([{ key: 'lit:17', op: 'set' }]);
    expect(await events('pre_list_2')).toEqual([{ key: 'pre:42:x', op: 'set' }]);
    expect(await events('glob_list_7')).toEqual([{ key: 'glo:7:b', op: 'set' }]);
    const index = proxy.controlPlane.registry.all;
    index.hasAny('pre:3999:zzz');
    expect(index.lastProbeCount).toBeLessThan(20);
    // FLUSHALL through the proxy keeps all 10,001 registrations (restored in slices).
    await client.flushall();
    expect(await direct.hlen('notifylist:registry')).toBe(10_001);
  });

  it('commands with more arguments than Lua can unpack at once (MSET/MSETNX/DEL of 5,000 keys) behave as on Redis', async () => {
    const pairs: string[] = [];
    for (let i = 0; i < 5000; i++) pairs.push(`kbig:${i}`, String(i));
    const keys = pairs.filter((_, i) => i % 2 === 0);
    const viaProxy = await RawClient.connect(proxy.port);
    const viaRedis = await RawClient.connect(redis.port);
    const run = async (...args: string[]): Promise<[string, string]> => {
      viaRedis.send(Buffer.concat([command('SELECT', '9'), command(...args)]));
      viaProxy.send(command(...args));
      const expected = (await viaRedis.replies(2)).toString().slice('+OK\r\n'.length);
      return [(await viaProxy.replies(1)).toString(), expected];
    };
    let [actual, expected] = await run('MSET', ...pairs);
    expect(actual).toBe(expected);
    expect(await direct.llen('events')).toBe(5000);
    [actual, expected] = await run('MSETNX', ...pairs); // all exist: nothing written
    expect(actual).toBe(expected);
    expect(actual).toBe(':0\r\n');
    [actual, expected] = await run('DEL', ...keys, 'kbig:absent');
    expect(actual).toBe(expected);
    expect(actual).toBe(':5000\r\n');
    [actual, expected] = await run('MSETNX', ...pairs);
    expect(actual).toBe(':1\r\n');
    expect(actual).toBe(expected);
    expect(await direct.llen('events')).toBe(10_000);
    viaRedis.send(command('FLUSHDB'));
    await viaRedis.replies(1);
    viaProxy.close();
    viaRedis.close();
  });

  it('refuses the write (atomically) when the event list holds another type', async () => {
    await direct.set('events', 'not a list');
    await expect(client.set('k1', 'v')).rejects.toThrow(/WRONGTYPE notifylist/);
    expect(await direct.exists('k1')).toBe(0);
  });
});
