// `expired` events on a healthy system: exactly one per key whose TTL was set through a proxy,
// with one proxy or several in front of the same Redis. Includes the earlier module's scenario.
// Over plain TCP; expired-events-tls.test.ts and expired-events-unix.test.ts run this same file with
// clients, proxies and Redis talking mutual TLS or over Unix sockets (helpers/transport.ts).
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { startProxyOver } from './helpers/proxy.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { ioredisTarget, removeTestCertificates, transport } from './helpers/transport.js';
import { sleep, waitFor } from './helpers/wait.js';

/** Clients and proxies reach Redis over this; the test's own checks use Redis's plain port. */
const over = transport();
let redis: RedisServer;
let proxies: RunningProxy[] = [];
let direct: Redis;
/** A client of the i-th proxy, over the transport. */
const viaProxy = (i: number): Redis => new Redis(ioredisTarget(over.proxied(proxies[i])));

const entries = async (list: string): Promise<Array<{ key: string; op: string }>> =>
  (await direct.lrange(list, 0, -1)).map((entry) => JSON.parse(entry));

const countBy = (events: Array<{ key: string; op: string }>, op: string): Map<string, number> => {
  const counts = new Map<string, number>();
  for (const event of events) if (event.op === op) counts.set(event.key, (counts.get(event.key) ?? 0) + 1);
  return counts;
};

beforeAll(async () => {
  redis = await startRedis(over.redis());
  direct = new Redis(redis.port);
  proxies = [await startProxyOver(over, redis), await startProxyOver(over, redis)];
});

afterAll(async () => {
  direct?.disconnect();
  for (const proxy of proxies) await proxy.close();
  await redis?.destroy();
  removeTestCertificates();
});

beforeEach(async () => {
  await direct.flushall();
  for (const proxy of proxies) await proxy.controlPlane.reload();
});

describe('expired events', () => {
  it('the README session: SETEX aa_1 2 -> set, then expired', async () => {
    const client = viaProxy(0);
    expect(await client.call('NOTIFYLIST.SET', 'aa_*', 'aa_list')).toBe('OK');
    expect(await client.setex('aa_1', 1, '1')).toBe('OK');
    expect(await direct.lrange('aa_list', 0, -1)).toEqual(['{"key":"aa_1","op":"set"}']);
    const list = await waitFor(() => direct.lrange('aa_list', 0, -1), (l) => l.length >= 2, 5000);
    expect(list).toEqual(['{"key":"aa_1","op":"set"}', '{"key":"aa_1","op":"expired"}']);
    await sleep(300); // no duplicate from the second proxy or the reaper
    expect(await direct.llen('aa_list')).toBe(2);
    expect(await direct.zcard('notifylist:expiry')).toBe(0);
    client.disconnect();
  });

  it("the earlier module's scenario: repeated SET EX / SETEX, many short-lived keys on fresh connections", async () => {
    const admin = viaProxy(0);
    await admin.call('NOTIFYLIST.SET', 'aa_*', 'aa_list');
    await admin.call('NOTIFYLIST.SET', 'q*', 'aa_list');
    const writes = new Map<string, number>();
    const wrote = (key: string): void => void writes.set(key, (writes.get(key) ?? 0) + 1);

    // Keys that stay alive: re-set every 200 ms with a 1 s TTL, so each expires exactly once, at the end.
    const refresher = (async () => {
      const client = viaProxy(1);
      for (let round = 0; round < 8; round++) {
        await client.set('aa_1', '1', 'EX', 1);
        wrote('aa_1');
        await client.setex('aa_2', 1, '1');
        wrote('aa_2');
        await sleep(200);
      }
      client.disconnect();
    })();

    // Many short-lived keys, each written on its own fresh connection, through both proxies.
    const specials = ['q"quote', 'q\\slash', 'q\nline', 'qé日本', 'q{42}'];
    const keys = [...Array.from({ length: 300 }, (_, i) => `aa_short_${i}`), ...specials];
    for (let start = 0; start < keys.length; start += 25) {
      await Promise.all(
        keys.slice(start, start + 25).map(async (key, i) => {
          const client = viaProxy((start + i) % 2);
          if (i % 2 === 0) await client.set(key, '1', 'PX', 300 + ((start + i) % 700));
          else await client.setex(key, 1, '1');
          wrote(key);
          client.disconnect();
        }),
      );
    }
    await refresher;

    const allKeys = [...writes.keys()];
    const events = await waitFor(
      () => entries('aa_list'),
      (list) => list.filter((e) => e.op === 'expired').length >= allKeys.length,
      8000,
    );
    await sleep(500); // anything doubled would show up now
    const final = await entries('aa_list');
    expect(final.length).toBeGreaterThanOrEqual(events.length);
    const sets = countBy(final, 'set');
    const expirations = countBy(final, 'expired');
    for (const key of allKeys) {
      expect(sets.get(key), `set events for ${JSON.stringify(key)}`).toBe(writes.get(key));
      expect(expirations.get(key), `expired events for ${JSON.stringify(key)}`).toBe(1);
    }
    expect(final.length).toBe([...writes.values()].reduce((a, b) => a + b, 0) + allKeys.length);
    // Per key, every set comes before its expiry.
    for (const key of allKeys) {
      const ops = final.filter((e) => e.key === key).map((e) => e.op);
      expect(ops[ops.length - 1]).toBe('expired');
    }
    admin.disconnect();
  });

  it('a key deleted before its deadline is never reported; a key re-set without TTL is not either', async () => {
    const client = viaProxy(0);
    await client.call('NOTIFYLIST.SET', 'd*', 'dlist');
    await client.set('d1', '1', 'PX', 300);
    await client.set('d2', '1', 'PX', 300);
    await client.set('d2', '2'); // SET without KEEPTTL removes the TTL
    await client.del('d1');
    await sleep(900);
    expect(await entries('dlist')).toEqual([
      { key: 'd1', op: 'set' },
      { key: 'd2', op: 'set' },
      { key: 'd2', op: 'set' },
    ]);
    expect(await direct.zcard('notifylist:expiry')).toBe(0);
    client.disconnect();
  });

  it('SET with a deadline already past: set, then expired, at once', async () => {
    const client = viaProxy(0);
    await client.call('NOTIFYLIST.SET', 'p*', 'plist');
    await client.set('p1', '1', 'PXAT', 1000);
    expect(await entries('plist')).toEqual([
      { key: 'p1', op: 'set' },
      { key: 'p1', op: 'expired' },
    ]);
    client.disconnect();
  });
});
