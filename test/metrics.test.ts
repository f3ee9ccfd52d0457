// Metrics and health (issue 9, items 1 and 2): /metrics read with a Prometheus text parser moves
// exactly under a known workload, NOTIFYLIST.INFO shows the same counters, and /readyz follows a
// Redis that is really killed and started again.
import { connect } from 'node:net';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { librarySource } from '../src/notify/control-plane.js';
import { httpGet, scrape, type Scrape } from './helpers/metrics.js';
import { startProxyWith } from './helpers/proxy.js';
import { freePort, RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const cleanups: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!().catch(() => undefined);
});

async function setup() {
  const redis = await new RedisServer().start();
  cleanups.push(() => redis.destroy());
  const metricsPort = await freePort();
  const proxy = await startProxyWith(['--port', String(await freePort()), '--upstream', redis.url, '--lease-ms', '600', '--metrics-port', String(metricsPort)]);
  cleanups.push(() => proxy.close());
  const client = new Redis(proxy.port, { maxRetriesPerRequest: null });
  client.on('error', () => undefined);
  const direct = new Redis(redis.port, { maxRetriesPerRequest: null });
  direct.on('error', () => undefined);
  cleanups.push(async () => {
    client.disconnect();
    direct.disconnect();
  });
  // Connected before the test's first scrape: its connection is not one a test counts.
  await client.ping();
  return { redis, proxy, client, direct, metricsPort };
}

/** NOTIFYLIST.INFO's `name:value` lines. */
async function info(client: Redis): Promise<Map<string, string>> {
  const text = String(await client.call('NOTIFYLIST.INFO'));
  return new Map(text.split('\r\n').filter((line) => line.includes(':')).map((line) => [line.slice(0, line.indexOf(':')), line.slice(line.indexOf(':') + 1)]));
}

/** `a=1,b=2` */
const pairs = (text: string | undefined): Record<string, number> =>
  Object.fromEntries((text ?? '').split(',').filter(Boolean).map((item) => [item.split('=')[0], Number(item.split('=')[1])]));

const delta = (after: Scrape, before: Scrape, name: string, labels: Record<string, string> = {}): number => after.value(name, labels) - before.value(name, labels);

describe('metrics', () => {
  it('events of every op are counted by op (EVENTS @all new), in metrics and NOTIFYLIST.INFO', async () => {
    const { client, metricsPort } = await setup();
    expect(await client.call('NOTIFYLIST.SET', 'a:*', 'alist', 'EVENTS', '@all', 'new')).toBe('OK');
    const before = await scrape(metricsPort);
    await client.rpush('a:l', 'x', 'y'); // new, rpush
    await client.lpop('a:l'); // lpop
    await client.del('a:l'); // del
    await client.hset('a:h', 'f', 'v'); // new, hset
    await client.xadd('a:x', '*', 'f', 'v'); // new, xadd
    await client.call('XGROUP', 'CREATE', 'a:x', 'g', '0'); // xgroup-create
    const after = await scrape(metricsPort);
    const counts = Object.fromEntries(['new', 'rpush', 'lpop', 'del', 'hset', 'xadd', 'xgroup-create'].map((op) => [op, delta(after, before, 'notifylist_events_total', { op })]));
    expect(counts).toEqual({ new: 3, rpush: 1, lpop: 1, del: 1, hset: 1, xadd: 1, 'xgroup-create': 1 });
    expect(pairs((await info(client)).get('events'))).toMatchObject({ new: 3, rpush: 1, lpop: 1, del: 1, hset: 1, xadd: 1, 'xgroup-create': 1 });
  });

  it('100 writes to registered keys add exactly 100 to events_total{op="set"}; request paths move as expected; NOTIFYLIST.INFO agrees', async () => {
    const { client, metricsPort, direct } = await setup();
    expect(await client.call('NOTIFYLIST.SET', 'm:*', 'mlist')).toBe('OK');
    for (let i = 0; i < 10; i++) await client.set(`m:${i}`, 'before');
    const before = await scrape(metricsPort);

    for (let i = 0; i < 100; i++) await client.set(`m:${i}`, String(i)); // 100 events
    for (let i = 0; i < 10; i++) expect(await client.set(`m:${i}`, 'x', 'NX')).toBeNull(); // rewritten, nothing written
    const pipeline = client.pipeline();
    for (let i = 0; i < 50; i++) pipeline.set(`m:p${i}`, 'v'); // 50 more, pipelined
    for (let i = 0; i < 7; i++) pipeline.get(`m:${i}`);
    for (let i = 0; i < 3; i++) pipeline.set(`other:${i}`, 'v'); // not registered: forwarded
    await pipeline.exec();
    await client.multi().set('m:t1', 'v').set('m:t2', 'v').exec(); // 2 in MULTI: MULTI and EXEC forwarded
    await client.call('NOTIFYLIST.LIST');

    const after = await scrape(metricsPort);
    expect(delta(after, before, 'notifylist_events_total', { op: 'set' })).toBe(152);
    expect(delta(after, before, 'notifylist_requests_total', { path: 'rewritten' })).toBe(162);
    expect(delta(after, before, 'notifylist_requests_total', { path: 'forwarded' })).toBe(12);
    expect(delta(after, before, 'notifylist_requests_total', { path: 'admin' })).toBe(1);
    // The same numbers from Redis's own side: every event went to the list.
    expect(await direct.llen('mlist')).toBe(10 + 152);

    const fields = await info(client);
    const now = await scrape(metricsPort);
    expect(pairs(fields.get('events')).set).toBe(now.value('notifylist_events_total', { op: 'set' }));
    expect(Number(fields.get('requests_rewritten'))).toBe(now.value('notifylist_requests_total', { path: 'rewritten' }));
    expect(Number(fields.get('requests_forwarded'))).toBe(now.value('notifylist_requests_total', { path: 'forwarded' }));
    expect(Number(fields.get('requests_admin'))).toBe(now.value('notifylist_requests_total', { path: 'admin' }));
    expect(Number(fields.get('client_connections_total'))).toBe(now.value('notifylist_client_connections_total'));
    expect(now.value('notifylist_client_connections')).toBe(1);
    expect(now.value('notifylist_registrations')).toBe(1);
    expect(now.value('notifylist_upstream_up')).toBe(1);
    expect(now.value('notifylist_keyevent_subscription_up')).toBe(1);
    // prom-client's default process metrics are there too.
    expect(now.family('process_cpu_seconds_total')).toBeDefined();
    expect(now.family('nodejs_eventloop_lag_seconds')).toBeDefined();
    // Nothing of this proxy's counts stays behind in Redis once taken.
    expect((await direct.hkeys('notifylist:stats')).filter((field) => field !== 'events')).toEqual([]);
  });

  it('protocol errors and connections are counted', async () => {
    const { proxy, metricsPort } = await setup();
    const before = await scrape(metricsPort);
    await new Promise<void>((resolve) => {
      const socket = connect(proxy.port, '127.0.0.1');
      socket.on('connect', () => socket.write('*1\r\n$x\r\n'));
      socket.on('data', () => undefined);
      socket.on('close', () => resolve());
    });
    const after = await scrape(metricsPort);
    expect(delta(after, before, 'notifylist_protocol_errors_total')).toBe(1);
    expect(delta(after, before, 'notifylist_client_connections_total')).toBe(1);
  });

  it('the expiry lag histogram counts each expiry, expired events count by reporter, target_length equals LLEN', async () => {
    const { client, direct, proxy, metricsPort } = await setup();
    await client.call('NOTIFYLIST.SET', 'e:*', 'elist');
    await waitFor(async () => proxy.controlPlane.reaper.isLeader, (leading) => leading, 5000);
    const before = await scrape(metricsPort);
    const pipeline = client.pipeline();
    for (let i = 0; i < 30; i++) pipeline.set(`e:${i}`, 'v', 'PX', 100 + 10 * i);
    await pipeline.exec();
    const expired = async (): Promise<number> => (await direct.lrange('elist', 0, -1)).filter((entry) => entry.includes('"op":"expired"')).length;
    await waitFor(expired, (n) => n === 30, 10_000);
    expect(await expired()).toBe(30);
    await sleep(300);
    const after = await scrape(metricsPort);
    expect(after.histogramCount('notifylist_expiry_lag_seconds') - before.histogramCount('notifylist_expiry_lag_seconds')).toBe(30);
    const byReporter = ['reaper', 'keyevent', 'write'].map((by) => delta(after, before, 'notifylist_expired_reported_total', { by }));
    expect(byReporter.reduce((a, b) => a + b, 0)).toBe(30);
    expect(delta(after, before, 'notifylist_events_total', { op: 'expired' })).toBe(30);
    expect(after.value('notifylist_expiry_index_entries', { db: '0' })).toBe(0);

    // A write whose deadline is already past: the write itself reports the expiry.
    await client.set('e:past', 'v', 'PXAT', Date.now() - 1000);
    const written = await scrape(metricsPort);
    expect(delta(written, after, 'notifylist_expired_reported_total', { by: 'write' })).toBe(1);
    expect(delta(written, after, 'notifylist_events_total', { op: 'expired' })).toBe(1);

    // target_length: sampled by the leader, equal to LLEN; gone once the target is no longer one.
    await client.set('e:x', 'v');
    await sleep(1100); // past the sample's reuse time
    const sampled = await scrape(metricsPort);
    expect(sampled.value('notifylist_reaper_leader')).toBe(1);
    expect(sampled.value('notifylist_target_length', { db: '0', target: 'elist' })).toBe(await direct.llen('elist'));
    await client.call('NOTIFYLIST.DEL', 'e:*');
    await sleep(1100);
    expect((await scrape(metricsPort)).samples('notifylist_target_length')).toEqual([]);
  });

  it('index entries and overdue entries per database', async () => {
    const { client, metricsPort } = await setup();
    await client.call('NOTIFYLIST.SET', 'i:*', 'ilist');
    await client.select(2);
    await client.call('NOTIFYLIST.SET', 'i:*', 'ilist');
    for (let i = 0; i < 5; i++) await client.set(`i:${i}`, 'v', 'EX', 100);
    await sleep(1100);
    const now = await scrape(metricsPort);
    expect(now.value('notifylist_expiry_index_entries', { db: '2' })).toBe(5);
    expect(now.value('notifylist_expiry_overdue', { db: '2' })).toBe(0);
    expect(now.value('notifylist_registrations')).toBe(2);
  });

  it('events dropped by MAXLEN per database, and a stream target\'s length (XLEN)', async () => {
    const { client, metricsPort } = await setup();
    await client.select(3);
    await client.call('NOTIFYLIST.SET', 'b:*', 'blist', 'MAXLEN', '10');
    await client.call('NOTIFYLIST.SET', 's:*', 'bstream', 'TARGET', 'stream');
    for (let i = 0; i < 25; i++) await client.set(`b:${i}`, 'v');
    for (let i = 0; i < 4; i++) await client.set(`s:${i}`, 'v');
    await sleep(1100);
    const now = await scrape(metricsPort);
    expect(now.value('notifylist_events_dropped', { db: '3' })).toBe(15);
    expect(now.value('notifylist_target_length', { db: '3', target: 'blist' })).toBe(10);
    expect(now.value('notifylist_target_length', { db: '3', target: 'bstream' })).toBe(4);
  });
});

describe('health', () => {
  it('/healthz 200; /readyz 503 while Redis is killed, 200 once it is back; upstream_up and reconnects follow', async () => {
    const { redis, metricsPort, client } = await setup();
    await client.call('NOTIFYLIST.SET', 'h:*', 'hlist');
    expect(await httpGet(metricsPort, '/healthz')).toEqual({ status: 200, body: 'ok\n' });
    expect(await httpGet(metricsPort, '/readyz')).toEqual({ status: 200, body: 'ready\n' });
    const reconnects = (await scrape(metricsPort)).value('notifylist_upstream_reconnects_total');

    await redis.kill();
    const down = await httpGet(metricsPort, '/readyz');
    expect(down.status).toBe(503);
    expect(down.body).toMatch(/^not ready: Redis at 127\.0\.0\.1:\d+ does not answer\n$/);
    expect((await httpGet(metricsPort, '/healthz')).status).toBe(200);
    expect((await scrape(metricsPort)).value('notifylist_upstream_up')).toBe(0);

    await redis.start();
    const back = await waitFor(() => httpGet(metricsPort, '/readyz'), (answer) => answer.status === 200, 10_000);
    expect(back).toEqual({ status: 200, body: 'ready\n' });
    await sleep(1100);
    const after = await scrape(metricsPort);
    expect(after.value('notifylist_upstream_up')).toBe(1);
    expect(after.value('notifylist_upstream_reconnects_total')).toBe(reconnects + 1);
  });

  it('/readyz 503 when something is registered and the library cannot be loaded', async () => {
    const { direct, client, metricsPort } = await setup();
    await client.call('NOTIFYLIST.SET', 'l:*', 'llist');
    const secret = (await direct.get('notifylist:secret'))!;
    const newer = librarySource('notifylist:', secret).replace(/^local LIBRARY_VERSION = \d+$/m, 'local LIBRARY_VERSION = 999');
    await direct.call('FUNCTION', 'LOAD', 'REPLACE', newer);
    const refused = await waitFor(() => httpGet(metricsPort, '/readyz'), (answer) => answer.status === 503, 8000);
    expect(refused).toEqual({ status: 503, body: 'not ready: registrations exist but the function library is not loaded\n' });
  });

  it('anything else is 404; a metrics port in use is one start-up error', async () => {
    const { metricsPort, redis } = await setup();
    expect((await httpGet(metricsPort, '/')).status).toBe(404);
    expect((await httpGet(metricsPort, '/metrics/x')).status).toBe(404);
    expect((await fetch(`http://127.0.0.1:${metricsPort}/metrics`, { method: 'POST' })).status).toBe(404);
    await expect(startProxyWith(['--port', String(await freePort()), '--upstream', redis.url, '--metrics-port', String(metricsPort)])).rejects.toThrow(/EADDRINUSE/);
  });
});
