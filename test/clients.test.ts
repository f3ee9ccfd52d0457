// Real clients through the proxy: ioredis, node-redis v4 (RESP2 only: v4 has no RESP3 support),
// raw RESP3 (HELLO 3) and redis-cli (plain, --pipe, -3). `NOTIFYLIST.SET * events` is registered
// in database 0, so every SET-family write in db 0 really is rewritten into an FCALL of the
// library. Replies are compared with the same commands sent to Redis directly where meaningful.
import { execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis, type RedisOptions } from 'ioredis';
import { createClient } from 'redis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { RunningProxy } from '../src/index.js';
import { registeringRules, writerRules } from '../src/security/user-rules.js';
import { startTestProxy } from './helpers/proxy.js';
import { command, RawClient } from './helpers/raw-client.js';
import { startRedis, type RedisServer } from './helpers/redis-server.js';
import { sleep, waitFor } from './helpers/wait.js';

const run = promisify(execFile);

let redis: RedisServer;
let proxy: RunningProxy;
let direct: Redis;
const open: Array<{ disconnect(): void }> = [];

/** An ioredis client through the proxy, closed after all tests. */
function viaProxy(options: RedisOptions = {}): Redis {
  const client = new Redis(proxy.port, '127.0.0.1', { maxRetriesPerRequest: 1, ...options });
  client.on('error', () => undefined);
  open.push(client);
  return client;
}
function viaDirect(options: RedisOptions = {}): Redis {
  const client = new Redis(redis.port, '127.0.0.1', { maxRetriesPerRequest: 1, ...options });
  client.on('error', () => undefined);
  open.push(client);
  return client;
}

/** Sends the same bytes to Redis directly and through the proxy; returns both reply streams. */
async function bothRaw(bytes: Buffer | string, replies: number): Promise<{ direct: string; proxied: string }> {
  const d = await RawClient.connect(redis.port);
  const p = await RawClient.connect(proxy.port);
  try {
    d.send(bytes);
    p.send(bytes);
    return { direct: (await d.replies(replies)).toString('latin1'), proxied: (await p.replies(replies)).toString('latin1') };
  } finally {
    d.close();
    p.close();
  }
}

const events = async (list = 'events'): Promise<Array<{ key: string; op: string }>> =>
  (await direct.lrange(list, 0, -1)).map((entry) => JSON.parse(entry));

beforeAll(async () => {
  redis = await startRedis();
  proxy = await startTestProxy(redis);
  direct = new Redis(redis.port);
  // ACL users, created on Redis directly: the proxy has no say in them.
  await direct.call('ACL', 'SETUSER', 'full', 'on', '>fullpw', '+@all', '~*', '&*');
  await direct.call('ACL', 'SETUSER', 'limited', 'on', '>limpw', '+get', '+set', '~app:*');
  // May FCALL, but may not touch the notifylist keys or the event list.
  await direct.call('ACL', 'SETUSER', 'caller', 'on', '>callpw', '+get', '+set', '+fcall', '~app:*');
});

afterAll(async () => {
  for (const client of open) client.disconnect();
  direct?.disconnect();
  await proxy?.close();
  await redis?.destroy();
});

beforeEach(async () => {
  await direct.flushall();
  const admin = new Redis(proxy.port);
  expect(await admin.call('NOTIFYLIST.SET', '*', 'events')).toBe('OK');
  admin.disconnect();
  await proxy.controlPlane.reload();
});

describe('ioredis', () => {
  it('basic commands give the same replies as Redis directly, and SETs are rewritten', async () => {
    const p = viaProxy();
    const d = viaDirect();
    for (const client of [p, d]) {
      const tag = client === p ? 'p' : 'd';
      expect(await client.set(`${tag}:s`, 'v')).toBe('OK');
      expect(await client.get(`${tag}:s`)).toBe('v');
      expect(await client.set(`${tag}:s`, 'w', 'NX')).toBe(null);
      expect(await client.set(`${tag}:s`, 'w', 'GET')).toBe('v');
      expect(await client.incr(`${tag}:n`)).toBe(1);
      expect(await client.incrby(`${tag}:n`, 41)).toBe(42);
      expect(await client.hset(`${tag}:h`, 'a', '1', 'b', '2')).toBe(2);
      expect(await client.hgetall(`${tag}:h`)).toEqual({ a: '1', b: '2' });
      expect(await client.rpush(`${tag}:l`, 'x', 'y')).toBe(2);
      expect(await client.lrange(`${tag}:l`, 0, -1)).toEqual(['x', 'y']);
      expect(await client.setex(`${tag}:t`, 100, 'v')).toBe('OK');
      expect(await client.ttl(`${tag}:t`)).toBeGreaterThan(90);
      expect(await client.del(`${tag}:s`, `${tag}:n`, `${tag}:none`)).toBe(2);
      await expect(client.lpush(`${tag}:h`, 'x')).rejects.toThrow('WRONGTYPE Operation against a key holding the wrong kind of value');
      await expect(client.set(`${tag}:s`, 'v', 'EX', 'abc')).rejects.toThrow('ERR value is not an integer or out of range');
      await expect(client.call('NOSUCHCOMMAND', 'x')).rejects.toThrow("ERR unknown command 'NOSUCHCOMMAND'");
    }
    // Only the proxied writes that wrote made events (SET NX that did not write: none).
    expect(await events()).toEqual([
      { key: 'p:s', op: 'set' },
      { key: 'p:s', op: 'set' },
      { key: 'p:t', op: 'set' },
    ]);
  });

  it('pipelines', async () => {
    const p = viaProxy();
    const pipeline = p.pipeline();
    for (let i = 0; i < 500; i++) pipeline.set(`pl:${i}`, String(i)).get(`pl:${i}`).incr('pl:count');
    pipeline.lpush('pl:count', 'x'); // WRONGTYPE inside a pipeline
    const results = (await pipeline.exec())!;
    expect(results).toHaveLength(1501);
    for (let i = 0; i < 500; i++) {
      expect(results[3 * i]).toEqual([null, 'OK']);
      expect(results[3 * i + 1]).toEqual([null, String(i)]);
      expect(results[3 * i + 2]).toEqual([null, i + 1]);
    }
    expect(String(results[1500][0])).toContain('WRONGTYPE');
    expect(await direct.llen('events')).toBe(500);
  });

  it('MULTI/EXEC, WATCH and aborted transactions', async () => {
    const p = viaProxy();
    expect(await p.multi().set('tx:a', '1').get('tx:a').incr('tx:n').exec()).toEqual([
      [null, 'OK'],
      [null, '1'],
      [null, 1],
    ]);
    // WATCH + a change from another client: EXEC returns null, nothing written, no event.
    await p.watch('tx:a');
    await viaProxy().set('tx:a', 'other');
    expect(await p.multi().set('tx:a', 'mine').exec()).toBe(null);
    expect(await direct.get('tx:a')).toBe('other');
    // A queue-time error aborts EXEC (EXECABORT) exactly as on Redis.
    await expect(p.multi().set('tx:b', '1').call('SET', 'tx:b').exec()).rejects.toThrow('EXECABORT');
    expect(await direct.exists('tx:b')).toBe(0);
    expect((await events()).map((e) => e.key)).toEqual(['tx:a', 'tx:a']);
  });

  it('SELECT: the db option and SELECT through the proxy', async () => {
    const p3 = viaProxy({ db: 3 });
    expect(await p3.set('db:k', 'three')).toBe('OK');
    const d3 = viaDirect({ db: 3 });
    expect(await d3.get('db:k')).toBe('three');
    expect(await direct.get('db:k')).toBe(null);
    // Registrations are per database: db 3 has none yet, so no event anywhere.
    expect(await d3.exists('events')).toBe(0);
    expect(await p3.call('NOTIFYLIST.SET', 'db:*', 'events3')).toBe('OK');
    expect(await p3.set('db:k', 'again')).toBe('OK');
    expect(await d3.lrange('events3', 0, -1)).toEqual(['{"key":"db:k","op":"set"}']);
    // SELECT on a plain connection.
    const p = viaProxy();
    expect(await p.select(5)).toBe('OK');
    expect(await p.set('db:five', '5')).toBe('OK');
    expect(await viaDirect({ db: 5 }).get('db:five')).toBe('5');
    await expect(p.select(99)).rejects.toThrow('ERR DB index is out of range');
  });

  it('binary keys and values (Buffer) round-trip, and events carry the exact key', async () => {
    const p = viaProxy();
    const key = Buffer.from('bin:\x00\r\n"\\\xff\xfe end', 'latin1');
    const value = Buffer.alloc(256);
    for (let i = 0; i < 256; i++) value[i] = i;
    expect(await p.set(key, value)).toBe('OK');
    expect(await p.getBuffer(key)).toEqual(value);
    expect(await direct.getBuffer(key)).toEqual(value);
    expect(await p.mset(Buffer.from('bin:\x01', 'latin1'), value, Buffer.from('bin:\x02', 'latin1'), Buffer.alloc(0))).toBe('OK');
    expect(await p.getBuffer(Buffer.from('bin:\x02', 'latin1'))).toEqual(Buffer.alloc(0));
    const raw = await direct.lrangeBuffer('events', 0, -1);
    expect(raw).toHaveLength(3);
    // The key is not valid UTF-8: the event is still UTF-8 JSON, and key64 carries the exact bytes.
    const event = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(raw[0]));
    expect(Buffer.from(event.key64, 'base64')).toEqual(key);
    expect(event.key).toBe('bin:\x00\r\n"\\\ufffd\ufffd end');
  });

  it('pub/sub: SUBSCRIBE and PSUBSCRIBE through the proxy, PUBLISH from another client', async () => {
    const sub = viaProxy();
    const psub = viaProxy();
    const pub = viaProxy();
    const messages: string[] = [];
    sub.on('message', (channel: string, message: string) => messages.push(`${channel}:${message}`));
    psub.on('pmessage', (pattern: string, channel: string, message: string) => messages.push(`${pattern}|${channel}:${message}`));
    expect(await sub.subscribe('news', 'sports')).toBe(2);
    expect(await psub.psubscribe('new*')).toBe(1);
    expect(await pub.publish('news', 'hello')).toBe(2);
    expect(await pub.publish('sports', 'goal')).toBe(1);
    expect(await direct.publish('newsletter', 'direct')).toBe(1);
    await waitFor(async () => messages.length, (n) => n >= 4, 5000);
    expect(messages.sort()).toEqual(['new*|news:hello', 'new*|newsletter:direct', 'news:hello', 'sports:goal'].sort());
    // In subscribed mode RESP2 refuses other commands, as Redis does.
    await expect(sub.call('GET', 'x')).rejects.toThrow();
    expect(await sub.unsubscribe()).toBeDefined();
    expect(await direct.pubsub('NUMSUB', 'news')).toEqual(['news', 0]);
  });

  it('blocking commands: BLPOP served by a later LPUSH from another client; BLPOP timeout', async () => {
    const waiter = viaProxy();
    const pushed = waiter.blpop('bq', 0);
    await waitFor(async () => (await direct.call('CLIENT', 'LIST', 'TYPE', 'normal')) as string, (list) => list.includes('cmd=blpop'), 5000);
    expect(await viaProxy().lpush('bq', 'job')).toBe(1);
    expect(await pushed).toEqual(['bq', 'job']);
    const started = Date.now();
    expect(await waiter.blpop('bq-empty', 0.2)).toBe(null);
    expect(Date.now() - started).toBeGreaterThanOrEqual(150);
    // BLMOVE too, through a rewritten write elsewhere in between.
    const moved = waiter.blmove('bq2', 'bq3', 'LEFT', 'RIGHT', 0);
    await sleep(50);
    await viaProxy().set('unrelated', 'x');
    await viaProxy().rpush('bq2', 'm');
    expect(await moved).toBe('m');
    expect(await direct.lrange('bq3', 0, -1)).toEqual(['m']);
  });

  it('CLIENT SETNAME / GETNAME live on the client\'s own upstream connection', async () => {
    const p = viaProxy();
    expect(await p.client('GETNAME')).toBe(null);
    expect(await p.client('SETNAME', 'my-app')).toBe('OK');
    expect(await p.client('GETNAME')).toBe('my-app');
    expect((await direct.client('LIST')) as string).toContain('name=my-app');
    const named = viaProxy({ connectionName: 'by-option' });
    expect(await named.client('GETNAME')).toBe('by-option');
    await expect(p.client('SETNAME', 'has space')).rejects.toThrow('ERR Client names cannot contain spaces');
  });

  it('MONITOR through the proxy sees commands from another client', async () => {
    const monitor = await viaProxy().monitor();
    open.push(monitor);
    const seen: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[]) => seen.push(args));
    await sleep(50);
    const p = viaProxy();
    await p.get('mon:key');
    await p.set('mon:key', 'v');
    const found = await waitFor(
      async () => seen,
      (s) => s.some((a) => a[0].toLowerCase() === 'get' && a[1] === 'mon:key') && s.some((a) => a[0].toLowerCase() === 'set' && a[1] === 'mon:key'),
      5000,
    );
    expect(found.some((a) => a[0].toLowerCase() === 'get' && a[1] === 'mon:key')).toBe(true);
    // The rewritten SET shows up as what Redis ran: the FCALL and the SET inside it.
    expect(found.some((a) => a[0].toLowerCase() === 'fcall' && a[1] === 'notifylist_write')).toBe(true);
    expect(found.some((a) => a[0].toLowerCase() === 'set' && a[1] === 'mon:key')).toBe(true);
    monitor.disconnect();
  });

  describe('AUTH and ACL users', () => {
    it('AUTH with an ACL user works, with the same errors as direct', async () => {
      const full = viaProxy({ username: 'full', password: 'fullpw' });
      expect(await full.call('ACL', 'WHOAMI')).toBe('full');
      expect(await full.set('acl:k', 'v')).toBe('OK');
      expect(await full.call('NOTIFYLIST.SET', 'acl:*', 'acl_events')).toBe('OK');
      expect(await full.set('acl:k', 'w')).toBe('OK');
      expect(await direct.lrange('acl_events', 0, -1)).toEqual(['{"key":"acl:k","op":"set"}']);

      const bytes = Buffer.concat([
        command('AUTH', 'full', 'wrong'),
        command('AUTH', 'nosuchuser', 'x'),
        command('AUTH', 'onlypassword'),
        command('AUTH'),
        command('AUTH', 'limited', 'limpw'),
        command('GET', 'app:none'),
        command('HELLO', '2', 'AUTH', 'full', 'wrong'),
      ]);
      const { direct: d, proxied: p } = await bothRaw(bytes, 7);
      expect(p).toBe(d);
      expect(p).toContain('-WRONGPASS invalid username-password pair or user is disabled.\r\n');
      expect(p).toContain('+OK\r\n$-1\r\n');
    });

    it('the limited user gets NOPERM for NOTIFYLIST.SET and for writes to registered keys', async () => {
      const limited = viaProxy({ username: 'limited', password: 'limpw' });
      expect(await limited.get('app:x')).toBe(null);
      // The proxy grants nothing: NOTIFYLIST.SET runs as FCALL on the client's own connection.
      await expect(limited.call('NOTIFYLIST.SET', 'app:*', 'app_events')).rejects.toThrow(/^NOPERM /);
      // A registered key (`*`): the write becomes an FCALL, which this user may not run.
      await expect(limited.set('app:x', 'v')).rejects.toThrow(/^NOPERM .*fcall/);
      expect(await direct.exists('app:x')).toBe(0);
      // Same refusal as Redis gives for an FCALL by this user.
      const { direct: d, proxied: p } = await bothRaw(
        Buffer.concat([command('AUTH', 'limited', 'limpw'), command('FCALL', 'notifylist_list', '0'), command('NOTIFYLIST.SET', 'x', 'y')]),
        3,
      );
      expect(p.split('\r\n').slice(0, 2).join('\r\n')).toBe(d.split('\r\n').slice(0, 2).join('\r\n'));
      expect(p.split('\r\n')[2]).toBe(d.split('\r\n')[1]);
      expect(await viaProxy().call('NOTIFYLIST.LIST')).toEqual(['*', 'events']);
      expect(await direct.hkeys('notifylist:registry')).toEqual(['*']);
    });

    it('a user who may FCALL but not touch the notifylist keys gets a clear NOPERM for a registered key', async () => {
      const caller = viaProxy({ username: 'caller', password: 'callpw' });
      let error: Error | undefined;
      await caller.set('app:y', 'v').catch((e: Error) => (error = e));
      expect(error?.message).toMatch(/^NOPERM /);
      expect(await direct.exists('app:y')).toBe(0);
      expect(await direct.llen('events')).toBe(0);
    });

    it("a user with exactly the README's permissions registers, writes and gets set and expired events", async () => {
      await direct.call(
        'ACL', 'SETUSER', 'readme_writer', 'reset', 'on', '>rwpw',
        // What the README lists for writing and for registering, plus the user's own commands.
        ...writerRules('notifylist:'), ...registeringRules('notifylist:'), '+set', '+get', '+expire',
        '~rw:*', '~rw_events', '~events', // events: this file registers `*` too
      );
      const writer = viaProxy({ username: 'readme_writer', password: 'rwpw' });
      expect(await writer.call('NOTIFYLIST.SET', 'rw:*', 'rw_events')).toBe('OK');
      expect(await writer.set('rw:1', 'v', 'PX', 300)).toBe('OK');
      expect(await writer.set('rw:2', 'v')).toBe('OK');
      expect(await writer.expire('rw:2', 1000)).toBe(1);
      const events = async (): Promise<string[]> => direct.lrange('rw_events', 0, -1);
      const deadline = Date.now() + 3000;
      while ((await events()).length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      expect(await events()).toEqual(['{"key":"rw:1","op":"set"}', '{"key":"rw:2","op":"set"}', '{"key":"rw:1","op":"expired"}']);
      await direct.call('ACL', 'DELUSER', 'readme_writer');
    });

    it('with requirepass: unauthenticated NOTIFYLIST.SET and registered writes get NOAUTH like any command', async () => {
      const secured = await startRedis({ config: { requirepass: 'secret' } });
      const securedProxy = await startTestProxy(secured, ['--upstream', `redis://:secret@127.0.0.1:${secured.port}`]);
      try {
        const d = await RawClient.connect(secured.port);
        const p = await RawClient.connect(securedProxy.port);
        d.send(Buffer.concat([command('PING'), command('SET', 'k', 'v'), command('GET', 'k'), command('AUTH', 'bad')]));
        p.send(Buffer.concat([command('PING'), command('NOTIFYLIST.SET', '*', 'events'), command('SET', 'k', 'v'), command('AUTH', 'bad')]));
        const fromDirect = (await d.replies(4)).toString();
        const fromProxy = (await p.replies(4)).toString();
        expect(fromProxy).toBe(fromDirect);
        expect(fromProxy).toBe('-NOAUTH Authentication required.\r\n'.repeat(3) + '-WRONGPASS invalid username-password pair or user is disabled.\r\n');
        // After AUTH the client can register and write; events appear.
        p.send(Buffer.concat([command('AUTH', 'secret'), command('NOTIFYLIST.SET', 's*', 'sev'), command('SET', 'sk', 'v')]));
        expect((await p.replies(3)).toString()).toBe('+OK\r\n+OK\r\n+OK\r\n');
        d.send(Buffer.concat([command('AUTH', 'secret'), command('LRANGE', 'sev', '0', '-1')]));
        expect((await d.replies(2)).toString()).toBe('+OK\r\n*1\r\n$23\r\n{"key":"sk","op":"set"}\r\n');
        // Redis stops requiring a password: such a write makes the proxy ask again (at most once
        // a second), and writes of clients that never authenticate emit their events again.
        d.send(command('CONFIG', 'SET', 'requirepass', ''));
        expect((await d.replies(1)).toString()).toBe('+OK\r\n');
        // The first such writes may miss their events while the belief is less than a second old.
        const fresh = await RawClient.connect(securedProxy.port);
        const deadline = Date.now() + 8000;
        let last = '';
        for (let i = 0; Date.now() < deadline; i++) {
          fresh.send(Buffer.concat([command('SET', `sk${i}`, 'v'), command('LRANGE', 'sev', '-1', '-1')]));
          last = (await fresh.replies(2)).toString();
          if (last.includes(`"sk${i}"`)) break;
          await sleep(200);
        }
        expect(last).toMatch(/^\+OK\r\n\*1\r\n\$\d+\r\n\{"key":"sk\d+","op":"set"\}\r\n$/);
        expect(securedProxy.controlPlane.authRequired()).toBe(false);
        fresh.close();
        d.close();
        p.close();
      } finally {
        await securedProxy.close();
        await secured.destroy();
      }
    });
  });
});

describe('node-redis v4 (RESP2)', () => {
  it('set/get, multi, pub/sub', async () => {
    const client = createClient({ socket: { host: '127.0.0.1', port: proxy.port, reconnectStrategy: false } });
    client.on('error', () => undefined);
    await client.connect();
    const sub = client.duplicate();
    sub.on('error', () => undefined);
    await sub.connect();
    try {
      expect(await client.set('nr:k', 'v')).toBe('OK');
      expect(await client.get('nr:k')).toBe('v');
      expect(await client.set('nr:k', 'w', { GET: true })).toBe('v');
      expect(await client.set('nr:none', 'w', { GET: true })).toBe(null);
      expect(await client.multi().set('nr:m', '1').incr('nr:c').get('nr:m').exec()).toEqual(['OK', 1, '1']);
      expect(await client.hSet('nr:h', { a: '1', b: '2' })).toBe(2);
      expect(await client.hGetAll('nr:h')).toEqual({ a: '1', b: '2' });
      const received: string[] = [];
      await sub.subscribe('nr:ch', (message, channel) => received.push(`${channel}:${message}`));
      await sub.pSubscribe('nr:*', (message, channel) => received.push(`p ${channel}:${message}`));
      expect(await client.publish('nr:ch', 'hi')).toBe(2);
      await waitFor(async () => received.length, (n) => n >= 2, 5000);
      expect(received.sort()).toEqual(['nr:ch:hi', 'p nr:ch:hi']);
      expect((await events()).map((e) => e.key)).toEqual(['nr:k', 'nr:k', 'nr:none', 'nr:m']);
    } finally {
      await sub.disconnect();
      await client.disconnect();
    }
  });

  it('RESP3 (HELLO 3) through the proxy: reply bytes equal Redis direct', async () => {
    const d = await RawClient.connect(redis.port);
    const p = await RawClient.connect(proxy.port);
    const sub = await RawClient.connect(proxy.port);
    try {
      const hello = command('HELLO', '3');
      d.send(hello);
      p.send(hello);
      const normalise = (reply: Buffer): string => reply.toString('latin1').replace(/\$2\r\nid\r\n:\d+\r\n/, '$2\r\nid\r\n:ID\r\n');
      const helloDirect = normalise(await d.replies(1));
      expect(helloDirect.startsWith('%7\r\n')).toBe(true);
      expect(normalise(await p.replies(1))).toBe(helloDirect);

      const script = (tag: string): Buffer =>
        Buffer.concat([
          command('SET', `${tag}:k`, 'v'),
          command('GET', `${tag}:k`),
          command('SET', `${tag}:none`, 'x', 'GET'), // null: `_` in RESP3
          command('SET', `${tag}:k`, 'w', 'GET'),
          command('SET', `${tag}:k`, 'y', 'NX'), // null
          command('SET', `${tag}:k`, 'y', 'NX', 'GET'),
          command('HSET', `${tag}:h`, 'a', '1', 'b', '2'),
          command('HGETALL', `${tag}:h`), // map
          command('SET', `${tag}:k`, 'v', 'EX', 'abc'),
          command('SETEX', `${tag}:t`, '100', 'v'),
          command('GETEX', `${tag}:t`, 'PERSIST'),
          command('TTL', `${tag}:t`),
          command('MSET', `${tag}:a`, '1', `${tag}:b`, '2'),
          command('GETDEL', `${tag}:a`),
          command('GETDEL', `${tag}:a`),
          command('DEL', `${tag}:b`, `${tag}:zz`),
          command('SMEMBERS', `${tag}:nothing`), // set
          command('ZADD', `${tag}:z`, '1.5', 'm'),
          command('ZSCORE', `${tag}:z`, 'm'), // double
          command('LPUSH', `${tag}:k`, 'x'), // WRONGTYPE
          command('SET', `${tag}:h`, 'v', 'GET'), // WRONGTYPE through the function
        ]);
      d.send(script('d3'));
      p.send(script('p3'));
      const fromDirect = (await d.replies(21)).toString('latin1');
      const fromProxy = (await p.replies(21)).toString('latin1');
      expect(fromProxy).toBe(fromDirect);
      expect(fromProxy).toContain('_\r\n');
      expect(fromProxy).toContain('%2\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n');
      expect(fromProxy).toContain(',1.5\r\n');
      expect((await events()).map((e) => e.key)).toEqual(['p3:k', 'p3:none', 'p3:k', 'p3:t', 'p3:a', 'p3:b']);

      // RESP3 pub/sub: push messages on the same connection.
      sub.send(Buffer.concat([command('HELLO', '3'), command('SUBSCRIBE', 'r3ch')]));
      await sub.replies(2);
      expect(await direct.publish('r3ch', 'msg')).toBe(1);
      expect((await sub.replies(1)).toString()).toBe('>3\r\n$7\r\nmessage\r\n$4\r\nr3ch\r\n$3\r\nmsg\r\n');
      sub.send(command('GET', 'x')); // allowed in RESP3 while subscribed
      expect((await sub.replies(1)).toString()).toBe('_\r\n');
    } finally {
      d.close();
      p.close();
      sub.close();
    }
  });
});

describe('redis-cli', () => {
  const cli = async (port: number, ...args: string[]): Promise<string> => (await run('redis-cli', ['-p', String(port), ...args])).stdout;

  it('notifylist.set, setex and lrange', async () => {
    expect(await cli(proxy.port, 'notifylist.set', 'aa_*', 'aa_list')).toBe('OK\n');
    expect(await cli(proxy.port, 'setex', 'aa_1', '2', '1')).toBe('OK\n');
    expect(await cli(proxy.port, 'lrange', 'aa_list', '0', '-1')).toBe('{"key":"aa_1","op":"set"}\n');
    expect(await cli(proxy.port, 'get', 'aa_1')).toBe('1\n');
    expect(await cli(proxy.port, 'ttl', 'aa_1')).toMatch(/^[12]\n$/);
    expect(await cli(proxy.port, 'notifylist.list')).toBe('*\nevents\naa_*\naa_list\n');
    // Errors print the same way.
    expect(await cli(proxy.port, 'notifylist.set', 'x')).toBe(
      (await cli(redis.port, 'set', 'x')).replace("'set'", "'notifylist.set'"),
    );
    expect(await cli(proxy.port, 'lpush', 'aa_1', 'x')).toBe(await cli(redis.port, 'lpush', 'aa_1', 'x'));
  });

  it('--pipe mode with a few thousand commands', async () => {
    const count = 5000;
    const parts: Buffer[] = [];
    for (let i = 0; i < count; i++) parts.push(command('SET', `pipe:${i}`, `value-${i}`));
    parts.push(Buffer.from('RPUSH pipe:list a b c\r\n')); // an inline command among them
    const input = Buffer.concat(parts);
    const output = await new Promise<string>((resolve, reject) => {
      const child = spawn('redis-cli', ['-p', String(proxy.port), '--pipe'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (text += chunk.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`redis-cli --pipe exited ${code}: ${text}`))));
      child.stdin.end(input);
    });
    expect(output).toContain(`errors: 0, replies: ${count + 1}`);
    expect(await direct.get('pipe:4999')).toBe('value-4999');
    expect(await direct.llen('events')).toBe(count);
    expect(await direct.lrange('pipe:list', 0, -1)).toEqual(['a', 'b', 'c']);
  });

  it('-3 (RESP3) mode prints the same as against Redis directly', async () => {
    for (const tag of ['p', 'd']) {
      await direct.hset(`cli3${tag}:h`, 'a', '1', 'b', '2');
      await direct.zadd(`cli3${tag}:z`, 2.5, 'm');
    }
    const commands: string[][] = [
      ['set', 'cli3@:k', 'v'],
      ['set', 'cli3@:k', 'w', 'get'],
      ['set', 'cli3@:none', 'x', 'get'],
      ['set', 'cli3@:k', 'x', 'nx'],
      ['hgetall', 'cli3@:h'],
      ['zscore', 'cli3@:z', 'm'],
      ['smembers', 'cli3@:nothing'],
      ['lpush', 'cli3@:h', 'x'],
      ['set', 'cli3@:h', 'x', 'get'],
    ];
    for (const args of commands) {
      for (const extra of [[], ['--no-raw']]) {
        const proxied = await cli(proxy.port, '-3', ...extra, ...args.map((a) => a.replace('@', 'p')));
        const fromDirect = await cli(redis.port, '-3', ...extra, ...args.map((a) => a.replace('@', 'd')));
        expect(proxied, args.join(' ')).toBe(fromDirect);
      }
    }
    expect(await cli(proxy.port, '-3', '--no-raw', 'set', 'cli3p:none2', 'x', 'get')).toBe('(nil)\n');
    expect(await cli(proxy.port, '-3', '--no-raw', 'hgetall', 'cli3p:h')).toBe('1# "a" => "1"\n2# "b" => "2"\n');
    expect(await cli(proxy.port, '-3', 'notifylist.list')).toContain('events');
    expect((await events()).filter((e) => e.key.startsWith('cli3d')).length).toBe(0);
  });
});
