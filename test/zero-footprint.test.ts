// Zero footprint while idle (DESIGN.md guarantee 8): with nothing registered and no index entries,
// a proxy sends Redis nothing after start-up but its clients' commands (a plain SUBSCRIBE to the
// change channel is its only state). The first registration through any proxy makes every proxy
// active; while active, only the keyevent channels of databases that need them are subscribed.
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { startTestProxy } from './helpers/proxy.js';
import { command, RawClient } from './helpers/raw-client.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

let redis: RedisServer;
let direct: Redis;
const proxies: RunningProxy[] = [];

beforeAll(async () => {
  redis = await startRedis();
  direct = new Redis(redis.port);
});

afterAll(async () => {
  direct?.disconnect();
  for (const proxy of proxies) await proxy.close();
  await redis?.destroy();
});

/** Collects every command Redis runs (MONITOR on a raw direct connection). */
async function monitor(): Promise<{ lines: () => string[]; stop: () => void }> {
  const watcher = await RawClient.connect(redis.port);
  watcher.send(command('MONITOR'));
  expect((await watcher.replies(1)).toString()).toBe('+OK\r\n');
  return {
    // `+<time> [<db> <addr>] "arg" "arg" ...` per command; the arguments without their quotes.
    lines: () =>
      watcher
        .pending()
        .split('\r\n')
        .filter((line) => line.startsWith('+'))
        .map((line) => [...line.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]).join(' ')),
    stop: () => watcher.close(),
  };
}

const connectionsReceived = async (): Promise<number> =>
  Number(/total_connections_received:(\d+)/.exec(await direct.info('stats'))![1]);

describe('zero footprint while nothing is registered', () => {
  it('after start-up: no library, keys, patterns, periodic commands or new connections; only clients\' commands', async () => {
    const proxy = await startTestProxy(redis);
    proxies.push(proxy);
    const before = await connectionsReceived();
    const watch = await monitor();
    const client = new Redis(proxy.port, { enableReadyCheck: false });
    try {
      await client.set('plain', 'v');
      await client.get('plain');
      await client.expire('plain', 100);
      await client.del('plain');
      // Longer than every maintenance interval and lease period the proxy has.
      await sleep(6000);
      await client.ping();
    } finally {
      client.disconnect();
    }
    const seen = watch.lines();
    watch.stop();
    expect(seen).toEqual(['set plain v', 'get plain', 'expire plain 100', 'del plain', 'ping']);
    expect(await direct.pubsub('NUMPAT')).toBe(0);
    expect(await direct.pubsub('CHANNELS')).toEqual(['notifylist:changes']);
    expect(await direct.call('FUNCTION', 'LIST')).toEqual([]);
    expect(await direct.keys('*')).toEqual([]);
    // The client's connection and the MONITOR connection of this test: nothing else.
    expect((await connectionsReceived()) - before).toBe(2);
    expect(proxy.controlPlane.isActive).toBe(false);
  }, 20_000);

  it('while idle, FUNCTION FLUSH through the proxy is not answered by a reload; the next registration loads the library again', async () => {
    const proxy = await startTestProxy(redis);
    proxies.push(proxy);
    const client = new Redis(proxy.port);
    try {
      expect(await client.call('NOTIFYLIST.LIST')).toEqual([]); // loads the library
      expect(await client.call('FUNCTION', 'FLUSH')).toBe('OK');
      await sleep(300);
      expect(await direct.call('FUNCTION', 'LIST')).toEqual([]);
      expect(await client.call('NOTIFYLIST.SET', 'ff:*', 'ff_events')).toBe('OK');
      await client.set('ff:1', 'v');
      expect(await direct.lrange('ff_events', 0, -1)).toEqual(['{"key":"ff:1","op":"set"}']);
      expect(await client.call('NOTIFYLIST.DEL', 'ff:*')).toBe(1);
      await waitFor(async () => proxy.controlPlane.isActive, (active) => !active, 3000);
      // Idle again; the library is flushed directly on Redis this time.
      await direct.call('FUNCTION', 'FLUSH');
      expect(await client.call('NOTIFYLIST.SET', 'ff:*', 'ff_events')).toBe('OK');
      await client.set('ff:2', 'v');
      expect(await direct.lrange('ff_events', 0, -1)).toEqual(['{"key":"ff:1","op":"set"}', '{"key":"ff:2","op":"set"}']);
      expect(await client.call('NOTIFYLIST.DEL', 'ff:*')).toBe(1);
      await client.del('ff_events');
    } finally {
      client.disconnect();
    }
  });

  it('the first registration through one proxy makes every proxy active; keyevent channels only for its database; idle again after DEL', async () => {
    const [a, b] = [await startTestProxy(redis), await startTestProxy(redis)];
    proxies.push(a, b);
    const onA = new Redis(a.port, { db: 3 });
    const onB = new Redis(b.port, { db: 3 });
    try {
      await onB.ping();
      expect(b.controlPlane.isActive).toBe(false);
      expect(await onA.call('NOTIFYLIST.SET', 'z:*', 'zevents')).toBe('OK');
      expect(await direct.call('FUNCTION', 'LIST', 'LIBRARYNAME', 'notifylist')).toHaveLength(1);
      await onB.set('z:1', 'v', 'PX', 100);
      await waitFor(async () => b.controlPlane.isActive, (active) => active, 3000);
      const events = await waitFor(async () => onB.lrange('zevents', 0, -1), (e) => e.length === 2, 3000);
      expect(events.map((e) => JSON.parse(e).op)).toEqual(['set', 'expired']);
      expect(await direct.pubsub('NUMPAT')).toBe(0);
      const channels = await waitFor(async () => (await direct.pubsub('CHANNELS', '__keyevent*')) as string[], (c) => c.length >= 2, 3000);
      expect(channels.sort()).toEqual(['__keyevent@3__:evicted', '__keyevent@3__:expired']);
      // Removing the last registration (the index is empty again) returns every proxy to idle.
      expect(await onA.call('NOTIFYLIST.DEL', 'z:*')).toBe(1);
      for (const proxy of [a, b]) await waitFor(async () => proxy.controlPlane.isActive, (active) => !active, 3000);
      expect(a.controlPlane.isActive).toBe(false);
      expect(b.controlPlane.isActive).toBe(false);
      expect(await waitFor(async () => (await direct.pubsub('CHANNELS', '__keyevent*')) as string[], (c) => c.length === 0, 3000)).toEqual([]);
      expect(await direct.exists('notifylist:reaper')).toBe(0);
    } finally {
      onA.disconnect();
      onB.disconnect();
    }
  });
});
