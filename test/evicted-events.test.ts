// `evicted` (maxmemory) happens inside Redis: reported from the keyevent subscription, best effort,
// and never as a false `expired`: an evicted key's index entry goes without an event of its own.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { startTestProxy } from './helpers/proxy.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

let redis: RedisServer;
let proxy: RunningProxy;
let direct: Redis;
let client: Redis;

beforeAll(async () => {
  // volatile-lru: only keys with a TTL are evicted (the event list has none).
  redis = await startRedis({ config: { 'maxmemory-policy': 'volatile-lru' } });
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

/** NOTIFYLIST.INFO's `events:a=1,b=2` line. */
const pairs = (info: string): Record<string, number> =>
  Object.fromEntries((/^events:(.*)$/m.exec(info)?.[1] ?? '').trim().split(',').filter(Boolean).map((item) => [item.split('=')[0], Number(item.split('=')[1])]));

const usedMemory = async (): Promise<number> => Number(/used_memory:(\d+)/.exec(await direct.info('memory'))![1]);

describe('evicted', () => {
  it('keys evicted under maxmemory: one evicted event each, no expired, their index entries gone', async () => {
    expect(await client.call('NOTIFYLIST.SET', 'v:*', 'evl', 'EVENTS', 'evicted', 'expired')).toBe('OK');
    const value = 'x'.repeat(1000);
    const pipeline = client.pipeline();
    for (let i = 0; i < 2000; i++) pipeline.set(`v:${i}`, value, 'EX', 1000);
    await pipeline.exec();
    expect(await direct.zcard('notifylist:expiry')).toBe(2000);
    // Half a megabyte under what is used now: the next writes make Redis evict.
    await direct.config('SET', 'maxmemory', String((await usedMemory()) - 500_000));
    for (let i = 0; i < 20; i++) await direct.set(`other:${i}`, 'v').catch(() => undefined);
    await direct.config('SET', 'maxmemory', '0');
    const remaining = new Set<string>();
    for (let i = 0; i < 2000; i++) if (await direct.exists(`v:${i}`)) remaining.add(`v:${i}`);
    const gone = 2000 - remaining.size;
    expect(gone).toBeGreaterThan(100);
    const events = await waitFor(
      async () => (await direct.lrange('evl', 0, -1)).map((e) => JSON.parse(e) as { key: string; op: string }),
      (list) => list.length >= gone,
      10_000,
    );
    await sleep(200);
    expect(events.every((e) => e.op === 'evicted')).toBe(true);
    expect(new Set(events.map((e) => e.key)).size).toBe(events.length);
    expect(events.length).toBe(gone);
    for (const { key } of events) expect(remaining.has(key)).toBe(false);
    expect(await direct.zcard('notifylist:expiry')).toBe(remaining.size);
    expect(pairs((await client.call('NOTIFYLIST.INFO')) as string).evicted).toBe(gone);
  });

  it('a forged evicted message (PUBLISH) for a key that exists changes nothing', async () => {
    await direct.del('evl');
    await client.set('v:live', 'v', 'EX', 1000);
    await direct.publish('__keyevent@0__:evicted', 'v:live');
    await sleep(200);
    expect(await direct.lrange('evl', 0, -1)).toEqual([]);
    expect(await direct.zscore('notifylist:expiry', 'v:live')).not.toBeNull();
  });
});
