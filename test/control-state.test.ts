// The control plane tells the truth about itself and stays bounded: it never believes it leads
// when it cannot prove it, never replaces a newer function library, goes ahead (counted) when a
// subscriber of the change channel never acknowledges, and backfills many patterns at a cost
// proportional to what it scans.
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { librarySource } from '../src/notify/control-plane.js';
import { ProxyProcess, startTestProxy } from './helpers/proxy.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});

async function setup(): Promise<{ redis: RedisServer; direct: Redis }> {
  const redis = await startRedis();
  cleanups.push(() => redis.destroy());
  const direct = new Redis(redis.port);
  cleanups.push(async () => direct.disconnect());
  return { redis, direct };
}

describe('control plane state', () => {
  it('a leader that cannot renew its lease (Redis paused) stops believing it leads within a lease time', async () => {
    const { direct, redis } = await setup();
    const proxy = await startTestProxy(redis, ['--lease-ms', '300']);
    cleanups.push(() => proxy.close());
    const client = new Redis(proxy.port);
    cleanups.push(async () => client.disconnect());
    await client.call('NOTIFYLIST.SET', 'l*', 'llist');
    await waitFor(async () => proxy.controlPlane.reaper.isLeader, (leading) => leading, 3000);
    expect(proxy.controlPlane.reaper.isLeader).toBe(true);
    // Every client of Redis (the proxy's control connection too) is paused for 1.5 s.
    await direct.call('CLIENT', 'PAUSE', '1500', 'ALL');
    await sleep(700);
    expect(proxy.controlPlane.reaper.isLeader).toBe(false);
    expect(proxy.controlPlane.infoFields()).toContain('reaper_leader:0');
    // And it leads again once Redis answers.
    await waitFor(async () => proxy.controlPlane.reaper.isLeader, (leading) => leading, 5000);
    expect(proxy.controlPlane.reaper.isLeader).toBe(true);
  });

  it('never replaces a newer function library: start-up refuses with one line, exit 1', async () => {
    const { direct, redis } = await setup();
    await direct.hset('notifylist:registry', 'n*', 'nlist'); // something registered: the proxy starts active
    const newer = librarySource('notifylist:', 'test-secret').replace(/^local LIBRARY_VERSION = \d+$/m, 'local LIBRARY_VERSION = 999');
    await direct.call('FUNCTION', 'LOAD', 'REPLACE', newer);
    const child = new ProxyProcess(redis.url);
    cleanups.push(() => child.stop());
    await expect(child.start()).rejects.toThrow();
    await waitFor(async () => child.process?.exitCode, (code) => code !== null && code !== undefined, 5000);
    expect(child.process?.exitCode).toBe(1);
    const lines = child.output.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain('version 999, newer than');
    // An older library is replaced.
    const older = librarySource('notifylist:', 'test-secret').replace(/^local LIBRARY_VERSION = \d+$/m, 'local LIBRARY_VERSION = 1');
    await direct.call('FUNCTION', 'LOAD', 'REPLACE', older);
    const proxy = await startTestProxy(redis);
    cleanups.push(() => proxy.close());
    expect(await direct.call('FCALL_RO', 'notifylist_version', '0')).toBeGreaterThan(1);
  });

  it('a subscriber of the change channel that never acknowledges delays a registration by a bounded time, counted in NOTIFYLIST.INFO', async () => {
    const { direct, redis } = await setup();
    const proxy = await startTestProxy(redis);
    cleanups.push(() => proxy.close());
    const snoop = new Redis(redis.port);
    cleanups.push(async () => snoop.disconnect());
    await snoop.subscribe('notifylist:changes');
    const client = new Redis(proxy.port);
    cleanups.push(async () => client.disconnect());
    const started = Date.now();
    expect(await client.call('NOTIFYLIST.SET', 's*', 'slist')).toBe('OK');
    const elapsed = Date.now() - started;
    expect(elapsed).toBeGreaterThanOrEqual(900);
    expect(elapsed).toBeLessThan(5000);
    expect(await client.call('NOTIFYLIST.INFO')).toContain('barrier_timeouts:1');
    await client.set('s1', 'v');
    expect(await direct.lrange('slist', 0, -1)).toEqual(['{"key":"s1","op":"set"}']);
  });

  it('backfills 5,000 patterns in seconds (each step costs what it scans, not the number of pending patterns)', async () => {
    const { direct, redis } = await setup();
    for (let i = 0; i < 200; i += 1) await direct.set(`bf:${i}:k`, 'v', 'EX', 600);
    const proxy = await startTestProxy(redis);
    cleanups.push(() => proxy.close());
    const client = new Redis(proxy.port);
    cleanups.push(async () => client.disconnect());
    const pipeline = client.pipeline();
    for (let i = 0; i < 5000; i++) pipeline.call('NOTIFYLIST.SET', `bf:${i}:*`, 'bflist');
    await pipeline.exec();
    const fcalls = async (): Promise<number> => Number(/cmdstat_fcall:calls=(\d+)/.exec(await direct.info('commandstats'))?.[1] ?? 0);
    const callsBefore = await fcalls();
    const pending = await waitFor(async () => direct.hlen('notifylist:backfill'), (n) => n === 0, 30_000, 100);
    expect(pending).toBe(0);
    // One call finished about one pattern (and read all pending ones) on main: 5,000+ calls.
    expect((await fcalls()) - callsBefore).toBeLessThan(1000);
    expect(await direct.zcard('notifylist:expiry')).toBe(200);
  });
});
