// Every event name and class of NOTIFYLIST.SET ... EVENTS, each with a command that fires it: the
// target gets exactly the registered events, and Redis itself fires each one for that command
// (its keyevent stream, watched directly). Plus filters, the EVENTS syntax and LIST WITHOPTIONS.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { startTestProxy } from './helpers/proxy.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

let redis: RedisServer;
let proxy: RunningProxy;
let direct: Redis;
let client: Redis;
let clientDb1: Redis;
let subscriber: Redis;
let stringDump: Buffer;
/** Redis's own events for e:* keys, as `db:key:event`. */
let published: string[] = [];
let marks = 0;

type Cmd = Array<string | Buffer>;
interface EventCase {
  event: string;
  /** Run on Redis directly (no events reach any target). */
  setup?: Cmd[];
  run: Cmd;
  /** The database of the event (MOVE: move_to is in the destination). */
  db?: number;
}

const DUMP = Buffer.from('dump');
const CASES: EventCase[] = [
  // generic
  { event: 'del', setup: [['SET', 'e:k', 'v']], run: ['DEL', 'e:k'] },
  { event: 'expire', setup: [['SET', 'e:k', 'v']], run: ['EXPIRE', 'e:k', '100'] },
  { event: 'expired', run: ['SET', 'e:k', 'v', 'PXAT', '1'] },
  { event: 'persist', setup: [['SET', 'e:k', 'v', 'EX', '100']], run: ['PERSIST', 'e:k'] },
  { event: 'rename_from', setup: [['SET', 'e:k', 'v']], run: ['RENAME', 'e:k', 'e:k2'] },
  { event: 'rename_to', setup: [['SET', 'e:k', 'v']], run: ['RENAME', 'e:k', 'e:k2'] },
  { event: 'move_from', setup: [['SET', 'e:k', 'v']], run: ['MOVE', 'e:k', '1'] },
  { event: 'move_to', setup: [['SET', 'e:k', 'v']], run: ['MOVE', 'e:k', '1'], db: 1 },
  { event: 'copy_to', setup: [['SET', 'e:k', 'v']], run: ['COPY', 'e:k', 'e:k2'] },
  { event: 'restore', run: ['RESTORE', 'e:k', '0', DUMP] },
  { event: 'new', run: ['LPUSH', 'e:k', 'a'] },
  // strings, bitmaps, HyperLogLog
  { event: 'set', run: ['SET', 'e:k', 'v'] },
  { event: 'setrange', run: ['SETRANGE', 'e:k', '2', 'x'] },
  { event: 'incrby', run: ['INCRBY', 'e:k', '5'] },
  { event: 'incrbyfloat', run: ['INCRBYFLOAT', 'e:k', '1.5'] },
  { event: 'append', run: ['APPEND', 'e:k', 'x'] },
  { event: 'setbit', run: ['SETBIT', 'e:k', '7', '1'] },
  { event: 'pfadd', run: ['PFADD', 'e:k', 'a', 'b'] },
  // lists
  { event: 'lpush', run: ['LPUSH', 'e:k', 'a'] },
  { event: 'rpush', run: ['RPUSH', 'e:k', 'a'] },
  { event: 'lpop', setup: [['RPUSH', 'e:k', 'a', 'b']], run: ['LPOP', 'e:k'] },
  { event: 'rpop', setup: [['RPUSH', 'e:k', 'a', 'b']], run: ['RPOP', 'e:k'] },
  { event: 'linsert', setup: [['RPUSH', 'e:k', 'a']], run: ['LINSERT', 'e:k', 'BEFORE', 'a', 'b'] },
  { event: 'lset', setup: [['RPUSH', 'e:k', 'a']], run: ['LSET', 'e:k', '0', 'b'] },
  { event: 'lrem', setup: [['RPUSH', 'e:k', 'a', 'b']], run: ['LREM', 'e:k', '0', 'a'] },
  { event: 'ltrim', setup: [['RPUSH', 'e:k', 'a', 'b']], run: ['LTRIM', 'e:k', '0', '0'] },
  { event: 'sortstore', setup: [['RPUSH', 'e:src', '3', '1']], run: ['SORT', 'e:src', 'STORE', 'e:k'] },
  // hashes
  { event: 'hset', run: ['HSET', 'e:k', 'f', 'v'] },
  { event: 'hdel', setup: [['HSET', 'e:k', 'f', 'v', 'g', 'w']], run: ['HDEL', 'e:k', 'f'] },
  { event: 'hincrby', run: ['HINCRBY', 'e:k', 'f', '2'] },
  { event: 'hincrbyfloat', run: ['HINCRBYFLOAT', 'e:k', 'f', '2.5'] },
  // sets
  { event: 'sadd', run: ['SADD', 'e:k', 'a'] },
  { event: 'srem', setup: [['SADD', 'e:k', 'a', 'b']], run: ['SREM', 'e:k', 'a'] },
  { event: 'spop', setup: [['SADD', 'e:k', 'a', 'b']], run: ['SPOP', 'e:k'] },
  { event: 'sinterstore', setup: [['SADD', 'e:a', 'x']], run: ['SINTERSTORE', 'e:k', 'e:a', 'e:a'] },
  { event: 'sunionstore', setup: [['SADD', 'e:a', 'x']], run: ['SUNIONSTORE', 'e:k', 'e:a'] },
  { event: 'sdiffstore', setup: [['SADD', 'e:a', 'x']], run: ['SDIFFSTORE', 'e:k', 'e:a'] },
  // sorted sets and geo
  { event: 'zadd', run: ['ZADD', 'e:k', '1', 'a'] },
  { event: 'zincr', run: ['ZINCRBY', 'e:k', '2', 'a'] },
  { event: 'zrem', setup: [['ZADD', 'e:k', '1', 'a', '2', 'b']], run: ['ZREM', 'e:k', 'a'] },
  { event: 'zremrangebyscore', setup: [['ZADD', 'e:k', '1', 'a', '2', 'b']], run: ['ZREMRANGEBYSCORE', 'e:k', '1', '1'] },
  { event: 'zremrangebyrank', setup: [['ZADD', 'e:k', '1', 'a', '2', 'b']], run: ['ZREMRANGEBYRANK', 'e:k', '0', '0'] },
  { event: 'zremrangebylex', setup: [['ZADD', 'e:k', '0', 'a', '0', 'b']], run: ['ZREMRANGEBYLEX', 'e:k', '[a', '[a'] },
  { event: 'zpopmin', setup: [['ZADD', 'e:k', '1', 'a', '2', 'b']], run: ['ZPOPMIN', 'e:k'] },
  { event: 'zpopmax', setup: [['ZADD', 'e:k', '1', 'a', '2', 'b']], run: ['ZPOPMAX', 'e:k'] },
  { event: 'zunionstore', setup: [['ZADD', 'e:a', '1', 'x']], run: ['ZUNIONSTORE', 'e:k', '1', 'e:a'] },
  { event: 'zinterstore', setup: [['ZADD', 'e:a', '1', 'x']], run: ['ZINTERSTORE', 'e:k', '1', 'e:a'] },
  { event: 'zdiffstore', setup: [['ZADD', 'e:a', '1', 'x']], run: ['ZDIFFSTORE', 'e:k', '1', 'e:a'] },
  { event: 'zrangestore', setup: [['ZADD', 'e:a', '1', 'x']], run: ['ZRANGESTORE', 'e:k', 'e:a', '0', '-1'] },
  { event: 'georadiusstore', setup: [['GEOADD', 'e:a', '13.36', '38.11', 'p']], run: ['GEORADIUS', 'e:a', '13.36', '38.11', '10', 'km', 'STORE', 'e:k'] },
  { event: 'geosearchstore', setup: [['GEOADD', 'e:a', '13.36', '38.11', 'p']], run: ['GEOSEARCHSTORE', 'e:k', 'e:a', 'FROMLONLAT', '13.36', '38.11', 'BYRADIUS', '10', 'km'] },
  // streams
  { event: 'xadd', run: ['XADD', 'e:k', '*', 'f', 'v'] },
  { event: 'xtrim', setup: [['XADD', 'e:k', '1-1', 'f', 'v'], ['XADD', 'e:k', '2-1', 'f', 'v']], run: ['XTRIM', 'e:k', 'MAXLEN', '1'] },
  { event: 'xdel', setup: [['XADD', 'e:k', '1-1', 'f', 'v']], run: ['XDEL', 'e:k', '1-1'] },
  { event: 'xsetid', setup: [['XADD', 'e:k', '1-1', 'f', 'v']], run: ['XSETID', 'e:k', '5-1'] },
  { event: 'xgroup-create', setup: [['XADD', 'e:k', '1-1', 'f', 'v']], run: ['XGROUP', 'CREATE', 'e:k', 'g', '0'] },
  { event: 'xgroup-createconsumer', setup: [['XGROUP', 'CREATE', 'e:k', 'g', '0', 'MKSTREAM']], run: ['XGROUP', 'CREATECONSUMER', 'e:k', 'g', 'c'] },
  { event: 'xgroup-delconsumer', setup: [['XGROUP', 'CREATE', 'e:k', 'g', '0', 'MKSTREAM'], ['XGROUP', 'CREATECONSUMER', 'e:k', 'g', 'c']], run: ['XGROUP', 'DELCONSUMER', 'e:k', 'g', 'c'] },
  { event: 'xgroup-destroy', setup: [['XGROUP', 'CREATE', 'e:k', 'g', '0', 'MKSTREAM']], run: ['XGROUP', 'DESTROY', 'e:k', 'g'] },
  { event: 'xgroup-setid', setup: [['XGROUP', 'CREATE', 'e:k', 'g', '0', 'MKSTREAM']], run: ['XGROUP', 'SETID', 'e:k', 'g', '0'] },
];

/** Redis's classes (src/notify.c; the class of each notifyKeyspaceEvent call): the test's own copy. */
const CLASSES: Record<string, string[]> = {
  '@generic': ['del', 'expire', 'persist', 'rename_from', 'rename_to', 'move_from', 'move_to', 'copy_to', 'restore'],
  '@string': ['set', 'setrange', 'incrby', 'incrbyfloat', 'append', 'setbit', 'pfadd'],
  '@list': ['lpush', 'rpush', 'lpop', 'rpop', 'linsert', 'lset', 'lrem', 'ltrim', 'sortstore'],
  '@hash': ['hset', 'hdel', 'hincrby', 'hincrbyfloat'],
  '@set': ['sadd', 'srem', 'spop', 'sinterstore', 'sunionstore', 'sdiffstore'],
  '@zset': ['zadd', 'zincr', 'zrem', 'zremrangebyscore', 'zremrangebyrank', 'zremrangebylex', 'zpopmin', 'zpopmax', 'zunionstore', 'zinterstore', 'zdiffstore', 'zrangestore', 'georadiusstore', 'geosearchstore'],
  '@stream': ['xadd', 'xtrim', 'xdel', 'xsetid', 'xgroup-create', 'xgroup-createconsumer', 'xgroup-delconsumer', 'xgroup-destroy', 'xgroup-setid'],
  '@expired': ['expired'],
};
CLASSES['@all'] = Object.values(CLASSES).flat();

const withDump = (cmd: Cmd): Cmd => cmd.map((arg) => (arg === DUMP ? stringDump : arg));

async function targetOps(db = 0): Promise<Array<{ key: string; op: string }>> {
  const connection = db === 0 ? direct : new Redis(redis.port, { db });
  const entries = await connection.lrange('t', 0, -1);
  if (connection !== direct) connection.disconnect();
  return entries.map((entry) => JSON.parse(entry));
}

async function allPublished(): Promise<void> {
  const before = marks;
  await direct.publish('names:end', 'x');
  await waitFor(async () => marks, (n) => n > before);
}

async function register(events: string[]): Promise<void> {
  for (const connection of [client, clientDb1]) expect(await connection.call('NOTIFYLIST.SET', 'e:*', 't', 'EVENTS', ...events)).toBe('OK');
}

/** Runs a case's setup directly and its command through the proxy; Redis's events for it. */
async function runCase(testCase: EventCase): Promise<string[]> {
  for (const setup of testCase.setup ?? []) await direct.call(String(setup[0]), ...withDump(setup.slice(1)));
  await allPublished();
  published = [];
  await client.call(String(testCase.run[0]), ...withDump(testCase.run.slice(1)));
  await allPublished();
  return published;
}

beforeAll(async () => {
  redis = await startRedis({ config: { 'notify-keyspace-events': 'KEAn' } });
  direct = new Redis(redis.port);
  await direct.set('dump:s', 'restored');
  stringDump = await direct.dumpBuffer('dump:s');
  await direct.del('dump:s');
  proxy = await startTestProxy(redis);
  await direct.config('SET', 'notify-keyspace-events', 'KEAn');
  client = new Redis(proxy.port);
  clientDb1 = new Redis(proxy.port, { db: 1 });
  subscriber = new Redis(redis.port);
  subscriber.on('pmessage', (_p: string, channel: string, key: string) => {
    const match = /^__keyevent@(\d+)__:(.+)$/.exec(channel);
    if (match && key.startsWith('e:')) published.push(`${match[1]}:${key}:${match[2]}`);
  });
  subscriber.on('message', () => marks++);
  await subscriber.psubscribe('__keyevent@*__:*');
  await subscriber.subscribe('names:end');
});

afterAll(async () => {
  for (const connection of [client, clientDb1, subscriber, direct]) connection?.disconnect();
  await proxy?.close();
  await redis?.destroy();
});

beforeEach(async () => {
  await client.flushall(); // through the proxy: the registrations stay
});

describe('each event name, with a command that fires it', () => {
  for (const testCase of CASES) {
    it(`${testCase.event}: ${testCase.run.map(String).join(' ')}`, async () => {
      await register([testCase.event]);
      const db = testCase.db ?? 0;
      const fired = await runCase(testCase);
      // Redis itself fires it for this command...
      expect(fired.filter((e) => e.endsWith(`:${testCase.event}`)).length).toBeGreaterThan(0);
      // ... and the target gets exactly Redis's events of that name, for the keys the pattern matches.
      const expected = fired.filter((e) => e.startsWith(`${db}:`) && e.endsWith(`:${testCase.event}`)).map((e) => ({ key: e.split(':').slice(1, -1).join(':'), op: testCase.event }));
      expect(await targetOps(db)).toEqual(expected);
    });
  }
});

describe('each class gets exactly its events', () => {
  for (const [name, members] of Object.entries(CLASSES)) {
    it(`${name}: every command of the table, Redis's events of the class only`, async () => {
      await register([name]);
      const expected: Array<{ key: string; op: string }> = [];
      for (const testCase of CASES.filter((c) => (c.db ?? 0) === 0)) {
        await client.flushall(); // (through the proxy: the registration stays)
        const fired = await runCase(testCase);
        for (const event of fired) {
          const [db, ...rest] = event.split(':');
          const op = rest.pop()!;
          if (db === '0' && members.includes(op)) expected.push({ key: rest.join(':'), op });
        }
        const got = await targetOps();
        expect(got).toEqual(expected.splice(0));
      }
    });
  }

  it('`new` is not in @all (like Redis: A does not include n)', async () => {
    await register(['@all']);
    await client.call('LPUSH', 'e:k', 'a');
    expect(await targetOps()).toEqual([{ key: 'e:k', op: 'lpush' }]);
  });
});

describe('filters', () => {
  it('presence: EVENTS expired del gets deletions and expirations only, in order', async () => {
    await register(['expired', 'del']);
    await client.set('e:dev1', 'online', 'EX', 100);
    await client.set('e:dev1', 'online', 'EX', 100);
    await client.del('e:dev1');
    await client.set('e:dev2', 'online', 'PXAT', '1');
    await client.hset('e:dev3', 'f', 'v');
    await client.unlink('e:dev3');
    expect(await targetOps()).toEqual([
      { key: 'e:dev1', op: 'del' },
      { key: 'e:dev2', op: 'expired' },
      { key: 'e:dev3', op: 'del' },
    ]);
  });

  it('a registration for del gets exactly the del events (also from pops and stores)', async () => {
    await register(['del']);
    await client.rpush('e:l', 'a');
    await client.lpop('e:l');
    await client.sadd('e:s', 'a');
    await client.sinterstore('e:s', 'e:missing');
    await client.set('e:x', 'v');
    await client.expire('e:x', -1);
    expect(await targetOps()).toEqual([
      { key: 'e:l', op: 'del' },
      { key: 'e:s', op: 'del' },
      { key: 'e:x', op: 'del' },
    ]);
  });

  it('@hash gets exactly the hash events', async () => {
    await register(['@hash']);
    await client.hset('e:h', 'f', '1');
    await client.hincrby('e:h', 'f', 2);
    await client.set('e:s', 'v');
    await client.hdel('e:h', 'f');
    expect(await targetOps()).toEqual([
      { key: 'e:h', op: 'hset' },
      { key: 'e:h', op: 'hincrby' },
      { key: 'e:h', op: 'hdel' },
    ]);
  });

  it('two patterns pointing at one target: the union of their events, one event each', async () => {
    await register(['del']);
    expect(await client.call('NOTIFYLIST.SET', 'e:k*', 't', 'EVENTS', 'set')).toBe('OK');
    await client.set('e:k1', 'v');
    await client.del('e:k1');
    await client.set('e:other', 'v');
    expect(await targetOps()).toEqual([
      { key: 'e:k1', op: 'set' },
      { key: 'e:k1', op: 'del' },
    ]);
    await client.call('NOTIFYLIST.DEL', 'e:k*');
  });

  it('without EVENTS: set and expired, byte-identical to before', async () => {
    expect(await client.call('NOTIFYLIST.SET', 'e:*', 't')).toBe('OK');
    await client.set('e:k', 'v', 'EX', 100);
    await client.del('e:k');
    await client.set('e:j', 'v', 'PXAT', '1');
    expect(await direct.lrange('t', 0, -1)).toEqual(['{"key":"e:k","op":"set"}', '{"key":"e:j","op":"set"}', '{"key":"e:j","op":"expired"}']);
  });
});

describe('EVENTS syntax and NOTIFYLIST.LIST WITHOPTIONS', () => {
  it('an unknown name is an error that names it, and nothing changes', async () => {
    await register(['del']);
    await expect(client.call('NOTIFYLIST.SET', 'e:*', 'other', 'EVENTS', 'del', 'delete')).rejects.toThrow(/unknown event 'delete'/);
    await expect(client.call('NOTIFYLIST.SET', 'e:*', 'other', 'EVENTS', '@strings')).rejects.toThrow(/unknown event '@strings'/);
    await expect(client.call('NOTIFYLIST.SET', 'e:*', 'other', 'EVENTS')).rejects.toThrow(/EVENTS needs at least one/);
    await expect(client.call('NOTIFYLIST.SET', 'e:*', 'other', 'FOO', 'del')).rejects.toThrow(/syntax error/);
    expect(await client.call('NOTIFYLIST.LIST', 'WITHOPTIONS')).toEqual([['e:*', 't', 'events', ['del'], 'target', 'list']]);
  });

  it('names are case-insensitive, stored lowercase, duplicates once; LIST stays flat', async () => {
    expect(await client.call('NOTIFYLIST.SET', 'e:*', 't', 'EVENTS', 'DEL', '@Hash', 'del', 'xgroup-create')).toBe('OK');
    expect(await client.call('NOTIFYLIST.SET', 'f:*', 't')).toBe('OK');
    expect(await client.call('NOTIFYLIST.LIST')).toEqual(expect.arrayContaining(['e:*', 't', 'f:*', 't']));
    expect(await client.call('NOTIFYLIST.LIST', 'WITHOPTIONS')).toEqual(
      expect.arrayContaining([
        ['e:*', 't', 'events', ['del', '@hash', 'xgroup-create'], 'target', 'list'],
        ['f:*', 't', 'events', ['set', 'expired'], 'target', 'list'],
      ]),
    );
    await expect(client.call('NOTIFYLIST.LIST', 'VERBOSE')).rejects.toThrow(/syntax error/);
    await client.call('NOTIFYLIST.DEL', 'f:*');
  });
});

describe('found by the events oracle (kept as regressions)', () => {
  it('ZADD naming a member twice: an update in between is an update (zadd), even if the score ends where it began', async () => {
    await register(['zadd']);
    await direct.zadd('e:z', 2.5, 'p');
    await client.zadd('e:z', -1, 'p', 2.5, 'p');
    await client.zadd('e:z', 'XX', 2.5, 'q', -1, 'q');
    expect(await targetOps()).toEqual([{ key: 'e:z', op: 'zadd' }]);
  });

  it('GETDEL gives one del; SET ... PXAT <past> on a new key gives new, set, expire, expired', async () => {
    await register(['@all', 'new']);
    await direct.set('e:g', 'v');
    await client.getdel('e:g');
    await client.set('e:p', 'v', 'PXAT', '1');
    expect((await targetOps()).map((e) => `${e.key} ${e.op}`)).toEqual(['e:g del', 'e:p new', 'e:p set', 'e:p expire', 'e:p expired']);
  });
});

describe('blocking commands', () => {
  it('served at once: the events of their non-blocking forms, as Redis fires them', async () => {
    await register(['@all', 'new']);
    await direct.rpush('e:l', 'a', 'b', 'c');
    await direct.zadd('e:z', 1, 'a');
    await allPublished();
    published = [];
    expect(await client.blpop('e:none', 'e:l', 1)).toEqual(['e:l', 'a']);
    expect(await client.brpop('e:l', 1)).toEqual(['e:l', 'c']);
    expect(await client.blmove('e:l', 'e:l2', 'LEFT', 'LEFT', 1)).toBe('b');
    expect(await client.bzpopmin('e:z', 1)).toEqual(['e:z', 'a', '1']);
    expect(await client.call('BLMPOP', '1', '1', 'e:l2', 'RIGHT')).toEqual(['e:l2', ['b']]);
    await allPublished();
    const fired = published.filter((e) => e.startsWith('0:')).map((e) => e.slice(2));
    expect((await targetOps()).map((e) => `${e.key}:${e.op}`)).toEqual(fired);
    expect(fired).toContain('e:l:lpop');
  });

  it('that must wait: sent as they are once the library says so, and served by the push; order kept', async () => {
    await register(['@all', 'new']);
    const waiting = new Redis(proxy.port);
    try {
      const pipeline = waiting.pipeline().blpop('e:later', 2).get('e:after').lpush('e:after', 'x');
      const replies = pipeline.exec();
      await new Promise((resolve) => setTimeout(resolve, 200));
      expect(await direct.exists('e:after')).toBe(0); // the requests after it wait behind it
      await client.lpush('e:later', 'v'); // through the proxy: its events; the pop serves the waiting client
      expect((await replies)!.map(([, reply]) => reply)).toEqual([['e:later', 'v'], null, 1]);
      // (The pop ran outside any function the proxy runs: no lpop, no del.)
      expect((await targetOps()).map((e) => `${e.key}:${e.op}`)).toEqual(['e:later:new', 'e:later:lpush', 'e:after:new', 'e:after:lpush']);
      // A timeout: the client gets Redis's null, after its timeout.
      const started = Date.now();
      expect(await waiting.blpop('e:none', 0.3)).toBeNull();
      expect(Date.now() - started).toBeGreaterThanOrEqual(250);
    } finally {
      waiting.disconnect();
    }
  });

  it('XREADGROUP ... BLOCK: served at once creates its consumer (an event); one that must wait is sent as it is', async () => {
    await register(['@all', 'new']);
    await direct.xgroup('CREATE', 'e:x', 'g', '$', 'MKSTREAM');
    await direct.xadd('e:x', '1-1', 'f', 'v');
    await direct.xgroup('SETID', 'e:x', 'g', '0');
    // (A consumer named like the option: the library drops BLOCK by the option's place, not its name.)
    expect(await client.call('XREADGROUP', 'GROUP', 'g', 'block', 'BLOCK', '100', 'STREAMS', 'e:x', '>')).toEqual([['e:x', [['1-1', ['f', 'v']]]]]);
    const waiting = new Redis(proxy.port);
    try {
      const served = waiting.call('XREADGROUP', 'GROUP', 'g', 'c2', 'BLOCK', '2000', 'STREAMS', 'e:x', '>');
      await new Promise((resolve) => setTimeout(resolve, 200));
      await direct.xadd('e:x', '2-1', 'f', 'w');
      expect(await served).toEqual([['e:x', [['2-1', ['f', 'w']]]]]);
    } finally {
      waiting.disconnect();
    }
    // (c2 was created by the command sent as it is, outside any function: no event for it.)
    expect((await targetOps()).map((e) => `${e.key}:${e.op}`)).toEqual(['e:x:xgroup-createconsumer']);
  });

  it('inside MULTI they do not block (as in Redis): run by the library at EXEC', async () => {
    await register(['@all', 'new']);
    await direct.rpush('e:l', 'a');
    expect(await client.multi().blpop('e:l', 0).blpop('e:l', 0).exec()).toEqual([[null, ['e:l', 'a']], [null, null]]);
    expect((await targetOps()).map((e) => `${e.key}:${e.op}`)).toEqual(['e:l:lpop', 'e:l:del']);
  });
});

describe('forwarded writes (README: known differences): replies as from Redis, no events', () => {
  it('BITFIELD with a field wider than 53 bits', async () => {
    await register(['@all', 'new']);
    expect(await client.call('BITFIELD', 'e:b', 'SET', 'i64', '0', '9223372036854775807')).toEqual([0]);
    expect(await targetOps()).toEqual([]);
  });
});

describe('replies Lua cannot give are exact (reply markers)', () => {
  it('null arrays of LPOP with a count, LMPOP, ZMPOP, XREADGROUP; integers near 2^63', async () => {
    await register(['@all', 'new']);
    await direct.xgroup('CREATE', 'e:x', 'g', '0', 'MKSTREAM');
    await direct.set('e:n', '9223372036854775806');
    const raw = async (port: number): Promise<string> => {
      const connection = new Redis(port);
      const replies: string[] = [];
      for (const cmd of [['LPOP', 'e:none', '2'], ['LMPOP', '1', 'e:none', 'LEFT'], ['ZMPOP', '1', 'e:none', 'MIN'], ['XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 'e:x', '>'], ['INCRBY', 'e:n', '1'], ['DECRBY', 'e:n', '1'], ['HINCRBY', 'e:h', 'f', '9223372036854775807']]) {
        replies.push(JSON.stringify(await connection.callBuffer(cmd[0], ...cmd.slice(1)).catch((e: Error) => e.message)));
      }
      connection.disconnect();
      return replies.join(' ');
    };
    const viaProxy = await raw(proxy.port);
    await direct.set('e:n', '9223372036854775806');
    await direct.del('e:h');
    await direct.xgroup('DELCONSUMER', 'e:x', 'g', 'c');
    expect(viaProxy).toBe(await raw(redis.port));
    // (XREADGROUP with nothing to read creates no consumer.)
    expect((await targetOps()).map((e) => e.op)).toEqual(['incrby', 'incrby', 'new', 'hincrby']);
  });
});

describe('MIGRATE', () => {
  it('del for each key moved away (one key, KEYS), none with COPY; their index entries go without expired', async () => {
    const other = await startRedis();
    try {
      await register(['@all', 'new']);
      await client.set('e:m1', 'v', 'EX', 1000);
      await client.set('e:m2', 'v');
      await client.set('e:m3', 'v');
      expect(await direct.zscore('notifylist:expiry', 'e:m1')).not.toBeNull();
      await direct.del('t');
      await allPublished();
      published = [];
      expect(await client.call('MIGRATE', '127.0.0.1', String(other.port), 'e:m1', '0', '5000')).toBe('OK');
      expect(await client.call('MIGRATE', '127.0.0.1', String(other.port), 'e:m2', '0', '5000', 'COPY')).toBe('OK');
      expect(await client.call('MIGRATE', '127.0.0.1', String(other.port), '', '0', '5000', 'REPLACE', 'KEYS', 'e:m2', 'e:missing', 'e:m3')).toBe('OK');
      await allPublished();
      expect((await targetOps()).map((e) => `${e.key}:${e.op}`)).toEqual(published.map((e) => e.slice(2)));
      expect(published).toEqual(['0:e:m1:del', '0:e:m2:del', '0:e:m3:del']);
      expect(await direct.zscore('notifylist:expiry', 'e:m1')).toBeNull();
      const otherClient = new Redis(other.port);
      expect(await otherClient.mget('e:m1', 'e:m2', 'e:m3')).toEqual(['v', 'v', 'v']);
      otherClient.disconnect();
    } finally {
      await other.destroy();
    }
  });
});
