// Event targets: TARGET stream (XADD per event, for consumer groups with redelivery) and MAXLEN
// (a bounded target that drops its oldest events, counted exactly), on real Redis. Consumers
// are real clients; the one that dies is a real process, SIGKILLed.
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { controlAclRules } from '../src/notify/control-permissions.js';
import { startProxyWith, startTestProxy } from './helpers/proxy.js';
import { freePort, startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

let redis: RedisServer;
let proxy: RunningProxy;
let direct: Redis;
let client: Redis;

beforeAll(async () => {
  redis = await startRedis();
  proxy = await startTestProxy(redis);
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
  for (const [pattern] of chunk(((await client.call('NOTIFYLIST.LIST')) as string[]), 2)) await client.call('NOTIFYLIST.DEL', pattern);
  await direct.flushall();
});

function chunk<T>(items: T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

/** A stream's entries as { key, op } in order. */
async function streamEvents(stream: string): Promise<Array<{ id: string; key: string; op: string }>> {
  const entries = (await direct.xrange(stream, '-', '+')) as Array<[string, string[]]>;
  return entries.map(([id, fields]) => ({ id, key: fields[1], op: fields[3], fieldNames: [fields[0], fields[2]] })).map((e) => {
    expect(e.fieldNames).toEqual(['key', 'op']);
    return { id: e.id, key: e.key, op: e.op };
  });
}

async function dbInfo(): Promise<string> {
  return (await client.call('NOTIFYLIST.INFO')) as string;
}

describe('TARGET stream', () => {
  it('pushes each event as XADD <target> * key <key> op <event>, expirations included, keys byte for byte', async () => {
    await client.call('NOTIFYLIST.SET', 's:*', 'events', 'TARGET', 'stream', 'EVENTS', 'set', 'del', 'expired');
    await client.set('s:1', 'a');
    await client.del('s:1');
    const binaryKey = Buffer.from([0x73, 0x3a, 0xff, 0x00, 0x22]); // s:\xff\0"
    await client.set(binaryKey, 'b');
    await client.set('s:2', 'c', 'PX', 50);
    const events = await waitFor(() => streamEvents('events'), (e) => e.length === 5);
    expect(events.map((e) => e.op)).toEqual(['set', 'del', 'set', 'set', 'expired']);
    expect([0, 1, 3, 4].map((i) => events[i].key)).toEqual(['s:1', 's:1', 's:2', 's:2']);
    const raw = (await direct.xrangeBuffer('events', '-', '+')) as Array<[Buffer, Buffer[]]>;
    expect(raw[2][1][1].equals(binaryKey)).toBe(true);
    expect(await direct.type('events')).toBe('stream');
    // A target produces no events of its own and is never a key the library indexes.
    expect(await direct.exists('notifylist:expiry')).toBe(0);
  });

  it('three consumers in one group, one SIGKILLed mid-way: the others XAUTOCLAIM its pending events, none is lost', async () => {
    await client.call('NOTIFYLIST.SET', 'job:*', 'jobs', 'TARGET', 'stream');
    await direct.xgroup('CREATE', 'jobs', 'workers', '$', 'MKSTREAM');
    // The consumer that dies: a real process that reads (without acking) and is killed.
    const doomed = spawn(
      process.execPath,
      [
        '-e',
        `const { Redis } = require('ioredis'); const r = new Redis(${proxy.port});
         (async () => { for (;;) { await r.xreadgroup('GROUP', 'workers', 'doomed', 'COUNT', 5, 'BLOCK', 50, 'STREAMS', 'jobs', '>'); } })();`,
      ],
      { cwd: process.cwd(), stdio: 'ignore' },
    );
    const processed = new Set<string>();
    let stop = false;
    const worker = async (name: string): Promise<void> => {
      const r = new Redis(proxy.port);
      try {
        while (!stop) {
          const claimed = (await r.call('XAUTOCLAIM', 'jobs', 'workers', name, '200', '0-0', 'COUNT', '100')) as [string, Array<[string, string[]]>];
          const read = (await r.xreadgroup('GROUP', 'workers', name, 'COUNT', 10, 'BLOCK', 20, 'STREAMS', 'jobs', '>')) as Array<[string, Array<[string, string[]]>]> | null;
          const entries = [...claimed[1], ...(read?.[0][1] ?? [])].filter((entry) => entry !== null && entry[1] !== null);
          for (const [id, fields] of entries) {
            processed.add(`${fields[1]}|${fields[3]}`);
            await r.xack('jobs', 'workers', id);
          }
        }
      } finally {
        r.disconnect();
      }
    };
    const doomedPending = async (): Promise<number> => {
      const consumers = (await direct.call('XINFO', 'CONSUMERS', 'jobs', 'workers')) as Array<Array<string | number>>;
      const entry = consumers.find((c) => c[1] === 'doomed');
      return entry === undefined ? 0 : Number(entry[3]);
    };
    const workers = [worker('w1'), worker('w2')];
    // At least 600 events; the doomed consumer is killed once it holds some pending (it may take
    // a while to start: writes go on meanwhile).
    let total = 0;
    let heldWhenKilled = 0;
    while (total < 600 || heldWhenKilled === 0) {
      await client.set(`job:${total}`, 'x');
      total++;
      if (heldWhenKilled === 0 && total >= 200 && total % 10 === 0) {
        const held = await doomedPending();
        if (held > 0) {
          doomed.kill('SIGKILL');
          heldWhenKilled = held;
        }
      }
      if (total % 50 === 0) await sleep(5);
    }
    await waitFor(() => Promise.resolve(processed.size), (n) => n === total, 20_000);
    stop = true;
    await Promise.all(workers);
    expect(processed.size).toBe(total);
    for (let i = 0; i < total; i++) expect(processed.has(`job:${i}|set`)).toBe(true);
    expect(heldWhenKilled).toBeGreaterThan(0);
    expect(await doomedPending()).toBe(0); // everything it held was claimed and acknowledged
    expect(Number(((await direct.xpending('jobs', 'workers')) as [number])[0])).toBe(0);
    expect(await direct.xlen('jobs')).toBe(total);
  }, 40_000);

  it('two groups on one target each get every event', async () => {
    await client.call('NOTIFYLIST.SET', 'g:*', 'fanout', 'TARGET', 'stream', 'EVENTS', 'set', 'del');
    await direct.xgroup('CREATE', 'fanout', 'audit', '$', 'MKSTREAM');
    await direct.xgroup('CREATE', 'fanout', 'cache', '$', 'MKSTREAM');
    for (let i = 0; i < 50; i++) await client.set(`g:${i}`, 'v');
    for (let i = 0; i < 50; i += 2) await client.del(`g:${i}`);
    for (const group of ['audit', 'cache']) {
      const read = (await direct.xreadgroup('GROUP', group, 'c', 'COUNT', 1000, 'STREAMS', 'fanout', '>')) as Array<[string, Array<[string, string[]]>]>;
      const seen = read[0][1].map(([, fields]) => `${fields[1]}|${fields[3]}`);
      expect(seen).toHaveLength(75);
      expect(seen.slice(0, 3)).toEqual(['g:0|set', 'g:1|set', 'g:2|set']);
      expect(seen.slice(50, 52)).toEqual(['g:0|del', 'g:2|del']);
    }
  });

  it('two registrations of one key on one stream target with different events: the union, as on a list', async () => {
    await client.call('NOTIFYLIST.SET', 'u:*', 'union', 'TARGET', 'stream', 'MAXLEN', '100', 'EVENTS', 'set');
    await client.call('NOTIFYLIST.SET', 'u:1*', 'union', 'TARGET', 'stream', 'MAXLEN', '100', 'EVENTS', 'del');
    await client.set('u:1', 'v');
    await client.del('u:1');
    await client.set('u:2', 'v');
    await client.del('u:2');
    expect((await streamEvents('union')).map((e) => `${e.key} ${e.op}`)).toEqual(['u:1 set', 'u:1 del', 'u:2 set']);
  });

  it('a stream target that holds another type refuses the write, before anything is written', async () => {
    await client.call('NOTIFYLIST.SET', 'w:*', 'wrong', 'TARGET', 'stream');
    await direct.rpush('wrong', 'x');
    await expect(client.set('w:1', 'v')).rejects.toThrow(/WRONGTYPE notifylist: the event stream wrong holds a list, not a stream/);
    expect(await direct.exists('w:1')).toBe(0);
  });
});

describe('MAXLEN', () => {
  it('a list keeps its newest n events under a producer faster than its consumer; the drop count is exact', async () => {
    await client.call('NOTIFYLIST.SET', 'm:*', 'bounded', 'MAXLEN', '100');
    let consumed = 0;
    let stop = false;
    const consumer = (async () => {
      const r = new Redis(redis.port);
      while (!stop) {
        const popped = await r.lpop('bounded');
        if (popped !== null) consumed++;
        await sleep(2); // slower than the producer below
      }
      r.disconnect();
    })();
    const total = 3000;
    let maxSeen = 0;
    for (let i = 0; i < total; i += 50) {
      const pipeline = client.pipeline();
      for (let j = i; j < i + 50; j++) pipeline.set(`m:${j}`, 'v');
      await pipeline.exec();
      maxSeen = Math.max(maxSeen, await direct.llen('bounded'));
    }
    stop = true;
    await consumer;
    const left = await direct.lrange('bounded', 0, -1);
    expect(maxSeen).toBeLessThanOrEqual(100);
    expect(left.length).toBeLessThanOrEqual(100);
    // The newest event is the last one written.
    expect(JSON.parse(left[left.length - 1])).toEqual({ key: `m:${total - 1}`, op: 'set' });
    const dropped = total - consumed - left.length;
    expect(dropped).toBeGreaterThan(0);
    expect(await dbInfo()).toContain(`dropped=${dropped}`);
    const listed = (await client.call('NOTIFYLIST.LIST', 'WITHOPTIONS')) as unknown[][];
    expect(listed).toEqual([['m:*', 'bounded', 'events', ['set', 'expired'], 'target', 'list', 'maxlen', 100, 'dropped', dropped]]);
  }, 30_000);

  it('a stream is trimmed with XADD MAXLEN ~ n; what it drops is counted exactly', async () => {
    await client.call('NOTIFYLIST.SET', 'ms:*', 'bounded-stream', 'TARGET', 'stream', 'MAXLEN', '200');
    const total = 2000;
    const pipeline = client.pipeline();
    for (let i = 0; i < total; i++) pipeline.set(`ms:${i}`, 'v');
    await pipeline.exec();
    // Also one large MSET: its events go in one call.
    const mset: string[] = [];
    for (let i = 0; i < 500; i++) mset.push(`ms:big${i}`, 'v');
    await client.mset(...mset);
    const length = await direct.xlen('bounded-stream');
    expect(length).toBeLessThan(200 + 200); // approximate trimming: within a node or so of n
    expect(length).toBeGreaterThanOrEqual(200);
    const last = (await direct.xrevrange('bounded-stream', '+', '-', 'COUNT', 1)) as Array<[string, string[]]>;
    expect(last[0][1]).toEqual(['key', 'ms:big499', 'op', 'set']);
    expect(await dbInfo()).toContain(`dropped=${total + 500 - length}`);
  });

  it('without MAXLEN nothing is dropped, and TARGET list without MAXLEN is the default, byte for byte', async () => {
    await client.call('NOTIFYLIST.SET', 'd:*', 'plain', 'TARGET', 'list');
    const value = (await direct.hget('notifylist:registry', 'd:*'))!;
    await client.call('NOTIFYLIST.SET', 'd:*', 'plain');
    expect(await direct.hget('notifylist:registry', 'd:*')).toBe(value);
    expect(value).toMatch(/^[0-9a-f]{40}\d+:/); // the default layout: no events or options field
    for (let i = 0; i < 1000; i++) await client.set(`d:${i % 10}`, 'v');
    expect(await direct.llen('plain')).toBe(1000);
    expect(await direct.lindex('plain', 0)).toBe('{"key":"d:0","op":"set"}');
    expect(await dbInfo()).toContain('dropped=0');
  });
});

describe('registration options', () => {
  it('syntax: TARGET list|stream, MAXLEN a positive integer, each once, with EVENTS in any order', async () => {
    await expect(client.call('NOTIFYLIST.SET', 'o:*', 't', 'TARGET', 'queue')).rejects.toThrow('ERR notifylist: TARGET is list or stream');
    await expect(client.call('NOTIFYLIST.SET', 'o:*', 't', 'MAXLEN', '0')).rejects.toThrow('ERR notifylist: MAXLEN must be a positive integer');
    await expect(client.call('NOTIFYLIST.SET', 'o:*', 't', 'MAXLEN', '-1')).rejects.toThrow('MAXLEN must be a positive integer');
    await expect(client.call('NOTIFYLIST.SET', 'o:*', 't', 'MAXLEN')).rejects.toThrow('MAXLEN must be a positive integer');
    await expect(client.call('NOTIFYLIST.SET', 'o:*', 't', 'TARGET', 'list', 'TARGET', 'list')).rejects.toThrow('ERR syntax error');
    await expect(client.call('NOTIFYLIST.SET', 'o:*', 't', 'BOGUS')).rejects.toThrow('ERR syntax error');
    expect(await client.call('NOTIFYLIST.LIST')).toEqual([]);
    expect(await client.call('NOTIFYLIST.SET', 'o:*', 't', 'EVENTS', 'del', 'TARGET', 'stream', 'MAXLEN', '5')).toBe('OK');
    expect(await client.call('NOTIFYLIST.SET', 'p:*', 't', 'maxlen', '5', 'target', 'STREAM', 'events', 'set')).toBe('OK');
    expect(await client.call('NOTIFYLIST.LIST', 'WITHOPTIONS')).toEqual(
      expect.arrayContaining([
        ['o:*', 't', 'events', ['del'], 'target', 'stream', 'maxlen', 5, 'dropped', 0],
        ['p:*', 't', 'events', ['set'], 'target', 'stream', 'maxlen', 5, 'dropped', 0],
      ]),
    );
  });

  it('registrations sharing a target must agree on TARGET and MAXLEN; the only one may change them', async () => {
    await client.call('NOTIFYLIST.SET', 'a:*', 'shared', 'TARGET', 'stream');
    await expect(client.call('NOTIFYLIST.SET', 'b:*', 'shared')).rejects.toThrow(
      'ERR notifylist: 1 other registration(s) point at shared with the options stream; registrations sharing a target must give it the same TARGET, MAXLEN and WITH',
    );
    await expect(client.call('NOTIFYLIST.SET', 'b:*', 'shared', 'TARGET', 'stream', 'MAXLEN', '10')).rejects.toThrow(/must give it the same/);
    expect(await client.call('NOTIFYLIST.SET', 'b:*', 'shared', 'TARGET', 'stream')).toBe('OK');
    // Two share it: neither can change it alone.
    await expect(client.call('NOTIFYLIST.SET', 'a:*', 'shared', 'MAXLEN', '10')).rejects.toThrow(/1 other registration/);
    await client.call('NOTIFYLIST.DEL', 'b:*');
    expect(await client.call('NOTIFYLIST.SET', 'a:*', 'shared', 'TARGET', 'stream', 'MAXLEN', '10')).toBe('OK');
    await client.set('a:1', 'v');
    expect(await direct.xlen('shared')).toBe(1);
    // Moving a pattern to another target frees the first one's options.
    await client.call('NOTIFYLIST.SET', 'a:*', 'other');
    expect(await client.call('NOTIFYLIST.SET', 'c:*', 'shared')).toBe('OK');
  });

  it('MAXLEN drops events of every registration on the target: registering it takes the right to trim the target', async () => {
    await direct.call('ACL', 'SETUSER', 'pusher', 'on', '>pw', '~*', '&*', '+@all', '-ltrim', '-xtrim');
    const pusher = new Redis(proxy.port, { username: 'pusher', password: 'pw' });
    try {
      await expect(pusher.call('NOTIFYLIST.SET', 'u:*', 'theirs', 'MAXLEN', '10')).rejects.toThrow(
        'NOPERM notifylist: this user has no permissions to LTRIM the event list theirs (it has a MAXLEN)',
      );
      expect(await pusher.call('NOTIFYLIST.SET', 'u:*', 'theirs')).toBe('OK');
      await pusher.set('u:1', 'v');
      expect(await direct.llen('theirs')).toBe(1);
    } finally {
      pusher.disconnect();
      await direct.call('ACL', 'DELUSER', 'pusher');
    }
  });
});

describe("the proxy's own user without +xadd +xlen +ltrim (optional rules)", () => {
  it('expirations for a stream target wait in the index, others are reported; once granted, each is reported once', async () => {
    await direct.call('ACL', 'SETUSER', 'ctl', 'reset', 'on', '>pw', ...controlAclRules('notifylist:'), 'allkeys');
    const limited = await startProxyWith(['--port', String(await freePort()), '--upstream', `redis://ctl:pw@127.0.0.1:${redis.port}`]);
    const writer = new Redis(limited.port);
    try {
      await writer.call('NOTIFYLIST.SET', 'x:*', 'xs', 'TARGET', 'stream', 'EVENTS', 'expired');
      await writer.call('NOTIFYLIST.SET', 'y:*', 'ys', 'EVENTS', 'expired');
      await writer.set('x:1', 'v', 'PX', 100);
      await writer.set('y:1', 'v', 'PX', 100);
      await waitFor(() => direct.llen('ys'), (n) => n === 1);
      await sleep(300);
      expect(await direct.exists('xs')).toBe(0);
      expect(await direct.zscore('notifylist:expiry', 'x:1')).not.toBeNull();
      await direct.call('ACL', 'SETUSER', 'ctl', '+xadd', '+xlen', '+ltrim');
      const events = await waitFor(() => streamEvents('xs'), (e) => e.length > 0, 10_000);
      await sleep(300);
      expect((await streamEvents('xs')).map((e) => [e.key, e.op])).toEqual([['x:1', 'expired']]);
      expect(events).toHaveLength(1);
      expect(await direct.lrange('ys', 0, -1)).toEqual(['{"key":"y:1","op":"expired"}']);
    } finally {
      writer.disconnect();
      await limited.close();
      await direct.call('ACL', 'DELUSER', 'ctl');
    }
  }, 20_000);
});
