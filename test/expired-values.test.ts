// WITH fields (ts, db, ttl, value) and the value of a key that expired: the library keeps a copy
// of a registered string key's value next to its expiry index entry, atomically with the write,
// and the `expired` event carries it exactly once: also after a proxy SIGKILL, while no proxy
// runs, and after Redis restarts from AOF and from RDB. On real Redis and real proxy processes.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { ProxyProcess, startTestProxy } from './helpers/proxy.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const VALUES = 'notifylist:values';
let redis: RedisServer;
let proxy: RunningProxy;
let direct: Redis;
let client: Redis;

beforeAll(async () => {
  redis = await startRedis();
  proxy = await startTestProxy(redis, ['--max-value-bytes', '64']);
  direct = new Redis(redis.port);
  client = new Redis(proxy.port);
});

afterAll(async () => {
  client.disconnect();
  direct.disconnect();
  await proxy.close();
  await redis.stop();
});

beforeEach(async () => {
  const listed = (await client.call('NOTIFYLIST.LIST')) as string[];
  for (let i = 0; i < listed.length; i += 2) await client.call('NOTIFYLIST.DEL', listed[i]);
  await client.select(0);
  await direct.flushall();
});

type Event = Record<string, string | number>;
const parsed = async (list: string, db = 0): Promise<Event[]> => {
  const connection = db === 0 ? direct : new Redis(redis.port, { db });
  const items = await connection.lrange(list, 0, -1);
  if (connection !== direct) connection.disconnect();
  return items.map((item) => JSON.parse(item) as Event);
};

describe('WITH fields', () => {
  it('ts lies between the times just before and after the write; db and ttl are right; value is the value written', async () => {
    await client.call('NOTIFYLIST.SET', 'w:*', 'wl', 'WITH', 'value', 'ts', 'ttl', 'db', 'EVENTS', 'set', 'expire', 'del', 'incrby');
    const [before] = (await direct.time()) as [string, string];
    const t0 = Number(before) * 1000 - 1000;
    await client.set('w:1', 'hello', 'EX', 100);
    await client.incrby('w:n', 5);
    await client.del('w:1');
    const t1 = Date.now() + 1000;
    const events = await parsed('wl');
    expect(events.map((e) => e.op)).toEqual(['set', 'expire', 'incrby', 'del']);
    const deadline = await direct.pexpiretime('w:1');
    expect(deadline).toBe(-2);
    for (const event of events) {
      expect(event.ts as number).toBeGreaterThanOrEqual(t0);
      expect(event.ts as number).toBeLessThanOrEqual(t1);
      expect(event.db).toBe(0);
    }
    expect(events[0]).toMatchObject({ key: 'w:1', op: 'set', value: 'hello' });
    expect(events[0].ttl as number).toBeGreaterThan((events[0].ts as number) + 99_000);
    expect(events[1].ttl).toBe(events[0].ttl);
    expect(events[2]).toMatchObject({ key: 'w:n', op: 'incrby', value: '5' });
    expect(events[2].ttl).toBeUndefined(); // it set none
    expect(Object.keys(events[3])).toEqual(['key', 'op', 'ts', 'db']); // del: no value, no ttl
    // Fields come in one order whatever the order given: ts, db, ttl, value.
    expect(Object.keys(events[0])).toEqual(['key', 'op', 'ts', 'db', 'ttl', 'value']);
  });

  it('db follows SELECT (also queued in MULTI) and RESET; a stream target gets the fields as stream fields', async () => {
    await client.select(5);
    await client.call('NOTIFYLIST.SET', 's:*', 'ws', 'TARGET', 'stream', 'WITH', 'db', 'value');
    await client.set('s:1', 'a');
    await client.multi().select(0).exec();
    await client.select(5);
    await client.set('s:2', Buffer.from([0xff, 0x00, 0x41]));
    const five = new Redis(redis.port, { db: 5 });
    const entries = (await five.xrangeBuffer('ws', '-', '+')) as Array<[Buffer, Buffer[]]>;
    five.disconnect();
    expect(entries.map(([, f]) => f.map((b) => b.toString('latin1')))).toEqual([
      ['key', 's:1', 'op', 'set', 'db', '5', 'value', 'a'],
      ['key', 's:2', 'op', 'set', 'db', '5', 'value', '\xff\x00A'],
    ]);
  });

  it('values are valid JSON whatever their bytes: exactly in value64 when not UTF-8; above --max-value-bytes only their length', async () => {
    await client.call('NOTIFYLIST.SET', 'b:*', 'bl', 'WITH', 'value', 'EVENTS', 'set', 'append');
    await client.set('b:text', 'snow ☃ "quoted"\n');
    const bytes = Buffer.from([0x61, 0xff, 0xc3, 0x28, 0x00]);
    await client.set('b:bin', bytes);
    await client.set('b:big', 'x'.repeat(65));
    await client.append('b:text', '!');
    const events = await parsed('bl');
    expect(events[0]).toEqual({ key: 'b:text', op: 'set', value: 'snow ☃ "quoted"\n' });
    expect(Buffer.from(events[1].value64 as string, 'base64').equals(bytes)).toBe(true);
    expect(events[1].value).toBe('a\ufffd\ufffd(\u0000');
    expect(events[2]).toEqual({ key: 'b:big', op: 'set', value_omitted: 65 });
    expect(events[3]).toEqual({ key: 'b:text', op: 'append', value: 'snow ☃ "quoted"\n!' });
  });

  it('without WITH, events stay byte-identical to the default', async () => {
    await client.call('NOTIFYLIST.SET', 'p:*', 'pl', 'TARGET', 'list');
    await client.set('p:1', 'v', 'EX', 10);
    expect(await direct.lrange('pl', 0, -1)).toEqual(['{"key":"p:1","op":"set"}']);
    expect(await direct.exists(VALUES)).toBe(0);
  });

  it('syntax: unknown fields and an empty WITH are errors; WITHOPTIONS shows the fields', async () => {
    await expect(client.call('NOTIFYLIST.SET', 'x:*', 'xl', 'WITH', 'colour')).rejects.toThrow("ERR notifylist: unknown WITH field 'colour'");
    await expect(client.call('NOTIFYLIST.SET', 'x:*', 'xl', 'WITH')).rejects.toThrow('ERR notifylist: WITH needs at least one');
    await client.call('NOTIFYLIST.SET', 'x:*', 'xl', 'WITH', 'VALUE', 'ts');
    expect(await client.call('NOTIFYLIST.LIST', 'WITHOPTIONS')).toEqual([['x:*', 'xl', 'events', ['set', 'expired'], 'target', 'list', 'with', ['ts', 'value']]]);
    // WITH belongs to the target, like TARGET and MAXLEN.
    await expect(client.call('NOTIFYLIST.SET', 'y:*', 'xl')).rejects.toThrow(/must give it the same TARGET, MAXLEN and WITH/);
  });
});

describe('the value of a key that expired', () => {
  it('carries the value of the last write after overwrites; a key deleted before its deadline gives no expired and leaves no copy', async () => {
    await client.call('NOTIFYLIST.SET', 'e:*', 'el', 'WITH', 'value', 'EVENTS', 'expired');
    await client.set('e:1', 'first', 'PX', 300);
    await client.set('e:1', 'second', 'PX', 300);
    await client.setrange('e:1', 0, 'S');
    await client.set('e:2', 'gone', 'PX', 300);
    expect(await direct.hlen(VALUES)).toBe(2);
    await client.del('e:2');
    expect(await direct.hexists(VALUES, 'e:2')).toBe(0);
    await client.set('e:3', 'x', 'PX', 300);
    await expect(client.lpush('e:3', 'a')).rejects.toThrow(/WRONGTYPE/); // the string stays
    await client.set('e:4', 'y', 'PX', 300);
    await client.del('e:4');
    await client.rpush('e:4', 'now a list');
    await client.pexpire('e:4', 300);
    const events = await waitFor(() => parsed('el'), (e) => e.length >= 3, 5000);
    await sleep(300);
    expect(await parsed('el')).toEqual(
      expect.arrayContaining([
        { key: 'e:1', op: 'expired', value: 'Second' },
        { key: 'e:3', op: 'expired', value: 'x' },
        { key: 'e:4', op: 'expired' }, // a list: no value
      ]),
    );
    expect(await parsed('el')).toHaveLength(3);
    expect(events.some((e) => e.key === 'e:2')).toBe(false);
    expect(await direct.exists(VALUES)).toBe(0); // every copy went with its entry
  });

  it('a value larger than the limit is not copied: its event gives its length; binary values come in value64', async () => {
    await client.call('NOTIFYLIST.SET', 'l:*', 'll', 'WITH', 'value', 'EVENTS', 'expired');
    await client.set('l:big', 'y'.repeat(100), 'PX', 200);
    const bytes = Buffer.from([0x00, 0xfe, 0x7f]);
    await client.set('l:bin', bytes, 'PX', 200);
    expect((await direct.hget(VALUES, 'l:big'))!.length).toBeLessThan(50); // a tag and the length only
    const events = await waitFor(() => parsed('ll'), (e) => e.length === 2, 5000);
    const byKey = new Map(events.map((e) => [e.key, e]));
    expect(byKey.get('l:big')).toEqual({ key: 'l:big', op: 'expired', value_omitted: 100 });
    expect(Buffer.from(byKey.get('l:bin')!.value64 as string, 'base64').equals(bytes)).toBe(true);
  });

  it('SET ... PXAT in the past: the write itself reports expired, with the value written', async () => {
    await client.call('NOTIFYLIST.SET', 'q:*', 'ql', 'WITH', 'value', 'EVENTS', 'set', 'expired');
    await client.set('q:1', 'at once', 'PXAT', 1);
    expect(await parsed('ql')).toEqual([
      { key: 'q:1', op: 'set', value: 'at once' },
      { key: 'q:1', op: 'expired', value: 'at once' },
    ]);
  });

  it('a copy written by hand is never used', async () => {
    await client.call('NOTIFYLIST.SET', 'h:*', 'hl', 'WITH', 'value', 'EVENTS', 'expired');
    await client.set('h:1', 'real', 'PX', 300);
    await direct.hset(VALUES, 'h:1', `${'0'.repeat(40)}vforged`);
    const events = await waitFor(() => parsed('hl'), (e) => e.length === 1, 5000);
    expect(events).toEqual([{ key: 'h:1', op: 'expired' }]);
  });
});

describe('the copy survives faults', () => {
  async function scenario(fault: (server: RedisServer, proxyProcess: ProxyProcess) => Promise<ProxyProcess>, config: Record<string, string>): Promise<void> {
    const server = await startRedis({ config });
    let proxyProcess = await new ProxyProcess(server.url, ['--lease-ms', '500']).start();
    const writer = new Redis(proxyProcess.port);
    const admin = new Redis(server.port);
    try {
      await writer.call('NOTIFYLIST.SET', 'f:*', 'fl', 'WITH', 'value', 'EVENTS', 'expired');
      for (let i = 0; i < 20; i++) await writer.set(`f:${i}`, `value ${i}`, 'PX', 1500 + 20 * i);
      await writer.set('f:0', 'overwritten', 'PX', 1500);
      writer.disconnect();
      proxyProcess = await fault(server, proxyProcess);
      await admin.connect().catch(() => undefined);
      const events = await waitFor(
        async () => (await admin.lrange('fl', 0, -1).catch(() => [] as string[])).map((e) => JSON.parse(e) as Event),
        (e) => e.length >= 20,
        15_000,
      );
      await sleep(500);
      const all = (await admin.lrange('fl', 0, -1)).map((e) => JSON.parse(e) as Event);
      expect(all).toHaveLength(20); // exactly once
      const byKey = new Map(all.map((e) => [e.key, e]));
      expect(byKey.get('f:0')).toEqual({ key: 'f:0', op: 'expired', value: 'overwritten' });
      for (let i = 1; i < 20; i++) expect(byKey.get(`f:${i}`)).toEqual({ key: `f:${i}`, op: 'expired', value: `value ${i}` });
      expect(events.length).toBeGreaterThanOrEqual(20);
      expect(await admin.exists(VALUES)).toBe(0);
    } finally {
      writer.disconnect();
      admin.disconnect();
      await proxyProcess.kill();
      await server.destroy();
    }
  }

  it('proxy SIGKILLed, the keys expire while no proxy runs, a new proxy reports them with their values', async () => {
    await scenario(async (server, proxyProcess) => {
      await proxyProcess.kill();
      await sleep(2200); // every deadline passes with no proxy
      return new ProxyProcess(server.url, ['--lease-ms', '500']).start();
    }, {});
  }, 30_000);

  it('Redis restarted from its AOF (and the proxy SIGKILLed with it)', async () => {
    await scenario(async (server, proxyProcess) => {
      await proxyProcess.kill();
      await server.kill(); // SIGKILL: only the AOF (appendfsync always) has the writes
      await server.restart();
      return new ProxyProcess(server.url, ['--lease-ms', '500']).start();
    }, { appendonly: 'yes', appendfsync: 'always' });
  }, 30_000);

  it('Redis restarted from its RDB', async () => {
    await scenario(async (server, proxyProcess) => {
      await proxyProcess.kill();
      const admin = new Redis(server.port);
      await admin.save();
      admin.disconnect();
      await server.kill();
      await server.restart();
      return new ProxyProcess(server.url, ['--lease-ms', '500']).start();
    }, { appendonly: 'no' });
  }, 30_000);
});
