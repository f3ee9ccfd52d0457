// Lossless expirations under faults (guarantee 3): processes really killed, subscriptions really
// cut, Redis really restarted from AOF and RDB. Every indexed key yields exactly one `expired`.
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { ProxyProcess } from './helpers/proxy.js';
import { RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const LEASE = ['--lease-ms', '600'];
const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});

async function redisServer(config: Record<string, string> = {}): Promise<RedisServer> {
  const server = await new RedisServer({ config }).start();
  cleanups.push(() => server.destroy());
  return server;
}

async function proxyProcess(redis: RedisServer): Promise<ProxyProcess> {
  const proxy = await new ProxyProcess(redis.url, LEASE).start();
  cleanups.push(() => proxy.kill());
  return proxy;
}

function client(port: number): Redis {
  const connection = new Redis(port, { maxRetriesPerRequest: null });
  connection.on('error', () => undefined); // restarts are part of these tests
  cleanups.push(async () => connection.disconnect());
  return connection;
}

/** Writes `count` keys `prefix<i>` with TTLs spread over [minMs, maxMs) through the given proxies. */
async function writeKeys(ports: number[], prefix: string, count: number, minMs: number, maxMs: number): Promise<string[]> {
  const clients = ports.map((port) => new Redis(port));
  const keys: string[] = [];
  const pipelines = clients.map((c) => c.pipeline());
  for (let i = 0; i < count; i++) {
    const key = `${prefix}${i}`;
    keys.push(key);
    const ttl = minMs + Math.floor(((maxMs - minMs) * i) / count);
    if (i % 2 === 0) pipelines[i % clients.length].set(key, String(i), 'PX', ttl);
    else pipelines[i % clients.length].psetex(key, ttl, String(i));
  }
  for (const pipeline of pipelines) {
    const results = (await pipeline.exec()) ?? [];
    for (const [error] of results) if (error) throw error;
  }
  for (const c of clients) c.disconnect();
  return keys;
}

/** Waits until every key has its `expired` event, then checks: exactly one each, nothing else. */
async function expectExactlyOnce(redis: Redis, list: string, keys: string[], timeoutMs = 10_000): Promise<void> {
  const read = async (): Promise<Map<string, number>> => {
    const counts = new Map<string, number>();
    for (const entry of await redis.lrange(list, 0, -1)) {
      const event = JSON.parse(entry) as { key: string; op: string };
      if (event.op === 'expired') counts.set(event.key, (counts.get(event.key) ?? 0) + 1);
    }
    return counts;
  };
  await waitFor(read, (counts) => keys.every((key) => counts.has(key)), timeoutMs, 50);
  await sleep(700); // a duplicate would show up now
  const counts = await read();
  const missing = keys.filter((key) => !counts.has(key));
  const doubled = [...counts].filter(([, n]) => n !== 1).map(([key]) => key);
  const strangers = [...counts.keys()].filter((key) => !keys.includes(key));
  expect({ missing, doubled, strangers }).toEqual({ missing: [], doubled: [], strangers: [] });
}

describe('lossless expirations under faults', () => {
  it('SIGKILL the proxy while keys expire; while no proxy runs they all expire; restart reports each once', async () => {
    const redis = await redisServer();
    const direct = client(redis.port);
    const proxy = await proxyProcess(redis);
    await client(proxy.port).call('NOTIFYLIST.SET', 'f:*', 'flist');
    const keys = await writeKeys([proxy.port], 'f:', 200, 200, 1500);
    await sleep(500);
    expect(await proxy.kill()).toBe(null); // killed by the signal, no goodbye
    await sleep(1500); // every deadline passes with no proxy: Redis publishes to nobody
    expect(await direct.exists(...keys)).toBe(0);
    await proxy.start();
    await expectExactlyOnce(direct, 'flist', keys);
    expect(await direct.zcard('notifylist:expiry')).toBe(0);
  });

  it('two proxies: kill the reaper leader, the other takes over; no gap, no duplicate', async () => {
    const redis = await redisServer();
    const direct = client(redis.port);
    // Redis's active expiry off: only the reaper can find expirations, so the takeover is what is tested.
    await direct.call('DEBUG', 'SET-ACTIVE-EXPIRE', '0');
    const proxies = [await proxyProcess(redis), await proxyProcess(redis)];
    await client(proxies[0].port).call('NOTIFYLIST.SET', 't:*', 'tlist');
    const infos = async (): Promise<string[]> =>
      Promise.all(proxies.map((p) => client(p.port).call('NOTIFYLIST.INFO') as Promise<string>));
    const withLeader = await waitFor(infos, (all) => all.some((info) => info.includes('reaper_leader:1')), 5000);
    const leader = withLeader.findIndex((info) => info.includes('reaper_leader:1'));
    expect(leader).toBeGreaterThanOrEqual(0);
    const keys = await writeKeys(proxies.map((p) => p.port), 't:', 300, 100, 3000);
    await sleep(800);
    await proxies[leader].kill();
    await expectExactlyOnce(direct, 'tlist', keys, 15_000);
    const survivor = (await client(proxies[1 - leader].port).call('NOTIFYLIST.INFO')) as string;
    expect(survivor).toContain('reaper_leader:1');
  });

  it('a crashed leader costs the follower grace, not the lease time: expirations keep coming', async () => {
    const redis = await redisServer();
    const direct = client(redis.port);
    await direct.call('DEBUG', 'SET-ACTIVE-EXPIRE', '0'); // only reapers find expirations
    const longLease = ['--lease-ms', '20000'];
    const first = await new ProxyProcess(redis.url, longLease).start();
    cleanups.push(() => first.kill());
    await client(first.port).call('NOTIFYLIST.SET', 'g:*', 'glist');
    await waitFor(async () => direct.get('notifylist:reaper'), (holder) => holder !== null, 3000);
    const second = await new ProxyProcess(redis.url, longLease).start();
    cleanups.push(() => second.kill());
    await first.kill(); // holds the lease for 20 s more
    const keys = await writeKeys([second.port], 'g:', 50, 300, 800);
    const started = Date.now();
    await expectExactlyOnce(direct, 'glist', keys, 5000);
    expect(Date.now() - started).toBeLessThan(5000); // far less than the 20 s lease
    expect(await direct.get('notifylist:reaper')).not.toBeNull(); // still the dead leader's
  });

  it('CLIENT KILL TYPE pubsub every 250 ms for the whole run: nothing lost, nothing doubled', async () => {
    const redis = await redisServer();
    const direct = client(redis.port);
    const proxies = [await proxyProcess(redis), await proxyProcess(redis)];
    await client(proxies[0].port).call('NOTIFYLIST.SET', 'c:*', 'clist');
    let killing = true;
    let kills = 0;
    const killer = (async () => {
      while (killing) {
        kills += Number(await direct.client('KILL', 'TYPE', 'pubsub'));
        await sleep(250);
      }
    })();
    const keys = await writeKeys(proxies.map((p) => p.port), 'c:', 400, 100, 3000);
    await sleep(3200);
    await expectExactlyOnce(direct, 'clist', keys);
    killing = false;
    await killer;
    expect(kills).toBeGreaterThan(10);
  });

  it('a subscriber dropped for exceeding client-output-buffer-limit pubsub loses nothing', async () => {
    const redis = await redisServer({ 'client-output-buffer-limit': 'pubsub 4kb 2kb 1' });
    const direct = client(redis.port);
    const proxy = await proxyProcess(redis);
    await client(proxy.port).call('NOTIFYLIST.SET', 'o:*', 'olist');
    const subscribers = async (): Promise<string> => (await direct.client('LIST', 'TYPE', 'pubsub')) as string;
    const before = await subscribers();
    const keys = await writeKeys([proxy.port], 'o:', 200, 100, 1500);
    // A message larger than the hard limit on the channel the proxy listens to: Redis drops it.
    await direct.publish('__keyevent@0__:expired', 'x'.repeat(64 * 1024));
    await waitFor(subscribers, (list) => list !== before, 2000, 20);
    expect(await subscribers()).not.toBe(before);
    await expectExactlyOnce(direct, 'olist', keys);
  });

  it('Redis restarted from AOF after the deadlines passed while it was down: each key once', async () => {
    const redis = await redisServer({ appendonly: 'yes', appendfsync: 'always' });
    const proxy = await proxyProcess(redis);
    await client(proxy.port).call('NOTIFYLIST.SET', 'a:*', 'alist');
    const keys = await writeKeys([proxy.port], 'a:', 150, 300, 1200);
    await redis.stop(); // the proxy stays up and keeps reconnecting
    await sleep(1600);
    await redis.start(); // AOF keeps the expired keys; the active cycle drops them at once, unheard
    const direct = client(redis.port);
    await expectExactlyOnce(direct, 'alist', keys);
  });

  it('Redis restarted from RDB (expired keys dropped silently at load), no proxy during the restart', async () => {
    const redis = await redisServer({ appendonly: 'no' });
    const proxy = await proxyProcess(redis);
    await client(proxy.port).call('NOTIFYLIST.SET', 'r:*', 'rlist');
    const keys = await writeKeys([proxy.port], 'r:', 150, 800, 1600);
    await proxy.kill();
    const saver = new Redis(redis.port);
    saver.on('error', () => undefined);
    await saver.call('SAVE');
    saver.disconnect();
    await redis.kill();
    await sleep(1800);
    await redis.start();
    const direct = client(redis.port);
    expect(await direct.exists(...keys)).toBe(0); // gone without any event
    await proxy.start();
    await expectExactlyOnce(direct, 'rlist', keys);
    // Registrations survived the restart too.
    expect(await client(proxy.port).call('NOTIFYLIST.LIST')).toEqual(['r:*', 'rlist']);
  });

  it('backfill: keys that already match and have a TTL when the pattern is registered are reported', async () => {
    const redis = await redisServer();
    const direct = client(redis.port);
    const proxy = await proxyProcess(redis);
    const keys: string[] = [];
    const pipeline = direct.pipeline();
    for (let i = 0; i < 3000; i++) {
      keys.push(`b:${i}`);
      pipeline.set(`b:${i}`, '1', 'PX', 1500 + (i % 500));
      pipeline.set(`nob:${i}`, '1', 'PX', 1500);
    }
    pipeline.set('b:no-ttl', '1');
    await pipeline.exec();
    await client(proxy.port).call('NOTIFYLIST.SET', 'b:*', 'blist');
    await waitFor(() => direct.zcard('notifylist:expiry'), (n) => n === keys.length, 3000, 20);
    expect(await direct.zcard('notifylist:expiry')).toBe(keys.length);
    await expectExactlyOnce(direct, 'blist', keys);
  });
});
