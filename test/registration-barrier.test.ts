// Registration is a barrier (DESIGN.md guarantee 3): once NOTIFYLIST.SET has replied OK to anyone,
// every later write to a matching key, through any connection of any proxy in front of that Redis,
// emits its event; also while a proxy's change subscription is down, and for large pipelines of
// registrations. Changes apply incrementally (no full registry reload per change).
import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { startTestProxy } from './helpers/proxy.js';
import { command, RawClient } from './helpers/raw-client.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { waitFor } from './helpers/wait.js';

let redis: RedisServer;
let proxyA: RunningProxy;
let proxyB: RunningProxy;
let direct: Redis;

beforeAll(async () => {
  redis = await startRedis();
  proxyA = await startTestProxy(redis);
  proxyB = await startTestProxy(redis);
  direct = new Redis(redis.port);
});

afterAll(async () => {
  direct?.disconnect();
  await proxyA?.close();
  await proxyB?.close();
  await redis?.destroy();
});

/** The `set` events' keys in a list. */
const eventKeys = async (list: string): Promise<string[]> =>
  (await direct.lrange(list, 0, -1)).map((entry) => JSON.parse(entry).key as string).sort();

describe('registration is a barrier', () => {
  it('a write right after OK through connections opened earlier, on this proxy and another, emits its event (30 rounds)', async () => {
    // Connections opened before any registration exists.
    const onA = new Redis(proxyA.port);
    const onB = new Redis(proxyB.port);
    const adminA = new Redis(proxyA.port);
    const adminB = new Redis(proxyB.port);
    await Promise.all([onA.ping(), onB.ping(), adminA.ping(), adminB.ping()]);
    const missing: string[] = [];
    try {
      for (let round = 0; round < 30; round++) {
        const admin = round % 2 === 0 ? adminA : adminB;
        expect(await admin.call('NOTIFYLIST.SET', `r${round}_*`, `rl${round}`)).toBe('OK');
        await Promise.all([onA.set(`r${round}_a`, 'v'), onB.set(`r${round}_b`, 'v')]);
        const keys = await eventKeys(`rl${round}`);
        for (const key of [`r${round}_a`, `r${round}_b`]) if (!keys.includes(key)) missing.push(key);
      }
    } finally {
      for (const client of [onA, onB, adminA, adminB]) client.disconnect();
    }
    expect(missing).toEqual([]);
  });

  it('a registration pipelined with writes applies to every later write, also after thousands of registrations', async () => {
    // More registrations in one pipeline than any per-connection buffer of pending ones held.
    const raw = await RawClient.connect(proxyA.port);
    const other = new Redis(proxyB.port);
    try {
      const count = 3000;
      const requests: Buffer[] = [];
      for (let i = 0; i < count; i++) requests.push(command('NOTIFYLIST.SET', `bulk:${i}:*`, 'bulk_events'));
      for (let i = 0; i < count; i += 100) requests.push(command('SET', `bulk:${i}:x`, 'v'));
      const hgetallCalls = async (): Promise<number> => Number((await direct.info('commandstats')).match(/cmdstat_hgetall:calls=(\d+)/)?.[1] ?? 0);
      const fullLoadsBefore = await hgetallCalls();
      const started = Date.now();
      raw.send(Buffer.concat(requests));
      const replies = (await raw.replies(count + count / 100)).toString();
      const elapsed = Date.now() - started;
      expect(replies).toBe('+OK\r\n'.repeat(count + count / 100));
      // Another proxy's connection opened earlier: sees every one of them at once.
      await other.set('bulk:0:y', 'v');
      await other.set(`bulk:${count - 1}:y`, 'v');
      const keys = await eventKeys('bulk_events');
      expect(keys.length).toBe(count / 100 + 2);
      expect(keys).toContain('bulk:0:x');
      expect(keys).toContain(`bulk:${count - 1}:y`);
      // Incremental: each change is looked up, not a full reload of every database per change.
      // (Each full load reads the 16 databases' registries with HGETALL.)
      expect((await hgetallCalls()) - fullLoadsBefore).toBeLessThan(16);
      expect(elapsed).toBeLessThan(20_000); // was 10 s for 10,000 on main, dominated by rebuilding
    } finally {
      raw.close();
      other.disconnect();
    }
  });

  it("a proxy whose change subscription is cut does not forward a write to a newly registered key unchanged", async () => {
    const onB = new Redis(proxyB.port);
    const adminA = new Redis(proxyA.port);
    const missing: string[] = [];
    try {
      await Promise.all([onB.ping(), adminA.ping()]);
      for (let round = 0; round < 10; round++) {
        // Cut B's subscriber connection for real (Redis closes it), then register through A.
        const subscriberPort = (proxyB.controlPlane.subscriber as unknown as { stream: { localPort: number } }).stream.localPort;
        expect(await direct.client('KILL', 'ADDR', `127.0.0.1:${subscriberPort}`, 'SKIPME', 'yes')).toBe(1);
        expect(await adminA.call('NOTIFYLIST.SET', `cut${round}_*`, `cut${round}`)).toBe('OK');
        await onB.set(`cut${round}_b`, 'v');
        if (!(await eventKeys(`cut${round}`)).includes(`cut${round}_b`)) missing.push(`cut${round}_b`);
        await waitFor(async () => proxyB.controlPlane.registryIsCurrent(), (current) => current, 5000);
      }
    } finally {
      onB.disconnect();
      adminA.disconnect();
    }
    expect(missing).toEqual([]);
    const info = (await new Redis(proxyB.port).call('NOTIFYLIST.INFO')) as string;
    expect(info).toContain('registry_current:yes');
  });

  it('the first registration on a Redis without the library: writes of other connections meanwhile never fail', async () => {
    const fresh = await startRedis();
    const proxy = await startTestProxy(fresh);
    const writer = new Redis(proxy.port);
    const admin = new Redis(proxy.port);
    try {
      await Promise.all([writer.ping(), admin.ping()]);
      const errors: string[] = [];
      let registered = false;
      let afterOk = 0;
      const writer2 = new Redis(proxy.port);
      const writer3 = new Redis(proxy.port);
      await Promise.all([writer2.ping(), writer3.ping()]);
      const more = [writer2, writer3].map(async (w) => {
        for (let i = 0; i < 300 && !(registered && afterOk >= 20); i++) {
          const batch = w.pipeline();
          for (let j = 0; j < 20; j++) batch.set(`race:w${i}:${j}`, 'v');
          for (const [error] of (await batch.exec()) ?? []) if (error) errors.push(error.message);
        }
        w.disconnect();
      });
      const writes = (async () => {
        // Batches of pipelined writes, so that some are on their way at every moment.
        for (let i = 0; i < 200 && !(registered && afterOk >= 20); i++) {
          const wasRegistered = registered;
          const batch = writer.pipeline();
          for (let j = 0; j < 20; j++) batch.set(`race:${i}:${j}`, 'v');
          for (const [error] of (await batch.exec()) ?? []) if (error) errors.push(error.message);
          if (wasRegistered) afterOk++;
        }
      })();
      await new Promise((r) => setTimeout(r, 2));
      expect(await admin.call('NOTIFYLIST.SET', 'race:*', 'race_events')).toBe('OK');
      registered = true;
      await writes;
      await Promise.all(more);
      expect(errors).toEqual([]);
      expect(afterOk).toBeGreaterThan(0);
    } finally {
      writer.disconnect();
      admin.disconnect();
      await proxy.close();
      await fresh.destroy();
    }
  });

  it('NOTIFYLIST.DEL is a barrier too: no event after it replied', async () => {
    const onB = new Redis(proxyB.port);
    const adminA = new Redis(proxyA.port);
    try {
      expect(await adminA.call('NOTIFYLIST.SET', 'gone_*', 'gone_events')).toBe('OK');
      await onB.set('gone_1', 'v');
      expect(await adminA.call('NOTIFYLIST.DEL', 'gone_*')).toBe(1);
      await onB.set('gone_2', 'v');
      expect(await eventKeys('gone_events')).toEqual(['gone_1']);
    } finally {
      onB.disconnect();
      adminA.disconnect();
    }
  });
});
