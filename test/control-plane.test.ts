// The control plane: notification flags merged (never removed), library and flags restored after
// Redis restarts or FUNCTION FLUSH, registrations durable across restarts, NOTIFYLIST.INFO.
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { startTestProxy } from './helpers/proxy.js';
import { RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});

async function setup(config: Record<string, string> = {}): Promise<{ redis: RedisServer; proxy: RunningProxy; direct: Redis }> {
  const redis = await new RedisServer({ config }).start();
  cleanups.push(() => redis.destroy());
  const direct = new Redis(redis.port, { maxRetriesPerRequest: null });
  direct.on('error', () => undefined);
  cleanups.push(async () => direct.disconnect());
  const proxy = await startTestProxy(redis);
  cleanups.push(() => proxy.close());
  return { redis, proxy, direct };
}

const flags = async (direct: Redis): Promise<string> => ((await direct.config('GET', 'notify-keyspace-events')) as string[])[1];

describe('control plane', () => {
  it('adds Ex to notify-keyspace-events without removing flags set by others, once something is registered', async () => {
    const { proxy, direct } = await setup({ 'notify-keyspace-events': 'Kh' });
    expect(await flags(direct)).toBe('hK'); // idle: nothing changed
    const client = new Redis(proxy.port);
    cleanups.push(async () => client.disconnect());
    await client.call('NOTIFYLIST.SET', 'f*', 'flist');
    const merged = await waitFor(() => flags(direct), (f) => f.includes('E'), 3000);
    for (const flag of ['K', 'h', 'E', 'x']) expect(merged).toContain(flag);
  });

  it('after a Redis restart: notification flags restored, registrations kept (AOF), events flow again', async () => {
    const { redis, proxy, direct } = await setup({ appendonly: 'yes' });
    const client = new Redis(proxy.port);
    client.on('error', () => undefined);
    cleanups.push(async () => client.disconnect());
    await client.call('NOTIFYLIST.SET', 'r*', 'rlist');
    await direct.config('SET', 'notify-keyspace-events', '');
    await redis.restart(); // AOF keeps data and functions; the config flags are back to the file's
    await direct.ping();
    const restored = await waitFor(() => flags(direct), (f) => f.includes('E') && f.includes('x'), 5000);
    expect(restored).toContain('E');
    // The registration survived (AOF), and writes through a fresh connection emit events again.
    const fresh = new Redis(proxy.port);
    cleanups.push(async () => fresh.disconnect());
    expect(await fresh.call('NOTIFYLIST.LIST')).toEqual(['r*', 'rlist']);
    await fresh.set('r1', 'v', 'PX', 200);
    const events = await waitFor(() => direct.lrange('rlist', 0, -1), (l) => l.length === 2, 5000);
    expect(events.map((e) => JSON.parse(e).op)).toEqual(['set', 'expired']);
  });

  it('reloads the function library after FUNCTION FLUSH while something is registered', async () => {
    const { proxy, direct } = await setup();
    const client = new Redis(proxy.port);
    cleanups.push(async () => client.disconnect());
    expect(await client.call('NOTIFYLIST.SET', 'y*', 'ylist')).toBe('OK');
    await direct.call('FUNCTION', 'FLUSH');
    const libraries = await waitFor(
      () => direct.call('FUNCTION', 'LIST', 'LIBRARYNAME', 'notifylist') as Promise<unknown[]>,
      (l) => l.length === 1,
      8000,
      100,
    );
    expect(libraries.length).toBe(1);
    expect(await client.call('NOTIFYLIST.SET', 'x*', 'xlist')).toBe('OK');
  });

  it('NOTIFYLIST.INFO reports registrations, index, overdue, events and the reaper per database', async () => {
    const { proxy, direct } = await setup();
    const client = new Redis(proxy.port);
    cleanups.push(async () => client.disconnect());
    await client.call('NOTIFYLIST.SET', 'i*', 'ilist');
    await client.set('i1', 'v', 'EX', 100);
    await client.set('i2', 'v');
    const db2 = new Redis(proxy.port, { db: 2 });
    cleanups.push(async () => db2.disconnect());
    await db2.call('NOTIFYLIST.SET', 'j*', 'jlist');
    await waitFor(async () => proxy.controlPlane.reaper.isLeader, (v) => v, 3000);
    const info = (await client.call('NOTIFYLIST.INFO')) as string;
    expect(info).toContain('# notifylist');
    expect(info).toContain('reaper_leader:1');
    expect(info).toContain('keyevent_subscription:up');
    expect(info).toContain(`reaper_lease_holder:${proxy.controlPlane.reaper.id}`);
    expect(info).toContain('db0:registrations=1,indexed=1,overdue=0,events=2');
    expect(info).toContain('db2:registrations=1,indexed=0,overdue=0,events=0');
    await expect(client.call('NOTIFYLIST.INFO', 'extra')).rejects.toThrow("wrong number of arguments for 'notifylist.info'");
    expect(await direct.get('i2')).toBe('v');
  });

  it('registrations are per database and survive a proxy restart; FLUSHALL through the proxy keeps them', async () => {
    const { redis, proxy, direct } = await setup();
    const client = new Redis(proxy.port, { db: 1 });
    await client.call('NOTIFYLIST.SET', 'p*', 'plist');
    client.disconnect();
    await proxy.close();
    const again = await startTestProxy(redis);
    cleanups.push(() => again.close());
    const c1 = new Redis(again.port, { db: 1 });
    cleanups.push(async () => c1.disconnect());
    expect(await c1.call('NOTIFYLIST.LIST')).toEqual(['p*', 'plist']);
    await c1.flushall();
    expect(await c1.call('NOTIFYLIST.LIST')).toEqual(['p*', 'plist']);
    await c1.set('p1', 'v');
    await sleep(20);
    direct.select(1);
    expect(await direct.lrange('plist', 0, -1)).toEqual(['{"key":"p1","op":"set"}']);
  });
});
